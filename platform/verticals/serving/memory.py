"""Memory handed back to the system after large work, in the web process and its inference process.

glibc's malloc keeps what a process frees, for reuse, and two of its habits kept a large predict
call's memory resident long after the answer (measured on the server as compose runs it, see the
README's Benchmarks):

- The dynamic mmap threshold. A block of at least M_MMAP_THRESHOLD (128 KiB at start) is mapped
  on its own and unmapped when freed; but each time such a block is freed, glibc raises the
  threshold to its size (up to 32 MiB), so from then on a request's big buffers (bodies, base64
  strings, decoded image strips) come from the heaps instead, and stay there when freed. Setting
  the threshold with mallopt() turns that adjustment off: the web process does so at start
  (`fix_mmap_threshold`). Not the inference process nor the workers: torch allocates its tensors
  through malloc, and the mapping and first touch of each one costs a forward pass dearly
  (measured here: a 1-layer transformer encoder 5.1 → 8.7 ms, resnet18 on 32 images 198 → 239 ms).
- Heaps only shrink from their top. What a call freed in the middle of a heap (or of a thread's
  arena) stays resident until malloc_trim() gives the free pages back. So after each request of
  the web process and each call of the inference process, a background thread trims once the
  work is over (`release_soon`): at most twice a second, never on a request's own thread, never
  while idle.

After three rounds of bench/memory.py's predict inputs, six of them at once each time, the web
process stayed 126 MB above idle with neither, 54 MB with trimming alone, 7 MB with the fixed
threshold alone and 4 MB with both; the inference process 17 MB with neither, 1 MB with trimming.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time

M_MMAP_THRESHOLD = -3  # mallopt's parameter, from glibc's malloc.h
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value, kept
RELEASE_DELAY = 0.5  # seconds between a request for a release and the trim

_libc = None
_lock = threading.Lock()
_wanted = threading.Event()
_releaser_pid = 0


def _glibc():
    """The C library when it is glibc (mallopt and malloc_trim), else None (musl, macOS)."""
    global _libc
    if _libc is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            libc.mallopt, libc.malloc_trim  # noqa: B018
        except (OSError, AttributeError):
            libc = False
        _libc = libc
    return _libc or None


def fix_mmap_threshold() -> None:
    """Map every block of MMAP_THRESHOLD or more on its own, for the life of this process."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def release_soon() -> None:
    """Ask for this process's free heap pages to be handed back once the current work is over."""
    global _releaser_pid
    if _glibc() is None:
        return
    if _releaser_pid != os.getpid():
        # first use in this process (a forked child has no thread of its parent's)
        with _lock:
            if _releaser_pid != os.getpid():
                _wanted.clear()
                threading.Thread(target=_release_loop, name="memory-release", daemon=True).start()
                _releaser_pid = os.getpid()
    _wanted.set()


def _release_loop() -> None:
    while True:
        _wanted.wait()
        # the work that asked finishes freeing; a burst of requests asks once
        time.sleep(RELEASE_DELAY)
        _wanted.clear()
        _libc.malloc_trim(0)
