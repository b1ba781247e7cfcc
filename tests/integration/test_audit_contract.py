"""One contract for both audit logs: the JSONL files of the embedded backend and the ``<prefix>-audit``
index on Elasticsearch (the server at ``$IMGRAG_TEST_ES_URL``, a unique prefix per test)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from imgrag.indexing.audit import AuditQuery, AuditRecord, ElasticAuditLog, JsonlAuditLog, make_record, open_audit
from imgrag.indexing.config import Settings
from imgrag.indexing.errors import AuditError
from imgrag.indexing.stores.base import OPERATOR, Principal

ALICE = Principal(name="alice", groups=["legal"])
BOB = Principal(name="bob", groups=["hr"])


@pytest.fixture(params=["jsonl", "elasticsearch"])
def audit_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "jsonl":
        log = open_audit(Settings(home=tmp_path / "home"))
        assert isinstance(log, JsonlAuditLog)
        yield log
        return
    from conftest import es_settings

    log = open_audit(es_settings(tmp_path))
    assert isinstance(log, ElasticAuditLog)
    try:
        yield log
    finally:
        log.drop()
        log.close()


def _at(r: AuditRecord, minutes_ago: float) -> AuditRecord:
    return r.model_copy(update={"time": datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)})


def test_audit_contract(audit_log: Any) -> None:
    audit_log.check()
    assert audit_log.query(AuditQuery()).records == []
    rows = [
        _at(make_record(event="tool", name="search_images", outcome="ok", principal=ALICE, args={"query": "x"}, image_ids=["i-1", "i-2"], latency_ms=12.5), 30),
        _at(make_record(event="tool", name="get_metadata", outcome="error", error="not_found", principal=BOB, args={"image_id": "i-1"}), 20),
        _at(make_record(event="resource", name="image", outcome="ok", principal=BOB, args={"uri": "imgrag://image/i-2"}, image_ids=["i-2"]), 10),
        _at(make_record(event="write", name="delete", outcome="ok", principal=OPERATOR, image_ids=["i-1"], detail={"deleted": 1, "version": 3}), 5),
        _at(make_record(event="auth", name="bearer_token", outcome="denied", error="unknown_token", principal=None, count=7), 1),
    ]
    for r in rows:
        audit_log.append(r)
    audit_log.append(rows[0])  # the same record again (a retried request): still one

    everything = audit_log.query(AuditQuery(limit=100)).records
    assert [r.id for r in everything] == [r.id for r in rows]  # oldest first
    assert everything[0] == rows[0]  # every field round-trips
    assert everything[3].detail == {"deleted": 1, "version": 3} and everything[4].count == 7 and everything[4].principal is None

    def names(**q: Any) -> list[str]:
        return [r.name for r in audit_log.query(AuditQuery(**q)).records]

    assert names(image_id="i-1") == ["search_images", "delete"]  # who saw it, what happened to it
    assert names(image_id="i-2") == ["search_images", "image"]
    assert names(principal="bob") == ["get_metadata", "image"]
    assert names(principal="operator") == ["delete"]
    assert names(name="get_metadata") == ["get_metadata"]
    assert names(since=datetime.now(timezone.utc) - timedelta(minutes=15)) == ["image", "delete", "bearer_token"]
    assert names(limit=2) == ["delete", "bearer_token"]  # the newest two
    assert names(principal="bob", image_id="i-2") == ["image"]
    assert names(principal="carol") == []


def test_elastic_audit_unreachable_is_an_error(tmp_path: Path) -> None:
    log = open_audit(Settings(home=tmp_path, backend="elasticsearch", es_url="http://127.0.0.1:9", es_max_retries=0, es_request_timeout=2))
    rec = make_record(event="tool", name="search_images", outcome="ok", principal=ALICE)
    with pytest.raises(AuditError, match="cannot write the audit log .*cannot reach Elasticsearch"):
        log.append(rec)
