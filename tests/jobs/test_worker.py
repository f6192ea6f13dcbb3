"""The job engine against a real worker: `celery -A verticals worker -B` (prefork, every queue) on a
Redis database of its own, opening the test database; no eager mode anywhere in this module.

One worker serves the whole module (tests/jobs/conftest.py: `live_worker`). Its environment
(below) holds for the test process too, so both sides schedule with the same fair-share limit.
"""

import time

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.jobs.live_worker import group_members, wait_for
from tests.jobs.receiver import WebhookReceiver
from tests.jobs.sse import blocks
from verticals.jobs import engine, webhooks
from verticals.jobs.models import Job, JobEffect, JobEvent, WebhookDelivery
from verticals.jobs.tasks import run_job
from verticals.tenancy.models import Project

pytestmark = pytest.mark.slow

WEBHOOK_PROGRESS_SECONDS = 0.4
WORKER_ENV = {
    # One running job per tenant (fair share), on both sides: see test_fair_share_...
    "JOBS_MAX_RUNNING_PER_TENANT": "1",
    "JOBS_WEBHOOK_PROGRESS_SECONDS": str(WEBHOOK_PROGRESS_SECONDS),
    "JOBS_WEBHOOK_ALLOW_PRIVATE": "1",
}
Status = Job.Status
_jobs = Job.dangerously_unscoped  # tests read rows of any tenant


# --- helpers ------------------------------------------------------------------------------


def create(world, kind: str, params: dict, **extra) -> Job:
    return engine.job_create(project=world.project, kind=kind, params=params, **extra)


def jobs_url(world, *rest: str) -> str:
    return "/".join([f"/api/v1/projects/{world.project.public_id}/jobs", *rest, ""])


def api_create(world, kind: str, params: dict, **extra) -> tuple[dict, Job]:
    """Create a job through the REST API (with the world's API key): (the answer, the row)."""
    answer = world.client().post(
        jobs_url(world), {"kind": kind, "params": params, **extra}, format="json"
    )
    assert answer.status_code == 201, answer.content
    body = answer.json()
    return body, _jobs.get(public_id=body["id"])


class Sse:
    """One server-sent event as a client reads it, and when it arrived."""

    def __init__(self, event: dict):
        self.id, self.event, self.data = event["id"], event["event"], event["data"]
        self.arrived = time.monotonic()

    def __repr__(self):
        return (
            f"<{self.id} {self.event} {self.data.get('status') or self.data.get('current') or ''}>"
        )


def sse_events(response):
    """The events of a streaming response as they come (comment lines skipped)."""
    return (Sse(event) for event in blocks(response) if "comment" not in event)


def fresh(job: Job) -> Job:
    return _jobs.get(pk=job.pk)


def wait_end(job: Job, timeout: float = 20) -> Job:
    return wait_for(
        lambda: (row := fresh(job)).is_terminal and row, timeout, f"{job.public_id} to end"
    )


def wait_running(job: Job, timeout: float = 15, progress: float = 0) -> Job:
    def check():
        row = fresh(job)
        assert not row.is_terminal, (
            f"{job.public_id} ended ({row.status}: {row.error_message}) before it was seen running"
        )
        return row.status == Status.RUNNING and row.progress_current >= progress and row

    return wait_for(check, timeout, f"{job.public_id} to run (progress >= {progress})")


def events(job: Job) -> list[JobEvent]:
    return list(JobEvent.dangerously_unscoped.filter(job_id=job.pk).order_by("seq"))


def of_type(evs, kind: str) -> list[dict]:
    return [e.data for e in evs if e.type == kind]


def effect_projects(job: Job) -> dict[str, int]:
    names = Project.dangerously_unscoped.filter(
        name__startswith=f"effect {job.public_id} "
    ).values_list("name", flat=True)
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return counts


def assert_effects_once(job: Job, steps: int) -> None:
    expected = {f"effect {job.public_id} step {i}": 1 for i in range(steps)}
    assert effect_projects(job) == expected
    keys = sorted(
        JobEffect.dangerously_unscoped.filter(job_id=job.pk).values_list("key", flat=True)
    )
    assert keys == sorted(f"step-{i}" for i in range(steps))


# --- (a) lifecycle --------------------------------------------------------------------------


