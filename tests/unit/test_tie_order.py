"""A result's order is a total order: exactly tied hits (same route score, same fused score, same
region score) rank by page id (region id), whatever order a store, its threads or the routes
returned them in. Clients page through results with ``offset``; LanceDB with two compute threads
returned two tied pages swapped (session 12's reverted ``LANCE_CPU_THREADS``)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from imgrag.indexing.config import Settings
from imgrag.indexing.models import OcrLine
from imgrag.indexing.search import Recall, Searcher, SearchRequest
from imgrag.indexing.stores.base import (
    OPERATOR,
    ImageRecord,
    RegionHit,
    RouteHit,
    page_order,
    region_order,
    top_k,
)

NOW = datetime.now(UTC)
SHUFFLES = range(8)


def _shuffled(items: list[Any], seed: int) -> list[Any]:
    out = list(items)
    random.Random(seed).shuffle(out)
    return out


def test_top_k_cuts_a_tie_by_id_whatever_order_the_store_returns_it_in() -> None:
    """Rows 3-9 tie and the cut-off (k=5) falls inside the tie: the store's n best come in an order
    of its own (a shuffle), so its first k differ by shuffle; top_k's do not."""
    scores = [0.9, 0.8, 0.7] + [0.5] * 7 + [0.1] * 5
    rows = [RouteHit(image_id=f"p{i:02d}", score=sc) for i, sc in enumerate(scores)]

    def store(seed: int) -> Any:
        order = sorted(_shuffled(rows, seed), key=lambda h: -h.score)  # a stable sort: ties in the shuffle's order
        asked: list[int] = []

        def fetch(n: int) -> list[RouteHit]:
            asked.append(n)
            return _shuffled(order[:n], seed + 100)  # best n, in any order

        return fetch, asked

    got, plain = set(), set()
    for seed in SHUFFLES:
        fetch, asked = store(seed)
        got.add(tuple(h.image_id for h in top_k(fetch, 5, page_order)))
        assert asked == [6, 12]  # one more; the 5th ties with the 6th, so twice as many, where the tie ends
        plain.add(tuple(h.image_id for h in sorted(fetch(5), key=lambda h: -h.score)))  # the cut where the store made it
    assert got == {("p00", "p01", "p02", "p03", "p04")}
    assert len(plain) > 1  # without the tie-break the list depends on the store's order
    # a margin (tie_margin: a quarter more where rows are cheap) that holds the tie's end: one query
    fetch, asked = store(0)
    assert [h.image_id for h in top_k(fetch, 5, page_order, 6)] == ["p00", "p01", "p02", "p03", "p04"] and asked == [11]
    # no tie at the cut-off: one row more is all it costs
    fetch, asked = store(0)
    assert [h.image_id for h in top_k(fetch, 3, page_order)] == ["p00", "p01", "p02"] and asked == [4]
    # fewer rows than asked, and k = 0
    fetch, asked = store(0)
    assert len(top_k(fetch, 40, page_order)) == len(rows) and asked == [41]
    assert top_k(fetch, 0, page_order) == []


def test_a_tie_of_thousands_stops_doubling() -> None:
    """Every row tied (many pages with one vector): the fetch doubles at most TIE_REFETCHES times."""
    from imgrag.indexing.stores.base import TIE_REFETCHES

    asked: list[int] = []

    def fetch(n: int) -> list[RouteHit]:
        asked.append(n)
        return [RouteHit(image_id=f"p{i:05d}", score=0.5) for i in range(n)]

    assert [h.image_id for h in top_k(fetch, 2, page_order)] == ["p00000", "p00001"]
    assert asked == [3 * 2**i for i in range(TIE_REFETCHES + 1)]


def test_region_order_is_score_then_page_then_region() -> None:
    hits = [RegionHit(region_id=r, image_id=i, kind="block", label="", bbox=(0, 0, 1, 1), text="", score=sc)
            for r, i, sc in [("b:2", "b", 0.5), ("a:9", "a", 0.5), ("b:1", "b", 0.5), ("c:0", "c", 0.7)]]
    assert [h.region_id for h in sorted(hits, key=region_order)] == ["c:0", "a:9", "b:1", "b:2"]


