"""Multi-route recall, weighted RRF fusion and region re-ranking — the same for every backend.

Routes: ``image`` (query → joint image-text kNN), ``bm25`` (full text over OCR, captions,
metadata), ``text_vector`` (query → OCR-text kNN), ``region_text`` (query → text-block kNN) and
``region_tile`` (query → image-tile kNN). Each route returns a ranked list; RRF adds
``weight / (k + rank)``. The top candidates are then re-ranked by how completely a single region
of the image answers the query, and that region's bbox and OCR line become the hit's evidence.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, Field

from .text import coverage, is_meaningful, keyword_query, latin_words, normalize, query_terms, squash, token_set, tokens
from .embedders.transfer import COLOUR_KEY, EXEMPLAR_STATS, colour_distances
from .errors import ImgragError, NotFoundError
from .limits import MAX_DEPTH, MAX_ID_CHARS, MAX_OFFSET, MAX_QUERY_CHARS, PREFIX_SCAN
from .links import LinkedItem, visible_links
from .lru import LRU
from .models import BBox
from .pii import mask_name, mask_record
from .runtime import Runtime
from .stores.base import (
    OPERATOR, Filters, ImageRecord, ModelSpaces, Principal, Read, RegionHit, RouteHit, WeightedTerms, check_query_space, meta_words,
    page_order, region_order,
)
from .visual import mark_words, marks_text, wants_pictures
from .translate import concepts as translate_concepts
from .translate import dictionary
from .translate import english_reading
from .translate import readings as translate_readings
from .translate import stem as translate_stem
from .translate import translate_query

log = logging.getLogger(__name__)

Route = Literal["image", "bm25", "text_vector", "region_text", "region_tile"]
ALL_ROUTES: tuple[Route, ...] = ("image", "bm25", "text_vector", "region_text", "region_tile")
MODE_ROUTES: dict[str, tuple[Route, ...]] = {
    "hybrid": ALL_ROUTES,
    "vector": ("image", "text_vector", "region_text", "region_tile"),
    "keyword": ("bm25",),
}
LINK_OWN_SHARE = 0.1
VECTOR_ROUTES = {"image", "text_vector", "region_text", "region_tile", "similar"}


class SearchRequest(BaseModel):
    query: str | None = Field(default=None, description="text query, Chinese or English")
    k: int = Field(default=10, ge=1, description="hits to return")
    offset: int = Field(default=0, ge=0, description="hits to skip (paging)")
    depth: int | None = Field(
        default=None, ge=1,
        description="how deep each route reads (default max(50, 3 x k)); a paging cursor fixes it at page 1's, "
        "so every page is a slice of one ranked list",
    )
    block: int | None = Field(
        default=None, ge=1,
        description="how many candidates are re-ranked together (default max(k, 30), k without re-rank); "
        "fixed by a paging cursor like depth",
    )
    filters: Filters = Field(default_factory=Filters)
    mode: Literal["hybrid", "vector", "keyword"] = "hybrid"
    routes: list[Route] | None = Field(default=None, description="override the mode's routes (evaluation)")
    rerank: bool = Field(default=True, description="re-rank candidates by their best region")
    similar_to: str | None = Field(default=None, description="image id: find visually similar images")
    follow_links: bool = Field(
        default=True, description="pages linked to a hit (an X-ray's report, a photo's SOP) rank right below it (IMGRAG_LINK_WEIGHT)"
    )


class RegionOut(BaseModel):
    bbox: BBox
    kind: str
    label: str = ""
    text: str = ""


class Hit(BaseModel):
    image_id: str
    doc_id: str
    path: str
    page: int
    n_pages: int
    score: float
    snippet: str = ""
    region: RegionOut | None = None
    ranks: dict[str, int] = Field(default_factory=dict, description="1-based rank in each route that found it")
    contributions: dict[str, float] = Field(
        default_factory=dict,
        description="what each route added to the fused score (weight × vote / (rrf_k + rank)), and 'rerank': "
        "the re-rank bonus (best region + concepts the page prints); they sum to score",
    )
    quality: str
    dates: list[str] = Field(default_factory=list)
    caption: str = ""
    width: int
    height: int
    links: list[LinkedItem] = Field(default_factory=list, description="linked images / documents the caller may read")


class Recall(BaseModel):
    """What the routes found for one request, before fusion."""

    query: str
    ranked: dict[str, list[str]] = Field(default_factory=dict, description="image ids per route, best first")
    route_scores: dict[str, dict[str, float]] = Field(default_factory=dict)
    region_hits: list[RegionHit] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict, description="ms per route and for embedding the query")
    elapsed_ms: float = Field(default=0.0, description="wall time of the whole recall (routes run concurrently)")
    # Evidence depends on the query, the page and the region hits, never on weights: ranking one
    # recall again (evaluation, tuning) reuses it.
    evidence: dict[str, tuple[RegionOut | None, str, float]] = Field(default_factory=dict, exclude=True)
    # The records of BM25's top hits, read on the search pool while the query was being embedded:
    # most of the pages ``rank`` fuses into its window, which then reads only the rest. ``rank``
    # takes them (a recall kept for tuning does not hold on to them).
    records: dict[str, ImageRecord] = Field(default_factory=dict, exclude=True)


class SearchResult(BaseModel):
    query: str | None
    hits: list[Hit]
    candidates: int
    # Digests of the ranked list's ids before the hits (``[:offset]``) and through them: a paging
    # cursor carries ``through`` and the next page checks it against its own ``before``, so a page
    # is served only as the next slice of the very list the earlier pages came from.
    before: str = ""
    through: str = ""
    timings_ms: dict[str, float] = Field(default_factory=dict)
    note: str = Field(default="", description="what was changed about the query, e.g. personal data left out of it")


# The routes that match a page's words: a picture whose words are only the image model's labels
# gets weight_label_text of their votes (Searcher.rank). Passes: the window is re-read and checked
# at most this often after demoting (each pass reads only the pages that moved into it).
LABEL_ROUTES = ("bm25", "text_vector", "region_text")
# How much of the query (either language) a picture's own words must hold, when they hold no typed
# term, for its text-route votes to count fully: stray OCR off a drawing ("m 圓 貝 三立") holds a
# character of the query's translation by chance.
OWN_WORDS_COVER = 0.5
_LABEL_PASSES = 3


def label_only(rec: ImageRecord, cover: Callable[[str], float], typed: frozenset[str]) -> bool:
    """Whether a picture answers the query only in the image model's labels: its caption is the
    embedder's guess (``caption_source`` "model"), and its own words (text read off it, the names of
    what it shows, the file's metadata and tags) hold no term the user typed (``typed``: a word, a
    number, a CJK pair; single CJK characters left out) and under ``OWN_WORDS_COVER`` of the query
    read in either language. A label caption and stray OCR ("nαλλioτ", "m 圓 貝 三立" off a drawing) in
    one BM25 text are not two kinds of evidence to BM25; this tells them apart, as a caption field of
    its own would, while a photo's lot and station in its metadata stay its words."""
    if rec.caption_source != "model" or rec.quality != "photo":
        return False
    own = " ".join([rec.ocr_text if is_meaningful(rec.ocr_text) else "", marks_text(rec.visual), " ".join(rec.tags), meta_words(rec)])
    if not own.strip():
        return True
    return typed.isdisjoint(token_set(own)) and cover(own) < OWN_WORDS_COVER


def _demote(factors: dict[str, dict[str, float]], routes: tuple[str, ...], ids: list[str], weight: float) -> None:
    """Scale these routes' votes for ``ids`` by ``weight`` (in :func:`rrf`'s ``factors``)."""
    for r in routes:
        f = factors.setdefault(r, {})
        for d in ids:
            f[d] = f.get(d, 1.0) * weight


def rrf(
    ranked: dict[str, list[str]],
    weights: dict[str, float],
    k: int,
    factors: dict[str, dict[str, float]] | None = None,
) -> dict[str, float]:
    """Weighted reciprocal rank fusion: ``sum_r w_r * f_r(d) / (k + rank_r(d))``, 1-based ranks;
    ``f`` (default 1) scales a route's vote for one document (see :func:`standout`)."""
    scores: dict[str, float] = {}
    for route, ids in ranked.items():
        w = weights.get(route, 1.0)
        f = (factors or {}).get(route, {})
        for rank, doc in enumerate(ids, start=1):
            scores[doc] = scores.get(doc, 0.0) + w * f.get(doc, 1.0) / (k + rank)
    return scores


