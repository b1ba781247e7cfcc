"""The MCP server's side of the audit log (:mod:`imgrag.indexing.audit`): one record per tool call,
resource read and rejected HTTP request, written before the answer leaves the server.

``CallRecorder.done`` raises when the record cannot be written; the server then answers with that
error instead of the result (withheld: nothing is disclosed unrecorded). ``HttpAuditMiddleware``
sits outside the SDK's bearer-token check, so it sees every 401 and names the peer of each request.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import threading
import time
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

import anyio
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp.shared.uri_template import UriTemplate
from pydantic import ValidationError

from imgrag.indexing.app import Imgrag
from imgrag.indexing.audit import AuditRecord, Caller, Event, Outcome, Transport, error_kind, make_record
from imgrag.indexing.errors import AuditError, BackendUnavailableError, ImgragError
from imgrag.indexing.stores.base import OPERATOR, Principal

from .auth import PrincipalResolver

log = logging.getLogger("imgrag.mcp")

_PEER: ContextVar[str | None] = ContextVar("imgrag_http_peer", default=None)
RESOURCES = ("image", "thumbnail", "collection")


def returned_ids(structured: Any) -> list[str]:
    """The image ids a tool's structured result hands out: search hits, or the one image a
    crop / OCR / metadata / delete call was about, or the ids an index call wrote."""
    if not isinstance(structured, dict):
        return []
    ids = [h["image_id"] for h in structured.get("hits") or [] if isinstance(h, dict) and isinstance(h.get("image_id"), str)]
    if isinstance(structured.get("image_id"), str):
        ids.append(structured["image_id"])
    ids += [i for i in structured.get("image_ids") or [] if isinstance(i, str)]
    return ids


# the image resources' templates, matched as the SDK matches them to serve a read
_ID_TEMPLATES = {name: UriTemplate.parse(f"imgrag://{name}/{{image_id}}") for name in ("image", "thumbnail")}


def resource_name(uri: Any) -> tuple[str, str | None]:
    """(name, image id) of an ``imgrag://`` URI; anything else is ``unknown`` (its text is not kept).

    The id is the one the read is served for: the SDK percent-decodes a template's value, so
    ``imgrag://image/%35d1f...`` reads image ``5d1f...`` and is recorded as that image (it was
    recorded as ``%35d1f...``, an id no audit query for the image finds)."""
    text = str(uri)
    parts = urlsplit(text)
    if parts.scheme != "imgrag" or parts.netloc not in RESOURCES:
        return "unknown", None
    if parts.netloc == "collection":
        return "collection", None
    try:
        params = _ID_TEMPLATES[parts.netloc].match(text)
    except ValueError:
        params = None
    value = params.get("image_id") if params else None
    return parts.netloc, value if isinstance(value, str) and value else None


class CallRecorder:
    """Writes the records of one server: who (the resolved principal), how (``transport``, and over
    HTTP the peer), what (tool or resource, digest of the arguments), which images, outcome, latency."""

    def __init__(self, app: Imgrag, resolve_principal: PrincipalResolver, transport: Transport) -> None:
        self.app = app
        self.resolve_principal = resolve_principal
        self.transport = transport

    def caller(self) -> Caller:
        return Caller(transport=self.transport, client=_PEER.get())

    def principal(self) -> Principal | None:
        try:
            return self.resolve_principal()
        except Exception:  # no verified token: the call fails on its own; record it as unauthenticated
            return None

    async def append(self, record: AuditRecord) -> None:
        await anyio.to_thread.run_sync(self.app.audit.append, record)

    async def done(self, event: Event, name: str, args: Any, t0: float, ids: list[str]) -> None:
        """Record a call that succeeded; raises AuditError (the caller withholds the result)."""
        await self.append(make_record(
            event=event, name=name, outcome="ok", principal=self.principal(), args=args, image_ids=ids,
            latency_ms=(time.perf_counter() - t0) * 1000, caller=self.caller(),
        ))

    async def cancelled(self, event: Event, name: str, args: Any, t0: float, reason: str) -> None:
        """Record a call stopped because its client went: ``reason`` ``disconnected`` (its HTTP
        request ended) or ``cancelled`` (``notifications/cancelled``, or the server stopping)."""
        await self.append(make_record(
            event=event, name=name, outcome="cancelled", error=reason, principal=self.principal(), args=args,
            latency_ms=(time.perf_counter() - t0) * 1000, caller=self.caller(),
        ))

    async def failed(
        self, event: Event, name: str, args: Any, t0: float, e: BaseException, *, kind: str | None = None, target: Any = None
    ) -> None:
        """Record a call that failed (``kind`` when the caller knows better than the exception). A
        ``not_found`` for an image that exists is the ACL at work: the caller was told "no such
        image", the log says ``denied`` / ``acl`` and names the image, so "who tried to see it"
        has an answer."""
        outcome, found = classify(e)
        kind = kind or found
        ids: list[str] = []
        if kind == "not_found" and isinstance(target, str) and await anyio.to_thread.run_sync(self._exists, target):
            outcome, kind, ids = "denied", "acl", [target]
        await self.append(make_record(
            event=event, name=name, outcome=outcome, error=kind, principal=self.principal(), args=args, image_ids=ids,
            latency_ms=(time.perf_counter() - t0) * 1000, caller=self.caller(),
        ))

    def _exists(self, image_id: str) -> bool:
        try:
            return bool(self.app.get_many([image_id], OPERATOR))
        except Exception:  # the store is down: the record says not_found, as the caller was told
            return False


def classify(e: BaseException) -> tuple[Outcome, str]:
    """(outcome, kind) of a failed call, from the error behind the SDK's wrappers: the
    ``ImgragError`` a tool turned into a ``ToolError`` (``raise ... from None`` keeps it as
    ``__context__``) or the pydantic ``ValidationError`` of bad arguments."""
    cur: BaseException | None = e
    seen: set[int] = set()
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, (ImgragError, ValidationError)):
            return error_kind(cur)
        cur = cur.__cause__ or cur.__context__
    if isinstance(e, ResourceNotFoundError):  # a URI no resource template matches
        return "error", "not_found"
    return error_kind(e)


# -- rejected HTTP requests -------------------------------------------------------------------------
class _Coalescer:
    """At most one record per second for each (peer host, reason): a client hammering bad tokens
    must not fill the disk or tie up the server in fsyncs. The requests in between are counted, and
    the count rides on that peer's next record (``count``), or is written when the server stops."""

    WINDOW = 1.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: dict[tuple[str, str], list[float]] = {}  # key -> [window start, requests not yet recorded]

    def admit(self, key: tuple[str, str], now: float) -> int:
        """How many requests a record written now stands for; 0: only count this one."""
        with self._lock:
            st = self._state.get(key)
            if st is not None and now - st[0] < self.WINDOW:
                st[1] += 1
                return 0
            count = 1 + int(st[1]) if st else 1
            self._state[key] = [now, 0]
            if len(self._state) > 10_000:  # forget quiet peers
                self._state = {k: v for k, v in self._state.items() if v[1] or now - v[0] < self.WINDOW}
            return count

    def drain(self) -> list[tuple[tuple[str, str], int]]:
        with self._lock:
            pending = [(k, int(v[1])) for k, v in self._state.items() if v[1]]
            self._state.clear()
        return pending


