"""Loaded models, shared by every request of a process, bounded by memory (least recently used out).

A model's weight in the cache is the size of its stored artifact (its weights, as loaded).
Two requests for a model that is not loaded yet wait for one load, not two.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Entry:
    key: tuple
    value: Any
    size: int


class ModelCache:
    def __init__(self, max_bytes: int, on_evict: Callable[[Any], None] | None = None):
        self.max_bytes = max_bytes
        self.on_evict = on_evict  # e.g. stop a model's generation engine when the model leaves
        self._entries: OrderedDict[tuple, Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple, threading.Lock] = {}
        self.loads = 0
        self.evictions = 0

    def get(self, key: tuple, size: int, load: Callable[[], Any]) -> Any:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry.value
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:
            with self._lock:  # another request may have loaded it while this one waited
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries.move_to_end(key)
                    return entry.value
            value = load()
            with self._lock:
                self.loads += 1
                self._entries[key] = Entry(key, value, max(0, int(size)))
                self._evict(keep=key)
                self._loading.pop(key, None)
            return value

    def _evict(self, keep: tuple) -> None:
        while self.used_bytes > self.max_bytes and len(self._entries) > 1:
            oldest = next(iter(self._entries))
            if oldest == keep:
                self._entries.move_to_end(oldest)
                continue
            self._release(self._entries.pop(oldest))
            self.evictions += 1

    @property
    def used_bytes(self) -> int:
        return sum(e.size for e in self._entries.values())

    def keys(self) -> list[tuple]:
        with self._lock:
            return list(self._entries)

    def discard(self, key: tuple) -> None:
        with self._lock:
            entry = self._entries.pop(key, None)
        if entry is not None:
            self._release(entry)

    def clear(self) -> None:
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
        for entry in entries:
            self._release(entry)

    def _release(self, entry: Entry) -> None:
        if self.on_evict is not None:
            self.on_evict(entry.value)
