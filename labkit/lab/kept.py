"""What the server extension keeps in memory: a small thread-safe least-recently-used store.

Finished runs never change and a recording's header changes only with its file, so figures, scores and
headers are read once and kept, up to a bound, by the handlers' worker threads at once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Generic, Hashable, TypeVar

V = TypeVar("V")


class Kept(Generic[V]):
    """Up to ``size`` values by key; the least recently used is dropped first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def put(self, key: Hashable, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def get_or_make(self, key: Hashable, make: Callable[[], V]) -> V:
        """The kept value, else ``make()`` kept (made outside the lock: two threads may both make it once)."""
        found = self.get(key)
        if found is None:
            found = make()
            self.put(key, found)
        return found
