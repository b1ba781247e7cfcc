"""The viewer's HTTP side: login and sessions, the JSON API the page script calls, images, static files.

Security, because a browser is a client that other web pages can script:

* **Login** takes a bearer token (the token file ``imgrag serve --http`` uses, or the launch key
  ``imgrag ui`` prints) and answers with a session cookie: ``__Host-`` prefixed, ``Secure``,
  ``HttpOnly``, ``SameSite=Strict``. The token stays on the server, in the session; every request
  checks it again, so a token revoked in the token file ends its sessions at once.
* **CSRF**: every state-changing request is a POST that must come from this origin (``Origin``
  header) and, once logged in, carry the session's CSRF token in ``X-CSRF-Token``.
* **DNS rebinding**: bound to a loopback address, requests must name a loopback ``Host``.
* **Same answers for not-allowed and not-found**: reads go through the facade with the caller's
  principal, whose ``NotFoundError`` is the same for both.
* **Nothing rendered as HTML**: the page script builds the DOM with ``textContent``; tables (HTML from
  the table model, i.e. from the scanned page) are parsed here into rows of plain text. A strict
  Content-Security-Policy (scripts from this origin only, no inline code) backs that up.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs

import anyio
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from imgrag.indexing.app import Imgrag
from imgrag.indexing.audit import Caller, make_record
from imgrag.indexing.errors import AuditError, ImgragError, NotFoundError
from imgrag.indexing.limits import MAX_CROP_SCALE, MAX_ID_CHARS, MAX_QUERY_CHARS
from imgrag.indexing.search import SearchRequest
from imgrag.indexing.stores.base import Filters, ImageRecord, Principal

from .. import paging
from ..auditing import returned_ids
from .models import Asker, AskStep

log = logging.getLogger("imgrag.web")
audit = logging.getLogger("imgrag.audit")

Authenticate = Callable[[str], Principal | None]
"""A login token → the principal it acts for, or None when the token is not (or no longer) valid."""

COOKIE = "__Host-imgrag"
SESSION_IDLE_S = 12 * 3600
MAX_SESSIONS = 2000
MAX_SESSIONS_PER_TOKEN = 20  # browsers and tabs of one person; more replace that token's oldest
MAX_BODY = 64 * 1024
MAX_TOKEN_CHARS = 4096
FAILED_LOGIN_DELAY_S = 1.0  # a wrong token answers after this: slows guessing without locking anyone out
THUMB_SIDES = (192, 256, 384, 512)
PAGE_K = 50
MAX_CURSOR_CHARS = 1000  # as the MCP tool's cursor argument
MAX_ASKS_RUNNING = 2
MAX_QUESTION_CHARS = 2000
STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
    "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # not no-referrer: that makes a form POST send `Origin: null`
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
_CHART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.png$")


def _static_dir() -> Any:
    return resources.files(__package__) / "static"


def operator_login(principal: Principal) -> tuple[str, Authenticate]:
    """A one-off launch key for ``imgrag ui`` and the authenticator that accepts only it."""
    key = secrets.token_urlsafe(24)

    def authenticate(token: str) -> Principal | None:
        return principal if hmac.compare_digest(token.encode(), key.encode()) else None

    return key, authenticate


# -- sessions -----------------------------------------------------------------------------------
@dataclass
class Session:
    sid: str
    token: str = field(repr=False)
    csrf: str
    created: float
    seen: float


class Sessions:
    """In-memory sessions (a restart logs everyone out): id → the token it logged in with."""

    def __init__(self, idle_s: float = SESSION_IDLE_S, limit: int = MAX_SESSIONS) -> None:
        self.idle_s = idle_s
        self.limit = limit
        self._data: OrderedDict[str, Session] = OrderedDict()

    def create(self, token: str) -> Session:
        now = time.monotonic()
        # One token's logins replace that token's least recently used session past MAX_SESSIONS_PER_TOKEN:
        # a valid login costs nothing, so one token holder looping POST /login used to push every other
        # user's session out of the global limit (everyone logged out).
        mine = [sid for sid, old in self._data.items() if hmac.compare_digest(old.token.encode(), token.encode())]
        for sid in mine[: max(0, len(mine) - MAX_SESSIONS_PER_TOKEN + 1)]:
            del self._data[sid]
        s = Session(sid=secrets.token_urlsafe(32), token=token, csrf=secrets.token_urlsafe(24), created=now, seen=now)
        self._data[s.sid] = s
        while len(self._data) > self.limit:
            self._data.popitem(last=False)
        return s

    def get(self, sid: str | None) -> Session | None:
        if not sid or len(sid) > 100:
            return None
        s = self._data.get(sid)
        if s is None:
            return None
        now = time.monotonic()
        if now - s.seen > self.idle_s:
            self._data.pop(sid, None)
            return None
        s.seen = now
        self._data.move_to_end(sid)
        return s

    def drop(self, sid: str) -> None:
        self._data.pop(sid, None)


# -- tables as text -----------------------------------------------------------------------------
class _TableText(HTMLParser):
    """Rows of cell texts from table HTML; tags and attributes are dropped, never rendered."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            if not self.rows:
                self.rows.append([])
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table_rows(html: str, max_rows: int = 200, max_cols: int = 50) -> list[list[str]]:
    p = _TableText()
    try:
        p.feed(html[:200_000])
        p.close()
    except Exception:  # noqa: BLE001 - malformed markup from a model: show what was parsed
        pass
    return [r[:max_cols] for r in p.rows[:max_rows] if r]


