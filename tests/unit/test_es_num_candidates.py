"""Elasticsearch kNN candidates: Lucene walks each segment's graph for ``num_candidates``, so an
index merged to few segments explores far fewer than the bulk load's many segments did. Page kNN
(``IMGRAG_ES_NUM_CANDIDATES``) found 0.77 of the exact top 10 at 800 on 100k pages in 4 segments,
1.000 at 10000; the one-stage region route (``IMGRAG_ES_REGION_NUM_CANDIDATES``) costs more per
candidate (nested kNN: 33 ms at 800, 87 at 10000), so it keeps 800 (docs/performance.md). Both
at least 2 × k, at most Elasticsearch's 10,000."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from imgrag.indexing.config import Settings
from imgrag.indexing.stores.base import OPERATOR, Filters
from imgrag.indexing.stores.elastic.queries import MAX_CANDIDATES, knn_clause
from imgrag.indexing.stores.elastic.reads import Reads

V = [0.5] * 4


@pytest.mark.parametrize("k", [10, 50])  # a plain kNN, and a fused search's page route at k = 10
def test_page_knn_explores_the_most_by_default(k: int) -> None:
    clause = knn_clause(Settings(), "img_vec", V, k, Filters(), OPERATOR)
    assert clause["k"] == k and clause["num_candidates"] == MAX_CANDIDATES


def test_at_least_twice_k_at_most_the_cluster_limit() -> None:
    s = Settings(es_num_candidates=100)
    assert knn_clause(s, "img_vec", V, 10, Filters(), OPERATOR)["num_candidates"] == 100
    assert knn_clause(s, "img_vec", V, 500, Filters(), OPERATOR)["num_candidates"] == 1000
    assert knn_clause(s, "img_vec", V, 9000, Filters(), OPERATOR)["num_candidates"] == MAX_CANDIDATES
    assert knn_clause(s, "img_vec", V, 500, Filters(), OPERATOR, num_candidates=300)["num_candidates"] == 1000


def test_the_settings_and_an_explicit_count_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGRAG_ES_NUM_CANDIDATES", "1600")
    assert knn_clause(Settings(), "img_vec", V, 10, Filters(), OPERATOR)["num_candidates"] == 1600
    assert knn_clause(Settings(), "img_vec", V, 10, Filters(), OPERATOR, num_candidates=MAX_CANDIDATES)["num_candidates"] == MAX_CANDIDATES
    monkeypatch.setenv("IMGRAG_ES_REGION_NUM_CANDIDATES", "400")
    assert Settings().es_region_num_candidates == 400
    for name in ("es_num_candidates", "es_region_num_candidates"):
        with pytest.raises(ValueError):
            Settings(**{name: 10_001})


class _Recorder(Reads):
    """The region route's requests, answered with no hits (no cluster)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sent: list[dict[str, Any]] = []

    def _live(self) -> Any:
        return ("idx", {"spaces": {"image_dim": 4, "text_dim": 4, "feature_dim": 4}})

    def _search(self, **body: Any) -> dict[str, Any]:
        self.sent.append(body)
        return {"hits": {"hits": []}}


@pytest.mark.parametrize(("region", "page"), [(800, 10_000), (300, 2000)])
def test_region_routes_use_their_own_setting_two_stage_scores_exactly(region: int, page: int) -> None:
    r = _Recorder(Settings(es_region_num_candidates=region, es_num_candidates=page))
    q = np.asarray(V, np.float32)
    r.knn_regions("tile", q, 200, Filters(), OPERATOR)  # one-stage: 67 pages
    assert r.sent[0]["knn"]["num_candidates"] == region
    r.sent.clear()
    r.knn_regions("text", q, 200, Filters(), OPERATOR, image_ids=["a", "b"])  # two-stage: exact over the candidates
    assert r.sent[0]["knn"]["num_candidates"] == MAX_CANDIDATES