def standout(scores: dict[str, float], full_at: float) -> dict[str, float]:
    """How far each hit stands out from its route's score distribution, as a 0..1 vote factor.

    A vector route ranks *something* first for every query, and RRF alone cannot tell a real match
    from the best of the noise (for "a rocket", the OCR-text routes still rank contracts 1, 2, 3).
    Dense-model similarities are compressed (e5 cosine ~0.75-0.9), but a match sits well above the
    route's mean: ``(z + 1) / (full_at + 1)`` clipped to [0, 1] gives a hit one standard deviation
    below the mean no vote and one ``full_at`` deviations above a full vote. Short lists (< 5)
    carry no distribution and keep full votes; ``full_at <= 0`` turns this off.
    """
    if full_at <= 0 or len(scores) < 5:
        return {d: 1.0 for d in scores}
    values = np.fromiter(scores.values(), dtype=np.float64)
    sd = float(values.std())
    if sd < 1e-9:
        return {d: 1.0 for d in scores}
    mu = float(values.mean())
    # one array operation, not one np.clip per hit (4 routes x 200 hits a search): the same
    # float64 arithmetic in the same order, so the same factors
    votes = np.clip(((values - mu) / sd + 1.0) / (full_at + 1.0), 0.0, 1.0)
    return dict(zip(scores, votes.tolist(), strict=True))


# How much deeper the image and exemplar kNNs read than the route returns when the exemplar term is on.
# A page that one kNN found and the other missed scores the other's floor; at the route's own depth (50)
# the search's image route scored 0.227 / 0.194 MRR@10 (en / zh) against 0.241 / 0.211 for the term over
# every picture (clipart-dev, 603 pictures), at 4x 0.240 / 0.214 (docs/embeddings.md, session 16).
EXEMPLAR_READS = 4


def add_exemplar(hits: list[RouteHit], exemplar_hits: list[RouteHit], stats: dict[str, dict[str, Any]],
                 weight: float, depth: int, colour: np.ndarray | None = None, colour_weight: float = 0.0) -> list[RouteHit]:
    """The image route's hits with the exemplar term added: each page's score gains ``weight`` ×
    (its exemplar cosine − its mean) / its spread, the page's own statistics (``stats``:
    ``ImageRecord.feature_stats``, stored at indexing) over random exemplars, so a picture near every
    exemplar (a silhouette, a drawing-like photo) does not outscore the one near this query's. Scores
    are added, not ranks. A page one kNN missed scores that list's lowest there (at most what it would
    have had); a page without statistics keeps its score, and joins only from the image kNN.

    The colour term (``colour``: the exemplar's colour layout, ``colour_weight`` > 0): among these
    candidates, a page with a stored layout gains ``colour_weight`` × the candidates' score spread ×
    how many spreads nearer than their mean its layout is to the exemplar's (a z-score of the
    distances, so it neither depends on the layouts' scale nor moves the scores' level). Re-sorted,
    at most ``depth``."""
    if not exemplar_hits or weight <= 0:
        return hits
    mean_key, sd_key = EXEMPLAR_STATS
    base = {h.image_id: h.score for h in hits}
    ex = {h.image_id: h.score for h in exemplar_hits}
    floor_b, floor_e = min(base.values(), default=0.0), min(ex.values())
    scores: dict[str, float] = {}
    for i in dict.fromkeys([*base, *ex]):
        st = stats.get(i, {})
        has = (isinstance(st.get(mean_key), (int, float)) and isinstance(st.get(sd_key), (int, float))
               and math.isfinite(st[mean_key]) and math.isfinite(st[sd_key]) and st[sd_key] > 0)
        if i not in base and not has:
            continue
        term = weight * (ex.get(i, floor_e) - st[mean_key]) / st[sd_key] if has else 0.0
        scores[i] = base.get(i, floor_b) + term
    if colour is not None and colour_weight > 0 and len(scores) > 2:
        scores = _add_colour(scores, stats, colour, colour_weight)
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:depth]
    return [RouteHit(image_id=i, score=sc) for i, sc in ranked]


def _add_colour(scores: dict[str, float], stats: dict[str, dict[str, Any]], colour: np.ndarray,
                weight: float) -> dict[str, float]:
    """The colour term of :func:`add_exemplar` (docs/embeddings.md, session 16). A stored layout that
    is not ``colour``'s length of numbers 0-255 counts as none."""
    n = int(np.asarray(colour).size)
    ids = [i for i in scores if isinstance(v := stats.get(i, {}).get(COLOUR_KEY), list) and len(v) == n]
    try:  # one array for every candidate (records are validated as lists of ints when read)
        rows = np.asarray([stats[i][COLOUR_KEY] for i in ids], np.float32).reshape(len(ids), n)
    except (TypeError, ValueError):
        return scores
    ok = ((rows >= 0) & (rows <= 255)).all(1)
    if ok.sum() < 3:
        return scores
    ids = [i for i, good in zip(ids, ok, strict=True) if good]
    d = colour_distances(rows[ok], colour)
    sd_d, sd_s = float(d.std()), float(np.std([scores[i] for i in ids]))
    if sd_d <= 0 or sd_s <= 0:
        return scores
    z = (d - d.mean()) / sd_d
    out = dict(scores)
    for i, zi in zip(ids, z, strict=True):
        out[i] = scores[i] - weight * sd_s * float(zi)
    return out


KEYWORD_DEPTH = 300  # keyword mode's default depth: how far a cursor of full-text hits reaches


def depth_of(req: SearchRequest) -> int:
    """How deep each page route reads (region routes 4x): the request's fixed ``depth``, or
    ``max(50, 3 x k)`` (``max(300, 3 x k)`` in keyword mode). Not the offset: pages of one search
    read the same lists, so the list a cursor pages through ends there. Keyword mode reads deeper
    because its list is BM25's alone (hybrid's unions several routes: 129-195 pages for k=10 on the
    1k bench), an agent listing every page with a word expects more than 50, and BM25's order does
    not depend on its depth: page 1 is the same at 50 or 300, for a few more ids and scores."""
    if req.depth is not None:
        return req.depth
    return max(KEYWORD_DEPTH if req.mode == "keyword" and req.routes is None else 50, 3 * req.k)


def block_of(req: SearchRequest) -> int:
    """How many fused candidates ``rank`` re-ranks together: the first block is page 1's window
    (``max(k, 30)``, ``k`` without re-rank); a deeper page ranks the next blocks the same way."""
    if req.block is not None:
        return req.block
    return max(req.k, 30) if req.rerank else req.k


def _window(req: SearchRequest) -> int:
    """How many fused candidates ``rank`` reads, re-ranks and attaches evidence to for page 1."""
    return block_of(req)


def check_paging(req: SearchRequest, max_k: int) -> None:
    """The paging bounds: the offset, the routes' depth and the re-rank block (ImgragError past them)."""
    if req.offset > MAX_OFFSET:
        raise ImgragError(f"paging past hit {MAX_OFFSET} is not supported", "narrow the search with filters or a more specific query")
    limit = max(MAX_DEPTH, 3 * max_k)
    if depth_of(req) > limit:
        raise ImgragError(f"depth={depth_of(req)} is over the limit of {limit}", "ask for a smaller depth, or narrow the search with filters")
    if block_of(req) > max(30, max_k):
        raise ImgragError(f"block={block_of(req)} is over the limit of {max(30, max_k)}", "ask for a smaller block")


def list_digest(ids: list[str]) -> str:
    """A short digest of a ranked list's ids, in order."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:24]


def _best_per_image(hits: list[RegionHit]) -> dict[str, float]:
    """Each page's best region score, best first (ties by page id): a region route's page ranking."""
    best: dict[str, float] = {}
    for h in sorted(hits, key=region_order):
        best.setdefault(h.image_id, h.score)
    return best


V = TypeVar("V")


class _LRU(LRU):
    """A small cache of query embeddings: agents repeat and page through the same queries."""


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def two_stage_candidates(ranked: list[list[str]], cap: int) -> list[str]:
    """The pages whose regions a two-stage search reads: the page routes' lists taken in turn,
    rank by rank (each route's best first), without repeats, at most ``cap``."""
    out: dict[str, None] = {}
    for rank in range(max((len(ids) for ids in ranked), default=0)):
        for ids in ranked:
            if rank < len(ids):
                out.setdefault(ids[rank])
                if len(out) >= cap:
                    return list(out)
    return list(out)


def _pool(threads: int) -> ThreadPoolExecutor:
    """One process-wide pool per size: the routes of every search (and every server thread) share
    it. A route never waits on another route, so a full pool only queues, it cannot deadlock."""
    with _POOLS_LOCK:
        pool = _POOLS.get(threads)
        if pool is None:
            pool = _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="imgrag-search")
        return pool


