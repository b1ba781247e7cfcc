"""Paging is a stable slice: with the routes' depth and the re-rank block fixed (a cursor fixes them
at page 1), page n is the n-th slice of one ranked list — every hit once, no gaps, whatever k each
page asks for — including the parts of the list that re-ranking, links and label-only pictures
move. Before, a later page was a new search whose routes read deeper (depth grew with offset + k)
and whose re-rank window grew with it, so a hit near a page border could repeat or be skipped.
Real models on a real index (both backends): tests/e2e/test_paging_e2e.py."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from imgrag.indexing.config import Settings
from imgrag.indexing.errors import ImgragError
from imgrag.indexing.models import OcrLine
from imgrag.indexing.search import (
    Searcher,
    SearchRequest,
    block_of,
    depth_of,
    list_digest,
)
from imgrag.indexing.stores.base import OPERATOR, ImageRecord, Link, RegionHit, RouteHit

NOW = datetime.now(UTC)
WORDS = ["zebra", "lion", "contract", "seal", "total", "amount", "date", "party"]


def _runtime(seed: int, n_pages: int = 400, **settings: Any) -> Any:
    """A store of ``n_pages`` pages with random route scores (a deeper read adds lower scores, which
    moves the routes' standout statistics), random words on each page (the re-rank's evidence and
    concept counts), links between some pages, and pictures whose caption is the model's."""
    rng = random.Random(seed)
    pages = [f"p{i:03d}" for i in range(n_pages)]
    route_scores = {r: {p: rng.random() for p in pages} for r in ("bm25", "image", "text", "feature")}
    region_scores = {(p, kind, j): rng.random() for p in pages for kind in ("text", "tile") for j in range(3)}
    words = {p: " ".join(rng.sample(WORDS, rng.randint(0, 4))) for p in pages}
    links = {p: [Link(image_id=rng.choice(pages), kind="document", why="case=1")] for p in pages if rng.random() < 0.15}
    photos = {p for p in pages if rng.random() < 0.1}

    def record(i: str) -> ImageRecord:
        return ImageRecord(
            image_id=i, doc_id=i, path=f"/c/{i}.png", format="png", width=10, height=10,
            quality="photo" if i in photos else "scanned", caption="a zebra" if i in photos else "",
            caption_source="model" if i in photos else "file", indexed_at=NOW,
            ocr_lines=[OcrLine(text=words[i] or "nothing", bbox=(0, 0, 5, 5), confidence=0.9)],
            ocr_text=words[i], links=[ln for ln in links.get(i, []) if ln.image_id != i],
        )

    def ranked(scores: dict[str, float], n: int) -> list[RouteHit]:
        return [RouteHit(image_id=p, score=sc) for p, sc in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]

    class Store:
        def spaces(self) -> None:
            return None

        def data_version(self) -> None:
            return None

        def count(self, principal: Any, filters: Any) -> int:
            return len(pages)

        def bm25(self, keywords, n, filters, principal, extra=()):  # type: ignore[no-untyped-def]
            return ranked(route_scores["bm25"], n)

        def knn(self, field, vec, n, filters, principal):  # type: ignore[no-untyped-def]
            return ranked(route_scores[field], n)

        def knn_regions(self, kind, vec, n, filters, principal, image_ids=None):  # type: ignore[no-untyped-def]
            hits = [RegionHit(region_id=f"{p}:{k}{j}", image_id=p, kind="tile" if k == "tile" else "block", label="",
                              bbox=(j, j, j + 5, j + 5), text=words[p], score=sc)
                    for (p, k, j), sc in region_scores.items() if k == kind]
            return sorted(hits, key=lambda h: (-h.score, h.region_id))[:n]

        def get_many(self, ids, principal):  # type: ignore[no-untyped-def]
            return {i: record(i) for i in ids if i in route_scores["bm25"]}

        def list_images(self, principal, filters, limit=100, offset=0):  # type: ignore[no-untyped-def]
            ids = [i for i in (filters.image_ids or []) if i in route_scores["bm25"]]
            return [record(i) for i in ids[offset: offset + limit]]

    vecs = SimpleNamespace(identity="t", dim=2, embed_queries=lambda t: np.ones((len(t), 2), np.float32))
    s = Settings(translate_query=False, search_cache=0, two_stage_pages=0, image_route_quality=[], **settings)
    return SimpleNamespace(settings=s, store=Store(), text_embedder=vecs, image_embedder=vecs)


def _ids(res: Any) -> list[str]:
    return [h.image_id for h in res.hits]


@pytest.mark.parametrize("seed", range(6))
def test_pages_are_slices_of_one_ranked_list(seed: int) -> None:
    """Pages of varying k at page 1's depth and block, concatenated, are the first hits of one search
    at that depth and block: no repeats, no gaps, the same scores; the digests chain page to page."""
    searcher = Searcher(_runtime(seed, max_k=400))  # the reference search asks for every hit at once
    rng = random.Random(seed)
    query = " ".join(rng.sample(WORDS, 2))
    first = SearchRequest(query=query, k=10)
    depth, block = depth_of(first), block_of(first)
    assert (depth, block) == (50, 30)
    pages, offset, seen = [], 0, list_digest([])
    while offset < 150:
        k = rng.choice([3, 7, 10, 16, 25])
        res = searcher.search(SearchRequest(query=query, k=k, offset=offset, depth=depth, block=block), OPERATOR)
        assert res.before == seen  # a page continues exactly the list the previous one ended
        if not res.hits:
            break
        pages.append(res)
        offset += len(res.hits)
        seen = res.through
    got = [h for res in pages for h in res.hits]
    whole = searcher.search(SearchRequest(query=query, k=len(got), depth=depth, block=block), OPERATOR)
    assert [h.image_id for h in got] == _ids(whole)
    assert [h.score for h in got] == [h.score for h in whole.hits]
    assert len(set(_ids(whole))) == len(got) and len(got) >= 100
    # page 1 is the search without a cursor's fixed values: the defaults are page 1's
    assert _ids(searcher.search(SearchRequest(query=query, k=10), OPERATOR)) == _ids(whole)[:10]
    # links and the re-rank did move pages in this list (or it would prove nothing)
    assert any("links" in h.ranks for h in got) and any(h.contributions.get("rerank") for h in got)


def test_offset_paging_without_a_cursor_reads_page_1s_depth() -> None:
    """The defaults do not grow with the offset: pages of one k are slices of one list even without a
    cursor (offset paging, as the web viewer did before it used cursors), where before page 4
    re-ranked a window of 40."""
    searcher = Searcher(_runtime(7, max_k=400))
    pages = [searcher.search(SearchRequest(query="zebra lion", k=10, offset=o), OPERATOR) for o in range(0, 60, 10)]
    whole = searcher.search(SearchRequest(query="zebra lion", k=60, depth=50, block=30), OPERATOR)
    assert [i for p in pages for i in _ids(p)] == _ids(whole)


def test_depth_and_block_are_bounded() -> None:
    searcher = Searcher(_runtime(0, n_pages=20))
    for req, msg in (
        (SearchRequest(query="zebra", k=10, offset=1001), "paging past hit 1000"),
        (SearchRequest(query="zebra", k=10, depth=100_000), "depth=100000 is over the limit"),
        (SearchRequest(query="zebra", k=10, block=5000), "block=5000 is over the limit"),
    ):
        with pytest.raises(ImgragError, match=msg):
            searcher.search(req, OPERATOR)
    # past the end of the list: no hits, not an error
    res = searcher.search(SearchRequest(query="zebra", k=10, offset=500), OPERATOR)
    assert res.hits == [] and res.candidates <= 20
