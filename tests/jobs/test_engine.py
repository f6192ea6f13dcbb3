"""The job lifecycle in-process (no worker process, no broker): these unit tests run jobs eagerly
by calling the worker's entry point in the test process. tests/jobs/test_worker*.py runs the
same things on real worker processes."""

from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.utils import timezone

from tests.conftest import build_world
from verticals.billing.models import UsageEvent
from verticals.jobs import engine, runners, worker
from verticals.jobs.context import JobContext, JobSuperseded
from verticals.jobs.models import Job, JobEffect, JobEvent
from verticals.tenancy.models import Project
from verticals.tenancy.scoping import tenant_context

Status = Job.Status


@pytest.fixture(autouse=True)
def no_broker():
    """Dispatch records what it would send instead of talking to a broker."""
    with mock.patch("verticals.jobs.engine.send") as send:
        yield send


def make_job(world, kind="test.steps", params=None, **kwargs) -> Job:
    with tenant_context(world.tenant):
        return engine.job_create(
            project=world.project,
            kind=kind,
            params={"steps": 3} if params is None else params,
            **kwargs,
        )


def start(world, job) -> str | None:
    engine.schedule(world.tenant.pk)
    return worker.execute(job.public_id)


def reload(job) -> Job:
    return Job.dangerously_unscoped.get(pk=job.pk)


def events(job, type_=None) -> list[JobEvent]:
    rows = JobEvent.dangerously_unscoped.filter(job=job).order_by("seq")
    return list(rows.filter(type=type_) if type_ else rows)


def effects(job) -> list[str]:
    return sorted(
        Project.dangerously_unscoped.filter(
            name__startswith=f"effect {job.public_id} "
        ).values_list("name", flat=True)
    )


# --- the runner contract ------------------------------------------------------------------


def test_registering_a_bad_runner_names_the_problem():
    class NoKind(runners.Runner):
        pass

    class BadQueue(runners.Runner):
        kind = "test.badqueue"
        queue = "gpu"

    class BadSchema(runners.Runner):
        kind = "test.badschema"
        params_schema = {"type": "no-such-type"}

    class Taken(runners.Runner):
        kind = "test.steps"

    with pytest.raises(ImproperlyConfigured, match="has no `kind`"):
        runners.register(NoKind)
    with pytest.raises(
        ImproperlyConfigured, match="queues are train, optimize, inference, default"
    ):
        runners.register(BadQueue)
    with pytest.raises(Exception, match="no-such-type"):
        runners.register(BadSchema)
    with pytest.raises(ImproperlyConfigured, match="registered twice"):
        runners.register(Taken)
    with pytest.raises(ImproperlyConfigured, match="not a Runner subclass"):
        runners.register(object)
    assert runners.get_runner("test.steps").__name__ == "Steps"


@pytest.mark.django_db
def test_create_validates_kind_and_params(world_a):
    with pytest.raises(ValidationError) as unknown:
        make_job(world_a, kind="nope")
    assert "Unknown job kind 'nope'" in str(unknown.value) and "test.steps" in str(unknown.value)
    with pytest.raises(ValidationError) as bad:
        make_job(world_a, params={"steps": 0, "colour": "red"})
    text = str(bad.value.message_dict["params"])
    assert "steps: 0 is less than the minimum of 1" in text
    assert "'colour' was unexpected" in text
    with pytest.raises(ValidationError, match="'steps' is a required property"):
        make_job(world_a, params={})
    assert not Job.dangerously_unscoped.exists()


@pytest.mark.django_db
def test_a_job_runs_to_success_with_ordered_events(world_a, in_process):
    job = make_job(world_a, params={"steps": 4})
    assert job.status == Status.QUEUED and job.queue == "train" and job.max_attempts == 3
    assert start(world_a, job) == Status.SUCCEEDED
    job = reload(job)
    assert (
        job.status == Status.SUCCEEDED
        and job.attempt == 1
        and job.result == {"steps": 4, "attempt": 1}
    )
    assert job.progress_current == 4 and job.percent == 100 and job.started_at <= job.finished_at
    assert job.resource_seconds > 0 and job.worker.endswith(f":{__import__('os').getpid()}")
    seqs = [e.seq for e in events(job)]
    assert seqs == list(range(1, len(seqs) + 1)) and job.event_seq == seqs[-1]
    assert [e.data["status"] for e in events(job, "status")] == ["queued", "running", "succeeded"]
    assert [e.data["current"] for e in events(job, "progress")] == [1, 2, 3, 4]
    assert [(e.data["step"], e.data["value"]) for e in events(job, "metric")] == [
        (1, 1.0),
        (2, 0.5),
        (3, 0.3333),
        (4, 0.25),
    ]
    assert len(effects(job)) == 4
    # The worker's scratch space is gone after the attempt.
    from django.conf import settings

    assert not (settings.JOBS_SCRATCH_DIR / job.public_id).exists()


