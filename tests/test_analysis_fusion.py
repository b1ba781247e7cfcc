"""Tokenisation for mixed CJK/latin text and the RRF arithmetic."""

from __future__ import annotations

from indexing.analysis import coverage, fts_text, normalize, query_terms, tokens
from indexing.search import rrf


def test_cjk_unigrams_and_bigrams_latin_words() -> None:
    assert tokens("甲方盖章") == ["甲", "方", "盖", "章", "甲方", "方盖", "盖章"]
    assert tokens("Party A, dated May 12, 2023") == ["party", "a", "dated", "may", "12", "2023"]
    assert tokens("ＡＢＣ１２３") == ["abc123"]  # full-width folded by NFKC
    assert fts_text("合同 Contract") == "合 同 合同 contract"


def test_query_terms_drop_stopwords_and_duplicates() -> None:
    assert query_terms("find the contract with the seal") == ["contract", "seal"]
    assert query_terms("盖章 盖章") == ["盖", "章", "盖章"]


def test_coverage_is_local_share_of_terms() -> None:
    terms = query_terms("甲方 盖章")
    assert coverage(terms, "甲方（盖章）：") == 1.0
    assert 0 < coverage(terms, "甲方：北京") < 1.0
    assert coverage(terms, "unrelated") == 0.0
    assert normalize("  A\tB  ") == "a b"


def test_rrf_weights_and_ranks() -> None:
    scores = rrf({"bm25": ["a", "b"], "image": ["b", "c"]}, {"bm25": 1.0, "image": 0.5}, k=60)
    assert scores["a"] == 1 / 61
    assert scores["b"] == 1 / 62 + 0.5 / 61
    assert scores["c"] == 0.5 / 62
    assert max(scores, key=scores.__getitem__) == "b"  # found by both routes
