"""Synthetic pages with planted personal data (zh + en, clean and scanned-looking), plus exact ground truth.

Two kinds of page, drawn with the contract renderer's page class, fonts and scan variants
(:mod:`evals.datasets.contracts`):

* ``form`` — a registration / application form: labelled fields holding the planted PII (Chinese
  resident ID, mobile and landline numbers, UnionPay card, e-mail, passport, international phone,
  IBAN on zh pages; SSN, US and international phones, IBAN, e-mail, passport, Visa/Mastercard on en
  pages), in the formats people write them (plain, grouped, ``+86``, parentheses), some two to a
  row, one or two inline in a declaration sentence, mixed with the numbers a form also holds.
* ``negative`` — the same kind of page with no personal data at all: contract and invoice numbers,
  dates in every format, amounts in figures and words, order numbers, tax ids, versions, postal
  codes, times, EAN codes. Every finding on it is a false positive.

Each page gets a line in ``pii_pages.jsonl``: the planted values with their kind, the printed line
and the value's box in the saved file's pixels (after skew / rotation). Output is a pure function of
(seed, page index, fonts, library versions).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from imgrag.indexing.models import PiiKind
from imgrag.indexing.pii import cn_id_check_char, luhn_ok

from .contracts import (
    MARGIN_X,
    W,
    TextBox,
    _en_person,
    _fmt_money,
    _Page,
    _pick,
    _random_amount,
    _random_date,
    _scan_schedule,
    _zh_date,
    _zh_person,
    cny_uppercase,
    encode_page,
    map_box,
    scan_page,
)
from .sidecar import read_sidecar, write_sidecar

SIDECAR = "pii_pages.jsonl"
PageKind = Literal["form", "negative"]


class PlantedPii(BaseModel):
    kind: PiiKind
    value: str  # exactly as printed
    bbox: list[int]  # [x0, y0, x1, y1] of the value in the saved file's pixels
    line: str  # the printed line holding it


class PiiPageSpec(BaseModel):
    file: str
    index: int
    seed: int
    lang: Literal["zh", "en"]
    page_kind: PageKind
    scanned: bool
    width: int
    height: int
    format: Literal["png", "jpeg"]
    variant_ops: list[dict[str, Any]]
    rotation: int
    pii: list[PlantedPii]
    lines: list[TextBox]


# --------------------------------------------------------------------------- values

Rng = np.random.Generator
_CN_REGIONS = ("110105", "110108", "310104", "310115", "440305", "440106", "330106", "510107", "420106",
               "320102", "610113", "370202", "500103", "350203")
_CN_MOBILE_PREFIXES = ("130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152",
                       "153", "155", "156", "157", "158", "159", "166", "176", "177", "178", "180", "181",
                       "182", "183", "185", "186", "187", "188", "189", "191", "198", "199")
_CN_AREAS = ("010", "021", "020", "022", "023", "025", "027", "028", "029", "0571", "0755", "0512", "0532",
             "0591", "0731")
_US_AREAS = ("212", "415", "312", "617", "206", "303", "512", "646", "718", "202", "404", "305", "213")
_MAIL_DOMAINS_ZH = ("qq.com", "163.com", "126.com", "sina.com", "example.com.cn", "huaxin-tech.cn")
_MAIL_DOMAINS_EN = ("gmail.com", "example.com", "outlook.com", "northwind.co.uk", "bluewater.io")
_PINYIN = ("zhang", "wang", "li", "liu", "chen", "yang", "zhao", "huang", "zhou", "wu", "xu", "sun", "hu")
_PINYIN_GIVEN = ("wei", "fang", "na", "min", "jing", "lei", "jun", "yang", "yong", "jie", "tao", "ming", "hui")


def _digits(rng: Rng, n: int) -> str:
    return "".join(str(int(d)) for d in rng.integers(0, 10, n))


def _group(s: str, sizes: Sequence[int], sep: str = " ") -> str:
    out, i = [], 0
    for n in sizes:
        out.append(s[i : i + n])
        i += n
    if i < len(s):
        out.append(s[i:])
    return sep.join(p for p in out if p)


def _luhn(prefix: str, length: int, rng: Rng) -> str:
    body = prefix + _digits(rng, length - len(prefix) - 1)
    return next(body + d for d in "0123456789" if luhn_ok(body + d))


def cn_id(rng: Rng) -> str:
    born = date(1960, 1, 1) + (date(2004, 12, 31) - date(1960, 1, 1)) * float(rng.random())
    first17 = f"{_pick(rng, _CN_REGIONS)}{born:%Y%m%d}{_digits(rng, 3)}"
    value = first17 + cn_id_check_char(first17)
    return _group(value, (6, 8), " ") if rng.random() < 0.2 else value


def cn_mobile(rng: Rng) -> str:
    n = _pick(rng, _CN_MOBILE_PREFIXES) + _digits(rng, 8)
    r = rng.random()
    if r < 0.55:
        return n
    if r < 0.75:
        return _group(n, (3, 4), " ")
    if r < 0.88:
        return _group(n, (3, 4), "-")
    return "+86 " + _group(n, (3, 4), " ")


def cn_landline(rng: Rng) -> str:
    area = _pick(rng, _CN_AREAS)
    local = str(int(rng.integers(2, 10))) + _digits(rng, 7 if len(area) == 3 or rng.random() < 0.6 else 6)
    r = rng.random()
    if r < 0.55:
        return f"{area}-{local}"
    if r < 0.75:
        return f"({area}){local}"
    if r < 0.9:
        return f"{area}-{local[:-4]} {local[-4:]}"
    return f"+86 {area[1:]} {local[:-4]} {local[-4:]}"


def bank_card_zh(rng: Rng) -> str:
    n = _luhn(_pick(rng, ("622202", "622848", "621700", "622588", "621483", "623058")), 19 if rng.random() < 0.6 else 16, rng)
    return _group(n, (4, 4, 4, 4)) if rng.random() < 0.4 else n


def bank_card_en(rng: Rng) -> str:
    n = _luhn(_pick(rng, ("4", "4", "51", "53", "55", "2221")), 16, rng)
    return _group(n, (4, 4, 4), _pick(rng, (" ", " ", "-")))


def email_zh(rng: Rng) -> str:
    user = _pick(rng, _PINYIN) + _pick(rng, ("", ".", "_")) + _pick(rng, _PINYIN_GIVEN)
    if rng.random() < 0.3:
        user += str(int(rng.integers(1, 99)))
    return f"{user}@{_pick(rng, _MAIL_DOMAINS_ZH)}"


def email_en(rng: Rng) -> str:
    first, last = _en_person(rng).lower().split(" ")
    user = _pick(rng, (f"{first}.{last}", f"{first[0]}{last}", f"{first}_{last}", f"{last}{int(rng.integers(1, 99))}"))
    return f"{user}@{_pick(rng, _MAIL_DOMAINS_EN)}"


def passport_zh(rng: Rng) -> str:
    if rng.random() < 0.6:
        return "E" + _digits(rng, 8)
    return "E" + _pick(rng, "ABCDEFGHJKLMNPQRSTUVWXYZ") + _digits(rng, 7)


def passport_en(rng: Rng) -> str:
    if rng.random() < 0.5:
        return str(int(rng.integers(1, 10))) + _digits(rng, 8)
    return _pick(rng, "ACEGHKLMNPRSTUVWXYZ") + _digits(rng, 8)


def us_ssn(rng: Rng) -> str:
    area = int(rng.integers(1, 900))
    while area == 666:
        area = int(rng.integers(1, 900))
    return f"{area:03d}-{int(rng.integers(1, 100)):02d}-{int(rng.integers(1, 10000)):04d}"


def _valid_phone(number: str) -> bool:
    import phonenumbers

    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(number, "US"))
    except phonenumbers.NumberParseException:
        return False


def us_phone(rng: Rng) -> str:
    while True:
        area, exch, line = _pick(rng, _US_AREAS), int(rng.integers(201, 1000)), _digits(rng, 4)
        if exch % 100 == 11 or exch == 555:
            continue
        fmt = _pick(rng, ("({a}) {e}-{l}", "{a}-{e}-{l}", "{a}.{e}.{l}", "+1 {a} {e} {l}", "+1 ({a}) {e}-{l}"))
        number = fmt.format(a=area, e=exch, l=line)
        if _valid_phone(number):
            return number


def intl_phone(rng: Rng) -> str:
    makers: list[Callable[[], str]] = [
        lambda: f"+44 20 7946 {_digits(rng, 4)}",
        lambda: f"+44 161 496 {_digits(rng, 4)}",
        lambda: f"+49 30 {int(rng.integers(2, 10))}{_digits(rng, 7)}",
        lambda: f"+33 1 {int(rng.integers(40, 60))} {_digits(rng, 2)} {_digits(rng, 2)} {_digits(rng, 2)}",
        lambda: f"+81 3-{int(rng.integers(3000, 6999))}-{_digits(rng, 4)}",
        lambda: f"+852 {int(rng.integers(2, 4))}{_digits(rng, 3)} {_digits(rng, 4)}",
        lambda: f"+65 6{_digits(rng, 3)} {_digits(rng, 4)}",
    ]
    while True:
        number = makers[int(rng.integers(len(makers)))]()
        if _valid_phone(number):
            return number


_IBAN_BBAN: dict[str, Callable[[Rng], str]] = {
    "GB": lambda r: _pick(r, ("NWBK", "BARC", "LOYD", "HBUK", "MIDL")) + _digits(r, 14),
    "DE": lambda r: _digits(r, 18),
    "FR": lambda r: _digits(r, 10) + "".join(_pick(r, "0123456789ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(11)) + _digits(r, 2),
    "NL": lambda r: _pick(r, ("ABNA", "INGB", "RABO")) + _digits(r, 10),
    "ES": lambda r: _digits(r, 20),
    "CH": lambda r: _digits(r, 17),
    "IT": lambda r: _pick(r, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") + _digits(r, 22),
}


def iban(rng: Rng) -> str:
    country = _pick(rng, list(_IBAN_BBAN))
    bban = _IBAN_BBAN[country](rng)
    moved = bban + country + "00"
    check = 98 - int("".join(str(int(c, 36)) for c in moved)) % 97
    value = f"{country}{check:02d}{bban}"
    return " ".join(value[i : i + 4] for i in range(0, len(value), 4)) if rng.random() < 0.7 else value


# kind -> (value maker, labels) per language
_ZH_FIELDS: dict[PiiKind, tuple[Callable[[Rng], str], tuple[str, ...]]] = {
    "cn_id": (cn_id, ("身份证号", "公民身份号码", "证件号码")),
    "cn_mobile": (cn_mobile, ("手机", "手机号码", "联系电话")),
    "cn_landline": (cn_landline, ("固定电话", "办公电话", "传真")),
    "bank_card": (bank_card_zh, ("银行卡号", "收款账号", "卡号")),
    "email": (email_zh, ("电子邮箱", "邮箱", "E-mail")),
    "passport": (passport_zh, ("护照号码", "护照号")),
    "phone": (intl_phone, ("境外电话", "海外联系电话")),
    "iban": (iban, ("境外账户IBAN", "IBAN")),
}
_EN_FIELDS: dict[PiiKind, tuple[Callable[[Rng], str], tuple[str, ...]]] = {
    "us_ssn": (us_ssn, ("SSN", "Social Security No.")),
    "phone": (us_phone, ("Phone", "Home phone", "Mobile", "Work phone")),
    "iban": (iban, ("IBAN", "Bank account (IBAN)")),
    "email": (email_en, ("Email", "E-mail")),
    "passport": (passport_en, ("Passport No.", "Passport number")),
    "bank_card": (bank_card_en, ("Card number", "Credit card")),
    "cn_mobile": (lambda r: "+86 " + _group(_pick(r, _CN_MOBILE_PREFIXES) + _digits(r, 8), (3, 4), " "), ("China mobile",)),
}
_EXTRA_EN_PHONE = (intl_phone, ("Overseas phone", "Phone (abroad)"))


# --------------------------------------------------------------------------- distractors


def _distractors(lang: str, rng: Rng) -> list[str]:
    """Lines full of numbers that are not personal data: what a detector must leave alone."""
    d, d2 = _random_date(rng), _random_date(rng)
    a = _random_amount(rng)
    n = int(rng.integers(1, 1000))
    order = f"{d:%Y%m%d}{_digits(rng, 10)}"
    uscc = f"91{_pick(rng, _CN_REGIONS)}MA{_digits(rng, 1)}{_pick(rng, 'ABCDEFGHJKLMNPQRTUWXY')}{_digits(rng, 4)}{_pick(rng, 'ABCDEFGHJKLMNPQRTUWXY')}{_digits(rng, 2)}"
    ean = "690" + _digits(rng, 10)
    ver = f"{int(rng.integers(1, 12))}.{int(rng.integers(0, 20))}.{int(rng.integers(0, 40))}"
    if lang == "zh":
        return [
            f"合同编号：HT-{d:%Y%m%d}-{n:03d}",
            f"签订日期：{_zh_date(d)}　　生效日期：{d2.isoformat()}",
            f"合同金额：人民币{_fmt_money(a)}元（大写：{cny_uppercase(a)}）",
            f"订单号：{order}　　数量：{int(rng.integers(1, 500))} 件",
            f"统一社会信用代码：{uscc}",
            f"发票代码：0{_digits(rng, 11)}　　发票号码：{_digits(rng, 8)}",
            f"系统版本：V{ver}　　打印时间：{d:%Y/%m/%d} {int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}:{int(rng.integers(0, 60)):02d}",
            f"邮政编码：{int(rng.integers(100000, 860000))}　　商品条码：{ean}",
            f"付款比例：{int(rng.integers(1, 10)) * 10}%，于{d2:%Y年%m月%d日}前支付 ¥{_fmt_money(_random_amount(rng))}",
            f"第 {int(rng.integers(1, 3))} 页 共 {int(rng.integers(3, 6))} 页　　表单版本 {ver}",
        ]
    return [
        f"Agreement No. AG-{d:%Y%m%d}-{n:03d}",
        f"Date: {d:%B} {d.day}, {d.year}    Effective: {d2:%d/%m/%Y}",
        f"Amount: USD {_fmt_money(a)} (EUR {_fmt_money(_random_amount(rng))})",
        f"Order {order}    Qty {int(rng.integers(1, 500))}",
        f"Employer Tax ID (EIN): {int(rng.integers(10, 99))}-{_digits(rng, 7)}",
        f"Invoice No. INV-{d.year}-{_digits(rng, 6)}    Ref. {_digits(rng, 7)}",
        f"Form version {ver}, printed {d.isoformat()} {int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}",
        f"ZIP {int(rng.integers(10000, 99999))}-{_digits(rng, 4)}    SKU {ean}",
        f"Late fee {int(rng.integers(1, 10))}% per month after {d2.isoformat()}",
        f"Page {int(rng.integers(1, 3))} of {int(rng.integers(3, 6))}",
    ]


# --------------------------------------------------------------------------- one page

_TITLES = {
    ("zh", "form"): ("客户信息登记表", "个人开户申请表", "员工入职登记表", "借款人信息表"),
    ("en", "form"): ("Customer Account Application", "Employee Onboarding Form", "Tenant Information Sheet",
                     "Loan Applicant Details"),
    ("zh", "negative"): ("合同履行情况说明", "采购订单汇总", "发票信息确认单", "付款通知书"),
    ("en", "negative"): ("Contract Summary", "Purchase Order Summary", "Invoice Confirmation", "Payment Notice"),
}
_SEP = {"zh": "：", "en": ": "}
_GAP = {"zh": "　　", "en": "     "}


def _form_fields(lang: str, rng: Rng) -> list[tuple[PiiKind, str, str]]:
    """(kind, label, value) for the planted fields of one form, in a random order."""
    table = _ZH_FIELDS if lang == "zh" else _EN_FIELDS
    kinds = list(table)
    keep = [k for k in kinds if rng.random() < 0.85]
    out = []
    for kind in keep:
        make, labels = table[kind]
        out.append((kind, _pick(rng, labels), make(rng)))
    if lang == "en" and rng.random() < 0.6:
        make, labels = _EXTRA_EN_PHONE
        out.append(("phone", _pick(rng, labels), make(rng)))
    return [out[i] for i in rng.permutation(len(out))]


_INLINE: dict[str, dict[PiiKind, str]] = {
    "zh": {
        "cn_id": "本人{name}（身份证号 {value}）承诺以上信息真实有效。",
        "cn_mobile": "如有疑问请致电经办人{name}，电话{value}。",
        "email": "电子版材料请发送至{value}，抄送{name}。",
    },
    "en": {
        "passport": "I, {name}, holder of passport {value}, confirm the above.",
        "phone": "Questions: call {name} at {value}.",
        "email": "Send the signed copy to {value} (attn. {name}).",
    },
}


def _inline(lang: str, rng: Rng) -> tuple[str, PiiKind, str]:
    """A declaration sentence with one value in it."""
    name = (_zh_person if lang == "zh" else _en_person)(rng)
    kind: PiiKind = _pick(rng, tuple(_INLINE[lang]))
    value = (_ZH_FIELDS if lang == "zh" else _EN_FIELDS)[kind][0](rng)
    return _INLINE[lang][kind].format(name=name, value=value), kind, value


def render_pii_page(index: int, seed: int, lang: str, page_kind: PageKind, scan_index: int | None
                    ) -> tuple[bytes, PiiPageSpec]:
    rng = np.random.default_rng([seed, index, 0 if lang == "zh" else 1, 11])
    p = _Page(lang, rng)
    body = 22 if lang == "zh" else 21
    width = W - 2 * MARGIN_X
    font, _ = p.font(body)
    y = 112.0
    p.text((W / 2, y), _pick(rng, _TITLES[(lang, page_kind)]), 40, bold=True, center=True)
    y += 84
    distract = _distractors(lang, rng)
    p.text((W - MARGIN_X, y), distract.pop(0), 19, anchor_right=True)
    y += 48
    planted: list[tuple[str, PiiKind, str]] = []  # field name, kind, value

    def line(s: str, values: dict[str, tuple[PiiKind, str]] | None = None) -> None:
        nonlocal y
        fields = {name: v for name, (_, v) in (values or {}).items()}
        p.text((MARGIN_X, y), s, body, fields=fields)
        for name, (kind, v) in (values or {}).items():
            planted.append((name, kind, v))
        y += body * 1.9

    if page_kind == "form":
        name = _zh_person(rng) if lang == "zh" else _en_person(rng)
        line(f"{'姓名' if lang == 'zh' else 'Name'}{_SEP[lang]}{name}")
        rows: list[list[tuple[PiiKind, str, str]]] = []
        for f in _form_fields(lang, rng):
            cell = f"{f[1]}{_SEP[lang]}{f[2]}"
            if rows and len(rows[-1]) == 1 and rng.random() < 0.4:
                two = f"{rows[-1][0][1]}{_SEP[lang]}{rows[-1][0][2]}{_GAP[lang]}{cell}"
                if font.getlength(two) <= width:
                    rows[-1].append(f)
                    continue
            rows.append([f])
        for k, row in enumerate(rows):
            text = _GAP[lang].join(f"{label}{_SEP[lang]}{value}" for _, label, value in row)
            line(text, {f"pii{len(planted) + j}": (kind, value) for j, (kind, _, value) in enumerate(row)})
            if k % 3 == 2 and distract:
                line(distract.pop(int(rng.integers(len(distract)))))
        y += body * 0.6
        for _ in range(int(rng.integers(1, 3))):
            text, kind, value = _inline(lang, rng)
            line(text, {f"pii{len(planted)}": (kind, value)})
    for s in distract[: 5 if page_kind == "form" else len(distract)]:
        if y > 1600:
            break
        line(s)

    page = np.asarray(p.img, dtype=np.float32)
    sc = scan_page(page, [], scan_index, rng, noise_seed=[seed, index, 17])
    data = encode_page(sc.page, sc.fmt, sc.jpeg_q)
    hh, ww = sc.page.shape[:2]
    lines = [b.model_copy(update={"bbox": map_box(sc.M, b.bbox, ww, hh)}) for b in p.lines]
    by_field = {name: (kind, value) for name, kind, value in planted}
    pii = []
    for name, box in p.fields.items():
        kind, value = by_field[name]
        holder = next(b.text for b in p.lines if value in b.text)
        pii.append(PlantedPii(kind=kind, value=value, bbox=map_box(sc.M, box.bbox, ww, hh), line=holder))
    ext = "jpg" if sc.fmt == "jpeg" else "png"
    scanned = scan_index is not None
    fname = f"pii_{index:04d}_{lang}_{page_kind}{'_scan' if scanned else ''}.{ext}"
    spec = PiiPageSpec(
        file=fname, index=index, seed=seed, lang=lang, page_kind=page_kind, scanned=scanned,  # type: ignore[arg-type]
        width=ww, height=hh, format=sc.fmt, variant_ops=sc.ops, rotation=sc.rotation, pii=pii, lines=lines,  # type: ignore[arg-type]
    )
    return data, spec


def make_pii_pages(out_dir: str | Path, n_forms: int, n_negatives: int, seed: int = 0, *, scan_ratio: float = 0.5,
                   langs: Sequence[str] = ("zh", "en"), sidecar: str | Path | None = SIDECAR) -> list[PiiPageSpec]:
    """Render `n_forms` pages with planted PII and `n_negatives` without, languages alternating
    over `langs`, a `scan_ratio` share of each group scanned-looking (profiles cycle), into
    `out_dir`, with `pii_pages.jsonl` holding the ground truth."""
    if n_forms < 0 or n_negatives < 0:
        raise ValueError("page counts must be >= 0")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plan: list[tuple[PageKind, int | None]] = []
    scans = 0  # scan profiles cycle over both groups
    for page_kind, n in (("form", n_forms), ("negative", n_negatives)):
        schedule = _scan_schedule(n, scan_ratio, len(langs))
        plan.extend((page_kind, None if j is None else j + scans) for j in schedule)  # type: ignore[misc]
        scans += sum(j is not None for j in schedule)
    specs = []
    for i, (page_kind, scan_index) in enumerate(plan):
        data, spec = render_pii_page(i, seed, langs[i % len(langs)], page_kind, scan_index)
        (out / spec.file).write_bytes(data)
        specs.append(spec)
    if sidecar is not None:
        write_sidecar(out, sidecar, specs)
    return specs


def read_pii_pages(path: str | Path) -> list[PiiPageSpec]:
    """Read a pii_pages.jsonl sidecar (or the folder holding one) back into specs."""
    return read_sidecar(path, SIDECAR, PiiPageSpec)

