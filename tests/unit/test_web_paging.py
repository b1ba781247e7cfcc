"""The web viewer pages like the MCP tool ``search_images`` (mcp_server/paging.py): page 1 fixes the
routes' depth and the re-rank block, signed cursors move along that one ranked list (forward, and
back with the shown page's own cursor), and a write to the index that changed the hits shown so far
answers "the results changed" instead of repeating or skipping hits. Before, the viewer asked for
``offset=n`` each time: after a write its next page silently skipped (or repeated) a hit.

The search is a stand-in over a ranked list the test edits (the store, the routes and the ranking
have their own tests: test_paging_slices.py, tests/e2e/test_paging_e2e.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from imgrag.indexing.search import Hit, SearchRequest, SearchResult, list_digest
from imgrag.indexing.stores.base import Principal
from test_web_routes import ALICE, BOB, logged_in, viewer  # noqa: F401  (viewer: the fixture)


class Ranked:
    """A search over one ranked list of page ids, as Searcher slices it (offset, k, the digests)."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        self.asked: list[SearchRequest] = []

    def search(self, req: SearchRequest, principal: Principal) -> SearchResult:
        self.asked.append(req)
        page = self.ids[req.offset : req.offset + req.k]
        hits = [
            Hit(image_id=i, doc_id=i, path=f"/srv/pages/{i}.png", page=1, n_pages=1, score=1 / (1 + n), quality="scanned",
                width=400, height=300)
            for n, i in enumerate(page, start=req.offset)
        ]
        return SearchResult(
            query=req.query, hits=hits, candidates=len(self.ids),
            before=list_digest(self.ids[: req.offset]), through=list_digest(self.ids[: req.offset + len(hits)]),
        )


@pytest.fixture()
def ranked(viewer: Any, monkeypatch: pytest.MonkeyPatch) -> Ranked:  # noqa: F811
    r = Ranked([f"p{i}" for i in range(9)])
    monkeypatch.setattr(viewer[0].app, "search", r.search)
    return r


def _ids(answer: dict[str, Any]) -> list[str]:
    return [h["image_id"] for h in answer["hits"]]


def test_pages_follow_one_list_forward_and_back(viewer: Any, ranked: Ranked) -> None:  # noqa: F811
    c = logged_in(viewer[0], ALICE)
    q = {"q": "contract", "k": 3}
    one = c.get("/api/search", params=q).json()
    assert _ids(one) == ["p0", "p1", "p2"] and one["offset"] == 0 and one["next_cursor"] and one["more"]
    two = c.get("/api/search", params={**q, "cursor": one["next_cursor"]}).json()
    three = c.get("/api/search", params={**q, "cursor": two["next_cursor"]}).json()
    assert (_ids(two), _ids(three)) == (["p3", "p4", "p5"], ["p6", "p7", "p8"])
    assert three["offset"] == 6 and three["next_cursor"] is None and not three["more"]  # the list's end
    # every page read page 1's depth and re-rank block, whatever its offset
    assert {(r.depth, r.block) for r in ranked.asked} == {(50, 30)}
    # back: the page before the one shown, from that page's own cursor; and that page's cursor again
    back = c.get("/api/search", params={**q, "cursor": three["cursor"], "back": "1"}).json()
    assert _ids(back) == ["p3", "p4", "p5"] and back["offset"] == 3 and back["cursor"] == two["cursor"]
    assert back["next_cursor"] == two["next_cursor"]
    first = c.get("/api/search", params={**q, "cursor": back["cursor"], "back": "1"}).json()
    assert _ids(first) == _ids(one) and first["offset"] == 0
    r = c.get("/api/search", params={**q, "cursor": first["cursor"], "back": "1"})
    assert r.status_code == 400 and "no page before the first" in r.json()["error"]