@pytest.mark.django_db
def test_a_duplicate_or_stale_message_does_nothing(world_a, in_process):
    job = make_job(world_a)
    assert start(world_a, job) == Status.SUCCEEDED
    assert worker.execute(job.public_id) is None  # redelivered after the job finished
    job = reload(job)
    assert job.attempt == 1 and [e.data["status"] for e in events(job, "status")] == [
        "queued",
        "running",
        "succeeded",
    ]
    assert len(effects(job)) == 3


@pytest.mark.django_db
def test_two_messages_racing_to_start_a_job_start_it_once(world_a, in_process):
    job = make_job(world_a)
    engine.schedule(world_a.tenant.pk)
    first, second = engine.claim(job.public_id, "w:1"), engine.claim(job.public_id, "w:2")
    assert first is not None and first.worker == "w:1" and second is None
    assert reload(job).attempt == 1 and [e.data["status"] for e in events(job, "status")] == [
        "queued",
        "running",
    ]


@pytest.mark.django_db
def test_failures_show_a_readable_message_and_keep_the_traceback_for_staff(world_a, in_process):
    readable = make_job(world_a, params={"steps": 3, "fail_at": 1})
    assert start(world_a, readable) == Status.FAILED
    readable = reload(readable)
    assert (
        readable.error_code == "job_error"
        and readable.error_message == "Step 1 found a bad row in the data."
    )
    assert len(effects(readable)) == 1  # step 0 happened before the failure

    bug = make_job(world_a, params={"steps": 3, "crash_at": 0})
    assert start(world_a, bug) == Status.FAILED
    bug = reload(bug)
    assert bug.error_code == "internal_error" and "ZeroDivisionError" in bug.error_message
    assert (
        "Traceback" not in bug.error_message
        and "ZeroDivisionError: a bug in the runner" in bug.error_traceback
    )
    assert events(bug, "status")[-1].data["error"] == {
        "code": "internal_error",
        "message": bug.error_message,
    }


# --- fair share ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_fair_share_dispatches_in_order_up_to_the_tenant_limit(
    world_a, in_process, no_broker, django_capture_on_commit_callbacks
):
    in_process.JOBS_MAX_RUNNING_PER_TENANT = 2
    world_b = build_world("B")
    jobs = [make_job(world_a) for _ in range(4)]
    other = make_job(world_b)
    assert engine.schedule(world_a.tenant.pk) == [jobs[0].public_id, jobs[1].public_id]
    assert engine.schedule(world_a.tenant.pk) == []  # nothing more while two are out
    assert engine.schedule(world_b.tenant.pk) == [other.public_id]  # B is not held back by A
    # A waiting job cannot be started by a stray message: it would jump the line.
    assert worker.execute(jobs[3].public_id) is None and reload(jobs[3]).status == Status.QUEUED
    with django_capture_on_commit_callbacks(execute=True):
        assert worker.execute(jobs[0].public_id) == Status.SUCCEEDED
    assert reload(jobs[2]).dispatched_at is not None and reload(jobs[3]).dispatched_at is None
    # Only the callbacks captured around the finish ran: the freed slot went to the next in line.
    assert [c.args[0] for c in no_broker.call_args_list] == [jobs[2].public_id]


@pytest.mark.django_db
def test_a_suspended_tenants_jobs_wait_until_it_is_reactivated(world_a, in_process):
    from verticals.tenancy.services import tenant_reactivate, tenant_suspend

    job = make_job(world_a)
    tenant_suspend(tenant=world_a.tenant, reason="unpaid")
    assert engine.schedule(world_a.tenant.pk) == [] and engine.reap()["redispatched"] == []
    assert reload(job).dispatched_at is None
    tenant_reactivate(tenant=world_a.tenant)
    engine.reap()  # its periodic pass picks the waiting jobs up
    assert reload(job).dispatched_at is not None


@pytest.mark.django_db
def test_no_limit_when_the_setting_is_zero(world_a, in_process):
    in_process.JOBS_MAX_RUNNING_PER_TENANT = 0
    jobs = [make_job(world_a) for _ in range(6)]
    assert engine.schedule(world_a.tenant.pk) == [j.public_id for j in jobs]


# --- cancelling ---------------------------------------------------------------------------


