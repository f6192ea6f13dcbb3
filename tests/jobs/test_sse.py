"""The job event stream (server-sent events) under WSGI and ASGI: replay from Last-Event-ID, following
a running job, keep-alives, the time limit, the end at the terminal status, and its errors."""

import json
import queue
import threading
import time
import urllib.request
from pathlib import Path
from unittest import mock

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.test import AsyncClient

from tests.jobs.sse import parse_block
from tests.processes import fresh_env, manage, production_server
from verticals.jobs import engine, worker
from verticals.jobs.models import Job
from verticals.tenancy.roles import Role

ROOT = Path(__file__).resolve().parents[2]
Status = Job.Status
# The streams are read here, after their view returned: they must set their own scope (row-level security).
pytestmark = pytest.mark.rls


@pytest.fixture(autouse=True)
def no_broker():
    with mock.patch("verticals.jobs.engine.send"), mock.patch("verticals.jobs.webhooks._enqueue"):
        yield


@pytest.fixture
def fast_stream(settings):
    settings.JOBS_SSE_POLL_SECONDS = 0.01
    settings.JOBS_SSE_KEEPALIVE_SECONDS = 30
    settings.JOBS_SSE_MAX_SECONDS = 30
    return settings


def parse(chunk: bytes) -> dict:
    """One chunk of the stream, which is one whole SSE block."""
    text = chunk.decode()
    assert text.endswith("\n\n"), text
    return parse_block(text[:-2])


def events_url(world, job_id: str) -> str:
    return f"/api/v1/projects/{world.project.public_id}/jobs/{job_id}/events/"


def create(world, **body) -> str:
    answer = world.client().post(
        f"/api/v1/projects/{world.project.public_id}/jobs/", body, format="json"
    )
    assert answer.status_code == 201, answer.content
    return answer.json()["id"]


def run(world, job_id: str) -> str | None:
    engine.schedule(world.tenant.pk)
    return worker.execute(job_id)


def all_ids(job_id: str) -> list[int]:
    return list(range(1, Job.dangerously_unscoped.get(public_id=job_id).event_seq + 1))


