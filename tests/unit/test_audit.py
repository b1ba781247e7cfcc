"""The audit log: the JSONL implementation (rotation, concurrent appends from threads and processes,
a full disk), the facade's write records, and the MCP server's records of calls, resource reads and
refused HTTP requests — over a real LanceDB store, no models. Both implementations against one
contract: tests/integration/test_audit_contract.py; a real HTTP server: tests/e2e/test_mcp_e2e.py."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import resource
import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from imgrag.indexing.app import Imgrag
from imgrag.indexing.audit import (
    AuditQuery,
    AuditRecord,
    JsonlAuditLog,
    args_digest,
    make_record,
    open_audit,
    parse_since,
)
from imgrag.indexing.config import Settings
from imgrag.indexing.errors import AuditError, ImgragError
from imgrag.indexing.stores.base import ModelSpaces, Principal
from imgrag.indexing.stores.lance import LanceStore

REPO = Path(__file__).resolve().parents[2]
ALICE = Principal(name="alice", groups=["legal"])
BOB = Principal(name="bob", groups=["hr"])


def rec(name: str = "search_images", principal: Principal | None = ALICE, ids: tuple[str, ...] = (), **kw: Any) -> AuditRecord:
    return make_record(event="tool", name=name, outcome="ok", principal=principal, args={"q": name}, image_ids=ids, **kw)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in path.read_text().splitlines()]


# -- the JSONL log ----------------------------------------------------------------------------------


def test_jsonl_append_and_query(tmp_path: Path) -> None:
    log = JsonlAuditLog(tmp_path / "audit")
    log.append(rec(ids=("img-1", "img-2")))
    log.append(rec("get_metadata", BOB, ("img-2",)))
    log.append(rec("crop_region", ALICE, ("img-3",)))
    (only,) = lines(log.path)[:1]
    assert list(only)[:2] == ["v", "id"] and only["principal"] == "alice" and only["transport"] == "python"
    assert only["args_sha256"] == args_digest({"q": "search_images"}) and "q" not in json.dumps(only)
    assert (tmp_path / "audit").stat().st_mode & 0o777 == 0o700 and log.path.stat().st_mode & 0o777 == 0o600

    who_saw = log.query(AuditQuery(image_id="img-2"))
    assert [(r.principal, r.name) for r in who_saw.records] == [("alice", "search_images"), ("bob", "get_metadata")]
    assert [r.name for r in log.query(AuditQuery(principal="alice")).records] == ["search_images", "crop_region"]
    assert [r.name for r in log.query(AuditQuery(name="crop_region")).records] == ["crop_region"]
    assert [r.name for r in log.query(AuditQuery(limit=2)).records] == ["get_metadata", "crop_region"]  # the newest, oldest first
    future = datetime.now(timezone.utc) + timedelta(minutes=1)
    assert log.query(AuditQuery(since=future)).records == []
    assert len(log.query(AuditQuery(since=parse_since("1h"))).records) == 3
    assert log.query(AuditQuery(image_id="img-9")).records == [] and not log.query(AuditQuery()).problems


def test_parse_since() -> None:
    now = datetime(2025, 3, 10, 12, 0, tzinfo=timezone.utc)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("2025-03-01T08:00Z") == datetime(2025, 3, 1, 8, 0, tzinfo=timezone.utc)
    assert parse_since("2025-03-01") == datetime(2025, 3, 1).astimezone().astimezone(timezone.utc)  # local midnight
    with pytest.raises(ImgragError, match="neither a date"):
        parse_since("last tuesday")


def test_jsonl_rotation_keeps_every_record_and_expires_on_request(tmp_path: Path) -> None:
    log = JsonlAuditLog(tmp_path / "audit", max_bytes=2000)
    for i in range(40):
        log.append(rec(ids=(f"img-{i}",)))
    assert len(log.rotated()) >= 4
    assert all(f.stat().st_size <= 2000 for f in log.files())
    got = log.query(AuditQuery(limit=1000)).records
    assert [r.image_ids[0] for r in got] == [f"img-{i}" for i in range(40)]

    kept = JsonlAuditLog(tmp_path / "audit", max_bytes=2000, keep=2)
    kept.append(rec(ids=("img-40",)))
    kept.append(rec(ids=("img-41",)))
    while len(kept.rotated()) < 3 and not any(r.name == "expire" for r in kept.query(AuditQuery(limit=1000)).records):
        kept.append(rec(ids=("pad",)))
    assert len(kept.rotated()) == 2
    expired = [r for r in kept.query(AuditQuery(name="expire", limit=100)).records]
    assert expired and expired[0].event == "log" and expired[0].detail["removed"].startswith("audit-")
    assert expired[0].detail["keep"] == 2


def test_jsonl_concurrent_appends_threads_and_processes(tmp_path: Path) -> None:
    """Two processes × 4 threads append at once into a small file that keeps rotating: every record
    is there exactly once, and every line is one whole record."""
    folder = tmp_path / "audit"
    script = textwrap.dedent(
        f"""
        import sys, threading
        from imgrag.indexing.audit import JsonlAuditLog, make_record
        from imgrag.indexing.stores.base import Principal
        log = JsonlAuditLog({str(folder)!r}, max_bytes=8000)
        who = Principal(name=sys.argv[1])
        def work(t):
            for i in range(60):
                log.append(make_record(event="tool", name="search_images", outcome="ok", principal=who,
                                       image_ids=[f"{{sys.argv[1]}}-{{t}}-{{i}}"]))
        ts = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        [t.start() for t in ts]; [t.join() for t in ts]
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, who], cwd=REPO) for who in ("p1", "p2")]
    log = JsonlAuditLog(folder, max_bytes=8000)
    threads = [threading.Thread(target=lambda t=t: [log.append(rec(ids=(f"main-{t}-{i}",))) for i in range(60)]) for t in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert [p.wait(300) for p in procs] == [0, 0]
    for f in log.files():
        for ln in f.read_bytes().splitlines():
            AuditRecord.model_validate_json(ln)  # whole records only, never two interleaved
    page = log.query(AuditQuery(limit=10_000))
    assert not page.problems
    ids = [r.image_ids[0] for r in page.records]
    assert len(ids) == len(set(ids)) == 3 * 4 * 60
    assert len(log.rotated()) > 10


def _fill_script(folder: Path, limit: int) -> str:
    return textwrap.dedent(
        f"""
        import resource
        from imgrag.indexing.audit import JsonlAuditLog, make_record
        from imgrag.indexing.errors import AuditError
        log = JsonlAuditLog({str(folder)!r})
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY))
        n = 0
        try:
            while True:
                log.append(make_record(event="tool", name="search_images", outcome="ok", principal=None, image_ids=[f"img-{{n}}"]))
                n += 1
        except AuditError as e:
            print(n, e, flush=True)
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        log.append(make_record(event="tool", name="after", outcome="ok", principal=None))
        """
    )


def test_jsonl_full_disk_is_an_error_and_a_torn_record_is_reported(tmp_path: Path) -> None:
    """RLIMIT_FSIZE stands in for a full disk: the append that does not fit raises AuditError naming
    the file and the fix; the part of it that was written is reported by the reader, which still
    finds the record appended once there is room again."""
    folder = tmp_path / "audit"
    r = subprocess.run([sys.executable, "-c", _fill_script(folder, 3000)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    n, message = r.stdout.split(" ", 1)
    assert int(n) > 3
    assert f"cannot write the audit log {folder / 'audit.jsonl'}" in message and "free disk space" in message
    page = JsonlAuditLog(folder).query(AuditQuery(limit=1000))
    assert [x.image_ids[0] for x in page.records if x.name == "search_images"] == [f"img-{i}" for i in range(int(n))]
    assert page.records[-1].name == "after"
    assert len(page.problems) == 1 and "torn record" in page.problems[0]


def test_cli_write_with_a_full_audit_disk_exits_2_and_changes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    log = JsonlAuditLog(home / "audit")
    for i in range(5):
        log.append(rec(ids=(f"img-{i}",)))
    size = log.path.stat().st_size
    env = {**os.environ, "IMGRAG_HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("IMGRAG_BACKEND", None)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 10, resource.RLIM_INFINITY))

    r = subprocess.run([sys.executable, "-m", "imgrag", "purge"], env=env, cwd=REPO, capture_output=True, text=True,
                       timeout=300, preexec_fn=limit)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "cannot write the audit log" in r.stderr and "Traceback" not in r.stderr
    assert not (home / "index").exists()  # refused before it touched the index


# -- the facade records every write -----------------------------------------------------------------


def _store_with(tmp_path: Path, acl: dict[str, list[str]]) -> LanceStore:
    from test_mcp_unit import _indexed  # one way to build records, shared with the MCP unit tests

    store = LanceStore(tmp_path / "index", ann_min_rows=10**9)
    store.ensure_spaces(ModelSpaces(image="t-img", image_dim=8, feature="t-feat", feature_dim=8, text="t-txt", text_dim=8))
    items = []
    for image_id, groups in acl.items():
        path = tmp_path / f"{image_id}.png"
        Image.new("RGB", (200, 100), "white").save(path)
        items.append(_indexed(image_id, path, f"agreement {image_id}", groups))
    store.write(items)
    store.commit("index", {"indexed": len(items)})
    return store


def test_facade_records_writes_in_two_steps(tmp_path: Path) -> None:
    store = _store_with(tmp_path, {"a-1": [], "a-2": ["legal"], "b-1": ["hr"]})
    app = Imgrag(Settings(home=tmp_path / "home"), store=store)
    d = app.delete(["a-2", "b-1", "nope"], ALICE)
    assert d.deleted == ["a-2"]
    n, version = app.purge()
    assert n == 1
    with pytest.raises(ImgragError, match="before a purge"):
        app.rollback(1)
    got = app.audit.query(AuditQuery(limit=100)).records
    assert [(r.name, r.outcome) for r in got] == [
        ("delete", "started"), ("delete", "ok"), ("purge", "started"), ("purge", "ok"), ("rollback", "started"), ("rollback", "error"),
    ]
    started, done = got[0], got[1]
    assert started.args_sha256 == done.args_sha256 == args_digest({"image_ids": ["a-2", "b-1", "nope"]})
    assert done.principal == "alice" and done.image_ids == ["a-2"] and done.detail == {"deleted": 1, "unknown": 2, "version": 2}
    assert got[3].principal == "operator" and got[3].detail == {"purged": 1, "version": version}
    assert got[5].error == "rejected"  # the embedded store refuses rollbacks to before a purge
    assert [r.name for r in app.audit.query(AuditQuery(image_id="a-2")).records] == ["delete"]


def test_facade_refuses_a_write_it_cannot_record(tmp_path: Path) -> None:
    store = _store_with(tmp_path, {"a-1": []})
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "audit").write_text("a file where the audit folder should be")
    app = Imgrag(Settings(home=tmp_path / "home"), store=store)
    with pytest.raises(AuditError, match="cannot write the audit log"):
        app.delete(["a-1"])
    assert store.live_ids(["a-1"]) == {"a-1"}


def test_facade_records_denied_index_paths(tmp_path: Path) -> None:
    app = Imgrag(Settings(home=tmp_path / "home"), store=_store_with(tmp_path, {}), index_roots=[tmp_path / "inbox"])
    with pytest.raises(ImgragError, match="outside the folders"):
        app.index(["/etc/passwd"], None)
    last = app.audit.query(AuditQuery()).records[-1]
    assert (last.name, last.outcome, last.error, last.principal) == ("index", "denied", "denied", "operator")


def test_audit_off_records_nothing(tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "home", audit="off")  # type: ignore[arg-type]
    app = Imgrag(s, store=_store_with(tmp_path, {"a-1": []}))
    app.delete(["a-1"])
    assert not (tmp_path / "home" / "audit").exists()
    assert open_audit(s, reading=True).query(AuditQuery()).records == []


# -- the MCP server records every call ---------------------------------------------------------------


class BrokenAudit(JsonlAuditLog):
    """A log whose disk is full from a given moment on."""

    full = False

    def append(self, record: AuditRecord) -> None:
        if self.full:
            raise AuditError("cannot write the audit log x: No space left on device", "free disk space")
        super().append(record)


def _mcp_calls(mcp: Any, fn: Any) -> Any:
    from mcp import Client

    async def main() -> Any:
        async with Client(mcp) as c:
            return await fn(c)

    return asyncio.run(main())


def test_server_records_calls_rejections_and_resources(tmp_path: Path) -> None:
    from mcp.shared.exceptions import MCPError

    from imgrag.mcp_server.auth import fixed_principal
    from imgrag.mcp_server.server import build_server

    app = Imgrag(Settings(home=tmp_path / "home"), store=_store_with(tmp_path, {"a-1": ["legal"], "b-1": ["hr"]}))
    mcp = build_server(app, fixed_principal(ALICE))

    async def calls(c: Any) -> list[Any]:
        out = [
            await c.call_tool("search_images", {"query": "agreement", "mode": "keyword"}),
            await c.call_tool("get_metadata", {"image_id": "b-1"}),  # not hers: like a missing id
            await c.call_tool("get_metadata", {"image_id": "nope"}),
            await c.call_tool("crop_region", {"image_id": "a-1", "bbox": [0, 0, 10, 10], "scale": 99}),
            await c.call_tool("crop_region", {"image_id": "a-1", "bbox": [0, 0, 10, 10], "colour": "red"}),
            await c.call_tool("drop_tables", {"name": "Jane Doe"}),
            await c.read_resource("imgrag://thumbnail/a-1"),
        ]
        for uri in ("imgrag://image/b-1", "imgrag://secrets/x"):
            with pytest.raises(MCPError):
                await c.read_resource(uri)
        return out

    results = _mcp_calls(mcp, calls)
    assert [r.is_error for r in results[:6]] == [False, True, True, True, True, True]
    got = [(r.event, r.name, r.outcome, r.error, r.image_ids) for r in app.audit.query(AuditQuery(limit=100)).records]
    assert got == [
        ("tool", "search_images", "ok", None, ["a-1"]),
        ("tool", "get_metadata", "denied", "acl", ["b-1"]),  # she was told "no image with id"
        ("tool", "get_metadata", "error", "not_found", []),
        ("tool", "crop_region", "error", "invalid_arguments", []),
        ("tool", "crop_region", "error", "invalid_arguments", []),
        ("tool", "unknown", "error", "unknown_tool", []),
        ("resource", "thumbnail", "ok", None, ["a-1"]),
        ("resource", "image", "denied", "acl", ["b-1"]),
        ("resource", "unknown", "error", "not_found", []),
    ]
    records = app.audit.query(AuditQuery(limit=100)).records
    assert {(r.principal, r.transport) for r in records} == {("alice", "stdio")}
    assert records[0].args_sha256 == args_digest({"query": "agreement", "mode": "keyword"})
    assert records[0].latency_ms is not None and records[0].latency_ms > 0
    assert "Jane Doe" not in app.audit.path.read_text() and "drop_tables" not in app.audit.path.read_text()  # type: ignore[attr-defined]


def test_a_percent_encoded_resource_uri_is_recorded_as_the_image_it_read(tmp_path: Path) -> None:
    """The SDK percent-decodes a template's value: ``imgrag://thumbnail/%61-1`` reads ``a-1``, and
    the audit log must say ``a-1`` (it said ``%61-1``: a read no query for the image finds)."""
    from imgrag.mcp_server.auth import fixed_principal
    from imgrag.mcp_server.server import build_server

    app = Imgrag(Settings(home=tmp_path / "home"), store=_store_with(tmp_path, {"a-1": ["legal"], "b-1": ["hr"]}))
    mcp = build_server(app, fixed_principal(ALICE))

    async def calls(c: Any) -> None:
        from mcp.shared.exceptions import MCPError

        await c.read_resource("imgrag://thumbnail/%61-1")
        with pytest.raises(MCPError):
            await c.read_resource("imgrag://image/%62%2D1")  # hers to be refused, like a missing id

    _mcp_calls(mcp, calls)
    got = [(r.name, r.outcome, r.image_ids) for r in app.audit.query(AuditQuery(limit=10)).records]
    assert got == [("thumbnail", "ok", ["a-1"]), ("image", "denied", ["b-1"])]
    assert [r.image_ids for r in app.audit.query(AuditQuery(image_id="a-1", limit=10)).records] == [["a-1"]]


def test_server_withholds_results_it_cannot_record(tmp_path: Path) -> None:
    from imgrag.mcp_server.auth import fixed_principal
    from imgrag.mcp_server.server import build_server

    audit = BrokenAudit(tmp_path / "audit")
    app = Imgrag(Settings(home=tmp_path / "home"), store=_store_with(tmp_path, {"a-1": []}), audit=audit)
    mcp = build_server(app, fixed_principal(BOB), allow_write=True)
    audit.full = True

    async def calls(c: Any) -> list[Any]:
        return [
            await c.call_tool("search_images", {"query": "agreement", "mode": "keyword"}),
            await c.call_tool("delete_image", {"image_id": "a-1"}),
        ]

    search, delete = _mcp_calls(mcp, calls)
    for r in (search, delete):
        assert r.is_error and "the audit log cannot be written" in r.content[0].text
        assert r.structured_content is None and len(r.content) == 1  # no hits, no thumbnails
    assert app.store.live_ids(["a-1"]) == {"a-1"}  # the delete was refused before it started


class UnreachableAudit(JsonlAuditLog):
    """The audit log on an Elasticsearch that is down, worded as ElasticAuditLog words it."""

    def append(self, record: AuditRecord) -> None:
        raise AuditError(
            "cannot write the audit log (index imgrag-audit) (cannot reach Elasticsearch at http://10.0.0.7:9245)",
            "start it (tests: `tests/elasticsearch.sh start`) or set IMGRAG_ES_URL to the cluster's address; "
            "until then imgrag refuses every call it cannot record",
        )


@pytest.mark.parametrize("operator", [False, True], ids=["token-holder", "operator"])
def test_an_unwritable_audit_log_is_the_operators_to_read(tmp_path: Path, operator: bool) -> None:
    """A real `serve --http` with Elasticsearch killed: a token holder's search answered "cannot write
    the audit log (index imgrag-audit) (cannot reach Elasticsearch at http://127.0.0.1:9245) — start
    it ... or set IMGRAG_ES_URL" (on the embedded backend, the server's audit file path): the
    backend's address and settings, which every other backend error keeps to the operator."""
    from imgrag.indexing.stores.base import OPERATOR
    from imgrag.mcp_server.auth import fixed_principal
    from imgrag.mcp_server.server import build_server

    app = Imgrag(Settings(home=tmp_path / "home"), store=_store_with(tmp_path, {"a-1": []}),
                 audit=UnreachableAudit(tmp_path / "audit"))
    mcp = build_server(app, fixed_principal(OPERATOR if operator else BOB))

    async def calls(c: Any) -> Any:
        return await c.call_tool("search_images", {"query": "agreement", "mode": "keyword"})

    r = _mcp_calls(mcp, calls)
    text = r.content[0].text
    assert r.is_error and r.structured_content is None
    if operator:
        assert "cannot reach Elasticsearch at http://10.0.0.7:9245" in text and "IMGRAG_ES_URL" in text
    else:
        assert text.startswith("the audit log cannot be written") and "server log" in text
        assert "10.0.0.7" not in text and "IMGRAG_" not in text and "imgrag-audit" not in text


def test_http_refusals_are_recorded_and_coalesced(tmp_path: Path) -> None:
    import httpx

    from imgrag.mcp_server.auth import TokenFileVerifier, bearer_principal
    from imgrag.mcp_server.server import build_server

    from imgrag.mcp_server.auditing import HttpAuditMiddleware

    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"a" * 24: {"name": "alice"}}))
    app = Imgrag(Settings(home=tmp_path / "home"), store=_store_with(tmp_path, {}))
    mcp = build_server(app, bearer_principal, token_verifier=TokenFileVerifier(tokens))
    http = mcp.streamable_http_app()

    async def requests() -> list[int]:
        transport = httpx.ASGITransport(app=http, client=("10.1.2.3", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            codes = [(await c.post("/mcp", json={})).status_code]
            for _ in range(5):
                codes.append((await c.post("/mcp", json={}, headers={"Authorization": "Bearer wrong-token-0123456789"})).status_code)
            return codes

    assert asyncio.run(requests()) == [401] * 6
    got = app.audit.query(AuditQuery(limit=100)).records
    assert [(r.event, r.outcome, r.error, r.count, r.client) for r in got] == [
        ("auth", "denied", "missing_token", 1, "10.1.2.3:5555"),
        ("auth", "denied", "unknown_token", 1, "10.1.2.3:5555"),
    ]
    assert got[1].args_sha256 == hashlib.sha256(b"wrong-token-0123456789").hexdigest() and got[1].principal is None

    layer = http.middleware_stack  # the 4 refusals within the same second are counted, then written at exit
    while not isinstance(layer, HttpAuditMiddleware):
        layer = layer.app
    layer.flush()
    last = app.audit.query(AuditQuery(limit=100)).records[-1]
    assert (last.error, last.count, last.client) == ("unknown_token", 4, "10.1.2.3")


def test_jsonl_query_matches_values_json_escapes(tmp_path: Path) -> None:
    log = JsonlAuditLog(tmp_path / "audit")
    odd = Principal(name='O"Brien \\ 王')
    log.append(rec(principal=odd))
    log.append(rec(principal=ALICE))
    assert [r.principal for r in log.query(AuditQuery(principal='O"Brien \\ 王')).records] == ['O"Brien \\ 王']