def _timed(fn: Callable[[], V]) -> tuple[V, float]:
    t = time.perf_counter()
    out = fn()
    return out, round((time.perf_counter() - t) * 1000, 2)


def image_query_reading(rt: Any, q: str) -> str:
    """The English reading :func:`translated_image_query` mixes into ``q``'s image query, or ""."""
    s = rt.settings
    if s.image_query_translation <= 0 or not s.translate_query or not getattr(rt.image_embedder, "mixes_query_translation", False):
        return ""
    return english_reading(q, s.cache_dir)


def translated_image_query(rt: Any, q: str, vector: np.ndarray, text_vector: Callable[[str], np.ndarray]) -> np.ndarray:
    """With an image embedder that asks for it (``transfer``: its memory's names are mostly English)
    and a query with Chinese in it that the dictionary glosses, the image query ``vector`` plus
    ``IMGRAG_IMAGE_QUERY_TRANSLATION`` x the text model's vector (``text_vector``) of the query's
    English reading, normalised; else ``vector`` itself (held-out clip art, Chinese queries: MRR@10
    0.180 -> 0.211, docs/embeddings.md session 13). The exemplar is made from this vector too. The
    search and the evaluation's batched query embedding (``evals.retrieval.prime_cache``) both use it."""
    en = image_query_reading(rt, q)
    if not en:
        return vector
    v = np.asarray(vector, np.float32) + rt.settings.image_query_translation * np.asarray(text_vector(en), np.float32)
    return (v / max(float(np.linalg.norm(v)), 1e-9)).astype(np.float32)


