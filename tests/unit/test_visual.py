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
        # a signature is no handwritten note (every signed contract would answer "a handwritten note")
        ("the signature of Party B", ["signature"]), ("乙方的签名", ["signature"]), ("签字页", ["signature"]),
        ("When was agreement AG-1 signed?", []),
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


def _scanned(img: Image.Image, seed: int = 0) -> np.ndarray:
    """A scan's grain over a drawing: flat fields are flat only once it is averaged away."""
    arr = np.asarray(img).astype(np.float32) + np.random.default_rng(seed).normal(0, 9, (img.height, img.width, 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


def test_flat_drawings_are_no_photos_and_a_chart_frame_is_no_table() -> None:
    page_area = 1240 * 1754
    # four flat colour squares filling their box (no paper showing, six tones with the edges): a logo
    squares = Image.new("RGB", (160, 160), (250, 250, 250))
    sd = ImageDraw.Draw(squares)
    for (x, y), c in zip([(0, 0), (82, 0), (0, 82), (82, 82)], [(66, 114, 196), (237, 125, 49), (160, 160, 160), (255, 192, 0)]):
        sd.rectangle((x, y, x + 77, y + 77), fill=c)
    assert classify_figure(_scanned(squares), _paper(), [], page_area) == "logo"
    # a grey disc with a cut-out triangle: no colour at all, still a logo
    disc = Image.new("RGB", (200, 170), (250, 250, 250))
    dd = ImageDraw.Draw(disc)
    dd.ellipse((0, 0, 199, 169), fill=(160, 160, 160))
    dd.polygon([(100, 20), (40, 140), (160, 140)], fill=(250, 250, 250))
    assert classify_figure(_scanned(disc), _paper(), [], page_area) == "logo"
    # blue handwriting on ruled paper, nothing the OCR read: handwriting, not a coloured figure
    note = Image.new("RGB", (900, 600), (250, 250, 250))
    nd = ImageDraw.Draw(note)
    rng = np.random.default_rng(3)
    for row in range(10):
        y = 40 + row * 55
        nd.line((0, y + 20, 899, y + 20), fill=(170, 190, 230), width=1)
        pts = [(20 + i * 12, y + int(rng.integers(0, 14))) for i in range(int(rng.integers(30, 70)))]
        nd.line(pts, fill=(30, 40, 120), width=3)
    assert classify_figure(_scanned(note), _paper(), [], page_area) == "handwriting"
    # a grey line in a framed plot with numbered ticks: a line chart, though ruled like a table
    plot = Image.new("RGB", (800, 500), (250, 250, 250))
    qd = ImageDraw.Draw(plot)
    qd.rectangle((80, 20, 780, 440), outline=(40, 40, 40), width=2)
    qd.line([(100 + i * 60, 60 + int(v)) for i, v in enumerate(rng.integers(0, 340, 11))], fill=(60, 60, 60), width=3)
    ticks = [OcrLine(text=f"{v:.1f}", bbox=(20, 30 + i * 80, 70, 50 + i * 80)) for i, v in enumerate([0.5, 0.0, -0.5, -1.0, -1.5])]
    ticks += [OcrLine(text=str(v), bbox=(90 + v * 60, 450, 110 + v * 60, 470)) for v in range(0, 11, 2)]
    assert classify_figure(_scanned(plot), _paper(), ticks, page_area) == "line_chart"
    # ruled rows and a column rule, cells read: still a table
    grid = Image.new("RGB", (800, 400), (250, 250, 250))
    gd = ImageDraw.Draw(grid)
    for r in range(6):
        gd.line((0, 10 + r * 75, 799, 10 + r * 75), fill=(20, 20, 20), width=2)
    gd.line((400, 10, 400, 385), fill=(20, 20, 20), width=2)
    cells = [OcrLine(text=f"cell {i} 12", bbox=(20 + (i % 2) * 400, 30 + (i // 2) * 75, 200 + (i % 2) * 400, 55 + (i // 2) * 75)) for i in range(10)]
    assert classify_figure(_scanned(grid), _paper(), cells, page_area) == "table"


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


def _scribble(d: ImageDraw.ImageDraw, x: int, y: int, n: int, rng: np.random.Generator, high: int = 30) -> None:
    d.line([(x + i * 14, y + int(rng.integers(0, high))) for i in range(n)], fill=(20, 30, 110), width=4)


def test_a_signature_is_no_handwritten_note() -> None:
    """A one-line scribble beside "Signature:" or a seal is a signature; a block of scribbled lines
    is handwriting, wherever it is (docs/evaluation.md: 35 of 40 contracts were "handwritten")."""
    rng = np.random.default_rng(5)
    page = Image.new("RGB", (1240, 1754), (250, 250, 250))
    d = ImageDraw.Draw(page)
    _scribble(d, 330, 1390, 20, rng, 70)  # signed beside its label
    label = OcrLine(text="Signature:", bbox=(110, 1400, 300, 1440))
    sig = find_marks(np.asarray(page), [label], [], [], "scanned")
    assert [m.kind for m in sig] == ["signature"]
    assert [m.kind for m in find_marks(np.asarray(page), [], [], [], "scanned")] == ["handwriting"]  # no label, no seal
    beside = Seal(bbox=(630, 1330, 830, 1530), color="red", confidence=0.9)
    assert [m.kind for m in find_marks(np.asarray(page), [], [], [beside], "scanned")] == ["seal", "signature"]
    note = Image.new("RGB", (1240, 1754), (250, 250, 250))
    nd = ImageDraw.Draw(note)
    for row in range(8):
        _scribble(nd, 130, 400 + row * 60, int(rng.integers(40, 65)), rng)
    marks = find_marks(np.asarray(note), [label.model_copy(update={"bbox": (110, 1600, 300, 1640)})], [], [], "scanned")
    assert marks and {m.kind for m in marks} == {"handwriting"}


def test_a_page_classed_as_a_photo_with_printed_text_is_searched_for_figures() -> None:
    from imgrag.evals.datasets.visualpages import _photo

    page = Image.new("RGB", (1240, 1754), (250, 250, 250))
    photo = _photo(np.random.default_rng(2))
    photo.thumbnail((700, 700))
    page.paste(photo, (270, 360))
    lines = [OcrLine(text=f"line {i} of the printed text", bbox=(110, 1200 + 50 * i, 900, 1240 + 50 * i)) for i in range(4)]
    assert [m.kind for m in find_marks(np.asarray(page), lines, [], [], "photo")] == ["photo"]
    assert find_marks(np.asarray(page), lines[:1], [], [], "photo") == []  # a photograph: the image routes have it


def test_a_mark_stored_as_a_block_by_an_older_index_reads_back_as_a_label() -> None:
    from imgrag.indexing.stores.base import region_kind

    assert region_kind("block", "v0") == "label" and region_kind("block", "v12") == "label"
    assert region_kind("block", "b3") == "block" and region_kind("block", "title") == "block"
    assert region_kind("lines", "v1") == "lines" and region_kind("tile", "v1") == "tile"
    assert region_kind("block", "v") == "block" and region_kind("block", "v1x") == "block"