class HttpAuditMiddleware:
    """ASGI middleware outside the SDK's authentication: remembers each request's peer (tool records
    name it) and records every refused request — 401 (no or unknown bearer token), 403, 421 (bad
    Host) — with the SHA-256 of the token presented, never the token. A record that cannot be
    written does not change the refusal; it is logged as an error on stderr."""

    def __init__(self, app: Any, recorder: CallRecorder) -> None:
        self.app = app
        self.recorder = recorder
        self.coalescer = _Coalescer()
        atexit.register(self.flush)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        host, port = scope.get("client") or ("?", 0)
        peer = f"{host}:{port}"
        t0 = time.perf_counter()

        async def send_and_record(message: dict[str, Any]) -> None:
            if message.get("type") == "http.response.start" and message.get("status") in (401, 403, 421):
                await self._denied(scope, int(message["status"]), str(host), peer, t0)
            await send(message)

        token = _PEER.set(peer)
        try:
            await self.app(scope, receive, send_and_record)
        finally:
            _PEER.reset(token)

    async def _denied(self, scope: Any, status: int, host: str, peer: str, t0: float) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        auth = headers.get("authorization", "")
        bearer = auth[7:] if auth.lower().startswith("bearer ") else None
        reason = {401: "unknown_token" if bearer else "missing_token", 403: "forbidden", 421: "bad_host"}[status]
        count = self.coalescer.admit((host, reason), time.monotonic())
        if not count:
            return
        record = self._record(reason, peer, bearer, count, (time.perf_counter() - t0) * 1000)
        try:
            await self.recorder.append(record)
        except AuditError as e:
            log.error("a refused request from %s could not be recorded: %s", peer, e)

    def _record(self, reason: str, peer: str, bearer: str | None, count: int, latency_ms: float | None) -> AuditRecord:
        return make_record(
            event="auth", name="bearer_token", outcome="denied", error=reason, principal=None,
            args_sha256=hashlib.sha256(bearer.encode()).hexdigest() if bearer else None,
            latency_ms=latency_ms, count=count, caller=Caller(transport="http", client=peer),
        )

    def flush(self) -> None:
        """Write the counts of refused requests not yet on record (at server exit)."""
        for (host, reason), n in self.coalescer.drain():
            try:
                self.recorder.app.audit.append(self._record(reason, host, None, n, None))
            except AuditError as e:
                log.error("%d refused request(s) from %s could not be recorded: %s", n, host, e)


def client_text(e: ImgragError, principal: Principal | None) -> str:
    """The error as a client sees it: the backend's address and settings, and where the audit log
    lives, are the operator's to know."""
    operator = principal is not None and principal.all_access
    if isinstance(e, BackendUnavailableError) and not operator:
        log.error("index backend unavailable: %s", e)
        return "the index is unavailable right now — try again in a minute; the server log has the details"
    if isinstance(e, AuditError) and not operator:  # logged by the caller
        return AUDIT_UNAVAILABLE
    return str(e)


AUDIT_UNAVAILABLE = ("the audit log cannot be written, so the call is refused (nothing is answered unrecorded) — "
                     "try again later or tell the server's operator; the server log has the details")
