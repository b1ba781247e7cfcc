"""Query bodies: the filters (ACL inside, always), kNN and BM25 clauses, and reading hits back."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ...text import CJK, MAX_DATE, MIN_DATE, normalize
from ..base import Filters, Principal, RegionHit, WeightedTerms, region_kind

if TYPE_CHECKING:
    from ...config import Settings

T = TypeVar("T")

_CJK_RUN = re.compile(rf"[{CJK}]{{2,}}")


def filter_clauses(filters: Filters, principal: Principal) -> list[dict[str, Any]]:
    """The filter for one principal and one set of filters, as ``bool.filter`` clauses."""
    out: list[dict[str, Any]] = [{"term": {"current": True}}, {"term": {"deleted": False}}]
    if not principal.all_access:
        public = {"bool": {"must_not": [{"exists": {"field": "acl"}}]}}
        toks = principal.tokens()
        out.append({"bool": {"should": [public, {"terms": {"acl": toks}}], "minimum_should_match": 1}} if toks else public)
    if filters.date_from or filters.date_to:
        lo = max(filters.date_from or MIN_DATE, MIN_DATE)
        hi = min(filters.date_to or MAX_DATE, MAX_DATE)
        if lo > hi:
            out.append({"match_none": {}})
        else:
            out.append({"range": {"dates": {"gte": lo.isoformat(), "lte": hi.isoformat(), "relation": "within"}}})
    if filters.quality:
        out.append({"terms": {"quality": list(filters.quality)}})
    if filters.tags:
        out.append({"terms": {"tags": list(filters.tags)}})
    for key, value in sorted(filters.meta.items()):
        out.append({"term": {"meta_kv": f"{key}={value}"}})
    if filters.path_prefix:
        out.append({"prefix": {"path": filters.path_prefix}})
    if filters.doc_id:
        out.append({"term": {"doc_id": filters.doc_id}})
    if filters.has_seal is not None:
        out.append({"term": {"has_seal": filters.has_seal}})
    if filters.has_pii is not None:
        # must_not for false: rows written before the field existed have none and hold no findings
        pii = {"term": {"has_pii": True}}
        out.append(pii if filters.has_pii else {"bool": {"must_not": [pii]}})
    if filters.image_ids is not None:
        out.append({"terms": {"image_id": list(filters.image_ids)}} if filters.image_ids else {"match_none": {}})
    return out


def bool_filter(clauses: list[dict[str, Any]]) -> dict[str, Any]:
    return {"bool": {"filter": clauses}}


MAX_CANDIDATES = 10_000  # Elasticsearch's limit on num_candidates


def knn_clause(
    settings: Settings, field: str, vector: list[float], k: int, filters: Filters, principal: Principal,
    num_candidates: int | None = None,
) -> dict[str, Any]:
    """A kNN clause with the ACL and filters inside (pre-filtering, never a post-filter);
    ``num_candidates`` (default: the page kNN setting) is raised to 2 × k and capped at the limit."""
    clause: dict[str, Any] = {
        "field": field,
        "query_vector": vector,
        "k": k,
        "num_candidates": min(MAX_CANDIDATES, max(num_candidates or settings.es_num_candidates, 2 * k)),
        "filter": bool_filter(filter_clauses(filters, principal)),
    }
    oversample = settings.es_rescore_oversample
    if oversample >= 1 and settings.es_index_options != "hnsw":
        # quantized graphs score approximately; re-rank the candidates on the raw float vectors
        clause["rescore_vector"] = {"oversample": oversample}
    return clause


def bm25_query(
    query: str, filters: Filters, principal: Principal, extra: Sequence[WeightedTerms] = ()
) -> dict[str, Any]:
    """BM25 over ``fts``; each CJK run of the query also as a phrase, so "盖章" beats 盖 … 章.
    ``extra`` terms (a translation) match at their weight, phrases included, and on their own
    find a page too."""
    parts = [(normalize(query), 1.0)] + [(normalize(e.text), e.weight) for e in extra]
    matches: list[dict[str, Any]] = []
    phrases: list[dict[str, Any]] = []
    for q, w in parts:
        if not q:
            continue
        boost = {} if w == 1.0 else {"boost": w}
        matches.append({"match": {"fts": {"query": q, **boost}}})
        phrases += [{"match_phrase": {"fts": {"query": run, **boost}}} for run in dict.fromkeys(_CJK_RUN.findall(q))]
    must = matches if len(matches) == 1 else [{"bool": {"should": matches, "minimum_should_match": 1}}]
    return {"bool": {"must": must, "should": phrases, "filter": filter_clauses(filters, principal)}}


def hit_image_id(hit: dict[str, Any]) -> str:
    return str(hit["_id"]).rsplit("@", 1)[0]


def dedup(hits: Iterable[T], key: Callable[[T], str]) -> list[T]:
    """A page has one current row; should a crashed write leave two, reads show the page once."""
    seen: set[str] = set()
    out = []
    for h in hits:
        k = key(h)
        if k not in seen:
            seen.add(k)
            out.append(h)
    return out


def region_hit(image_id: str, kind_path: str, src: dict[str, Any], score: float) -> RegionHit:
    return RegionHit(
        region_id=src["region_id"],
        image_id=image_id,
        kind="tile" if kind_path == "tiles" else region_kind(src.get("kind", "block"), src.get("label", "")),
        label=src.get("label", ""),
        bbox=tuple(float(x) for x in src["bbox"]),  # type: ignore[arg-type]
        text=src.get("text", ""),
        score=score,
        pii_kinds=src.get("pii_kinds") or [],
    )


def page_hit(image_id: str, kind: str, score: float) -> RegionHit:
    """A page ranked by its best region without naming it (an empty ``region_id``, no box)."""
    return RegionHit(
        region_id="", image_id=image_id, kind="tile" if kind == "tile" else "block", label="",
        bbox=(0.0, 0.0, 0.0, 0.0), text="", score=score,
    )
