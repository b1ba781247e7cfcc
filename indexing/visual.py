"""What a page *shows* rather than says: charts, maps, plans, diagrams, tables, photos, seals, logos,
handwriting — found at index time, named in both languages, and read off queries.

A scan is found by its OCR text, and its text rarely names what it shows ("Quarterly figures", not
"bar chart"). The indexer therefore marks each page with the visual kinds it finds
(:func:`find_marks`: layout figure / table blocks and ink the OCR did not read, classified from
their pixels; the seal detector; the handwriting class), and stores them as
:class:`~indexing.models.VisualMark` s. Their words (:data:`VOCAB`, English and Chinese) are added
to the page's full text and become a labelled region each, so BM25, the region routes and the
region re-rank can match "a bar chart" or "柱状图" without an image–text model. The same vocabulary
reads a query (:func:`query_kinds`) to decide whether the image routes may vote on documents.

The classifier is a handful of pixel statistics (background share, colourfulness, texture,
long straight runs, text and digits inside), cheap next to OCR; it knows common office visuals,
not the world.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from .models import BBox, LayoutBlock, OcrLine, QualityClass, Seal, VisualKind, VisualMark
from .text import normalize

# kind -> (English names, Chinese names). A page marked with a kind is searchable by every name;
# a query naming any of them asks for the kind. Only words that name a visual: entity and clause
# words ("party", "amount", "甲方") stay out, so such queries never reach the image routes.
VOCAB: dict[VisualKind, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "chart": (("chart", "graph", "plot", "statistics chart"), ("图表", "统计图")),
    "bar_chart": (("bar chart", "bar graph", "histogram"), ("柱状图", "条形图", "柱形图")),
    "pie_chart": (("pie chart",), ("饼图", "饼状图")),
    "line_chart": (("line chart", "line graph", "curve"), ("折线图", "曲线图", "趋势图")),
    "map": (("map",), ("地图",)),
    "floor_plan": (("floor plan", "blueprint"), ("平面图", "户型图", "图纸")),
    "diagram": (("diagram", "flow chart", "flowchart"), ("流程图", "示意图", "结构图")),
    "table": (("table",), ("表格",)),
    "photo": (("photo", "photograph", "picture"), ("照片", "相片", "图片")),
    "seal": (("seal", "stamp"), ("印章", "公章", "盖章", "图章")),
    "logo": (("logo", "emblem"), ("标志", "徽标", "商标")),
    "handwriting": (("handwriting", "handwritten"), ("手写", "手写体")),
    # a signed name is no handwritten note: "a handwritten note" must not find every signed contract
    "signature": (("signature",), ("签名", "签字")),
    "figure": (("figure", "illustration", "drawing"), ("插图", "配图")),
}
# Said in queries, never written on pages: other forms of the same kinds.
_QUERY_ONLY: dict[VisualKind, tuple[str, ...]] = {
    "chart": ("charts", "graphs", "plots", "infographics?"),
    "bar_chart": ("bar charts", "bars"),
    "pie_chart": ("pie charts", "饼形图"),
    "line_chart": ("line charts", "trend lines?"),
    "map": ("maps", "town map", "street map"),
    "floor_plan": ("floor ?plans", "floorplans?", "blueprints", "layout plan", "house plan"),
    "diagram": ("diagrams", "flow ?charts", "org(?:ani[sz]ation)? ?charts?", "schematics?", "组织架构图"),
    "table": ("tables", "spreadsheets?"),
    "photo": ("photos", "photographs", "pictures", "images?", "snapshots?", "screenshots?", "截图"),
    "seal": ("seals", "stamps", "stamped", "sealed"),
    "logo": ("logos", "letterheads?", "emblems", "徽章"),
    "handwriting": ("hand-?written", "handwritings", "scribbles?", "手绘", "草图"),
    "signature": ("signatures", "autographs?"),
    "figure": ("figures", "illustrations", "drawings", "sketch(?:es)?", "插画"),
}
_SPECIFIC = {"bar_chart", "pie_chart", "line_chart"}  # each is also a "chart"


def _pattern() -> tuple[re.Pattern[str], dict[str, VisualKind]]:
    alts: list[str] = []
    by_group: dict[str, VisualKind] = {}
    for n, kind in enumerate(VOCAB):
        en, zh = VOCAB[kind]
        words = [re.escape(w).replace(r"\ ", "[ -]?") for w in (*en, *zh)] + list(_QUERY_ONLY.get(kind, ()))
        group = f"k{n}"
        by_group[group] = kind
        # English words whole (so "chartered" and "mapping" are no charts or maps); CJK anywhere
        alts.append(f"(?P<{group}>" + "|".join(rf"(?<![a-z]){w}(?![a-z])" for w in sorted(words, key=len, reverse=True)) + ")")
    return re.compile("|".join(alts)), by_group


_QUERY_RE, _GROUPS = _pattern()


def query_kinds(query: str) -> list[VisualKind]:
    """The visual kinds a query names, in order ("a bar chart" → bar_chart; "图表" → chart).
    Empty for entity and clause queries ("who is Party A", "termination clause")."""
    out: list[VisualKind] = []
    for m in _QUERY_RE.finditer(normalize(query)):
        kind = _GROUPS[m.lastgroup or ""]
        if kind not in out:
            out.append(kind)
    return out


def is_visual_query(query: str) -> bool:
    """Whether a query names something a page shows rather than only what it says."""
    return bool(query_kinds(query))


# Kinds an image vector can tell apart from a page of text. A seal, a table or handwriting is a
# small part of a page that looks like every other page to the image space; the marks find those.
PICTURE_KINDS: frozenset[str] = frozenset(
    {"chart", "bar_chart", "pie_chart", "line_chart", "map", "floor_plan", "diagram", "photo", "logo", "figure"}
)


def wants_pictures(query: str) -> bool:
    """Whether the image and tile routes should vote on document pages for this query: it names a
    kind of picture (a chart, a map, a photo), not only a seal, a table or handwriting — "where is
    the seal on contract N" let those routes vote for every sealed page (docs/evaluation.md)."""
    return any(k in PICTURE_KINDS for k in query_kinds(query))


