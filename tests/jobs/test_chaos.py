"""The chaos soak: 200 jobs of mixed kinds while the job worker is SIGKILLed at random moments 10
times (its main process and pool children at once) and Redis is restarted once, losing every
message it held. Afterwards every job is terminal, every succeeded job's effects exist once, no
job succeeded twice, attempts add up and the ledger bills exactly the compute the attempts did.

The set-up is production's (bin/run, docker/compose.yaml): a job worker serving the job queues and
a system worker whose embedded beat runs the reaper; both reach a Redis of this test's own (a
`redis-server` on a free port, started as CI starts the shared one: no snapshot, no append-only
file). Its restart is a crash (SIGKILL) and it comes back empty: queued starts, unacknowledged
messages and kombu's queue bindings are all gone, and only the engine itself (the reaper's
redispatch and its dispatch of waiting jobs) can bring the lost jobs back. The test never moves a
job itself; it creates jobs, cancels some while they run, kills, restarts and then reads.

Random moments come from a seed printed at the start (VERTICALS_CHAOS_SEED=... repeats a run's
schedule; the timing of the processes around it still varies).
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.utils import timezone

from tests.conftest import build_world
from tests.jobs.conftest import service_down, settings_from_env
from tests.jobs.live_worker import FAST_TIMINGS, QUEUES, RedisServer, ServiceDown, use_broker
from verticals.billing import invoicing, services
from verticals.billing.catalog import subscription_period
from verticals.billing.models import Plan, PlanPrice, UsageEvent
from verticals.billing.money import to_minor
from verticals.jobs import engine
from verticals.jobs.models import Job, JobEffect, JobEvent
from verticals.tenancy.models import Project
from verticals.tenancy.scoping import tenant_context

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

Status = Job.Status
_jobs = Job.dangerously_unscoped  # the soak reads every tenant's rows

JOBS = 200
KILLS = 10
TENANTS = 4
RUNNING_PER_TENANT = (
    3  # the soak plan's concurrent jobs: the engine's fair share holds the rest back
)
CREATE_SECONDS = 40.0  # the jobs are created over this long, while the chaos goes on
SETTLE_SECONDS = 150.0  # after the last kill: every job must be terminal within this
CHAOS_SECONDS = 300.0  # the kills and the Redis crash are over within this (each waits for the worker's restart)
WORKER_START_SECONDS = 60.0
CPU_SECOND_PRICE = Decimal(
    "0.0173"
)  # USD per training.cpu_seconds, none included: every micro-second is billed

WORKER_ENV = {
    **FAST_TIMINGS,  # heartbeat 0.5 s, silence after 3 s, reaper every second
    # A start lost with Redis (or with a killed worker's prefetched message) is sent again after this.
    "JOBS_REDISPATCH_SECONDS": "4",
    "JOBS_CANCEL_GRACE_SECONDS": "5",
}


@dataclass(frozen=True)
class Mix:
    """One kind of job in the soak: what is created, how many, and how it may end (status, error code)."""

    kind: str
    params: dict
    count: int
    endings: frozenset


def endings(*pairs) -> frozenset:
    return frozenset(pairs)


LOST = (Status.FAILED, "worker_lost")  # any job: its last attempt allowed was on a killed worker
# Steps jobs make one effect per step (a project named after the job and step, through ctx.once).
MIXES = {
    "noop": Mix("test.noop", {}, 35, endings((Status.SUCCEEDED, ""), LOST)),
    "quick": Mix("test.steps", {"steps": 2}, 35, endings((Status.SUCCEEDED, ""), LOST)),
    "fails": Mix(
        "test.steps", {"steps": 3, "fail_at": 1}, 15, endings((Status.FAILED, "job_error"), LOST)
    ),
    "crashes": Mix(
        "test.steps",
        {"steps": 2, "crash_at": 1},
        10,
        endings((Status.FAILED, "internal_error"), LOST),
    ),
    # Long enough (about 2 s) that the kills find them mid-run: rerun from their checkpoint.
    "long": Mix(
        "test.steps", {"steps": 8, "delay": 0.25}, 40, endings((Status.SUCCEEDED, ""), LOST)
    ),
    # The same work, not retryable: a kill mid-run fails it.
    "fragile": Mix(
        "test.fragile", {"steps": 8, "delay": 0.25}, 25, endings((Status.SUCCEEDED, ""), LOST)
    ),
    # Only the pool process running it dies (the OOM killer's case), after step 2's effect.
    "pool-death": Mix(
        "test.steps",
        {"steps": 4, "delay": 0.1, "die_at": 2},
        15,
        endings((Status.SUCCEEDED, ""), LOST),
    ),
    # Cancelled by the test once seen running (it would run over 10 s otherwise).
    "cancelled": Mix(
        "test.steps",
        {"steps": 50, "delay": 0.2},
        25,
        endings((Status.CANCELLED, "cancelled"), LOST),
    ),
}
assert sum(mix.count for mix in MIXES.values()) == JOBS


# --- the processes ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chaos_redis(tmp_path_factory):
    """A Redis of the soak's own: the shared one on 6379 is never restarted."""
    server = RedisServer(tmp_path_factory.mktemp("chaos-redis"))
    try:
        server.start()
    except ServiceDown as exc:
        service_down(str(exc))
    yield server
    server.stop()