class SelfCancel(runners.Runner):
    """Asks for its own cancellation at step 2, as a user would from outside."""

    kind = "test.selfcancel"

    def run(self, ctx):
        for i in range(5):
            if i == 2:
                engine.request_cancel(ctx.job)
            ctx.report(i + 1, 5)
        return {"finished": True}


@pytest.fixture
def selfcancel():
    runners.register(SelfCancel)
    yield
    runners.unregister(SelfCancel.kind)


@pytest.mark.django_db
def test_cancel_a_queued_job_at_once_and_a_running_one_at_its_next_report(
    world_a, in_process, selfcancel
):
    queued = make_job(world_a)
    queued = engine.request_cancel(queued)
    assert (
        queued.status == Status.CANCELLED
        and queued.finished_at
        and queued.error_message == "Cancelled before it started."
    )
    assert worker.execute(queued.public_id) is None
    with pytest.raises(ValidationError, match="has already cancelled"):
        engine.request_cancel(queued)

    running = make_job(world_a, kind="test.selfcancel", params={})
    assert start(world_a, running) == Status.CANCELLED
    running = reload(running)
    assert (
        running.progress_current == 3 and running.result == {}
    )  # the report that saw the request stopped it
    assert [e.data["status"] for e in events(running, "status")] == [
        "queued",
        "running",
        "cancelled",
    ]
    assert any("Cancellation requested" in e.data["message"] for e in events(running, "log"))


@pytest.mark.django_db
def test_a_cancel_that_arrives_after_the_job_finished_is_refused_and_not_audited(
    world_a, in_process
):
    from verticals.tenancy.models import AuditEvent

    job = make_job(world_a)
    engine.schedule(world_a.tenant.pk)
    seen_running = engine.claim(job.public_id, "w:1")  # what the canceller read …
    engine.finish(
        seen_running, 1, Status.SUCCEEDED, result={"done": True}
    )  # … before the job ended
    with pytest.raises(ValidationError, match="has already succeeded"):
        engine.request_cancel(seen_running)
    assert reload(job).status == Status.SUCCEEDED and reload(job).cancel_requested_at is None
    assert not AuditEvent.dangerously_unscoped.filter(
        action="job.cancel", target_id=job.public_id
    ).exists()


# --- the reaper ---------------------------------------------------------------------------


def go_silent(job, *, attempt=1, seconds=120, checkpoint=None):
    """Make `job` look like attempt `attempt` is running on a worker that died `seconds` ago."""
    Job.dangerously_unscoped.filter(pk=job.pk).update(
        status=Status.RUNNING,
        attempt=attempt,
        worker="gone:1",
        dispatched_at=timezone.now(),
        heartbeat_at=timezone.now() - timedelta(seconds=seconds),
        checkpoint=checkpoint,
    )


@pytest.mark.django_db
def test_reaper_requeues_a_retryable_job_which_resumes_without_redoing_effects(world_a, in_process):
    job = make_job(world_a, params={"steps": 4})
    # The dead attempt made the effects of steps 0 and 1 but died before its checkpoint after step 1.
    go_silent(job, checkpoint={"step": 1})
    with tenant_context(world_a.tenant):
        for i in range(2):
            JobEffect.objects.create(tenant=world_a.tenant, job=job, key=f"step-{i}", attempt=1)
            Project.objects.create(tenant=world_a.tenant, name=f"effect {job.public_id} step {i}")
    fresh = make_job(world_a)
    go_silent(fresh, seconds=1)  # a live worker: left alone
    report = engine.reap()
    assert report["requeued"] == [job.public_id] and report["failed"] == []
    requeued = reload(job)
    assert (
        requeued.status == Status.QUEUED
        and requeued.dispatched_at is not None
        and requeued.worker == ""
    )
    assert "stopped responding" in events(job, "log")[-1].data["message"]
    assert events(job, "status")[-1].data == {
        "status": "queued",
        "attempt": 1,
        "reason": "worker_lost",
    }
    assert reload(fresh).status == Status.RUNNING

    assert worker.execute(job.public_id) == Status.SUCCEEDED
    job = reload(job)
    assert job.attempt == 2 and job.result == {"steps": 4, "attempt": 2}
    assert effects(job) == [f"effect {job.public_id} step {i}" for i in range(4)]
    assert [e.data["current"] for e in events(job, "progress")] == [
        2,
        3,
        4,
    ]  # resumed at its checkpoint
    assert (
        JobEffect.dangerously_unscoped.get(job=job, key="step-1").attempt == 1
    )  # step 1 redone, its effect not


