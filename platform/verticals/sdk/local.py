"""A TrainContext outside any job: for plugin unit tests, notebooks and the benchmark's raw loop."""

from __future__ import annotations

import tempfile
from pathlib import Path

from verticals.sdk.contracts import Checkpoint, DatasetSplit, TrainContext
from verticals.sdk.params import with_defaults


class LocalTrainContext(TrainContext):
    """Everything a task's train() needs, in memory: reports and log lines are kept in lists."""

    def __init__(
        self,
        task,
        *,
        train: DatasetSplit,
        validation: DatasetSplit,
        test: DatasetSplit | None = None,
        params: dict | None = None,
        architecture: str = "",
        base: Path | None = None,
        base_labels=(),
        device: str = "cpu",
        seed: int = 0,
        scratch_dir: Path | None = None,
    ):

        self.task = task
        self.params = with_defaults(task.params_schema, params or {})
        self.architecture = architecture or task.default_architecture
        self.labels = list(train.labels)
        self.train, self.validation = train, validation
        self.test = test if test is not None else DatasetSplit("test", [], list(train.labels))
        self.base = base
        self.base_labels = list(base_labels)
        self.device = device
        self.seed = seed
        self.scratch_dir = scratch_dir or Path(tempfile.mkdtemp(prefix="verticals-train-"))
        self.reports: list[tuple[float, float | None, dict]] = []
        self.lines: list[str] = []
        self.samples = 0
        self._checkpoint: Checkpoint | None = None

    def report(self, step, total=None, metrics=None, *, description=""):
        self.reports.append((step, total, dict(metrics or {})))

    def log(self, message, level="info"):
        self.lines.append(f"{level}: {message}")

    def checkpoint(self, step, tensors, state=None):
        self._checkpoint = Checkpoint(
            int(step), {k: v.detach().clone() for k, v in tensors.items()}, dict(state or {})
        )

    def restore(self):
        return self._checkpoint

    def count_samples(self, n):
        self.samples += int(n)
