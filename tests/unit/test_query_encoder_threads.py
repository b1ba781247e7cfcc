"""The e5 engine encodes a single query on one OpenMP thread of the calling thread, batches on all."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from imgrag.indexing.embedders import text as text_mod


class _Lib:
    def __init__(self) -> None:
        self.threads = 8
        self.seen: list[int] = []

    def omp_get_max_threads(self) -> int:
        return self.threads

    def omp_set_num_threads(self, n: int) -> None:
        self.threads = n


def _embedder(monkeypatch: pytest.MonkeyPatch, lib: object) -> text_mod.E5TextEmbedder:
    def encode(texts: list[str], is_query: bool) -> np.ndarray:
        if isinstance(lib, _Lib):
            lib.seen.append(lib.threads)
        return np.ones((len(texts), 384), np.float32)

    model = SimpleNamespace(_lib=lib, encode=encode)
    e5 = text_mod.E5TextEmbedder()
    monkeypatch.setattr(e5, "_model", lambda: model)
    return e5


def test_one_query_runs_on_one_thread_and_the_setting_is_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = _Lib()
    e5 = _embedder(monkeypatch, lib)
    e5.embed_queries(["a lease in Nanjing"])
    e5.embed_queries(["one", "two"])  # a batch of queries keeps every core
    e5.embed_passages(["a page"])  # so does a passage (indexing)
    assert lib.seen == [1, 8, 8] and lib.threads == 8


def test_the_setting_is_restored_when_the_engine_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = _Lib()
    e5 = _embedder(monkeypatch, lib)

    def boom(texts: list[str], is_query: bool) -> np.ndarray:
        raise RuntimeError("engine failed")

    monkeypatch.setattr(e5, "_model", lambda: SimpleNamespace(_lib=lib, encode=boom))
    with pytest.raises(RuntimeError):
        e5.embed_queries(["x"])
    assert lib.threads == 8


def test_an_engine_without_openmp_symbols_still_encodes(monkeypatch: pytest.MonkeyPatch) -> None:
    e5 = _embedder(monkeypatch, object())
    assert e5.embed_queries(["x"]).shape == (1, 384)
