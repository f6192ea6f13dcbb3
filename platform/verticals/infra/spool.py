"""A spool: lines an application must not lose, journalled in memory-mapped files before the
caller goes on, and handed in batches to a writer it is given.

* `add()` appends lines to a local journal segment (a file mapped in memory: a copy into the page
  cache) and to a list in memory;
* a thread hands the list to `write(lines)` every `interval` seconds (or as soon as `BATCH` lines
  wait), then deletes the journal segment that held them; a failed write is kept and tried again
  at the next tick;
* the journal survives the process: a process that dies (killed, out of memory) leaves its
  segments behind, and every spool on the folder (at its first tick, then every `RECOVER_SECONDS`)
  and anyone calling `recover_orphans` hands them to its writer. A line may so be written twice
  (the process died between the write and deleting the segment): writers make that harmless
  (billing's ledger counts each event once by its key);
* the process writes what it holds when it exits normally (`ProcessSpool`).

Each spool holds an exclusive `flock` on its `<owner>.lock` for its lifetime; a lock that can be
taken belongs to a process that has ended, and its segments (`<owner>.<n>.jsonl`) are recovered.
The folder must be on a local file system. The ledger spool (`verticals.billing.spool`) is its user.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import json
import logging
import mmap
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

BATCH = 500  # events that wake the writer before its tick
# a journal segment's size (allocated up front; a full one is handed to the writer at once)
SEGMENT_BYTES = 1 << 20
RECOVER_SECONDS = 60.0  # how often a running spool looks for the segments of ended processes


class SpoolClosed(OSError):
    """The spool takes no more events (its process is exiting): write them another way."""


def _nothing() -> None:
    pass


class Spool:
    """One process's spool in `directory`; `write(lines)` stores journal lines (one JSON text
    each, ending with a newline) for good, or raises. The writer thread calls `on_tick()` before
    each tick's writes and `on_release()` after a failed tick and when it ends (a database user
    passes: close old connections, drop a broken one)."""

    def __init__(
        self,
        directory: Path,
        interval: float,
        write: Callable[[list[str]], None],
        *,
        on_tick: Callable[[], None] = _nothing,
        on_release: Callable[[], None] = _nothing,
    ):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.interval = interval
        self._write = write
        self._on_tick, self._on_release = on_tick, on_release
        self.owner = (
            f"{socket.gethostname().replace('.', '-')}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        )
        # Locked before it has its name, so a recovering spool never takes a starting spool's lock.
        temporary = self.directory / f".{self.owner}.lock.tmp"
        self._lock_fd = os.open(temporary, os.O_CREAT | os.O_RDWR, 0o600)
        self._number = 0
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            os.rename(temporary, self.directory / f"{self.owner}.lock")
            self._segment, self._map, self._used = self._open_segment()
        except BaseException:
            os.close(self._lock_fd)
            temporary.unlink(missing_ok=True)
            (self.directory / f"{self.owner}.lock").unlink(missing_ok=True)
            raise
        self._mutex = threading.Lock()  # the open segment and the lines in memory
        self._flushing = threading.Lock()  # one write at a time
        self._wake = threading.Event()
        self._lines: list[str] = []
        self._waiting: list[tuple[Path, list[str]]] = []  # closed segments not yet written
        self._closed = False
        self._recovered_at = 0.0
        self._thread = threading.Thread(
            target=self._run, name=f"spool-{self.directory.name}", daemon=True
        )
        self._thread.start()

    # --- the calls' side ----------------------------------------------------------------

    def add(self, lines: list[str]) -> None:
        """Journal the lines (each ends with a newline) and queue them for the writer."""
        data = "".join(lines).encode()
        if len(data) > SEGMENT_BYTES:
            raise ValueError(
                f"{len(lines)} usage events take {len(data)} bytes; a journal segment holds {SEGMENT_BYTES}"
            )
        with self._mutex:
            if self._closed:
                raise SpoolClosed("the spool is closed")
            rotated = self._used + len(data) > SEGMENT_BYTES
            if rotated:
                self._rotate()
            self._map[self._used : self._used + len(data)] = (
                data  # in the page cache: it outlives this process
            )
            self._used += len(data)
            self._lines.extend(lines)
            full = rotated or len(self._lines) >= BATCH
        if full:
            self._wake.set()

    def pending(self) -> int:
        with self._mutex:
            return len(self._lines) + sum(len(lines) for _path, lines in self._waiting)

    # --- the writer's side --------------------------------------------------------------

    def _open_segment(self) -> tuple[Path, mmap.mmap, int]:
        self._number += 1
        path = self.directory / f"{self.owner}.{self._number:08d}.jsonl"
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            try:  # its blocks allocated now: a full disk is an OSError here, never a SIGBUS in add()
                os.posix_fallocate(fd, 0, SEGMENT_BYTES)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                os.ftruncate(fd, SEGMENT_BYTES)  # a file system that cannot allocate ahead
            return (
                path,
                mmap.mmap(fd, SEGMENT_BYTES),
                0,
            )  # zeros past the last line: where a reader stops
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)

    def _rotate(self) -> None:
        """(Holding the mutex.) Hand the open segment and its lines to the writer, the next one
        opened first (if it cannot be, nothing changes)."""
        segment, mapped, used = self._open_segment()
        self._map.close()
        self._waiting.append((self._segment, self._lines))
        self._lines = []
        self._segment, self._map, self._used = segment, mapped, used

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self._on_tick()
                self.flush()
                if time.monotonic() - self._recovered_at >= RECOVER_SECONDS:
                    self.recover()
            except Exception:  # logged; what was not written waits for the next tick
                log.exception(
                    "the spool %s could not write its lines; it tries again in %.2f s",
                    self.directory,
                    self.interval,
                )
                self._on_release()
        self._on_release()  # closed: what this thread holds (a database connection) goes with it

    def flush(self) -> int:
        """Write every queued line now; returns how many were written. Raises when the writer
        cannot write them (they stay queued)."""
        written = 0
        with self._flushing:
            with self._mutex:
                if self._lines:
                    self._rotate()
            while self._waiting:
                path, lines = self._waiting[0]
                self._write(lines)
                path.unlink(missing_ok=True)
                with self._mutex:
                    self._waiting.pop(0)
                written += len(lines)
        return written

    def recover(self) -> int:
        """Write the segments of spools whose process has ended; returns how many events they held."""
        self._recovered_at = time.monotonic()
        with self._flushing:
            return recover_orphans(self.directory, self._write)

    def close(self) -> None:
        """Take no more events, write what is queued and remove this spool's files (at exit). What
        cannot be written stays in its segments for the next spool to recover."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
        self._wake.set()
        if self._thread is not threading.current_thread():
            # its last tick writes; it ends with its database connection
            self._thread.join(timeout=10)
        try:
            self.flush()
        except Exception:
            log.exception(
                "the spool %s could not write its lines at exit; the next process on this machine will",
                self.directory,
            )
            with self._mutex:
                self._map.close()
            return
        with self._mutex:
            self._map.close()
            self._segment.unlink(missing_ok=True)
        (self.directory / f"{self.owner}.lock").unlink(missing_ok=True)
        os.close(self._lock_fd)


