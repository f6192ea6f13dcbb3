"""A real Celery worker for tests and the benchmark (no pytest in here: bench/ imports it too).

    worker = LiveWorker(broker_url="redis://127.0.0.1:6379/12", database_url=database_url(settings_dict),
                        var_dir=tmp, beat=True)
    worker.start()                 # `celery -A verticals worker` in its own process group; waits for "ready."
    with use_broker(celery_app, worker.broker_url, worker.transport_options):
        ...                        # this process publishes to the worker's broker
    worker.kill()                  # SIGKILL of the whole group (the pool's children and the embedded beat)
    worker.start()                 # a fresh one, same broker, database and var dir
    worker.stop()

The worker reads the same settings module as the platform, from its environment: the database
the test uses, its broker, JOBS_RUNNER_MODULES naming the test (or bench) runners, short timings.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

from tests.processes import kill_group, stop_process_group

REPO = Path(__file__).resolve().parents[2]
QUEUES = ("train", "optimize", "inference", "default", "system")  # one test worker serves them all
REDIS_DBS = range(10, 16)  # the Redis databases tests may use
RABBITMQ_URL = (
    os.environ.get("VERTICALS_TEST_RABBITMQ_URL") or "amqp://guest:guest@127.0.0.1:5672//"
)

# Timings short enough for tests: a silent worker is noticed within about TTL + reaper period.
FAST_TIMINGS = {
    "JOBS_HEARTBEAT_SECONDS": "0.5",
    "JOBS_HEARTBEAT_TTL": "3",
    "JOBS_REAPER_SECONDS": "1",
    "JOBS_WEBHOOK_RETRY_SECONDS": "1",
    "JOBS_WEBHOOK_BACKOFF": "1,1,1",
    "JOBS_WEBHOOK_TIMEOUT": "5",
    "JOBS_WEBHOOK_ALLOW_PRIVATE": "1",
}


class ServiceDown(Exception):
    """A server the test needs (Redis, RabbitMQ) does not answer."""


def services_required() -> bool:
    """CI sets VERTICALS_REQUIRE_SERVICES=1: a missing broker fails the tests instead of skipping them."""
    return os.environ.get("VERTICALS_REQUIRE_SERVICES", "").strip().lower() in {
        "1",
        "true",
        "yes",
        "on",
    }


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05):
    """Poll `predicate` until it returns something truthy (returned); AssertionError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# --- the database the worker opens --------------------------------------------------------


def database_url(settings_dict: dict) -> str:
    """A DATABASE_URL naming the very database of `settings_dict` (django.db.connection.settings_dict:
    inside tests, the test database)."""
    engine = settings_dict["ENGINE"]
    if engine == "django.db.backends.sqlite3":
        name = str(settings_dict["NAME"])
        if name == ":memory:" or name.startswith("file:"):
            raise RuntimeError(
                "a worker process cannot open an in-memory SQLite database; the tests' database must be a file"
            )
        return f"sqlite:///{Path(name).resolve()}"
    if engine in (
        "django.db.backends.postgresql",
        "django.contrib.gis.db.backends.postgis",
        "verticals.tenancy.backend",
    ):
        # (with row-level security the URL names the owner, as DATABASE_URL does; the process logs in as
        # DATABASE_APP_USER, which it inherits from this one's environment)
        user = quote(settings_dict.get("USER") or "", safe="")
        password = quote(settings_dict.get("PASSWORD") or "", safe="")
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = settings_dict.get("HOST") or "localhost"
        if host.startswith("/"):  # a Unix socket directory
            port = f"&port={settings_dict['PORT']}" if settings_dict.get("PORT") else ""
            return f"postgres://{auth}/{quote(settings_dict['NAME'], safe='')}?host={quote(host, safe='')}{port}"
        port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
        return f"postgres://{auth}{host}{port}/{quote(settings_dict['NAME'], safe='')}"
    raise RuntimeError(f"no DATABASE_URL form for database engine {engine}")


