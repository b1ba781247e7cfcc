"""PII detectors (valid and invalid checksums, near misses, the numbers a contract is full of), the
boxes estimated for a finding, and the redaction primitives."""

from __future__ import annotations

from datetime import date, datetime, timezone

import numpy as np
import pytest
from PIL import Image

from imgrag.indexing.errors import ImgragError
from imgrag.indexing.models import LayoutBlock, OcrLine, PiiFinding, TableResult
from imgrag.indexing.pii import (
    PII_KINDS,
    cn_id_check_char,
    detect_lines,
    detect_text,
    find_spans,
    iban_ok,
    kinds_in,
    luhn_ok,
    mask_record,
    mask_text,
    redact_pixels,
    span_box,
    valid_cn_id,
)
from imgrag.indexing.stores.base import ImageRecord


def found(text: str, before: str = "") -> list[tuple[str, str]]:
    return [(k, text[a:b]) for k, a, b in find_spans(text, before)]


def cn_id(first17: str) -> str:
    return first17 + cn_id_check_char(first17)


def luhn(prefix: str) -> str:
    return next(prefix + d for d in "0123456789" if luhn_ok(prefix + d))


def wrong_check(value: str, alphabet: str = "0123456789") -> str:
    return value[:-1] + next(c for c in alphabet if c != value[-1])


# -- Chinese resident ID (GB 11643) ---------------------------------------------------------------
ID = cn_id("11010519491231002")  # -> ...002X
ID2 = cn_id("44030119850304123")


def test_cn_id_checksum_date_and_region() -> None:
    assert ID.endswith("X") and valid_cn_id(ID) and valid_cn_id(ID.lower())
    assert found(f"身份证号：{ID}") == [("cn_id", ID)]
    assert found(f"公民身份号码 {ID2}。") == [("cn_id", ID2)]
    assert found(f"ID {ID2[:6]} {ID2[6:14]} {ID2[14:]}") == [("cn_id", f"{ID2[:6]} {ID2[6:14]} {ID2[14:]}")]
    assert found(f"身份证号：{wrong_check(ID2)}") == []  # checksum
    assert not valid_cn_id(cn_id("11010519990230002"))  # 30 February
    assert not valid_cn_id(cn_id("99010519850304123"))  # no province 99
    assert not valid_cn_id(cn_id("11010521990101002"))  # born in the future
    assert found(f"{ID2}7") == [] and found(f"A{ID2}") == []  # part of a longer number / code


# -- bank cards (Luhn + issuer) -------------------------------------------------------------------
UNIONPAY19 = luhn("622202123456789012")
VISA = luhn("411111111111111")
AMEX = luhn("37828224631000")


def test_bank_cards() -> None:
    grouped = " ".join(UNIONPAY19[i : i + 4] for i in range(0, 19, 4))
    assert found(f"卡号：{grouped}") == [("bank_card", grouped)]
    assert found(f"收款账户 {UNIONPAY19}") == [("bank_card", UNIONPAY19)]
    assert found(UNIONPAY19) == [("bank_card", UNIONPAY19)]  # UnionPay 62: no label needed
    visa = "-".join(VISA[i : i + 4] for i in range(0, 16, 4))
    assert found(f"Card {visa} exp 12/27") == [("bank_card", visa)]
    assert found(f"Card number: {VISA}") == [("bank_card", VISA)]
    assert found(f"Reference {VISA}") == []  # plain, not 62, no label
    amex = f"{AMEX[:4]} {AMEX[4:10]} {AMEX[10:]}"
    assert found(f"Amex {amex}") == [("bank_card", amex)]
    assert found(f"卡号：{wrong_check(UNIONPAY19)}") == []  # Luhn
    bad_issuer = luhn("900000123456789")
    assert found(f"卡号：{bad_issuer}") == []
    assert found(f"合计 ¥{UNIONPAY19}") == [] and found(f"{UNIONPAY19}元") == []  # an amount


