"""The MCP server's worker pool (mcp_server/pool.py): bounded workers, a lane heavy calls cannot
fill, round-robin by principal, and "busy — retry" past the limits. Real threads and a real event
loop; the calls are events the test releases, so the order is decided by the pool, not by timing."""

from __future__ import annotations

import threading

import anyio
import pytest

from imgrag.indexing.errors import BusyError
from imgrag.indexing.stores.base import Principal
from imgrag.mcp_server.pool import WorkerPool

ALICE, BOB, CAROL = Principal(name="alice"), Principal(name="bob"), Principal(name="carol")


class Calls:
    """Blocking calls that record when they start and finish when the test says so."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.gates: dict[str, threading.Event] = {}
        self.lock = threading.Lock()

    def fn(self, tag: str):
        gate = self.gates.setdefault(tag, threading.Event())

        def body() -> str:
            with self.lock:
                self.started.append(tag)
            assert gate.wait(60), f"{tag} was never released"  # a hang guard: the test releases every call
            return tag

        return body

    def release(self, tag: str) -> None:
        self.gates.setdefault(tag, threading.Event()).set()


async def until(cond, what: str) -> None:
    for _ in range(1000):
        if cond():
            return
        await anyio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_heavy_calls_leave_a_worker_for_cheap_ones() -> None:
    pool, calls = WorkerPool(2), Calls()
    assert pool.heavy == 1

    async def main() -> list[str]:
        results: list[str] = []
        async with anyio.create_task_group() as tg:

            async def go(p: Principal, tag: str, heavy: bool) -> None:
                results.append(await pool.run(p, calls.fn(tag), heavy=heavy))

            tg.start_soon(go, ALICE, "ocr1", True)
            await until(lambda: calls.started == ["ocr1"], "the first heavy call")
            tg.start_soon(go, BOB, "ocr2", True)  # the heavy lane is full: waits
            await until(lambda: pool.snapshot()["heavy_waiting"] == 1, "the second heavy call to queue")
            tg.start_soon(go, CAROL, "search", False)  # the second worker is free for it
            await until(lambda: "search" in calls.started, "the cheap call")
            assert calls.started == ["ocr1", "search"]
            calls.release("search")
            await until(lambda: results == ["search"], "the cheap call to finish")
            assert "ocr2" not in calls.started  # still behind ocr1, though a worker is idle
            calls.release("ocr1")
            await until(lambda: "ocr2" in calls.started, "the second heavy call")
            calls.release("ocr2")
        return results

    assert anyio.run(main) == ["search", "ocr1", "ocr2"]


def test_workers_are_served_round_robin_by_principal() -> None:
    pool, calls = WorkerPool(1), Calls()

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run, ALICE, calls.fn("a1"))
            await until(lambda: calls.started == ["a1"], "a1")
            for tag in ("a2", "a3", "a4"):
                tg.start_soon(pool.run, ALICE, calls.fn(tag))
                await until(lambda: pool.snapshot()["waiting"] == int(tag[1]) - 1, tag)
            tg.start_soon(pool.run, BOB, calls.fn("b1"))
            await until(lambda: pool.snapshot()["waiting"] == 4, "b1 to queue")
            for tag in ("a1", "b1", "a2", "a3", "a4"):
                await until(lambda: calls.started[-1] == tag, tag)
                calls.release(tag)

    anyio.run(main)
    assert calls.started == ["a1", "b1", "a2", "a3", "a4"]  # bob does not wait behind alice's backlog



def test_one_principals_sessions_take_turns_and_sessionless_calls_go_oldest_first() -> None:
    pool, calls = WorkerPool(1), Calls()

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: pool.run(ALICE, calls.fn("s1a"), client="s1"))
            await until(lambda: calls.started == ["s1a"], "s1a")
            for n, (tag, client) in enumerate((("s1b", "s1"), ("s1c", "s1"), ("n1", None), ("n2", None), ("s2a", "s2")), 1):
                tg.start_soon(lambda t=tag, c=client: pool.run(ALICE, calls.fn(t), client=c))
                await until(lambda n=n: pool.snapshot()["waiting"] == n, tag)
            for tag in ("s1a", "n1", "s2a", "s1b", "n2", "s1c"):
                await until(lambda t=tag: calls.started[-1] == t, tag)
                calls.release(tag)

    anyio.run(main)
    # served longest ago first: the sessionless calls and session s2 (never served) before s1's
    # backlog; within one client, oldest first
    assert calls.started == ["s1a", "n1", "s2a", "s1b", "n2", "s1c"]


def test_past_a_share_or_the_queue_the_caller_is_told_to_retry() -> None:
    pool, calls = WorkerPool(2, heavy_per_principal=1, max_waiting=1), Calls()

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: pool.run(ALICE, calls.fn("ocr"), heavy=True))
            await until(lambda: calls.started == ["ocr"], "the heavy call")
            with pytest.raises(BusyError, match="you already have 1 heavy tool calls") as ei:
                await pool.run(ALICE, calls.fn("ocr again"), heavy=True)
            assert ei.value.hint.startswith("retry in ")
            tg.start_soon(pool.run, BOB, calls.fn("s1"))
            await until(lambda: "s1" in calls.started, "s1")  # the second worker
            tg.start_soon(pool.run, BOB, calls.fn("s2"))
            await until(lambda: pool.snapshot()["waiting"] == 1, "s2 to queue")
            with pytest.raises(BusyError, match="the server is busy: 1 tool calls are waiting"):
                await pool.run(CAROL, calls.fn("s3"))
            for tag in ("ocr", "s1", "s2"):
                calls.release(tag)
        assert pool.snapshot() == {"running": 0, "waiting": 0, "heavy_waiting": 0}
        assert await pool.run(CAROL, lambda: "after") == "after"  # every place was given back

    anyio.run(main)


def test_a_call_waits_at_most_max_wait_and_a_cancelled_waiter_gives_its_place_back() -> None:
    pool, calls = WorkerPool(1, max_wait=0.3), Calls()

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run, ALICE, calls.fn("long"))
            await until(lambda: calls.started == ["long"], "the long call")
            with pytest.raises(BusyError, match="waited 0 s for a worker"):
                await pool.run(BOB, calls.fn("never"))
            with anyio.move_on_after(0.1):
                await pool.run(CAROL, calls.fn("cancelled"))
            assert pool.snapshot()["waiting"] == 0
            calls.release("long")
        assert calls.started == ["long"]

    anyio.run(main)


def test_workers_zero_is_no_pool() -> None:
    pool = WorkerPool(0)

    async def main() -> list[str]:
        async with anyio.create_task_group() as tg:
            out: list[str] = []
            barrier = threading.Barrier(3, timeout=10)  # three calls at once: none of them queued

            async def go(i: int) -> None:
                out.append(await pool.run(ALICE, lambda: f"{barrier.wait()}"))

            for i in range(3):
                tg.start_soon(go, i)
        return out

    assert sorted(anyio.run(main)) == ["0", "1", "2"]


def test_an_ocr_call_waits_for_the_engine_without_holding_a_worker() -> None:
    pool, calls = WorkerPool(4), Calls()
    assert pool.heavy == 2

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: pool.run(ALICE, calls.fn("ocr1"), heavy=True, ocr=True))
            await until(lambda: calls.started == ["ocr1"], "the first OCR call")
            tg.start_soon(lambda: pool.run(BOB, calls.fn("ocr2"), heavy=True, ocr=True))
            await until(lambda: pool.snapshot()["heavy_waiting"] == 1, "the second OCR call to queue")
            tg.start_soon(lambda: pool.run(BOB, calls.fn("crop"), heavy=True))  # the heavy lane's second place
            for tag in ("s1", "s2"):
                tg.start_soon(pool.run, CAROL, calls.fn(tag))
            await until(lambda: len(calls.started) == 4, "the crop and two searches")
            assert set(calls.started) == {"ocr1", "crop", "s1", "s2"}
            for tag in ("s1", "s2", "crop", "ocr1"):
                calls.release(tag)
            await until(lambda: "ocr2" in calls.started, "the second OCR call")
            calls.release("ocr2")

    anyio.run(main)