class Searcher:
    """Recall (every route, concurrently), fusion, re-ranking; plus two caches: query embeddings
    (``_cache``) and whole results (``_results``, ``IMGRAG_SEARCH_CACHE`` entries, keyed by the
    store's :meth:`~indexing.stores.base.IndexStore.data_version`, so any write to the index
    misses it)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._cache = _LRU()
        self._results = LRU(rt.settings.search_cache)
        self._prefixes = LRU(64)  # shown_path_prefix's checks, by (data version, principal, prefix)
        self._spaces: tuple[float, ModelSpaces | None] | None = None
        self._pages: tuple[float, int] | None = None  # (when, pages in the index): see _two_stage
        self._pages_reading = threading.Lock()  # held while the count is re-read in the background

    def _stored_spaces(self) -> ModelSpaces | None:
        """The index's spaces, re-read at most every 2 s (another process may re-embed it)."""
        now = time.monotonic()
        if self._spaces is None or now - self._spaces[0] > 2.0:
            self._spaces = (now, self.rt.store.spaces())
        return self._spaces[1]

    def _check_spaces(self, routes: tuple[str, ...]) -> None:
        """Query vectors must come from the models the index was built with (ImgragError otherwise)."""
        if "image" in routes or "region_tile" in routes:
            ie = self.rt.image_embedder
            check_query_space(self._stored_spaces(), "image", ie.identity, ie.dim)
        if "text_vector" in routes or "region_text" in routes:
            te = self.rt.text_embedder
            check_query_space(self._stored_spaces(), "text", te.identity, te.dim)

    def _q_image(self, q: str) -> np.ndarray:
        ie = self.rt.image_embedder
        derive = getattr(ie, "queries_from_text", None)
        if derive is not None and getattr(getattr(ie, "text", None), "identity", None) == self.rt.text_embedder.identity:
            # the joint space's query encoder runs the text model first: run it once for both spaces
            return self._cache.get(("image", q), lambda: self._with_translation(q, derive(self._q_text(q)[None, :])[0]))
        return self._cache.get(("image", q), lambda: ie.embed_queries([q])[0])

    def _with_translation(self, q: str, vector: np.ndarray) -> np.ndarray:
        return translated_image_query(self.rt, q, vector, self._q_text)

    def _q_text(self, q: str) -> np.ndarray:
        return self._cache.get(("text", q), lambda: self.rt.text_embedder.embed_queries([q])[0])

    @staticmethod
    def _route_spaces(routes: tuple[str, ...]) -> list[str]:
        """The vector spaces those routes search."""
        return [sp for sp, rs in (("text", ("text_vector", "region_text")), ("image", ("image", "region_tile")))
                if any(r in routes for r in rs)]

    def _exemplar(self, query: str, query_vector: np.ndarray) -> tuple[np.ndarray, np.ndarray | None] | None:
        """The query's exemplar features and colour layout (None without one: a memory built before
        session 16) (``image_embedder=transfer`` with ``IMGRAG_EXEMPLAR_WEIGHT`` > 0 and an index whose
        ``feature`` space is the embedder's), else None; cached with the query's vectors (it costs a
        product with every caption row of the memory)."""
        ie = self.rt.image_embedder
        make = getattr(ie, "exemplar_pair", None)
        if make is None or self.rt.settings.exemplar_weight <= 0:
            return None
        spaces = self._stored_spaces()
        if spaces is not None and spaces.feature != ie.feature_identity:  # another feature space
            return None
        return self._cache.get(("exemplar", query), lambda: make(query_vector))  # type: ignore[no-any-return]

    def _two_stage(self) -> bool:
        """Whether the index is big enough (``IMGRAG_TWO_STAGE_PAGES``) for the two-stage region
        search. Its page count is read once, then again at most every 5 s, off the search's path:
        a stale count is used while the new one is read on the search pool (a count on a 100k
        Elasticsearch index was a serial 8-20 ms in every search after a pause). Near the
        threshold either way is right; after a large write, one search may use the old choice."""
        limit = self.rt.settings.two_stage_pages
        if limit <= 0:
            return False
        now = time.monotonic()
        if self._pages is None:
            self._pages = (now, self.rt.store.count(OPERATOR, Filters()))
        elif now - self._pages[0] > 5.0 and not self._pages_reading.locked():
            threads = self.rt.settings.search_threads
            if threads > 1:
                _pool(threads).submit(self._read_pages)
            else:
                self._read_pages()
        return self._pages[1] >= limit

    def _read_pages(self) -> None:
        if not self._pages_reading.acquire(blocking=False):
            return  # another search is reading it
        try:
            self._pages = (time.monotonic(), self.rt.store.count(OPERATOR, Filters()))
        except Exception as e:  # keep the last count; the next search tries again
            # the reason alone: a backend that is down is the search's own one-line error already
            log.warning("could not re-read the page count for the two-stage choice (%s: %s)", type(e).__name__, e,
                        exc_info=self.rt.settings.debug)
        finally:
            self._pages_reading.release()

    def weights(self) -> dict[str, float]:
        s = self.rt.settings
        return {
            "image": s.weight_image,
            "bm25": s.weight_bm25,
            "text_vector": s.weight_text_vector,
            "region_text": s.weight_region,
            "region_tile": s.weight_image * s.weight_region,
            "similar": 1.0,
        }

    def search(self, req: SearchRequest, principal: Principal) -> SearchResult:
        # One read of the index's version for the whole search (a store that can pin it): the
        # version checks of its record reads, FTS and ANN checks were ~8 hand-offs to LanceDB's
        # event loop a search, ~0.28 ms of CPU each; the search now reads as of its start.
        # data_version() inside answers from the pin too.
        pin = getattr(self.rt.store, "pinned", None)
        with pin() if pin is not None else nullcontext():
            return self._search(req, principal)

    def _search(self, req: SearchRequest, principal: Principal) -> SearchResult:
        req = self.resolve_filters(req, principal)
        t = time.perf_counter()
        key = self._result_key(req, principal)
        if key is not None:
            cached = self._results.peek(key)
            if cached is not None:
                hit = SearchResult.model_validate_json(cached)  # a copy of its own: callers may mask or change it
                ms = round((time.perf_counter() - t) * 1000, 2)
                hit.timings_ms = {"cached": ms, "total": ms}
                return hit
        res = self.rank(req, principal, self.recall(req, principal))
        if key is not None:
            # kept as JSON: a tenth of the CPU time of a deep copy of the result (~0.2 ms), and immutable
            self._results.put(key, res.model_dump_json())
        return res

    def _result_key(self, req: SearchRequest, principal: Principal) -> tuple[str, ...] | None:
        """What a search's result depends on: the index's data version, the settings (weights,
        models, limits), who asks and what. None: not cacheable (cache off, or a backend that
        cannot tell cheaply whether its data changed)."""
        if self._results.size <= 0:
            return None
        version = self.rt.store.data_version()
        if version is None:
            return None
        return (version, self.rt.settings.model_dump_json(), principal.model_dump_json(), req.model_dump_json())

    def shown_path_prefix(self, req: SearchRequest, principal: Principal) -> SearchRequest:
        """``filters.path_prefix`` matched against paths as ``principal`` sees them.

        A path can hold personal data (a file named after an e-mail address, a folder named after
        the patient), which a caller without clearance sees masked; the backend matches the prefix
        against the stored path, so ``people/jane.d`` found ``people/[email redacted]`` and
        ``people/jane.x`` did not: the masked name read off a character at a time. For such a
        caller the pages the prefix matches are listed (at most ``PREFIX_SCAN``), and when some
        of them only match in what is masked, the filter is narrowed to the others."""
        prefix = req.filters.path_prefix
        if not prefix or principal.sees_pii:
            return req
        version = self.rt.store.data_version()
        if version is None:
            hidden, kept = self._prefix_pages(prefix, principal)
        else:  # the check reads up to PREFIX_SCAN records: paging through one search does it once
            hidden, kept = self._prefixes.get((version, principal.model_dump_json(), prefix), lambda: self._prefix_pages(prefix, principal))
        if not hidden:
            return req
        allowed = None if req.filters.image_ids is None else set(req.filters.image_ids)
        ids = [i for i in kept if allowed is None or i in allowed]
        return req.model_copy(update={"filters": req.filters.model_copy(update={"image_ids": ids})})

    def _prefix_pages(self, prefix: str, principal: Principal) -> tuple[bool, list[str]]:
        """(whether some page the prefix matches only matches in what is masked, the other pages)."""
        store = self.rt.store
        where = Filters(path_prefix=prefix)
        n = store.count(principal, where)
        if n > PREFIX_SCAN:
            raise ImgragError(
                f"filters.path_prefix matches more than {PREFIX_SCAN} pages",
                "narrow it to a subfolder, or filter by tags or doc_id",
            )
        kept: list[str] = []
        hidden = False
        for offset in range(0, n, 1000):
            for r in store.list_images(principal, where, offset=offset, limit=1000):
                if mask_name(r.path, r).startswith(prefix):
                    kept.append(r.image_id)
                else:
                    hidden = True
        return hidden, kept

    def resolve_filters(self, req: SearchRequest, principal: Principal) -> SearchRequest:
        """``filters.linked_text`` → ``image_ids``: the pages linked to a page (that ``principal``
        may read) whose text holds every word of it — "images whose report mentions X".

        The words are looked for in the page as ``principal`` may read it: without PII clearance,
        with its personal data masked. (They were looked for in the stored text, so a caller who
        sees ``[cn_mobile redacted]`` on a report could confirm its phone number, e-mail or the
        patient's name by guessing: the linked image came back for the right value only.)

        ``filters.path_prefix``, for a caller without PII clearance, keeps only the pages whose
        path *as they see it* starts with it (:meth:`shown_path_prefix`)."""
        req = self.shown_path_prefix(req, principal)
        text = (req.filters.linked_text or "").strip()
        if req.filters.linked_text is None:
            return req
        terms = query_terms(text)
        keywords = keyword_query(text)
        if not terms or not keywords:
            raise ImgragError("filters.linked_text has no words to look for", "give the words the linked page must contain")
        store = self.rt.store
        hits = store.bm25(keywords, 1000, Filters(), principal)
        recs = store.get_many([h.image_id for h in hits], principal)
        linked: set[str] = set()
        for r in recs.values():
            if not r.links:
                continue
            if not principal.sees_pii:
                r = mask_record(r)
            words = " ".join([r.ocr_text, r.caption, " ".join(r.tags), *r.all_meta().values()])
            if coverage(terms, words) == 1.0:
                linked.update(ln.image_id for ln in r.links)
        ids = sorted(linked if req.filters.image_ids is None else linked & set(req.filters.image_ids))
        return req.model_copy(update={"filters": req.filters.model_copy(update={"linked_text": None, "image_ids": ids})})

    def _picture_filters(self, filters: Filters, query: str = "") -> Filters | None:
        """The filters of the image and tile routes: only pages of ``IMGRAG_IMAGE_ROUTE_QUALITY``,
        unless the query names a kind of picture (``IMGRAG_VISUAL_QUERY_ALL_PAGES``, :func:`wants_pictures`).

        A text query embedded into the image space matches what a picture shows; on a text page the
        label-bridge similarity is noise (nDCG@10 ≈ 0.1 alone on contracts and docqa), and its
        votes pushed the right contract down. Documents are found by their words, photos by both —
        but "a bar chart", "a floor plan" or "a handwritten note" asks what a scan looks like, which
        its OCR text rarely says, so such a query lets those routes vote on every page.
        None: the user's own quality filter leaves nothing for these routes."""
        s = self.rt.settings
        allowed = s.image_route_quality
        if not allowed or (s.visual_query_all_pages and query and wants_pictures(query)):
            return filters
        quality = [q for q in filters.quality if q in allowed] if filters.quality else list(allowed)
        return filters.model_copy(update={"quality": quality}) if quality else None

    def _translated(self, query: str) -> list[WeightedTerms]:
        """The query's dictionary translation as BM25 terms below the typed ones (empty when off
        or when nothing translates): a Chinese question then matches an English page's words."""
        s = self.rt.settings
        if not s.translate_query:
            return []
        text = translate_query(query, s.cache_dir)
        if not text:
            return []
        # The translation as a whole votes IMGRAG_WEIGHT_TRANSLATED × the typed query as a whole:
        # a Chinese query is a dozen unigrams and bigrams, its English gloss a few words, and
        # per-term weights let the typed CJK tokens bury every English page (zh→en nDCG 0.12).
        ratio = max(1, len(tokens(keyword_query(query)))) / max(1, len(tokens(text)))
        return [WeightedTerms(text=text, weight=s.weight_translated * ratio)]

    def recall(self, req: SearchRequest, principal: Principal) -> Recall:
        """Every route's ranked candidates (the expensive part: embeddings and store queries)."""
        s = self.rt.settings
        if req.k > s.max_k:
            raise ImgragError(f"k={req.k} is over the limit of {s.max_k}", "ask for fewer hits or page with offset")
        check_paging(req, s.max_k)
        if req.filters.linked_text is not None:
            req = self.resolve_filters(req, principal)
        query = (req.query or "").strip()
        if len(query) > MAX_QUERY_CHARS:
            raise ImgragError(f"the query is {len(query)} characters long", f"keep it under {MAX_QUERY_CHARS}")
        if not query and not req.similar_to:
            raise ImgragError("empty query", "give a text query or an image id to find similar images")
        store = self.rt.store
        rec = Recall(query=query)
        depth = depth_of(req)
        prefetch: dict[str, float] = {}
        t0 = time.perf_counter()
        threads = self.rt.settings.search_threads
        pool = _pool(threads) if threads > 1 else None

        def run(fn: Callable[[], V]) -> Future[tuple[V, float]]:
            """Start a route on the pool (or, with one thread, run it here) and time it."""
            if pool is not None:
                # in this search's context: a store's pinned version (LanceStore.pinned) holds there too
                return pool.submit(contextvars.copy_context().run, _timed, fn)
            fut: Future[tuple[V, float]] = Future()
            fut.set_result(_timed(fn))
            return fut

        # A store whose reads cost a round trip each (Elasticsearch) takes the independent ones
        # together: one request (an _msearch) instead of one per route, on one pool thread.
        batched = bool(getattr(store, "batches_reads", False))

        def run_reads(reads: dict[str, Read]) -> dict[str, Future[tuple[Any, float]]]:
            """Start these reads (one batch, or a route each) and time them; futures by name."""
            if not batched or len(reads) < 2:
                return {n: run(lambda r=r: getattr(store, r.method)(*r.args)) for n, r in reads.items()}  # type: ignore[misc]
            batch = run(lambda: store.read_many(list(reads.values())))  # type: ignore[attr-defined]
            out: dict[str, Future[tuple[Any, float]]] = {}
            for i, n in enumerate(reads):
                part: Future[tuple[Any, float]] = Future()

                def done(b: Future[tuple[list[Any], float]], i: int = i, part: Future[tuple[Any, float]] = part) -> None:
                    err = b.exception()
                    if err is not None:
                        part.set_exception(err)
                    else:
                        got, ms = b.result()
                        part.set_result((got[i], ms))

                batch.add_done_callback(done)
                out[n] = part
            return out

        # Futures in the order the routes are fused (RRF sums floats: a fixed order, fixed scores).
        pages: dict[str, Future[tuple[list[RouteHit] | None, float]]] = {}
        regions: dict[str, Future[tuple[list[RegionHit], float]]] = {}
        staged: dict[str, tuple[Literal["tile", "text"], np.ndarray, Filters]] = {}  # region routes: kind, vector, filters
        if req.similar_to:
            vecs = store.get_vectors(req.similar_to, principal) if len(req.similar_to) <= MAX_ID_CHARS else None
            if vecs is None:
                raise NotFoundError.image(req.similar_to)
            flt = req.filters
            pages["similar"] = run(
                lambda: [h for h in store.knn("feature", vecs.feature, depth + 1, flt, principal) if h.image_id != req.similar_to]
            )
        if query:
            routes = tuple(req.routes) if req.routes else MODE_ROUTES[req.mode]
            self._check_spaces(routes)
            pictures = self._picture_filters(req.filters, query)
            if pictures is None:  # the user's quality filter excludes every page the image routes search
                routes = tuple(r for r in routes if r not in ("image", "region_tile"))
            keywords = keyword_query(query)
            # Only while the query is embedded is there time to fill: the engine holds no GIL and
            # one core. With its vectors cached, the same work beside the vector routes contended
            # with them for the GIL (+5.7 ms CPU per search, docs/performance.md).
            embedding = pool is not None and any(self._cache.peek((sp, query)) is None for sp in self._route_spaces(routes))

            def bm25() -> list[RouteHit] | None:
                extra = self._translated(query)
                if not (keywords or extra):
                    return None
                if batched:
                    # the records of the top hits come in the same round trip (read_many's note)
                    hits, rec.records = store.bm25_records(keywords, depth, req.filters, principal, extra, _window(req))  # type: ignore[attr-defined]
                    if hits and embedding:
                        t = time.perf_counter()
                        rec.evidence.update(self._evidence(query, list(rec.records), rec.records, None, principal, req.filters))
                        prefetch["records"] = round((time.perf_counter() - t) * 1000, 2)
                    return hits  # type: ignore[no-any-return]
                hits = store.bm25(keywords, depth, req.filters, principal, extra)
                if hits and embedding:
                    # The query is still being embedded on the caller's thread: read the records of
                    # the top hits now, the ones rank() would read after every route is back. BM25's
                    # top window held 86 % of the fused window's pages over the bench queries. Timed
                    # apart: the bm25 timing stays the route's own.
                    t = time.perf_counter()
                    rec.records = store.get_many([h.image_id for h in hits[: _window(req)]], principal)
                    # and the evidence of those that their own words answer (it needs no region hit)
                    rec.evidence.update(self._evidence(query, list(rec.records), rec.records, None, principal, req.filters))
                    prefetch["records"] = round((time.perf_counter() - t) * 1000, 2)
                return hits

            # Full text needs no query vector: it starts while the query is embedded.
            bm25_fut = run(bm25) if "bm25" in routes else None
            # The region routes search every region at once, or (two-stage, a large index) only the
            # regions of the pages the page routes found, after them.
            two_stage = (bool(pages) or bm25_fut is not None or any(r in routes for r in ("image", "text_vector"))) and any(
                r in routes for r in ("region_text", "region_tile")) and self._two_stage()
            reads: dict[str, Read] = {}
            text_reads: dict[str, Read] = {}
            started: dict[str, Future[tuple[Any, float]]] = {}
            t = time.perf_counter()
            spaces = self._route_spaces(routes)
            new_image = "image" in spaces and self._cache.peek(("image", query)) is None  # its image query is still to make
            reading = image_query_reading(self.rt, query) if new_image and pool is not None else ""
            beside = None
            if reading and self._cache.peek(("text", reading)) is None:
                # embedded beside the query's own vector (E5TextEmbedder: single queries run side by side)
                beside = pool.submit(self._q_text, reading)  # type: ignore[union-attr]
            vec = {"text": self._q_text(query)} if "text" in spaces else {}
            if "text_vector" in routes:
                text_reads["text_vector"] = Read("knn", ("text", vec["text"], depth, req.filters, principal))
            if "region_text" in routes:
                if two_stage:
                    staged["region_text"] = ("text", vec["text"], req.filters)
                else:
                    text_reads["region_text"] = Read("knn_regions", ("text", vec["text"], depth * 4, req.filters, principal))
            if text_reads and not batched and new_image:
                # The image query is made after the text one (``transfer``: plus the English reading of a
                # Chinese query, a second e5 pass on this thread): the text routes start meanwhile.
                started = run_reads(text_reads)
                text_reads = {}
            if beside is not None:
                beside.result()  # cached there: the image query below reads it
            if "image" in spaces:
                vec["image"] = self._q_image(query)
            rec.timings["embed"] = round((time.perf_counter() - t) * 1000, 2)
            exemplar = self._exemplar(query, vec["image"]) if "image" in routes else None
            # with the exemplar term both kNNs read EXEMPLAR_READS x deeper: a page only one of them
            # found scores that list's floor in the other (add_exemplar); the route still returns `depth`
            ex_depth = depth * EXEMPLAR_READS if exemplar is not None else depth
            # (with it, both kNNs also return their hits' feature_stats, which the term standardises by)
            if "image" in routes:
                reads["image"] = Read("knn_stats" if exemplar is not None else "knn", ("image", vec["image"], ex_depth, pictures, principal))
            if exemplar is not None:  # the exemplar term: a kNN on the stored features, added to the image route's scores
                reads["exemplar"] = Read("knn_stats", ("feature", exemplar[0], ex_depth, pictures, principal))
            reads.update(text_reads)
            if "region_tile" in routes:
                if two_stage:
                    staged["region_tile"] = ("tile", vec["image"], pictures)  # type: ignore[assignment]
                else:
                    reads["region_tile"] = Read("knn_regions", ("tile", vec["image"], depth * 4, pictures, principal))
            started.update(run_reads(reads))
            if "exemplar" in started:
                img_f, ex_f = started.pop("image"), started.pop("exemplar")

                def with_exemplar() -> list[RouteHit]:
                    ((hits, stats), _), ((ex_hits, ex_stats), _) = img_f.result(), ex_f.result()
                    t = time.perf_counter()
                    out = add_exemplar(hits, ex_hits, {**stats, **ex_stats}, s.exemplar_weight, depth, exemplar[1], s.colour_weight)
                    rec.timings["exemplar"] = round((time.perf_counter() - t) * 1000, 2)
                    return out

                pages["image"] = run(with_exemplar)
            if "image" in started:
                pages["image"] = started.pop("image")
            if bm25_fut is not None:
                pages["bm25"] = bm25_fut
            if "text_vector" in started:
                pages["text_vector"] = started.pop("text_vector")
            regions.update((name, started[name]) for name in ("region_text", "region_tile") if name in started)  # type: ignore[misc]
        for name, fut in pages.items():
            hits, ms = fut.result()
            if hits is None:
                continue
            if name == "bm25" and prefetch:
                rec.timings["records"] = prefetch["records"]
                ms = round(ms - prefetch["records"], 2)
            rec.timings[name] = ms
            hits = sorted(hits, key=page_order)  # the stores' order; a fake's or a wrapper's too
            rec.ranked[name] = [h.image_id for h in hits]
            rec.route_scores[name] = {h.image_id: h.score for h in hits}
        if staged:
            # Two-stage (a large index): the region routes score, exactly, only the regions of the
            # pages the page routes found, instead of an approximate search over every region.
            ids = two_stage_candidates(list(rec.ranked.values()), s.two_stage_candidates)
            reads = {name: Read("knn_regions", (kind, qv, depth * 4, flt, principal, ids)) for name, (kind, qv, flt) in staged.items()}
            regions.update(run_reads(reads))  # type: ignore[arg-type]
        for name, rfut in regions.items():
            rhits, rec.timings[name] = rfut.result()
            rec.region_hits.extend(rhits)
            best = _best_per_image(rhits)
            rec.ranked[name] = list(best)[:depth]
            rec.route_scores[name] = best
        rec.elapsed_ms = round((time.perf_counter() - t0) * 1000, 2)
        return rec

    def rank(
        self,
        req: SearchRequest,
        principal: Principal,
        rec: Recall,
        get_many: Callable[[list[str], Principal], dict[str, ImageRecord]] | None = None,
    ) -> SearchResult:
        """Fuse the routes, re-rank the top by their best region and attach evidence. Cheap, so
        evaluation can re-rank one recall under many weight settings (``get_many`` may cache)."""
        s = self.rt.settings
        if req.filters.linked_text is not None:
            req = self.resolve_filters(req, principal)
        get_many = get_many or self.rt.store.get_many
        query, ranked, timings = rec.query, rec.ranked, dict(rec.timings)
        t = time.perf_counter()
        factors = {r: standout(rec.route_scores[r], s.standout_z) for r in ranked if r in VECTOR_ROUTES}
        weights = self.weights()
        fused = rrf(ranked, weights, s.rrf_k, factors)
        # A total order, ties by page id (everywhere below too): the same store and query give the
        # same list whatever order the routes or the store's threads returned tied hits in.
        order = sorted(fused, key=lambda d: (-fused[d], d))
        size = block_of(req)
        want = req.offset + req.k
        read, rec.records = dict(rec.records), {}
        asked = set(read)

        def fetch(ids: list[str]) -> None:
            """Read the records of these pages, each at most once (one the caller may not see stays unread)."""
            rest = [d for d in ids if d not in asked]
            if rest:
                asked.update(rest)
                read.update(get_many(rest, principal))

        weak: set[str] = set()  # pictures that answer the query only in the image model's labels
        # pages the text routes matched on pieces of words only: the query's concepts (none when it
        # has none: stop words, numerals and measure words alone), looked for once per page
        cs = translate_concepts(query, s.cache_dir) if query and s.translate_query and s.weight_unprinted < 1 else ()
        bm25_ids = set(ranked.get("bm25", ()))
        unprinted: dict[str, bool] = {}  # page -> whether its words hold none of the concepts
        bm25_seen: set[str] = set()
        text_demoted: set[str] = set()
        textless: bool | None = None  # no document of the first window prints a concept (decided once)
        # A query naming a kind of picture ("a page with a photo") is answered by what the page is, and
        # its text routes match the names of what it shows: no page's votes are a label caption's there.
        cover = self._coverage(query) if s.weight_label_text < 1 and query and not wants_pictures(query) else None
        typed = frozenset(t for t in query_terms(query) if not (len(t) == 1 and _is_cjk(t))) if cover is not None else frozenset()
        # The ranked list is made a block at a time: the first ``size`` fused candidates are read,
        # re-ranked and linked (page 1's window), then the next ``size`` of the rest the same way,
        # until the list reaches the page asked for. A block's order depends only on the blocks
        # before it, so every page of one (query, depth, block) is a slice of the same list: page
        # 2 is hits 11-20 of the list page 1 was hits 1-10 of, whatever k or offset asks for it.
        placed: list[str] = []  # the ranked list so far
        taken: set[str] = set()
        final: dict[str, float] = {}  # each placed page's score: fused + re-rank bonus (+ link lift)
        records: dict[str, ImageRecord] = {}
        evidence = rec.evidence
        bonus: dict[str, float] = {}
        via: dict[str, tuple[int, float]] = {}
        linked: set[str] = set()  # pages a link brought in (candidates too)
        timings["fuse"] = timings["rerank"] = timings["links"] = 0.0
        window: list[str] = []

        def demote(find: Callable[[list[str]], list[str]], routes: tuple[str, ...], weight: float) -> None:
            """Up to ``_LABEL_PASSES`` times: the window's pages ``find`` names keep ``weight`` of their
            votes on ``routes``; demoted pages leave the window, and the pages that move up are read
            and looked at in turn."""
            nonlocal fused, order, window
            for _ in range(_LABEL_PASSES):
                fetch(window)
                found = find(window)
                if not found:
                    return
                _demote(factors, routes, found, weight)
                fused = rrf(ranked, weights, s.rrf_k, factors)
                order = sorted(fused, key=lambda d: (-fused[d], d))
                window = [d for d in order if d not in taken][:size]

        def unprinted_in(ids: list[str]) -> list[str]:
            """Those of ``ids`` (read) whose words hold none of the query's concepts, each looked at once."""
            for d in ids:
                if d not in unprinted:
                    unprinted[d] = prints_no_concept(read[d], cs, s.cache_dir)
            return [d for d in ids if unprinted[d]]

        def bm25_unprinted(window: list[str]) -> list[str]:
            new = [d for d in window if d in bm25_ids and d in read and d not in bm25_seen]
            bm25_seen.update(new)
            return unprinted_in(new)

        def text_unprinted(window: list[str]) -> list[str]:
            nonlocal textless
            docs = [d for d in window if d in read and read[d].quality != "photo"]
            if textless is None:  # decided once, on the first window
                textless = bool(docs) and len(unprinted_in(docs)) == len(docs)
            found = [d for d in unprinted_in(docs) if d not in text_demoted] if textless else []
            text_demoted.update(found)
            return found

        def label_weak(window: list[str]) -> list[str]:
            assert cover is not None
            found = [d for d in window if d in read and d not in weak and label_only(read[d], cover, typed)]
            weak.update(found)
            return found

        while len(placed) < want:
            window = [d for d in order if d not in taken][:size]
            if not window:
                break
            if cs:
                # BM25 ranks *some* page first for any query, and at weight 3 its vote is worth 6 of
                # the image route's: a page whose words hold no concept of the query keeps
                # IMGRAG_WEIGHT_UNPRINTED of it ("the moon", read as 月亮 too, ranked a report dated
                # 2020年03月17日 first).
                demote(bm25_unprinted, ("bm25",), s.weight_unprinted)
                # When no document among the first candidates prints any concept of the query ("woman
                # astronaut in an orange spacesuit" over contracts, manuals and reports), the text
                # vector and the text regions still rank *some* line first, and those votes beat the
                # photo the image routes found: they keep IMGRAG_WEIGHT_UNPRINTED too. A query one
                # document answers in words keeps every text vote (paraphrases included).
                demote(text_unprinted, ("text_vector", "region_text"), s.weight_unprinted)
            if cover is not None:
                # Their text-route votes count weight_label_text: a label caption ("hair dryer |
                # 手摇鼓风机") is the model's guess, and BM25 ranks *some* page first for any query
                # (here on one CJK character of the query's translation) at 6x an image vote.
                demote(label_weak, tuple(r for r in LABEL_ROUTES if r in ranked), s.weight_label_text)
            fetch(window)
            taken.update(window)  # an unreadable page is passed over for good
            window = [d for d in window if d in read]
            records.update((d, read[d]) for d in window)
            score = {d: fused[d] for d in window}
            timings["fuse"] += (time.perf_counter() - t) * 1000

            t = time.perf_counter()
            missing = [d for d in window if d not in evidence]
            if missing:
                evidence.update(self._evidence(query, missing, records, rec.region_hits, principal, req.filters))
            if req.rerank and query:
                bonus_unit = 1.0 / (s.rrf_k + 1)
                # the region that answers best, plus how many of the query's concepts the page prints
                # in either language (weighted by how few candidates print them)
                cc = concept_coverage(query, [records[d] for d in window], s.cache_dir, s.weight_translated) if s.concept_rerank and s.translate_query else {}
                for d in window:
                    bonus[d] = bonus_unit * (s.region_rerank * evidence[d][2] + s.concept_rerank * cc.get(d, 0.0))
                    if d in weak:  # its words are the labels: the same weak evidence as its text-route votes
                        bonus[d] *= s.weight_label_text
                    score[d] += bonus[d]
                window.sort(key=lambda d: (-score[d], d))
            timings["rerank"] += (time.perf_counter() - t) * 1000

            t = time.perf_counter()
            if req.follow_links and s.link_weight > 0:
                added = self._follow_links(req, principal, window, records, score, via, fused, len(placed), taken)
                if added:
                    taken.update(added)
                    linked.update(added)
                    missing = [d for d in added if d not in evidence]
                    if missing:
                        evidence.update(self._evidence(query, missing, records, rec.region_hits, principal, req.filters))
                window.sort(key=lambda d: (-score[d], d))
            timings["links"] += (time.perf_counter() - t) * 1000
            placed.extend(window)
            final.update(score)
            t = time.perf_counter()
        timings["fuse"] += (time.perf_counter() - t) * 1000
        n_cand = len(fused) + len(linked - fused.keys())

        t = time.perf_counter()
        page = placed[req.offset : want]
        links = visible_links(self.rt.store, [records[d] for d in page], principal)
        timings["links"] += (time.perf_counter() - t) * 1000
        for name in ("fuse", "rerank", "links"):
            timings[name] = round(timings[name], 2)

        hits: list[Hit] = []
        for d in page:
            r = records[d]
            region, snippet, _cov = evidence[d]
            ranks = {rt: ids.index(d) + 1 for rt, ids in ranked.items() if d in ids}
            contributions = {
                rt: round(weights.get(rt, 1.0) * factors.get(rt, {}).get(d, 1.0) / (s.rrf_k + r), 6) for rt, r in ranks.items()
            }
            if bonus.get(d):
                contributions["rerank"] = round(bonus[d], 6)
            if d in via:  # brought or lifted by a linked page: the rank of that page, and the lift
                ranks["links"], lift = via[d]
                contributions["links"] = round(lift, 6)
            hits.append(
                Hit(
                    image_id=d,
                    doc_id=r.doc_id,
                    path=r.path,
                    page=r.page,
                    n_pages=r.n_pages,
                    score=round(final[d], 6),
                    snippet=snippet,
                    region=region,
                    ranks=ranks,
                    contributions=contributions,
                    quality=r.quality,
                    dates=sorted({m.date.isoformat() for m in r.dates}),
                    caption=r.caption,
                    width=r.width,
                    height=r.height,
                    links=links.get(d, []),
                )
            )
        timings["total"] = round(rec.elapsed_ms + timings["fuse"] + timings["rerank"], 2)
        return SearchResult(
            query=query or None, hits=hits, candidates=n_cand, timings_ms=timings,
            before=list_digest(placed[: req.offset]), through=list_digest(placed[: req.offset + len(hits)]),
        )

    def _follow_links(
        self,
        req: SearchRequest,
        principal: Principal,
        window: list[str],
        records: dict[str, ImageRecord],
        fused: dict[str, float],
        via: dict[str, tuple[int, float]],
        own: dict[str, float] | None = None,
        start: int = 0,
        taken: set[str] | frozenset[str] = frozenset(),
    ) -> list[str]:
        """Joint retrieval: each page linked to a candidate scores about ``link_weight`` × the
        candidate's final score (the report found by its words brings its X-ray along, right below
        it, and the other way round).
        Linked pages must pass the request's filters and the caller's ACL like any hit; ``via``
        gets, per page lifted, the 1-based rank of the candidate that brought it (``start`` ranks
        before ``window``) and how much its score rose. ``fused``: the window's scores, and where
        a linked page gets its own; ``own``: a page's own score when ``fused`` lacks it; a page in
        ``taken`` but not in the window (ranked in an earlier block) stays where it is. Returns
        the pages added to ``window`` (and to ``records``)."""
        w = self.rt.settings.link_weight
        own = own if own is not None else fused
        base = {d: fused[d] for d in window}
        targets = sorted({ln.image_id for d in window for ln in records[d].links})
        if not targets:
            return []
        if req.filters.image_ids is not None:
            targets = sorted(set(targets) & set(req.filters.image_ids))
        if req.filters.model_copy(update={"image_ids": None}) == Filters():
            # no filter but the caller's ACL: the store's remembered records (one query a search
            # less, ~3 ms of CPU on the demo's linked X-rays and reports)
            ok = self.rt.store.get_many(targets, principal)
        else:
            allowed = req.filters.model_copy(update={"image_ids": targets})
            ok = {r.image_id: r for r in self.rt.store.list_images(principal, allowed, limit=len(targets))}
        if not ok:
            return []
        lent: dict[str, float] = {}  # per linked page, its best partner's score × link_weight
        by: dict[str, int] = {}  # ... and that partner's rank
        for rank, d in enumerate(window, start=start + 1):
            for ln in records[d].links:
                other = ln.image_id
                if other in taken and other not in base:
                    continue
                if other in ok and other != d and w * base[d] > lent.get(other, 0.0):
                    lent[other] = w * base[d]
                    by.setdefault(other, rank)
        added: list[str] = []
        for other, b in lent.items():
            # The better of its own score and its best partner's, plus a tenth of the other: of two
            # pages lifted by one partner, the one that also matches by itself ranks first. Not a
            # sum: a pair must not outrank a page that answers alone because the image routes gave
            # the picture of the pair a vote (every picture gets some for any text query); and
            # several partners count once, by the best.
            a = base.get(other, own.get(other, 0.0))
            fused[other] = max(a, b) + LINK_OWN_SHARE * min(a, b)
            via[other] = (by[other], fused[other] - a)
            if other not in records:
                records[other] = ok[other]
            if other not in window:
                added.append(other)
        window.extend(added)
        return added

    def _coverage(self, query: str) -> Callable[[str], float]:
        """How completely a text answers the query: the share of its terms the text holds, read as
        typed and, at ``IMGRAG_WEIGHT_TRANSLATED``, as a page in the other language would word it
        (:func:`translate.readings`), whichever is higher. Typed terms alone measured an English page
        by the Chinese words of a Chinese question, which it can never hold (zh → en 0.35 → 0.17)."""
        s = self.rt.settings
        readings = [(query_terms(query), 1.0)] if query else []
        if query and s.translate_query:
            readings += [(query_terms(r), s.weight_translated) for r in translate_readings(query, s.cache_dir)]
        readings = [(terms, w) for terms, w in readings if terms]
        wanted = frozenset(t for terms, _ in readings for t in terms)

        def cover(text: str, shown: frozenset[str] = frozenset()) -> float:
            """``shown``: the words of what the page shows (its marks' names), which any of its
            texts may count with: "a document with a red stamp" is answered by a line saying
            "document" on a page marked with a seal, not by every line saying "document"."""
            have = token_set(text)  # once per text and memoised: hot pages come back query after query
            if shown and not shown.isdisjoint(wanted):
                have = have | shown
            if have.isdisjoint(wanted):  # most lines of a candidate page: no term of any reading
                return 0.0
            return max((w * sum(t in have for t in terms) / len(terms) for terms, w in readings), default=0.0)

        return cover

    def _evidence(
        self,
        query: str,
        ids: list[str],
        records: dict[str, ImageRecord],
        region_hits: list[RegionHit] | None,
        principal: Principal,
        filters: Filters,
    ) -> dict[str, tuple[RegionOut | None, str, float]]:
        """Per image: the region that best answers the query, the OCR line to quote, and the
        share of query terms that region covers (the re-rank signal). ``region_hits=None``: before
        the vector routes are back, only the pages whose own words answer (the others are left out)."""
        cover = self._coverage(query)
        by_image: dict[str, list[RegionHit]] = {}
        for h in region_hits or ():
            if h.image_id in records:
                by_image.setdefault(h.image_id, []).append(h)
        out: dict[str, tuple[RegionOut | None, str, float]] = {}
        for d in ids:
            rec = records[d]
            # What the page shows, by its marks' names ("bar chart 柱状图"): counts for the re-rank
            # with any of its texts, but is no page text; alone, its region is the figure and its
            # snippet a line.
            shown = token_set(marks_text(rec.visual)) if rec.visual else frozenset()
            best_mark, mark_cov = None, 0.0
            for m in rec.visual:
                c = cover(mark_words(m.kind))
                if c > mark_cov:
                    best_mark, mark_cov = m, c
            # Lexical evidence: the OCR line and the text block covering most query terms.
            best_line, line_cov, with_shown = None, 0.0, mark_cov
            for ln in rec.ocr_lines:
                c = cover(ln.text)
                if c > line_cov:
                    best_line, line_cov = ln, c
                if shown and c > 0:
                    with_shown = max(with_shown, cover(ln.text, shown))
            best_block, block_cov = None, 0.0
            for b in rec.layout:
                c = cover(b.text) if b.text else 0.0
                if c > block_cov or (c == block_cov and c > 0 and best_block and _area(b.bbox) < _area(best_block.bbox)):
                    best_block, block_cov = b, c
                if shown and c > 0:
                    with_shown = max(with_shown, cover(b.text, shown))
            cov = max(line_cov, block_cov)
            # A picture's words are its caption (what the image model saw): "a cat" covered by a
            # photo's "tabby cat" counts as much as by a page's line "cat a binary file".
            prefer_tiles = rec.quality == "photo"
            cap_cov = cover(rec.caption) if prefer_tiles and rec.caption else 0.0
            if cov > 0 and cov >= cap_cov:
                if best_block is not None and block_cov > line_cov:
                    region = RegionOut(bbox=best_block.bbox, kind="block", label=best_block.kind, text=best_block.text)
                    snippet = _best_line_in(rec, best_block.bbox, cover) or best_block.text[:200]
                else:
                    assert best_line is not None
                    region = RegionOut(bbox=best_line.bbox, kind="line", label="ocr", text=best_line.text)
                    snippet = best_line.text
                out[d] = (region, snippet, max(cov, with_shown))
                continue
            if region_hits is None:
                continue
            # Semantic evidence: the best-scoring region from the vector routes.
            # Photos are matched by what they show (tiles), documents by what they say (text blocks).
            hits = sorted(
                (h for h in by_image.get(d, []) if h.kind != "label" and h.region_id), key=lambda h: ((h.kind == "tile") != prefer_tiles, -h.score, h.region_id)
            )
            fallback = rec.caption if prefer_tiles or not rec.ocr_lines else rec.ocr_lines[0].text
            if best_mark is not None and mark_cov > cap_cov:
                region = RegionOut(bbox=best_mark.bbox, kind="label", label=best_mark.kind)
                out[d] = (region, _best_line_in(rec, best_mark.bbox, cover) or fallback, mark_cov)
            elif hits:
                h = hits[0]
                region = RegionOut(bbox=h.bbox, kind=h.kind, label=h.label, text=h.text)
                out[d] = (region, h.text[:200] if h.text else fallback, cap_cov)
            else:
                out[d] = (None, fallback, cap_cov)
        return out


