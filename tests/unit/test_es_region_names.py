"""Elasticsearch region routes name the regions of their best pages only
(``IMGRAG_ES_REGION_NAMED_PAGES``): inner hits cost a sub-query per returned page, so the other
pages come back ranked by their best region's score, unnamed; the fused search never quotes an
unnamed region."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np
from imgrag.indexing.config import Settings
from imgrag.indexing.search import Searcher
from imgrag.indexing.stores.base import OPERATOR, Filters, ImageRecord, RegionHit
from imgrag.indexing.stores.elastic.queries import MAX_CANDIDATES
from imgrag.indexing.stores.elastic.reads import Reads


def _ids(knn: dict[str, Any]) -> list[str] | None:
    for c in knn["filter"]["bool"]["filter"]:
        if "terms" in c and "image_id" in c["terms"]:
            return list(c["terms"]["image_id"])
    return None


class _Reads(Reads):
    """Pages p00..p99 whose best tile scores fall with the number; every page has 3 tiles."""

    def __init__(self, **settings: Any) -> None:
        self.settings = Settings(**settings)
        self.url = "http://fake"
        self.calls: list[dict[str, Any]] = []

    def _live(self) -> tuple[str, dict[str, Any]]:
        return "idx", {"spaces": {"image_dim": 4, "text_dim": 4}}

    def _search(self, **body: Any) -> dict[str, Any]:
        self.calls.append(body)
        knn = body["knn"]
        allowed = _ids(knn)
        pages = [f"p{i:02d}" for i in range(100) if allowed is None or f"p{i:02d}" in allowed][: knn["k"]]
        hits = []
        for p in pages:
            best = 1.0 - int(p[1:]) / 200  # ES scores are (1 + cosine) / 2
            h: dict[str, Any] = {"_id": f"{p}@1", "_score": best}
            if "inner_hits" in knn:
                h["inner_hits"] = {"tiles": {"hits": {"hits": [
                    {"_score": best - t / 1000, "_source": {"region_id": f"{p}:t{t}", "label": f"t{t}", "bbox": [0, 0, 1, 1]}}
                    for t in range(knn["inner_hits"]["size"])
                ]}}}
            hits.append(h)
        return {"hits": {"hits": hits[: body["size"]]}}


V = np.full(4, 0.5, np.float32)


def test_the_best_pages_named_the_rest_ranked_by_score() -> None:
    st = _Reads()  # defaults: 3 regions a page, the best 10 pages named
    hits = st.knn_regions("tile", V, 200, Filters(), OPERATOR)
    rank, named = st.calls
    # ceil(200 / 3) pages, and one more: to see whether a tie at the cut-off runs past it
    assert "inner_hits" not in rank["knn"] and rank["size"] == rank["knn"]["k"] == 67 + 1
    assert named["knn"]["inner_hits"]["size"] == 3 and named["size"] == named["knn"]["k"] == 10
    assert _ids(named["knn"]) == [f"p{i:02d}" for i in range(10)]  # exactly the ranking's best 10 ...
    assert named["knn"]["num_candidates"] == MAX_CANDIDATES  # ... scored exactly
    assert len(hits) == 10 * 3 + 57
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    order = list(dict.fromkeys(h.image_id for h in hits))
    assert order == [f"p{i:02d}" for i in range(67)]  # the pages' order is the ranking's
    assert {h.region_id for h in hits if h.image_id == "p03"} == {"p03:t0", "p03:t1", "p03:t2"}
    rest = [h for h in hits if h.image_id not in {f"p{i:02d}" for i in range(10)}]
    assert all(h.region_id == "" and h.text == "" and h.kind == "tile" for h in rest)
    assert rest[0].score == 2 * (1.0 - 10 / 200) - 1  # the page's best region's cosine


def test_two_stage_restricts_both_requests_to_the_candidates() -> None:
    st = _Reads()
    cand = [f"p{i:02d}" for i in range(50, 100)]
    st.knn_regions("text", V, 200, Filters(), OPERATOR, image_ids=cand)
    rank, named = st.calls
    assert _ids(rank["knn"]) == cand and rank["knn"]["num_candidates"] == MAX_CANDIDATES
    assert _ids(named["knn"]) == cand[:10]


def test_zero_or_few_pages_name_every_page_in_one_request() -> None:
    for st, k in ((_Reads(es_region_named_pages=0), 200), (_Reads(), 30)):
        hits = st.knn_regions("tile", V, k, Filters(), OPERATOR)
        (call,) = st.calls
        assert "inner_hits" in call["knn"] and call["size"] == -(-k // 3) + 1  # one page more: see above
        assert all(h.region_id for h in hits) and len(hits) == k


def test_the_fused_search_never_quotes_an_unnamed_region() -> None:
    rt = type("RT", (), {"settings": Settings(translate_query=False), "store": None})()
    rec = ImageRecord(image_id="a", doc_id="d", path="/x.png", page=1, n_pages=1, format="png", width=10, height=10,
                      quality="photo", caption="a red apple", indexed_at=datetime(2026, 1, 1, tzinfo=timezone.utc))
    unnamed = RegionHit(region_id="", image_id="a", kind="tile", label="", bbox=(0, 0, 0, 0), text="", score=0.9)
    named = RegionHit(region_id="a:t1", image_id="a", kind="tile", label="t1", bbox=(1, 2, 3, 4), text="", score=0.5)
    ev = Searcher(rt)._evidence("zebra", ["a"], {"a": rec}, [unnamed], OPERATOR, Filters())  # type: ignore[arg-type]
    assert ev["a"][0] is None and ev["a"][1] == "a red apple"  # the caption, no box
    ev = Searcher(rt)._evidence("zebra", ["a"], {"a": rec}, [unnamed, named], OPERATOR, Filters())  # type: ignore[arg-type]
    assert ev["a"][0] is not None and tuple(ev["a"][0].bbox) == (1, 2, 3, 4)
