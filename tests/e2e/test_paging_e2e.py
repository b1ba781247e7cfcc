"""Paging through ``search_images`` with real models on a real index, both backends: the pages an
agent gets by following ``next_cursor`` are the first hits of ONE search at page 1's depth — every
hit once, no gaps, one order — for many queries, a caller who is not the operator, and pages of
varying k; a cursor another caller replays, an edited cursor and a cursor that outlived a write to
the index are refused with a clear line. Before (main), page n was a new search whose routes read
deeper, so the concatenation drifted from any one search (a hit repeated or was skipped near a page
border).

The index: the shared corpus's pages (tests/e2e/shared_corpus.py, OCR'd and embedded by the real
CLI), copied until it holds 240 pages, each copy's vectors nudged by a little noise (as
benchmarks/bench_search.py builds its index), so the routes read lists deeper than one page and
the order below page 1 depends on how deep they read. The queries are embedded by the real models.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import BACKENDS, es_settings
from imgrag.indexing.app import Imgrag
from imgrag.indexing.config import Settings
from imgrag.indexing.search import SearchRequest, block_of, depth_of
from imgrag.indexing.stores.base import (
    OPERATOR,
    Filters,
    ImageVectors,
    Indexed,
    Principal,
    RegionRecord,
)
from imgrag.indexing.stores.lance import LanceStore
from imgrag.mcp_server.auth import fixed_principal
from imgrag.mcp_server.server import build_server
from shared_corpus import copy_index

PAGES = 240
ANN = Principal(name="ann", groups=["legal"])
BOB = Principal(name="bob", groups=["legal"])
QUERIES = [
    "service contract", "服务合同", "甲方", "Party B", "签订日期", "2023-05-17", "invoice total amount", "发票 金额",
    "a cat", "一只猫", "memo to all staff", "人事 通知", "seal", "红色印章", "signature date", "Ref. No. QX-4827-5519",
    "payment terms", "a photo", "table of items", "合同编号",
]


def _copy_pages(source: Path, app: Imgrag, pages: int) -> None:
    """The source index's pages copied into ``app``'s store until it holds ``pages``; each copy gets a
    new id and its vectors a small random nudge; a third of the copies are public, a third group
    ``legal``'s, a third group ``hr``'s (the id says which) — the operator's and a token user's lists differ."""
    src = LanceStore(source)
    recs = src.list_images(OPERATOR, Filters(), limit=1000)
    data = []
    for rec in recs:
        regions = src.regions_of([rec.image_id])
        data.append((rec, src.get_vectors(rec.image_id, OPERATOR), regions, src.region_vectors([r.region_id for r in regions])))
    spaces = src.spaces()
    src.close()
    assert data and spaces is not None
    rng = np.random.default_rng(0)

    def nudge(v: np.ndarray) -> np.ndarray:
        v = v + rng.normal(scale=0.3 / np.sqrt(v.shape[-1]), size=v.shape).astype(np.float32)
        return (v / np.linalg.norm(v)).astype(np.float32)

    store = app.store
    store.ensure_spaces(spaces)
    batch = []
    with store.writer():
        for i in range(pages):
            rec, vecs, regions, rvecs = data[i % len(data)]
            acl = ([], ["legal"], ["hr"])[i % 3]
            iid = f"{rec.image_id[:12]}-{acl[0] if acl else 'public'}-{i:03d}"
            batch.append(Indexed(
                record=rec.model_copy(update={"image_id": iid, "acl": acl, "links": []}),
                vectors=ImageVectors(image=nudge(vecs.image), feature=nudge(vecs.feature), text=nudge(vecs.text)),
                regions=[RegionRecord(region_id=f"{iid}:{r.region_id}", image_id=iid, kind=r.kind, label=r.label, bbox=r.bbox,
                                      text=r.text, pii_kinds=r.pii_kinds, vector=nudge(rvecs[r.region_id]))
                         for r in regions if r.region_id in rvecs],
            ))
        store.write(batch)
        store.commit("paging test copy", {"pages": pages})


@pytest.fixture(scope="module", params=BACKENDS)
def paged(request: pytest.FixtureRequest, shared_corpus: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    work = tmp_path_factory.mktemp(f"paging-{request.param}")
    source = copy_index(shared_corpus, work / "source")["home"] / "index"
    if request.param == "lancedb":
        settings = Settings(home=work / "home", audit=False)
    else:
        settings = es_settings(work, audit=False)
    app = Imgrag(settings)
    _copy_pages(source, app, PAGES)
    yield app
    if request.param == "elasticsearch":
        app.store.drop()  # type: ignore[attr-defined]
    app.store.close()


def _call(mcp: Any, calls: list[dict[str, Any]]) -> list[Any]:
    """Each call's structured answer (or its error text), in one client session, one after another."""
    from mcp import Client

    async def main() -> list[Any]:
        out = []
        async with Client(mcp) as c:
            for args in calls:
                r = await c.call_tool("search_images", args)
                out.append(r.content[0].text if r.is_error else r.structured_content)
        return out

    return asyncio.run(main())