def concept_coverage(query: str, recs: list[ImageRecord], cache_dir: Path | None, meant: float = 0.7) -> dict[str, float]:
    """Per page: the IDF-weighted share of the query's concepts (:func:`translate.concepts`) printed
    anywhere on it, in either language. IDF over the pages compared: a concept every candidate
    prints (合同 on every contract) decides nothing, a city or a name decides much. A photo's
    caption counts as its words, as in the region re-rank, and so do the page's metadata values, as
    in full text (:func:`~indexing.stores.base.meta_words`: the lot and station a photo's sidecar
    gives were invisible here, so the lot number that names one photo decided nothing).

    A concept typed in English also counts where a Chinese page prints a word that means it (any
    sense, :meth:`~indexing.translate.Dictionary.meanings`): the page's own word decides, not the
    one or two headwords the reversed dictionary guesses ("development" → 发展, while contracts
    print 开发). A concept typed in Chinese is looked for as typed and by its English glosses on
    the page's own latin words only: a Chinese page's meanings would let 纽约 ("new york") match
    any page printing 新 ("new"). A concept found only by meaning counts ``meant``
    (``IMGRAG_WEIGHT_TRANSLATED``) of one printed as such: a sense is a guess, as a gloss is."""
    cs = translate_concepts(query, cache_dir)
    if not cs or not recs:
        return {}
    match = [_concept_matches(_concept_text(r), cs, cache_dir, meant) for r in recs]
    n = len(recs)
    idf = [float(np.log(1 + (n - df + 0.5) / (df + 0.5))) for df in (sum(m[i] > 0 for m in match) for i in range(len(cs)))]
    total = sum(idf) or 1.0
    return {r.image_id: sum(w * ok for w, ok in zip(idf, m, strict=True)) / total for r, m in zip(recs, match, strict=True)}