def mark_words(kind: VisualKind) -> str:
    """The words a page marked ``kind`` is found by, in both languages (a chart kind also as a chart)."""
    kinds: list[VisualKind] = [kind, "chart"] if kind in _SPECIFIC else [kind]
    return " ".join(w for k in kinds for w in (*VOCAB[k][0], *VOCAB[k][1]))


def marks_text(marks: Sequence[VisualMark]) -> str:
    """What the page's full text gets for its marks: each kind's words once."""
    return " ".join(mark_words(k) for k in dict.fromkeys(m.kind for m in marks))


# -- finding marks ---------------------------------------------------------------------------------

_SMALL = 600  # analysis size (longest side): a page's figures survive, paper noise does not


def _paper(rgb: np.ndarray) -> np.ndarray:
    """The paper colour: the median of the brightest half of the page."""
    grey = rgb.mean(axis=2)
    return np.median(rgb[grey >= np.median(grey)], axis=0)


def _box_mask(shape: tuple[int, int], boxes: Sequence[BBox], scale: float, pad: int = 1) -> np.ndarray:
    m = np.zeros(shape, bool)
    for x0, y0, x1, y1 in boxes:
        m[max(0, int(y0 * scale) - pad) : int(y1 * scale) + pad + 1, max(0, int(x0 * scale) - pad) : int(x1 * scale) + pad + 1] = True
    return m


