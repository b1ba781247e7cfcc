"""What a principal without PII clearance receives: every text masked, every pixel of personal
data blacked out, and a search that cannot be used to test where a value is stored.

The :class:`~indexing.app.Imgrag` facade applies these to each of its outputs (records, search
hits, regions, OCR re-reads, crops, thumbnails, page images), so every entry point — MCP over
stdio or HTTP, the web viewer, the bundled agent, the CLI with ``--as`` — gets the same treatment
from one place. A principal who ``sees_pii`` (an operator, a token with ``"pii": true``) passes
through unchanged. The primitives are in :mod:`indexing.pii`; this module decides where they go.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from .errors import ImgragError
from .models import BBox, OcrLine, PiiFinding
from .pii import find_spans, fold, is_personal_key, mask_name, mask_text, redact_pixels
from .search import Hit, SearchRequest, SearchResult
from .stores.base import ImageRecord, RegionHit

SUSPECT_DIGITS = 6
"""A query term with at least this many digits (or an ``@``) is checked against the stored
personal data of the pages the caller may read: partial or unvalidated values (the last eight
digits of a phone number, a passport number without its label) are not detected in a query."""

_TERM = re.compile(r"[0-9A-Za-z@._+\-]+")


def pixel_boxes(rec: ImageRecord) -> list[BBox]:
    """The boxes to black out on any view of this page: every finding that has one."""
    return [f.bbox for f in rec.pii if f.bbox is not None]


def redact_page(page: np.ndarray, rec: ImageRecord) -> np.ndarray:
    """``page`` (original-image pixels) with the record's findings blacked out; the page itself
    when there are none (no copy)."""
    boxes = pixel_boxes(rec)
    return redact_pixels(page, boxes) if boxes else page


def mask_lines(lines: Sequence[OcrLine], findings: Iterable[PiiFinding] = ()) -> list[OcrLine]:
    """Lines read afresh (``ocr_region``): the stored findings' values masked wherever they
    occur, and detection run on each line with the previous one as its label context."""
    known = list(findings)
    out: list[OcrLine] = []
    prev = ""
    for ln in lines:
        out.append(ln.model_copy(update={"text": mask_text(ln.text, known, before=prev)}))
        prev = ln.text
    return out


def mask_regions(regions: Sequence[RegionHit], records: dict[str, ImageRecord]) -> list[RegionHit]:
    out = []
    for r in regions:
        rec = records.get(r.image_id)
        known = rec.pii if rec is not None else []
        out.append(r.model_copy(update={"text": mask_text(r.text, known, remember=True), "label": mask_text(r.label, known, remember=True)}))
    return out


def mask_hit(hit: Hit, rec: ImageRecord | None) -> Hit:
    known = rec.pii if rec is not None else []

    def m(t: str) -> str:
        return mask_text(t, known, remember=True)  # stored text: a snippet, region, caption, date

    region = hit.region.model_copy(update={"text": m(hit.region.text), "label": m(hit.region.label)}) if hit.region else None
    return hit.model_copy(
        update={"path": mask_name(hit.path, rec) if rec is not None else mask_text(hit.path), "snippet": m(hit.snippet), "region": region, "caption": m(hit.caption), "dates": [m(d) for d in hit.dates]}
    )


def check_filters(req: SearchRequest) -> None:
    """A ``meta`` filter on a personal key, or on a value that is personal data, would answer
    "which page holds this value" for a caller not cleared to see it: refused."""
    for key, value in req.filters.meta.items():
        if is_personal_key(key) or find_spans(value):
            raise ImgragError(
                f"filters.meta {key!r} is personal data, which you are not cleared to search by",
                "filter by other metadata, or ask the server's operator for a token with PII clearance",
            )


def _norm(text: str) -> str:
    return "".join(c for c in fold(text).lower() if c.isalnum())


def suspect_terms(query: str) -> list[str]:
    """Terms of ``query`` that could be (part of) a stored personal value: ``SUSPECT_DIGITS`` or
    more digits, or an ``@``."""
    return [t for t in _TERM.findall(fold(query)) if "@" in t or sum(c.isdigit() for c in t) >= SUSPECT_DIGITS]


def held_in(term: str, records: Iterable[ImageRecord]) -> bool:
    """Whether ``term`` (letters and digits only) is part of a finding on one of ``records``."""
    t = _norm(term)
    return len(t) >= 4 and any(t in _norm(f.text) for rec in records for f in rec.pii)


def drop_terms(query: str, terms: Sequence[str]) -> str:
    """``query`` without the personal values detected in it and without ``terms``."""
    spans = find_spans(query)
    for a, b in ((a, b) for _, a, b in reversed(spans)):
        query = query[:a] + " " + query[b:]
    folded = fold(query)
    for term in terms:
        for m in reversed(list(re.finditer(re.escape(term), folded))):
            query = query[: m.start()] + " " + query[m.end() :]
            folded = folded[: m.start()] + " " + folded[m.end() :]
    return " ".join(query.split())


def detected_in(query: str) -> int:
    return len(find_spans(query))


def guarded_search(
    req: SearchRequest,
    run: Callable[[SearchRequest], SearchResult],
    probe: Callable[[str], list[ImageRecord]],
    records_of: Callable[[list[str]], dict[str, ImageRecord]],
) -> SearchResult:
    """A search for a caller without clearance.

    Personal values are not search terms for them: what the detectors find in the query is dropped,
    and so is every suspect term (:func:`suspect_terms`) that is part of a stored finding on a page
    the caller may read — found by ``probe`` (BM25 over pages with personal data) before the search
    and checked again on the hits after it (a vector route may surface a page BM25 did not). The
    search then runs on what is left, so neither the hits, their order nor the candidate count
    depends on a dropped term; ``note`` says how many were dropped. Snippets, regions, captions
    and dates of the hits are masked.
    """
    check_filters(req)
    query = req.query or ""
    dropped_detected = detected_in(query)
    suspects = [t for t in suspect_terms(drop_terms(query, [])) if t]
    dropped: list[str] = []
    if suspects:
        pages = probe(" ".join(suspects))
        dropped = [t for t in suspects if held_in(t, pages)]
    while True:
        q = drop_terms(query, dropped) if (dropped or dropped_detected) else query
        note = ""
        n = dropped_detected + len(dropped)
        if n:
            note = (
                f"{n} term(s) of the query are personal data, which you are not cleared to search by; "
                "they were left out" + ("" if q or req.similar_to else ", and nothing else was left to search")
            )
        if not q and not req.similar_to:
            return SearchResult(query=None, hits=[], candidates=0, note=note)
        res = run(req.model_copy(update={"query": q or None}))
        records = records_of([h.image_id for h in res.hits])
        late = [t for t in suspects if t not in dropped and held_in(t, records.values())]
        if late:
            dropped.extend(late)
            continue
        hits = [mask_hit(h, records.get(h.image_id)) for h in res.hits]
        return res.model_copy(update={"hits": hits, "note": note})
