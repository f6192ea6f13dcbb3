"""`platform/` is a source root, not a package: `import platform` stays the standard library's."""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.processes import stop_process

ROOT = Path(__file__).resolve().parents[2]
STDLIB = sysconfig.get_paths()["stdlib"]
CHECK = "import platform; print(platform.__file__); print(platform.python_version())"


def _assert_stdlib(output: str) -> None:
    first = next(line for line in output.strip().splitlines() if line.endswith(".py"))
    assert first.startswith(STDLIB) and first.endswith("platform.py"), first


def test_no_init_in_source_root():
    assert not (ROOT / "platform" / "__init__.py").exists()


def test_import_platform_from_repository_root():
    out = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True, check=True
    )
    _assert_stdlib(out.stdout)


def test_import_platform_from_manage_py():
    code = "import platform; print(platform.__file__)"
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    _assert_stdlib(out.stdout)


def test_import_platform_under_pytest():
    import platform

    assert platform.__file__.startswith(STDLIB)
    assert platform.system()


@pytest.mark.slow
def test_import_platform_in_a_celery_worker(tmp_path):
    env = {
        **os.environ,
        "VERTICALS_VAR_DIR": str(tmp_path / "var"),
        "CELERY_BROKER_URL": "filesystem://",
        "CELERY_RESULT_BACKEND": f"file://{tmp_path / 'results'}",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    (tmp_path / "results").mkdir()
    celery = str(Path(sys.executable).with_name("celery"))
    worker = subprocess.Popen(
        [
            celery,
            "-A",
            "verticals",
            "worker",
            "-P",
            "solo",
            "-c",
            "1",
            "-l",
            "warning",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        client = (
            "from verticals import celery_app\n"
            "result = celery_app.send_task('verticals.health.ping')\n"
            "print(result.get(timeout=60)['platform_module'])\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", client],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        _assert_stdlib(out.stdout)
    finally:
        stop_process(worker)
