"""Fixtures of the vision plugin's tests: drawn-shape splits and one model trained on them."""

from __future__ import annotations

import pytest

from tests.plugins.vision.helpers import shapes_split, train_tiny
from vision.classification import ImageClassificationTask


@pytest.fixture(scope="session")
def task() -> ImageClassificationTask:
    return ImageClassificationTask()


@pytest.fixture(scope="session")
def shapes(task, tmp_path_factory):
    """Drawn circles, squares and triangles: train, validation and held-out test splits, each
    drawn with its own seed."""
    root = tmp_path_factory.mktemp("shapes")
    return {
        "train": shapes_split(task, root, "train", rows=120, seed=0),
        "validation": shapes_split(task, root, "validation", rows=30, seed=1),
        "test": shapes_split(task, root, "test", rows=60, seed=2),
    }


@pytest.fixture(scope="session")
def trained(task, shapes):
    """The default architecture trained with tiny_params (shared by the tests that need a model)."""
    return train_tiny(task, shapes)
