"""Fair admission for heavy calls (OCR re-reads, crops, page images): a bounded number run at once,
the others wait their turn round-robin by principal, and a caller past its share is refused with
a ``BusyError`` ("retry in N s") instead of queueing without bound.

A plain lock (which the OCR engine has) serves callers in whatever order the threads win it, so
one client firing full-page re-reads in a loop starves everyone else. Here each principal holds at
most ``per_principal`` places, and a freed slot goes to the waiting principal served longest ago.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import BusyError
from .stores.base import Principal


def principal_key(principal: Principal) -> str:
    """One fairness bucket per principal: its name, else its groups, else the operator."""
    if principal.name:
        return "u:" + principal.name
    if principal.groups:
        return "g:" + ",".join(sorted(principal.groups))
    return "operator" if principal.all_access else "anonymous"


class FairGate:
    """``with gate.slot(principal): ...`` runs the body when a slot is free and it is this principal's turn."""

    def __init__(self, what: str, slots: int, per_principal: int, max_waiting: int, max_wait: float) -> None:
        self.what = what
        self.slots = slots
        self.per_principal = per_principal
        self.max_waiting = max_waiting
        self.max_wait = max_wait
        self._cv = threading.Condition()
        self._running = 0
        self._waiting: dict[str, deque[object]] = {}
        self._held: Counter[str] = Counter()  # running + waiting, per principal
        self._last_served: dict[str, int] = {}
        self._turn = 0
        self._seconds = 1.0  # moving average of one call, for the retry estimate

    def _queued(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    def _retry_after(self) -> float:
        return self._seconds * (self._queued() + self._running + 1) / self.slots

    def _next(self) -> object | None:
        """The oldest ticket of the waiting principal served longest ago."""
        ready = [who for who, q in self._waiting.items() if q]
        if not ready:
            return None
        who = min(ready, key=lambda w: self._last_served.get(w, -1))
        return self._waiting[who][0]

    @contextmanager
    def slot(self, principal: Principal) -> Iterator[None]:
        who = principal_key(principal)
        ticket = object()
        with self._cv:
            if self._held[who] >= self.per_principal:
                raise BusyError(
                    f"you already have {self._held[who]} {self.what} calls running or waiting", self._retry_after()
                )
            if self._running >= self.slots and self._queued() >= self.max_waiting:
                raise BusyError(f"the server is busy: {self._queued()} {self.what} calls are waiting", self._retry_after())
            self._held[who] += 1
            self._waiting.setdefault(who, deque()).append(ticket)
            deadline = time.monotonic() + self.max_wait
            try:
                while not (self._running < self.slots and self._next() is ticket):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise BusyError(f"the server is busy: waited {self.max_wait:.0f} s for a {self.what} slot", self._retry_after())
                    self._cv.wait(left)
            except BaseException:
                self._waiting[who].remove(ticket)
                self._release(who)
                raise
            self._waiting[who].popleft()
            self._running += 1
            self._last_served[who] = self._turn
            self._turn += 1
        t0 = time.monotonic()
        try:
            yield
        finally:
            with self._cv:
                self._running -= 1
                self._seconds = 0.8 * self._seconds + 0.2 * (time.monotonic() - t0)
                self._release(who)

    def _release(self, who: str) -> None:
        """Give back one place of ``who`` (under the lock) and wake the waiters to re-check their turn."""
        self._held[who] -= 1
        if self._held[who] <= 0:
            del self._held[who]
            self._waiting.pop(who, None)
        self._cv.notify_all()