def test_a_job_goes_queued_running_succeeded_with_progress_events_in_order(live_worker, world_a):
    steps = 5
    body, job = api_create(world_a, "test.steps", {"steps": steps, "delay": 0.1})
    assert body["status"] == "queued" and body["attempt"] == 0
    seen = ["queued"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        row = fresh(job)
        if row.status != seen[-1]:
            seen.append(row.status)
        if row.is_terminal:
            break
        time.sleep(0.02)
    assert seen == ["queued", "running", "succeeded"], f"statuses observed while polling: {seen}"

    row = fresh(job)
    assert row.attempt == 1 and row.result == {"steps": steps, "attempt": 1}
    assert row.progress_current == row.progress_total == steps
    assert (
        row.worker.split(":")[0]
        and row.started_at <= row.finished_at
        and row.heartbeat_at is not None
    )
    assert row.resource_seconds > 0

    evs = events(job)
    assert [e.seq for e in evs] == list(range(1, row.event_seq + 1)), (
        "event ids are gap-free from 1"
    )
    assert [d["status"] for d in of_type(evs, "status")] == ["queued", "running", "succeeded"]
    progress = of_type(evs, "progress")
    assert [p["current"] for p in progress] == [float(i) for i in range(1, steps + 1)]
    assert {p["total"] for p in progress} == {float(steps)}
    assert [(m["step"], m["name"]) for m in of_type(evs, "metric")] == [
        (i, "loss") for i in range(1, steps + 1)
    ]
    assert [d["message"] for d in of_type(evs, "log")] == [
        f"step {i} of {steps} (attempt 1)" for i in range(1, steps + 1)
    ]
    kinds = [e.type for e in evs]
    running_at, ended_at = kinds.index("status", 1), len(kinds) - 1
    assert all(
        running_at < i < ended_at for i, k in enumerate(kinds) if k in ("progress", "metric", "log")
    )
    assert of_type(evs, "status")[-1]["result"] == {"steps": steps, "attempt": 1}
    assert_effects_once(job, steps)
    answer = world_a.client().get(jobs_url(world_a, job.public_id)).json()
    assert answer["status"] == "succeeded" and answer["progress"]["percent"] == 100.0
    assert answer["metrics"] == {"loss": [[i, round(1.0 / i, 4)] for i in range(1, steps + 1)]}


def test_a_failing_job_shows_the_runners_message_and_an_internal_error_only_a_plain_one(
    live_worker, world_a, world_b
):
    bad = create(world_a, "test.steps", {"steps": 3, "fail_at": 1})
    bug = create(world_b, "test.steps", {"steps": 3, "crash_at": 0})
    bad, bug = wait_end(bad), wait_end(bug)
    assert (bad.status, bad.error_code, bad.error_message) == (
        "failed",
        "job_error",
        "Step 1 found a bad row in the data.",
    )
    assert (bug.status, bug.error_code) == ("failed", "internal_error")
    assert (
        "ZeroDivisionError" in bug.error_message and "a bug in the runner" not in bug.error_message
    )
    assert "ZeroDivisionError: a bug in the runner" in bug.error_traceback  # staff only


# --- (b) cancel -----------------------------------------------------------------------------


def test_cancel_mid_run_ends_the_job_as_cancelled_within_two_seconds(live_worker, world_a):
    """The runner reports about once a second (0.9 s steps): the cancel lands at its next report."""
    _, job = api_create(world_a, "test.steps", {"steps": 30, "delay": 0.9})
    wait_running(job, progress=2)
    started = time.monotonic()
    answer = world_a.client().post(jobs_url(world_a, job.public_id, "cancel"))
    assert answer.status_code == 200 and answer.json()["cancel_requested_at"], answer.content
    row = wait_for(lambda: (r := fresh(job)).is_terminal and r, 5, "the cancelled job to end")
    elapsed = time.monotonic() - started
    assert row.status == Status.CANCELLED and row.error_code == "cancelled", row.error_message
    assert elapsed < 2.0, f"cancel took {elapsed:.2f} s"
    assert (row.finished_at - row.cancel_requested_at).total_seconds() < 2.0
    assert row.progress_current < 30
    evs = events(job)
    assert of_type(evs, "status")[-1]["status"] == "cancelled"
    assert any("Cancellation requested" in d["message"] for d in of_type(evs, "log"))
    print(
        f"\ncancel → cancelled: {elapsed * 1000:.0f} ms (database: "
        f"{(row.finished_at - row.cancel_requested_at).total_seconds() * 1000:.0f} ms)"
    )


# --- (d) a duplicated broker message --------------------------------------------------------


def test_a_duplicated_broker_message_does_not_run_the_job_twice(live_worker, world_a):
    steps = 6
    job = create(world_a, "test.steps", {"steps": steps, "delay": 0.15})
    wait_running(job, progress=1)
    for _ in range(2):  # while it runs: the second pool process gets them
        run_job.apply_async(args=[job.public_id], queue=job.queue)
    row = wait_end(job)
    run_job.apply_async(args=[job.public_id], queue=job.queue)  # and after it ended
    needle = f"job {job.public_id}: not queued for a start"
    wait_for(
        lambda: live_worker.log_count(needle) >= 3,
        10,
        "the worker to take (and drop) the 3 duplicates",
    )

    assert (
        row.status == Status.SUCCEEDED
        and row.attempt == 1
        and row.result == {"steps": steps, "attempt": 1}
    )
    assert [d["status"] for d in of_type(events(job), "status")] == [
        "queued",
        "running",
        "succeeded",
    ]
    assert_effects_once(job, steps)
    assert set(
        JobEffect.dangerously_unscoped.filter(job_id=job.pk).values_list("attempt", flat=True)
    ) == {1}


# --- (f) webhooks ---------------------------------------------------------------------------


@pytest.fixture
def receiver():
    server = WebhookReceiver().start()
    yield server
    server.stop()


def test_webhooks_are_signed_and_verify_and_a_tampered_body_fails(live_worker, world_a, receiver):
    steps = 12
    hook = {"url": receiver.url("/ok/hook"), "events": ["start", "progress", "completed"]}
    body, job = api_create(world_a, "test.steps", {"steps": steps, "delay": 0.1}, webhook=hook)
    secret = body["webhook"]["secret"]  # generated, shown in the create answer only
    assert secret.startswith("whsec_")
    wait_end(job)
    deliveries = WebhookDelivery.dangerously_unscoped.filter(job_id=job.pk)
    wait_for(
        lambda: not deliveries.filter(status="pending").exists(), 10, "every delivery to be sent"
    )
    assert set(deliveries.values_list("status", flat=True)) == {"delivered"}

    messages = {m["headers"]["webhook-id"]: m for m in receiver.messages("/ok/hook")}
    ordered = list(deliveries.order_by("pk"))
    assert sorted(messages) == sorted(d.message_id for d in ordered), (
        "one message received per delivery"
    )
    verifier = Webhook(secret)
    for delivery in ordered:
        message = messages[delivery.message_id]
        payload = verifier.verify(
            message["body"], message["headers"]
        )  # raises when the signature is wrong
        assert payload["type"] == delivery.event_type and payload["data"]["id"] == job.public_id
    types = [d.event_type for d in ordered]
    assert types[0] == "job.started" and types[-1] == "job.succeeded", types
    assert set(types[1:-1]) == {"job.progress"}, types

    # Progress deliveries are throttled: at most one per JOBS_WEBHOOK_PROGRESS_SECONDS.
    evs = events(job)
    progress_events = [e for e in evs if e.type == "progress"]
    span = (progress_events[-1].created_at - progress_events[0].created_at).total_seconds()
    sent = types.count("job.progress")
    assert 1 <= sent <= int((span + 0.05) / WEBHOOK_PROGRESS_SECONDS) + 1, (sent, span)
    assert sent < len(progress_events) == steps

    # A tampered body, or another secret, fails verification.
    message = messages[ordered[-1].message_id]
    tampered = message["body"].replace(b'"succeeded"', b'"failed"', 1)
    assert tampered != message["body"]
    with pytest.raises(WebhookVerificationError):
        verifier.verify(tampered, message["headers"])
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.new_secret()).verify(message["body"], message["headers"])
    print(
        f"\nwebhooks: {len(messages)} signed deliveries, {sent} progress of {len(progress_events)} progress events "
        f"over {span:.2f} s"
    )


