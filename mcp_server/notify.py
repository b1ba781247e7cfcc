"""What one call may tell its own client while it runs: ``notifications/progress`` against the
request's progress token, and ``notifications/message`` log messages at the level the client chose.

Only the caller's own call is ever reported — its place in the queue, its steps, its outcome, in
words built from what the caller sent and may see (paths as ``display_path`` shows them). The
server's Python log, which holds every principal's calls, is never forwarded.

Log levels: on a handshake-era connection (protocol before 2026-07-28, e.g. the 1.x SDKs) the
client sets its level with ``logging/setLevel`` and that level holds for the connection (default
``warning``); on a 2026-07-28 connection the SDK delivers only what each request opted in to in its
``_meta`` and ``logging/setLevel`` no longer exists. Progress is sent only when the request carries
a progress token (the SDK makes it a no-op otherwise).

A ``CallNotifier`` is created on the event loop; a worker thread reports through it with the plain
methods, which hop back to the loop (``anyio.from_thread``). A client that went away costs nothing:
a failed send is dropped.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
import weakref
from contextvars import ContextVar
from typing import Any, Literal

import anyio
import anyio.from_thread

from .cancel import CALL_STOP

log = logging.getLogger("imgrag.mcp")

Level = Literal["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]
LEVELS: tuple[Level, ...] = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
DEFAULT_LEVEL: Level = "warning"

# The SDK Context of the tool call or resource read being served (set by ImgragMCP around each one).
CALL_CONTEXT: ContextVar[Any] = ContextVar("imgrag_call_context", default=None)


class ClientLevels:
    """``logging/setLevel`` per connection: the level each client asked for."""

    def __init__(self) -> None:
        self._levels: weakref.WeakKeyDictionary[Any, Level] = weakref.WeakKeyDictionary()

    @staticmethod
    def _key(session: Any) -> Any:
        # the SDK's ServerSession is made per request; the connection object behind it lasts as
        # long as the client's connection (a private attribute: fall back to the session itself)
        return getattr(session, "_connection", session)

    def set(self, session: Any, level: Level) -> None:
        self._levels[self._key(session)] = level

    def get(self, session: Any) -> Level:
        try:
            return self._levels.get(self._key(session), DEFAULT_LEVEL)
        except TypeError:  # not weak-referenceable
            return DEFAULT_LEVEL


class CallNotifier:
    """Progress and log messages of one call, to the client that made it."""

    def __init__(self, ctx: Any, levels: ClientLevels, what: str) -> None:
        self.ctx = ctx
        self.levels = levels
        self.what = what
        self._steps = 0
        self._stop = CALL_STOP.get()  # the call's Stop (cancel.py): its client hanging up stops it at a step

    @classmethod
    def current(cls, levels: ClientLevels, what: str) -> CallNotifier:
        return cls(CALL_CONTEXT.get(), levels, what)

    @property
    def client(self) -> str | None:
        """The MCP session id this call came in (streamable HTTP after a handshake), for turns
        between one principal's sessions; None on stdio, for a stateless 2026-07-28 request (the
        SDK's connection object is made per request there) and outside a request."""
        rc = getattr(self.ctx, "_request_context", None)
        connection = getattr(getattr(rc, "session", None), "_connection", None)
        return getattr(connection, "session_id", None)

    def _wants(self, level: Level) -> bool:
        rc = getattr(self.ctx, "_request_context", None)
        if rc is None:
            return False
        from mcp_types.version import MODERN_PROTOCOL_VERSIONS

        if getattr(rc, "protocol_version", None) in MODERN_PROTOCOL_VERSIONS:
            return True  # the SDK filters by the request's own opt-in
        return LEVELS.index(level) >= LEVELS.index(self.levels.get(rc.session))

    async def alog(self, level: Level, message: str) -> None:
        if not self._wants(level):
            return
        try:
            with self._sending(), warnings.catch_warnings():  # the SDK marks logging deprecated as of 2026-07-28; clients still use it
                warnings.simplefilter("ignore")
                await self.ctx.log(level, message, logger_name=f"imgrag.{self.what}")
        except Exception as e:  # noqa: BLE001 - a client that went away must not fail the call
            log.debug("log message to the client dropped: %s", e)

    async def aprogress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        if getattr(self.ctx, "_request_context", None) is None:
            return
        try:
            with self._sending():
                await self.ctx.report_progress(progress, total, message)
        except Exception as e:  # noqa: BLE001
            log.debug("progress notification dropped: %s", e)

    def _sending(self) -> Any:
        """Its client going cancels the send (and none starts after): ``Stop.sending``."""
        return self._stop.sending() if self._stop is not None else contextlib.nullcontext()

    async def queued(self, waiting: int) -> None:
        """The call has to wait for a worker: say so (``waiting`` calls of its kind queued, its own included)."""
        msg = f"waiting for a worker: {waiting} call(s) of this kind queued"
        await self.aprogress(0, None, msg)
        await self.alog("info", f"{self.what}: {msg}")

    # -- from a worker thread ------------------------------------------------------------------
    def check(self) -> None:
        """A step boundary: raises ``CallCancelled`` here if the call's client has gone."""
        if self._stop is not None:
            self._stop.check()

    def step(self, message: str, total: int | None = None) -> None:
        """One more step of the call begins (``total``: how many there are, when known); stops the
        call here if its client has gone."""
        self.check()
        self._steps += 1
        self.progress(self._steps, total, message)
        self.log("debug", f"{self.what}: {message}")

    def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        if getattr(self.ctx, "_request_context", None) is not None:
            _on_loop(self.aprogress, progress, total, message)

    def log(self, level: Level, message: str) -> None:
        if self._wants(level):
            _on_loop(self.alog, level, message)


def _on_loop(fn: Any, *args: Any) -> None:
    """Run ``fn(*args)`` on the event loop from a worker thread (or right here, on the loop)."""
    try:
        anyio.from_thread.run(fn, *args)
    except RuntimeError:  # not in a worker thread: nothing to hop to
        log.debug("notification outside a worker thread dropped")
