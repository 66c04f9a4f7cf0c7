"""A small least-recently-used map with its lock: the one the LoRA adapters, the loaded ControlNets and the
detected ControlNet maps are kept in.

It holds at most `cap` entries, counted (none of its users bounds by bytes). `get` marks an entry most recently
used; `put` stores one as most recently used and evicts the least recently used beyond the cap, skipping the keys
in `keep` (those a request still needs), and calls `on_evict(key, value)` for each entry it evicts. Every method
takes `lock`, a reentrant lock that callers may also hold around several calls (a look-up, a load and a store)
to make them one step. No torch here: it is imported by modules that must load without the model stack.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    def __init__(self, cap: int, on_evict: Callable[[K, V], None] | None = None):
        if not isinstance(cap, int) or cap < 1:
            raise ValueError(f"cap must be an integer >= 1, got {cap!r}")
        self.cap = cap
        self.on_evict = on_evict
        self.lock = threading.RLock()
        self._items: OrderedDict[K, V] = OrderedDict()  # least recently used first

    def get(self, key: K, default: V | None = None) -> V | None:
        """The value for `key`, which becomes the most recently used; `default` when absent."""
        with self.lock:
            if key not in self._items:
                return default
            self._items.move_to_end(key)
            return self._items[key]

    def peek(self, key: K, default: V | None = None) -> V | None:
        """The value for `key` without marking it used."""
        with self.lock:
            return self._items.get(key, default)

    def __getitem__(self, key: K) -> V:
        """As `peek`, but KeyError when absent."""
        with self.lock:
            return self._items[key]

    def put(self, key: K, value: V, keep: Collection[K] = (), evict: bool = True) -> list[tuple[K, V]]:
        """Store `value` as the most recently used; then, unless `evict` is False, evict beyond the cap (see
        `evict`). Returns the evicted entries."""
        with self.lock:
            self._items[key] = value
            self._items.move_to_end(key)
            return self.evict(keep) if evict else []

    def evict(self, keep: Collection[K] = ()) -> list[tuple[K, V]]:
        """Drop the least recently used entries not in `keep` until at most `cap` are left (fewer are dropped when
        `keep` holds more than the cap), calling `on_evict` for each; returns them, least recently used first."""
        evicted = []
        with self.lock:
            for key in list(self._items):
                if len(self._items) <= self.cap:
                    break
                if key in keep:
                    continue
                value = self._items.pop(key)
                evicted.append((key, value))
                if self.on_evict is not None:
                    self.on_evict(key, value)
        return evicted

    def pop(self, key: K, default: V | None = None) -> V | None:
        """Remove `key` (no `on_evict`) and return its value, or `default`."""
        with self.lock:
            return self._items.pop(key, default)

    def clear(self) -> None:
        """Remove everything (no `on_evict`)."""
        with self.lock:
            self._items.clear()

    def keys(self) -> list[K]:
        """The keys, least recently used first (a copy)."""
        with self.lock:
            return list(self._items)

    def __contains__(self, key: object) -> bool:
        with self.lock:
            return key in self._items

    def __len__(self) -> int:
        with self.lock:
            return len(self._items)

    def __iter__(self) -> Iterator[K]:
        return iter(self.keys())
