"""A search Elasticsearch answered from part of the shards (a node dropped out between the query and
the fetch phase) is asked again, and is an error if it stays partial: never a silent subset."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from imgrag.indexing.errors import BackendUnavailableError
from imgrag.indexing.stores.elastic import client as es_client
from imgrag.indexing.stores.elastic.client import Connection

WHOLE = {"_shards": {"total": 2, "successful": 2, "failed": 0}, "hits": {"hits": [{"_id": "a"}, {"_id": "b"}]}}
PARTIAL = {
    "_shards": {"total": 2, "successful": 1, "failed": 1,
                "failures": [{"shard": 1, "reason": {"type": "node_disconnected_exception"}}]},
    "hits": {"hits": [{"_id": "a"}]},
}


def _conn(monkeypatch: pytest.MonkeyPatch) -> Connection:
    monkeypatch.setattr(es_client.time, "sleep", lambda s: None)
    c = Connection.__new__(Connection)
    c.url = "http://127.0.0.1:9200"
    return c


def _client(*answers: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    calls: list[dict[str, Any]] = []

    def search(**kw: Any) -> Any:
        calls.append(kw)
        return SimpleNamespace(body=answers[min(len(calls), len(answers)) - 1])

    return search, calls


def test_partial_answer_is_asked_again_and_the_whole_one_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    c = _conn(monkeypatch)
    search, calls = _client(PARTIAL, WHOLE)
    res = c._complete(search, index="imgrag", size=10)
    assert res.body is WHOLE
    assert calls == [{"index": "imgrag", "size": 10}] * 2


def test_an_answer_that_stays_partial_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    c = _conn(monkeypatch)
    search, calls = _client(PARTIAL)
    with pytest.raises(BackendUnavailableError) as e:
        c._complete(search, index="imgrag")
    assert "answered from 1 of 2 shards (1 failed: node_disconnected_exception)" in e.value.message
    assert "_cluster/health" in e.value.hint
    assert len(calls) == 1 + es_client._PARTIAL_RETRIES


def test_whole_answer_is_returned_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    c = _conn(monkeypatch)
    search, calls = _client(WHOLE)
    assert c._complete(search, index="imgrag").body is WHOLE
    assert len(calls) == 1
