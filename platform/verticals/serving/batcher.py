"""Micro-batching: concurrent predict calls on one model join one batch.

Each loaded model gets a thread that takes what callers queued — up to the
task's `max_batch` inputs, waiting at most `SERVING_BATCH_WAIT_MS` for company once the first
arrived — runs one `predict` per distinct set of options, and hands each caller its slice. One caller alone pays only
the hand-off between threads.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future


class BatcherClosed(RuntimeError):
    """The batcher stopped after sitting idle; make a new one."""


class MicroBatcher:
    """One thread per model; it ends after `idle` seconds without work (models come and go)."""

    def __init__(
        self,
        predict: Callable[[list, dict], list],
        *,
        max_batch: int,
        max_wait: float,
        name: str = "batcher",
        idle: float = 300.0,
    ):
        self._predict = predict
        self.max_batch = max(1, max_batch)
        self.max_wait = max_wait
        self.idle = idle
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self.closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()
        self.batches = 0
        self.inputs = 0

    def submit(self, inputs: list, options: dict | None = None) -> list:
        future: Future = Future()
        with self._lock:  # the loop closes under the same lock, so nothing queued is left behind
            if self.closed:
                raise BatcherClosed()
            self._queue.put((inputs, dict(options or {}), future))
        return future.result()

    def _loop(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.idle)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self.closed = True
                        return
                continue
            pending = [first]
            count = len(pending[0][0])
            deadline = time.monotonic() + self.max_wait
            while count < self.max_batch:
                remaining = deadline - time.monotonic()
                try:
                    item = (
                        self._queue.get(timeout=remaining)
                        if remaining > 0
                        else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
                if count + len(item[0]) > self.max_batch:
                    self._run(pending)
                    pending, count = [], 0
                pending.append(item)
                count += len(item[0])
            self._run(pending)
            # Waiting for the next call must not keep this batch's inputs alive (images, long texts).
            first = item = pending = None

    def _run(self, pending: list) -> None:
        groups: dict[str, list] = {}
        for item in pending:
            groups.setdefault(json.dumps(item[1], sort_keys=True), []).append(item)
        for members in groups.values():
            self._run_group(members)

    def _run_group(self, members: list) -> None:
        flat = [x for inputs, _options, _future in members for x in inputs]
        try:
            outputs = self._predict(flat, members[0][1])
            if len(outputs) != len(flat):
                raise RuntimeError(
                    f"predict returned {len(outputs)} outputs for {len(flat)} inputs"
                )
        except BaseException as exc:  # every caller of the batch gets the failure
            for _inputs, _options, future in members:
                future.set_exception(exc)
            return
        self.batches += 1
        self.inputs += len(flat)
        start = 0
        for inputs, _options, future in members:
            future.set_result(outputs[start : start + len(inputs)])
            start += len(inputs)