def _runtime(seed: int, **settings: Any) -> Any:
    """A store whose routes all answer with exactly tied hits, each time in the order of ``seed``."""
    pages = [f"p{i:02d}" for i in range(40)]

    class Store:
        def spaces(self) -> None:
            return None

        def data_version(self) -> None:
            return None

        def count(self, principal: Any, filters: Any) -> int:
            return len(pages)

        def bm25(self, keywords, n, filters, principal, extra=()):  # type: ignore[no-untyped-def]
            return [RouteHit(image_id=p, score=4.0) for p in _shuffled(pages, seed)[:n]]

        def knn(self, field, vec, n, filters, principal):  # type: ignore[no-untyped-def]
            return [RouteHit(image_id=p, score=0.8) for p in _shuffled(pages, seed + 1)[:n]]

        def knn_regions(self, kind, vec, n, filters, principal, image_ids=None):  # type: ignore[no-untyped-def]
            hits = [RegionHit(region_id=f"{p}:{kind}{j}", image_id=p, kind="tile" if kind == "tile" else "block", label="",
                              bbox=(j, j, j + 5, j + 5), text=f"region {j}", score=0.6)
                    for p in pages for j in range(3)]
            return _shuffled(hits, seed + 2)[:n]

        def get_many(self, ids, principal):  # type: ignore[no-untyped-def]
            return {i: ImageRecord(image_id=i, doc_id=i, path=f"/c/{i}.png", format="png", width=10, height=10,
                                   quality="scanned", indexed_at=NOW,
                                   ocr_lines=[OcrLine(text="nothing to see", bbox=(0, 0, 5, 5), confidence=0.9)]) for i in ids}

        def list_images(self, principal, filters, limit=100, offset=0):  # type: ignore[no-untyped-def]
            return []

    vecs = SimpleNamespace(identity="t", dim=2, embed_queries=lambda t: np.ones((len(t), 2), np.float32))
    s = Settings(translate_query=False, search_cache=0, two_stage_pages=0, image_route_quality=[], **settings)
    return SimpleNamespace(settings=s, store=Store(), text_embedder=vecs, image_embedder=vecs)


def _answer(res: Any) -> list[tuple[str, float, str]]:
    return [(h.image_id, h.score, h.region.text if h.region else "") for h in res.hits]


@pytest.mark.parametrize("threads", [1, 4])
def test_a_search_over_tied_hits_gives_one_list_whatever_order_they_came_in(threads: int) -> None:
    """Every route ties every page (and every region of a page): the hits, their scores, their
    evidence region and each page of results (offset) are the same for every order the store
    returns them in; without the tie-break they followed that order."""
    answers, pages = set(), set()
    for seed in SHUFFLES:
        searcher = Searcher(_runtime(seed, search_threads=threads))
        res = searcher.search(SearchRequest(query="zebra", k=10), OPERATOR)
        answers.add(tuple(_answer(res)))
        second = searcher.search(SearchRequest(query="zebra", k=10, offset=10), OPERATOR)
        pages.add(tuple(_answer(second)))
        both = searcher.search(SearchRequest(query="zebra", k=20), OPERATOR)
        assert _answer(both) == _answer(res) + _answer(second)  # paging: page 2 continues page 1
    assert len(answers) == 1 and len(pages) == 1
    (answer,) = answers
    assert [d for d, _, _ in answer] == [f"p{i:02d}" for i in range(10)]
    assert all(text == "region 0" for _, _, text in answer)  # the tied regions' first by id: p..:tile0


def test_fused_ties_rank_by_page_id_whatever_the_routes_order() -> None:
    """Two pages each first on one of two equally weighted routes tie exactly after fusion: the
    page id decides, not which route's list was read first."""
    rt = _runtime(0, weight_bm25=1.0, weight_text_vector=1.0)
    searcher = Searcher(rt)
    req = SearchRequest(query="zebra", k=2, rerank=False)
    got = set()
    for routes in (["bm25", "text_vector"], ["text_vector", "bm25"]):
        ranked = {"bm25": ["y", "x"], "text_vector": ["x", "y"]}
        ranked = {r: ranked[r] for r in routes}
        rec = Recall(query="zebra", ranked=ranked, route_scores={r: {d: 1.0 for d in ids} for r, ids in ranked.items()})
        res = searcher.rank(req, OPERATOR, rec)
        assert res.hits[0].score == res.hits[1].score
        got.add(tuple(h.image_id for h in res.hits))
    assert got == {("x", "y")}
