"""Fast tests of the web viewer's server side (sessions, guards, what it sends the page) and of the
agent trace it draws, over a small fake store: no models, no browser. The browser tests with a real
index are in tests/e2e/test_web_viewer.py."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from starlette.testclient import TestClient

from imgrag.indexing.app import Imgrag
from imgrag.indexing.config import Settings
from imgrag.indexing.errors import ImgragError
from imgrag.indexing.loader import file_digest
from imgrag.indexing.models import LayoutBlock, OcrLine, TableResult
from imgrag.indexing.runtime import Runtime
from imgrag.indexing.stores.base import OPERATOR, ImageRecord, Principal
from imgrag.mcp_server.web import WebViewer, operator_login
from imgrag.mcp_server.web.viewer import Sessions, filter_fields, parse_filters, table_rows
from test_mcp_unit import FakeStore

BASE = "https://127.0.0.1:8766"
ORIGIN = {"Origin": BASE}
ALICE = "alice-token-" + "a" * 20
BOB = "bob-token-" + "b" * 20


class Store(FakeStore):
    def regions_of(self, image_ids: list[str]) -> list[Any]:
        return []


@pytest.fixture()
def viewer(tmp_path: Path) -> tuple[WebViewer, dict[str, Principal]]:
    path = tmp_path / "page.png"
    Image.new("RGB", (400, 300), "white").save(path)

    def rec(image_id: str, acl: list[str]) -> ImageRecord:
        return ImageRecord(
            image_id=image_id, doc_id=file_digest(path), path=str(path), format="png", width=400, height=300,
            quality="scanned", indexed_at=datetime.now(timezone.utc), acl=acl, meta={"note": "<b>x</b>"},
            ocr_lines=[OcrLine(text="<script>alert(1)</script>", bbox=(10, 10, 200, 30), confidence=0.9)],
            layout=[LayoutBlock(kind="table", bbox=(10, 40, 300, 200))],
            tables=[TableResult(bbox=(10, 40, 300, 200), html="<table><tr><td>a<img src=x onerror=1></td><td>b</td></tr></table>")],
        )

    store = Store([rec("legal1", ["legal"]), rec("hr1", ["hr"])])
    app = Imgrag(runtime=Runtime(Settings(home=tmp_path / "home"), store=store))  # type: ignore[arg-type]
    users = {ALICE: Principal(name="alice", groups=["legal"]), BOB: Principal(name="bob", groups=["hr"])}
    v = WebViewer(app, users.get, allowed_hosts=WebViewer.loopback_hosts(8766), port=8766)
    return v, users


def logged_in(v: WebViewer, token: str) -> TestClient:
    c = TestClient(v.starlette(), base_url=BASE, follow_redirects=False)
    r = c.post("/login", data={"token": token}, headers=ORIGIN)
    assert r.status_code == 303 and r.headers["location"] == "/"
    return c


def test_login_sets_a_locked_down_cookie_and_needs_this_origin(viewer: Any) -> None:
    v, _ = viewer
    c = TestClient(v.starlette(), base_url=BASE, follow_redirects=False)
    assert c.get("/").headers["location"] == "/login"
    assert c.get("/api/session").status_code == 401
    assert c.post("/login", data={"token": ALICE}).status_code == 403  # no Origin: not from our form
    assert c.post("/login", data={"token": ALICE}, headers={"Origin": "https://evil.example"}).status_code == 403
    r = c.post("/login", data={"token": "wrong-" + ALICE}, headers=ORIGIN)
    assert r.status_code == 401 and "not valid" in r.text and "set-cookie" not in r.headers
    # a token is never taken from a URL unless the viewer was made for that (imgrag ui's link)
    r = c.get("/login", params={"token": ALICE})
    assert r.status_code == 200 and "set-cookie" not in r.headers
    r = c.post("/login", data={"token": ALICE}, headers=ORIGIN)
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("__Host-imgrag-8766=")
    for flag in ("HttpOnly", "Secure", "SameSite=strict", "Path=/"):
        assert flag in cookie, cookie
    assert ALICE not in cookie
    s = c.get("/api/session").json()
    assert s["principal"] == "alice" and not s["operator"] and len(s["csrf"]) > 20


def test_guards_csrf_host_operator_and_revocation(viewer: Any) -> None:
    v, users = viewer
    c = logged_in(v, ALICE)
    csrf = c.get("/api/session").json()["csrf"]
    for h in ({}, {"X-CSRF-Token": csrf}, {**ORIGIN, "X-CSRF-Token": "x" * len(csrf)}):
        assert c.post("/api/rollback", json={"version": 1}, headers=h).status_code == 403
    r = c.post("/api/rollback", json={"version": 1}, headers={**ORIGIN, "X-CSRF-Token": csrf})
    assert r.status_code == 403 and "operator" in r.json()["error"]
    r = c.post("/api/ask", json={"question": "x"}, headers={**ORIGIN, "X-CSRF-Token": csrf})
    assert r.status_code == 404 and "not available" in r.json()["error"]  # no agent given to this viewer
    assert c.get("/api/session", headers={"Host": "evil.example:8766"}).status_code == 421
    assert c.get("/login", headers={"Host": "evil.example"}).status_code == 421
    assert c.get("/static/viewer.py").status_code == 404
    for path in ("/login", "/static/app.js", "/api/session"):
        h = c.get(path).headers
        assert "script-src 'self'" in h["content-security-policy"] and h["x-frame-options"] == "DENY"
    del users[ALICE]  # the token file no longer has it
    assert c.get("/api/session").status_code == 401
    # logging out needs the CSRF token too, and ends the session
    b = logged_in(v, BOB)
    bcsrf = b.get("/api/session").json()["csrf"]
    assert b.post("/logout", data={"csrf": "nope"}, headers=ORIGIN).status_code == 403
    assert b.post("/logout", data={"csrf": bcsrf}, headers=ORIGIN).status_code == 303
    assert b.get("/api/session").status_code == 401


def test_a_page_the_user_may_not_see_answers_like_a_missing_one(viewer: Any) -> None:
    v, _ = viewer
    c = logged_in(v, ALICE)
    rec = c.get("/api/image/legal1").json()
    assert rec["file"] == "page.png" and rec["acl"] == ["legal"]
    assert rec["path"] == "page.png"  # not the server's folder layout (outside every index root: the name)
    # texts are data for textContent; table HTML arrives as rows of plain text
    assert rec["ocr_lines"][0]["text"] == "<script>alert(1)</script>"
    assert rec["tables"] == [{"bbox": [10.0, 40.0, 300.0, 200.0], "rows": [["a", "b"]]}]
    assert "html" not in str(rec["tables"])
    for path in ("/api/image/{}", "/api/image/{}/thumb.png", "/api/image/{}/page.png", "/api/image/{}/crop.png?bbox=0,0,9,9"):
        a, b = c.get(path.format("hr1")), c.get(path.format("zz9"))
        assert a.status_code == b.status_code == 404
        assert a.text.replace("hr1", "ID") == b.text.replace("zz9", "ID")
    assert c.get("/api/image/legal1/thumb.png").headers["content-type"] == "image/png"
    assert c.get("/api/image/legal1/crop.png?bbox=0,0,50,20&scale=2").status_code == 200
    assert c.get("/api/image/legal1/crop.png?bbox=0,0,50").status_code == 400
    assert c.get("/api/image/..%2Fsecret").status_code == 404


def test_login_page_warns_when_the_cookie_cannot_stick(viewer: Any) -> None:
    """Over plain HTTP on a network address a browser drops the Secure cookie: say so, not loop."""
    v, _ = viewer
    v.allowed_hosts = None
    plain = TestClient(v.starlette(), base_url="http://10.1.2.3:8765").get("/login")
    assert plain.status_code == 200 and "HTTPS proxy" in plain.text
    for base in ("http://127.0.0.1:8766", "http://localhost:8766", BASE):
        assert "HTTPS proxy" not in TestClient(v.starlette(), base_url=base).get("/login").text


def test_sessions_expire_when_idle() -> None:
    s = Sessions(idle_s=60)
    a = s.create("t")
    assert s.get(a.sid) is a and s.get("other") is None and s.get(None) is None
    s.idle_s = -1
    assert s.get(a.sid) is None


def test_operator_login_key() -> None:
    key, auth = operator_login(OPERATOR)
    assert len(key) >= 24 and auth(key) == OPERATOR
    assert auth(key + "x") is None and auth("") is None


def test_table_rows_keep_text_only() -> None:
    html = "<table><tr><th>名称</th><td>a <b>b</b></td></tr><tr><td><script>x()</script>c</td></tr></table>"
    assert table_rows(html) == [["名称", "a b"], ["x()c"]]
    assert table_rows("<td>unclosed") == []
    assert table_rows("not html") == []


def test_filters_from_the_model() -> None:
    fields = {f["name"]: f for f in filter_fields()}
    assert fields["quality"]["kind"] == "list" and "scanned" in fields["quality"]["choices"]
    assert fields["has_seal"]["kind"] == "bool" and fields["date_from"]["kind"] == "date"
    assert fields["meta"]["kind"] == "map" and fields["tags"]["kind"] == "list" and not fields["tags"]["choices"]
    assert "image_ids" not in fields
    f = parse_filters('{"quality": ["scanned"], "tags": [], "date_from": "", "has_seal": true}')
    assert f.quality == ["scanned"] and f.tags is None and f.date_from is None and f.has_seal is True
    with pytest.raises(ImgragError, match="bad filters.*colour"):
        parse_filters('{"colour": "red"}')
    with pytest.raises(ImgragError, match="not valid JSON"):
        parse_filters("{nope")


# -- the agent's trace as the viewer draws it -------------------------------------------------------


def test_tool_calls_become_trace_entries() -> None:
    from imgrag.agent.mcp_client import ToolCall
    from imgrag.agent.viewer import call_view

    search = ToolCall(
        tool="search_images", args={"query": "甲方", "mode": "keyword", "filters": {"year": 1}}, ms=12.3,
        result={"hits": [{"image_id": "a", "file": "c.png", "page": 2, "snippet": "甲方：X", "region": {"bbox": [1, 2, 3, 4]}}] * 12},
    )
    v = call_view(search)
    assert (v.query, v.mode, len(v.hits), v.hits[0].bbox, v.hits[0].page) == ("甲方", "keyword", 8, (1.0, 2.0, 3.0, 4.0), 2)
    ocr = call_view(ToolCall(tool="ocr_region", args={"image_id": "a", "bbox": [0, 0, 9, 9]}, ms=5, result={"bbox": [1, 1, 8, 8], "text": "hi"}))
    assert ocr.image_id == "a" and ocr.bbox == (1.0, 1.0, 8.0, 8.0) and ocr.text == "hi"
    failed = call_view(ToolCall(tool="crop_region", args={"image_id": "a", "bbox": [0, 0, 9, 9]}, ms=1, error="no image"))
    assert failed.error == "no image" and failed.bbox == (0.0, 0.0, 9.0, 9.0)


def test_every_api_call_is_in_the_audit_log_before_it_answers(viewer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from imgrag.indexing.audit import AuditQuery
    from imgrag.indexing.errors import AuditError

    v, _ = viewer
    anonymous = TestClient(v.starlette(), base_url=BASE, follow_redirects=False)
    for _ in range(5):  # refused before login: left to the HTTP layer's coalesced records, not one each
        assert anonymous.get("/api/image/legal1").status_code == 401
    c = logged_in(v, ALICE)
    assert c.get("/api/image/legal1").status_code == 200
    assert c.get("/api/image/hr1/thumb.png").status_code == 404  # another group's page: refused, and on record
    records = [r for r in v.app.audit.query(AuditQuery(limit=100)).records if r.event == "web"]
    assert len(records) == 2 and all(r.principal == "alice" for r in records), records
    by_name = {r.name: r for r in records}
    seen = by_name["GET /api/image/{image_id}"]
    assert seen.outcome == "ok" and seen.principal == "alice" and seen.image_ids == ["legal1"] and seen.transport == "http"
    refused = by_name["GET /api/image/{image_id}/thumb.png"]
    assert refused.outcome == "error" and refused.error == "not_found" and refused.image_ids == ["hr1"]

    def broken(record: Any) -> None:
        raise AuditError("the audit log cannot be written", "check the disk")

    monkeypatch.setattr(v.app.audit, "append", broken)
    r = c.get("/api/image/legal1")
    assert r.status_code == 503 and "legal1" not in r.text and "<script>" not in r.text  # withheld
    assert "check the disk" not in r.text and "tell the operator" in r.text  # where the log lives is the operator's to know


def test_ask_polls_that_show_nothing_new_add_no_audit_record(viewer: Any) -> None:
    """The page polls a running question every second: one record per state it shows, not per poll."""
    from imgrag.indexing.audit import AuditQuery
    from imgrag.mcp_server.web.viewer import AskJob

    v, users = viewer
    c = logged_in(v, ALICE)
    sess = next(iter(v.sessions._data.values()))
    job = AskJob(id="j1", sid=sess.sid, principal=users[ALICE], question="who signed?", filters={})
    v.jobs["j1"] = job

    def polls() -> list[Any]:
        return [r for r in v.app.audit.query(AuditQuery(limit=100)).records if r.name == "GET /api/ask/{job_id}"]

    for _ in range(4):
        assert c.get("/api/ask/j1").status_code == 200
    assert len(polls()) == 1
    job.status, job.result = "done", {"answer": "x", "citations": [{"image_id": "legal1"}]}
    for _ in range(3):
        assert c.get("/api/ask/j1").status_code == 200
    assert len(polls()) == 2  # the finished answer is a new state: on record once
    assert logged_in(v, BOB).get("/api/ask/j1").status_code == 404  # another session: refused, and on record
    assert len(polls()) == 3
