"""``Imgrag``: the application facade. One per process; the CLI, the MCP server, evals and benchmarks
all go through it, so limits, locks, access checks and write bookkeeping exist once.

It owns the :class:`~imgrag.indexing.runtime.Runtime` (settings, store, models built once under a
lock), the decoded-page and thumbnail caches the read tools share, the index roots a remote caller
may index from, the single-writer lock and the audit log. Every read takes the caller's
``Principal``: an id the caller may not see answers exactly like one that does not exist
(``NotFoundError``). Every write is recorded in the audit log, whoever calls it (:mod:`.audit`).
Heavy reads (OCR re-reads, crops, page images) pass fair per-principal gates, and image payloads
fit the caller's transport (``PayloadBudget``).

Personal data: every output goes to a principal who does not ``sees_pii`` through
:mod:`.redaction` — records, hits and regions masked, OCR re-reads of redacted pixels masked again,
crops, thumbnails and page images with the findings blacked out, and personal values left out of
search queries. Internally the facade keeps the stored record (``_record``) so masking always has
the real values to look for.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field

from . import imaging, redaction
from .audit import AuditLog, open_audit, recorded_write
from .config import Settings
from .errors import AccessDeniedError, ImgragError, NotFoundError
from .gate import FairGate
from .links import LinkedItem, visible_links
from .limits import (
    MAX_CROP_SCALE,
    MAX_CROP_SIDE,
    MAX_ID_CHARS,
    MAX_OCR_PIXELS,
    MAX_PATH_CHARS,
    MAX_RESOURCE_SIDE,
    MAX_WAIT_SECONDS,
    MAX_WAITING_CALLS,
    OCR_SLOTS,
    OCR_TARGET_TEXT_PX,
    PER_PRINCIPAL_CALLS,
    PIXEL_SLOTS,
    STDIO_BUDGET,
    PayloadBudget,
)
from .loader import load_page
from .models import BBox, OcrLine
from .pii import mask_record
from .runtime import Runtime
from .search import Searcher, SearchRequest, SearchResult
from .stores.base import OPERATOR, Filters, ImageRecord, IndexStore, Principal, RegionHit, Stats, Version

if TYPE_CHECKING:
    from .align import ReembedSummary
    from .pipeline import IndexOptions, IndexSummary, ProgressFn

log = logging.getLogger(__name__)


class Crop(BaseModel):
    """A region of a page as PNG, with the geometry that was actually applied."""

    image_id: str
    bbox: tuple[int, int, int, int] = Field(description="the box cropped, clipped to the image")
    requested_bbox: tuple[float, float, float, float] = Field(description="the requested box in pixels, before clipping")
    clipped: bool
    image_width: int
    image_height: int
    scale: float = Field(description="zoom applied: output pixels per original pixel")
    requested_scale: float
    width: int
    height: int
    enhanced: bool
    png: bytes = Field(repr=False)
    note: str = ""


class RegionText(BaseModel):
    """What OCR read again in one region, boxes in original-image pixels, lines top to bottom."""

    image_id: str
    bbox: tuple[int, int, int, int]
    clipped: bool
    scale: float
    engine: str
    lines: list[OcrLine]


class Deletion(BaseModel):
    deleted: list[str] = Field(description="ids soft-deleted by this call")
    unknown: list[str] = Field(default_factory=list, description="ids that were not live (or not visible to the caller)")
    version: int | None = None


class PruneRefusal(BaseModel):
    folder: str = Field(description="a named folder nothing was pruned under (printable)")
    reason: str


class Pruned(BaseModel):
    files: dict[str, int] = Field(default_factory=dict, description="path of each pruned file -> its pages soft-deleted")
    pages: int = 0
    refused: list[PruneRefusal] = Field(default_factory=list)
    version: int | None = None


class _PageCache:
    """Decoded pages by image id, bounded by bytes: agents crop and re-read the same page many
    times, and re-opening it means hashing the file (to detect changes) and decoding it again."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._data: OrderedDict[str, tuple[tuple[str, int, int], np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, stamp: tuple[str, int, int]) -> np.ndarray | None:
        with self._lock:
            hit = self._data.get(key)
            if hit is None or hit[0] != stamp:
                return None
            self._data.move_to_end(key)
            return hit[1]

    def put(self, key: str, stamp: tuple[str, int, int], page: np.ndarray) -> None:
        if page.nbytes > self.max_bytes:
            return
        with self._lock:
            self._data[key] = (stamp, page)
            self._data.move_to_end(key)
            while sum(p.nbytes for _, p in self._data.values()) > self.max_bytes:
                self._data.popitem(last=False)


