"""Helpers for tests that start real processes (servers, workers)."""

import os
import signal
import subprocess
from pathlib import Path


def stop_process(process: subprocess.Popen, timeout: float = 15) -> None:
    """Terminate, then kill if it does not exit in time."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def signal_group(process: subprocess.Popen, sig: int) -> bool:
    """Send `sig` to the process group that `process` leads (started with start_new_session=True)."""
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def kill_group(process: subprocess.Popen, timeout: float = 15) -> None:
    """SIGKILL the whole process group `process` leads (its children too), and reap the leader."""
    signal_group(process, signal.SIGKILL)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
        pass


def stop_process_group(process: subprocess.Popen, timeout: float = 15) -> None:
    """Stop a process that leads its own group: SIGTERM to the leader (a Celery worker's warm
    shutdown), then SIGKILL whatever of the group is left (children, an embedded beat)."""
    stop_process(process, timeout=timeout)
    signal_group(process, signal.SIGKILL)


ROOT = Path(__file__).resolve().parents[1]


def process_table() -> dict[int, tuple[int, str, list[str]]]:
    """The processes of this machine, from Linux's /proc: pid → (parent pid, command line, the
    fields of /proc/PID/stat after the command's name: state, parent, …, utime at 11, stime at 12)."""
    table = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            raw = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), command, fields)
    return table


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fresh_env(tmp_path, **extra) -> dict:
    """The environment of a platform of its own: a SQLite file and a var folder under tmp_path."""
    env = {
        **os.environ,
        "VERTICALS_VAR_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DEBUG": "1",
        **extra,
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def manage(env: dict, *args) -> str:
    """`manage.py ARGS` in that environment; its standard output."""
    import sys

    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


class production_server:
    """gunicorn with uvicorn workers (ASGI), as docker/compose.yaml runs the web service, on a free
    port: `with production_server(env) as base_url: …` (it has answered /healthz by then)."""

    def __init__(self, env: dict, *, workers: int = 1, timeout: float = 60):
        self.env, self.workers, self.timeout = env, workers, timeout

    def __enter__(self) -> str:
        import sys
        import time
        import urllib.request

        port = free_port()
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        self.process = subprocess.Popen(
            [
                gunicorn,
                "verticals.config.asgi:application",
                "-k",
                "uvicorn_worker.UvicornWorker",
                "-b",
                f"127.0.0.1:{port}",
                "--workers",
                str(self.workers),
            ],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=5):
                    return base
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    stop_process(self.process)
                    raise RuntimeError("gunicorn did not come up") from None
                time.sleep(0.3)

    def __exit__(self, *exc) -> None:
        stop_process(self.process)
