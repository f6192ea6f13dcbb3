"""What a runner gets: `JobContext` — progress, metrics, logs, cancellation, heartbeats, scratch space."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from verticals.jobs import engine
from verticals.jobs.models import Job, JobEffect


class JobCancelled(BaseException):
    """Raised inside a runner (by `report()` or `check_cancelled()`) once the job was cancelled.

    A BaseException, like KeyboardInterrupt: a runner's own `except Exception:` does not swallow it.
    """


class JobSuperseded(BaseException):
    """This attempt no longer owns the job (the reaper gave it to another attempt, or ended it)."""


class JobContext:
    """The runner's handle on its job. One per attempt; not shared between threads."""

    def __init__(self, job: Job):
        self.job = job
        self.job_id = job.public_id
        self.tenant = job.tenant
        self.project = job.project
        self.params = dict(job.params)
        self.attempt = job.attempt
        self.resume: dict = dict(job.checkpoint or {})
        self._cancelled = threading.Event()
        self._lost = threading.Event()
        self._last_progress_write: float | None = (
            None  # the first report of an attempt is always written
        )
        self._last_poll = time.monotonic()
        self._rate_origin: tuple[float, float] | None = None
        self._scratch: Path | None = None

    # --- progress, metrics, logs ---------------------------------------------------------

    def report(
        self,
        step: float,
        total: float | None = None,
        metrics: dict | None = None,
        *,
        description: str = "",
    ) -> None:
        """Progress is `step` of `total` (with optional metric values at this step).

        Stops the job (raises JobCancelled) when it was cancelled: a runner that reports at
        least once a second stops within the cancellation window. Progress rows are written at
        most every JOBS_PROGRESS_SECONDS; the first and the last step and metric points always are.
        """
        self._raise_if_stopped()
        now = time.monotonic()
        if self._rate_origin is None:
            self._rate_origin = (now, float(step))
        write = (
            bool(metrics)
            or (total is not None and step >= total)
            or self._last_progress_write is None
            or now - self._last_progress_write >= settings.JOBS_PROGRESS_SECONDS
        )
        if write or now - self._last_poll >= settings.JOBS_CANCEL_POLL_SECONDS:
            clean = {str(k): float(v) for k, v in (metrics or {}).items()}
            facts = (
                engine.record_progress(
                    self.job,
                    self.attempt,
                    current=float(step),
                    total=None if total is None else float(total),
                    description=description,
                    eta=self._eta(now, float(step), total),
                    metrics=clean,
                    step=step,
                    write_progress=write,
                )
                if write
                else engine.beat(self.job, self.attempt)
            )
            self._last_poll = now
            if write:
                self._last_progress_write = now
            self._note(facts)
            self._raise_if_stopped()

    def _eta(self, now: float, step: float, total) -> float | None:
        t0, s0 = self._rate_origin
        if total is None or step <= s0 or now <= t0:
            return None
        rate = (step - s0) / (now - t0)
        return round(max(0.0, (float(total) - step) / rate), 1)

    def log(self, message: str, level: str = "info") -> None:
        """Append a line to the job's log (shown live in the portal and the event stream)."""
        if level not in ("debug", "info", "warning", "error"):
            level = "info"
        if not engine.append_owned(self.job, self.attempt, [engine.log_event(str(message), level)]):
            self._lost.set()
            self._raise_if_stopped()

    # --- cancellation and heartbeats ------------------------------------------------------

    @property
    def cancelled(self) -> bool:
        """Whether the job was cancelled (polls the database at most every JOBS_CANCEL_POLL_SECONDS)."""
        now = time.monotonic()
        if (
            not self._cancelled.is_set()
            and now - self._last_poll >= settings.JOBS_CANCEL_POLL_SECONDS
        ):
            self._last_poll = now
            self._note(engine.beat(self.job, self.attempt))
        return self._cancelled.is_set() or self._lost.is_set()

    def check_cancelled(self) -> None:
        """Raise JobCancelled if the job was cancelled; call it inside long steps."""
        if self.cancelled:
            self._raise_if_stopped()

    def heartbeat(self) -> None:
        """Tell the reaper this attempt is alive (the worker also does so on its own, in a thread)."""
        self._note(engine.beat(self.job, self.attempt))

    def _note(self, facts: dict | None) -> None:
        if facts is None:
            self._lost.set()
        elif facts["cancel_requested_at"] is not None:
            self._cancelled.set()

    def _raise_if_stopped(self) -> None:
        if self._lost.is_set():
            raise JobSuperseded(f"attempt {self.attempt} of {self.job_id} no longer owns the job")
        if self._cancelled.is_set():
            raise JobCancelled(self.job_id)

    # --- resumable work and side effects --------------------------------------------------

    def checkpoint(self, state: dict) -> None:
        """Save the runner's state (JSON); a rerun after a lost worker starts with it as `resume`."""
        if not engine.owned(self.job, self.attempt).update(checkpoint=state):
            self._lost.set()
            self._raise_if_stopped()
        self.resume = dict(state)

    @contextmanager
    def once(self, key: str) -> Iterator[bool]:
        """Do a side effect at most once per job, across reruns.

            with ctx.once("publish-model") as fresh:
                if fresh:
                    ModelVersion.objects.create(...)   # commits together with the marker

        Database writes inside the block commit atomically with the marker: if the worker dies
        first, neither exists and the rerun does it; if the marker exists, `fresh` is False. Keep
        the block short: it holds the job's row (on SQLite, the database's write lock).
        """
        if not key or len(key) > 200:
            raise ValueError(f"An effect key is 1 to 200 characters, not {len(key)}: {key[:40]!r}…")
        with transaction.atomic():
            # Holds the job row until the effect commits: an attempt the reaper has given up on
            # cannot publish anything any more.
            if not engine.owned(self.job, self.attempt).update(heartbeat_at=timezone.now()):
                self._lost.set()
                self._raise_if_stopped()
            if JobEffect.objects.filter(job=self.job, key=key).exists():
                yield False
                return
            try:
                with transaction.atomic():
                    JobEffect.objects.create(
                        tenant=self.tenant, job=self.job, key=key, attempt=self.attempt
                    )
            except IntegrityError:
                yield False
                return
            yield True

    @property
    def scratch_dir(self) -> Path:
        """A private directory for this attempt's files; removed when the attempt ends."""
        if self._scratch is None:
            self._scratch = (
                Path(settings.JOBS_SCRATCH_DIR) / self.job_id / f"attempt-{self.attempt}"
            )
            self._scratch.mkdir(parents=True, exist_ok=True)
        return self._scratch

    def cleanup(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch.parent, ignore_errors=True)


class Heartbeat(threading.Thread):
    """Beats for an attempt every JOBS_HEARTBEAT_SECONDS while its runner works (even in a long step)."""

    def __init__(self, ctx: JobContext):
        super().__init__(name=f"heartbeat-{ctx.job_id}", daemon=True)
        self.ctx = ctx
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopping.wait(settings.JOBS_HEARTBEAT_SECONDS):
                try:
                    self.ctx._note(engine.beat(self.ctx.job, self.ctx.attempt))
                except Exception:  # a database hiccup: the next beat tries again
                    connection.close()
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)
