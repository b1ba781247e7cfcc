"""Indexing: load → preprocess → OCR + layout → detectors (seals, dates, PII) → embeddings → regions → store.

Page analysis (OCR dominates) runs in a small thread pool — onnxruntime releases the GIL, and each
worker has its own single-threaded (on 2 cores) OCR and layout sessions — while the calling thread
decodes pages and hands them over, and embedding and writing happen in batches on a writer thread
(``IMGRAG_WRITE_AHEAD``; one batch in flight, in order). Each batch is written as soon as it is
embedded, so an interrupted run keeps everything before it and a re-run skips it.
"""

from __future__ import annotations

import hashlib
import logging
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from .detectors import detect_seals
from .errors import BackendUnavailableError, ImgragError
from .layout import analyze_layout, group_lines
from .layout import preload as preload_layout
from .links import LINK_KEYS, awaiting_links, clear_caches, file_keys, norm_value, read_off, relink
from .loader import BadFileError, Page, discover, file_digest, iter_pages, outside_roots, shown_path
from .models import BBox, OcrLine, QualityClass, VisualMark
from .ocr import DetectsFirst, OcrEngine, detect_orientation, to_rgb_uint8
from .pii import detect_lines, kinds_in
from .preprocess import Preprocessed, preprocess
from .runtime import Runtime
from .stores.base import OPERATOR, OPERATOR_ONLY, Filters, ImageRecord, ImageVectors, Indexed, MetadataUpdate, Principal, RegionRecord
from .text import extract_dates, is_meaningful
from .threads import usable_cores, worker_slots
from .visual import find_marks, mark_words

log = logging.getLogger(__name__)

DOC_CLASSES = {"born_digital", "scanned", "handwritten"}


class Failure(BaseModel):
    """One file (``path``) or page (``path#page=N``) that was not indexed, and why (without the path)."""

    path: str
    reason: str


def _as_stage(e: Exception, stage: str) -> ImgragError:
    """An unexpected model error on one page, as that page's one-line reason."""
    return ImgragError(f"{stage} failed: {type(e).__name__}: {e}", "report it with the file if it keeps happening")


def _reason(e: Exception) -> str:
    """Why, in one line, without repeating the path the report names anyway."""
    if isinstance(e, BadFileError):
        return e.detail
    text = str(e) if isinstance(e, ImgragError) else f"{type(e).__name__}: {e}"
    return " ".join(text.split())


class IndexSummary(BaseModel):
    """What one ``imgrag index`` run did; printed by the CLI and returned by the MCP tool."""

    indexed: int = 0
    unchanged: int = 0
    duplicates: int = 0
    replaced: int = 0
    updated_metadata: int = 0  # unchanged content whose ACL / metadata / tags were updated in place
    linked: int = 0  # pages whose links to images / documents changed (new pages and their partners)
    failed: list[Failure] = Field(default_factory=list)
    seconds: float = 0.0
    version: int | None = None
    indexed_ids: list[str] = Field(default_factory=list)
    updated_ids: list[str] = Field(default_factory=list, description="unchanged pages whose ACL / metadata / tags were updated")


@dataclass
class Analysed:
    """Everything learnt about one page before embedding."""

    page: Page
    record: ImageRecord
    image: np.ndarray  # the enhanced image the models see
    to_original: Callable[[BBox], BBox]
    # id suffix, box in original pixels, and the box in ``image`` pixels (a grid tile) or the tile's
    # own pixels (a figure, cut from the original page)
    tiles: list[tuple[str, BBox, BBox | np.ndarray]] = field(default_factory=list)
    text_regions: list[tuple[str, str, str, BBox]] = field(default_factory=list)  # id suffix, kind, text, bbox


@dataclass
class IndexOptions:
    """``None`` = not given: new pages get none, already indexed unchanged pages keep theirs.
    A given value (even empty) is applied to new pages and replaces that of unchanged pages."""

    meta: dict[str, str] | None = None
    tags: list[str] | None = None
    acl: list[str] | None = None
    workers: int | None = None
    batch_size: int | None = None
    # Who asks (an MCP writer): the metadata of unchanged pages they cannot read is left alone,
    # and pages they cannot see are indexed anew for them (see Indexer._pages). None: the local operator.
    principal: Principal | None = None
    # Resolved folders a remote caller may index: files whose real path leaves them are skipped unread.
    roots: list[Path] | None = None


def caller_of(opts: IndexOptions) -> Principal | None:
    """The principal an index call acts for when it is not the operator (who sees everything)."""
    p = opts.principal
    return p if p is not None and not p.all_access else None


def owned_id(image_id: str, principal: Principal) -> str:
    """The id of a page a principal who is not the operator indexes: their own, so it never
    collides with (or reveals) a copy of the same content that someone else indexed."""
    owner = principal.name or ",".join(sorted(principal.groups))
    return f"{image_id}-o{hashlib.sha256(owner.encode()).hexdigest()[:10]}"


ProgressFn = Callable[[str, dict[str, Any]], None]


_NOT_WORDS = ("sop_uid", "series_uid", "study_uid", "series_number", "instance_number", "kind", "case")


