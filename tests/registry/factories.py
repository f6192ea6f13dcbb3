"""Real datasets and tiny real models for the registry, serving and API tests.

A tiny model per task is trained once per test session (the task's tiny_params, through the
task's own train()) and saved; each test publishes a copy of it as a model version.
"""

from __future__ import annotations

import base64
import functools
import io
import shutil
import tempfile
import zipfile
from pathlib import Path

from verticals.registry import services
from verticals.registry.models import ModelVersion
from verticals.sdk import discovery
from verticals.sdk.local import LocalTrainContext
from verticals.sdk.testing import local_splits
from verticals.tenancy.scoping import tenant_context

REVIEWS = [
    ("I loved this product, it works perfectly", "positive"),
    ("Fantastic quality and a great price", "positive"),
    ("Absolutely wonderful, would buy again", "positive"),
    ("Terrible, it broke after one day", "negative"),
    ("Awful quality and a waste of money", "negative"),
    ("Very disappointing, do not buy", "negative"),
]


def csv_bytes(rows, header="text,label") -> bytes:
    lines = [header] + [f'"{text}",{label}' for text, label in rows]
    return ("\n".join(lines) + "\n").encode()


def png_bytes(colour=(200, 30, 30), size=(24, 24)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def png_base64(colour=(200, 30, 30), size=(24, 24)) -> str:
    return base64.b64encode(png_bytes(colour, size)).decode()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


# The smallest architecture of each task, for tests that need a model, not a particular one.
TINY_ARCHITECTURE = {"image-classification": "simple-cnn"}


def tiny_architecture(task_name: str) -> str:
    return TINY_ARCHITECTURE.get(task_name) or discovery.get_task(task_name).default_architecture


@functools.cache
def tiny_model_dir(task_name: str) -> Path:
    """A directory holding a tiny model of the task, trained on its example dataset (once per session)."""
    task = discovery.get_task(task_name)
    work = Path(tempfile.mkdtemp(prefix=f"tiny-{task_name}-"))
    upload_dir = work / "upload"
    upload_dir.mkdir()
    splits = local_splits(task, task.example_dataset(upload_dir, rows=40, seed=3), work / "data")
    ctx = LocalTrainContext(
        task,
        train=splits["train"],
        validation=splits["validation"],
        test=splits["test"],
        params=task.tiny_params,
        architecture=tiny_architecture(task_name),
        seed=0,
        scratch_dir=work / "scratch",
    )
    model = task.train(ctx)
    saved = work / "saved"
    saved.mkdir()
    task.save(model, saved)
    (work / "labels.txt").write_text("\n".join(splits["train"].labels))
    return saved


def make_model_version(
    world, task_name: str = "sentiment", *, name: str = "tiny", project=None
) -> ModelVersion:
    """A model version of the world's project holding a copy of the session's tiny model."""
    task = discovery.get_task(task_name)
    saved = tiny_model_dir(task_name)
    labels = (saved.parent / "labels.txt").read_text().splitlines()
    copy = Path(tempfile.mkdtemp(prefix="copy-")) / "model"
    shutil.copytree(saved, copy)
    with tenant_context(world.tenant):
        return services.model_publish(
            project=project or world.project,
            task=task,
            model=None,
            name=name,
            architecture=tiny_architecture(task_name),
            labels=labels,
            metrics={"accuracy": 1.0},
            report={},
            params={},
            directory=copy,
        )


def make_dataset_version(
    world, task_name: str = "sentiment", *, rows: int = 40, name: str = "reviews", project=None
):
    task = discovery.get_task(task_name)
    folder = Path(tempfile.mkdtemp(prefix="dataset-"))
    upload = task.example_dataset(folder, rows=rows, seed=0)
    with tenant_context(world.tenant):
        return services.dataset_upload(
            project=project or world.project, caller=None, upload=upload, task=task_name, name=name
        )