# --- WSGI ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_replay_from_the_middle_of_a_finished_job_then_the_end(world_a, in_process, fast_stream):
    job_id = create(world_a, kind="test.steps", params={"steps": 3})
    assert run(world_a, job_id) == Status.SUCCEEDED
    ids = all_ids(job_id)
    middle = ids[len(ids) // 2]
    answer = world_a.client().get(
        events_url(world_a, job_id), HTTP_LAST_EVENT_ID=str(middle), HTTP_ACCEPT="text/event-stream"
    )
    assert answer.status_code == 200 and answer.streaming
    assert answer["Content-Type"] == "text/event-stream"
    assert answer["Cache-Control"] == "no-cache" and answer["X-Accel-Buffering"] == "no"
    started = time.monotonic()
    events = [parse(chunk) for chunk in answer.streaming_content]  # ends by itself
    assert time.monotonic() - started < 5
    assert [e["id"] for e in events] == ids[middle:]
    last = events[-1]
    assert (
        last["event"] == "status"
        and last["data"]["status"] == "succeeded"
        and last["data"]["result"] == {"steps": 3, "attempt": 1}
    )
    assert {e["event"] for e in events} <= {"status", "progress", "metric", "log"}


@pytest.mark.django_db
def test_a_full_replay_has_every_kind_of_event_in_order(world_a, in_process, fast_stream):
    job_id = create(world_a, kind="test.steps", params={"steps": 2})
    assert run(world_a, job_id) == Status.SUCCEEDED
    events = [parse(c) for c in world_a.client().get(events_url(world_a, job_id)).streaming_content]
    assert [e["id"] for e in events] == all_ids(job_id)
    assert [e["data"]["status"] for e in events if e["event"] == "status"] == [
        "queued",
        "running",
        "succeeded",
    ]
    progress = [e["data"] for e in events if e["event"] == "progress"]
    assert [(p["current"], p["total"]) for p in progress] == [
        (1, 2),
        (2, 2),
    ] and "eta_seconds" in progress[0]
    assert [
        (e["data"]["step"], e["data"]["name"], e["data"]["value"])
        for e in events
        if e["event"] == "metric"
    ] == [(1, "loss", 1.0), (2, "loss", 0.5)]
    assert [e["data"]["message"] for e in events if e["event"] == "log"] == [
        "step 1 of 2 (attempt 1)",
        "step 2 of 2 (attempt 1)",
    ]
    assert all(e["data"]["at"] for e in events)


@pytest.mark.django_db
def test_after_the_last_event_of_a_finished_job_the_stream_closes_at_once(world_a, fast_stream):
    last = all_ids(world_a.job.public_id)[-1]
    answer = world_a.client().get(
        events_url(world_a, world_a.job.public_id), HTTP_LAST_EVENT_ID=str(last)
    )
    assert answer.status_code == 200 and list(answer.streaming_content) == []
    # The query parameter does the same for clients that cannot set headers; the header wins.
    answer = world_a.client().get(events_url(world_a, world_a.job.public_id) + "?last_event_id=1")
    assert [parse(c)["id"] for c in answer.streaming_content] == [2]
    answer = world_a.client().get(
        events_url(world_a, world_a.job.public_id) + "?last_event_id=0", HTTP_LAST_EVENT_ID="1"
    )
    assert [parse(c)["id"] for c in answer.streaming_content] == [2]


@pytest.mark.django_db
def test_the_stream_of_an_unfinished_job_follows_new_events_until_the_end(
    world_a, in_process, fast_stream
):
    job_id = create(world_a, kind="test.steps", params={"steps": 3})
    answer = world_a.session().get(events_url(world_a, job_id))
    stream = iter(answer.streaming_content)
    first = parse(next(stream))
    assert first["id"] == 1 and first["data"]["status"] == "queued"
    # The job runs while the client listens; the stream picks its events up and ends with it.
    assert run(world_a, job_id) == Status.SUCCEEDED
    rest = [parse(chunk) for chunk in stream]
    assert [e["id"] for e in [first, *rest]] == all_ids(job_id)
    assert rest[-1]["event"] == "status" and rest[-1]["data"]["status"] == "succeeded"


@pytest.mark.django_db
def test_a_cancelled_job_ends_its_stream_and_quiet_times_get_keep_alives(world_a, fast_stream):
    fast_stream.JOBS_SSE_KEEPALIVE_SECONDS = 0.05
    job_id = create(world_a, kind="test.steps", params={"steps": 3})
    stream = iter(world_a.client().get(events_url(world_a, job_id)).streaming_content)
    assert parse(next(stream))["data"]["status"] == "queued"
    started = time.monotonic()
    assert parse(next(stream)) == {"comment": "keep-alive"}
    assert time.monotonic() - started >= 0.04
    assert (
        world_a.client()
        .post(f"/api/v1/projects/{world_a.project.public_id}/jobs/{job_id}/cancel/")
        .status_code
        == 200
    )
    rest = [parse(chunk) for chunk in stream]
    rest = [e for e in rest if "comment" not in e]
    assert rest[-1]["event"] == "status" and rest[-1]["data"]["status"] == "cancelled"
    assert rest[-1]["data"]["error"] == {
        "code": "cancelled",
        "message": "Cancelled before it started.",
    }


@pytest.mark.django_db
def test_the_stream_closes_after_its_time_limit(world_a, fast_stream):
    fast_stream.JOBS_SSE_MAX_SECONDS = 0.2
    job_id = create(world_a, kind="test.steps", params={"steps": 3})
    started = time.monotonic()
    events = [parse(c) for c in world_a.client().get(events_url(world_a, job_id)).streaming_content]
    assert 0.15 <= time.monotonic() - started < 3
    assert [e["id"] for e in events] == [1]  # the client reconnects with Last-Event-ID: 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header, query, field",
    [
        ("abc", None, "Last-Event-ID"),
        ("-3", None, "Last-Event-ID"),
        ("1.5", None, "Last-Event-ID"),
        (None, "x", "last_event_id"),
    ],
)
def test_a_bad_last_event_id_is_400(world_a, header, query, field):
    extra = {"HTTP_LAST_EVENT_ID": header} if header is not None else {}
    url = events_url(world_a, world_a.job.public_id) + (f"?last_event_id={query}" if query else "")
    answer = world_a.client().get(url, HTTP_ACCEPT="text/event-stream", **extra)
    assert answer.status_code == 400 and answer["Content-Type"] == "application/json"
    error = answer.json()["error"]
    assert error["code"] == "invalid" and error["message"].startswith(
        f"{field}: Give the id of the last event"
    )


@pytest.mark.django_db
def test_errors_head_and_options_answer_plainly_to_an_event_source(world_a, world_b):
    accept = {"HTTP_ACCEPT": "text/event-stream"}
    client = world_a.client()
    # Another tenant's job, a missing one: 404 in the error shape (not 406).
    for job_id in (world_b.job.public_id, "job_nope"):
        answer = client.get(events_url(world_a, job_id), **accept)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    # A role without job.view: 403.
    from tests.conftest import make_key

    _key, secret = make_key(world_a.tenant, role=Role.BILLING, user=world_a.owner)
    billing = world_a.client()
    billing.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    answer = billing.get(events_url(world_a, world_a.job.public_id), **accept)
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "permission_denied"
    # HEAD: the stream's headers, no body (and no stream held open).
    head = client.head(events_url(world_a, world_a.job.public_id), **accept)
    assert (
        head.status_code == 200
        and head["Content-Type"] == "text/event-stream"
        and not head.streaming
    )
    assert head.content == b""
    options = client.options(events_url(world_a, world_a.job.public_id), **accept)
    assert options.status_code == 405 and options.json()["error"]["code"] == "method_not_allowed"
    post = client.post(events_url(world_a, world_a.job.public_id), **accept)
    assert post.status_code == 405 and post.json()["error"]["code"] == "method_not_allowed"
    # Unauthenticated: 401 in the error shape.
    from rest_framework.test import APIClient

    answer = APIClient().get(events_url(world_a, world_a.job.public_id), **accept)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "not_authenticated"