# -- IBAN -----------------------------------------------------------------------------------------
def test_iban() -> None:
    assert iban_ok("GB82WEST12345698765432") and iban_ok("DE89370400440532013000")
    assert found("IBAN: GB82 WEST 1234 5698 7654 32 (Barclays)") == [("iban", "GB82 WEST 1234 5698 7654 32")]
    assert found("IBAN DE89370400440532013000") == [("iban", "DE89370400440532013000")]
    assert found("FR14 2004 1010 0505 0001 3M02 606") == [("iban", "FR14 2004 1010 0505 0001 3M02 606")]
    assert found("IBAN GB83 WEST 1234 5698 7654 32") == []  # check digits
    assert found("IBAN GB82 WEST 1234 5698 7654 3") == []  # too short for GB
    assert found("IBAN DE89370400440532013000X") == []  # glued to more characters
    assert found("XX82 WEST 1234 5698 7654 32") == []  # no such country


# -- US SSN ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["000-12-3456", "666-12-3456", "912-12-3456", "536-00-1234", "536-22-0000",
                                 "078-05-1120", "219-09-9999"])
def test_ssn_rules(bad: str) -> None:
    assert found(f"SSN: {bad}") == []


def test_ssn() -> None:
    assert found("SSN: 536-22-1234") == [("us_ssn", "536-22-1234")]
    assert found("employee 536-22-1234 joined") == [("us_ssn", "536-22-1234")]  # dashed: no label needed
    assert found("ref 536 22 1234") == []  # spaced or plain: only after a label
    assert found("Social Security Number: 536 22 1234") == [("us_ssn", "536 22 1234")]
    assert found("SSN 536221234") == [("us_ssn", "536221234")]
    assert found("order 536221234") == []


# -- Chinese mobile and landline numbers ----------------------------------------------------------
def test_cn_mobile() -> None:
    assert found("联系电话：13812345678") == [("cn_mobile", "13812345678")]
    assert found("手机 +86 138-1234-5678，") == [("cn_mobile", "+86 138-1234-5678")]
    assert found("mobile 0086 139 1234 5678") == [("cn_mobile", "0086 139 1234 5678")]
    assert found("电话 12812345678") == []  # no 12x mobile range
    assert found("编号 138123456789") == []  # 12 digits
    assert found("金额 13812345678元") == [] and found("RMB 13812345678") == []
    assert found("138-1234-567") == []


def test_cn_landline() -> None:
    assert found("电话：010-62345678") == [("cn_landline", "010-62345678")]
    assert found("传真 (0571)8888 6666") == [("cn_landline", "(0571)8888 6666")]
    assert found("Tel: 0755-2345678 转 801") == [("cn_landline", "0755-2345678 转 801")]
    assert found("+86 10 6234 5678") == [("cn_landline", "+86 10 6234 5678")]
    assert found("电话：02162345678") == [("cn_landline", "02162345678")]  # plain: after a label
    assert found("编号 02162345678") == []
    assert found("010-1234567") == []  # a 2-digit area code needs 8 local digits
    assert found("010-12345678") == [] and found("0571-0234567") == []  # local numbers never start 0/1


# -- e-mail, passports, international and US phone numbers ----------------------------------------
def test_email() -> None:
    assert found("邮箱：zhang.wei@example.com。") == [("email", "zhang.wei@example.com")]
    assert found("mail j_smith+tax@mail.example.co.uk, thanks") == [("email", "j_smith+tax@mail.example.co.uk")]
    assert found("user@localhost") == [] and found("a@b.c") == []
    assert found("13812345678@qq.com") == [("email", "13812345678@qq.com")]  # one finding, not a mobile too


def test_passport_needs_its_label() -> None:
    assert found("护照号码：E12345678") == [("passport", "E12345678")]
    assert found("护照号 EA1234567") == [("passport", "EA1234567")]
    assert found("Passport No.: 123456789") == [("passport", "123456789")]
    assert found("Passport # C03005988") == [("passport", "C03005988")]
    assert found("E12345678") == [] and found("Invoice No. 123456789") == []
    assert found("Passport issued 19850304") == []  # not the value right after the label
    # the label on the previous OCR line (a form's label column)
    assert found("E12345678", before="护照号码") == [("passport", "E12345678")]


