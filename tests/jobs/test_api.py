"""The jobs REST API, in-process: create, validation, list filters, retrieve, tracebacks, cancel,
the delivery log and the OpenAPI document. Jobs run by calling the worker's entry point here."""

from unittest import mock

import pytest
from django.core.management import call_command

from tests.conftest import make_key
from tests.jobs.receiver import WebhookReceiver
from verticals.jobs import engine, webhooks, worker
from verticals.jobs.models import Job
from verticals.tenancy.models import AuditEvent
from verticals.tenancy.roles import Role, Scope
from verticals.tenancy.scoping import tenant_context

Status = Job.Status
JOB_FIELDS = {
    "id",
    "project",
    "kind",
    "task",
    "queue",
    "status",
    "params",
    "progress",
    "result",
    "error",
    "attempt",
    "max_attempts",
    "worker",
    "heartbeat_at",
    "created_at",
    "started_at",
    "finished_at",
    "cancel_requested_at",
    "resource_seconds",
    "webhook",
    "created_by",
}
HOOK = "https://hooks.example.com/verticals"


@pytest.fixture(autouse=True)
def no_broker():
    """Nothing reaches a broker: dispatch and webhook sends are recorded instead."""
    with (
        mock.patch("verticals.jobs.engine.send") as send,
        mock.patch("verticals.jobs.webhooks._enqueue"),
    ):
        yield send


def jobs_url(world, project=None) -> str:
    return f"/api/v1/projects/{(project or world.project).public_id}/jobs/"


def create(world, client=None, **body):
    return (client or world.client()).post(jobs_url(world), body, format="json")


def run(world, job_id: str) -> str | None:
    engine.schedule(world.tenant.pk)
    return worker.execute(job_id)


def assert_error(answer, status: int, code: str) -> dict:
    assert answer.status_code == status, answer.content[:400]
    error = answer.json()["error"]
    assert (
        set(error) == {"code", "message", "details"} and error["code"] == code and error["message"]
    )
    return error


# --- create -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_create_answers_201_with_the_queued_job(
    world_a, no_broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        answer = create(world_a, kind="test.steps", task="sentiment", params={"steps": 3})
    assert answer.status_code == 201, answer.content
    job = answer.json()
    assert set(job) == JOB_FIELDS
    assert job["id"].startswith("job_") and job["project"] == world_a.project.public_id
    assert (job["kind"], job["task"], job["queue"], job["status"]) == (
        "test.steps",
        "sentiment",
        "train",
        "queued",
    )
    assert job["params"] == {"steps": 3} and job["result"] == {} and job["error"] is None
    assert job["progress"] == {
        "current": 0.0,
        "total": None,
        "percent": None,
        "description": "",
        "eta_seconds": None,
    }
    assert (job["attempt"], job["max_attempts"]) == (0, 3)
    assert job["created_by"] == world_a.owner.email and job["webhook"] is None
    assert (
        job["started_at"] is None
        and job["finished_at"] is None
        and job["cancel_requested_at"] is None
    )
    # After the commit the job was dispatched to its queue ("run job X" only).
    no_broker.assert_called_once_with(job["id"], "train", 86400.0)  # with the kind's time limit
    audit = AuditEvent.dangerously_unscoped.get(
        tenant=world_a.tenant, action="job.create", target_id=job["id"]
    )
    assert audit.actor.startswith("API key ") and audit.details == {
        "kind": "test.steps",
        "project": world_a.project.public_id,
    }


@pytest.mark.django_db
def test_the_webhook_secret_is_in_the_create_answer_only(world_a):
    answer = create(
        world_a, kind="test.noop", webhook={"url": HOOK, "events": ["completed", "start"]}
    )
    assert answer.status_code == 201, answer.content
    hook = answer.json()["webhook"]
    assert (
        hook["url"] == HOOK
        and hook["events"] == ["start", "completed"]
        and hook["secret"].startswith("whsec_")
    )
    job_url = jobs_url(world_a) + answer.json()["id"] + "/"
    assert world_a.client().get(job_url).json()["webhook"] == {
        "url": HOOK,
        "events": ["start", "completed"],
    }
    listed = world_a.client().get(jobs_url(world_a)).json()["results"]
    assert hook["secret"] not in str(listed)
    # A secret the integrator brings is kept (and echoed once).
    mine = webhooks.new_secret()
    again = create(world_a, kind="test.noop", webhook={"url": HOOK, "secret": mine})
    assert again.json()["webhook"] == {"url": HOOK, "events": ["completed"], "secret": mine}


