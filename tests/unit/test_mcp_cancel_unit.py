"""A call whose client has gone (mcp_server/cancel.py): the HTTP layer that notices the disconnect,
the per-call Stop, cancels by request id, and the step boundaries where a running call stops.
Real event loop and threads; what happens is decided by events the test sets, never by timing."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from imgrag.indexing.stores.base import Principal
from imgrag.mcp_server.cancel import (
    CALL_STOP,
    CANCELLED,
    DISCONNECTED,
    CallCancelled,
    Calls,
    Hangup,
    HangupWatch,
    Stop,
)
from imgrag.mcp_server.notify import CallNotifier, ClientLevels
from imgrag.mcp_server.pool import WorkerPool

ALICE = Principal(name="alice")


def _context(connection: object, request_id: Any) -> Any:
    """What the SDK hands a tool: its request context, the connection behind the session."""
    return SimpleNamespace(_request_context=SimpleNamespace(request_id=request_id, session=SimpleNamespace(_connection=connection)))


def test_a_disconnect_read_by_anyone_hangs_up_the_request_but_not_after_its_answer() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls = Calls()
        stop = calls.start(None)  # inside the request: it watches this request's Hangup
        stop_after = None
        if scope["path"] == "/answered":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            stop_after = stop
        await receive()  # the transport's own disconnect listener
        seen.append(f"{scope['path']}: {stop.reason}")
        assert stop_after is None or stop_after.reason is None

    async def main() -> None:
        watch = HangupWatch(app)

        async def receive() -> dict[str, Any]:
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            pass

        await watch({"type": "http", "path": "/gone"}, receive, send)
        await watch({"type": "http", "path": "/answered"}, receive, send)

    anyio.run(main)
    assert seen == [f"/gone: {DISCONNECTED}", "/answered: None"]


def test_a_hook_added_after_the_hangup_fires_at_once_and_forgotten_ones_never() -> None:
    h, fired = Hangup(), []
    h.on_gone(lambda: fired.append("a"))
    gone_b = lambda: fired.append("b")
    h.on_gone(gone_b)
    h.forget(gone_b)
    h.hang_up()
    h.hang_up()
    h.on_gone(lambda: fired.append("c"))
    assert fired == ["a", "c"]


def test_a_cancel_names_a_request_of_its_own_connection_only() -> None:
    async def main() -> None:
        calls = Calls()
        mine, other = object(), object()
        stop = calls.start(_context(mine, 7))
        assert not calls.cancelled(SimpleNamespace(_connection=other), 7)  # another client's request 7
        assert stop.reason is None
        assert calls.cancelled(SimpleNamespace(_connection=mine), "7")  # ids compare as the SDK coerces them
        assert stop.reason == CANCELLED and stop.scope.cancel_called
        calls.end(stop)
        assert len(calls) == 0 and not calls.cancelled(SimpleNamespace(_connection=mine), 7)

    anyio.run(main)


def test_a_queued_call_whose_client_went_leaves_the_queue_and_never_runs() -> None:
    pool = WorkerPool(1)
    ran: list[str] = []
    release, running = threading.Event(), threading.Event()

    def first() -> str:
        ran.append("first")
        running.set()
        assert release.wait(10)
        return "first"

    async def main() -> tuple[bool, dict[str, int]]:
        stop = Stop()
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run, ALICE, first)
            while not running.is_set():
                await anyio.sleep(0.01)

            async def queued() -> None:
                with stop.scope:
                    await pool.run(ALICE, lambda: ran.append("queued"))

            tg.start_soon(queued)
            while pool.snapshot()["waiting"] != 1:
                await anyio.sleep(0.01)
            stop.fire(DISCONNECTED)
            while pool.snapshot()["waiting"] != 0:
                await anyio.sleep(0.01)
            waiting_after = pool.snapshot()
            release.set()
        return stop.scope.cancelled_caught, waiting_after

    caught, after = anyio.run(main)
    assert caught and after == {"running": 1, "waiting": 0, "heavy_waiting": 0}
    assert ran == ["first"]
    assert pool.snapshot() == {"running": 0, "waiting": 0, "heavy_waiting": 0}


def test_a_running_call_stops_at_its_next_step_in_the_worker() -> None:
    """``CallNotifier.step`` (a full-page OCR's steps) and the index run's per-file progress are the
    step boundaries: the worker raises ``CallCancelled`` there once the call's Stop has fired."""
    from imgrag.mcp_server.server import index_progress

    fired, resume = threading.Event(), threading.Event()
    done: list[str] = []

    async def main() -> None:
        stop = Stop()
        CALL_STOP.set(stop)  # as call_tool does; the worker thread sees it through the copied context
        note = CallNotifier(None, ClientLevels(), "index_images")
        steps = index_progress(SimpleNamespace(display_path=str), ALICE, note)  # type: ignore[arg-type]

        def work() -> None:  # on a worker thread: two files, the client goes after the first
            note.step("reading the page", 3)
            steps("start", {"files": 2})
            steps("file", {"path": "/a.png"})
            done.append("/a.png")
            fired.wait(10)
            try:
                steps("file", {"path": "/b.png"})
                done.append("/b.png")
            finally:
                steps("done", {})  # reporting the end stops nothing
            resume.set()

        async with anyio.create_task_group() as tg:

            async def run() -> None:
                with pytest.raises(CallCancelled, match="its client cancelled it"):
                    await anyio.to_thread.run_sync(work)

            tg.start_soon(run)
            while not done:
                await anyio.sleep(0.01)
            stop.fire(CANCELLED)
            fired.set()
        with pytest.raises(CallCancelled):
            note.step("recognising text", 3)

    anyio.run(main)
    assert done == ["/a.png"] and not resume.is_set()


def test_a_worker_s_notification_to_a_client_that_went_does_not_hold_the_worker() -> None:
    """A worker thread waits for its progress notification to be sent; on the 2026-07-28 transport
    the stream of a client that went takes nothing more and stays open until the handler returns.
    The send is cancelled when the client goes, and none is started after."""
    blocked, sent = threading.Event(), []

    class Stuck:  # the SDK context whose stream no one reads any more
        _request_context = SimpleNamespace(protocol_version="2025-06-18", session=SimpleNamespace())

        async def report_progress(self, progress: float, total: float | None, message: str | None) -> None:
            sent.append(message)
            blocked.set()
            await anyio.sleep_forever()

    async def main() -> bool:
        stop = Stop()
        CALL_STOP.set(stop)
        note = CallNotifier(Stuck(), ClientLevels(), "ocr_region")
        with anyio.fail_after(60):  # turns the deadlock (without Stop.sending) into a failure; not a timing
            async with anyio.create_task_group() as tg:

                async def worker() -> None:
                    await anyio.to_thread.run_sync(note.step, "recognising text", 3, abandon_on_cancel=True)

                tg.start_soon(worker)
                await anyio.to_thread.run_sync(blocked.wait, 10)
                stop.fire(DISCONNECTED)  # the worker's step returns: its send was cancelled
        await note.aprogress(2, 3, "after")  # not even started
        return stop.scope.cancel_called

    assert anyio.run(main)
    assert sent == ["recognising text"]


def test_a_stopped_write_is_recorded_cancelled_not_internal() -> None:
    """An index run stopped between files by its client going: its write record says so."""
    from imgrag.indexing.audit import error_kind

    assert error_kind(CallCancelled(DISCONNECTED)) == ("cancelled", "disconnected")
    assert error_kind(CallCancelled(CANCELLED)) == ("cancelled", "cancelled")
