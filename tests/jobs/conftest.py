import os

import pytest

import tests.jobs.runners  # noqa: F401  (registers the test job kinds)
from tests.jobs.live_worker import (
    FAST_TIMINGS,
    LiveWorker,
    RabbitVhost,
    RedisDatabase,
    ServiceDown,
    database_url,
    services_required,
    use_broker,
)


@pytest.fixture
def in_process(settings):
    """Run jobs in the test process (no worker, no heartbeat thread): for unit tests only."""
    settings.JOBS_HEARTBEAT_SECONDS = 0
    settings.JOBS_PROGRESS_SECONDS = 0
    return settings


# --- a real Celery worker -----------------------------------------------------------------
#
# `live_worker`: one `celery -A verticals worker -B` per test module, on a Redis database of its
# own, opening the test database; the test gets it with `transactional_db` (the worker sees only
# committed rows). A module may set WORKER_ENV = {"JOBS_...": "..."}: the worker gets it in its
# environment and the test process the same values as settings (both sides schedule jobs).


def service_down(reason: str):
    """Skip (fail under VERTICALS_REQUIRE_SERVICES=1, as CI sets it) when a broker is missing."""
    if services_required():
        pytest.fail(
            f"{reason} (VERTICALS_REQUIRE_SERVICES=1: the service is required here)", pytrace=False
        )
    pytest.skip(reason)


def acquired(broker):
    """A broker's test space (Redis database, RabbitMQ vhost), or a skip/fail when it is down."""
    try:
        broker.acquire()
    except ServiceDown as exc:
        service_down(str(exc))
    return broker


@pytest.fixture(scope="module")
def redis_broker():
    database = acquired(RedisDatabase())
    yield database
    database.release()


@pytest.fixture(scope="module")
def rabbitmq_broker():
    vhost = acquired(RabbitVhost())
    yield vhost
    vhost.release()


@pytest.fixture(scope="module")
def test_database_url(django_db_setup) -> str:
    """DATABASE_URL of the database the tests use (pytest-django's test database)."""
    from django.db import connection

    return database_url(connection.settings_dict)


def module_worker_env(module) -> dict:
    return {name: str(value) for name, value in getattr(module, "WORKER_ENV", {}).items()}


def settings_from_env(settings, env: dict) -> None:
    """Give the test process the JOBS_* values the worker gets (typed like the current settings)."""
    for name, raw in env.items():
        if not name.startswith("JOBS_") or not hasattr(settings, name):
            continue
        current = getattr(settings, name)
        if isinstance(current, bool):
            value = raw.strip().lower() in {"1", "true", "yes", "on"}
        elif isinstance(current, int):
            value = int(raw)
        elif isinstance(current, float):
            value = float(raw)
        elif isinstance(current, list):
            value = [item.strip() for item in raw.split(",") if item.strip()]
        else:
            value = raw
        setattr(settings, name, value)


@pytest.fixture(scope="module")
def worker_factory(test_database_url, tmp_path_factory):
    """Start workers on a given broker (stopped at the end of the module)."""
    from verticals.config.celery import app

    started: list[LiveWorker] = []

    def start(
        broker_url: str, *, beat: bool = True, env: dict | None = None, **kwargs
    ) -> LiveWorker:
        worker = LiveWorker(
            broker_url=broker_url,
            database_url=test_database_url,
            var_dir=tmp_path_factory.mktemp("worker-var"),
            beat=beat,
            env=env,
            **kwargs,
        )
        started.append(worker)
        worker.start()
        return worker

    start.app = app
    start.started = started
    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="module")
def redis_worker(request, redis_broker, worker_factory):
    """The module's worker on Redis, with the embedded beat (reaper, webhook retries); this process
    publishes to the same Redis database while the module runs."""
    worker = worker_factory(redis_broker.url, env=module_worker_env(request.module))
    with use_broker(worker_factory.app, worker.broker_url, worker.transport_options):
        yield worker
    worker.stop()


def settle_jobs(timeout: float = 15) -> None:
    """Cancel what a test left unfinished and wait for it to end, so that the database flush after the
    test does not pull rows from under a running job."""
    import time

    from verticals.jobs import engine
    from verticals.jobs.models import Job

    open_jobs = Job.dangerously_unscoped.exclude(status__in=Job.TERMINAL)
    for job in open_jobs.select_related("tenant"):
        try:
            engine.request_cancel(job)
        except Exception:  # it ended meanwhile
            pass
    deadline = time.monotonic() + timeout
    while open_jobs.exists() and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.fixture
def live_worker(request, redis_worker, transactional_db, settings) -> LiveWorker:
    """The module's live worker, for one test (rows committed; same JOBS_* settings on both sides)."""
    # The job rows carry timings taken where they are created (TTL, time limit): this process
    # creates them, so it gets the worker's short timings too.
    settings_from_env(settings, {**FAST_TIMINGS, **module_worker_env(request.module)})
    if not redis_worker.running:  # a test that killed it and failed before restarting it
        redis_worker.start()
    yield redis_worker
    if redis_worker.running:
        settle_jobs()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Show the worker's log under a failing test that used a live worker."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    workers = {id(v): v for v in funcargs.values() if isinstance(v, LiveWorker)}
    factory = funcargs.get("worker_factory")
    if factory is not None and not workers:
        workers = {id(v): v for v in getattr(factory, "started", [])}
    for worker in workers.values():
        report.sections.append(
            (
                f"Celery worker log ({report.when}, pid {worker.pid})",
                worker.log_tail(int(os.environ.get("VERTICALS_WORKER_LOG_LINES", "150"))),
            )
        )
