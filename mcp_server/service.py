"""What each tool and resource does, as plain synchronous methods over a ``Runtime``.

Kept free of MCP types so the logic is testable without a session, and so the server module only
wires transports, schemas and errors. Every read goes through ``store.get(..., principal)``: an id
the caller may not see is indistinguishable from one that does not exist.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from imgrag.indexing.errors import ImgragError, NotFoundError
from imgrag.indexing.loader import load_page
from imgrag.indexing.runtime import Runtime
from imgrag.indexing.search import Searcher, SearchRequest
from imgrag.indexing.stores.base import Filters, ImageRecord, Principal

from . import imaging
from .tools import (
    MAX_CROP_BYTES,
    MAX_CROP_SCALE,
    MAX_CROP_SIDE,
    MAX_OCR_PIXELS,
    MAX_OFFSET,
    MAX_RESOURCE_BYTES,
    MAX_RESOURCE_SIDE,
    MAX_TEXT_CHARS,
    MAX_THUMBNAILS,
    OCR_TARGET_TEXT_PX,
    THUMB_SIDE,
    CropRegionInput,
    CropRegionOutput,
    DeleteImageInput,
    DeleteImageOutput,
    GetMetadataInput,
    IndexFailure,
    IndexImagesInput,
    IndexImagesOutput,
    MetadataOutput,
    OcrLineOut,
    OcrRegionInput,
    OcrRegionOutput,
    OcrSummary,
    Region,
    SearchHit,
    SearchImagesInput,
    SearchImagesOutput,
)

log = logging.getLogger("imgrag.mcp")

RESOURCE_THUMB_SIDE = 256


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


def _line_out(text: str, bbox: tuple[float, ...], confidence: float) -> OcrLineOut:
    return OcrLineOut(text=text, bbox=tuple(round(float(v), 1) for v in bbox), confidence=round(float(confidence), 4))  # type: ignore[arg-type]


class ImgragService:
    """The tools' behaviour for one ``Runtime``; thread-safe, one per server process."""

    def __init__(
        self,
        rt: Runtime,
        *,
        index_roots: list[Path] | None = None,
        page_cache_mb: int = 256,
    ) -> None:
        self.rt = rt
        self.searcher = Searcher(rt)
        self.index_roots = [p.expanduser().resolve() for p in index_roots] if index_roots is not None else None
        self._pages = _PageCache(page_cache_mb * 2**20)
        self._thumbs: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._thumbs_lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._index_lock = threading.Lock()

    # -- shared helpers ------------------------------------------------------------------------
    def model(self, name: str) -> Any:
        """A lazily loaded model (``ocr``, ``text_embedder``, ``image_embedder``), loaded once even
        when the background warm-up and a first request ask for it at the same time."""
        if name in self.rt.__dict__:
            return self.rt.__dict__[name]
        with self._model_lock:
            return getattr(self.rt, name)

    def warm_up(self) -> None:
        """Open the store and load the models, so the first real call does not pay for it."""
        _ = self.rt.store
        for name in ("text_embedder", "image_embedder", "ocr"):
            self.model(name)

    def record(self, image_id: str, principal: Principal) -> ImageRecord:
        rec = self.rt.store.get(image_id, principal)
        if rec is None:
            raise NotFoundError(f"no image with id {image_id!r}", "use an image_id returned by search_images")
        return rec

    def page(self, rec: ImageRecord) -> np.ndarray:
        """The page as indexed, in original-image coordinates (W×H of the record)."""
        s = self.rt.settings
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

    def _thumbnail(self, rec: ImageRecord, side: int) -> bytes:
        key = (rec.image_id + f"@{side}", rec.doc_id)
        with self._thumbs_lock:
            if key in self._thumbs:
                self._thumbs.move_to_end(key)
                return self._thumbs[key]
        data = imaging.thumbnail(self.page(rec), side)
        with self._thumbs_lock:
            self._thumbs[key] = data
            while len(self._thumbs) > 1024:
                self._thumbs.popitem(last=False)
        return data

    # -- search_images -------------------------------------------------------------------------
    def search(self, inp: SearchImagesInput, principal: Principal) -> tuple[SearchImagesOutput, list[bytes]]:
        filters = inp.filters or Filters()
        key = imaging.query_key(
            {"q": (inp.query or "").strip(), "f": filters.model_dump(mode="json"), "m": inp.mode, "s": inp.similar_to}
        )
        offset = imaging.decode_cursor(inp.cursor, key) if inp.cursor else 0
        if offset > MAX_OFFSET:
            raise ImgragError(f"paging past hit {MAX_OFFSET} is not supported", "narrow the search with filters or a more specific query")
        if inp.k > self.rt.settings.max_k:
            raise ImgragError(f"k={inp.k} is over the limit of {self.rt.settings.max_k}", "ask for fewer hits and page with next_cursor")
        if inp.query and inp.query.strip() and inp.mode != "keyword":
            self.model("text_embedder")
            self.model("image_embedder")
        req = SearchRequest(query=inp.query, k=inp.k, offset=offset, filters=filters, mode=inp.mode, similar_to=inp.similar_to)
        res = self.searcher.search(req, principal)
        hits = [
            SearchHit(
                image_id=h.image_id,
                score=h.score,
                snippet=h.snippet,
                region=Region(bbox=h.region.bbox, kind=h.region.kind, label=h.region.label, text=h.region.text[:500])
                if h.region
                else None,
                doc_id=h.doc_id,
                file=Path(h.path).name,
                page=h.page,
                n_pages=h.n_pages,
                width=h.width,
                height=h.height,
                quality=h.quality,  # type: ignore[arg-type]
                dates=h.dates,
                caption=h.caption,
                routes=h.ranks,
            )
            for h in res.hits
        ]
        more = len(hits) == inp.k and offset + len(hits) < res.candidates and offset + len(hits) <= MAX_OFFSET
        thumbs: list[bytes] = []
        thumb_ids: list[str] = []
        if inp.with_thumbnails and hits:
            recs = self.rt.store.get_many([h.image_id for h in hits[:MAX_THUMBNAILS]], principal)
            for h in hits[:MAX_THUMBNAILS]:
                rec = recs.get(h.image_id)
                if rec is None:
                    continue
                try:
                    thumbs.append(self._thumbnail(rec, THUMB_SIDE))
                    thumb_ids.append(h.image_id)
                except ImgragError as e:
                    log.warning("no thumbnail for %s: %s", h.image_id, e)
        out = SearchImagesOutput(
            query=res.query,
            hits=hits,
            offset=offset,
            candidates=res.candidates,
            next_cursor=imaging.encode_cursor(offset + len(hits), key) if more else None,
            thumbnail_ids=thumb_ids,
            timings_ms=res.timings_ms,
        )
        return out, thumbs

    # -- crop_region ---------------------------------------------------------------------------
    def crop(self, inp: CropRegionInput, principal: Principal) -> tuple[CropRegionOutput, bytes]:
        rec = self.record(inp.image_id, principal)
        req = imaging.to_pixels(inp.bbox, inp.units, rec.width, rec.height)
        box, clipped = imaging.clamp_box(req, rec.width, rec.height)
        page = self.page(rec)
        data, img, applied, note = imaging.render_crop(
            page, box, inp.scale, do_enhance=inp.enhance, max_side=MAX_CROP_SIDE, max_bytes=MAX_CROP_BYTES
        )
        if clipped:
            note = (f"bbox clipped to the image ({rec.width}x{rec.height})" + ("; " + note if note else ""))
        out = CropRegionOutput(
            image_id=rec.image_id,
            bbox=box,
            requested_bbox=tuple(round(v, 2) for v in req),  # type: ignore[arg-type]
            clipped=clipped,
            image_width=rec.width,
            image_height=rec.height,
            scale=round(applied, 4),
            requested_scale=inp.scale,
            width=img.width,
            height=img.height,
            enhanced=inp.enhance,
            png_bytes=len(data),
            note=note,
        )
        return out, data

    # -- ocr_region ----------------------------------------------------------------------------
    def ocr(self, inp: OcrRegionInput, principal: Principal) -> OcrRegionOutput:
        rec = self.record(inp.image_id, principal)
        if inp.bbox is None:
            box, clipped = (0, 0, rec.width, rec.height), False
        else:
            box, clipped = imaging.clamp_box(imaging.to_pixels(inp.bbox, inp.units, rec.width, rec.height), rec.width, rec.height)
        x0, y0, x1, y1 = box
        w, h = x1 - x0, y1 - y0
        if inp.scale == "auto":
            heights = [
                ln.bbox[3] - ln.bbox[1]
                for ln in rec.ocr_lines
                if x0 <= (ln.bbox[0] + ln.bbox[2]) / 2 <= x1 and y0 <= (ln.bbox[1] + ln.bbox[3]) / 2 <= y1
            ]
            scale = imaging.auto_ocr_scale(heights, box, target=OCR_TARGET_TEXT_PX, max_scale=MAX_CROP_SCALE)
        else:
            scale = float(inp.scale)
        scale = max(1.0, min(scale, (MAX_OCR_PIXELS / (w * h)) ** 0.5))
        page = self.page(rec)
        sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
        # Bicubic, not Lanczos: Lanczos ringing around thin strokes costs the recogniser characters and spaces.
        big = cv2.resize(np.ascontiguousarray(page[y0:y1, x0:x1]), (sw, sh), interpolation=cv2.INTER_CUBIC)
        # A small margin in the crop's own border colour: detectors miss glyphs that touch the edge.
        pad = 8
        border = np.concatenate([big[0], big[-1], big[:, 0], big[:, -1]]).reshape(-1, big.shape[2])
        fill = np.median(border, axis=0).astype(np.uint8)
        canvas = np.empty((sh + 2 * pad, sw + 2 * pad, big.shape[2]), np.uint8)
        canvas[:] = fill
        canvas[pad : pad + sh, pad : pad + sw] = big
        engine = self.model("ocr")
        fx, fy = sw / w, sh / h
        lines: list[OcrLineOut] = []
        for ln in engine.recognize(canvas):
            bx0, by0, bx1, by1 = (float(v) for v in ln.bbox)
            ob = (
                min(max(x0 + (bx0 - pad) / fx, x0), x1),
                min(max(y0 + (by0 - pad) / fy, y0), y1),
                min(max(x0 + (bx1 - pad) / fx, x0), x1),
                min(max(y0 + (by1 - pad) / fy, y0), y1),
            )
            if ln.text.strip():
                lines.append(_line_out(ln.text, ob, getattr(ln, "confidence", 0.0)))
        lines.sort(key=lambda ln: ((ln.bbox[1] + ln.bbox[3]) / 2, ln.bbox[0]))
        return OcrRegionOutput(
            image_id=rec.image_id,
            bbox=box,
            clipped=clipped,
            scale=round(fx, 4),
            engine=str(getattr(engine, "name", type(engine).__name__)),
            lines=lines,
            text="\n".join(ln.text for ln in lines),
        )

    # -- get_metadata --------------------------------------------------------------------------
    def metadata(self, inp: GetMetadataInput, principal: Principal) -> MetadataOutput:
        rec = self.record(inp.image_id, principal)
        confs = [ln.confidence for ln in rec.ocr_lines]
        try:
            versions = self.rt.store.versions()
            version = versions[-1].version if versions else None
        except ImgragError:
            version = None
        tables = [
            t if len(t.html) <= MAX_TEXT_CHARS else t.model_copy(update={"html": t.html[:MAX_TEXT_CHARS] + "<!-- truncated -->"})
            for t in rec.tables
        ]
        shown = rec.ocr_lines[: inp.max_ocr_lines]
        return MetadataOutput(
            image_id=rec.image_id,
            doc_id=rec.doc_id,
            source=rec.path,
            page=rec.page,
            n_pages=rec.n_pages,
            format=rec.format,
            width=rec.width,
            height=rec.height,
            dpi=rec.dpi,
            file_size=rec.file_size,
            quality=rec.quality,
            quality_stats=rec.quality_stats,
            enhancements=rec.enhancements,
            ocr_summary=OcrSummary(
                lines=len(rec.ocr_lines),
                chars=len(rec.ocr_text),
                mean_confidence=round(sum(confs) / len(confs), 4) if confs else None,
                engine=rec.models.get("ocr", ""),
            ),
            ocr_lines=[_line_out(ln.text, ln.bbox, ln.confidence) for ln in shown],
            ocr_lines_omitted=len(rec.ocr_lines) - len(shown),
            ocr_text=rec.ocr_text[:MAX_TEXT_CHARS],
            ocr_text_truncated=len(rec.ocr_text) > MAX_TEXT_CHARS,
            layout=rec.layout,
            tables=tables,
            seals=rec.seals,
            dates=rec.dates,
            has_pii=rec.has_pii,
            pii=rec.pii,
            caption=rec.caption,
            meta=rec.meta,
            tags=rec.tags,
            acl=rec.acl,
            indexed_at=rec.indexed_at,
            index_version=version,
            models=rec.models,
        )

    # -- resources -----------------------------------------------------------------------------
    def image_png(self, image_id: str, principal: Principal) -> bytes:
        rec = self.record(image_id, principal)
        return imaging.fit_png(Image.fromarray(self.page(rec)), MAX_RESOURCE_SIDE, MAX_RESOURCE_BYTES)[0]

    def thumbnail_png(self, image_id: str, principal: Principal) -> bytes:
        return self._thumbnail(self.record(image_id, principal), RESOURCE_THUMB_SIDE)

    def collection(self, principal: Principal) -> dict[str, Any]:
        st = self.rt.store.stats(principal)
        return {
            "images": st.images,
            "documents": st.documents,
            "by_quality": st.by_quality,
            "by_format": st.by_format,
            "regions": st.regions,
            "version": st.version,
            "backend": st.backend,
            "models": st.spaces.model_dump() if st.spaces else None,
            "principal": principal.name or ("operator" if principal.all_access else None),
        }

    # -- write tools ---------------------------------------------------------------------------
    def _check_paths(self, paths: list[str]) -> list[str]:
        out: list[str] = []
        for raw in paths:
            p = Path(raw).expanduser()
            if not p.is_absolute():
                base = self.index_roots[0] if self.index_roots else Path.cwd()
                p = base / p
            p = p.resolve()
            if self.index_roots is not None and not any(p == r or r in p.parents for r in self.index_roots):
                roots = ", ".join(str(r) for r in self.index_roots)
                raise ImgragError(f"{raw} is outside the folders this server may index ({roots})", "index files under those folders, or restart the server with --index-root")
            out.append(str(p))
        return out

    def index(self, inp: IndexImagesInput, principal: Principal) -> IndexImagesOutput:
        from imgrag.indexing.pipeline import Indexer, IndexOptions

        paths = self._check_paths(inp.paths)
        if not self._index_lock.acquire(blocking=False):
            raise ImgragError("another index_images call is still running", "wait for it to finish, then call again")
        try:
            log.info("index_images by %s: %s", principal.name or "operator", paths)
            # empty = not given: an index call without an ACL must not make indexed pages public
            # and a caller never changes the ACL or metadata of pages they cannot read
            opts = IndexOptions(meta=inp.meta or None, tags=inp.tags or None, acl=inp.acl or None, principal=principal)
            summary = Indexer(self.rt).index(paths, opts)
        finally:
            self._index_lock.release()
        return IndexImagesOutput(
            indexed=summary.indexed,
            unchanged=summary.unchanged,
            duplicates=summary.duplicates,
            replaced=summary.replaced,
            updated_metadata=summary.updated_metadata,
            failed=[IndexFailure(path=f.path, reason=f.reason) for f in summary.failed],
            seconds=summary.seconds,
            version=summary.version,
            image_ids=summary.indexed_ids[:200],
        )

    def delete(self, inp: DeleteImageInput, principal: Principal) -> DeleteImageOutput:
        rec = self.record(inp.image_id, principal)
        store = self.rt.store
        n = store.soft_delete([rec.image_id])
        version = store.commit("delete", {"deleted": n}).version if n else None
        return DeleteImageOutput(image_id=rec.image_id, deleted=bool(n), version=version)