@pytest.mark.django_db
def test_a_retried_create_with_the_same_idempotency_key_answers_the_same_job(world_a, no_broker):
    client = world_a.client()
    body = {"kind": "test.steps", "params": {"steps": 2}, "webhook": {"url": HOOK}}
    first = client.post(jobs_url(world_a), body, format="json", HTTP_IDEMPOTENCY_KEY="retry-me-1")
    again = client.post(jobs_url(world_a), body, format="json", HTTP_IDEMPOTENCY_KEY="retry-me-1")
    assert first.status_code == again.status_code == 201, again.content
    assert (
        again.json() == first.json()
        and again["Idempotent-Replayed"] == "true"
        and "Idempotent-Replayed" not in first
    )
    assert Job.dangerously_unscoped.filter(tenant=world_a.tenant).count() == 1
    # The same key with another request is refused; another tenant's same key is its own.
    other = client.post(
        jobs_url(world_a),
        {**body, "params": {"steps": 3}},
        format="json",
        HTTP_IDEMPOTENCY_KEY="retry-me-1",
    )
    error = assert_error(other, 422, "idempotency_key_reused")
    assert (
        "used before with a different request" in error["message"] and "new key" in error["message"]
    )
    from tests.conftest import build_world

    world_b = build_world("B")
    theirs = world_b.client().post(
        jobs_url(world_b), body, format="json", HTTP_IDEMPOTENCY_KEY="retry-me-1"
    )
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]
    # Without a key every create is a new job.
    assert create(world_a, **body).json()["id"] != first.json()["id"]
    assert_error(
        client.post(jobs_url(world_a), body, format="json", HTTP_IDEMPOTENCY_KEY="x" * 201),
        400,
        "invalid",
    )


@pytest.mark.django_db
def test_a_create_racing_another_with_the_same_key_gets_the_winners_job(world_a, no_broker):
    with tenant_context(world_a.tenant):
        winner = engine.job_create(
            project=world_a.project, kind="test.noop", idempotency_key="race"
        )
        # The loser read no job for the key before the winner committed, then hit the unique key.
        with mock.patch("verticals.jobs.engine._replay", side_effect=[None, winner]):
            loser = engine.job_create(
                project=world_a.project, kind="test.noop", idempotency_key="race"
            )
    assert loser == winner and Job.dangerously_unscoped.filter(idempotency_key="race").count() == 1


@pytest.mark.django_db
def test_a_session_creates_jobs_too_and_params_default_to_empty(world_a):
    answer = create(world_a, client=world_a.session(), kind="test.noop")
    assert (
        answer.status_code == 201
        and answer.json()["params"] == {}
        and answer.json()["queue"] == "inference"
    )
    assert answer.json()["created_by"] == world_a.owner.email


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body, field, words",
    [
        ({}, "kind", "This field is required"),
        (
            {"kind": "no.such.kind"},
            "kind",
            "Known kinds: batch_predict, evaluate, test.fragile, test.noop, test.steps, train.",
        ),
        (
            {"kind": "test.steps", "params": {"steps": 0}},
            "params",
            "steps: 0 is less than the minimum of 1",
        ),
        (
            {"kind": "test.steps", "params": {"steps": "many"}},
            "params",
            "steps: 'many' is not of type 'integer'",
        ),
        ({"kind": "test.steps"}, "params", "'steps' is a required property"),
        (
            {"kind": "test.steps", "params": [3]},
            "params",
            "Give a JSON object ({…}), not an array.",
        ),
        ({"kind": "test.noop", "params": None}, "params", "Give a JSON object ({…}), not null."),
        (
            {"kind": "test.noop", "colour": "red", "size": 3},
            "colour",
            "Unknown field; a job takes kind, task, params, webhook.",
        ),
        (
            {"kind": "test.noop", "webhook": {"url": "ftp://hooks.example.com/"}},
            "webhook.url",
            "http:// or https://",
        ),
        (
            {"kind": "test.noop", "webhook": {"url": "http://localhost:9000/h"}},
            "webhook.url",
            "public addresses only",
        ),
        (
            {"kind": "test.noop", "webhook": {"url": HOOK, "events": ["done"]}},
            "webhook.events",
            "start, progress, completed",
        ),
        (
            {"kind": "test.noop", "webhook": {"url": HOOK, "secret": "hunter2"}},
            "webhook.secret",
            "whsec_",
        ),
        (
            {"kind": "test.noop", "webhook": {"url": HOOK, "retries": 3}},
            "webhook",
            "Unknown field(s) retries",
        ),
        ({"kind": "test.noop", "webhook": {}}, "webhook.url", "Give the URL to post to"),
    ],
)
def test_bad_requests_answer_400_saying_what_to_fix(world_a, settings, body, field, words):
    settings.JOBS_WEBHOOK_ALLOW_PRIVATE = False
    error = assert_error(create(world_a, **body), 400, "invalid")
    assert error["message"].startswith(f"{field}: ") and words in error["message"], error["message"]
    assert field in error["details"]
    assert not Job.dangerously_unscoped.filter(tenant=world_a.tenant).exists()