@pytest.mark.django_db
def test_reaper_fails_what_it_may_not_rerun(world_a, in_process):
    fragile = make_job(world_a, kind="test.fragile")
    go_silent(fragile)
    exhausted = make_job(world_a)
    go_silent(exhausted, attempt=3)
    cancelling = make_job(world_a)
    go_silent(cancelling)
    Job.dangerously_unscoped.filter(pk=cancelling.pk).update(cancel_requested_at=timezone.now())
    report = engine.reap()
    assert sorted(report["failed"]) == sorted([fragile.public_id, exhausted.public_id])
    assert report["cancelled"] == [cancelling.public_id]
    for job in (fragile, exhausted):
        job = reload(job)
        assert job.status == Status.FAILED and job.error_code == "worker_lost"
        assert "stopped responding" in job.error_message and "start it again" in job.error_message
    assert reload(cancelling).status == Status.CANCELLED
    assert engine.reap() == {"requeued": [], "failed": [], "cancelled": [], "redispatched": []}


@pytest.mark.django_db
def test_reaper_ends_a_run_that_ignores_its_cancel_or_outlives_its_time_limit(world_a, in_process):
    stubborn = make_job(world_a)
    go_silent(stubborn, seconds=1)  # alive and beating …
    Job.dangerously_unscoped.filter(pk=stubborn.pk).update(
        cancel_requested_at=timezone.now() - timedelta(seconds=31)
    )
    endless = make_job(world_a)
    go_silent(endless, seconds=1)
    Job.dangerously_unscoped.filter(pk=endless.pk).update(
        started_at=timezone.now() - timedelta(days=1, seconds=1)
    )
    patient = make_job(world_a)
    go_silent(patient, seconds=1)
    Job.dangerously_unscoped.filter(pk=patient.pk).update(
        cancel_requested_at=timezone.now() - timedelta(seconds=5)
    )
    report = engine.reap()
    assert report["cancelled"] == [stubborn.public_id] and report["failed"] == [endless.public_id]
    assert (
        "did not stop within 30 s of the cancellation"
        in events(stubborn, "log")[-1].data["message"]
    )
    endless = reload(endless)
    assert (
        endless.error_code == "time_limit"
        and endless.error_message == "The job ran past its time limit of 24 h and was stopped."
    )
    assert reload(patient).status == Status.RUNNING  # still inside its grace
    # The stubborn attempt learns at its next report that it lost the job.
    ctx = JobContext(
        Job.dangerously_unscoped.select_related("tenant", "project").get(pk=stubborn.pk)
    )
    ctx.attempt = 1
    with pytest.raises(JobSuperseded):
        ctx.report(2, 3)


@pytest.mark.django_db
def test_a_superseded_attempt_cannot_write_or_finish(world_a, in_process):
    job = make_job(world_a)
    engine.schedule(world_a.tenant.pk)
    claimed = engine.claim(job.public_id, "w:1")
    ctx = JobContext(claimed)
    go_silent(job)  # attempt 1 looks dead to the reaper …
    engine.reap()  # … which requeues the job; attempt 1 is in fact still going
    with pytest.raises(JobSuperseded):
        ctx.report(1, 3, {"loss": 1.0})
    assert not engine.finish(claimed, 1, Status.SUCCEEDED, result={"late": True})
    assert reload(job).status == Status.QUEUED and reload(job).result == {}
    assert not events(job, "metric")


@pytest.mark.django_db
def test_reaper_resends_a_start_that_was_never_picked_up(world_a, in_process, no_broker):
    job = make_job(world_a)
    engine.schedule(world_a.tenant.pk)
    Job.dangerously_unscoped.filter(pk=job.pk).update(
        dispatched_at=timezone.now() - timedelta(hours=1)
    )
    no_broker.reset_mock()
    assert engine.reap()["redispatched"] == [job.public_id]
    assert [c.args[0] for c in no_broker.call_args_list] == [job.public_id]


# --- compute and its usage ----------------------------------------------------------------


class WorkerKilled(BaseException):
    """The worker process dying at this point (a SIGKILL): nothing after it runs, no handler sees it."""


def usage(job) -> dict[str, Decimal]:
    """The job's usage events in the ledger: idempotency key → quantity."""
    return dict(
        UsageEvent.dangerously_unscoped.filter(
            source="jobs", idempotency_key__startswith=f"{job.public_id}:"
        ).values_list("idempotency_key", "quantity")
    )


