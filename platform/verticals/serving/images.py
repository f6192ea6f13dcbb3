"""The images of predict calls, decoded within a fixed amount of memory in the web process.

A request's images are checked from their headers (verticals.sdk.image_input) against a limit per
image and a budget per request before any of them is decoded (service.decode_inputs); then each is
decoded here, towards the size the model needs. Decoding a PNG or a WebP needs its whole bitmap
for a moment (4 bytes a pixel, whatever its file size: 160 MB for 40 million pixels), so the
pixels being decoded at once in this process are bounded as well: concurrent calls decode small
images side by side and large ones one after another.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager


class PixelGate:
    """At most `capacity` pixels decoding at once in the process (an image larger than that
    waits until it can decode alone)."""

    def __init__(self, capacity: int):
        self.capacity = max(1, capacity)
        self._free = self.capacity
        self._changed = threading.Condition()

    @contextmanager
    def holding(self, pixels: int):
        needed = min(max(1, pixels), self.capacity)
        with self._changed:
            self._changed.wait_for(lambda: self._free >= needed)
            self._free -= needed
        try:
            yield
        finally:
            with self._changed:
                self._free += needed
                self._changed.notify_all()


_gate: PixelGate | None = None
_gate_lock = threading.Lock()


def gate() -> PixelGate:
    """This process's gate, as large as the largest image a predict call may hold."""
    from django.conf import settings

    global _gate
    with _gate_lock:
        if _gate is None or _gate.capacity != max(1, settings.SERVING_MAX_IMAGE_PIXELS):
            _gate = PixelGate(settings.SERVING_MAX_IMAGE_PIXELS)
        return _gate
