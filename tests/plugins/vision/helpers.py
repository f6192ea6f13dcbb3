"""Building dataset splits for the vision tests the way core does: ingest an upload, then split."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from verticals.sdk import DatasetSplit, Example, LabelledImages, LocalTrainContext


def ingest(upload: Path, files_dir: Path) -> list[Example]:
    """The upload's examples, their inputs made absolute paths (as core hands them to train())."""
    examples = LabelledImages().ingest(upload, files_dir)
    return [Example(input=files_dir / e.input, label=e.label, ref=e.ref) for e in examples]


def split(name: str, examples: list[Example], labels: list[str] | None = None) -> DatasetSplit:
    return DatasetSplit(name, list(examples), sorted(labels or {e.label for e in examples}))


def shapes_split(task, directory: Path, name: str, *, rows: int, seed: int) -> DatasetSplit:
    upload = task.example_dataset(directory / f"upload-{name}", rows=rows, seed=seed)
    return split(name, ingest(upload, directory / f"files-{name}"))


def png(image, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def train_tiny(task, shapes: dict, architecture: str = "", **params):
    """(context, model) of `architecture` trained with the task's tiny_params (and `params`)."""
    ctx = LocalTrainContext(
        task,
        train=shapes["train"],
        validation=shapes["validation"],
        test=shapes["test"],
        params={**task.tiny_params, **params},
        architecture=architecture,
        seed=0,
    )
    return ctx, task.train(ctx)