def page_words(rec: ImageRecord) -> str:
    """The text a page's text vector embeds: a caption the file gave and the file's own metadata
    (DICOM tags, a sidecar: all a CT slice or a label-less photo says), then its OCR text. Text
    without letters (a stray "0" off a photo) counts as none, the embedder's no-text vector."""
    ocr = rec.ocr_text if is_meaningful(rec.ocr_text) else ""
    meta = " · ".join(v for k, v in rec.file_meta.items() if k not in _NOT_WORDS)
    return "\n".join(t for t in (rec.caption, meta, ocr) if t)


def page_head(embedder: Any, text: str, tokens: int) -> str:
    """The head of a page's (or a text region's) words its vector embeds: the first ``tokens`` tokens
    for an embedder that counts them (e5), else the text as it is (the embedder keeps its own head)."""
    fit = getattr(embedder, "fit", None)
    return fit(text, False, tokens) if callable(fit) else text


def tile_boxes(w: int, h: int, grids: tuple[int, ...]) -> list[tuple[str, BBox]]:
    out: list[tuple[str, BBox]] = []
    for g in grids:
        for r in range(g):
            for c in range(g):
                out.append((f"t{g}-{r}-{c}", (c * w / g, r * h / g, (c + 1) * w / g, (r + 1) * h / g)))
    return out


# Map pixels over the detector's threshold that make a photo "likely text" (``RapidOcrEngine.text_score``).
# Set on the dev photo sets (docs/performance.md): photos with text score tens to thousands, those without 0.
GATE_MIN_PIXELS = 1
# An index run looks up this many files' stored pages in one query (``Indexer._look_ahead``), each
# file no larger than this (a larger one is hashed once, when it is read, and looked up alone).
LOOK_AHEAD_FILES = 32
LOOK_AHEAD_MAX_MB = 16


def _no_text(pre: Preprocessed, engine: OcrEngine, gate: int) -> bool:
    """A photo the quick look (``gate``: its long side, 0: off) finds no text on: OCR and layout are
    skipped. Documents always get the full detector."""
    score = getattr(engine, "text_score", None)
    return bool(gate) and pre.quality == "photo" and callable(score) and score(pre.image, gate) < GATE_MIN_PIXELS


def tile_pool(embedder: Any, side: int, quality: str) -> Any:
    """The function a photo's grid tiles are pooled with from one backbone pass (``IMGRAG_TILE_SIDE``),
    or None: each tile is embedded as its own crop (side 0, an embedder that cannot pool, and always
    a document page's). Indexing and ``imgrag reembed`` both go through it, so their tiles agree."""
    return getattr(embedder, "embed_regions", None) if side and quality not in DOC_CLASSES else None


def figure_tiles(original: np.ndarray, marks: Sequence[VisualMark]) -> list[tuple[str, BBox, np.ndarray]]:
    """The figures a page shows, each an image tile of its own (suffix ``f<n>``, box and pixels cut
    from the original page), so the tile route matches the figure, not a quarter of the page it sits
    in. Seals, handwriting and signatures are no pictures; a figure covering most of the page is the page's own
    vector already. Indexing and ``imgrag reembed`` both cut them here."""
    oh, ow = original.shape[:2]
    out = []
    for i, m in enumerate(marks):
        x0, y0, x1, y1 = (int(round(v)) for v in m.bbox)
        crop = original[max(0, y0) : min(oh, y1), max(0, x0) : min(ow, x1)]
        whole = crop.shape[0] * crop.shape[1] > 0.8 * oh * ow
        if m.kind not in ("seal", "handwriting", "signature") and min(crop.shape[:2]) >= 32 and not whole:
            out.append((f"f{i}", m.bbox, crop))
    return out


def _crop(img: np.ndarray, box: BBox | np.ndarray) -> np.ndarray:
    if isinstance(box, np.ndarray):  # already the tile's pixels
        return box
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    return img[y0:y1, x0:x1]


def _ocr_page(
    original: np.ndarray, dpi: float | None, engine: OcrEngine, quality: QualityClass | None = None, gate: int = 0
) -> tuple[Preprocessed, list[OcrLine]]:
    """Preprocess and OCR one page with one run of the text detector.

    Documents used to run the detector twice: once for the orientation, once inside OCR. An engine
    that detects and reads apart (``DetectsFirst``) detects once on the enhanced page, reads the
    orientation off those boxes and recognises them, unless the page must turn: then (rarely) the
    page is enhanced again the right way up and detected again. No boxes, no recogniser.
    ``quality``: the class the file itself declares (a DICOM image is a photo), else classified.
    ``gate``: see ``_no_text``."""
    if not isinstance(engine, DetectsFirst):
        pre = preprocess(original, dpi, quality=quality, orientation=detect_orientation)
        return pre, engine.recognize(pre.image)
    pre = preprocess(original, dpi, quality=quality)
    if _no_text(pre, engine, gate):
        return pre, []
    det = engine.detect(pre.image)
    if pre.quality in DOC_CLASSES and not det.empty:
        deg = engine.orientation(det)
        if deg:
            pre = preprocess(original, dpi, quality=pre.quality, orientation=lambda _img: deg)
            det = engine.detect(pre.image)
    return pre, engine.read(det)