@dataclass
class Cluster:
    redis: RedisServer
    jobs: object  # LiveWorker: the job queues, killed and restarted
    system: object  # LiveWorker: the system queue with beat (the reaper), as production runs it


@pytest.fixture
def cluster(chaos_redis, worker_factory, transactional_db, settings) -> Cluster:
    settings_from_env(settings, WORKER_ENV)  # this process dispatches too (creates, cancels)
    url = chaos_redis.url(0)
    jobs = worker_factory(
        url,
        beat=False,
        env=WORKER_ENV,
        concurrency=4,
        queues=tuple(q for q in QUEUES if q != "system"),
    )
    system = worker_factory(url, beat=True, env=WORKER_ENV, concurrency=1, queues=("system",))
    with use_broker(worker_factory.app, jobs.broker_url, jobs.transport_options):
        yield Cluster(chaos_redis, jobs, system)
    jobs.stop()
    system.stop()


# --- the chaos ------------------------------------------------------------------------------


class Chaos:
    """Kills the job worker `KILLS` times and crashes Redis once, at random moments, restarting each.

    Driven by the soak's loop (`tick()`), never from a thread of its own: a process started here
    gets SIGTERM when the thread that started it ends (tests.jobs.live_worker.die_with_parent)."""

    def __init__(self, cluster: Cluster, rng: random.Random):
        self.cluster = cluster
        actions = ["kill"] * KILLS
        actions.insert(rng.randint(3, KILLS - 3), "redis")  # mid-soak
        # (seconds after the previous action's recovery, action, seconds down before the restart)
        self.plan = [(rng.uniform(1.5, 4.5), action, rng.uniform(0, 1.5)) for action in actions]
        self.started = time.monotonic()
        self.next_at = self.started + self.plan[0][0]
        self.restart_at: float | None = None
        self.starting = False
        self.done: list[tuple[float, str]] = []  # (seconds into the soak, action)

    @property
    def over(self) -> bool:
        return not self.plan and self.restart_at is None

    def tick(self) -> None:
        now = time.monotonic()
        if (
            self.starting
        ):  # the job worker after a kill: the next action counts from when it consumes
            if self.cluster.jobs.ready():
                self.starting, self.restart_at = False, None
                self._recovered(now)
            elif now - self.restart_at > WORKER_START_SECONDS:
                raise AssertionError(
                    f"the job worker was not ready {WORKER_START_SECONDS:g} s after its restart:\n"
                    + self.cluster.jobs.log_tail()
                )
            return
        if self.restart_at is not None:  # down: the restart is due at restart_at
            if now >= self.restart_at:
                if self.done[-1][1] == "kill":
                    self.cluster.jobs.launch()
                    self.starting = True
                else:
                    self.cluster.redis.start()  # empty: nothing survives the crash
                    self.restart_at = None
                    self._recovered(time.monotonic())
            return
        if self.plan and now >= self.next_at:
            _, action, down = self.plan.pop(0)
            if action == "kill":
                self.cluster.jobs.kill()  # SIGKILL to the group: the main process and its pool children at once
            else:
                self.cluster.redis.kill()
                down += 1
            self.done.append((round(now - self.started, 1), action))
            print(
                f"chaos: {action} at {timezone.now():%H:%M:%S.%f} ({now - self.started:.1f} s into the soak)"
            )
            self.restart_at = now + down

    def _recovered(self, now: float) -> None:
        if self.plan:
            self.next_at = now + self.plan[0][0]


