"""The MCP server's worker pool: every tool call and resource read runs on one of a bounded number
of worker threads, admitted fairly by principal, so 32 clients do not become 32 threads fighting
over two cores, a user with one call waits behind at most one call of each other user (and of each
of its own other MCP sessions: turns go round the principals, then round each one's sessions), and past
the queue limit a caller is told "the server is busy — retry in N s" at once.

Calls come in two lanes. *Heavy* ones (full-page OCR, crops and page images, ``similar_to``,
thumbnails, indexing) may take at most ``heavy`` of the workers, so cheap ones (a search, a
record) always find a worker within about one cheap call's time. Every worker shares the one
``Imgrag`` facade and so its loaded models: threads, not processes, and the ONNX Runtime / torch
sessions run with the GIL released.

Admission happens on the event loop (``FairQueue`` from ``indexing/gate.py``); a waiting call
holds no thread. ``workers=0`` turns the pool off (every call goes straight to a thread, as
before; the benchmark's baseline).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from imgrag.indexing.errors import BusyError
from imgrag.indexing.gate import FairQueue, Ticket, principal_key
from imgrag.indexing.stores.base import Principal

T = TypeVar("T")

HEAVY = "heavy"
OCR = "OCR"  # a heavy call that needs the OCR engine, which runs one re-read at a time
CHEAP = ""


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class WorkerPool:
    """``await pool.run(principal, fn, heavy=...)``: ``fn()`` on a worker thread when it is this
    principal's turn. ``workers``: threads running calls at once (0: no pool); ``heavy``: how many
    of them heavy calls may take (default half; always one fewer than ``workers``, and one heavy
    call waiting on the facade's OCR or image gate holds its worker); ``per_principal``: calls one principal may have running or
    waiting (heavy: ``heavy_per_principal``); ``max_waiting``: calls waiting, all principals,
    per lane; ``max_wait``: seconds a call waits for a worker before it is told to retry."""

    def __init__(
        self,
        workers: int,
        *,
        heavy: int | None = None,
        per_principal: int = 64,
        heavy_per_principal: int = 3,
        max_waiting: int = 256,
        heavy_max_waiting: int = 16,
        max_wait: float = 120.0,
        ocr: int = 1,
    ) -> None:
        self.workers = workers
        self.heavy = max(1, min(workers - 1, heavy if heavy is not None else workers // 2)) if workers > 1 else workers
        self.max_wait = max_wait
        self.queue = FairQueue(
            "tool",
            max(1, workers),
            per_principal,
            max_waiting,
            lanes={HEAVY: max(1, self.heavy), OCR: max(1, ocr)},
            lane_per_principal={HEAVY: heavy_per_principal, OCR: heavy_per_principal},
            lane_max_waiting={HEAVY: heavy_max_waiting, OCR: heavy_max_waiting},
            within={OCR: HEAVY},
        )
        self._limiter = anyio.CapacityLimiter(max(1, workers))

    @property
    def enabled(self) -> bool:
        return self.workers > 0

    async def run(
        self,
        principal: Principal,
        fn: Callable[[], T],
        *,
        heavy: bool = False,
        ocr: bool = False,
        on_wait: Callable[[int], Awaitable[None]] | None = None,
        client: object = None,
    ) -> T:
        """``fn()`` on a worker; ``on_wait(calls queued)`` is awaited first when it has to queue.
        ``ocr``: a heavy call that needs the OCR engine; it waits here, holding no worker, while
        another re-read runs (``ocr`` of them at once, the facade's OCR gate). ``client``: the
        principal's MCP session that asks (its calls take turns with the principal's other
        sessions, so a second session of one token is not queued behind the first one's flood);
        None where there is no session (stdio, stateless 2026-07-28 requests): the principal's
        calls go oldest first."""
        if not self.enabled:
            return await anyio.to_thread.run_sync(fn)
        ticket = self.queue.enter(principal_key(principal), OCR if ocr else HEAVY if heavy else CHEAP, client)
        try:
            self._grant()
            if not ticket.granted:
                ticket.wake = anyio.Event()
                if on_wait is not None:
                    await on_wait(self.queue.queued(ticket.lane))
                with anyio.move_on_after(self.max_wait):
                    await ticket.wake.wait()  # type: ignore[attr-defined]
                if not ticket.granted:
                    raise BusyError(
                        f"the server is busy: waited {self.max_wait:.0f} s for a worker", self.queue.retry_after(ticket.lane)
                    )
            return await anyio.to_thread.run_sync(fn, limiter=self._limiter)
        finally:
            self.queue.leave(ticket)
            self._grant()

    def _grant(self) -> None:
        """Start whoever's turn it is and wake them (on the event loop: no lock needed)."""
        for t in self.queue.grant():
            if isinstance(t.wake, anyio.Event):
                t.wake.set()

    def snapshot(self) -> dict[str, int]:
        """Running and waiting calls, for logs and tests."""
        q = self.queue
        return {"running": q.running, "waiting": q.queued(), "heavy_waiting": q.queued(HEAVY) + q.queued(OCR)}


__all__ = ["CHEAP", "HEAVY", "OCR", "Ticket", "WorkerPool", "usable_cores"]
