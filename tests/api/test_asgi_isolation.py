"""Under the production server (gunicorn + uvicorn workers, ASGI), concurrent requests of two
tenants each see only their own rows: the tenant context does not bleed between requests."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.processes import stop_process

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _manage(env, *args) -> str:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout


@pytest.mark.slow
def test_concurrent_tenants_under_asgi(tmp_path):
    env = {**os.environ, "VERTICALS_VAR_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "DEBUG": "1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    _manage(env, "migrate", "--noinput")
    worlds = [json.loads(_manage(env, "bootstrap", "--partner", f"P{i}", "--tenant", f"T{i}", "--email", f"o{i}@example.com")) for i in (1, 2)]
    port = _free_port()
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    server = subprocess.Popen(
        [gunicorn, "verticals.config.asgi:application", "-k", "uvicorn_worker.UvicornWorker", "-b", f"127.0.0.1:{port}", "--workers", "2"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )

    def projects(world) -> tuple[str, set[str]]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/projects/", headers={"Authorization": f"Bearer {world['api_key']}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return world["tenant"]["id"], {p["id"] for p in json.load(response)["results"]}

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                projects(worlds[0])
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("gunicorn did not come up")
                time.sleep(0.3)
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(projects, [worlds[i % 2] for i in range(120)]))
        expected = {w["tenant"]["id"]: {w["project"]["id"]} for w in worlds}
        wrong = [(tenant, seen) for tenant, seen in answers if seen != expected[tenant]]
        assert not wrong, wrong[:5]
    finally:
        stop_process(server)