# --- the soak -------------------------------------------------------------------------------


def subscribe_to_soak_plan(tenants) -> dict:
    """Each tenant on a soft-capped plan that bills every CPU second and runs 3 jobs at once; its subscription."""
    plan = Plan.objects.create(
        code="soak",
        name="Soak",
        monthly_fee=Decimal(0),
        cap=Plan.Cap.SOFT,
        concurrent_jobs=RUNNING_PER_TENANT,
    )
    PlanPrice.objects.create(
        plan=plan, meter_id="training.cpu_seconds", included=Decimal(0), unit_price=CPU_SECOND_PRICE
    )
    return {tenant: services.subscribe(tenant, plan) for tenant in tenants}


def create(world, mix: Mix) -> Job:
    with tenant_context(world.tenant):
        return engine.job_create(project=world.project, kind=mix.kind, params=dict(mix.params))


def cancel(job: Job) -> None:
    with tenant_context(job.tenant):
        try:
            engine.request_cancel(job)
        except (
            Exception
        ):  # it ended meanwhile (a kill took its last attempt): that ending is checked later
            pass


def test_chaos_soak(cluster, settings):
    seed = int(os.environ.get("VERTICALS_CHAOS_SEED") or random.SystemRandom().randrange(10**6))
    print(f"\nchaos soak: seed {seed} (VERTICALS_CHAOS_SEED={seed} repeats the schedule)")
    rng = random.Random(seed)
    worlds = [build_world(chr(ord("A") + i)) for i in range(TENANTS)]
    subscriptions = subscribe_to_soak_plan([world.tenant for world in worlds])
    specs = [(name, mix) for name, mix in MIXES.items() for _ in range(mix.count)]
    rng.shuffle(specs)

    started = time.monotonic()
    chaos = Chaos(cluster, rng)
    made: list[tuple[str, Mix, Job]] = []
    to_cancel: dict[int, Job] = {}
    deadline = None
    while True:
        now = time.monotonic() - started
        due = min(JOBS, int(JOBS * now / CREATE_SECONDS) + 1)
        while len(made) < due:
            name, mix = specs[len(made)]
            job = create(rng.choice(worlds), mix)
            made.append((name, mix, job))
            if name == "cancelled":
                to_cancel[job.pk] = job
        # A cancellation lands while the job runs (after its first step), whatever the chaos did to it.
        if to_cancel:
            for pk, status, progress in _jobs.filter(pk__in=list(to_cancel)).values_list(
                "pk", "status", "progress_current"
            ):
                if status in Job.TERMINAL or (status == Status.RUNNING and progress >= 1):
                    job = to_cancel.pop(pk)
                    if status == Status.RUNNING:
                        cancel(job)
        chaos.tick()
        if deadline is None and time.monotonic() - started > CHAOS_SECONDS:
            raise AssertionError(f"the chaos was not over after {CHAOS_SECONDS:g} s: {chaos.done}")
        if deadline is None and chaos.over and len(made) == JOBS:
            deadline = time.monotonic() + SETTLE_SECONDS
            chaos_ended = time.monotonic() - started
        if deadline is not None:
            open_jobs = _jobs.exclude(status__in=Job.TERMINAL)
            if not open_jobs.exists():
                break
            if time.monotonic() > deadline:
                stuck = list(
                    open_jobs.values_list(
                        "public_id", "status", "attempt", "dispatched_at", "heartbeat_at"
                    )
                )
                raise AssertionError(
                    f"{len(stuck)} jobs not terminal {SETTLE_SECONDS:g} s after the chaos "
                    f"(seed {seed}, chaos {chaos.done}): {stuck[:20]}"
                )
        time.sleep(0.1)
    ended = time.monotonic() - started
    assert Counter(action for _, action in chaos.done) == {"kill": KILLS, "redis": 1}
    # Nothing writes after this: a superseded attempt still running would account its compute now.
    cluster.jobs.stop()

    rows = {job.pk: job for job in _jobs.filter(pk__in=[job.pk for _, _, job in made])}
    assert len(rows) == JOBS
    assert not _jobs.filter(status__in=[Status.QUEUED, Status.RUNNING]).exists(), (
        "a job is still queued or running"
    )
    outcomes = Counter()
    for name, mix, made_job in made:
        job = rows[made_job.pk]
        outcomes[(name, job.status, job.error_code)] += 1
        check_ending(name, mix, job)
        check_events(job)
        check_effects(mix, job)
    check_usage(rows.values(), worlds, subscriptions)

    print(
        f"chaos soak: {JOBS} jobs, {KILLS} kills and a Redis restart ({chaos.done}); chaos over after "
        f"{chaos_ended:.0f} s, every job terminal after {ended:.0f} s"
    )
    for (name, status, code), count in sorted(outcomes.items()):
        print(f"  {name:<11} {status:<10} {code or '-':<15} {count}")
    attempts = Counter(job.attempt for job in rows.values())
    print(
        f"  attempts: {dict(sorted(attempts.items()))}; reruns after a lost worker: "
        f"{sum(job.attempt - 1 for job in rows.values() if job.attempt > 1)}"
    )