def test_phone() -> None:
    assert found("Phone: (415) 392-0142") == [("phone", "(415) 392-0142")]
    assert found("Tel +44 20 7946 0958.") == [("phone", "+44 20 7946 0958")]
    assert found("call +33 1 42 68 53 00 today") == [("phone", "+33 1 42 68 53 00")]
    assert found("Order 4153920142 shipped") == []  # plain US digits: only after a label
    assert found("Phone 4153920142") == [("phone", "4153920142")]
    assert found("+1 555 000 0000") == []  # not a valid number


# -- what OCR does to them (each case read off a generated page by the real OCR) -------------------
@pytest.mark.parametrize(("ocr", "expected"), [
    # a form's next column glued on
    ("Passport number: R19304023Mobile: 206.480.5619", [("passport", "R19304023"), ("phone", "206.480.5619")]),
    ("Email: brown35@example.comMobile: 512.641.2665", [("email", "brown35@example.com"), ("phone", "512.641.2665")]),
    ("护照号：EY8800097E-mail：wang_jun@qq.com", [("passport", "EY8800097"), ("email", "wang_jun@qq.com")]),
    # a space between groups dropped
    ("Card number: 43714603 72311521", [("bank_card", "43714603 72311521")]),
    ("卡号：62284856 8840 5571 834", [("bank_card", "62284856 8840 5571 834")]),
    ("电话+86 150 99582244。", [("cn_mobile", "+86 150 99582244")]),
    ("境外电话：+44207946 9710", [("phone", "+44207946 9710")]),
    # an O read as 0 in a bank code that can only be letters
    ("IBAN : GB74 L0YD 1687 9318 6417 60", [("iban", "GB74 L0YD 1687 9318 6417 60")]),
    # an underscore set apart
    ("Send the signed copy to michael _jones@northwind.co.uk (attn.", [("email", "michael _jones@northwind.co.uk")]),
])
def test_ocr_artefacts(ocr: str, expected: list[tuple[str, str]]) -> None:
    assert found(ocr) == expected


def test_grouped_card_does_not_swallow_the_next_number() -> None:
    assert found("Card 4371 4603 7231 1521 2025") == [("bank_card", "4371 4603 7231 1521")]
    assert found("IBAN GB74 L0YD 1687 9318 6417 61") == []  # the 0→O retry still needs mod-97
    assert found("IBAN DE89 3704 0044 0532 0130 0O") == []  # and only in a letter bank code


