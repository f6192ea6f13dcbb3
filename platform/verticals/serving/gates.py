"""What a predict call may hold in memory, bounded per web process however many calls arrive at once.

Each call is bounded on its own (its body by SERVING_MAX_BODY_BYTES, its images by their pixels,
checked from their headers before any is decoded); these gates bound what concurrent calls hold
together:

- body bytes: a call's body is read and parsed (the bytes, the JSON's strings, the images' bytes:
  about three times its size) only once its length fits beside the bodies of the calls already
  in progress; at most twice SERVING_MAX_BODY_BYTES at once, so one call of the largest size
  never waits for small ones to drain completely;
- decoded pixels: decoding a PNG or a WebP needs its whole bitmap for a moment (4 bytes a pixel,
  whatever its file size: 160 MB for 40 million pixels), so small images decode side by side
  and large ones one after another, at most SERVING_MAX_IMAGE_PIXELS at once.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager


class Gate:
    """At most `capacity` units (bytes, pixels) held at once by the threads that pass it; a
    holding larger than the capacity waits until it can pass alone."""

    def __init__(self, capacity: int):
        self.capacity = max(1, capacity)
        self._free = self.capacity
        self._changed = threading.Condition()

    @contextmanager
    def holding(self, units: int):
        needed = min(max(1, units), self.capacity)
        with self._changed:
            self._changed.wait_for(lambda: self._free >= needed)
            self._free -= needed
        try:
            yield
        finally:
            with self._changed:
                self._free += needed
                self._changed.notify_all()


_gates: dict[str, Gate] = {}
_lock = threading.Lock()


def _gate(name: str, capacity: int) -> Gate:
    with _lock:
        gate = _gates.get(name)
        if gate is None or gate.capacity != max(
            1, capacity
        ):  # a changed setting (tests) makes a new one
            gate = _gates[name] = Gate(capacity)
        return gate


def body_bytes() -> Gate:
    from django.conf import settings

    return _gate("body bytes", 2 * settings.SERVING_MAX_BODY_BYTES)


def decoded_pixels() -> Gate:
    from django.conf import settings

    return _gate("decoded pixels", settings.SERVING_MAX_IMAGE_PIXELS)