def check_ending(name: str, mix: Mix, job: Job) -> None:
    """The job ended as its kind may, and its attempts add up."""
    where = f"{name} job {job.public_id} ({job.status}, {job.error_code}: {job.error_message!r}, attempt {job.attempt})"
    assert (job.status, job.error_code) in mix.endings, where
    assert job.finished_at is not None, where
    assert 0 <= job.attempt <= job.max_attempts, where
    if job.status == Status.SUCCEEDED:
        assert job.attempt >= 1, where
        if mix.kind != "test.noop":
            assert job.result == {"steps": mix.params["steps"], "attempt": job.attempt}, where
            assert job.checkpoint == {"step": mix.params["steps"]}, where
    if job.error_code == "worker_lost":  # the reaper reruns a retryable job while attempts remain
        assert job.attempt == job.max_attempts, where
    if name == "pool-death" and job.status == Status.SUCCEEDED:
        assert job.attempt >= 2, where  # attempt 1 always dies at step 2


def check_events(job: Job) -> None:
    """Gap-free events; the status events tell the attempts in order: queued, then running 1,
    requeued (worker lost), running 2 … and one terminal event, the last, for the last attempt (a
    job requeued and cancelled before it started again ends after its requeue)."""
    evs = list(JobEvent.dangerously_unscoped.filter(job_id=job.pk).order_by("seq"))
    where = f"job {job.public_id} ({job.status}, attempt {job.attempt})"
    assert [e.seq for e in evs] == list(range(1, job.event_seq + 1)), where
    statuses = [
        (e.data["status"], e.data["attempt"], e.data.get("reason"))
        for e in evs
        if e.type == JobEvent.Type.STATUS
    ]
    where = f"{where}: {statuses}"
    assert statuses[0] == (Status.QUEUED, 0, None) and statuses[-1][:2] == (
        job.status,
        job.attempt,
    ), where
    assert not any(status in Job.TERMINAL for status, _, _ in statuses[:-1]), where  # it ended once
    runs = []
    for attempt in range(1, job.attempt + 1):
        runs += [(Status.RUNNING, attempt, None), (Status.QUEUED, attempt, "worker_lost")]
    between = statuses[1:-1]
    assert between in (runs[:-1], runs if job.status == Status.CANCELLED else None), where