# --- brokers ------------------------------------------------------------------------------


def tcp_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class RedisDatabase:
    """One of the Redis databases 10–15, held by this process (a lock key) and emptied for it.

    Runs side by side (SQLite and PostgreSQL suites, the benchmark) each take a free one.
    """

    LOCK = "verticals:tests:live-worker-lock"

    def __init__(self, host: str | None = None, port: int | None = None):
        # VERTICALS_TEST_REDIS=host:port points the tests (and the benchmark) at another server.
        default_host, _, default_port = (
            os.environ.get("VERTICALS_TEST_REDIS") or "127.0.0.1:6379"
        ).rpartition(":")
        self.host, self.port = host or default_host, port or int(default_port)
        self.number: int | None = None
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._client = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.number}"

    def acquire(self, ttl: int = 1800) -> RedisDatabase:
        import redis

        if not tcp_open(self.host, self.port):
            raise ServiceDown(f"Redis does not answer on {self.host}:{self.port}")
        for number in REDIS_DBS:
            client = redis.Redis(host=self.host, port=self.port, db=number, socket_timeout=5)
            try:
                client.ping()
            except redis.RedisError as exc:
                raise ServiceDown(
                    f"Redis on {self.host}:{self.port} does not answer PING: {exc}"
                ) from exc
            if client.set(self.LOCK, self.token, nx=True, ex=ttl):
                self.number, self._client = number, client
                self.flush()
                return self
            client.close()
        raise ServiceDown(
            f"every Redis database {REDIS_DBS.start}–{REDIS_DBS.stop - 1} is held by another test run"
        )

    def flush(self) -> None:
        """Delete every key but the lock (queues, bindings, unacked messages of earlier runs)."""
        keys = [key for key in self._client.scan_iter(count=500) if key != self.LOCK.encode()]
        for start in range(0, len(keys), 500):
            self._client.delete(*keys[start : start + 500])

    def release(self) -> None:
        if self._client is None:
            return
        try:
            self.flush()
            if self._client.get(self.LOCK) == self.token.encode():
                self._client.delete(self.LOCK)
        finally:
            self._client.close()
            self._client = None


class RedisServer:
    """A `redis-server` of the caller's own on a free port, started as the CI machine starts its
    shared one (no snapshot, no append-only file): a restart loses every key, so whatever a test
    does to it (kill, restart) touches no other run's Redis.

        server = RedisServer(tmp).start()
        server.url(0)                  # redis://127.0.0.1:<port>/0
        server.kill()                  # SIGKILL: a crash; queued and unacknowledged messages are gone
        server.start()                 # the same port again, empty
    """

    def __init__(self, var_dir: Path, port: int | None = None):
        from tests.processes import free_port

        self.var_dir = Path(var_dir)
        self.var_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def argv(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceDown("redis-server is not installed (apt-get install redis-server)")
        return [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.var_dir),
            "--logfile",
            str(self.var_dir / "redis.log"),
        ]

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 15) -> RedisServer:
        """Start it and wait until it answers PING."""
        import redis

        if self.running:
            raise RuntimeError("this Redis server is already running")
        self.process = subprocess.Popen(
            self.argv(),
            cwd=self.var_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        try:

            def answers():
                if self.process.poll() is not None:
                    raise ServiceDown(
                        f"redis-server exited with status {self.process.returncode} on port {self.port}; "
                        f"see {self.var_dir / 'redis.log'}"
                    )
                try:
                    return client.ping()
                except redis.RedisError:
                    return False

            wait_for(answers, timeout, f"redis-server on port {self.port} to answer PING")
        finally:
            client.close()
        return self

    def kill(self) -> None:
        """SIGKILL (a crash: nothing is saved, and with no persistence nothing would be read back)."""
        if self.process is not None:
            kill_group(self.process)

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process, timeout=10)