def test_a_failed_webhook_delivery_is_retried_by_the_beat_sweep(live_worker, world_a, receiver):
    secret = webhooks.new_secret()
    _, job = api_create(
        world_a,
        "test.steps",
        {"steps": 1},
        webhook={"url": receiver.url("/flaky/hook"), "events": ["completed"], "secret": secret},
    )
    wait_end(job)
    deliveries = WebhookDelivery.dangerously_unscoped.filter(job_id=job.pk)
    delivery = wait_for(
        lambda: (d := deliveries.first()) and d.status != "pending" and d,
        15,
        "the delivery to be retried",
    )
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("delivered", 2, 200)
    assert [t["status"] for t in delivery.tries] == [500, 200]
    messages = receiver.messages("/flaky/hook")
    assert [m["status"] for m in messages] == [500, 200]
    assert (
        messages[0]["headers"]["webhook-id"]
        == messages[1]["headers"]["webhook-id"]
        == delivery.message_id
    )
    for message in messages:  # each try is signed afresh, and verifies
        assert (
            Webhook(secret).verify(message["body"], message["headers"])["type"] == "job.succeeded"
        )
    assert messages[1]["at"] - messages[0]["at"] >= 0.9, "the retry waited for its backoff"
    log = world_a.client().get(jobs_url(world_a, job.public_id, "deliveries")).json()["results"]
    assert [(d["status"], d["attempts"], [t["status"] for t in d["tries"]]) for d in log] == [
        ("delivered", 2, [500, 200])
    ]