def check_effects(mix: Mix, job: Job) -> None:
    """Each effect exists at most once, with its marker; a succeeded job's effects all exist, once."""
    if mix.kind == "test.noop":
        return
    where = f"job {job.public_id} ({job.status}, attempt {job.attempt})"
    names = Counter(
        Project.dangerously_unscoped.filter(
            name__startswith=f"effect {job.public_id} "
        ).values_list("name", flat=True)
    )
    assert set(names.values()) <= {1}, f"{where}: an effect was made twice: {names}"
    keys = Counter(
        JobEffect.dangerously_unscoped.filter(job_id=job.pk).values_list("key", flat=True)
    )
    assert {f"effect {job.public_id} step {key.removeprefix('step-')}" for key in keys} == set(
        names
    ), where
    if job.status == Status.SUCCEEDED:
        assert sorted(keys) == sorted(f"step-{i}" for i in range(mix.params["steps"])), where
    elif job.error_code == "job_error":
        assert sorted(keys) == ["step-0"], where  # it fails at step 1


def check_usage(jobs, worlds, subscriptions) -> None:
    """Usage totals equal the work done, to the micro-second and to the minor unit.

    The work done is what the job rows account: each attempt that ended in its worker (it finished
    the job, or found it given to another attempt) adds its CPU seconds to `resource_seconds` in
    the same transaction as its end. An attempt whose worker was SIGKILLed accounts nothing: its
    compute cannot be measured after the fact, and the customer does not pay for our crash.

    The ledger must hold exactly that: per job, events keyed `{job}:{attempt}` for attempts that
    ran (1 … attempt), summing to `resource_seconds` to the micro-second (the ledger's unit); the
    attempt that wrote the job's end in its worker always has one; and per tenant the invoice's
    `training.cpu_seconds` line is that sum at the plan's price, rounded once to the cent.
    """
    ledger = {}
    for key, quantity, meter, tenant_id in UsageEvent.dangerously_unscoped.filter(
        source="jobs"
    ).values_list("idempotency_key", "quantity", "meter", "tenant_id"):
        ledger[key] = (quantity, meter, tenant_id)
    micro = Decimal("0.000001")
    work_by_tenant: dict[int, Decimal] = Counter()
    seen = set()
    for job in jobs:
        keys = {key for key in ledger if key.startswith(f"{job.public_id}:")}
        seen |= keys
        where = (
            f"job {job.public_id} ({job.status}, {job.error_code}, attempt {job.attempt}, ended {job.finished_at:%H:%M:%S.%f}): "
            f"ledger {sorted(keys)}"
        )
        assert keys <= {f"{job.public_id}:{n}" for n in range(1, job.attempt + 1)}, where
        assert {ledger[key][1] for key in keys} <= {"training.cpu_seconds"} and {
            ledger[key][2] for key in keys
        } <= {job.tenant_id}
        billed = sum((ledger[key][0] for key in keys), Decimal(0))
        work = Decimal(repr(job.resource_seconds)).quantize(micro)
        assert billed == work, f"{where}: billed {billed} s, worked {work} s"
        ended_in_worker = (
            job.status == Status.SUCCEEDED
            or job.error_code in ("job_error", "internal_error")
            or (job.status == Status.CANCELLED and job.error_message == "Cancelled while running.")
        )
        if ended_in_worker:
            assert f"{job.public_id}:{job.attempt}" in keys, (
                f"{where}: the attempt that ended it was not billed"
            )
        work_by_tenant[job.tenant_id] += work
    assert seen == set(ledger), f"usage of jobs the soak did not make: {sorted(set(ledger) - seen)}"
    now = timezone.now()
    for world in worlds:
        period = subscription_period(subscriptions[world.tenant], now)
        _, lines = invoicing.retail_lines(world.tenant, period)
        line = next(line for line in lines if line.meter == "training.cpu_seconds")
        work = work_by_tenant[world.tenant.pk]
        assert line.quantity == work, (
            f"tenant {world.tenant.public_id}: invoiced {line.quantity} s, worked {work} s"
        )
        assert line.amount_minor == to_minor(work * CPU_SECOND_PRICE, "USD") > 0