@pytest.mark.django_db
def test_every_unknown_field_is_named(world_a):
    error = assert_error(create(world_a, kind="test.noop", colour="red", size=3), 400, "invalid")
    assert set(error["details"]) == {"colour", "size"}
    assert "colour: Unknown field" in error["message"] and "size: Unknown field" in error["message"]


@pytest.mark.django_db
def test_every_params_problem_is_in_the_details(world_a):
    error = assert_error(
        create(world_a, kind="test.steps", params={"steps": 0, "colour": "red"}), 400, "invalid"
    )
    problems = " ".join(error["details"]["params"])
    assert (
        "steps: 0 is less than the minimum of 1" in problems
        and "'colour' was unexpected" in problems
    )


@pytest.mark.django_db
def test_a_key_without_the_train_scope_cannot_create(world_a):
    _key, secret = make_key(world_a.tenant, scopes=[Scope.READ, Scope.WRITE], user=world_a.owner)
    client = world_a.client()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    error = assert_error(create(world_a, client=client, kind="test.noop"), 403, "permission_denied")
    assert "'train' scope" in error["message"]
    assert client.get(jobs_url(world_a)).status_code == 200


# --- list and retrieve --------------------------------------------------------------------


@pytest.mark.django_db
def test_list_is_newest_first_and_filters_by_status_and_kind(world_a, in_process):
    oldest = world_a.job.public_id  # a cancelled one
    first = create(world_a, kind="test.steps", params={"steps": 1}).json()["id"]
    second = create(world_a, kind="test.noop").json()["id"]
    third = create(world_a, kind="test.steps", params={"steps": 2}).json()["id"]
    assert run(world_a, first) == Status.SUCCEEDED
    client = world_a.client()

    def ids(query=""):
        answer = client.get(jobs_url(world_a) + query)
        assert answer.status_code == 200, answer.content
        return [j["id"] for j in answer.json()["results"]]

    assert ids() == [third, second, first, oldest]
    assert ids("?status=queued") == [third, second]
    assert ids("?status=succeeded") == [first]
    assert ids("?status=cancelled") == [oldest]
    assert ids("?kind=test.noop") == [second]
    assert ids("?kind=test.steps&status=queued") == [third]
    assert ids("?ordering=created_at")[0] == oldest
    page = client.get(jobs_url(world_a) + "?page_size=2").json()
    assert page["count"] == 4 and len(page["results"]) == 2 and page["next"]
    listed = page["results"][0]
    assert set(listed) == JOB_FIELDS  # no metrics or log tail in lists
    error = assert_error(client.get(jobs_url(world_a) + "?status=finished"), 400, "invalid")
    assert error["message"].startswith("status: ") and "finished" in error["message"]


@pytest.mark.django_db
def test_retrieve_after_a_run_has_metrics_and_the_log_tail(world_a, in_process):
    job_id = create(world_a, kind="test.steps", params={"steps": 3}).json()["id"]
    assert run(world_a, job_id) == Status.SUCCEEDED
    answer = world_a.client().get(jobs_url(world_a) + job_id + "/")
    assert answer.status_code == 200
    job = answer.json()
    assert set(job) == JOB_FIELDS | {"metrics", "log_tail"}
    assert (
        job["status"] == "succeeded"
        and job["result"] == {"steps": 3, "attempt": 1}
        and job["attempt"] == 1
    )
    assert (
        job["progress"]["current"] == 3
        and job["progress"]["total"] == 3
        and job["progress"]["percent"] == 100
    )
    assert (
        job["started_at"]
        and job["finished_at"]
        and job["worker"] is None
        and job["resource_seconds"] > 0
    )
    assert job["metrics"] == {"loss": [[1, 1.0], [2, 0.5], [3, 0.3333]]}
    assert [line["message"] for line in job["log_tail"]] == [
        f"step {i} of 3 (attempt 1)" for i in (1, 2, 3)
    ]
    assert all(
        set(line) == {"id", "at", "level", "message"} and line["level"] == "info"
        for line in job["log_tail"]
    )


