"""One job lifecycle on each other broker the platform supports, with a real worker: RabbitMQ
(production's other choice) and kombu's filesystem transport (the embedded default: no server).
Redis is covered at length by test_worker.py."""

import pytest

from tests.jobs.live_worker import use_broker
from tests.jobs.test_worker import create, events, fresh, of_type, wait_end
from verticals.jobs.models import Job

pytestmark = pytest.mark.slow


@pytest.fixture
def worker_on(worker_factory, transactional_db):
    """start(broker_url): a worker on that broker, this process publishing to it until the test ends.

    Request it before the worlds, so that their jobs go to the test's broker too."""
    started = []

    def start(broker_url: str):
        worker = worker_factory(broker_url, beat=False)
        context = use_broker(worker_factory.app, worker.broker_url, worker.transport_options)
        context.__enter__()
        started.append((worker, context))
        return worker

    yield start
    for worker, context in reversed(started):
        context.__exit__(None, None, None)
        worker.stop()


@pytest.fixture
def rabbitmq_worker(rabbitmq_broker, worker_on):
    return worker_on(rabbitmq_broker.url)


@pytest.fixture
def filesystem_worker(worker_on):
    return worker_on("filesystem://")


def run_one_job(world) -> None:
    steps = 3
    job = create(world, "test.steps", {"steps": steps, "delay": 0.05})
    row = wait_end(job, 30)
    assert (row.status, row.attempt, row.result) == (
        Job.Status.SUCCEEDED,
        1,
        {"steps": steps, "attempt": 1},
    ), row.error_message
    evs = events(job)
    assert [d["status"] for d in of_type(evs, "status")] == ["queued", "running", "succeeded"]
    assert [p["current"] for p in of_type(evs, "progress")] == [1.0, 2.0, 3.0]
    assert fresh(job).progress_current == steps


def test_lifecycle_on_rabbitmq(rabbitmq_worker, world_a):
    assert rabbitmq_worker.broker_url.startswith("amqp://")
    run_one_job(world_a)


def test_lifecycle_on_the_embedded_filesystem_broker(filesystem_worker, world_a):
    """The worker and this process share the broker's folder: the one the settings build under the
    worker's VERTICALS_VAR_DIR."""
    assert filesystem_worker.transport_options["data_folder_in"] == str(
        filesystem_worker.var_dir / "broker"
    )
    run_one_job(world_a)