@pytest.mark.django_db
def test_an_attempt_is_billed_in_the_transaction_that_ends_it(world_a, in_process):
    """Found by the chaos soak (test_chaos.py, on PostgreSQL): a worker killed after it wrote an
    attempt's end and before it wrote the attempt's usage left a succeeded job whose compute was
    never billed. The end, the row's seconds and the ledger event now commit together: a worker
    that dies at the ledger write takes the end with it (the job still runs; the reaper reruns it)."""
    job = make_job(world_a)
    with (
        mock.patch("verticals.billing.port.record_job_seconds", side_effect=WorkerKilled),
        pytest.raises(WorkerKilled),
    ):
        start(world_a, job)
    row = reload(job)
    assert (row.status, row.attempt, row.resource_seconds) == (Status.RUNNING, 1, 0)
    assert usage(job) == {}

    go_silent(job)
    assert engine.reap()["requeued"] == [job.public_id]
    assert start(world_a, job) == Status.SUCCEEDED
    row = reload(job)
    assert row.attempt == 2 and row.resource_seconds > 0
    assert usage(job) == {
        f"{job.public_id}:2": Decimal(repr(row.resource_seconds))
    }  # to the micro-second


@pytest.mark.django_db
def test_a_superseded_attempt_is_billed_what_the_row_counts(world_a, in_process):
    job = make_job(world_a)
    engine.schedule(world_a.tenant.pk)
    claimed = engine.claim(job.public_id, "w:1")
    go_silent(job)
    engine.reap()  # attempt 1 is given up on; it was in fact still going, and ends later
    engine.add_resource_seconds(claimed, 1, 0.1234567)
    assert (
        reload(job).resource_seconds == 0.123457
    )  # the ledger's micro-seconds, not the clock's digits
    assert usage(job) == {f"{job.public_id}:1": Decimal("0.123457")}


# --- the context --------------------------------------------------------------------------


@pytest.mark.django_db
def test_progress_rows_are_throttled_but_metrics_and_the_last_step_are_kept(world_a, in_process):
    in_process.JOBS_PROGRESS_SECONDS = 3600
    job = make_job(world_a)
    engine.schedule(world_a.tenant.pk)
    ctx = JobContext(engine.claim(job.public_id, "w:1"))
    with tenant_context(world_a.tenant):
        for step in range(1, 101):
            ctx.report(step, 100, {"loss": 1 / step} if step % 10 == 0 else None)
    # The first report is written (the job visibly started), then only those with metrics, and the last.
    assert [e.data["current"] for e in events(job, "progress")] == [1.0] + [
        float(s) for s in range(10, 101, 10)
    ]
    assert len(events(job, "metric")) == 10
    assert reload(job).progress_current == 100


@pytest.mark.django_db
def test_eta_comes_from_the_rate_of_this_attempt(world_a, in_process):
    job = make_job(world_a)
    engine.schedule(world_a.tenant.pk)
    ctx = JobContext(engine.claim(job.public_id, "w:1"))
    clock = iter([100.0, 110.0])
    with (
        mock.patch("verticals.jobs.context.time.monotonic", side_effect=lambda: next(clock)),
        tenant_context(world_a.tenant),
    ):
        ctx.report(10, 100)  # t=100: the origin
        ctx.report(20, 100)  # t=110: 10 steps in 10 s, 80 to go
    assert reload(job).eta_seconds == 80.0


class StopsShort(runners.Runner):
    """Reports 3 of 5, then returns: it succeeded (the last steps had nothing to report)."""

    kind = "test.stops_short"

    def run(self, ctx):
        ctx.report(3, 5)
        return {}


@pytest.mark.django_db
def test_a_succeeded_job_shows_its_progress_complete(world_a, in_process):
    runners.register(StopsShort)
    try:
        job = make_job(world_a, kind=StopsShort.kind, params={})
        assert start(world_a, job) == Status.SUCCEEDED
    finally:
        runners.unregister(StopsShort.kind)
    job = reload(job)
    assert (job.progress_current, job.progress_total, job.percent) == (5.0, 5.0, 100.0)


@pytest.mark.django_db
def test_once_rolls_back_its_marker_with_a_failed_effect(world_a, in_process):
    job = make_job(world_a)
    engine.schedule(world_a.tenant.pk)
    ctx = JobContext(engine.claim(job.public_id, "w:1"))
    with tenant_context(world_a.tenant):
        with pytest.raises(RuntimeError):
            with ctx.once("publish") as fresh:
                assert fresh
                Project.objects.create(tenant=world_a.tenant, name="half-done")
                raise RuntimeError("died mid-effect")
        assert not Project.objects.filter(name="half-done").exists()
        with ctx.once("publish") as fresh:
            assert fresh
        with ctx.once("publish") as fresh:
            assert not fresh
        with pytest.raises(ValueError, match="1 to 200 characters"):
            with ctx.once("x" * 201):
                pass