def recover_orphans(directory: Path, write: Callable[[list[str]], None]) -> int:
    """Write the segments of spools in `directory` whose process has ended (their lock can be
    taken); returns how many lines they held. Raises when the writer fails (they stay)."""
    found = 0
    for lock in sorted(Path(directory).glob("*.lock")):
        owner = lock.name[: -len(".lock")]
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:  # recovered meanwhile by another spool
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its process is alive
                continue
            for segment in sorted(Path(directory).glob(f"{owner}.*.jsonl")):
                lines = _read_segment(segment)
                if lines:
                    write(lines)
                segment.unlink(missing_ok=True)
                found += len(lines)
            lock.unlink(missing_ok=True)
        finally:
            os.close(fd)
    if found:
        log.warning(
            "wrote %d lines that ended processes had left in the spool %s", found, directory
        )
    return found


def _read_segment(path: Path) -> list[str]:
    """The lines of a journal segment: up to the zeros that follow the last one, each checked to be
    JSON (one that is not is logged and skipped)."""
    data = path.read_bytes().split(b"\0", 1)[0].decode("utf-8", errors="replace")
    lines = data.split("\n")
    if lines[-1]:  # the process died in the middle of this copy: its call never answered
        log.warning("%s: an unfinished last line is skipped", path.name)
    found = []
    for number, line in enumerate(lines[:-1], 1):
        try:
            json.loads(line)
        except ValueError:
            log.error("%s:%d: an unreadable line is skipped: %r", path.name, number, line[:200])
            continue
        found.append(line + "\n")
    return found


class ProcessSpool:
    """The one spool of this process: started by `start()` at its first use, written and closed
    when the process exits normally, forgotten by a forked child (which starts its own)."""

    def __init__(self, start: Callable[[], Spool]):
        self._start = start
        self._spool: Spool | None = None
        self.exiting = False
        self._lock = threading.Lock()
        atexit.register(self._at_exit)
        os.register_at_fork(after_in_child=self._forget_in_child)

    def current(self) -> Spool:
        """This process's spool (SpoolClosed once the process is exiting)."""
        with self._lock:
            if self.exiting:
                raise SpoolClosed("the process is exiting")
            if self._spool is None:
                self._spool = self._start()
            return self._spool

    def flush(self) -> int:
        """Write this process's queued lines now."""
        spool = self._spool
        return spool.flush() if spool is not None else 0

    def stop(self) -> None:
        """Write what this process's spool holds and end it (a later line starts a new one)."""
        with self._lock:
            spool, self._spool = self._spool, None
        if spool is not None:
            spool.close()

    def _at_exit(self) -> None:
        with self._lock:
            self.exiting = True  # a line from here on is the caller's to write at once
        self.stop()

    def _forget_in_child(self) -> None:
        """A forked child has no writer thread: it starts a spool of its own, and lets go of its
        copy of the parent's lock (held while that copy is open)."""
        if self._spool is not None:
            try:
                os.close(self._spool._lock_fd)
            except OSError:
                pass
        self._spool, self._lock = None, threading.Lock()