def _concept_matches(text: str, cs: tuple[tuple[str, ...], ...], cache_dir: Path | None, meant: float) -> list[float]:
    """Per concept: 1 where ``text`` prints one of its forms, ``meant`` where only a Chinese word of
    it means an English concept (:func:`concept_coverage`), else 0."""
    squashed, stems = _page_forms(text)
    return [
        1.0 if any((f in squashed) if _is_cjk(f) else f in stems for f in c)
        else meant if not _is_cjk(c[0]) and any(f in _page_meanings(text, cache_dir) for f in c if not _is_cjk(f))
        else 0.0
        for c in cs
    ]


def prints_no_concept(rec: ImageRecord, cs: tuple[tuple[str, ...], ...], cache_dir: Path | None) -> bool:
    """Whether a page's words — text read off it, a photo's caption, the names of what it shows, its
    tags and metadata — hold none of the query's concepts (``cs``, :func:`translate.concepts`) in either
    language, not even by meaning: what BM25 matched on it is then a piece of a word (月 of 2020年03月,
    for "the moon" read as 月亮) or a character every Chinese page prints (一 of 一杯咖啡)."""
    if any(_concept_matches(_concept_text(rec), cs, cache_dir, 1.0)):  # the re-rank's text: its caches serve both
        return False
    shown = " ".join([marks_text(rec.visual), " ".join(rec.tags)])
    return not (shown.strip() and any(_concept_matches(shown, cs, cache_dir, 1.0)))