# -- what a contract is full of -------------------------------------------------------------------
NEGATIVES = [
    "签订日期：2023年5月12日  2023-05-12  12/05/2023  May 12, 2023  13:45:20",
    "合同总金额为人民币13,800,000.00元（大写：壹仟叁佰捌拾万元整） USD 4,111,111.11  ¥ 62220212345678901",
    "合同编号：HT-20230512-017  Agreement No. AG-20230512-017  No. 2023051200017",
    "Version 10.0.19045.3803, v3.10.2, build 2023051201, rapidocr 3.10.0",
    "订单号：202305121234567890  发票代码 044002100111  发票号码 04400231",
    "统一社会信用代码 91310115MA1K4L8X2Q  税号 911101087855657870",
    "邮编 100080  ZIP 94105-1234  ISBN 978-7-111-54742-6  第3条第2款 30% 15日内",
    "SKU 4006381333931  tracking SF1234567890123  IP 192.168.100.200  1,000 pcs",
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_no_hits_on_dates_amounts_contract_numbers_versions(text: str) -> None:
    assert found(text) == []


def test_full_width_digits_keep_offsets() -> None:
    text = "电话：１３８１２３４５６７８，邮箱ｌｉ＠ｅｘａｍｐｌｅ．ｃｏｍ"
    assert found(text) == [("cn_mobile", "１３８１２３４５６７８"), ("email", "ｌｉ＠ｅｘａｍｐｌｅ．ｃｏｍ")]


def test_every_kind_is_detectable() -> None:
    text = (f"{ID} {UNIONPAY19} GB82WEST12345698765432 a@b.example 536-22-1234 护照 E12345678 "
            "13812345678 010-62345678 +44 20 7946 0958")
    assert sorted({f.kind for f in detect_text(text)}) == sorted(PII_KINDS)


# -- boxes ----------------------------------------------------------------------------------------
def test_span_box_follows_the_characters() -> None:
    line = OcrLine(text="电话：13812345678", bbox=(100, 50, 300, 70))
    (f,) = detect_lines([line])
    x0, y0, x1, y1 = f.bbox  # type: ignore[misc]
    assert (f.line, f.start, f.end) == (0, 3, 14) and (y0, y1) == (50, 70)
    # 3 CJK characters (1 unit each) before 11 digits (about half a unit each)
    assert 100 + 200 * 3 / 9.05 - 10 < x0 < 100 + 200 * 3 / 9.05 and x1 == 300
    assert span_box(line, 0, 2)[0] == 100  # padding never leaves the line box


def test_span_box_on_a_rotated_line() -> None:
    # a line read top to bottom (page turned 90°): the polygon's top edge runs down the image
    line = OcrLine(text="ab13812345678", bbox=(10, 0, 30, 400), polygon=[(30, 0), (30, 400), (10, 400), (10, 0)])
    x0, y0, x1, y1 = span_box(line, 2, 13)
    assert (x0, x1) == (10, 30) and 40 < y0 < 80 and y1 == 400


def test_previous_line_label_and_kinds_in_regions() -> None:
    lines = [
        OcrLine(text="Passport No.", bbox=(0, 0, 100, 20)),
        OcrLine(text="E12345678", bbox=(0, 30, 100, 50)),
        OcrLine(text="Email: li@example.com", bbox=(0, 200, 200, 220)),
    ]
    fs = detect_lines(lines)
    assert [(f.kind, f.line) for f in fs] == [("passport", 1), ("email", 2)]
    assert kinds_in(fs, (0, 0, 200, 100)) == ["passport"]
    assert kinds_in(fs, (0, 0, 300, 300)) == ["email", "passport"]  # PII_KINDS order
    assert kinds_in(fs, (500, 500, 600, 600)) == []


# -- redaction ------------------------------------------------------------------------------------
def test_mask_text_masks_detected_and_known_values() -> None:
    text = "甲方联系人 李娜，电话 13812345678，邮箱 li.na@example.com；护照 E12345678。"
    masked = mask_text(text)
    assert "13812345678" not in masked and "li.na@example.com" not in masked and "E12345678" not in masked
    assert masked.startswith("甲方联系人 李娜，电话 [cn_mobile redacted]，邮箱 [email redacted]")
    assert mask_text(masked) == masked
    # a known finding is masked however a snippet spaces it, even where detection alone would not fire
    known = [PiiFinding(kind="passport", text="E12345678", line=3, start=0, end=9)]
    assert mask_text("... e 1234 5678 ...", known) == "... [passport redacted] ..."
    assert mask_text("nothing personal, 2023-05-12, ¥1,200.00", known) == "nothing personal, 2023-05-12, ¥1,200.00"
    assert mask_text("") == ""


def test_redact_pixels_on_page_crop_and_thumbnail() -> None:
    page = np.full((100, 200, 3), 255, np.uint8)
    box = (50.0, 20.0, 100.0, 40.0)
    out = redact_pixels(page, [box], margin=0)
    assert out[20:40, 50:100].max() == 0 and out[:20].min() == 255 and page.min() == 255  # a copy
    # a crop showing (40, 10)-(140, 60) of the page, upscaled 2x
    crop = np.full((100, 200, 3), 255, np.uint8)
    c = redact_pixels(crop, [box, None], view=(40, 10, 140, 60), margin=0)
    assert c[20:60, 20:120].max() == 0 and c[:20].min() == 255 and c[:, 120:].min() == 255
    # a thumbnail of the whole page at half size, as a PIL image with alpha
    thumb = Image.new("RGBA", (100, 50), (255, 255, 255, 0))
    t = redact_pixels(thumb, [box], view=(0, 0, 200, 100), margin=0)
    assert isinstance(t, Image.Image) and t.mode == "RGBA"
    arr = np.asarray(t)
    assert (arr[10:20, 25:50] == [0, 0, 0, 255]).all() and arr[:10].max() == 255
    assert np.asarray(redact_pixels(page, [(500, 500, 600, 600)])).min() == 255  # outside: nothing


def test_mask_record_masks_every_text_and_keeps_boxes() -> None:
    lines = [OcrLine(text="联系电话：13812345678", bbox=(0, 0, 200, 20)), OcrLine(text="金额 ¥1,200.00", bbox=(0, 30, 200, 50))]
    rec = ImageRecord(
        image_id="i", doc_id="d", path="/p.png", format="png", width=200, height=60, quality="scanned",
        ocr_lines=lines, ocr_text="\n".join(ln.text for ln in lines), pii=detect_lines(lines),
        layout=[LayoutBlock(kind="text", bbox=(0, 0, 200, 50), text="联系电话：138 1234 5678 金额")],
        tables=[TableResult(bbox=(0, 0, 1, 1), html="<td>13812345678</td>")],
        meta={"contact": "13812345678"}, caption="a page", indexed_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
    )
    assert rec.has_pii and rec.model_dump()["has_pii"]
    m = mask_record(rec)
    dumped = m.model_dump_json()
    assert "13812345678" not in dumped and "138 1234 5678" not in dumped
    assert m.ocr_lines[1].text == "金额 ¥1,200.00" and m.pii[0].bbox == rec.pii[0].bbox
    assert m.pii[0].text == "[cn_mobile redacted]" and rec.ocr_lines[0].text.endswith("13812345678")  # a copy


# -- the CLI filter -------------------------------------------------------------------------------
def test_cli_pii_filter() -> None:
    from imgrag.cli.common import parse_filters

    assert parse_filters(["pii=true"]).has_pii is True
    assert parse_filters(["pii=No"]).has_pii is False
    assert parse_filters(["seal=1", "year=2023"]).model_dump(exclude_defaults=True) == {
        "has_seal": True, "date_from": date(2023, 1, 1), "date_to": date(2023, 12, 31)}
    with pytest.raises(ImgragError, match=r"--filter pii=maybe is not true or false") as e:
        parse_filters(["pii=maybe"])
    assert "\n" not in str(e.value) and "--filter pii=true" in str(e.value)


def test_remembered_spans_are_the_detectors_and_a_caller_cannot_change_them() -> None:
    """find_spans remembers short stored texts (a search masks the same stored lines query after
    query): the same answer as the detectors, a fresh list each time; long texts and what a client
    sends (the default) are not kept."""
    from imgrag.indexing import pii

    line = "联系电话：13812345678，邮箱 zhang.san@example.com"
    first = pii.find_spans(line, remember=True)
    assert first == pii._find_spans(line, "") and {k for k, _, _ in first} == {"cn_mobile", "email"}
    first.clear()
    assert pii.find_spans(line, remember=True) == pii._find_spans(line, "")
    kept = pii._remembered_spans.cache_info().currsize
    page = "Tel 13812345678 " * 100  # longer than _SPANS_CACHED_CHARS
    assert len(pii.find_spans(page, remember=True)) == 100
    assert pii.find_spans("a query of a client's: 13900001111") == pii._find_spans("a query of a client's: 13900001111", "")
    assert pii._remembered_spans.cache_info().currsize == kept
    assert pii.mask_text("call 13812345678", remember=True) == pii.mask_text("call 13812345678") == "call [cn_mobile redacted]"
