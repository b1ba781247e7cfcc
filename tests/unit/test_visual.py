"""Visual marks: the query vocabulary, the figure classifier and the marks a page gets (no models:
OCR lines are given, pages are the eval generator's)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imgrag.indexing.models import OcrLine, Seal, VisualMark
from imgrag.indexing.stores.base import fts_source
from imgrag.indexing.visual import classify_figure, find_marks, mark_words, marks_text, query_kinds


@pytest.mark.parametrize(
    ("query", "kinds"),
    [
        ("a bar chart", ["bar_chart"]), ("柱状图", ["bar_chart"]), ("a chart", ["chart"]), ("图表", ["chart"]),
        ("a floor plan", ["floor_plan"]), ("户型图", ["floor_plan"]), ("a flow chart", ["diagram"]),
        ("a handwritten note", ["handwriting"]), ("手写的便条", ["handwriting"]), ("有公章的文件", ["seal"]),
        ("a page with a company logo", ["logo"]), ("有照片的页面", ["photo"]), ("表格", ["table"]), ("地图", ["map"]),
        ("a photo next to a map", ["photo", "map"]),
        # entity and clause queries name nothing seen; words that merely contain one are no visual
        ("Who is Party A of agreement HT-1?", []), ("合同编号HT-1的甲方是谁", []), ("termination clause", []),
        ("chartered accountant", []), ("mapping rules", []), ("payment within 30 days", []),
    ],
)  # fmt: skip
def test_query_kinds(query: str, kinds: list[str]) -> None:
    assert query_kinds(query) == kinds


def test_mark_words_name_the_kind_in_both_languages_and_reach_bm25() -> None:
    assert "bar chart" in mark_words("bar_chart") and "柱状图" in mark_words("bar_chart")
    assert "图表" in mark_words("pie_chart")  # a specific chart is also a chart
    assert "chart" not in mark_words("map")
    marks = [VisualMark(kind="seal", bbox=(0, 0, 1, 1)), VisualMark(kind="seal", bbox=(2, 2, 3, 3))]
    assert marks_text(marks).count("印章") == 1
    from datetime import datetime, timezone

    from imgrag.indexing.stores.base import ImageRecord

    rec = ImageRecord(image_id="x", doc_id="d", path="p", format="png", width=10, height=10, quality="scanned",
                      ocr_text="Minutes", visual=marks, indexed_at=datetime.now(timezone.utc))  # fmt: skip
    assert "stamp" in fts_source(rec) and "minutes" in fts_source(rec)


def _paper() -> np.ndarray:
    return np.array([250.0, 250.0, 250.0])


def test_classify_figure_kinds() -> None:
    page_area = 1240 * 1754
    # a photograph: textured, no paper showing
    rng = np.random.default_rng(0)
    photo = (rng.random((300, 400, 3)) * 255).astype(np.uint8)
    assert classify_figure(photo, _paper(), [], page_area) == "photo"
    # bars with numbered axes
    img = Image.new("RGB", (600, 400), (250, 250, 250))
    d = ImageDraw.Draw(img)
    for i, hgt in enumerate([100, 250, 180, 300]):
        d.rectangle((60 + i * 130, 350 - hgt, 140 + i * 130, 350), fill=[(68, 114, 196), (237, 125, 49), (255, 192, 0), (91, 155, 213)][i])
    d.line((50, 20, 50, 350), fill="black", width=2)
    d.line((50, 350, 590, 350), fill="black", width=2)
    ticks = [OcrLine(text=str(v), bbox=(10, 350 - v, 40, 365 - v)) for v in (0, 100, 200, 300)]
    assert classify_figure(np.asarray(img), _paper(), ticks, page_area) == "bar_chart"
    # a small flat-coloured mark without text: a logo
    logo = Image.new("RGB", (300, 150), (250, 250, 250))
    ImageDraw.Draw(logo).ellipse((10, 10, 140, 140), fill=(0, 114, 198))
    assert classify_figure(np.asarray(logo), _paper(), [], page_area) == "logo"
    # walls all round with named rooms: a floor plan
    plan = Image.new("RGB", (600, 400), (250, 250, 250))
    pd = ImageDraw.Draw(plan)
    pd.rectangle((5, 5, 595, 395), outline="black", width=6)
    pd.line((300, 5, 300, 395), fill="black", width=5)
    rooms = [OcrLine(text="Kitchen", bbox=(40, 100, 140, 120)), OcrLine(text="Bedroom", bbox=(340, 100, 460, 120))]
    assert classify_figure(np.asarray(plan), _paper(), rooms, page_area) == "floor_plan"


def test_find_marks_on_a_page() -> None:
    """A chart on a text page is one chart mark where it is; a seal is a seal mark; a text-only
    page shows nothing."""
    from imgrag.evals.datasets.visualpages import _chart

    page = Image.new("RGB", (1240, 1754), (250, 250, 250))
    chart = _chart("pie_chart", np.random.default_rng(1), "en")
    page.paste(chart, (120, 400))
    lines = [OcrLine(text="Share of the budget", bbox=(110, 120, 700, 170))]
    labels = [OcrLine(text=t, bbox=(450 + 120 * i, 690, 530 + 120 * i, 710)) for i, t in enumerate(["North", "South", "East"])]
    marks = find_marks(np.asarray(page), lines + labels, [], [], "scanned")
    assert [m.kind for m in marks] == ["pie_chart"]
    x0, y0, x1, y1 = marks[0].bbox
    assert x0 >= 100 and y0 >= 380 and x1 <= 120 + chart.width + 20 and y1 <= 400 + chart.height + 20  # on the chart
    assert (x1 - x0) * (y1 - y0) > 0.2 * chart.width * chart.height
    seal = Seal(bbox=(800, 1300, 1000, 1500), color="red", confidence=0.9)
    blank = np.full((1754, 1240, 3), 250, np.uint8)
    assert [m.kind for m in find_marks(blank, lines, [], [seal], "handwritten")] == ["seal"]
    assert find_marks(blank, lines, [], [], "scanned") == []
    assert [m.kind for m in find_marks(blank, [], [], [], "handwritten")] == ["handwriting"]