def analyse_page(page: Page, rt: Runtime, opts: IndexOptions) -> Analysed:
    """Run every per-page model; all boxes in the result are in original-image pixels."""
    s = rt.settings
    original = page.image
    info = page.info
    pre, lines_proc = _ocr_page(original, page.dpi, rt.ocr, info.quality if info else None, s.photo_text_gate)
    img = pre.image
    lines = [
        OcrLine(
            text=ln.text,
            bbox=pre.box_to_original(ln.bbox),
            polygon=pre.points_to_original(ln.polygon) if ln.polygon else [],
            confidence=ln.confidence,
        )
        for ln in lines_proc
    ]
    is_doc = pre.quality in DOC_CLASSES
    layout_blocks, tables = [], []
    models = {"ocr": rt.ocr.name}
    if lines and (is_doc or len(lines) >= 3):  # no text found: the layout model has nothing to order
        lay = analyze_layout(img, lines_proc, tables=s.tables)
        models["layout"] = lay.name
        if lay.table_name:
            models["table"] = lay.table_name
        for b in lay.blocks:
            layout_blocks.append(b.model_copy(update={"bbox": pre.box_to_original(b.bbox)}))
        for t in lay.tables:
            tables.append(t.model_copy(update={"bbox": pre.box_to_original(t.bbox)}))
    seals = [sl.model_copy(update={"bbox": pre.box_to_original(sl.bbox)}) for sl in detect_seals(img)]
    visual = find_marks(to_rgb_uint8(original), lines, layout_blocks, seals, pre.quality) if s.visual_marks else []
    dates = extract_dates([ln.text for ln in lines]) + (list(info.dates) if info else [])
    # personal data read off the page, then what the file carries in named fields (DICOM patient tags)
    pii = detect_lines(lines) + (list(info.pii) if info else [])
    ocr_text = "\n".join(ln.text for ln in lines)
    # The file's own metadata: keys read off the page, under its tags, under its sidecar / case folder.
    file_meta = {**read_off(ocr_text), **(info.meta if info else {}), **file_keys(page.path, opts.roots)}
    for key in LINK_KEYS:
        if key != "case" and key in file_meta:
            file_meta[key] = norm_value(file_meta[key])
    rec = ImageRecord(
        image_id=page.image_id,
        doc_id=page.doc_id,
        path=page.path,
        page=page.page,
        n_pages=page.n_pages,
        format=page.format,
        width=int(original.shape[1]),
        height=int(original.shape[0]),
        dpi=page.dpi,
        file_size=page.file_size,
        mtime=page.mtime,
        quality=pre.quality,
        quality_stats={k: float(v) for k, v in pre.quality_stats.items()},
        enhancements=pre.applied,
        ocr_lines=lines,
        ocr_text=ocr_text,
        layout=layout_blocks,
        tables=tables,
        seals=seals,
        visual=visual,
        dates=dates,
        pii=pii,
        caption=info.caption if info else "",
        caption_source="file" if info and info.caption else "",
        meta=dict(opts.meta or {}),
        file_meta=file_meta,
        tags=list(opts.tags or []),
        acl=list(opts.acl or []),
        indexed_at=datetime.now(timezone.utc),
        models=models,
    )
    a = Analysed(page=page, record=rec, image=img, to_original=pre.box_to_original)
    # Tiles are cut from the enhanced image (what the embedder should see) and reported in original pixels.
    h, w = img.shape[:2]
    grids = (2,) if is_doc else (2, 3)
    for suffix, box in tile_boxes(w, h, grids):
        a.tiles.append((suffix, pre.box_to_original(box), box))
    # What the page shows (a chart, a photo, a seal ...): each figure an image tile of its own, and
    # its names a ``label`` region ("bar chart 柱状图"), so the region routes and the region re-rank
    # can answer "a bar chart" (a label is never shown as the page's text).
    a.tiles.extend(figure_tiles(original, visual))
    for i, m in enumerate(visual):
        a.text_regions.append((f"v{i}", "label", mark_words(m.kind), m.bbox))
    # Text regions: layout blocks with text; without layout, paragraph-like groups of OCR lines.
    text_blocks = [b for b in layout_blocks if is_meaningful(b.text)]
    for i, b in enumerate(text_blocks):
        a.text_regions.append((f"b{i}", "block", b.text, b.bbox))
    if not text_blocks and lines:
        for i, (box, text, _ids) in enumerate(group_lines(lines)):
            if is_meaningful(text):
                a.text_regions.append((f"l{i}", "lines", text, box))
    return a


