"""Elasticsearch kNN candidates (``IMGRAG_ES_NUM_CANDIDATES``): Lucene walks each segment's graph
for that many, so an index merged to one segment explores far fewer than the bulk load's many
segments did; at 100, one 10k-page segment found 0.66-0.72 of the exact top 10 (docs/performance.md).
The default must hold recall there; at least 2 × k, at most Elasticsearch's 10,000."""

from __future__ import annotations

import pytest
from imgrag.indexing.config import Settings
from imgrag.indexing.stores.base import OPERATOR, Filters
from imgrag.indexing.stores.elastic.queries import MAX_CANDIDATES, knn_clause

V = [0.5] * 4


@pytest.mark.parametrize("k", [10, 50])  # a plain kNN, and a fused search's page route at k = 10
def test_default_explores_enough_for_a_merged_index(k: int) -> None:
    clause = knn_clause(Settings(), "img_vec", V, k, Filters(), OPERATOR)
    assert clause["k"] == k and clause["num_candidates"] == 800


def test_at_least_twice_k_at_most_the_cluster_limit() -> None:
    s = Settings(es_num_candidates=100)
    assert knn_clause(s, "img_vec", V, 10, Filters(), OPERATOR)["num_candidates"] == 100
    assert knn_clause(s, "img_vec", V, 500, Filters(), OPERATOR)["num_candidates"] == 1000
    assert knn_clause(Settings(), "img_vec", V, 9000, Filters(), OPERATOR)["num_candidates"] == MAX_CANDIDATES


def test_the_setting_and_an_explicit_count_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGRAG_ES_NUM_CANDIDATES", "1600")
    assert knn_clause(Settings(), "img_vec", V, 10, Filters(), OPERATOR)["num_candidates"] == 1600
    assert knn_clause(Settings(), "img_vec", V, 10, Filters(), OPERATOR, num_candidates=MAX_CANDIDATES)["num_candidates"] == MAX_CANDIDATES
    with pytest.raises(ValueError):
        Settings(es_num_candidates=10_001)
