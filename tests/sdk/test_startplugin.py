"""`manage.py startplugin`: what it refuses, what it writes, and that what it writes passes the
plugin conformance suite unmodified once installed (in a subprocess, like a plugin author's run)."""

from __future__ import annotations

import ast
import io
import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from verticals.sdk.testing import TaskConformance

NAME = "acme_topics"
EXPECTED_FILES = {
    "README.md",
    "pyproject.toml",
    f"{NAME}/__init__.py",
    f"{NAME}/apps.py",
    f"{NAME}/plugin.py",
    f"{NAME}/task.py",
    f"{NAME}/model.py",
    "tests/test_conformance.py",
    "tests/test_task.py",
}
CONFORMANCE_TESTS = sorted(name for name in dir(TaskConformance) if name.startswith("test_"))


def scaffold(directory: Path, name: str = NAME, **options) -> Path:
    out = io.StringIO()
    call_command("startplugin", name, directory=str(directory), stdout=out, **options)
    assert f"pip install -e {directory.resolve() / name}" in out.getvalue()
    return directory / name


def written(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# --- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, message",
    [
        ("Topics", "lower-case Python identifier"),
        ("2topics", "lower-case Python identifier"),
        ("legal-docs", "lower-case Python identifier"),
        ("class", "lower-case Python identifier"),
        ("", "lower-case Python identifier"),
        ("json", "module named 'json' already exists"),
        ("nlp", "module named 'nlp' already exists"),
        ("sdk", "Django app labelled 'sdk'"),
    ],
)
def test_it_refuses_a_bad_or_taken_name(tmp_path, name, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        scaffold(tmp_path, name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "task, message",
    [
        ("Topic Classifier", "not a valid task name"),
        ("-topics", "not a valid task name"),
        ("t" * 64, "not a valid task name"),
        ("sentiment", "declared already, by the plugin 'nlp'"),
    ],
)
def test_it_refuses_a_bad_or_taken_task_name(tmp_path, task, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        scaffold(tmp_path, task=task)
    assert list(tmp_path.iterdir()) == []


def test_it_never_overwrites_a_folder(tmp_path):
    existing = tmp_path / NAME
    existing.mkdir()
    (existing / "mine.txt").write_text("keep me")
    with pytest.raises(CommandError, match="never overwrites"):
        scaffold(tmp_path)
    assert written(existing) == {"mine.txt"} and (existing / "mine.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == [NAME]  # no staging folder left behind


def test_it_says_when_the_directory_cannot_hold_the_plugin(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(CommandError, match="Cannot create the plugin"):
        scaffold(tmp_path / "a-file")


# --- what it writes -------------------------------------------------------------------------------


def test_it_writes_a_complete_plugin_package(tmp_path):
    root = scaffold(tmp_path / "new" / "plugins")  # missing parent folders are made
    assert written(root) == EXPECTED_FILES
    for relative in EXPECTED_FILES:
        text = (root / relative).read_text()
        assert not re.search(r"\{\{ ?\w+ ?\}\}", text), f"a placeholder is left in {relative}"
        if relative.endswith(".py"):
            ast.parse(text, filename=relative)
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["verticals.plugins"] == {
        NAME: f"{NAME}.apps.AcmeTopicsConfig"
    }
    assert "dependencies" in project["project"] and not any(
        "verticals" in d for d in project["project"]["dependencies"]
    )
    assert (
        project["tool"]["pytest"]["ini_options"]["DJANGO_SETTINGS_MODULE"]
        == "verticals.config.settings"
    )
    assert 'plugin = "acme_topics.plugin.AcmeTopicsPlugin"' in (root / NAME / "apps.py").read_text()
    assert 'TASK_NAME = "acme-topics-classifier"' in (root / NAME / "task.py").read_text()
    assert (
        'task_name = "acme-topics-classifier"'
        in (root / "tests" / "test_conformance.py").read_text()
    )
    assert 'name = "acme-topics"' in (root / NAME / "plugin.py").read_text()
    # Django imports the plugin at start-up: torch only inside functions of task.py.
    assert not re.search(r"^(import|from) torch", (root / NAME / "task.py").read_text(), re.M)


def test_the_task_name_can_be_chosen(tmp_path):
    root = scaffold(tmp_path, task="news-topics")
    assert 'TASK_NAME = "news-topics"' in (root / NAME / "task.py").read_text()
    assert 'task_name = "news-topics"' in (root / "tests" / "test_conformance.py").read_text()


def test_it_writes_into_the_current_directory_by_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    call_command("startplugin", NAME, stdout=io.StringIO())
    assert written(tmp_path / NAME) == EXPECTED_FILES


# --- the scaffold passes the conformance suite, installed as a separate package -----------------------


def _builds_wheels_offline() -> bool:
    """Whether pip can build a wheel here without an index: setuptools ≥ 70.1 has bdist_wheel, older
    ones need the `wheel` package."""
    try:
        major, minor = (int(part) for part in metadata.version("setuptools").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (70, 1) or (major >= 64 and find_spec("wheel") is not None)


def install_privately(source: Path, site: Path, env: dict) -> str:
    """Make `source` an installed distribution visible on PYTHONPATH=site, without touching the venv.

    With a wheel-capable setuptools: `pip install --no-deps --no-build-isolation --no-index --target`.
    Otherwise (the venv has setuptools 65.5 and no `wheel`): setuptools' own `egg_info` reads the
    same pyproject.toml and writes the metadata (entry_points.txt included) into `site`, where
    importlib.metadata finds it; the package itself is imported from `source` on PYTHONPATH.
    """
    if _builds_wheels_offline():
        command = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--target",
            str(site),
            str(source),
        ]
        how = "pip install --target"
    else:
        site.mkdir(parents=True)
        command = [
            sys.executable,
            "-W",
            "ignore",
            "-c",
            "from setuptools import setup; setup()",
            "--quiet",
            "egg_info",
            "--egg-base",
            str(site),
        ]
        how = "setuptools egg_info"
    done = subprocess.run(command, cwd=source, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{how} failed:\n{done.stdout}\n{done.stderr}"
    return how


@pytest.mark.slow
def test_the_scaffold_passes_the_conformance_suite_unmodified(tmp_path):
    root = scaffold(tmp_path)
    site = tmp_path / "site"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE") and not k.startswith("PYTEST_")
    }
    env.update(
        {
            "VERTICALS_VAR_DIR": str(tmp_path / "var"),
            "HF_HUB_OFFLINE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    how = install_privately(root, site, env)
    # The installed metadata (entry point) from `site`, the package from its source folder: nothing
    # else of this process's path, so the plugin is found the way an installed one is.
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(root)])
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(root / "tests"),
            "-q",
            "-p",
            "no:cacheprovider",
            "-rA",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, (
        f"the scaffold's tests failed (installed with {how}):\n{output[-6000:]}"
    )
    summary = re.search(r"(\d+) passed", output)
    assert summary and "failed" not in output.splitlines()[-1], output[-3000:]
    passed_conformance = set(
        re.findall(r"PASSED tests/test_conformance\.py::TestAcmeTopicsConformance::(\w+)", output)
    )
    assert passed_conformance == set(CONFORMANCE_TESTS), output[-3000:]
    assert int(summary.group(1)) >= len(CONFORMANCE_TESTS) + 3
    assert "verticals_acme_topics" in " ".join(p.name for p in site.iterdir())