def _components(mask: np.ndarray, close: int) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (x0, y0, x1, y1) of the blobs left after closing gaps of ``close`` pixels."""
    import cv2

    k = cv2.getStructuringElement(cv2.MORPH_RECT, (close, close))
    closed = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, k)
    n, _lab, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    return [(int(x), int(y), int(x + w), int(y + h)) for x, y, w, h, _a in stats[1:n]]


def _long(ink: np.ndarray, axis: int, share: float = 0.6) -> np.ndarray:
    """Which rows (axis=1) or columns (axis=0) of the crop are ink over ``share`` of their length,
    after smearing ink across the other direction by 2% (a scan's skew tilts a ruled line)."""
    import cv2

    k = max(3, round(0.02 * ink.shape[1 - axis]))
    kernel = np.ones((k, 1) if axis == 1 else (1, k), np.uint8)
    smeared = cv2.dilate(ink.astype(np.uint8), kernel) > 0
    return np.asarray(smeared.mean(axis=axis) >= share)


def _long_runs(ink: np.ndarray, axis: int, share: float = 0.6) -> int:
    """How many rows (axis=1) or columns (axis=0) are long runs of ink (:func:`_long`)."""
    return int(_long(ink, axis, share).sum())


def _rules(ink: np.ndarray, axis: int) -> int:
    """How many separate ruled lines cross the crop (axis=1: horizontal, 0: vertical): runs of
    adjacent long-run rows or columns count once (a thick or skewed rule is one rule). A chart's
    frame has two each way, a ruled table more."""
    long = _long(ink, axis)
    return int((long[1:] & ~long[:-1]).sum() + long[0]) if len(long) else 0


def _ruled(ink: np.ndarray) -> np.ndarray:
    """The crop's rows and columns that are long runs of ink (axes, frames, rules)."""
    import cv2

    out = np.zeros_like(ink, dtype=bool)
    for axis in (1, 0):
        long = cv2.dilate(_long(ink, axis).astype(np.uint8)[:, None], np.ones((5, 1), np.uint8))[:, 0] > 0  # the rule's width
        if axis == 1:
            out[long, :] = True
        else:
            out[:, long] = True
    return out


def _flat_share(grey: np.ndarray) -> float:
    """The share of the crop that is flat once 4×4 pixels are averaged (a scan's grain gone):
    drawn graphics (a logo's squares, a map's land, a chart's bars) are mostly flat fields, a
    photograph's shading and detail are not."""
    import cv2

    h, w = grey.shape
    if min(h, w) < 12:
        return 1.0
    g = cv2.resize(grey, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
    dx, dy = np.abs(np.diff(g, axis=1))[:-1], np.abs(np.diff(g, axis=0))[:, :-1]
    return float(((dx < 3) & (dy < 3)).mean())


def _walls(ink: np.ndarray) -> float:
    """How closed the crop's outline is: the least share, over its four sides, of the positions
    along that side with ink within 4% of the edge (a plan's outer walls, a table's frame)."""
    h, w = ink.shape
    bh, bw = max(2, h // 25), max(2, w // 25)
    return float(min(ink[:bh].any(axis=0).mean(), ink[-bh:].any(axis=0).mean(),
                     ink[:, :bw].any(axis=1).mean(), ink[:, -bw:].any(axis=1).mean()))  # fmt: skip


def classify_figure(rgb: np.ndarray, paper: np.ndarray, lines_inside: Sequence[OcrLine], page_area: float) -> VisualKind:
    """The kind of one figure crop (RGB, any size) from its pixels and the OCR lines inside it."""
    f = rgb.astype(np.float32)
    diff = np.abs(f - paper).max(axis=2)
    ys, xs = np.nonzero(diff >= 40)
    if len(ys):  # trim the margin a layout box leaves around the figure
        f, diff = f[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1], diff[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        rgb = rgb[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = f.shape[:2]
    bg = diff < 40
    mx, mn = f.max(axis=2), f.min(axis=2)
    sat = (mx - mn) / np.maximum(mx, 1.0)
    colour = (sat > 0.3) & (mx > 60) & ~bg
    dark = (mx < 110) & ~colour
    bg_share = float(bg.mean())
    colour_share = float(colour.mean())
    grey = f.mean(axis=2)
    texture = float(np.abs(np.diff(grey, axis=1)).mean() + np.abs(np.diff(grey, axis=0)).mean())
    n_text = len(lines_inside)
    digits = sum(sum(ch.isdigit() for ch in ln.text) for ln in lines_inside)
    letters = sum(sum(ch.isalpha() for ch in ln.text) for ln in lines_inside)
    area_share = h * w / max(page_area, 1.0)
    if bg_share < 0.5 and n_text <= 1 and _flat_share(grey) < _PHOTO_FLAT:
        return "photo"  # mostly not paper, shaded and detailed, no labels
    if bg_share < 0.35:
        # mostly not paper: a photograph (textured, many tones) or a filled map (flat fields, names)
        if texture > 14 or (_hue_count(rgb[~bg]) >= 6 and _flat_share(grey) < 0.6):
            return "photo"
        if n_text >= 2 and area_share >= _LOGO_AREA:
            return "map"
    ink = ~bg
    rows, cols = _long_runs(ink, 1), _long_runs(ink, 0)
    if n_text == 0 and area_share < _LOGO_AREA and float(ink.mean()) >= 0.3:
        return "logo"  # a small solid mark without words, in colour or not
    if n_text <= 1 and cols <= 2 and bg_share > 0.75 and float(dark.mean() + colour.mean()) > 0.02:
        return "handwriting"  # strokes in lines, no labels, no ruled columns (lined paper is fine)
    if colour_share > 0.01 and n_text == 0:
        return "logo" if area_share < _LOGO_AREA else "figure"
    if colour_share > 0.004 and (digits >= 3 or n_text >= 3):
        return _chart_kind(colour)
    if colour_share > 0.05 and n_text <= 1:
        return "logo" if area_share < _LOGO_AREA else "figure"
    if rows >= 4 and cols >= 4 and n_text >= 6 and _rules(ink, 1) >= 3:
        return "table"  # ruled rows and a column rule (a chart's frame has two rules across)
    if digits >= 6 and digits > letters:
        # a chart in one colour (ticks and values, no words): its marks are the ink off the axes
        return _chart_kind(ink & ~_ruled(ink))
    if _walls(ink) > 0.85 and n_text >= 2:
        return "floor_plan"  # walls all round, rooms named inside
    if n_text >= 2 and letters > digits:
        return "diagram"
    if n_text <= 1 and float(dark.mean() + colour.mean()) > 0.03:
        return "handwriting"
    return "figure"


_LOGO_AREA = 0.12  # a logo takes at most this share of the page
_PHOTO_FLAT = 0.5  # a photograph is flat over less than this share (drawn graphics: 0.65 and more)


def _hue_count(pixels: np.ndarray) -> int:
    """Distinct colours (4 levels per channel) that each cover over 2% of the pixels."""
    if len(pixels) == 0:
        return 0
    q = (pixels // 64).astype(np.int32)
    codes = q[:, 0] * 16 + q[:, 1] * 4 + q[:, 2]
    counts = np.bincount(codes, minlength=64)
    return int((counts > 0.02 * len(codes)).sum())


def _chart_kind(colour: np.ndarray) -> VisualKind:
    """Bars fill their boxes, pie wedges a disc, lines neither."""
    import cv2

    n, _lab, stats, _ = cv2.connectedComponentsWithStats(colour.astype(np.uint8), connectivity=8)
    big = [s for s in stats[1:n] if s[4] >= 0.002 * colour.size]
    if not big:
        return "chart"
    fills = [s[4] / max(1, s[2] * s[3]) for s in big]
    x0 = min(s[0] for s in big)
    y0 = min(s[1] for s in big)
    x1 = max(s[0] + s[2] for s in big)
    y1 = max(s[1] + s[3] for s in big)
    bw, bh = x1 - x0, y1 - y0
    union_fill = sum(s[4] for s in big) / max(1, bw * bh)
    mean_fill = float(np.average(fills, weights=[s[4] for s in big]))
    if mean_fill > 0.8:
        return "bar_chart"
    if 0.6 < union_fill < 0.9 and 0.75 < bw / max(bh, 1) < 1.33:
        return "pie_chart"
    if mean_fill < 0.3:
        return "line_chart"
    return "chart"


def find_marks(
    rgb: np.ndarray,
    lines: Sequence[OcrLine],
    layout: Sequence[LayoutBlock],
    seals: Sequence[Seal],
    quality: QualityClass,
) -> list[VisualMark]:
    """The visual marks of one page; every box in ``rgb``'s (original) pixels.

    Figures are the layout model's figure blocks and any large ink the OCR did not read; tables are
    its table blocks; seals come from the seal detector; a ``handwritten`` page is handwriting."""
    import cv2

    h, w = rgb.shape[:2]
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    rgb = rgb[:, :, :3]
    marks: list[VisualMark] = [VisualMark(kind="seal", bbox=s.bbox, confidence=s.confidence) for s in seals]
    if quality == "handwritten" and not seals:  # a seal's red ink alone makes the class say handwritten
        marks.append(VisualMark(kind="handwriting", bbox=(0.0, 0.0, float(w), float(h)), confidence=0.6))
    if quality == "photo" and len(lines) < _PAGE_LINES:
        return marks  # a photograph has no figures to find; the image routes search it anyway
    scale = _SMALL / max(h, w)
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    paper = _paper(small)
    ink = np.abs(small.astype(np.float32) - paper).max(axis=2) >= 40
    # what the OCR read (short text lines only: a figure read as one long line is still a figure)
    texts = [ln.bbox for ln in lines if (ln.bbox[3] - ln.bbox[1]) < 0.05 * h]
    ink &= ~_box_mask(ink.shape, [*texts, *(s.bbox for s in seals)], scale)
    boxes: list[tuple[BBox, str | None]] = []
    for b in layout:  # the first of two overlapping blocks (a plan read as a figure and as a table)
        if b.kind in ("figure", "table") and not any(_overlap(b.bbox, o) > 0.5 or _overlap(o, b.bbox) > 0.5 for o, _k in boxes):
            boxes.append((b.bbox, b.kind))
    min_side = 0.06 * _SMALL
    for x0, y0, x1, y1 in _components(ink, max(3, round(0.02 * _SMALL))):
        if (x1 - x0) >= min_side and (y1 - y0) >= min_side * 0.6 and ink[y0:y1, x0:x1].mean() > 0.01:
            box = (x0 / scale, y0 / scale, x1 / scale, y1 / scale)
            if not any(_overlap(box, b) > 0.5 for b, _k in boxes):
                boxes.append((box, None))
    page_area = float(h * w)
    for box, layout_kind in boxes:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        crop = rgb[max(0, y0) : y1, max(0, x0) : x1]
        if crop.size == 0:
            continue
        inside = [ln for ln in lines if _overlap(ln.bbox, box) > 0.5]
        if layout_kind != "table" and _prose(inside):
            continue  # paragraphs with stray ink between them (rules, underlines), not a figure
        if any(_overlap(sl.bbox, box) > 0.3 for sl in seals):
            # a seal is a mark of its own; the ink around it is the signature it was stamped over
            marks.append(VisualMark(kind="signature", bbox=(float(x0), float(y0), float(x1), float(y1)), confidence=0.4))
            continue
        kind: VisualKind = classify_figure(crop, paper, inside, page_area)
        if kind == "handwriting" and _signature(box, lines, seals, max(h, w)):
            kind = "signature"
        if layout_kind == "table" and kind in ("figure", "diagram"):
            kind = "table"
        marks.append(VisualMark(kind=kind, bbox=(float(x0), float(y0), float(x1), float(y1)), confidence=0.5))
    return marks


_PAGE_LINES = 3  # a "photo" with this many OCR lines is a page with a photo on it: look for it
_SIGN_LABEL = re.compile(r"sign|签|盖章|代表", re.IGNORECASE)


def _signature(box: BBox, lines: Sequence[OcrLine], seals: Sequence[Seal], page_side: float) -> bool:
    """Whether handwriting is a signature rather than a note: one line thick (either way: a page
    may be scanned sideways) and next to a signature label ("Signature:", "签字") or a seal. A note
    is a block of lines, wherever it sits."""
    if min(box[2] - box[0], box[3] - box[1]) > 0.05 * page_side:
        return False

    def near(b: Sequence[float]) -> bool:
        gap = max(0.0, box[0] - b[2], b[0] - box[2], box[1] - b[3], b[1] - box[3])
        return gap < 0.04 * page_side

    return any(near(s.bbox) for s in seals) or any(_SIGN_LABEL.search(ln.text) and near(ln.bbox) for ln in lines)


def _prose(lines: Sequence[OcrLine]) -> bool:
    """Whether the text inside a box reads like running text (long lines) rather than a figure's
    labels, ticks and cells (short ones)."""
    n = sum(len(ln.text) for ln in lines)
    return len(lines) >= 3 and n / len(lines) > 18


def _overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """The share of ``a``'s area inside ``b``."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return ix / max(1e-6, (a[2] - a[0]) * (a[3] - a[1]))
