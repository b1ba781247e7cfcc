"""Fair admission for calls that compete for a few places (OCR re-reads, crops, page images, the MCP
server's workers): a bounded number run at once, the others wait their turn round-robin by
principal, and a caller past its share, or past the queue limit, is refused with a ``BusyError``
("retry in N s") instead of queueing without bound.

A plain lock (which the OCR engine has) serves callers in whatever order the threads win it, so
one client firing full-page re-reads in a loop starves everyone else. Here each principal holds at
most ``per_principal`` places, and a freed slot goes to the waiting principal served longest ago; within
a principal, to the call of its *client* (one MCP session) served longest ago, so one user's second
agent does not wait behind the hundred calls the first one queued.

``FairQueue`` is the bookkeeping (who runs, who waits, whose turn), with no locking and no waiting
of its own; ``FairGate`` wraps it for threads (``with gate.slot(principal)``), and the MCP server's
worker pool (``mcp_server/pool.py``) for the event loop. A queue may split its slots into *lanes*
with their own caps — the server's heavy calls may take only some of the workers, so a cheap call
never waits behind a wall of full-page OCR.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .errors import BusyError
from .stores.base import Principal


def principal_key(principal: Principal) -> str:
    """One fairness bucket per principal: its name, else its groups, else the operator."""
    if principal.name:
        return "u:" + principal.name
    if principal.groups:
        return "g:" + ",".join(sorted(principal.groups))
    return "operator" if principal.all_access else "anonymous"


@dataclass(eq=False)
class Ticket:
    """One call's place: waiting until ``granted``, then running until it leaves."""

    who: str
    lane: str
    client: object = None  # the principal's client (an MCP session id) that made the call, for turns within it
    granted: bool = False
    started_at: float = 0.0
    wake: object | None = field(default=None, repr=False)  # the waiter's event, for queues that need one


