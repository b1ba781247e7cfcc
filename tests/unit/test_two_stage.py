"""The two-stage region search of a large index (``IMGRAG_TWO_STAGE_PAGES``): which pages its
second stage reads, and that below the threshold the region routes are called exactly as before."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from imgrag.indexing.config import Settings
from imgrag.indexing.search import Searcher, SearchRequest, two_stage_candidates
from imgrag.indexing.stores.base import (
    OPERATOR,
    Filters,
    Principal,
    RegionHit,
    RouteHit,
)


def test_candidates_take_the_routes_in_turn_without_repeats_up_to_the_cap() -> None:
    image, text, bm25 = ["a", "b", "c"], ["b", "d"], ["e", "a", "f", "g"]
    assert two_stage_candidates([image, text, bm25], 100) == ["a", "b", "e", "d", "c", "f", "g"]
    assert two_stage_candidates([image, text, bm25], 4) == ["a", "b", "e", "d"]  # each route's best first
    assert two_stage_candidates([], 10) == [] and two_stage_candidates([[], []], 10) == []


class _Embedder:
    identity, dim = "fake", 4

    def embed_queries(self, texts: list[str]) -> list[np.ndarray]:
        return [np.full(4, 0.5, np.float32) for _ in texts]


class _Store:
    """Page routes answer fixed lists; the region routes record how they were called."""

    def __init__(self, pages: int) -> None:
        self.pages = pages
        self.region_calls: list[tuple[str, Filters, list[str] | None]] = []
        self.counts = 0

    def spaces(self) -> None:
        return None

    def count(self, principal: Principal, filters: Filters) -> int:
        self.counts += 1
        return self.pages

    def knn(self, field: str, vector: np.ndarray, k: int, filters: Filters, principal: Principal) -> list[RouteHit]:
        ids = {"image": ["p1", "p2"], "text": ["p3", "p1"]}[field]
        return [RouteHit(image_id=i, score=1.0 - n / 10) for n, i in enumerate(ids)]

    def bm25(self, query: str, k: int, filters: Filters, principal: Principal, extra: Any = ()) -> list[RouteHit]:
        return [RouteHit(image_id="p4", score=3.0)]

    def knn_regions(
        self, kind: str, vector: np.ndarray, k: int, filters: Filters, principal: Principal, image_ids: Any = None
    ) -> list[RegionHit]:
        self.region_calls.append((kind, filters, None if image_ids is None else list(image_ids)))
        found = ["p9", "p1"] if image_ids is None else [i for i in ["p9", "p1"] if i in image_ids]
        return [RegionHit(region_id=f"{i}:{kind}", image_id=i, kind="tile" if kind == "tile" else "block",
                          label="", text="", bbox=(0, 0, 1, 1), score=0.6 if i == "p9" else 0.5)
                for i in found]


def _recall(pages: int, **settings: Any) -> tuple[_Store, Any]:
    store = _Store(pages)
    rt = SimpleNamespace(
        settings=Settings(search_threads=1, image_route_quality=[], translate_query=False, **settings),
        store=store, text_embedder=_Embedder(), image_embedder=_Embedder(),
    )
    rec = Searcher(rt).recall(SearchRequest(query="payment terms"), OPERATOR)  # type: ignore[arg-type]
    return store, rec


def test_below_the_threshold_the_region_routes_search_every_region() -> None:
    store, rec = _recall(9_999, two_stage_pages=10_000)
    assert [(k, ids) for k, _, ids in store.region_calls] == [("text", None), ("tile", None)]
    assert rec.ranked["region_tile"] == ["p9", "p1"]  # a page no page route found can surface


@pytest.mark.parametrize("pages", [10_000, 250_000])
def test_from_the_threshold_they_search_the_page_routes_candidates_only(pages: int) -> None:
    store, rec = _recall(pages, two_stage_pages=10_000)
    # image, bm25, text_vector in fusion order, each route's best first
    assert [(k, ids) for k, _, ids in store.region_calls] == [("text", ["p1", "p4", "p3", "p2"]), ("tile", ["p1", "p4", "p3", "p2"])]
    assert rec.ranked["region_tile"] == ["p1"] and rec.ranked["region_text"] == ["p1"]
    assert all(f == Filters() for _, f, _ in store.region_calls)  # the request's filters go along unchanged


def test_the_cap_and_off() -> None:
    store, _ = _recall(50_000, two_stage_pages=10_000, two_stage_candidates=10)
    assert store.region_calls[0][2] == ["p1", "p4", "p3", "p2"]  # fewer than the cap: all of them
    store, _ = _recall(10**9, two_stage_pages=0)
    assert [ids for _, _, ids in store.region_calls] == [None, None] and store.counts == 0
    store, _ = _recall(2, two_stage_pages=1)
    assert all(ids is not None for _, _, ids in store.region_calls)


def test_region_routes_alone_have_no_first_stage() -> None:
    store = _Store(10**6)
    rt = SimpleNamespace(settings=Settings(search_threads=1, image_route_quality=[]), store=store,
                         text_embedder=_Embedder(), image_embedder=_Embedder())
    Searcher(rt).recall(SearchRequest(query="x", routes=["region_text"]), OPERATOR)  # type: ignore[arg-type]
    assert [ids for _, _, ids in store.region_calls] == [None]


class _SlowCountStore(_Store):
    """A store whose count, after the first, waits for the test to let it answer."""

    def __init__(self, pages: int) -> None:
        super().__init__(pages)
        self.gate = threading.Event()
        self.answered = threading.Event()

    def count(self, principal: Principal, filters: Filters) -> int:
        if self.counts:
            assert self.gate.wait(10)
        n = super().count(principal, filters)
        if self.counts > 1:
            self.answered.set()
        return n

    def get_many(self, image_ids: list[str], principal: Principal) -> dict[str, Any]:
        return {}  # BM25's records, read while the query is embedded (on a pool of 2 threads)


def test_the_page_count_is_re_read_off_the_search_path() -> None:
    store = _SlowCountStore(9_999)
    rt = SimpleNamespace(
        settings=Settings(search_threads=2, image_route_quality=[], translate_query=False, two_stage_pages=10_000),
        store=store, text_embedder=_Embedder(), image_embedder=_Embedder(),
    )
    searcher = Searcher(rt)  # type: ignore[arg-type]
    searcher.recall(SearchRequest(query="payment terms"), OPERATOR)
    assert store.counts == 1 and [ids for _, _, ids in store.region_calls] == [None, None]  # the first count is waited for
    store.pages, store.region_calls = 10_000, []
    searcher.recall(SearchRequest(query="payment terms"), OPERATOR)
    assert store.counts == 1 and [ids for _, _, ids in store.region_calls] == [None, None]  # fresh: not read again
    searcher._pages, store.region_calls = (searcher._pages[0] - 6.0, searcher._pages[1]), []  # type: ignore[index]
    searcher.recall(SearchRequest(query="payment terms"), OPERATOR)  # returns while the count is held up
    assert [ids for _, _, ids in store.region_calls] == [None, None]  # the stale count decided
    store.gate.set()
    assert store.answered.wait(60)
    # the pool thread stores the count right after the store answered, then lets go of the lock it
    # took before asking: once the lock is free the count is stored, however slowly that thread ran
    # (a 1 s poll for the value was a race on a loaded box)
    assert searcher._pages_reading.acquire(timeout=60)
    searcher._pages_reading.release()
    assert searcher._pages[1] == 10_000  # type: ignore[index]
    store.region_calls = []
    searcher.recall(SearchRequest(query="payment terms"), OPERATOR)
    assert store.counts == 2 and all(ids is not None for _, _, ids in store.region_calls)


def test_a_failed_re_read_keeps_the_last_count(caplog: pytest.LogCaptureFixture) -> None:
    store = _Store(10_000)
    rt = SimpleNamespace(settings=Settings(search_threads=1, image_route_quality=[], translate_query=False,
                                           two_stage_pages=10_000),
                         store=store, text_embedder=_Embedder(), image_embedder=_Embedder())
    searcher = Searcher(rt)  # type: ignore[arg-type]
    assert searcher._two_stage()

    def broken(principal: Principal, filters: Filters) -> int:
        raise ConnectionError("down")

    store.count = broken  # type: ignore[method-assign]
    searcher._pages = (searcher._pages[0] - 6.0, searcher._pages[1])  # type: ignore[index]
    assert searcher._two_stage() and "could not re-read the page count" in caplog.text


def test_a_failed_recount_is_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    """Elasticsearch SIGKILLed under a stdio server: the client got one line, but the server's log got
    a warning with three chained tracebacks (urllib3, elastic_transport, ours) from the background
    page recount. The reason alone is logged now (tracebacks are for IMGRAG_DEBUG)."""
    from imgrag.indexing.errors import BackendUnavailableError

    store = _Store(10)
    rt = SimpleNamespace(settings=Settings(search_threads=1, two_stage_pages=10_000), store=store)
    searcher = Searcher(rt)  # type: ignore[arg-type]
    searcher._pages = (time.monotonic() - 60, 10)

    def down(*a: Any) -> int:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as e:
            raise BackendUnavailableError("cannot reach Elasticsearch at http://127.0.0.1:9245", "start it") from e

    store.count = down  # type: ignore[method-assign]
    caplog.set_level("INFO")
    assert searcher._two_stage() is False  # the last count decides
    warned = [r for r in caplog.records if "page count" in r.getMessage()]
    assert len(warned) == 1 and not warned[0].exc_info and "cannot reach Elasticsearch" in warned[0].getMessage()
    assert searcher._pages[1] == 10