@pytest.mark.django_db
def test_the_log_tail_is_the_last_50_lines(world_a, in_process):
    job_id = create(world_a, kind="test.steps", params={"steps": 60}).json()["id"]
    assert run(world_a, job_id) == Status.SUCCEEDED
    tail = world_a.client().get(jobs_url(world_a) + job_id + "/").json()["log_tail"]
    assert (
        len(tail) == 50
        and tail[0]["message"].startswith("step 11 of 60")
        and tail[-1]["message"].startswith("step 60 of 60")
    )


@pytest.mark.django_db
def test_the_traceback_is_for_staff_sessions_only(world_a, in_process):
    job_id = create(world_a, kind="test.steps", params={"steps": 2, "crash_at": 0}).json()["id"]
    assert run(world_a, job_id) == Status.FAILED
    url = jobs_url(world_a) + job_id + "/"
    customer = world_a.session().get(url).json()["error"]
    assert customer["code"] == "internal_error" and "ZeroDivisionError" in customer["message"]
    assert "traceback" not in customer and world_a.session().get(url).json()["worker"] is None
    world_a.owner.is_staff = True
    world_a.owner.save(update_fields=["is_staff"])
    staff = world_a.session().get(url).json()["error"]
    assert "ZeroDivisionError: a bug in the runner" in staff["traceback"]
    assert (
        world_a.session().get(url).json()["worker"].endswith(f":{__import__('os').getpid()}")
    )  # the worker too
    assert "traceback" in world_a.session().get(jobs_url(world_a)).json()["results"][0]["error"]
    # A key made by a staff member is still a key: no traceback.
    by_key = world_a.client().get(url).json()["error"]
    assert "traceback" not in by_key and by_key["message"] == customer["message"]
    # A readable failure shows its message as it is.
    readable = create(world_a, kind="test.steps", params={"steps": 2, "fail_at": 1}).json()["id"]
    assert run(world_a, readable) == Status.FAILED
    error = world_a.client().get(jobs_url(world_a) + readable + "/").json()["error"]
    assert error == {"code": "job_error", "message": "Step 1 found a bad row in the data."}


@pytest.mark.django_db
def test_a_viewer_reads_jobs_but_cannot_create_or_cancel(world_a):
    job_id = create(world_a, kind="test.noop").json()["id"]
    _key, secret = make_key(world_a.tenant, role=Role.VIEWER, user=world_a.owner)
    client = world_a.client()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert client.get(jobs_url(world_a) + job_id + "/").status_code == 200
    assert_error(create(world_a, client=client, kind="test.noop"), 403, "permission_denied")
    assert_error(client.post(jobs_url(world_a) + job_id + "/cancel/"), 403, "permission_denied")


@pytest.mark.django_db
def test_missing_projects_and_jobs_are_404(world_a, world_b):
    client = world_a.client()
    assert_error(client.get("/api/v1/projects/prj_nope/jobs/"), 404, "not_found")
    assert_error(client.get(jobs_url(world_a) + "job_nope/"), 404, "not_found")
    # B's job under A's project, and B's project: both unknown to A.
    assert_error(client.get(jobs_url(world_a) + world_b.job.public_id + "/"), 404, "not_found")
    assert_error(client.get(jobs_url(world_b)), 404, "not_found")
    assert_error(
        client.post(jobs_url(world_b), {"kind": "test.noop"}, format="json"), 404, "not_found"
    )


# --- cancel -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_cancel_a_queued_job_at_once(world_a):
    job_id = create(world_a, kind="test.steps", params={"steps": 2}).json()["id"]
    answer = world_a.client().post(jobs_url(world_a) + job_id + "/cancel/")
    assert answer.status_code == 200, answer.content
    job = answer.json()
    assert job["status"] == "cancelled" and job["cancel_requested_at"] and job["finished_at"]
    assert job["error"] == {"code": "cancelled", "message": "Cancelled before it started."}
    audit = AuditEvent.dangerously_unscoped.get(
        tenant=world_a.tenant, action="job.cancel", target_id=job_id
    )
    assert audit.actor.startswith("API key ")