class RabbitVhost:
    """A private RabbitMQ virtual host for one run (through rabbitmqctl, where this user may run it),
    so that no other worker on the same server takes this run's messages; else the default vhost."""

    def __init__(self, base_url: str = RABBITMQ_URL):
        self.base_url = base_url
        self.name: str | None = None

    @property
    def url(self) -> str:
        if self.name is None:
            return self.base_url
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}/{quote(self.name, safe='')}"

    def acquire(self) -> RabbitVhost:
        parts = urlsplit(self.base_url)
        if not tcp_open(parts.hostname or "127.0.0.1", parts.port or 5672):
            raise ServiceDown(f"RabbitMQ does not answer on {parts.hostname}:{parts.port or 5672}")
        ctl = shutil.which("rabbitmqctl")
        user = parts.username or "guest"
        name = f"verticals_worker_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        if ctl and parts.hostname in ("127.0.0.1", "localhost"):
            try:
                subprocess.run(
                    [ctl, "add_vhost", name], check=True, capture_output=True, timeout=30
                )
                subprocess.run(
                    [ctl, "set_permissions", "-p", name, user, ".*", ".*", ".*"],
                    check=True,
                    capture_output=True,
                    timeout=30,
                )
                self.name = name
            except (subprocess.SubprocessError, OSError):
                self.name = None
        return self

    def release(self) -> None:
        ctl = shutil.which("rabbitmqctl")
        if self.name and ctl:
            subprocess.run([ctl, "delete_vhost", self.name], capture_output=True, timeout=30)
        self.name = None


def filesystem_transport_options(var_dir: Path) -> dict:
    """The filesystem broker's folders exactly as the settings build them under VERTICALS_VAR_DIR."""
    broker = Path(var_dir) / "broker"
    (broker / "processed").mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(broker),
        "data_folder_out": str(broker),
        "processed_folder": str(broker / "processed"),
        "control_folder": str(broker / "control"),
        "store_processed": False,
    }


def transport_options_for(broker_url: str, var_dir: Path) -> dict:
    if broker_url.startswith("filesystem://"):
        return filesystem_transport_options(var_dir)
    if broker_url.startswith(("redis://", "rediss://")):
        return {"visibility_timeout": 3600}
    return {}


def _reset_producers(app) -> None:
    """Close the app's broker connections and forget them, so that the next publish connects with
    the current conf. kombu keeps connection and producer pools in process-wide registries keyed by
    the connection's parameters: they are closed and emptied too (a closed pool left there would be
    handed out again the next time the same broker is used: "Acquire on closed pool")."""
    from kombu import pools

    if app._pool is not None:
        with contextlib.suppress(Exception):
            app.pool.force_close_all()
    pools.reset()
    app._pool = None
    with contextlib.suppress(AttributeError, KeyError):
        app.__dict__["amqp"]._producer_pool = None