class FairQueue:
    """Who runs, who waits and whose turn it is. Not thread-safe: the owner serialises calls (a
    lock, or the event loop). ``lanes`` caps how many of the ``slots`` each lane may run at once
    (a lane not named may use them all); ``per_principal`` and ``max_waiting`` are per lane too.
    ``within`` nests a lane in another: it runs under both caps (OCR re-reads are heavy calls of
    which only one may run)."""

    def __init__(
        self,
        what: str,
        slots: int,
        per_principal: int,
        max_waiting: int,
        *,
        lanes: dict[str, int] | None = None,
        lane_per_principal: dict[str, int] | None = None,
        lane_max_waiting: dict[str, int] | None = None,
        within: dict[str, str] | None = None,
    ) -> None:
        self.what = what
        self.slots = slots
        self.per_principal = per_principal
        self.max_waiting = max_waiting
        self.lanes = dict(lanes or {})
        self.lane_per_principal = dict(lane_per_principal or {})
        self.lane_max_waiting = dict(lane_max_waiting or {})
        self.within = dict(within or {})
        self.running = 0
        self._running: Counter[str] = Counter()  # per lane
        self._waiting: dict[str, deque[Ticket]] = {}  # per principal, oldest first
        self._held: Counter[tuple[str, str]] = Counter()  # (principal, lane): running + waiting
        self._last_served: dict[str, int] = {}
        self._client_served: dict[str, dict[object, int]] = {}  # per principal: its clients' last turns
        self._turn = 0
        self._seconds: dict[str, float] = {}  # moving average of one call per lane, for the retry estimate

    def queued(self, lane: str | None = None) -> int:
        return sum(1 for q in self._waiting.values() for t in q if lane is None or t.lane == lane)

    def retry_after(self, lane: str = "") -> float:
        cap = min(self.slots, self.lanes.get(lane, self.slots))
        return self._seconds.get(lane, 1.0) * (self.queued(lane) + self._running[lane] + 1) / max(1, cap)

    def enter(self, who: str, lane: str = "", client: object = None) -> Ticket:
        """A waiting ticket for ``who`` (``client``: which of its clients asks, for turns within
        ``who``); ``BusyError`` when ``who`` already holds its share of this lane or the lane's
        queue is full (and nothing is free)."""
        label = f"{lane} {self.what}".strip()
        share = self.lane_per_principal.get(lane, self.per_principal)
        if self._held[(who, lane)] >= share:
            raise BusyError(f"you already have {self._held[(who, lane)]} {label} calls running or waiting", self.retry_after(lane))
        if self.queued(lane) >= self.lane_max_waiting.get(lane, self.max_waiting) and not self._has_room(lane):
            raise BusyError(f"the server is busy: {self.queued(lane)} {label} calls are waiting", self.retry_after(lane))
        self._held[(who, lane)] += 1
        ticket = Ticket(who, lane, client)
        self._waiting.setdefault(who, deque()).append(ticket)
        return ticket

    def _has_room(self, lane: str) -> bool:
        outer = self.within.get(lane)
        return (
            self.running < self.slots
            and self._running[lane] < self.lanes.get(lane, self.slots)
            and (outer is None or self._running[outer] < self.lanes.get(outer, self.slots))
        )

    def _count(self, lane: str, delta: int) -> None:
        self._running[lane] += delta
        if lane in self.within:
            self._running[self.within[lane]] += delta

    def grant(self) -> list[Ticket]:
        """Start every waiting ticket that may run now, in fair order, and return them: per free
        slot, the principal served longest ago, and of its tickets whose lane has room the oldest
        of its client served longest ago."""
        granted: list[Ticket] = []
        while self.running < self.slots:
            best: Ticket | None = None
            for who, q in self._waiting.items():
                served = self._client_served.get(who, {})
                # min keeps the first of equals: the oldest ticket of the client served longest ago
                head = min((t for t in q if self._has_room(t.lane)), key=lambda t: served.get(t.client, -1), default=None)
                if head is not None and (best is None or self._last_served.get(who, -1) < self._last_served.get(best.who, -1)):
                    best = head
            if best is None:
                break
            self._waiting[best.who].remove(best)
            best.granted, best.started_at = True, time.monotonic()
            self.running += 1
            self._count(best.lane, 1)
            self._last_served[best.who] = self._turn
            self._client_served.setdefault(best.who, {})[best.client] = self._turn
            self._turn += 1
            granted.append(best)
        return granted

    def leave(self, ticket: Ticket) -> None:
        """Give back ``ticket``'s place, running or still waiting (a caller that gave up)."""
        if ticket.granted:
            self.running -= 1
            self._count(ticket.lane, -1)
            took = time.monotonic() - ticket.started_at
            self._seconds[ticket.lane] = 0.8 * self._seconds.get(ticket.lane, took) + 0.2 * took
        else:
            q = self._waiting.get(ticket.who)
            if q is not None and ticket in q:
                q.remove(ticket)
        key = (ticket.who, ticket.lane)
        self._held[key] -= 1
        if self._held[key] <= 0:
            del self._held[key]
        if not any(w == ticket.who for w, _ in self._held):
            self._waiting.pop(ticket.who, None)
            self._client_served.pop(ticket.who, None)  # no call of it left: forget its clients (connections come and go)


class FairGate:
    """``with gate.slot(principal): ...`` runs the body when a slot is free and it is this principal's turn."""

    def __init__(self, what: str, slots: int, per_principal: int, max_waiting: int, max_wait: float) -> None:
        self.what = what
        self.max_wait = max_wait
        self.queue = FairQueue(what, slots, per_principal, max_waiting)
        self._cv = threading.Condition()

    @property
    def slots(self) -> int:
        return self.queue.slots

    @contextmanager
    def slot(self, principal: Principal) -> Iterator[None]:
        with self._cv:
            ticket = self.queue.enter(principal_key(principal))
            if self.queue.grant():
                self._cv.notify_all()
            deadline = time.monotonic() + self.max_wait
            try:
                while not ticket.granted:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise BusyError(
                            f"the server is busy: waited {self.max_wait:.0f} s for a {self.what} slot", self.queue.retry_after()
                        )
                    self._cv.wait(left)
            except BaseException:
                self._leave(ticket)
                raise
        try:
            yield
        finally:
            with self._cv:
                self._leave(ticket)

    def _leave(self, ticket: Ticket) -> None:
        """Give back ``ticket``'s place (under the lock), start whoever is next and wake the waiters."""
        self.queue.leave(ticket)
        self.queue.grant()
        self._cv.notify_all()
