"""A call whose client has gone costs nothing more.

Three ways a client goes away while its call waits for a worker or runs:

- **its HTTP request ends** (the client closed the connection or the response's event stream):
  ``HangupWatch``, a thin ASGI layer outside the SDK, watches each request's ``receive`` for the
  ``http.disconnect`` message that the transport's own stream listener reads (the handshake-era
  transport stops writing to the stream then, but its handler runs on: mcp 2.3.0 does not cancel
  it; the 2026-07-28 one cancels its handler itself). The request's ``Hangup`` reaches the call's
  handler through a context variable, as the peer address does;
- **``notifications/cancelled``** for the request id (stdio, handshake-era HTTP sessions): the SDK
  cancels the handler's scope itself; ``register_cancel_notifications`` also marks the call, so a
  call already on a worker thread hears of it;
- the server shutting down (the SDK cancels every handler).

Each tool call and resource read gets a ``Stop``: its own cancel scope, fired by the first of these.
A call still queued for a worker leaves the queue at once (``WorkerPool.run``'s wait is
cancelled, its ticket leaves) and never runs. A call already on a worker thread cannot be
interrupted from outside: it stops at its next step boundary where the work has one (a full-page
OCR before reading and before recognising, ``index_images`` between files: ``Stop.check``
raises ``CallCancelled`` in the worker); a search is short and runs to its end, its result dropped.
The audit log records such a call as ``cancelled`` (``error``: ``disconnected`` or ``cancelled``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import anyio
from imgrag.indexing.errors import Stopped

log = logging.getLogger("imgrag.mcp")

DISCONNECTED = "disconnected"  # the client's HTTP request ended before its answer
CANCELLED = "cancelled"  # notifications/cancelled, or the SDK cancelled the handler


class CallCancelled(Stopped):
    """Raised in a worker thread at a step boundary of a call whose client has gone."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the call was stopped: {'its client hung up' if reason == DISCONNECTED else 'its client cancelled it'}", reason)


class Hangup:
    """One HTTP request: whether its client has gone, and what to do when it goes."""

    __slots__ = ("_hooks", "answered", "gone")

    def __init__(self) -> None:
        self.gone = False
        self.answered = False  # the response is complete: a disconnect after it stops nothing
        self._hooks: list[Callable[[], None]] = []

    def on_gone(self, fn: Callable[[], None]) -> None:
        if self.gone:
            fn()
        else:
            self._hooks.append(fn)

    def forget(self, fn: Callable[[], None]) -> None:
        try:
            self._hooks.remove(fn)
        except ValueError:
            pass

    def hang_up(self) -> None:
        if self.gone or self.answered:
            return
        self.gone = True
        hooks, self._hooks = self._hooks, []
        for fn in hooks:
            fn()


_HANGUP: ContextVar[Hangup | None] = ContextVar("imgrag_http_hangup", default=None)


class HangupWatch:
    """ASGI middleware: each HTTP request's ``Hangup``, set when its ``receive`` yields
    ``http.disconnect`` (whoever reads it: the event-stream response's disconnect listener). Costs
    one wrapper call per message; reads nothing itself."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        hangup = Hangup()

        async def watched_receive() -> Any:
            message = await receive()
            if message.get("type") == "http.disconnect":
                hangup.hang_up()
            return message

        async def watched_send(message: Any) -> None:
            await send(message)
            if message.get("type") == "http.response.body" and not message.get("more_body", False):
                hangup.answered = True

        token = _HANGUP.set(hangup)
        try:
            await self.app(scope, watched_receive, watched_send)
        finally:
            _HANGUP.reset(token)


class Stop:
    """One call's way out: its cancel scope, and why it was fired (None while the client is there).
    ``fire`` runs on the event loop; ``check`` in the worker thread."""

    __slots__ = ("_hangup", "_key", "_sends", "reason", "scope")

    def __init__(self) -> None:
        self.reason: str | None = None
        self.scope = anyio.CancelScope()
        self._hangup: Hangup | None = None
        self._key: Any = None
        self._sends: set[anyio.CancelScope] = set()

    def fire(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            self.scope.cancel()
            for send in list(self._sends):
                send.cancel()

    @contextmanager
    def sending(self) -> Iterator[None]:
        """Around a notification the call sends its client (progress, a log line), on the loop:
        cancelled when the client goes. A worker thread waits for its notification to be sent
        (``anyio.from_thread.run``), and on the 2026-07-28 transport a request's stream takes no
        more once its client has gone but is not closed until the handler returns, which waits for
        that worker: without this the worker was held for good (on 9078cc8 the one-worker server
        answered the next search "busy: waited 120 s")."""
        if self.reason is not None:
            raise CallCancelled(self.reason)
        with anyio.CancelScope() as scope:
            self._sends.add(scope)
            try:
                yield
            finally:
                self._sends.discard(scope)

    def check(self) -> None:
        """In the worker, at a step boundary: stop here if the client has gone."""
        if self.reason is not None:
            raise CallCancelled(self.reason)

    def _on_hangup(self) -> None:
        self.fire(DISCONNECTED)


CALL_STOP: ContextVar[Stop | None] = ContextVar("imgrag_call_stop", default=None)


class Calls:
    """The server's calls in flight by (connection, request id), for ``notifications/cancelled``."""

    def __init__(self) -> None:
        self._by_key: dict[Any, Stop] = {}

    @staticmethod
    def _key(session: Any, request_id: Any) -> Any:
        # the SDK makes a ServerSession per request; the connection behind it is the client's
        return (id(getattr(session, "_connection", session)), str(request_id))

    def start(self, context: Any) -> Stop:
        """A ``Stop`` for the call being served in ``context`` (the SDK's tool / resource Context,
        or None), watching its HTTP request and its request id. ``end`` it when the call ends."""
        stop = Stop()
        rc = getattr(context, "_request_context", None)
        if rc is not None and rc.request_id is not None:
            stop._key = self._key(rc.session, rc.request_id)
            self._by_key[stop._key] = stop
        hangup = _HANGUP.get()
        if hangup is not None:
            stop._hangup = hangup
            hangup.on_gone(stop._on_hangup)
        CALL_STOP.set(stop)
        return stop

    def end(self, stop: Stop) -> None:
        if stop._key is not None and self._by_key.get(stop._key) is stop:
            del self._by_key[stop._key]
        if stop._hangup is not None:
            stop._hangup.forget(stop._on_hangup)

    def cancelled(self, session: Any, request_id: Any) -> bool:
        """``notifications/cancelled`` for ``request_id`` on ``session``'s connection."""
        stop = self._by_key.get(self._key(session, request_id)) if request_id is not None else None
        if stop is None:
            return False
        stop.fire(CANCELLED)
        return True

    def __len__(self) -> int:
        return len(self._by_key)


def register_cancel_notifications(lowlevel: Any, calls: Calls) -> None:
    """Mark a call the client cancelled, so a worker running it stops at its next step (the
    SDK has cancelled the handler's scope already; that reaches a call only while it awaits)."""
    from mcp_types import CancelledNotificationParams

    async def on_cancelled(ctx: Any, params: CancelledNotificationParams) -> None:
        if calls.cancelled(ctx.session, params.request_id):
            log.debug("request %s cancelled by its client", params.request_id)

    lowlevel.add_notification_handler("notifications/cancelled", CancelledNotificationParams, on_cancelled)


__all__ = [
    "CALL_STOP",
    "CANCELLED",
    "DISCONNECTED",
    "CallCancelled",
    "Calls",
    "Hangup",
    "HangupWatch",
    "Stop",
    "register_cancel_notifications",
]
