"""Dependencies point down (docs/design.md, "Layers"): each core app imports only those below it,
plugins import the SDK only, the work apps reach billing through its port — and a first-party
import inside a function says why it cannot stand at the top of its module."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "platform" / "verticals", ROOT / "plugins"]
FIRST_PARTY = ("verticals", "nlp", "vision")


def test_the_import_contracts_hold():
    """import-linter's contracts in pyproject.toml (function-level imports count too)."""
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint), str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def _first_party(node: ast.AST) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").split(".")[0] in FIRST_PARTY
    if isinstance(node, ast.Import):
        return any(alias.name.split(".")[0] in FIRST_PARTY for alias in node.names)
    return False


def late_imports_without_a_reason() -> list[str]:
    found = []
    for source in SOURCES:
        for path in sorted(source.rglob("*.py")):
            if "migrations" in path.parts or "scaffold" in path.parts:
                continue
            if path.parent.name == "testing":  # the SDK's test kit: a pytest plugin, loaded before
                continue  # Django is set up, imports the platform inside its fixtures
            text = path.read_text(encoding="utf-8")
            lines = text.splitlines()
            for function in ast.walk(ast.parse(text)):
                if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                if function.name == "ready":  # AppConfig.ready: Django's place for late imports
                    continue
                for node in ast.walk(function):
                    if not _first_party(node):
                        continue
                    said = "#" in lines[node.lineno - 1] or lines[
                        node.lineno - 2
                    ].strip().startswith("#")
                    if not said:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_a_first_party_import_inside_a_function_says_why():
    """Late imports hide cycles: one that must stay (torch kept unloaded until a model runs, a
    module Django imports before models load, a Celery tasks module importing its service) says so
    in a comment on its line or the line above."""
    assert late_imports_without_a_reason() == []
