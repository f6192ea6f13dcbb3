"""The TrainContext of a real job: progress, metrics, logs and checkpoints through the job engine."""

from __future__ import annotations

import time
from pathlib import Path

from django.conf import settings

from verticals.jobs.compute import device
from verticals.jobs.context import JobContext
from verticals.registry import storage
from verticals.sdk.contracts import Checkpoint, DatasetSplit, Task, TrainContext

CHECKPOINT_FILE = "checkpoint.safetensors"
# A training loop reports every batch; writing each would cost the loop a database round trip
# per batch. Progress and per-batch values (train_*, averaged) are written at most this often,
# which is also how often a cancel is noticed; epoch-level values (anything else) at once.
BATCH_METRIC_SECONDS = 1.0


def checkpoint_prefix(job) -> str:
    return f"checkpoints/{job.tenant.public_id}/{job.public_id}"


class JobTrainContext(TrainContext):
    def __init__(
        self,
        job_ctx: JobContext,
        *,
        task: Task,
        params: dict,
        architecture: str,
        splits: dict[str, DatasetSplit],
        base: Path | None,
        base_labels: list[str],
        seed: int,
    ):
        self._job = job_ctx
        self.task = task
        self.params = params
        self.architecture = architecture
        self.train, self.validation, self.test = (
            splits["train"],
            splits["validation"],
            splits["test"],
        )
        self.labels = list(self.train.labels)
        self.base = base
        self.base_labels = list(base_labels)
        self.device = device()
        self.seed = seed
        self.scratch_dir = job_ctx.scratch_dir
        self.samples = 0
        self.started = time.monotonic()
        self._pending: dict[str, list[float]] = {}
        self._last_flush = 0.0
        self._last_checkpoint: float | None = None
        self.first_batch_at: float | None = None
        self.last_batch_at: float | None = None
        self.first_batch_samples = 0

    def report(self, step, total=None, metrics=None, *, description=""):
        batch = {k: float(v) for k, v in (metrics or {}).items() if k.startswith("train_")}
        epoch = {k: float(v) for k, v in (metrics or {}).items() if not k.startswith("train_")}
        for name, value in batch.items():
            self._pending.setdefault(name, []).append(value)
        now = time.monotonic()
        flush = (
            epoch
            or (total is not None and step >= total)
            or now - self._last_flush >= BATCH_METRIC_SECONDS
        )
        if not flush:
            return  # nothing to write yet; the job is polled for a cancel at the next flush (within a second)
        written = dict(epoch)
        if self._pending:
            written.update(
                {name: sum(values) / len(values) for name, values in self._pending.items()}
            )
            self._pending.clear()
        self._last_flush = now
        self._job.report(step, total, written, description=description)

    def log(self, message, level="info"):
        self._job.log(message, level)

    def checkpoint(self, step, tensors, state=None):
        """Store the tensors and state with the job once TRAIN_CHECKPOINT_SECONDS have passed since
        training started or since the last one: writing a large model (and its optimizer state)
        after every short epoch would cost more than the work a lost worker could lose."""
        now = time.monotonic()
        if now - (self._last_checkpoint or self.started) < settings.TRAIN_CHECKPOINT_SECONDS:
            return
        self._last_checkpoint = now
        from safetensors.torch import save

        blob = save({k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()})
        store = storage.artifacts()
        name = f"{checkpoint_prefix(self._job.job)}/{CHECKPOINT_FILE}"
        if store.exists(name):
            store.delete(name)
        from django.core.files.base import ContentFile

        store.save(name, ContentFile(blob))
        self._job.checkpoint({"step": int(step), "state": dict(state or {}), "file": name})

    def restore(self):
        saved = self._job.resume
        if not saved or "file" not in saved:
            return None
        from safetensors.torch import load

        with storage.artifacts().open(saved["file"], "rb") as handle:
            tensors = load(handle.read())
        self._job.log(f"Resuming from the checkpoint of step {saved['step']}.")
        return Checkpoint(int(saved["step"]), tensors, dict(saved.get("state") or {}))

    def count_samples(self, n):
        now = time.monotonic()
        if self.first_batch_at is None:
            self.first_batch_at, self.first_batch_samples = now, int(n)
        self.last_batch_at = now
        self.samples += int(n)

    def samples_per_second(self) -> float | None:
        """Training throughput from the end of the first batch to the end of the last (what the
        job adds between batches — progress, metrics, validation, checkpoints — counts against it)."""
        if (
            self.first_batch_at is None
            or self.last_batch_at is None
            or self.last_batch_at <= self.first_batch_at
        ):
            return None
        return (self.samples - self.first_batch_samples) / (
            self.last_batch_at - self.first_batch_at
        )


def drop_checkpoint(job) -> None:
    storage.delete_prefix(checkpoint_prefix(job))