# -- ask jobs -----------------------------------------------------------------------------------
@dataclass
class AskJob:
    id: str
    sid: str
    principal: Principal
    question: str
    filters: dict[str, Any]
    started: float = field(default_factory=time.time)
    status: Literal["running", "done", "error"] = "running"
    steps: list[AskStep] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: str = ""
    task: asyncio.Task[None] | None = None
    # what the durable audit log already holds of this job's polls: a poll that shows nothing new
    # (the viewer asks every second while the agent runs) adds no record
    audited: tuple[str, frozenset[str]] | None = None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question": self.question,
            "filters": self.filters,
            "status": self.status,
            "seconds": round(time.time() - self.started, 1),
            "steps": [s.model_dump(mode="json") for s in self.steps],
            "result": self.result,
            "error": self.error,
        }


class HTTPError(Exception):
    def __init__(self, status: int, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.hint = status, message, hint


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers={"Cache-Control": "no-store"})


def _error(status: int, message: str, hint: str = "") -> JSONResponse:
    return _json({"error": message, "hint": hint}, status)


def _secure(resp: Response) -> Response:
    for k, v in SECURITY_HEADERS.items():
        resp.headers.setdefault(k, v)
    return resp


def _image_id(raw: str) -> str:
    if not raw or len(raw) > MAX_ID_CHARS or not _ID.match(raw):
        # the same answer as an id that does not exist
        raise NotFoundError(f"no image with id {raw[:MAX_ID_CHARS]!r}", "use an image id from a search")
    return raw


def _floats(raw: str, n: int, what: str) -> list[float]:
    try:
        vals = [float(v) for v in raw.split(",")]
    except ValueError:
        vals = []
    if len(vals) != n or not all(math.isfinite(v) and abs(v) < 1e9 for v in vals):
        raise ImgragError(f"{what} must be {n} comma-separated numbers", f"e.g. {what}=" + ",".join(["0"] * n))
    return vals


def _int(raw: str | None, default: int, lo: int, hi: int, what: str) -> int:
    if raw in (None, ""):
        return default
    try:
        v = int(raw)  # type: ignore[arg-type]
    except ValueError:
        raise ImgragError(f"{what} must be a whole number", f"use {lo} to {hi}") from None
    if not lo <= v <= hi:
        raise ImgragError(f"{what}={v} is out of range", f"use {lo} to {hi}")
    return v


def parse_filters(raw: str | dict[str, Any] | None) -> Filters:
    """Filters from the page's JSON (the same model the MCP tool takes); empty values are dropped."""
    if raw in (None, "", {}):
        return Filters()
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack (a few kB of '[')
        raise ImgragError("filters are not valid JSON", "send filters as a JSON object") from None
    if not isinstance(data, dict):
        raise ImgragError("filters must be a JSON object", 'e.g. {"quality": ["scanned"]}')
    data = {k: v for k, v in data.items() if v not in (None, "", [], {})}
    try:
        return Filters.model_validate(data)
    except ValidationError as e:
        bad = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'filters'}: {x['msg']}" for x in e.errors(include_url=False))
        raise ImgragError(f"bad filters ({bad})", "dates are YYYY-MM-DD; see the filter fields' descriptions") from None


