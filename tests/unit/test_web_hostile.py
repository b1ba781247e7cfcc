"""A hostile browser or script against the web viewer's routes (fake store, no models): a bad request
gets its 4xx answer, never a 500 with a traceback in the server log."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from starlette.testclient import TestClient
from test_web_routes import ALICE, BASE, ORIGIN, logged_in, viewer  # noqa: F401  (viewer: the fixture)

FORM = {**ORIGIN, "content-type": "application/x-www-form-urlencoded"}


def test_an_oversized_login_or_logout_body_is_refused_not_crashed(viewer: Any, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    """POST /login (anyone, no session) with a body over 64 KiB: the 413 that `_body` raises went
    past the page routes' wrapper, so Starlette answered 500 and logged a traceback per request."""
    v, _ = viewer
    anon = TestClient(v.starlette(), base_url=BASE, follow_redirects=False, raise_server_exceptions=False)
    r = anon.post("/login", content=b"token=" + b"a" * 70_000, headers=FORM)
    assert r.status_code == 413 and "too large" in r.text
    assert "content-security-policy" in r.headers  # still a page of ours
    c = logged_in(v, ALICE)
    c2 = TestClient(v.starlette(), base_url=BASE, follow_redirects=False, raise_server_exceptions=False, cookies=c.cookies)
    r = c2.post("/logout", content=b"csrf=" + b"a" * 70_000, headers=FORM)
    assert r.status_code == 413
    assert not [x for x in caplog.records if x.levelno >= logging.ERROR]


def test_json_nested_too_deep_is_a_bad_request(viewer: Any, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    """`filters=[[[[…` (a few kB in a URL) made json.loads raise RecursionError, which is not a
    ValueError: 'internal error (RecursionError)', 500, and a logged traceback per request."""
    v, _ = viewer
    c = logged_in(v, ALICE)
    for filters in ("[" * 5000, '{"meta":' * 3000):
        r = c.get("/api/search", params={"q": "x", "filters": filters})
        assert r.status_code == 400 and r.json()["error"] == "filters are not valid JSON", r.text
    csrf = c.get("/api/session").json()["csrf"]
    v.asker = object()  # past "asking is not available": the body is read next
    r = c.post("/api/ask", content=b"[" * 5000, headers={**ORIGIN, "X-CSRF-Token": csrf})
    assert r.status_code == 400 and r.json()["error"] == "the request body is not JSON", r.text
    assert not [x for x in caplog.records if x.levelno >= logging.ERROR]


def test_one_token_logging_in_again_and_again_logs_nobody_else_out(viewer: Any) -> None:  # noqa: F811
    """A valid login is free (no delay), and the session table kept the 2000 most recent sessions
    of everyone: one token holder looping POST /login pushed every other user's session out."""
    from imgrag.mcp_server.web.viewer import MAX_SESSIONS_PER_TOKEN
    from test_web_routes import BOB

    v, _ = viewer
    v.sessions.limit = 100  # the same rule as at 2000, in fewer requests
    bob = logged_in(v, BOB)
    first = logged_in(v, ALICE)
    for _ in range(150):
        last = logged_in(v, ALICE)
    assert bob.get("/api/session").status_code == 200
    assert last.get("/api/session").status_code == 200
    assert first.get("/api/session").status_code == 401  # her own oldest went
    assert sum(s.token == ALICE for s in v.sessions._data.values()) == MAX_SESSIONS_PER_TOKEN