def _pages(mcp: Any, query: str, ks: list[int]) -> tuple[list[str], list[dict[str, Any]]]:
    """Follow next_cursor with these page sizes (until it ends): the hit ids in order, and the answers."""
    from mcp import Client

    async def main() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cursor = None
        async with Client(mcp) as c:
            for k in ks:
                r = await c.call_tool("search_images", {"query": query, "k": k, **({"cursor": cursor} if cursor else {})})
                assert not r.is_error, r.content[0].text
                out.append(r.structured_content)
                cursor = r.structured_content["next_cursor"]
                if not cursor:
                    break
        return out

    answers = asyncio.run(main())
    return [h["image_id"] for a in answers for h in a["hits"]], answers


@pytest.mark.parametrize("who", ["operator", "ann"])
def test_following_the_cursor_reads_one_ranked_list(paged: Imgrag, who: str) -> None:
    principal = OPERATOR if who == "operator" else ANN
    mcp = build_server(paged, fixed_principal(principal))
    ks = [10, 10, 7, 13, 10, 10, 20]  # an agent may change k between pages
    depth, block = depth_of(SearchRequest(k=ks[0])), block_of(SearchRequest(k=ks[0]))
    checked = 0
    for query in QUERIES:
        ids, answers = _pages(mcp, query, ks)
        assert [a["offset"] for a in answers] == [sum(len(a["hits"]) for a in answers[:i]) for i in range(len(answers))]
        assert len(ids) == len(set(ids)), f"{query!r}: a hit came back twice"
        one = paged.search(SearchRequest(query=query, k=len(ids), depth=depth, block=block), principal)
        assert ids == [h.image_id for h in one.hits], f"{query!r}: the pages are not one search's first {len(ids)} hits"
        scores = [h["score"] for a in answers for h in a["hits"]]
        assert scores == [h.score for h in one.hits]
        if who == "ann":
            assert not any("-hr-" in i for i in ids)
        checked += len(ids) > 30
    assert checked >= len(QUERIES) // 2  # most queries paged past page 3, where the re-rank window used to grow


def test_cursors_are_the_callers_own_and_unforgeable(paged: Imgrag) -> None:
    mine, theirs = build_server(paged, fixed_principal(ANN)), build_server(paged, fixed_principal(BOB))
    (first,) = _call(mine, [{"query": "service contract", "k": 10}])
    cursor = first["next_cursor"]
    assert cursor
    body, _, mac = cursor.partition(".")
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    deeper = base64.urlsafe_b64encode(json.dumps({**data, "o": 10_000, "d": 100_000}).encode()).decode().rstrip("=")
    answers = _call(theirs, [{"query": "service contract", "k": 10, "cursor": cursor}])
    answers += _call(mine, [{"query": "service contract", "k": 10, "cursor": f"{deeper}.{mac}"},
                            {"query": "another query", "k": 10, "cursor": cursor},
                            {"query": "service contract", "k": 10, "cursor": cursor}])
    assert "issued to another caller" in answers[0]
    assert "not one this server issued" in answers[1]
    assert "different search" in answers[2]
    assert answers[3]["offset"] == 10 and answers[3]["hits"]


def test_a_write_between_pages_says_the_results_changed(paged: Imgrag) -> None:
    """A page is served only as the continuation of the list the earlier pages came from: after a
    write that changes what page 1 showed, the next page says so instead of repeating or skipping.
    Last in the module: it writes to the module's index."""
    mcp = build_server(paged, fixed_principal(OPERATOR))
    (first,) = _call(mcp, [{"query": "a cat", "k": 10}])
    gone = first["hits"][3]["image_id"]
    paged.delete([gone], OPERATOR)
    (second,) = _call(mcp, [{"query": "a cat", "k": 10, "cursor": first["next_cursor"]}])
    assert isinstance(second, str) and "the results changed since the previous page" in second, second
    (again,) = _call(mcp, [{"query": "a cat", "k": 10}])  # starting over works
    assert gone not in [h["image_id"] for h in again["hits"]] and again["next_cursor"]