def filter_fields() -> list[dict[str, Any]]:
    """The filter form, from the ``Filters`` model itself: a field added there (say ``has_pii``)
    shows up in the page without touching the script."""
    schema = Filters.model_json_schema()
    defs = schema.get("$defs", {})
    out = []
    for name, prop in schema["properties"].items():
        if name == "image_ids":  # the viewer links to pages instead
            continue
        kind = "text"
        choices: list[str] = []
        for o in prop.get("anyOf", [prop]):
            if o.get("type") == "array":
                kind = "list"
                items = o.get("items", {})
                if "$ref" in items:
                    items = defs.get(items["$ref"].rsplit("/", 1)[-1], {})
                choices = list(items.get("enum", []))
            elif o.get("format") == "date":
                kind = "date"
            elif o.get("type") == "boolean":
                kind = "bool"
            elif o.get("type") == "object":
                kind = "map"
        out.append({"name": name, "kind": kind, "choices": choices, "description": prop.get("description", "")})
    return out


# -- the viewer ---------------------------------------------------------------------------------
class WebViewer:
    """The viewer over one ``Imgrag`` application.

    Args:
        app: the facade every read goes through.
        authenticate: login token → principal (the token file, or ``operator_login``'s key).
        asker: runs the bundled agent (``imgrag.agent.viewer``); None hides the ask view.
        eval_dir: where ``imgrag eval`` wrote its charts (shown to operators).
        allowed_hosts: ``Host`` values accepted (DNS-rebinding guard); None accepts any.
        link_login: accept ``GET /login?token=`` (``imgrag ui``'s printed link); otherwise a token
            is only taken from the login form's POST body, never from a URL.
        title: shown in the page header.
        port: the port served on; it names the cookie, since browsers share cookies across the ports
            of one host (`imgrag ui` and `imgrag serve --http` side by side keep their own logins).
    """

    def __init__(
        self,
        app: Imgrag,
        authenticate: Authenticate,
        *,
        asker: Asker | None = None,
        eval_dir: Path | None = None,
        allowed_hosts: list[str] | None = None,
        link_login: bool = False,
        title: str = "imgrag",
        port: int | None = None,
    ) -> None:
        self.app = app
        self.authenticate = authenticate
        self.asker = asker
        self.eval_dir = eval_dir
        self.allowed_hosts = {h.lower() for h in allowed_hosts} if allowed_hosts is not None else None
        self.link_login = link_login
        self.title = title
        self.cookie = f"{COOKIE}-{port}" if port else COOKIE
        self.sessions = Sessions()
        self.jobs: OrderedDict[str, AskJob] = OrderedDict()

    @staticmethod
    def loopback_hosts(port: int) -> list[str]:
        return [f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"]

    # -- wiring ----------------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        api = self._api
        return [
            Route("/", self._page(self._index), methods=["GET"]),
            Route("/login", self._page(self._login), methods=["GET", "POST"]),
            Route("/logout", self._page(self._logout), methods=["POST"]),
            Route("/static/{name}", self._page(self._static), methods=["GET"]),
            Route("/api/session", api(self._session), methods=["GET"]),
            Route("/api/search", api(self._search), methods=["GET"]),
            Route("/api/image/{image_id}", api(self._image), methods=["GET"]),
            Route("/api/image/{image_id}/page.png", api(self._page_png), methods=["GET"]),
            Route("/api/image/{image_id}/thumb.png", api(self._thumb_png), methods=["GET"]),
            Route("/api/image/{image_id}/crop.png", api(self._crop_png), methods=["GET"]),
            Route("/api/collection", api(self._collection), methods=["GET"]),
            Route("/api/eval/{name}", api(self._eval_chart, operator=True), methods=["GET"]),
            Route("/api/rollback", api(self._rollback, write=True, operator=True), methods=["POST"]),
            Route("/api/ask", api(self._ask, write=True), methods=["POST"]),
            Route("/api/ask/{job_id}", api(self._ask_status), methods=["GET"]),
            Route("/api/ask/{job_id}/export.{fmt}", api(self._ask_export), methods=["GET"]),
        ]

    def starlette(self) -> Starlette:
        """The viewer alone (``imgrag ui``)."""
        return Starlette(routes=self.routes())

    def mount(self, server: Any) -> None:
        """Serve the viewer from an MCP server's own HTTP app (its ``custom_route``s: same port; the
        routes do their own cookie auth, the SDK's bearer auth guards only ``/mcp``)."""
        for r in self.routes():
            server.custom_route(r.path, methods=sorted((r.methods or set()) - {"HEAD"}), include_in_schema=False)(r.endpoint)

    # -- request guards --------------------------------------------------------------------------
    def _host_ok(self, request: Request) -> bool:
        return self.allowed_hosts is None or request.headers.get("host", "").lower() in self.allowed_hosts

    @staticmethod
    def _same_origin(request: Request) -> bool:
        """A POST from a page of this server: the browser's ``Origin`` is this scheme://host."""
        origin = request.headers.get("origin")
        host = request.headers.get("host", "")
        if origin is None:
            return request.headers.get("sec-fetch-site") == "same-origin"
        return origin in (f"http://{host}", f"https://{host}")

    def _who(self, request: Request) -> tuple[Session, Principal] | None:
        sess = self.sessions.get(request.cookies.get(self.cookie))
        if sess is None:
            return None
        principal = self.authenticate(sess.token)
        if principal is None:  # the token was revoked: so is the session
            self.sessions.drop(sess.sid)
            return None
        return sess, principal

    @staticmethod
    def _name(p: Principal) -> str:
        return p.name or ("operator" if p.all_access else "anonymous")

    def _api(
        self,
        fn: Callable[[Request, Principal, Session], Awaitable[Response]],
        *,
        write: bool = False,
        operator: bool = False,
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            t0 = time.perf_counter()
            who = "-"
            seen_as: Principal | None = None
            try:
                if not self._host_ok(request):
                    raise HTTPError(421, "this server does not answer for that host name", "open it as http://127.0.0.1:PORT")
                auth = self._who(request)
                if auth is None:
                    raise HTTPError(401, "not logged in", "log in at /login")
                sess, principal = auth
                who, seen_as = self._name(principal), principal
                if write and not (
                    self._same_origin(request)
                    and hmac.compare_digest(request.headers.get("x-csrf-token", "").encode(), sess.csrf.encode())
                ):
                    raise HTTPError(403, "cross-site or stale request refused", "reload the page and try again")
                if operator and not principal.all_access:
                    raise HTTPError(403, "only an operator may do this", "log in with an operator token")
                resp = await fn(request, principal, sess)
                outcome = "ok"
            except HTTPError as e:
                resp, outcome = _error(e.status, e.message, e.hint), f"{e.status}"
            except NotFoundError as e:
                resp, outcome = _error(404, e.message, e.hint), "404"
            except ImgragError as e:
                resp, outcome = _error(400, e.message, e.hint), "error"
            except Exception as e:
                log.exception("web %s crashed", request.url.path)
                resp, outcome = _error(500, f"internal error ({type(e).__name__})", "the server log has the details"), "crash"
            audit.info(
                "%s web %s %s %s %.0fms", who, request.method, request.url.path, outcome, (time.perf_counter() - t0) * 1000
            )
            return _secure(await self._recorded(request, seen_as, outcome, t0, resp))

        return endpoint

    async def _recorded(self, request: Request, principal: Principal | None, outcome: str, t0: float, resp: Response) -> Response:
        """Put an API call in the durable audit log as the MCP server puts a tool call — who, which
        route, which images it showed, outcome — before the answer leaves; a log that cannot be
        written withholds the answer (nothing is shown unrecorded). Requests refused before anyone
        logged in are left to the HTTP layer's coalesced records: an anonymous flood must not write
        one fsync'd record per request."""
        if principal is None:
            return resp
        ids: list[str] = []
        if isinstance(request.path_params.get("image_id"), str):
            ids.append(request.path_params["image_id"][:MAX_ID_CHARS])
        if outcome == "ok" and isinstance(resp, JSONResponse):
            try:
                ids += returned_ids(json.loads(bytes(resp.body)))
            except ValueError:
                pass
        route = getattr(request.scope.get("route"), "path", None) or "unknown"
        if route == "/api/ask/{job_id}" and outcome == "ok":
            job = self.jobs.get(str(request.path_params.get("job_id", "")))
            if job is not None:
                seen = (job.status, frozenset(ids))
                if job.audited == seen:
                    return resp
                job.audited = seen
        peer = f"{request.client.host}:{request.client.port}" if request.client else None
        kind = {"ok": None, "401": "unauthenticated", "403": "denied", "421": "bad_host", "404": "not_found"}.get(outcome, outcome)
        record = make_record(
            event="web", name=f"{request.method} {route}",
            outcome="ok" if outcome == "ok" else "denied" if outcome in ("401", "403", "421") else "error", error=kind,
            principal=principal, args=dict(request.query_params) or None, image_ids=ids if outcome == "ok" else ids[:1],
            latency_ms=(time.perf_counter() - t0) * 1000, caller=Caller(transport="http", client=peer),
        )
        try:
            await anyio.to_thread.run_sync(self.app.audit.append, record)
        except AuditError as e:
            log.error("web %s: the audit record could not be written (%s); answer withheld", route, e)
            # where the log lives (a file path, the cluster's address and settings) is the operator's to know
            hint = (e.hint or "tell the operator") if principal is not None and principal.all_access else "tell the operator"
            return _error(503, "the audit log cannot be written, so the answer is withheld", hint)
        return resp

    def _page(self, fn: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if not self._host_ok(request):
                return _secure(Response("unknown host", status_code=421, media_type="text/plain"))
            try:
                return _secure(await fn(request))
            except HTTPError as e:  # a login / logout body over MAX_BODY: its status, not a 500 and a traceback
                return _secure(Response(f"{e.message}: {e.hint}", status_code=e.status, media_type="text/plain"))

        return endpoint

    # -- pages -----------------------------------------------------------------------------------
    def _html(self, name: str) -> str:
        return (_static_dir() / name).read_text(encoding="utf-8")

    async def _index(self, request: Request) -> Response:
        if self._who(request) is None:
            return RedirectResponse("/login", status_code=303)
        html = self._html("index.html").replace("{{title}}", _esc(self.title))
        return Response(html, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})

    def _login_page(self, request: Request, message: str = "", status: int = 200) -> Response:
        notes = [message] if message else []
        host = (request.url.hostname or "").strip("[]")
        if request.url.scheme != "https" and host not in ("127.0.0.1", "localhost", "::1"):
            notes.append(
                "This page came over plain HTTP: browsers keep the login cookie (it is Secure) only over HTTPS "
                "or from 127.0.0.1 / localhost. Serve the viewer behind an HTTPS proxy."
            )
        html = (
            self._html("login.html")
            .replace("{{title}}", _esc(self.title))
            .replace("{{message}}", "".join(f'<p class="error" role="alert">{_esc(n)}</p>' for n in notes))
        )
        return Response(html, status_code=status, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})

    def _start_session(self, token: str, principal: Principal) -> Response:
        sess = self.sessions.create(token)
        audit.info("%s web login ok", self._name(principal))
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(self.cookie, sess.sid, max_age=SESSION_IDLE_S, path="/", secure=True, httponly=True, samesite="strict")
        return resp

    async def _login(self, request: Request) -> Response:
        if request.method == "GET":
            token = request.query_params.get("token")
            if token is None or not self.link_login:
                return self._login_page(request)
        else:
            if not self._same_origin(request):
                return self._login_page(request, "This login did not come from this server's own page.", 403)
            body = await _body(request)
            token = (parse_qs(body.decode("utf-8", "replace")).get("token") or [""])[0]
        token = token.strip()
        principal = self.authenticate(token) if 0 < len(token) <= MAX_TOKEN_CHARS else None
        if principal is None:
            client = request.client.host if request.client else "?"
            audit.info("- web login refused (from %s)", client)
            await anyio.sleep(FAILED_LOGIN_DELAY_S)
            return self._login_page(request, "That token is not valid here.", 401)
        return self._start_session(token, principal)

    async def _logout(self, request: Request) -> Response:
        auth = self._who(request)
        if auth is not None:
            body = parse_qs((await _body(request)).decode("utf-8", "replace"))
            csrf = (body.get("csrf") or [request.headers.get("x-csrf-token", "")])[0]
            if not self._same_origin(request) or not hmac.compare_digest(csrf.encode(), auth[0].csrf.encode()):
                return _error(403, "cross-site or stale request refused", "reload the page and try again")
            self.sessions.drop(auth[0].sid)
            audit.info("%s web logout", self._name(auth[1]))
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(self.cookie, path="/", secure=True, httponly=True, samesite="strict")
        return resp

    async def _static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return Response("not found", status_code=404, media_type="text/plain")
        data = (_static_dir() / name).read_bytes()
        return Response(data, media_type=STATIC[name], headers={"Cache-Control": "no-cache"})

    # -- api -------------------------------------------------------------------------------------
    async def _session(self, request: Request, p: Principal, sess: Session) -> Response:
        return _json(
            {
                "principal": self._name(p),
                "groups": p.groups,
                "operator": p.all_access,
                "csrf": sess.csrf,
                "title": self.title,
                "can_ask": self.asker is not None,
                "filters": filter_fields(),
                "max_k": PAGE_K,
            }
        )

    async def _search(self, request: Request, p: Principal, sess: Session) -> Response:
        q = request.query_params
        query = (q.get("q") or "").strip() or None
        if query and len(query) > MAX_QUERY_CHARS:
            raise ImgragError(f"the query is {len(query)} characters long", f"keep it under {MAX_QUERY_CHARS}")
        mode = q.get("mode") or "hybrid"
        if mode not in ("hybrid", "vector", "keyword"):
            raise ImgragError(f"unknown mode {mode!r}", "use hybrid, vector or keyword")
        like = q.get("like") or None
        if like is not None:
            like = _image_id(like)
        cursor = q.get("cursor") or None
        if cursor is not None and len(cursor) > MAX_CURSOR_CHARS:
            raise ImgragError(paging.NOT_OURS[0], "start the search over")
        req = SearchRequest(
            query=query,
            k=_int(q.get("k"), 20, 1, PAGE_K, "k"),
            filters=parse_filters(q.get("filters")),
            mode=mode,  # type: ignore[arg-type]
            similar_to=like,
        )
        back = q.get("back") in ("1", "true")
        # the MCP tool's paging: page 1 fixes the ranked list, a cursor moves along it, and a write
        # that changed the hits shown so far answers "the results changed" (no repeats, no gaps)
        try:
            page = await anyio.to_thread.run_sync(lambda: paging.search_page(self.app, req, p, cursor, back=back))
        except ImgragError as e:
            if cursor is not None and type(e) is ImgragError and "cursor" in e.hint:  # the tool's words, for a person
                raise ImgragError(e.message, "start the search over") from None
            raise
        res = page.result
        hits = []
        for h in res.hits:
            d = h.model_dump(mode="json")
            d["file"] = Path(h.path).name
            if not p.all_access:  # as over MCP: a path under the index root, never the server's layout
                d["path"] = self.app.display_path(h.path)
            hits.append(d)
        return _json(
            {
                "query": res.query,
                "mode": mode,
                "like": like,
                "offset": page.offset,
                "k": req.k,
                "candidates": res.candidates,
                "hits": hits,
                "timings_ms": res.timings_ms,
                "note": res.note,
                "cursor": page.cursor,
                "next_cursor": page.next_cursor,
                "more": page.next_cursor is not None,
            }
        )

    async def _image(self, request: Request, p: Principal, sess: Session) -> Response:
        image_id = _image_id(request.path_params["image_id"])

        def work() -> dict[str, Any]:
            rec = self.app.get(image_id, p)
            regions = self.app.regions(image_id, p)
            pages = self.app.list_images(p, Filters(doc_id=rec.doc_id), limit=500) if rec.n_pages > 1 else [rec]
            data = record_view(rec, regions, pages, self.app.current_version())
            if not p.all_access:  # as over MCP: a path under the index root, never the server's layout
                data["path"] = self.app.display_path(rec.path)
            return data

        return _json(await anyio.to_thread.run_sync(work))

    async def _png(self, work: Callable[[], bytes]) -> Response:
        data = await anyio.to_thread.run_sync(work)
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})

    async def _page_png(self, request: Request, p: Principal, sess: Session) -> Response:
        image_id = _image_id(request.path_params["image_id"])
        return await self._png(lambda: self.app.image_png(image_id, p))

    async def _thumb_png(self, request: Request, p: Principal, sess: Session) -> Response:
        image_id = _image_id(request.path_params["image_id"])
        side = _int(request.query_params.get("side"), THUMB_SIDES[1], THUMB_SIDES[0], THUMB_SIDES[-1], "side")
        side = min(THUMB_SIDES, key=lambda s: abs(s - side))
        return await self._png(lambda: self.app.thumbnail(self.app.get(image_id, p), side, p))

    async def _crop_png(self, request: Request, p: Principal, sess: Session) -> Response:
        image_id = _image_id(request.path_params["image_id"])
        q = request.query_params
        bbox = _floats(q.get("bbox", ""), 4, "bbox")
        try:
            scale = float(q.get("scale") or 1.0)
        except ValueError:
            raise ImgragError("scale must be a number", f"use 1 to {MAX_CROP_SCALE:g}") from None
        scale = min(max(scale, 1.0), MAX_CROP_SCALE)
        enhance = q.get("enhance") in ("1", "true")
        return await self._png(lambda: self.app.crop(image_id, bbox, p, scale=scale, enhance=enhance).png)

    def _charts(self) -> list[dict[str, Any]]:
        d = self.eval_dir
        if d is None or not d.is_dir():
            return []
        files = [f for f in d.iterdir() if f.is_file() and _CHART.match(f.name)]
        files.sort(key=lambda f: -f.stat().st_mtime)
        return [{"name": f.name, "modified": time.strftime("%Y-%m-%d %H:%M", time.localtime(f.stat().st_mtime))} for f in files[:50]]

    async def _collection(self, request: Request, p: Principal, sess: Session) -> Response:
        def work() -> dict[str, Any]:
            st = self.app.stats(p)
            out: dict[str, Any] = {
                "images": st.images,
                "documents": st.documents,
                "regions": st.regions,
                "by_quality": st.by_quality,
                "by_format": st.by_format,
                "by_year": st.by_year,
                "version": st.version,
                "backend": st.backend,
                "operator": p.all_access,
            }
            if p.all_access:
                out["deleted"] = st.deleted
                out["models"] = st.spaces.model_dump() if st.spaces else None
                out["versions"] = [v.model_dump(mode="json", exclude={"spaces"}) for v in reversed(self.app.versions())]
                out["charts"] = self._charts()
                out["eval_dir"] = str(self.eval_dir) if self.eval_dir else None
            return out

        return _json(await anyio.to_thread.run_sync(work))

    async def _eval_chart(self, request: Request, p: Principal, sess: Session) -> Response:
        name = request.path_params["name"]
        d = self.eval_dir
        if d is None or not _CHART.match(name) or not (d / name).is_file():
            raise HTTPError(404, f"no chart {name[:80]!r}", "run `imgrag eval` to make some")
        return FileResponse(d / name, media_type="image/png", headers={"Cache-Control": "no-cache"})

    async def _rollback(self, request: Request, p: Principal, sess: Session) -> Response:
        body = await _json_body(request)
        version = body.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise ImgragError("rollback needs a version number", 'send {"version": N}')
        v = await anyio.to_thread.run_sync(lambda: self.app.rollback(version))
        return _json(v.model_dump(mode="json", exclude={"spaces"}))

    # -- ask -------------------------------------------------------------------------------------
    async def _ask(self, request: Request, p: Principal, sess: Session) -> Response:
        if self.asker is None:
            raise HTTPError(404, "asking is not available on this server", "start it with `imgrag ui` or `imgrag serve --http`")
        body = await _json_body(request)
        question = str(body.get("question") or "").strip()
        if not question:
            raise ImgragError("empty question", "type a question")
        if len(question) > MAX_QUESTION_CHARS:
            raise ImgragError(f"the question is {len(question)} characters long", f"keep it under {MAX_QUESTION_CHARS}")
        filters = parse_filters(body.get("filters")).model_dump(mode="json", exclude_defaults=True)
        running = [j for j in self.jobs.values() if j.status == "running"]
        if any(j.sid == sess.sid for j in running):
            raise HTTPError(429, "you already have a question running", "wait for its answer")
        if len(running) >= MAX_ASKS_RUNNING:
            raise HTTPError(429, "the server is answering other questions", "try again in a minute")
        job = AskJob(id=secrets.token_urlsafe(12), sid=sess.sid, principal=p, question=question, filters=filters)
        self.jobs[job.id] = job
        while len(self.jobs) > 200:
            old = next(iter(self.jobs.values()))
            if old.status == "running":
                break
            self.jobs.popitem(last=False)
        job.task = asyncio.get_running_loop().create_task(self._run_job(job))
        return _json({"id": job.id}, 202)

    async def _run_job(self, job: AskJob) -> None:
        assert self.asker is not None
        try:
            job.result = await self.asker.ask(job.question, job.filters, job.principal, job.steps.append)
            job.status = "done"
        except ImgragError as e:
            job.status, job.error = "error", str(e)
        except Exception as e:  # noqa: BLE001 - shown to the user by type, logged in full
            log.exception("ask crashed")
            job.status, job.error = "error", f"internal error ({type(e).__name__}); the server log has the details"
        audit.info("%s web ask %s %.0fs", self._name(job.principal), job.status, time.time() - job.started)

    def _job(self, request: Request, sess: Session) -> AskJob:
        job = self.jobs.get(request.path_params["job_id"])
        if job is None or job.sid != sess.sid:
            raise HTTPError(404, "no such question", "ask it again")
        return job

    async def _ask_status(self, request: Request, p: Principal, sess: Session) -> Response:
        return _json(self._job(request, sess).public())

    async def _ask_export(self, request: Request, p: Principal, sess: Session) -> Response:
        job = self._job(request, sess)
        fmt = request.path_params["fmt"]
        if fmt not in ("md", "pdf"):
            raise HTTPError(404, f"no export format {fmt[:10]!r}", "use export.md or export.pdf")
        if job.result is None or self.asker is None:
            raise ImgragError("this question has no answer yet", "wait for it to finish")
        data = await self.asker.export(job.result, fmt, p)  # type: ignore[arg-type]
        media = "application/pdf" if fmt == "pdf" else "text/markdown; charset=utf-8"
        return Response(
            data, media_type=media,
            headers={"Content-Disposition": f'attachment; filename="imgrag-answer.{fmt}"', "Cache-Control": "no-store"},
        )