def _concept_text(rec: ImageRecord) -> str:
    """The words a page's concepts are looked for in: its text, a photo's caption (a document's is
    the image model's guess), its metadata values."""
    return " ".join([rec.ocr_text, rec.caption if rec.quality == "photo" else "", meta_words(rec)])


def _is_cjk(form: str) -> bool:
    return "\u3400" <= form[0] <= "\ufaff"


@lru_cache(maxsize=2048)
def _page_forms(text: str) -> tuple[str, frozenset[str]]:
    """A page's text as concepts are looked up in it: squashed (Chinese forms are substrings) and
    its stemmed latin tokens (a latin form is never looked up among the CJK ones, which a stem leaves
    as they are). Cached: the same candidates come back query after query. Normalised once, each
    distinct word stemmed once, no CJK unigrams and bigrams built (most of a Chinese page's tokens)."""
    norm = normalize(text)
    return norm.replace(" ", ""), frozenset(map(translate_stem, set(latin_words(norm))))


@lru_cache(maxsize=2048)
def _page_meanings(text: str, cache_dir: Path | None) -> frozenset[str]:
    """The stemmed English meanings of the Chinese words a page prints; read only for an English
    concept the page does not print as such (segmenting a contract page costs ~1.5 ms), cached."""
    if not any(_is_cjk(c) for c in text):
        return frozenset()
    return frozenset(translate_stem(t) for t in set(tokens(" ".join(set(dictionary(cache_dir).meanings(text))))))


def _area(b: BBox) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _best_line_in(rec: ImageRecord, box: BBox, cover: Callable[[str], float]) -> str:
    best, best_c = "", 0.0
    for ln in rec.ocr_lines:
        cx, cy = (ln.bbox[0] + ln.bbox[2]) / 2, (ln.bbox[1] + ln.bbox[3]) / 2
        if box[0] <= cx <= box[2] and box[1] <= cy <= box[3]:
            c = cover(ln.text)
            if c > best_c:
                best, best_c = ln.text, c
    return best


def snippet_in_record(snippet: str, rec: ImageRecord) -> bool:
    """Whether a quoted snippet really appears in the image's OCR text (after normalisation)."""
    s = squash(snippet)
    return bool(s) and s in squash(rec.ocr_text)
