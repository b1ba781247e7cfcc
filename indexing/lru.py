"""A small thread-safe least-recently-used map, shared by the caches of the read path (query
embeddings and results in :mod:`.search`, parsed records in the embedded store)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

V = TypeVar("V")


class LRU:
    """At most ``size`` entries (``size <= 0``: keeps nothing). ``get`` runs ``make`` outside the
    lock, so two threads that miss the same key at once both make it (the same value)."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self.data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def peek(self, key: Hashable) -> Any | None:
        with self._lock:
            if key not in self.data:
                return None
            self.data.move_to_end(key)
            return self.data[key]

    def put(self, key: Hashable, value: Any) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self.data[key] = value
            self.data.move_to_end(key)
            while len(self.data) > self.size:
                self.data.popitem(last=False)

    def get(self, key: Hashable, make: Callable[[], V]) -> V:
        value = self.peek(key)
        if value is None:
            value = make()
            self.put(key, value)
        return value