class Indexer:
    """Indexes paths into the configured store; one instance per process is enough."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def _inherit(self, existing: dict[str, str], opts: IndexOptions) -> IndexOptions:
        """Options for the new content of an already indexed path: what was not given is kept from
        the version it replaces, so an edited file never silently loses its ACL (becomes public).
        New pages without an ACL are private (default deny): a caller who is not the operator gets
        pages only they can see, the operator pages only operators see (``OPERATOR_ONLY``)."""
        caller = caller_of(opts)
        private = replace(opts, acl=([caller.name] if caller.name else list(caller.groups)) if caller is not None else [OPERATOR_ONLY])
        if not existing:
            return private if opts.acl is None else opts
        if None not in (opts.acl, opts.meta, opts.tags):
            return opts
        old = next(iter(self.rt.store.get_many(list(existing), OPERATOR).values()), None)
        if old is None:
            return private if opts.acl is None else opts
        return replace(
            opts,
            acl=opts.acl if opts.acl is not None else list(old.acl),
            meta=opts.meta if opts.meta is not None else dict(old.meta),
            tags=opts.tags if opts.tags is not None else list(old.tags),
        )

    def _pages(
        self, files: list[Path], summary: IndexSummary, progress: ProgressFn, unchanged: list[str], opts: IndexOptions,
        orphaned: dict[str, str] | None = None,
    ) -> Iterator[tuple[Page, dict[str, str], IndexOptions]]:
        """Pages that need indexing, with the stale ids (same path, other content) they replace and
        the options to index them with. A file or page that cannot be read is reported and skipped.
        ``orphaned`` receives the stale ids of files whose new content needs no page written (it is
        indexed already, from another file): nothing written retires them, the caller does."""
        s = self.rt.settings
        store = self.rt.store
        caller = caller_of(opts)
        # Ids handed over in this run: a second copy of the same content is a duplicate even before
        # the first is written (batches are written behind the analysis: IMGRAG_WRITE_AHEAD).
        handed: set[str] = set()
        # Old pages this run replaces (same path, other content): no longer live for a later file's
        # duplicate check, as when their retirement is written before that file is looked up.
        dropped: set[str] = set()
        ahead: dict[str, tuple[str, dict[str, str], set[str]]] = {}
        checked: dict[tuple[str, str], bool] = {}  # (path, content id) -> whether that file still holds it
        copied: set[str] = set()  # content ids whose indexed file still holds them: later pages are duplicates
        for n, path in enumerate(files):
            if n % LOOK_AHEAD_FILES == 0:
                ahead = self._look_ahead(files[n : n + LOOK_AHEAD_FILES], opts.roots)
            progress("file", {"path": str(path)})
            existing: dict[str, str] = {}
            try:
                if outside_roots(path, opts.roots):  # replaced by a link since it was found
                    raise BadFileError(path, "now a link outside the folders this server may index", "skipped, not read")
                pages = iter_pages(
                    path, max_pixels=s.max_pixels, pdf_dpi=s.pdf_dpi, max_file_mb=s.max_file_mb, max_pages=s.max_pages
                )
                first = True
                page_failed = False
                page_opts = opts
                stale: dict[str, str] = {}
                for pg in pages:
                    if isinstance(pg, BadFileError):  # one page of a document: the others still come
                        self._fail(summary, progress, str(path), pg, pg.page)
                        page_failed = True
                        continue
                    if first:
                        # Asked only once the file gave a page (~8 ms a query on LanceDB): a folder of
                        # 100,000 empty or broken files cost 13 minutes of store queries before. The
                        # look-ahead answered it for most files already (one query for 32 of them).
                        known = ahead.get(str(path))
                        existing = dict(known[1]) if known is not None else store.live_ids_for_path(str(path))
                        if caller is not None:  # pages the caller cannot see are as good as absent to them
                            existing = {i: existing[i] for i in store.get_many(list(existing), caller)}
                        stale = {i: d for i, d in existing.items() if d != pg.doc_id}
                        page_opts = self._inherit(stale, opts)
                        twins = self._twins(caller, pg.doc_id, str(path)) if caller is not None else {}
                        first = False
                    if caller is not None:
                        twin = twins.get(pg.page)
                        own = owned_id(pg.image_id, caller)
                        if twin is None and own not in handed:  # no copy they can see: index it for them, as if nobody had
                            handed.add(own)
                            yield replace(pg, image_id=own), stale, page_opts
                            stale = {}
                            continue
                        if twin is not None and twin.path != str(path) and twin.image_id not in handed and not self._still_there(twin, opts.roots, checked):
                            handed.add(twin.image_id)  # its file is gone or holds other bytes: the page moves here
                            yield replace(pg, image_id=twin.image_id), {**stale, twin.image_id: twin.doc_id}, self._inherit({twin.image_id: twin.doc_id}, opts)
                            stale = {}
                            continue
                        if twin is None:
                            summary.duplicates += 1
                        elif twin.path == str(path):
                            summary.unchanged += 1
                            unchanged.append(twin.image_id)
                        else:
                            summary.duplicates += 1
                        progress("skip", {"path": str(path), "page": pg.page})
                        continue
                    if existing.get(pg.image_id) == pg.doc_id:
                        summary.unchanged += 1
                        unchanged.append(pg.image_id)
                        progress("skip", {"path": str(path), "page": pg.page})
                        continue
                    if known is not None and known[0] == pg.doc_id:  # the content looked up ahead
                        live = pg.image_id in known[2] and pg.image_id not in dropped
                    else:
                        live = pg.image_id in store.live_ids([pg.image_id])
                    moved = None
                    if live and pg.image_id not in handed and pg.doc_id not in copied:
                        # A copy indexed from another path: a duplicate, unless that file is gone or
                        # holds other bytes now (renamed, moved, deleted, overwritten). The page then
                        # moves here (same id, its ACL, metadata and tags), instead of pointing for
                        # good at a file that no longer has it. (One lookup a document, not a page.)
                        old = self.rt.store.get_many([pg.image_id], OPERATOR).get(pg.image_id)
                        moved = old if old is not None and not self._still_there(old, opts.roots, checked) else None
                        if moved is None:
                            copied.add(pg.doc_id)
                    if moved is None and (pg.image_id in handed or live):
                        summary.duplicates += 1
                        progress("skip", {"path": str(path), "page": pg.page})
                        continue
                    handed.add(pg.image_id)
                    dropped.update(stale)
                    if moved is not None:
                        yield pg, {**stale, moved.image_id: moved.doc_id}, self._inherit({moved.image_id: moved.doc_id}, opts) if not stale else page_opts
                    else:
                        yield pg, stale, page_opts
                    stale = {}
                if stale and not page_failed and orphaned is not None:
                    # The file's new content is, page for page, indexed from another file already (a
                    # duplicate): its old pages were kept for good, searchable under this path for
                    # words it no longer holds. Retired as when new content is written (not when a
                    # page of it failed: the file then keeps its old pages).
                    dropped.update(stale)
                    orphaned.update(stale)
            except BadFileError as e:
                self._fail(summary, progress, str(path), e, e.page)

    @staticmethod
    def _still_there(rec: ImageRecord, roots: Sequence[Path] | None, checked: dict[tuple[str, str], bool]) -> bool:
        """Whether the file ``rec`` was indexed from still holds its content (``checked``: the
        answers of this run, one per file and content). The same size and modification time say so
        without reading it; a file that is gone, or no longer a regular file, does not. One that
        cannot be read, or lies outside ``roots`` (never opened), counts as still there."""
        key = (rec.path, rec.doc_id)
        if key not in checked:
            p = Path(rec.path)
            try:
                st = p.stat()
                if not stat.S_ISREG(st.st_mode):
                    checked[key] = False
                elif (st.st_size, st.st_mtime) == (rec.file_size, rec.mtime) or outside_roots(p, roots):
                    checked[key] = True
                else:
                    checked[key] = file_digest(p) == rec.doc_id
            except (FileNotFoundError, NotADirectoryError):
                checked[key] = False
            except (OSError, ValueError):
                checked[key] = True
        return checked[key]

    def _look_ahead(self, files: list[Path], roots: Sequence[Path] | None) -> dict[str, tuple[str, dict[str, str], set[str]]]:
        """For a run of files, by path: the content id its bytes have now, the live pages indexed
        from that path (``live_ids_for_path``), and the live page ids of that content
        (``live_ids``), from one store query (``live_pages``) instead of one or two per file: those
        were ~5-10 % of a clean photo's CPU. A file read again later with other bytes (changed in
        between), one over ``LOOK_AHEAD_MAX_MB`` (hashed twice otherwise), one that cannot be read,
        one that is no regular file or now lies outside ``roots`` (never opened here: reading it is
        the page loop's to refuse) and a store without ``live_pages`` are looked up file by file as
        before. The run holds the
        writer lock, so the store changes only by this run's own writes: pages it hands over
        (``handed``) and the old pages they replace (``dropped``), both kept by ``_pages``."""
        live_pages = getattr(self.rt.store, "live_pages", None)
        if not callable(live_pages):
            return {}
        digests: dict[str, str] = {}
        for f in files:
            try:
                st = f.stat()
                if stat.S_ISREG(st.st_mode) and 0 < st.st_size <= LOOK_AHEAD_MAX_MB * 2**20 and not outside_roots(f, roots):
                    digests[str(f)] = file_digest(f)
            except OSError:  # reported when the file itself is read
                continue
        if not digests:
            return {}
        rows = live_pages(list(digests), list(dict.fromkeys(digests.values())))
        by_path: dict[str, dict[str, str]] = {}
        by_doc: dict[str, set[str]] = {}
        for image_id, doc_id, path in rows:
            by_path.setdefault(path, {})[image_id] = doc_id
            by_doc.setdefault(doc_id, set()).add(image_id)
        return {p: (d, by_path.get(p, {}), by_doc.get(d, set())) for p, d in digests.items()}

    @staticmethod
    def _fail(summary: IndexSummary, progress: ProgressFn, path: str, e: Exception, page: int | None = None) -> None:
        where = shown_path(path) + (f"#page={page}" if page is not None else "")
        reason = _reason(e)
        summary.failed.append(Failure(path=where, reason=reason))
        progress("fail", {"path": where, "reason": reason})

    def _twins(self, caller: Principal, doc_id: str, path: str) -> dict[int, ImageRecord]:
        """For a caller who is not the operator: by page number, the copies of this content they
        can see, one indexed from ``path`` first (unchanged), else from elsewhere (a duplicate).
        A page with none is indexed for them under their own id, exactly as if nobody had indexed
        it: what others indexed and they cannot see neither shows in the counts nor hides their copy."""
        out: dict[int, ImageRecord] = {}
        for rec in self.rt.store.list_images(caller, Filters(doc_id=doc_id), limit=10_000):
            if rec.page not in out or rec.path == path:
                out[rec.page] = rec
        return out

    def _image_vectors(self, batch: list[Analysed]) -> tuple[list[tuple[np.ndarray, np.ndarray, str]], list[np.ndarray]]:
        """Each page's whole-image (vector, feature, caption), and its tile vectors in ``a.tiles`` order.

        A photo's grid tiles are pooled from one backbone pass over the whole photo
        (``IMGRAG_TILE_SIDE``; 13 crops through the backbone were ~90 % of a photo's cost without
        text), and so is its whole-image vector (``IMGRAG_PHOTO_ONE_PASS``: that pass sees the
        whole photo already; a pass of its own over a 224 px centre crop was a quarter of a clean
        photo's cost). A document page's tiles (which the image routes do not search by default),
        every page's with side 0 or an embedder that cannot pool, and figure tiles (cut from the
        original page) are crops embedded alone; the whole image of a page not pooled is its own pass."""
        ie = self.rt.image_embedder
        s = self.rt.settings
        side = s.tile_side
        pool = tile_pool(ie, side, "photo")
        pooled = [i for i, a in enumerate(batch) if tile_pool(ie, side, a.record.quality) is not None]
        # content framing crops a picture to what it draws: the uncropped tile pass is another framing
        # (auto framing: only the pages it frames centre, photos, share the tiles' pass)
        framing = getattr(ie, "framing", "centre")
        one_pass = (set() if not s.photo_one_pass or framing == "content" else set(pooled) if framing == "centre"
                    else {i for i in pooled if ie.whole_framing(batch[i].image) == "centre"})
        n_grid = [sum(not isinstance(t[2], np.ndarray) for t in a.tiles) for a in batch]
        whole: dict[int, tuple[np.ndarray, np.ndarray, str]] = {}
        tiles: dict[int, list[np.ndarray]] = {i: [] for i in range(len(batch))}
        if pooled and pool is not None:
            boxes = []
            for i in pooled:
                h, w = batch[i].image.shape[:2]
                head = [(0.0, 0.0, float(w), float(h))] if i in one_pass else []
                boxes.append(head + [t[2] for t in batch[i].tiles[: n_grid[i]]])
            emb = pool([batch[i].image for i in pooled], boxes, side)
            at = 0
            for i in pooled:
                if i in one_pass:
                    whole[i] = (emb.vectors[at], emb.features[at], emb.captions[at])
                    at += 1
                tiles[i].extend(emb.vectors[at : at + n_grid[i]])
                at += n_grid[i]
        own = [i for i in range(len(batch)) if i not in whole]
        if own:
            emb = ie.embed_images([batch[i].image for i in own])
            for j, i in enumerate(own):
                whole[i] = (emb.vectors[j], emb.features[j], emb.captions[j])
        crops = [(i, t[2]) for i, a in enumerate(batch) for k, t in enumerate(a.tiles)
                 if i not in pooled or k >= n_grid[i]]  # in a.tiles order: grid crops, then figures
        if crops:
            vecs = ie.embed_images([_crop(batch[i].image, box) for i, box in crops]).vectors
            for (i, _), v in zip(crops, vecs, strict=True):
                tiles[i].append(v)
        return [whole[i] for i in range(len(batch))], [np.asarray(tiles[i], np.float32).reshape(-1, ie.dim) for i in range(len(batch))]

    def _embed(self, batch: list[Analysed]) -> list[Indexed]:
        rt = self.rt
        whole, tiles = self._image_vectors(batch)
        # The page text vector is e5 on the head of the page's words (page_words: caption, file
        # metadata, OCR text; IMGRAG_PAGE_TEXT_TOKENS), although the region vectors embed the same
        # spans again: pooling the page vector from the region vectors (length-weighted mean) was
        # measured and lost nDCG@10 on the contracts set (OCR-text route 0.617 -> 0.509, hybrid +
        # re-rank 0.928 -> 0.920), so both stay; a 256-token head costs half of e5's 512
        # (docs/performance.md).
        texts = [page_head(rt.text_embedder, page_words(a.record), rt.settings.page_text_tokens) for a in batch]
        # A region vector embeds the head of its words (IMGRAG_REGION_TEXT_TOKENS): a clause block of
        # 300-500 tokens cost a third of a contract page's e5 time; BM25 and the re-rank keep every word.
        region_texts = [page_head(rt.text_embedder, r[2], rt.settings.region_text_tokens) for a in batch for r in a.text_regions]
        vecs = rt.text_embedder.embed_passages(texts + region_texts)
        page_vecs, region_vecs = vecs[: len(batch)], vecs[len(batch) :]
        # per page, what the image embedder's search term needs of its features (transfer: the exemplar term)
        stats_of = getattr(rt.image_embedder, "feature_stats", None)
        feature_stats = (stats_of(np.stack([w[1] for w in whole]), images=[a.image for a in batch])
                         if stats_of is not None and whole else [{}] * len(batch))
        out: list[Indexed] = []
        ri = 0
        for n, a in enumerate(batch):
            rec = a.record
            if not rec.caption and whole[n][2]:  # the file's own words beat the image model's guess
                rec.caption, rec.caption_source = whole[n][2], "model"
            rec.feature_stats = feature_stats[n]
            rec.models.update(rt.model_identities())
            regions: list[RegionRecord] = []
            for (suffix, box, _), vec in zip(a.tiles, tiles[n], strict=True):
                regions.append(
                    RegionRecord(
                        region_id=f"{rec.image_id}:{suffix}", image_id=rec.image_id, kind="tile",
                        label=suffix, bbox=box, vector=vec,
                    )
                )
            for suffix, kind, text, box in a.text_regions:
                regions.append(
                    RegionRecord(
                        region_id=f"{rec.image_id}:{suffix}", image_id=rec.image_id, kind=kind,  # type: ignore[arg-type]
                        label=suffix, bbox=box, text=text, pii_kinds=kinds_in(rec.pii, box), vector=region_vecs[ri],
                    )
                )
                ri += 1
            vectors = ImageVectors(image=whole[n][0], feature=whole[n][1], text=page_vecs[n])
            out.append(Indexed(record=rec, vectors=vectors, regions=regions))
        return out

    def _embed_and_write(
        self, batch: list[Analysed], summary: IndexSummary, progress: ProgressFn,
        embedded: Sequence[Future[list[Indexed]]] | None = None,
    ) -> list[Indexed]:
        """Embed and write a batch; when that fails, page by page, so one bad page costs only itself.
        An unreachable backend is no page's fault: it stops the run. ``embedded``: the batch's
        ``_embed``, in parts in order, already running elsewhere (on the page workers), waited for here."""
        store = self.rt.store
        try:
            items = [it for part in embedded for it in part.result()] if embedded is not None else self._embed(batch)
            store.write(items)
            return items
        except BackendUnavailableError:
            raise
        except Exception as e:
            if len(batch) == 1:
                a = batch[0]
                log.debug("page %s#%s failed", a.page.path, a.page.page, exc_info=True)
                page = a.page.page if a.page.n_pages > 1 else None
                self._fail(summary, progress, a.page.path, e if isinstance(e, ImgragError) else _as_stage(e, "embedding"), page)
                return []
            log.info("a batch of %d pages failed (%s); retrying page by page", len(batch), e)
        written: list[Indexed] = []
        for a in batch:
            written.extend(self._embed_and_write([a], summary, progress))
        return written

    def _run(self, files: list[Path], opts: IndexOptions, summary: IndexSummary, progress: ProgressFn) -> None:
        s = self.rt.settings
        store = self.rt.store
        store.ensure_spaces(self.rt.spaces())
        workers = opts.workers or s.workers
        batch_size = opts.batch_size or s.batch_size
        pending: list[tuple[Future[Analysed], Page, dict[str, str]]] = []
        batch: list[Analysed] = []
        # The old pages a changed file replaces, by its new document id: retired once a page of the
        # new content is written, never when all of it failed (the file then keeps its old pages).
        stale_by_doc: dict[str, dict[str, str]] = {}
        unchanged_ids: list[str] = []
        written_ids: set[str] = set()
        orphaned: dict[str, str] = {}  # old pages of files whose new content is a duplicate (see _pages)

        def write(
            items: list[Analysed], events: list[tuple[str, dict[str, Any]]],
            embedded: Sequence[Future[list[Indexed]]] | None = None,
        ) -> None:
            """Embed, write and link one batch (on the writer thread when ``IMGRAG_WRITE_AHEAD``;
            ``embedded``: its embedding, handed to the page workers)."""
            def note(event: str, data: dict[str, Any]) -> None:  # replayed on the indexing thread (settle)
                events.append((event, data))

            written = self._embed_and_write(items, summary, note, embedded)
            summary.indexed += len(written)
            summary.indexed_ids.extend(it.record.image_id for it in written)
            written_ids.update(it.record.image_id for it in written)
            # An old page's content may have moved to another file of this run and been written
            # there under the same id: that page stays (it is no longer the old one).
            retired = [i for doc in {it.record.doc_id for it in written} for i in stale_by_doc.pop(doc, {}) if i not in written_ids]
            if retired:
                summary.replaced += store.soft_delete(retired)
            # Link as each batch is written (partners written earlier are in the store), so a run
            # stopped later keeps the links of what it wrote; a re-run skips those pages.
            link([it.record.image_id for it in written], note)
            note("written", {"count": len(written)})

        writing: list[tuple[Future[None], list[tuple[str, dict[str, Any]]]]] = []  # the batch in flight

        def settle() -> None:
            """Wait for the batch in flight (re-raising what stopped it) and report its events here:
            progress callbacks (the MCP server's) may only be called from the indexing thread."""
            while writing:
                fut, events = writing.pop(0)
                try:
                    fut.result()
                finally:
                    for event, data in events:
                        progress(event, data)

        def flush(last: bool = False) -> None:
            if not batch:
                return
            items = list(batch)
            batch.clear()
            settle()  # one batch in flight at a time: batches are written, and linked, in order
            events: list[tuple[str, dict[str, Any]]] = []
            if writer is not None:
                embedded = None
                if embed_on:
                    # The last batch in one part a worker: the others have nothing left to do, so
                    # it is split among them (the backbone's and e5's vectors do not depend on
                    # the batch they come in: checked bit for bit, docs/performance.md).
                    n = min(workers, len(items)) if last else 1
                    parts = [items[len(items) * i // n : len(items) * (i + 1) // n] for i in range(n)]
                    embedded = [embed_on[0].submit(self._embed, part) for part in parts]
                writing.append((writer.submit(write, items, events, embedded), events))
                return
            try:
                write(items, events)
            finally:
                for event, data in events:
                    progress(event, data)

        def link(image_ids: list[str], note: ProgressFn = progress) -> None:
            if not image_ids:
                return
            try:
                summary.linked += relink(store, image_ids, opts.principal or OPERATOR)
            except ImgragError as e:  # what was indexed stays indexed; re-indexing the files links them
                summary.failed.append(Failure(path="(links)", reason=str(e)))
                note("fail", {"path": "(links)", "reason": str(e)})

        def drain(limit: int) -> None:
            while len(pending) > limit:
                fut, pg, stale = pending.pop(0)
                if stale:
                    stale_by_doc.setdefault(pg.doc_id, {}).update(stale)
                try:
                    batch.append(fut.result())
                    progress("page", {"path": pg.path, "page": pg.page})
                except Exception as e:  # a model crashing on one page must not stop the batch
                    log.debug("analysis failed for %s page %s", pg.path, pg.page, exc_info=True)
                    err = e if isinstance(e, ImgragError) else _as_stage(e, "analysis")
                    self._fail(summary, progress, pg.path, err, pg.page if pg.n_pages > 1 else None)
                if len(batch) >= batch_size:
                    flush(last=limit == 0 and not pending)  # drain(0): after the last page was handed over

        self.rt.warm_up()
        clear_caches()
        loaded = False
        _, own_sessions = worker_slots(workers)

        def init_worker() -> None:  # each worker's own OCR / layout sessions, loaded before its first page
            own_sessions()
            try:
                load = getattr(self.rt.ocr, "load", None)
                if callable(load):
                    load()
                preload_layout()
            except Exception:  # the worker's first page loads them again and reports what fails
                log.debug("loading a worker's sessions failed", exc_info=True)

        # Embedding and writing a batch (the image backbone, the store, links) overlap the analysis
        # of the next pages on a thread of their own: on the calling thread, the page workers ran
        # dry while it embedded, one core idle for most of each batch (docs/performance.md).
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imgrag-write") if s.write_ahead else None
        # When the page workers have every core already (2 on 2 cores), a batch's embedding (the
        # image backbone, e5) runs on them too, queued behind the pages handed over before it, and
        # the writer thread only writes and links: embedding on the writer thread made three busy
        # threads on two cores, the writer fell behind, the indexing thread waited for it with the
        # workers' queue empty, and a core stood idle (docs/performance.md, session 13). The same
        # vectors, bit for bit (the last batch is split among the workers: see flush).
        embed_on: list[ThreadPoolExecutor] = []
        try:
            with ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix="imgrag-page", initializer=init_worker if workers > 1 else None
            ) as pool:
                if writer is not None and 1 < workers and usable_cores() <= workers:
                    embed_on.append(pool)
                try:
                    for pg, stale, page_opts in self._pages(files, summary, progress, unchanged_ids, opts, orphaned):
                        if not loaded:  # only once there is a page to analyse: an unchanged folder loads nothing
                            self.rt.load_models()
                            loaded = True
                        pending.append((pool.submit(analyse_page, pg, self.rt, page_opts), pg, stale))
                        drain(workers * 2)
                    drain(0)
                    flush(last=True)  # before the pool closes: the last batch may be embedded on it
                finally:
                    for fut, _, _ in pending:  # stopping on an error: do not analyse what will not be written
                        fut.cancel()
        finally:
            if writer is not None:
                writer.shutdown(wait=True)  # what was handed over is written before the run's version
            settle()
        # (an old page whose content another file of this run wrote under the same id stays)
        if retire := [i for i in orphaned if i not in written_ids]:
            summary.replaced += store.soft_delete(retire)
        update = MetadataUpdate(acl=opts.acl, meta=opts.meta, tags=opts.tags)
        if unchanged_ids and not update.is_empty():
            if opts.principal is not None and not opts.principal.all_access:
                readable = store.get_many(unchanged_ids, opts.principal)
                unchanged_ids = [i for i in unchanged_ids if i in readable]
        if unchanged_ids and not update.is_empty():
            n = store.update_metadata(unchanged_ids, update)
            summary.updated_metadata += n
            if n:
                summary.updated_ids.extend(unchanged_ids)
            summary.unchanged -= n
            link(unchanged_ids)  # their metadata may carry other link keys now
        elif unchanged_ids:
            # A run killed after writing a batch and before linking it left those pages unlinked;
            # this run counts them unchanged: link the ones that still wait for it.
            link(awaiting_links(store, unchanged_ids, opts.principal or OPERATOR))

    def index(
        self,
        paths: list[str | Path],
        opts: IndexOptions | None = None,
        progress: ProgressFn | None = None,
    ) -> IndexSummary:
        opts = opts or IndexOptions()
        progress = progress or (lambda event, data: None)
        t0 = time.perf_counter()
        summary = IndexSummary()
        files, problems = discover(paths, opts.roots)
        for p in problems:
            summary.failed.append(Failure(path=p.path, reason=p.reason))
            progress("fail", {"path": p.path, "reason": p.reason})
        progress("start", {"files": len(files)})
        store = self.rt.store
        with store.writer():  # one writer per index; what a killed run left is versioned first
            try:
                self._run(files, opts, summary, progress)
            finally:
                # Whatever was written is recorded as a version, even when the run stops on an
                # error (backend gone, Ctrl-C): nothing stays visible without a version to undo it.
                if summary.indexed or summary.replaced or summary.updated_metadata or summary.linked:
                    v = store.commit(
                        "index",
                        {"indexed": summary.indexed, "replaced": summary.replaced,
                         "updated_metadata": summary.updated_metadata, "linked": summary.linked,
                         "failed": len(summary.failed)},
                    )
                    summary.version = v.version
        summary.seconds = round(time.perf_counter() - t0, 3)
        progress("done", summary.model_dump())
        return summary