def _esc(text: str) -> str:
    import html

    return html.escape(text, quote=True)


async def _body(request: Request) -> bytes:
    if int(request.headers.get("content-length") or 0) > MAX_BODY:
        raise HTTPError(413, "request too large", "send less")
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_BODY:
            raise HTTPError(413, "request too large", "send less")
    return data


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        data = json.loads(await _body(request) or b"{}")
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
        raise ImgragError("the request body is not JSON", "send a JSON object") from None
    if not isinstance(data, dict):
        raise ImgragError("the request body must be a JSON object", "send a JSON object")
    return data


def record_view(rec: ImageRecord, regions: list[Any], pages: list[ImageRecord], version: int | None) -> dict[str, Any]:
    """One page as the page view draws it: boxes in original-image pixels, texts as plain strings."""
    lines = rec.ocr_lines
    data = rec.model_dump(mode="json", exclude={"ocr_lines", "tables", "ocr_text", "deleted"})
    data["file"] = Path(rec.path).name
    data["ocr_lines"] = [{"text": ln.text, "bbox": list(ln.bbox), "confidence": round(ln.confidence, 3)} for ln in lines]
    data["tables"] = [{"bbox": list(t.bbox), "rows": table_rows(t.html)} for t in rec.tables]
    data["dates"] = [
        {
            **m.model_dump(mode="json"),
            "bbox": list(lines[m.line_index].bbox) if m.line_index is not None and 0 <= m.line_index < len(lines) else None,
        }
        for m in rec.dates
    ]
    data["tiles"] = [{"label": r.label, "bbox": list(r.bbox)} for r in regions if r.kind == "tile"]
    data["pages"] = sorted(({"image_id": r.image_id, "page": r.page} for r in pages), key=lambda x: x["page"])
    data["index_version"] = version
    return data