GC_YOUNG_THRESHOLD = 10_000  # Python's default is 700


def settle_gc() -> None:
    """After warm-up: move every object alive now (the models, the dictionary, imported modules:
    ~400k) out of the cyclic garbage collector's reach (``gc.freeze``), and let the youngest
    generation grow to ``GC_YOUNG_THRESHOLD`` objects before it is collected.

    The start-up objects live as long as the process, yet every full collection walked them all:
    ~200 ms of CPU, which the search that triggered it waited for (the first searches of a fresh
    process fill the record and token caches enough to trigger one). And a search holds a few
    thousand objects for its ~40 ms (region hits, records, route lists): at 700, three young
    collections a search promoted them, so full collections came every round of searches, where
    a search allocates about as many objects as it frees and with 10,000 none runs at all once the
    caches are full (docs/performance.md). Cyclic garbage is still collected, a little later; a frozen
    object that later becomes garbage is still freed by its reference count (only a cycle among
    frozen objects would stay until the process ends)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


class Imgrag:
    """The application over one index.

    Args:
        settings: defaults to the process settings (``IMGRAG_*`` and ``imgrag.toml``).
        store: an already open store (tests, benchmarks); default: opened from the settings on first use.
        runtime: share an existing runtime (and so its loaded models) instead of building one.
        index_roots: folders a *remote* caller may index from (``index_images``), and the base of
            the paths a caller who is not the operator is shown; None: anywhere (the local
            operator's CLI). Files found under a root whose real path leaves every root are skipped.
        page_cache_mb: decoded pages kept for crops and OCR re-reads.
        audit: where writes (and the MCP server's calls) are recorded; default: from the settings.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        store: IndexStore | None = None,
        runtime: Runtime | None = None,
        index_roots: Sequence[Path] | None = None,
        page_cache_mb: int = 256,
        audit: AuditLog | None = None,
    ) -> None:
        self.rt = runtime or Runtime(settings, store=store)
        self._audit = audit
        self._audit_lock = threading.Lock()
        self.searcher = Searcher(self.rt)
        self.index_roots = [Path(p).expanduser().resolve() for p in index_roots] if index_roots is not None else None
        self._pages = _PageCache(page_cache_mb * 2**20)
        self._thumbs: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._thumbs_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self.ocr_gate = FairGate("OCR", OCR_SLOTS, PER_PRINCIPAL_CALLS, MAX_WAITING_CALLS, MAX_WAIT_SECONDS)
        self.pixel_gate = FairGate("image", PIXEL_SLOTS, PER_PRINCIPAL_CALLS, MAX_WAITING_CALLS, MAX_WAIT_SECONDS)

    # -- the runtime ---------------------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        return self.rt.settings

    @property
    def store(self) -> IndexStore:
        return self.rt.store

    @property
    def audit(self) -> AuditLog:
        """The audit log of this index (opened on first use; ``IMGRAG_AUDIT=off``: records nothing)."""
        if self._audit is None:
            with self._audit_lock:
                if self._audit is None:
                    self._audit = open_audit(self.settings)
        return self._audit

    def warm_up(self) -> None:
        """Open the store and load the models reads use (query embedders, OCR for re-reads), so the
        first call does not pay for them; indexing loads the rest (``Runtime.load_models``). The
        image embedder is warmed through a query, not ``load``: a query needs its text side only, and
        the bridge's image backbone (torch, ~650 MB resident) is for indexing."""
        self.rt.warm_up()
        for part in (self.rt.text_embedder, self.rt.ocr):
            load = getattr(part, "load", None)
            if callable(load):
                load()
        self.rt.image_embedder.embed_queries(["warm-up"])
        if self.settings.translate_query:
            from .translate import dictionary

            dictionary(self.settings.cache_dir)  # seconds to read; the first translated query would pay them
        settle_gc()

    def close(self) -> None:
        """Close the store and the audit log's connection; the next call opens them again."""
        store, self.rt._store = self.rt._store, None
        if store is not None:
            store.close()
        if self._audit is not None:
            self._audit.close()  # reopens on the next record

    # -- reads ---------------------------------------------------------------------------------
    def search(self, req: SearchRequest, principal: Principal) -> SearchResult:
        """Hybrid search; the request's k, offset and query length are checked against the limits.
        Without PII clearance: personal values left out of the query, hits masked (:mod:`.redaction`)."""
        if principal.sees_pii:
            return self.searcher.search(req, principal)

        def probe(terms: str) -> list[ImageRecord]:
            hits = self.store.bm25(terms, 50, Filters(has_pii=True), principal)
            return list(self._records([h.image_id for h in hits], principal).values())

        pin = getattr(self.store, "pinned", None)  # the probe, the search and the hits' records read one version
        with pin() if pin is not None else nullcontext():
            return redaction.guarded_search(
                req, lambda r: self.searcher.search(r, principal), probe, lambda ids: self._records(ids, principal)
            )

    def _record(self, image_id: str, principal: Principal) -> ImageRecord:
        """The stored record, unmasked: for the facade's own work (pixels, masking); never returned
        to a caller as is."""
        rec = self.store.get(image_id, principal) if len(image_id) <= MAX_ID_CHARS else None
        if rec is None:
            raise NotFoundError.image(image_id)
        return rec

    def record_for(self, image_id: str, principal: Principal) -> ImageRecord:
        """A record as ``principal`` may see it (:meth:`get`: personal data masked unless they are
        cleared, DICOM patient tags included), with links only to pages they may read."""
        rec = self.get(image_id, principal)
        links = {ln.image_id for ln in self.links(rec, principal)}
        return rec.model_copy(update={"links": [ln for ln in rec.links if ln.image_id in links]})

    def links(self, rec: ImageRecord, principal: Principal) -> list[LinkedItem]:
        """The images / documents linked to a record that ``principal`` may read."""
        return visible_links(self.store, [rec], principal)[rec.image_id]

    def _records(self, image_ids: Sequence[str], principal: Principal) -> dict[str, ImageRecord]:
        return self.store.get_many([i for i in image_ids if len(i) <= MAX_ID_CHARS], principal)

    @staticmethod
    def shown(rec: ImageRecord, principal: Principal) -> ImageRecord:
        """A record as ``principal`` may see it: personal data masked unless they are cleared."""
        return rec if principal.sees_pii else mask_record(rec)

    def get(self, image_id: str, principal: Principal) -> ImageRecord:
        return self.shown(self._record(image_id, principal), principal)

    def get_many(self, image_ids: Sequence[str], principal: Principal) -> dict[str, ImageRecord]:
        return {k: self.shown(r, principal) for k, r in self._records(image_ids, principal).items()}

    def list_images(self, principal: Principal, filters: Filters, *, offset: int = 0, limit: int = 100) -> list[ImageRecord]:
        """Records the caller can see that match ``filters`` (e.g. the pages of one document)."""
        recs = self.store.list_images(principal, filters, offset=offset, limit=min(limit, 1000))
        return [self.shown(r, principal) for r in recs]

    def regions(self, image_id: str, principal: Principal) -> list[RegionHit]:
        """The indexed regions (grid tiles, text blocks) of one image the caller can see."""
        rec = self._record(image_id, principal)
        regions = self.store.regions_of([rec.image_id])
        return regions if principal.sees_pii else redaction.mask_regions(regions, {rec.image_id: rec})

    def stats(self, principal: Principal) -> Stats:
        return self.store.stats(principal)

    def versions(self) -> list[Version]:
        return self.store.versions()

    def current_version(self) -> int | None:
        try:
            vs = self.store.versions()
        except ImgragError:
            return None
        return vs[-1].version if vs else None

    # -- pixels --------------------------------------------------------------------------------
    def page(self, rec: ImageRecord) -> np.ndarray:
        """The page as indexed, in original-image coordinates (W×H of the record), unredacted: what
        a caller receives is cut from ``_page_for``, which blacks out personal data for them."""
        s = self.settings
        try:
            st = os.stat(rec.path)
            stamp: tuple[str, int, int] | None = (rec.doc_id, st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp is not None and (cached := self._pages.get(rec.image_id, stamp)) is not None:
            return cached
        img = load_page(rec.path, rec.page, max_pixels=s.max_pixels, pdf_dpi=s.pdf_dpi, doc_id=rec.doc_id)
        if img.shape[:2] != (rec.height, rec.width):
            # A PDF rendered at another IMGRAG_PDF_DPI than at indexing: keep the indexed coordinates valid.
            img = np.asarray(Image.fromarray(img).resize((rec.width, rec.height), Image.Resampling.LANCZOS))
        if stamp is not None:
            self._pages.put(rec.image_id, stamp, img)
        return img

    def _page_for(self, rec: ImageRecord, principal: Principal) -> np.ndarray:
        """``page`` for a caller: personal data blacked out unless they are cleared; one who is not
        the operator learns neither the server's paths nor advice only the operator can follow when
        the file cannot be read."""
        try:
            page = self.page(rec)
            return page if principal.sees_pii else redaction.redact_page(page, rec)
        except ImgragError as e:
            if principal.all_access:
                raise
            raise type(e)(
                e.message.replace(rec.path, self.display_path(rec.path)),
                "the server cannot read this image's file now; tell whoever runs the server (they can restore or re-index it)",
            ) from None

    def thumbnail(self, rec: ImageRecord, side: int, principal: Principal) -> bytes:
        """A PNG thumbnail of a record the caller has already been allowed to read (redacted for
        a caller without clearance: the cache key says which, so neither is served to the other)."""
        key = (rec.image_id + f"@{side}" + ("" if principal.sees_pii else "/redacted"), rec.doc_id)
        with self._thumbs_lock:
            if key in self._thumbs:
                self._thumbs.move_to_end(key)
                return self._thumbs[key]
        if not principal.sees_pii:  # ``rec`` may be the masked copy, whose path is for showing only
            rec = self._record(rec.image_id, principal)
        with self.pixel_gate.slot(principal):
            data = imaging.thumbnail(self._page_for(rec, principal), side)
        with self._thumbs_lock:
            self._thumbs[key] = data
            while len(self._thumbs) > 1024:
                self._thumbs.popitem(last=False)
        return data

    def image_png(self, image_id: str, principal: Principal, budget: PayloadBudget = STDIO_BUDGET) -> bytes:
        """The whole page as PNG, downscaled to the resource limits and the transport's budget."""
        rec = self._record(image_id, principal)
        with self.pixel_gate.slot(principal):
            page = self._page_for(rec, principal)
            return imaging.fit_png(Image.fromarray(page), MAX_RESOURCE_SIDE, budget.resource_bytes)[0]

    def crop(
        self,
        image_id: str,
        bbox: Sequence[float],
        principal: Principal,
        *,
        units: Literal["px", "relative"] = "px",
        scale: float = 1.0,
        enhance: bool = False,
        budget: PayloadBudget = STDIO_BUDGET,
    ) -> Crop:
        """Part of a page as PNG, zoomed; the box is clipped to the image and the one used returned.
        A PNG over the transport's budget is downscaled until it fits (and the note says so)."""
        if not 1.0 <= scale <= MAX_CROP_SCALE:
            raise ImgragError(f"scale {scale:g} is out of range", f"use 1 to {MAX_CROP_SCALE:g}")
        rec = self._record(image_id, principal)
        req = imaging.to_pixels(bbox, units, rec.width, rec.height)
        box, clipped = imaging.clamp_box(req, rec.width, rec.height)
        with self.pixel_gate.slot(principal):
            data, img, applied, note = imaging.render_crop(
                self._page_for(rec, principal), box, scale, do_enhance=enhance, max_side=MAX_CROP_SIDE, max_bytes=budget.crop_bytes
            )
        if clipped:
            note = f"bbox clipped to the image ({rec.width}x{rec.height})" + ("; " + note if note else "")
        return Crop(
            image_id=rec.image_id,
            bbox=box,
            requested_bbox=tuple(round(v, 2) for v in req),  # type: ignore[arg-type]
            clipped=clipped,
            image_width=rec.width,
            image_height=rec.height,
            scale=round(applied, 4),
            requested_scale=scale,
            width=img.width,
            height=img.height,
            enhanced=enhance,
            png=data,
            note=note,
        )

    def ocr_region(
        self,
        image_id: str,
        principal: Principal,
        bbox: Sequence[float] | None = None,
        *,
        units: Literal["px", "relative"] = "px",
        scale: float | Literal["auto"] = "auto",
        on_step: Callable[[str, int], None] | None = None,
    ) -> RegionText:
        """OCR a region again, upscaled first (``auto``: until its text lines are ~32 px tall).
        Without clearance the region is read from the redacted page and what OCR reads is masked
        again (stored values and fresh detections): a re-read never returns what a crop hides.
        ``on_step(message, steps)`` hears of each of its 3 steps (a server's progress notifications)."""
        step = on_step or (lambda message, total: None)
        if scale != "auto" and not 1.0 <= float(scale) <= MAX_CROP_SCALE:
            raise ImgragError(f"scale {scale} is out of range", f"use 'auto' or 1 to {MAX_CROP_SCALE:g}")
        rec = self._record(image_id, principal)
        if bbox is None:
            box, clipped = (0, 0, rec.width, rec.height), False
        else:
            box, clipped = imaging.clamp_box(imaging.to_pixels(bbox, units, rec.width, rec.height), rec.width, rec.height)
        x0, y0, x1, y1 = box
        w, h = x1 - x0, y1 - y0
        if scale == "auto":
            heights = [
                ln.bbox[3] - ln.bbox[1]
                for ln in rec.ocr_lines
                if x0 <= (ln.bbox[0] + ln.bbox[2]) / 2 <= x1 and y0 <= (ln.bbox[1] + ln.bbox[3]) / 2 <= y1
            ]
            zoom = imaging.auto_ocr_scale(heights, box, target=OCR_TARGET_TEXT_PX, max_scale=MAX_CROP_SCALE)
        else:
            zoom = float(scale)
        zoom = max(1.0, min(zoom, (MAX_OCR_PIXELS / (w * h)) ** 0.5))
        engine = self.rt.ocr
        with self.ocr_gate.slot(principal):
            step(f"reading the page ({w}x{h} px region at scale {zoom:.2f})", 3)
            canvas, pad, (fx, fy) = imaging.ocr_canvas(self._page_for(rec, principal), box, zoom)
            step(f"recognising text in {canvas.shape[1]}x{canvas.shape[0]} px", 3)
            found = engine.recognize(canvas)
        lines: list[OcrLine] = []
        for ln in found:
            if not ln.text.strip():
                continue
            bx0, by0, bx1, by1 = (float(v) for v in ln.bbox)
            ob: BBox = (
                min(max(x0 + (bx0 - pad) / fx, x0), x1),
                min(max(y0 + (by0 - pad) / fy, y0), y1),
                min(max(x0 + (bx1 - pad) / fx, x0), x1),
                min(max(y0 + (by1 - pad) / fy, y0), y1),
            )
            lines.append(OcrLine(text=ln.text, bbox=ob, confidence=float(getattr(ln, "confidence", 0.0))))
        lines.sort(key=lambda ln: ((ln.bbox[1] + ln.bbox[3]) / 2, ln.bbox[0]))
        if not principal.sees_pii:
            lines = redaction.mask_lines(lines, rec.pii)
        step(f"{len(lines)} line(s) read", 3)
        return RegionText(
            image_id=rec.image_id,
            bbox=box,
            clipped=clipped,
            scale=round(fx, 4),
            engine=str(getattr(engine, "name", type(engine).__name__)),
            lines=lines,
        )

    # -- writes --------------------------------------------------------------------------------
    def display_path(self, path: str) -> str:
        """How a caller who is not the operator sees a server path: relative to the index root it
        lies under, else just the file name (never the server's folder layout)."""
        p = Path(path)
        for root in self.index_roots or ():
            if root in p.parents:
                return p.relative_to(root).as_posix()
        return p.name

    def root_path(self, relative: str) -> str:
        """The server path a caller who is not the operator means by ``relative`` (a path as
        :meth:`display_path` shows it), e.g. for a ``path_prefix`` filter: under the first index root."""
        rel = Path(relative)
        if not self.index_roots:
            raise ImgragError("this server has no index root to resolve paths against", "filter by doc_id or tags instead of path_prefix")
        if rel.is_absolute() or ".." in rel.parts:
            raise ImgragError(f"{relative!r} is not a relative path under the index root", "give it as get_metadata shows source, e.g. contracts/2023/")
        joined = (self.index_roots[0] / rel).as_posix()
        return joined + "/" if relative.endswith("/") else joined

    def _in_roots(self, p: Path) -> bool:
        return any(p == r or r in p.parents for r in self.index_roots or ())

    def check_paths(self, paths: Sequence[str], caller: Principal | None = None) -> list[str]:
        """With index roots (a remote caller): absolute paths, each inside one of the roots; without
        (the local operator): the paths as given. A ``caller`` who is not the operator is not told
        where the roots are on the server."""
        for raw in paths:
            if "\x00" in raw or len(raw) > MAX_PATH_CHARS:
                raise ImgragError(
                    f"path {raw[:80]!r} contains a NUL character or is over {MAX_PATH_CHARS} characters", "name a real file or folder"
                )
        if self.index_roots is None:
            return [str(Path(raw).expanduser()) if raw else raw for raw in paths]
        out: list[str] = []
        for raw in paths:
            if raw == "":  # not the first root (Path("") is "."): discover reports it as an empty path
                out.append(raw)
                continue
            p = Path(raw).expanduser()
            if not p.is_absolute():
                p = self.index_roots[0] / p
            named = p
            try:
                p = p.resolve()
            except (OSError, RuntimeError):
                # A symbolic link loop has no real path. When the link itself lies in a root, keep it:
                # indexing reports it on its own line like any bad file and indexes the other paths
                # (it used to fail the whole call, naming the server's folders to the caller).
                try:
                    parent = p.parent.resolve()
                except (OSError, RuntimeError):
                    parent = None
                if parent is None or p.name in ("", ".", "..") or not p.is_symlink():
                    raise ImgragError(f"cannot resolve {raw}: a symbolic link loop", "name a file or folder that exists") from None
                p = parent / p.name
            if not self._in_roots(p) and ".." not in named.parts and self._in_roots(named):
                # A link inside a root that leads out of it (or a path through such a link): one
                # file's problem, reported on its own line without its target and never opened
                # (discover), as when a folder holds it; it used to refuse the whole call.
                p = named
            if not self._in_roots(p):
                if caller is not None and not caller.all_access:
                    raise AccessDeniedError(
                        f"{raw} is outside the folders this server may index",
                        "give a path relative to the index root (as get_metadata shows source), or ask the server's operator",
                    )
                roots = ", ".join(str(r) for r in self.index_roots)
                raise AccessDeniedError(
                    f"{raw} is outside the folders this server may index ({roots})",
                    "index files under those folders (the server's operator chooses them with --index-root)",
                )
            out.append(str(p))
        return out

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """One write at a time: in this process (the lock), and on the index (the store's writer
        lock, which also refuses other processes on the embedded backend and records what a killed
        writer left before this write begins)."""
        if not self._write_lock.acquire(blocking=False):
            raise ImgragError("another write to this index is still running", "wait for it to finish, then try again")
        try:
            with self.store.writer():
                yield
        finally:
            self._write_lock.release()

    def index(
        self, paths: Sequence[str], opts: IndexOptions | None = None, progress: ProgressFn | None = None
    ) -> IndexSummary:
        """Index files and folders (recursive); unchanged files are skipped, changed ones replaced.

        With index roots, files whose real path leaves every root (symbolic links) are skipped and
        reported without being opened. A caller who is not the operator (``opts.principal``) may
        only give an ACL that admits them; without one their new pages are visible to them alone.
        """
        from .pipeline import Indexer, IndexOptions

        opts = opts or IndexOptions()
        args = {"paths": [str(p) for p in paths], "acl": opts.acl, "meta": opts.meta, "tags": opts.tags}
        with recorded_write(self.audit, "index", opts.principal or OPERATOR, args) as w:
            checked = self.check_paths(paths, opts.principal)
            if self.index_roots is not None:
                opts = replace(opts, roots=list(self.index_roots))
            caller = opts.principal
            if caller is not None and not caller.all_access and opts.acl and not caller.admits(opts.acl):
                raise ImgragError(
                    f"acl {opts.acl} does not include you ({caller.name or ', '.join(caller.groups)})",
                    "add your name or one of your groups to acl, or leave acl out: the images are then visible to you alone",
                )
            with self._writing():
                summary = Indexer(self.rt).index(checked, opts, progress)
            w.image_ids = [*summary.indexed_ids, *summary.updated_ids]
            w.detail = {
                **summary.model_dump(include={"indexed", "unchanged", "duplicates", "replaced", "updated_metadata", "version"}),
                "failed": len(summary.failed),
                **({"acl": opts.acl} if opts.acl is not None else {}),  # an ACL change: who may now see them
                "meta_given": opts.meta is not None,
                "tags_given": opts.tags is not None,
            }
            return summary

    def delete(self, image_ids: Sequence[str], principal: Principal = OPERATOR) -> Deletion:
        """Soft-delete the ids the caller can see (hidden at once; purge removes, rollback restores)."""
        with recorded_write(self.audit, "delete", principal, {"image_ids": list(image_ids)}) as w:
            visible = set(self._records(image_ids, principal)) if not principal.all_access else set(image_ids)
            known = self.store.live_ids([i for i in image_ids if i in visible])
            unknown = [i for i in dict.fromkeys(image_ids) if i not in known]
            w.detail = {"deleted": 0, "unknown": len(unknown)}
            if not known:
                return Deletion(deleted=[], unknown=unknown)
            with self._writing():
                n = self.store.soft_delete(sorted(known))
                version = self.store.commit("delete", {"deleted": n}).version if n else None
            w.image_ids = sorted(known)
            w.detail.update(deleted=n, version=version)
            return Deletion(deleted=sorted(known), unknown=unknown, version=version)

    def prune(self, folders: Sequence[str | Path]) -> Pruned:
        """``imgrag index FOLDER --prune``: soft-delete the live pages whose file lay under one of
        ``folders`` and is gone (:mod:`indexing.prune`), the way :meth:`delete` does (one version,
        undone by ``rollback``). Folders that are missing, empty or not fully listable are refused."""
        from .prune import plan_prune

        plan = plan_prune(self.store, folders)
        pruned = Pruned(refused=[PruneRefusal(folder=f, reason=r) for f, r in plan.refused])
        ids = [i for page_ids in plan.gone.values() for i in page_ids]
        if ids:
            d = self.delete(ids)
            done = set(d.deleted)
            pruned.files = {p: n for p, page_ids in plan.gone.items() if (n := sum(i in done for i in page_ids))}
            pruned.pages, pruned.version = len(d.deleted), d.version
        return pruned

    def ids_for_path(self, path: str | Path) -> list[str]:
        """Live image ids indexed from one file (every page of a PDF)."""
        return self.store.live_ids_for_path(str(Path(path).expanduser().resolve()))

    def purge(self) -> tuple[int, int | None]:
        """Physically remove soft-deleted images; returns (count, new version or None)."""
        with recorded_write(self.audit, "purge", OPERATOR, {}) as w:
            with self._writing():
                n = self.store.purge()
                version = self.store.commit("purge", {"purged": n}).version if n else None
            w.detail = {"purged": n, "version": version}
            return n, version

    def rollback(self, version: int) -> Version:
        """Restore an earlier version (recorded as a new version, so it can be undone)."""
        with recorded_write(self.audit, "rollback", OPERATOR, {"version": version}) as w:
            with self._writing():
                v = self.store.rollback(version)
            w.detail = {"to": version, "version": v.version}
            return v

    def reembed(self, progress: Callable[[str], None] | None = None) -> ReembedSummary:
        """Re-embed the index into the configured image space from stored features (``imgrag align``)."""
        from .align import reembed_index

        with recorded_write(self.audit, "reembed", OPERATOR, {"adapter": str(self.settings.adapter)}) as w:
            with self._writing():
                summary = reembed_index(self.rt, progress)
            w.detail = summary.model_dump(include={"images", "old_image_space", "new_image_space", "version"})
            return summary

    def with_adapter(self, adapter: Path) -> Imgrag:
        """A facade over the same index whose image embedder is ``aligned`` with ``adapter``."""
        s = self.settings.model_copy(update={"image_embedder": "aligned", "adapter": Path(adapter).expanduser().resolve()})
        return Imgrag(s, index_roots=self.index_roots, audit=self.audit)

    def __repr__(self) -> str:
        return f"Imgrag(backend={self.settings.backend!r}, home={str(self.settings.home)!r})"