# --- ASGI ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_under_asgi_the_stream_is_asynchronous_and_follows_the_job(
    world_a, in_process, fast_stream
):
    job_id = create(world_a, kind="test.steps", params={"steps": 2})
    auth = {"Authorization": f"Bearer {world_a.secret}"}

    async def scenario():
        client = AsyncClient()
        answer = await client.get(
            events_url(world_a, job_id),
            headers={**auth, "Accept": "text/event-stream", "Last-Event-ID": "0"},
        )
        assert answer.status_code == 200 and answer["Content-Type"] == "text/event-stream"
        assert answer.is_async  # Django would read a sync iterator whole before sending a byte
        chunks = aiter(answer.streaming_content)
        first = parse(await anext(chunks))
        await sync_to_async(run)(world_a, job_id)
        rest = [parse(chunk) async for chunk in chunks]
        return [first, *rest]

    events = async_to_sync(scenario)()
    assert [e["id"] for e in events] == all_ids(job_id)
    assert events[0]["data"]["status"] == "queued" and events[-1]["data"]["status"] == "succeeded"


@pytest.mark.django_db
def test_under_asgi_errors_are_json(world_a, world_b):
    auth = {"Authorization": f"Bearer {world_a.secret}"}
    theirs, mine = (
        events_url(world_a, world_b.job.public_id),
        events_url(world_a, world_a.job.public_id),
    )

    async def scenario():
        client = AsyncClient()
        missing = await client.get(theirs, headers={**auth, "Accept": "text/event-stream"})
        bad = await client.get(mine, headers={**auth, "Last-Event-ID": "soon"})
        return missing, bad

    missing, bad = async_to_sync(scenario)()
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("Last-Event-ID:")


@pytest.mark.slow
def test_a_real_asgi_server_streams_events_as_they_happen(tmp_path):
    """Under gunicorn + uvicorn, the first event arrives while the job is still queued (nothing is
    buffered), and the stream ends when the job is cancelled from another connection."""
    env = fresh_env(
        tmp_path,
        JOBS_RUNNER_MODULES="tests.jobs.runners",
        JOBS_SSE_POLL_SECONDS="0.05",
        JOBS_SSE_KEEPALIVE_SECONDS="30",
        JOBS_SSE_MAX_SECONDS="60",
    )
    manage(env, "migrate", "--noinput")
    world = json.loads(
        manage(env, "bootstrap", "--partner", "P", "--tenant", "T", "--email", "o@example.com")
    )
    auth = {"Authorization": f"Bearer {world['api_key']}"}

    def call(url, method="GET", body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            url, data=data, method=method, headers={**auth, "Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    with production_server(env) as server_url:
        base = f"{server_url}/api/v1/projects/{world['project']['id']}/jobs/"
        job = call(base, "POST", {"kind": "test.steps", "params": {"steps": 3}})
        lines: queue.Queue = queue.Queue()

        def listen():
            request = urllib.request.Request(
                base + job["id"] + "/events/", headers={**auth, "Accept": "text/event-stream"}
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                lines.put(("headers", response.headers.get("Content-Type")))
                for line in response:
                    lines.put(("line", line.decode().rstrip("\n")))
            lines.put(("end", None))

        threading.Thread(target=listen, daemon=True).start()
        assert lines.get(timeout=10) == ("headers", "text/event-stream")
        received = []
        while not any(line.startswith("data: ") for line in received):
            kind, line = lines.get(
                timeout=10
            )  # arrives while the job waits: the stream is not buffered
            received.append(line)
        assert received[:2] == ["id: 1", "event: status"] and '"status":"queued"' in received[2]
        assert call(base + job["id"] + "/cancel/", "POST", {})["status"] == "cancelled"
        while True:
            kind, line = lines.get(timeout=10)
            if kind == "end":
                break
            received.append(line)
        data = [json.loads(line[len("data: ") :]) for line in received if line.startswith("data: ")]
        assert [d["id"] for d in data] == [1, 2] and data[-1]["status"] == "cancelled"
