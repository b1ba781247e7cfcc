"""What a read-only cluster says: an index write block (``index.blocks.write``, set by an operator)
answers 403 and the flood-stage disk watermark's ``read_only_allow_delete`` block 429, both as a
``cluster_block_exception``. Probed on a real Elasticsearch 9.5.4: the 403 was blamed on the
credentials ("grant the API key / user the `monitor` cluster privilege ..."), a block on a bulk write
told the user to "retry the failed ones"."""

from __future__ import annotations

from typing import Any

import pytest
from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig
from elasticsearch import ApiError, AuthorizationException
from imgrag.indexing.errors import BackendUnavailableError
from imgrag.indexing.stores.elastic.client import BulkWriteError, Connection, translate
from imgrag.indexing.stores.elastic.writes import Writes

URL = "http://127.0.0.1:9245"
WRITE_BLOCK = "cluster_block_exception: index [k1-audit] blocked by: [FORBIDDEN/8/index write (api)];"
FLOOD = ("cluster_block_exception: index [k1-audit] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded "
         "flood-stage watermark, index has read-only-allow-delete block; for more information, see "
         "https://www.elastic.co/docs/troubleshoot/elasticsearch/fix-watermark-errors?version=9.5];")


def _error(cls: type[ApiError], status: int, reason: str, kind: str = "cluster_block_exception") -> ApiError:
    meta = ApiResponseMeta(status=status, http_version="1.1", headers=HttpHeaders(), duration=0.0,
                           node=NodeConfig("http", "127.0.0.1", 9245))
    return cls(message=kind, meta=meta, body={"error": {"type": kind, "reason": reason.split(": ", 1)[1]}, "status": status})


@pytest.mark.parametrize(("cls", "status", "reason"), [(AuthorizationException, 403, WRITE_BLOCK), (ApiError, 429, FLOOD)],
                         ids=["index.blocks.write", "flood-stage"])
def test_a_write_block_is_named_not_blamed_on_the_credentials(cls: type[ApiError], status: int, reason: str) -> None:
    e = translate(_error(cls, status, reason), URL, "write the audit log (index k1-audit)")
    assert isinstance(e, BackendUnavailableError)
    text = str(e)
    assert "read-only" in e.message and "k1-audit" in e.message, text
    assert "credentials" not in text and "privilege" not in text
    assert "flood-stage" in e.hint and "index.blocks" in e.hint and "free disk space" in e.hint
    assert "\n" not in text


def test_other_403s_are_still_about_the_credentials() -> None:
    e = translate(_error(AuthorizationException, 403, "security_exception: action [indices:data/write/bulk] is unauthorized",
                         "security_exception"), URL, "write pages")
    assert "not allowed to write pages" in e.message and "privilege" in e.hint


def test_a_bulk_write_refused_by_a_block_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    w: Any = Writes.__new__(Writes)
    w.url = URL
    failures = {"cd50cb746f26f534478b": f"update failed (403): {WRITE_BLOCK.replace('k1-audit', 'k1-g000001')}"}
    with pytest.raises(BulkWriteError) as e:
        w._raise_failures(failures, 1, "soft delete")
    assert "read-only" in e.value.hint and "retry the failed ones" not in e.value.hint
    assert "flood-stage" in e.value.hint
    assert isinstance(w, Connection)


def test_rejected_bulk_items_are_one_error_line_not_a_log_line_too(monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """`imgrag delete` on a write-blocked index printed an ERROR log line with the same failures
    before its `error:` line; the raised error carries them (the log has them at INFO, for -v)."""
    from types import SimpleNamespace

    from elasticsearch import helpers

    item = {"update": {"_id": "cd50cb746f26f534478b@4", "status": 403,
                       "error": {"type": "cluster_block_exception", "reason": WRITE_BLOCK.split(": ", 1)[1]}}}
    monkeypatch.setattr(helpers, "streaming_bulk", lambda *a, **kw: iter([(False, item)]))
    w: Any = Writes.__new__(Writes)
    w.es, w.settings = None, SimpleNamespace(es_bulk_docs=200, es_max_retries=0)
    caplog.set_level("INFO")
    failures = w._bulk([{"_op_type": "update"}], "soft delete")
    assert list(failures) == ["cd50cb746f26f534478b"] and "cluster_block_exception" in failures["cd50cb746f26f534478b"]
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "WARNING")]
    assert [r for r in caplog.records if "soft delete: 1 document(s) failed" in r.getMessage()]


def test_an_index_whose_imgrag_metadata_is_not_ours_is_one_line() -> None:
    """An alias over an index whose _meta says schema 1 but whose spaces are not ours (an older or
    hand-made index): `imgrag stats` printed pydantic's 19-line ValidationError after "unexpected
    error"."""
    from imgrag.indexing.stores.base import ModelSpaces
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as v:
        ModelSpaces.model_validate({})
    e = translate(v.value, URL, "read the index's models")
    assert "\n" not in str(e), str(e)
    assert "imgrag metadata" in e.message and "IMGRAG_ES_INDEX_PREFIX" in e.hint
    other = translate(RuntimeError("first line\nsecond line"), URL, "do a thing")
    assert "\n" not in str(other) and "first line" in str(other)