@contextlib.contextmanager
def use_broker(app, broker_url: str, transport_options: dict) -> Iterator[None]:
    """Make this process's Celery app publish to `broker_url` (it read its broker from the
    settings at import), and put the previous broker back afterwards."""
    conf = app.conf
    saved = {
        name: conf.get(name)
        for name in (
            "broker_url",
            "broker_read_url",
            "broker_write_url",
            "broker_transport_options",
        )
    }
    _reset_producers(app)
    conf.update(
        broker_url=broker_url,
        broker_read_url=None,
        broker_write_url=None,
        broker_transport_options=dict(transport_options),
    )
    try:
        yield
    finally:
        _reset_producers(app)
        conf.update(saved)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group `pgid` (Linux /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


# --- the worker ---------------------------------------------------------------------------


def die_with_parent() -> None:
    """In the worker's child process before exec (Linux): stop when the test run that started it
    dies. A test run killed from outside (a timeout) would otherwise leave a worker consuming a
    Redis database that the next run takes over once its lock expires, stealing its jobs.

    The signal comes when the *thread* that started the process ends: start processes that must
    outlive a helper thread from the main thread."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:  # not Linux: the lock's expiry is the only guard
        pass


class LiveWorker:
    """`celery -A verticals worker` (prefork; every queue unless `queues` names some) as a subprocess in
    its own process group."""

    def __init__(
        self,
        *,
        broker_url: str,
        database_url: str,
        var_dir: Path,
        beat: bool = True,
        concurrency: int = 2,
        runner_modules: str = "tests.jobs.runners",
        env: dict | None = None,
        timings: dict | None = None,
        log_path: Path | None = None,
        queues: tuple[str, ...] = QUEUES,
    ):
        self.broker_url = broker_url
        self.queues = tuple(queues)
        self.database_url = database_url
        self.var_dir = Path(var_dir)
        self.var_dir.mkdir(parents=True, exist_ok=True)
        self.beat = beat
        self.concurrency = concurrency
        self.runner_modules = runner_modules
        self.extra_env = {**(FAST_TIMINGS if timings is None else timings), **(env or {})}
        self.log_path = Path(log_path or self.var_dir / "worker.log")
        self.transport_options = transport_options_for(broker_url, self.var_dir)
        self.process: subprocess.Popen | None = None
        self.nodename = ""
        self.starts = 0
        self._log_offset = 0

    # --- the process ----------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("JOBS_", "CELERY_", "PYTEST_"))
            and name not in {"DATABASE_URL", "VERTICALS_VAR_DIR"}
        }
        env.update(
            DJANGO_SETTINGS_MODULE="verticals.config.settings",
            DATABASE_URL=self.database_url,
            CELERY_BROKER_URL=self.broker_url,
            VERTICALS_VAR_DIR=str(self.var_dir),
            JOBS_RUNNER_MODULES=self.runner_modules,
            PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
            PYTHONUNBUFFERED="1",
            HF_HUB_OFFLINE="1",
        )
        env.update(self.extra_env)
        return env

    def argv(self) -> list[str]:
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "verticals",
            "worker",
            "-Q",
            ",".join(self.queues),
            "-P",
            "prefork",
            "-c",
            str(self.concurrency),
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            self.nodename,
            "-l",
            "INFO",
        ]
        if self.beat:
            argv += ["-B", "-s", str(self.var_dir / "celerybeat-schedule")]
        return argv

    def start(self, timeout: float = 30) -> LiveWorker:
        """Start a worker and wait until it consumes (its log says "ready.")."""
        self.launch()
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"the Celery worker was not ready within {timeout:g} s:\n" + self.log_tail()
                )
            time.sleep(0.05)
        return self

    def launch(self) -> LiveWorker:
        """Start a worker without waiting for it (`ready()` says when it consumes)."""
        if self.running:
            raise RuntimeError("the worker is already running")
        self.starts += 1
        self.nodename = f"vtest{self.starts}-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
        with open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            log.write(f"\n===== start {self.starts}: {' '.join(self.argv())}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.argv(),
                cwd=REPO,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        return self

    def ready(self) -> bool:
        """Whether the worker launched last consumes; RuntimeError when it exited instead."""
        if re.search(re.escape(self.nodename) + r" ready\.", self.log_since_start()):
            return True
        if self.process.poll() is not None:
            raise RuntimeError(
                f"the Celery worker exited with status {self.process.returncode} before it was ready:\n"
                + self.log_tail()
            )
        return False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def stop(self, timeout: float = 20) -> None:
        """Warm shutdown (SIGTERM to the main process), then SIGKILL to what is left of the group."""
        if self.process is not None:
            stop_process_group(self.process, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the whole worker: main process, pool children and embedded beat, all at once."""
        if self.process is not None:
            kill_group(self.process)

    def restart(self, timeout: float = 30) -> LiveWorker:
        self.stop()
        return self.start(timeout=timeout)

    # --- the log --------------------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_since_start(self) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_offset)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 120) -> str:
        text = self.log_text().splitlines()
        return f"--- last {min(lines, len(text))} lines of {self.log_path}\n" + "\n".join(
            text[-lines:]
        )

    def log_count(self, needle: str) -> int:
        return self.log_text().count(needle)