def test_a_write_between_pages_says_the_results_changed(viewer: Any, ranked: Ranked) -> None:  # noqa: F811
    c = logged_in(viewer[0], ALICE)
    q = {"q": "contract", "k": 3}
    one = c.get("/api/search", params=q).json()
    two = c.get("/api/search", params={**q, "cursor": one["next_cursor"]}).json()
    ranked.ids.remove("p1")  # deleted (or its ACL changed) after page 1 showed it: page 2 would skip p3
    for params in ({**q, "cursor": one["next_cursor"]}, {**q, "cursor": two["next_cursor"]}, {**q, "cursor": two["cursor"], "back": "1"}):
        r = c.get("/api/search", params=params)
        assert r.status_code == 400 and "the results changed since the previous page" in r.json()["error"], r.text
        assert r.json()["hint"] == "start the search over"  # the page's button, not the MCP tool's "omit cursor"
    assert _ids(c.get("/api/search", params=q).json()) == ["p0", "p2", "p3"]  # starting over works
    # a write that leaves the hits shown so far as they were does not interrupt paging
    again = c.get("/api/search", params=q).json()
    ranked.ids.append("p9")
    assert _ids(c.get("/api/search", params={**q, "cursor": again["next_cursor"]}).json()) == ["p4", "p5", "p6"]


def test_cursors_are_the_callers_own_for_one_search_and_unforgeable(viewer: Any, ranked: Ranked) -> None:  # noqa: F811
    alice, bob = logged_in(viewer[0], ALICE), logged_in(viewer[0], BOB)
    q = {"q": "contract", "k": 3}
    cursor = alice.get("/api/search", params=q).json()["next_cursor"]
    body, _, mac = cursor.partition(".")
    for client, params, said in (
        (bob, {**q, "cursor": cursor}, "issued to another caller"),
        (alice, {**q, "q": "invoice", "cursor": cursor}, "different search"),
        (alice, {**q, "mode": "keyword", "cursor": cursor}, "different search"),
        (alice, {**q, "cursor": body[:-2] + "AA." + mac}, "not one this server issued"),
        (alice, {**q, "cursor": "x" * 5000}, "not one this server issued"),
    ):
        r = client.get("/api/search", params=params)
        assert r.status_code == 400 and said in r.json()["error"], (said, r.text)
    # k may differ from page to page: the list stays page 1's
    more = alice.get("/api/search", params={**q, "k": 5, "cursor": cursor}).json()
    assert _ids(more) == ["p3", "p4", "p5", "p6", "p7"]
    # the server's own paths are not shown to a user who is not the operator
    assert {h["path"] for h in more["hits"]} == {f"p{i}.png" for i in range(3, 8)}


def test_a_path_prefix_is_given_as_the_page_shows_paths(viewer: Any, ranked: Ranked, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """A user who is not the operator sees sources under the index root ("contracts/a.png"), so the
    path-prefix filter takes them that way, as search_images does; before, the viewer matched what
    the user typed against the server's own paths: "contracts/" found nothing."""
    v = viewer[0]
    monkeypatch.setattr(v.app, "index_roots", [Path("/srv/pages")])
    c = logged_in(v, ALICE)
    answer = c.get("/api/search", params={"q": "x", "filters": json.dumps({"path_prefix": "contracts/"})}).json()
    assert ranked.asked[-1].filters.path_prefix == "/srv/pages/contracts/"
    assert answer["hits"]
    r = c.get("/api/search", params={"q": "x", "filters": json.dumps({"path_prefix": "/etc/"})})
    assert r.status_code == 400 and "not a relative path under the index root" in r.json()["error"]
    # paging keeps the filter as the user gave it (the cursor is for this search)
    two = c.get("/api/search", params={"q": "x", "k": 3, "filters": json.dumps({"path_prefix": "contracts/"})}).json()
    c.get("/api/search", params={"q": "x", "k": 3, "filters": json.dumps({"path_prefix": "contracts/"}), "cursor": two["next_cursor"]})
    assert ranked.asked[-1].filters.path_prefix == "/srv/pages/contracts/" and ranked.asked[-1].offset == 3