@pytest.mark.django_db
def test_cancel_a_running_job_asks_its_runner_to_stop(world_a, in_process):
    job_id = create(world_a, kind="test.steps", params={"steps": 3}).json()["id"]
    engine.schedule(world_a.tenant.pk)
    job = engine.claim(job_id, "test-worker")  # running, as a worker would have it
    answer = world_a.session().post(jobs_url(world_a) + job_id + "/cancel/")
    assert answer.status_code == 200
    assert answer.json()["status"] == "running" and answer.json()["cancel_requested_at"]
    # The runner stops at its next report.
    from verticals.jobs.context import JobCancelled, JobContext

    with tenant_context(world_a.tenant), pytest.raises(JobCancelled):
        JobContext(job).report(1, 3)
    # Asking again is harmless: the same job, still stopping.
    assert (
        world_a.session().post(jobs_url(world_a) + job_id + "/cancel/").json()["status"]
        == "running"
    )


@pytest.mark.django_db
def test_cancel_a_finished_job_is_409(world_a, in_process):
    job_id = create(world_a, kind="test.noop").json()["id"]
    assert run(world_a, job_id) == Status.SUCCEEDED
    error = assert_error(
        world_a.client().post(jobs_url(world_a) + job_id + "/cancel/"), 409, "job_finished"
    )
    assert error["message"] == f"Job {job_id} has already succeeded; there is nothing to cancel."
    error = assert_error(
        world_a.client().post(jobs_url(world_a) + world_a.job.public_id + "/cancel/"),
        409,
        "job_finished",
    )
    assert "already cancelled" in error["message"]


# --- the delivery log ---------------------------------------------------------------------


@pytest.mark.django_db
def test_deliveries_are_listed_newest_first_with_every_try(world_a, in_process, settings):
    settings.JOBS_WEBHOOK_ALLOW_PRIVATE = True
    with WebhookReceiver(codes=[500]) as receiver:
        created = create(
            world_a,
            kind="test.steps",
            params={"steps": 2},
            webhook={"url": receiver.url(), "events": ["start", "completed"]},
        ).json()
        assert run(world_a, created["id"]) == Status.SUCCEEDED
        from verticals.jobs.models import WebhookDelivery

        for pk in (
            WebhookDelivery.dangerously_unscoped.filter(job__public_id=created["id"])
            .order_by("pk")
            .values_list("pk", flat=True)
        ):
            webhooks.deliver(pk)
    answer = world_a.client().get(jobs_url(world_a) + created["id"] + "/deliveries/")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["count"] == 2
    completed, started = body["results"]
    assert set(started) == {
        "id",
        "event_type",
        "status",
        "attempts",
        "response_status",
        "last_error",
        "tries",
        "created_at",
        "delivered_at",
        "next_attempt_at",
    }
    assert (completed["event_type"], completed["status"], completed["response_status"]) == (
        "job.succeeded",
        "delivered",
        200,
    )
    assert (started["event_type"], started["status"], started["response_status"]) == (
        "job.started",
        "pending",
        500,
    )
    assert (
        started["id"].startswith("whd_") and started["attempts"] == 1 and started["next_attempt_at"]
    )
    assert started["last_error"].startswith("HTTP 500") and started["tries"][0]["status"] == 500
    assert completed["delivered_at"] and completed["next_attempt_at"] is None
    # Nothing secret in the log, and a job without a webhook has an empty one.
    assert created["webhook"]["secret"] not in answer.content.decode()
    empty = world_a.client().get(jobs_url(world_a) + world_a.job.public_id + "/deliveries/").json()
    assert empty["count"] == 0 and empty["results"] == []


# --- the OpenAPI document -----------------------------------------------------------------


@pytest.mark.django_db
def test_the_openapi_document_has_the_job_routes_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    import yaml

    paths = yaml.safe_load(out.read_text())["paths"]
    base = "/api/v1/projects/{project_id}/jobs/"
    for path in ("", "{job_id}/", "{job_id}/cancel/", "{job_id}/events/", "{job_id}/deliveries/"):
        assert base + path in paths, path
    events = paths[base + "{job_id}/events/"]["get"]
    assert "text/event-stream" in events["responses"]["200"]["content"]
    assert {p["name"] for p in events["parameters"]} >= {"Last-Event-ID", "last_event_id"}
    assert {p["name"] for p in paths[base]["get"]["parameters"]} >= {"status", "kind", "page"}