# --- (e) the event stream -------------------------------------------------------------------


def test_the_event_stream_follows_a_running_job_resumes_from_last_event_id_and_ends_at_the_end(
    live_worker, world_a, settings
):
    settings.JOBS_SSE_POLL_SECONDS = 0.05
    steps = 8
    _, job = api_create(world_a, "test.steps", {"steps": steps, "delay": 0.15})
    client, url = world_a.client(), jobs_url(world_a, job.public_id, "events")

    # A first connection follows the job live, and drops after the third progress event.
    response = client.get(url, HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/event-stream")
    first = []
    for event in sse_events(response):
        first.append((event, fresh(job).status))
        if event.event == "progress" and event.data["current"] >= 3:
            break
    response.close()
    assert first[0][0].event == "status" and first[0][0].data["status"] == "queued"
    assert first[-1][1] == Status.RUNNING, "the events came while the job ran"

    # The client reconnects with Last-Event-ID: the rest, live, and the stream ends by itself at the end.
    last_id = first[-1][0].id
    response = client.get(url, HTTP_ACCEPT="text/event-stream", HTTP_LAST_EVENT_ID=str(last_id))
    second = []
    for event in sse_events(response):
        second.append((event, fresh(job).status))
    ended = time.monotonic()
    row = fresh(job)
    assert row.status == Status.SUCCEEDED
    assert second[0][0].id == last_id + 1
    assert second[-1][0].event == "status" and second[-1][0].data["status"] == "succeeded"
    assert any(status == Status.RUNNING for _, status in second), (
        "the resumed stream was live, not a replay"
    )
    assert ended - second[-1][0].arrived < 1.0

    streamed = [event for event, _ in first + second]
    assert [(e.id, e.event) for e in streamed] == [(e.seq, e.type) for e in events(job)], (
        "no event lost or repeated"
    )
    assert [e.data["current"] for e in streamed if e.event == "progress"] == [
        float(i) for i in range(1, steps + 1)
    ]

    # A finished job's stream replays what follows Last-Event-ID, then ends at once.
    middle = streamed[len(streamed) // 2].id
    started = time.monotonic()
    replay = list(
        sse_events(client.get(url, HTTP_ACCEPT="text/event-stream", HTTP_LAST_EVENT_ID=str(middle)))
    )
    assert [e.id for e in replay] == list(range(middle + 1, row.event_seq + 1))
    assert [e.data for e in replay] == [e.data for e in streamed if e.id > middle]
    assert time.monotonic() - started < 1.0


# --- (g) fair share -------------------------------------------------------------------------


def test_fair_share_runs_one_tenants_jobs_one_at_a_time_in_order_without_holding_back_another(
    live_worker, world_a, world_b, settings
):
    assert settings.JOBS_MAX_RUNNING_PER_TENANT == 1
    # The worlds' own (cancelled) jobs may have reached the worker first: let them end.
    wait_for(
        lambda: not _jobs.exclude(status__in=Job.TERMINAL).exists(),
        10,
        "the worlds' own jobs to end",
    )
    params = {"steps": 3, "delay": 0.15}
    a1, a2, a3 = (create(world_a, "test.steps", params) for _ in range(3))
    b1 = create(world_b, "test.steps", params)
    # Only the first of tenant A's jobs went to the broker; the others wait, undispatched.
    assert [fresh(j).dispatched_at is not None for j in (a1, a2, a3, b1)] == [
        True,
        False,
        False,
        True,
    ]
    rows = [wait_end(j, 30) for j in (a1, a2, a3, b1)]
    assert [r.status for r in rows] == ["succeeded"] * 4
    a1, a2, a3, b1 = rows
    assert a1.started_at < a2.started_at < a3.started_at, (
        "tenant A's jobs started in creation order"
    )
    assert a2.started_at >= a1.finished_at and a3.started_at >= a2.finished_at, (
        "tenant A's jobs overlapped"
    )
    assert b1.started_at < a1.finished_at, "tenant B's job waited behind tenant A's"


# --- (c) the worker is SIGKILLed mid-job ----------------------------------------------------


def test_sigkill_of_the_worker_mid_job_reruns_retryable_jobs_from_their_checkpoint_and_fails_the_others(
    live_worker, world_a, world_b
):
    steps = 8
    retryable = create(world_a, "test.steps", {"steps": steps, "delay": 0.3})
    fragile = create(world_b, "test.fragile", {"steps": steps, "delay": 0.3})
    wait_running(retryable, progress=3)
    wait_running(fragile, progress=1)

    live_worker.kill()  # the main process, both pool processes and the embedded beat at once
    killed_at = time.monotonic()
    assert not live_worker.running
    wait_for(
        lambda: not group_members(live_worker.pid),
        5,
        "every process of the killed worker to be gone",
    )
    at_kill = fresh(retryable)
    assert at_kill.status == Status.RUNNING and at_kill.attempt == 1
    checkpoint = (at_kill.checkpoint or {}).get("step", 0)
    assert checkpoint >= 2

    live_worker.start()  # a new worker, with beat: its reaper finds the silent jobs
    failed = wait_end(fragile, 20)
    done = wait_end(retryable, 30)
    recovered = time.monotonic() - killed_at

    assert (failed.status, failed.error_code, failed.attempt) == ("failed", "worker_lost", 1)
    assert "stopped responding" in failed.error_message

    assert done.status == Status.SUCCEEDED, done.error_message
    assert done.attempt == 2 and done.result == {"steps": steps, "attempt": 2}
    assert_effects_once(retryable, steps)
    attempts = dict(
        JobEffect.dangerously_unscoped.filter(job_id=retryable.pk).values_list("key", "attempt")
    )
    assert {attempts[f"step-{i}"] for i in range(checkpoint)} == {1}, (
        "steps before the checkpoint were not redone"
    )
    assert 2 in attempts.values()

    evs = events(retryable)
    statuses = [(d["status"], d["attempt"]) for d in of_type(evs, "status")]
    assert statuses == [
        ("queued", 0),
        ("running", 1),
        ("queued", 1),
        ("running", 2),
        ("succeeded", 2),
    ], statuses
    logs = [d["message"] for d in of_type(evs, "log")]
    assert (
        any("Requeued for attempt 2 of 3" in m for m in logs)
        and "Attempt 2 of 3 resumes from its checkpoint." in logs
    )
    second = [
        e
        for e in evs
        if e.seq
        > next(
            e.seq
            for e in evs
            if e.type == "status" and e.data["status"] == "running" and e.data["attempt"] == 2
        )
    ]
    first_progress = next(e.data["current"] for e in second if e.type == "progress")
    assert first_progress > 1, "attempt 2 started from the beginning instead of its checkpoint"
    print(
        f"\nSIGKILL → fragile failed, retryable rerun and succeeded: {recovered:.1f} s after the kill "
        f"(checkpoint at step {checkpoint}, attempt 2 resumed at step {first_progress:.0f})"
    )


def test_sigkill_of_the_pool_process_running_a_job_reruns_it_on_the_same_worker(
    live_worker, world_a
):
    """The OOM killer's case: only the process running the job dies — here right after the effect of
    step 2 and before its checkpoint, the worst moment for side effects. The worker lives on; the
    job's message comes back at once (reject on worker lost) and finds the job still running: it
    does nothing. The reaper then sees the silence and requeues the job, which resumes on a new pool
    process at step 2, whose effect it finds made and does not make again."""
    steps = 6
    job = create(world_a, "test.steps", {"steps": steps, "delay": 0.1, "die_at": 2})
    done = wait_end(job, 30)
    assert live_worker.running
    assert done.status == Status.SUCCEEDED and done.attempt == 2, done.error_message
    assert done.checkpoint == {"step": steps}
    assert_effects_once(job, steps)
    attempts = dict(
        JobEffect.dangerously_unscoped.filter(job_id=job.pk).values_list("key", "attempt")
    )
    assert attempts == {
        "step-0": 1,
        "step-1": 1,
        "step-2": 1,
        "step-3": 2,
        "step-4": 2,
        "step-5": 2,
    }
    second = of_type(events(job), "progress")
    assert [p["current"] for p in second] == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]  # attempt 1 reported 1–2, attempt 2 from 3
    # The redelivered message's log line may reach the worker's log file after the job's end.
    wait_for(
        lambda: live_worker.log_count(f"job {job.public_id}: not queued for a start") >= 1,
        10,
        "the message to be redelivered (and dropped)",
    )
