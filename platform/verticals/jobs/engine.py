"""The job lifecycle: queued → running → succeeded | failed | cancelled.

Every transition is one conditional UPDATE on the job row (the truth), so that a duplicated
broker message, a dead worker's late write or a reaper racing a finishing worker can never
move a job twice. Events (`JobEvent`) get per-job sequence numbers taken under the job row's
lock, so their order is their commit order and an SSE client can resume from any of them.

Functions here act on a job row the caller has already reached (through a scoped query, or
by the id in a broker message); they address it by primary key, so they use the unscoped
manager and set the tenant on what they write from the job itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from verticals.billing import port
from verticals.jobs import runners, webhooks
from verticals.jobs.models import Job, JobEvent
from verticals.tenancy.audit import audit_record
from verticals.tenancy.models import Project, Tenant
from verticals.tenancy.scoping import platform_scope

log = logging.getLogger(__name__)
Status = Job.Status

# Job rows by primary key: see the module docstring for why the unscoped manager is safe here.
_jobs = Job.dangerously_unscoped


# --- events -------------------------------------------------------------------------------


def append_events(job: Job, events: list[tuple[str, dict]]) -> list[JobEvent]:
    """Write events for `job` with the next sequence numbers (call inside a transaction or not)."""
    if not events:
        return []
    with transaction.atomic():
        _jobs.filter(pk=job.pk).update(event_seq=F("event_seq") + len(events))  # locks the row
        last = _jobs.filter(pk=job.pk).values_list("event_seq", flat=True).get()
        first = last - len(events) + 1
        now = timezone.now()
        rows = [
            JobEvent(
                tenant_id=job.tenant_id,
                job_id=job.pk,
                seq=first + i,
                type=kind,
                data=data,
                created_at=now,
            )
            for i, (kind, data) in enumerate(events)
        ]
        # the job's own tenant, set on each row above
        JobEvent.dangerously_unscoped.bulk_create(rows)
    job.event_seq = last
    return rows


def status_event(job: Job, **extra) -> tuple[str, dict]:
    data = {"status": job.status, "attempt": job.attempt}
    if job.is_terminal:
        data["error"] = (
            {"code": job.error_code, "message": job.error_message} if job.error_message else None
        )
        data["result"] = job.result
    data.update(extra)
    return (JobEvent.Type.STATUS, data)


def log_event(message: str, level: str = "info") -> tuple[str, dict]:
    return (JobEvent.Type.LOG, {"level": level, "message": message[: settings.JOBS_LOG_LINE_MAX]})


# --- creating -----------------------------------------------------------------------------


class IdempotencyConflict(Exception):
    """An Idempotency-Key already named a job made from a different request."""


def _request_hash(
    project: Project, kind: str, task: str, params: dict, webhook: dict | None
) -> str:
    asked = {
        "project": project.public_id,
        "kind": kind,
        "task": task,
        "params": params,
        "webhook": {k: v for k, v in (webhook or {}).items() if k != "secret"}
        if isinstance(webhook, dict)
        else webhook,
    }
    return hashlib.sha256(json.dumps(asked, sort_keys=True, default=str).encode()).hexdigest()


def _replay(tenant, idempotency_key: str, request_hash: str) -> Job | None:
    """The job an earlier create with this key made (marked `replayed`), or None."""
    job = _jobs.filter(tenant=tenant, idempotency_key=idempotency_key).first()
    if job is None:
        return None
    if job.request_hash != request_hash:
        raise IdempotencyConflict(
            f"Idempotency-Key '{idempotency_key}' was used before with a different request; use a new key for a new job."
        )
    job.replayed = True
    return job


def job_create(
    *,
    project: Project,
    kind: str,
    params: dict | None = None,
    task: str = "",
    caller=None,
    webhook: dict | None = None,
    idempotency_key: str = "",
) -> Job:
    """Validate and queue a job; it is dispatched when the transaction commits and fair share allows.

    With an `idempotency_key`, a create that repeats an earlier one (same key, same request)
    returns the job it made, with `replayed` set, instead of making another.
    """
    params = {} if params is None else params
    fingerprint = _request_hash(project, kind, task, params, webhook) if idempotency_key else ""
    if idempotency_key:
        earlier = _replay(project.tenant, idempotency_key, fingerprint)
        if earlier is not None:
            return earlier
    runner = runners.get_runner(kind)
    if runner is None:
        known = ", ".join(runners.registered()) or "none are installed"
        raise ValidationError({"kind": f"Unknown job kind '{kind}'. Known kinds: {known}."})
    params = runner.prepare(project=project, task=task, params=params)
    hook = webhooks.clean_webhook(webhook) if webhook is not None else None
    tenant = project.tenant
    _admit(tenant, runner, project, task, params)
    try:
        with transaction.atomic():
            job = _insert(
                project, kind, task, runner, params, caller, hook, idempotency_key, fingerprint
            )
    except IntegrityError:  # a concurrent create with the same key won
        earlier = _replay(tenant, idempotency_key, fingerprint) if idempotency_key else None
        if earlier is None:
            raise
        return earlier
    return job


def _admit(tenant: Tenant, runner: type[runners.Runner], project, task: str, params: dict) -> None:
    """The tenant's plan lets the job in (Refused: 403 task not in plan, 402 job time or model
    versions used up); the runner says what to ask (its task, the model versions it adds)."""
    port.admit_job(tenant, **runner.admission(project=project, task=task, params=params))


def _insert(project, kind, task, runner, params, caller, hook, idempotency_key, fingerprint) -> Job:
    """The job row, its first event and its audit entry (inside the caller's transaction)."""
    tenant = project.tenant
    job = Job(
        tenant=tenant,
        project=project,
        kind=kind,
        task=task,
        queue=runner.queue,
        params=params,
        max_attempts=runner.attempts_allowed(),
        heartbeat_ttl=runner.ttl(),
        time_limit=runner.limit(),
        idempotency_key=idempotency_key,
        request_hash=fingerprint,
        created_by=caller.person if caller else None,
        api_key=caller.api_key if caller else None,
    )
    if hook:
        job.webhook_url, job.webhook_events, job.webhook_secret = (
            hook["url"],
            hook["events"],
            hook["secret"],
        )
    job.save()
    append_events(job, [status_event(job)])
    audit_record(
        tenant=tenant,
        actor=caller,
        action="job.create",
        target=job,
        details={"kind": kind, "project": project.public_id},
    )
    transaction.on_commit(lambda: schedule(tenant.pk), robust=True)
    return job


# --- fair share and dispatch --------------------------------------------------------------


def running_limit(tenant: Tenant) -> int:
    """Jobs a tenant may have running (or dispatched) at once: its plan's concurrent jobs, else the
    platform default; 0 means no limit."""

    planned = port.running_jobs_limit(tenant)
    return settings.JOBS_MAX_RUNNING_PER_TENANT if planned is None else planned


def schedule(tenant_id: int) -> list[str]:
    """Dispatch the tenant's oldest waiting jobs while it is under its running limit."""
    with transaction.atomic():
        # One scheduler per tenant at a time. FOR NO KEY UPDATE: rows inserted meanwhile with a
        # foreign key to the tenant (events, audit) only take KEY SHARE, so they do not wait on it.
        tenant = Tenant.objects.select_for_update(no_key=True).get(pk=tenant_id)
        if tenant.is_suspended:
            # its jobs wait; the reaper's pass dispatches them after reactivation
            return []
        waiting = _jobs.filter(
            tenant_id=tenant_id, status=Status.QUEUED, dispatched_at__isnull=True
        ).order_by("created_at", "id")
        limit = running_limit(tenant)
        if limit:
            active = (
                _jobs.filter(tenant_id=tenant_id)
                .filter(
                    Q(status=Status.RUNNING) | Q(status=Status.QUEUED, dispatched_at__isnull=False)
                )
                .count()
            )
            waiting = waiting[: max(0, limit - active)]
        now = timezone.now()
        # Each row is taken only if it still waits (a cancel may have ended it since it was read).
        chosen = [
            (pk, public_id, queue, time_limit)
            for pk, public_id, queue, time_limit in waiting.values_list(
                "pk", "public_id", "queue", "time_limit"
            )
            if _jobs.filter(pk=pk, status=Status.QUEUED, dispatched_at__isnull=True).update(
                dispatched_at=now
            )
        ]
        if chosen:
            transaction.on_commit(
                lambda: [
                    send(public_id, queue, time_limit) for _, public_id, queue, time_limit in chosen
                ]
            )
    return [public_id for _, public_id, _, _ in chosen]


def send(public_id: str, queue: str, time_limit: float | None = None) -> None:
    """Put "run job X" on the job's queue. Losing this message loses nothing: the reaper resends."""
    from verticals.jobs.tasks import run_job  # (the Celery tasks module imports this one)

    # A runner stuck past its time limit (and the reaper's grace) is stopped by the pool.
    options = (
        {"time_limit": time_limit + settings.JOBS_CANCEL_GRACE_SECONDS + 60} if time_limit else {}
    )
    try:
        run_job.apply_async(args=[public_id], queue=queue, **options)
    except Exception:  # broker down: give the slot back; the reaper's pass dispatches it again
        log.exception("could not send job %s to queue %s", public_id, queue)
        _jobs.filter(public_id=public_id, status=Status.QUEUED).update(dispatched_at=None)


# --- the worker's side --------------------------------------------------------------------


def claim(public_id: str, worker: str) -> Job | None:
    """Start a dispatched queued job; None when it is not one (a duplicate or stale message)."""
    now = timezone.now()
    with transaction.atomic():
        started = _jobs.filter(
            public_id=public_id, status=Status.QUEUED, dispatched_at__isnull=False
        ).update(
            status=Status.RUNNING,
            attempt=F("attempt") + 1,
            worker=worker[:200],
            heartbeat_at=now,
            started_at=now,
            eta_seconds=None,
        )
        if not started:
            return None
        job = _jobs.select_related("tenant", "project").get(public_id=public_id)
        append_events(job, [status_event(job)])
        webhooks.emit(job, "start")
    return job


def owned(job: Job, attempt: int):
    """The job's row while `attempt` still runs it."""
    return _jobs.filter(pk=job.pk, status=Status.RUNNING, attempt=attempt)


def record_progress(
    job: Job,
    attempt: int,
    *,
    current: float,
    total: float | None,
    description: str,
    eta: float | None,
    metrics: dict | None,
    step,
    write_progress: bool,
) -> dict | None:
    """Store progress (and metric points); return the row's cancel/ownership facts, None when lost."""
    events = []
    if write_progress:
        events.append(
            (
                JobEvent.Type.PROGRESS,
                {
                    "current": current,
                    "total": total,
                    "description": description,
                    "eta_seconds": eta,
                },
            )
        )
    for name, value in (metrics or {}).items():
        events.append((JobEvent.Type.METRIC, {"step": step, "name": name, "value": value}))
    with transaction.atomic():
        changes = {"heartbeat_at": timezone.now()}
        if write_progress:
            changes.update(
                progress_current=current,
                progress_total=total,
                progress_description=description[:200],
                eta_seconds=eta,
            )
        if not owned(job, attempt).update(**changes):
            return None
        append_events(job, events)
        if write_progress:
            webhooks.emit(
                job, "progress", data={"current": current, "total": total, "eta_seconds": eta}
            )
    return _jobs.filter(pk=job.pk).values("cancel_requested_at").get()


def append_owned(job: Job, attempt: int, events: list[tuple[str, dict]]) -> bool:
    """Append events while `attempt` still runs the job (and count it as a heartbeat)."""
    with transaction.atomic():
        if not owned(job, attempt).update(heartbeat_at=timezone.now()):
            return False
        append_events(job, events)
    return True


def beat(job: Job, attempt: int) -> dict | None:
    """A heartbeat: None when this attempt no longer owns the job."""
    if not owned(job, attempt).update(heartbeat_at=timezone.now()):
        return None
    return _jobs.filter(pk=job.pk).values("cancel_requested_at").get()


def finish(
    job: Job,
    attempt: int,
    status: str,
    *,
    result: dict | None = None,
    error_code: str = "",
    error_message: str = "",
    traceback: str = "",
    cpu_seconds: float = 0.0,
    device: str = "cpu",
) -> bool:
    """End `attempt` of the job in a terminal state, its compute counted and billed in the same
    transaction (see `_bill`); False when it no longer owned the job."""
    with transaction.atomic():
        seconds = _metered_seconds(cpu_seconds)
        changes = dict(
            status=status,
            finished_at=timezone.now(),
            eta_seconds=None,
            result=result or {},
            error_code=error_code,
            error_message=error_message,
            error_traceback=traceback,
            resource_seconds=F("resource_seconds") + float(seconds),
        )
        if status == Status.SUCCEEDED:  # done is 100 %, whatever the last report said
            changes["progress_current"] = Coalesce(F("progress_total"), F("progress_current"))
        if not owned(job, attempt).update(**changes):
            return False
        _bill(job, attempt, seconds, device)
        _ended(job)
    return True


def add_resource_seconds(job: Job, attempt: int, cpu_seconds: float, device: str = "cpu") -> None:
    """Count and bill the compute of an attempt that did not end the job (it was superseded)."""
    with transaction.atomic():
        seconds = _metered_seconds(cpu_seconds)
        _jobs.filter(pk=job.pk).update(resource_seconds=F("resource_seconds") + float(seconds))
        _bill(job, attempt, seconds, device)


# An attempt's compute goes to the job row (`resource_seconds`) and to the ledger (an event keyed
# `{job}:{attempt}`) in one transaction, together with the attempt's end when it has one: a worker
# killed at any moment leaves both or neither, so the ledger bills exactly what the rows count. An
# attempt whose worker died before it ended counts (and bills) nothing: its compute cannot be
# measured afterwards. Both hold the ledger's unit (micro-seconds), so their sums agree exactly.


def _metered_seconds(cpu_seconds: float) -> Decimal:
    """Seconds as the ledger keeps them (micro-seconds, half up)."""
    return Decimal(str(max(0.0, cpu_seconds))).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)


def _bill(job: Job, attempt: int, seconds: Decimal, device: str) -> None:
    """The attempt's usage event, inside the caller's transaction; a ledger that refuses it is logged
    and does not undo the job's end (a savepoint)."""
    try:
        with transaction.atomic():
            port.record_job_seconds(job, attempt, seconds, device=device)
    except Exception:
        log.exception(
            "job %s attempt %s: could not record %s s of usage", job.public_id, attempt, seconds
        )


def _ended(job: Job, *extra_events) -> None:
    """After a terminal transition (inside its transaction): events, webhook, next jobs."""
    job.refresh_from_db()
    append_events(job, [*extra_events, status_event(job)])
    webhooks.emit(job, "completed")
    tenant_id = job.tenant_id
    transaction.on_commit(lambda: schedule(tenant_id), robust=True)


# --- cancelling ---------------------------------------------------------------------------


def request_cancel(job: Job, caller=None) -> Job:
    """Cancel a queued job at once; ask a running one to stop (its runner stops at its next report).

    Raises ValidationError when the job has already finished (also when it did so just now).
    """
    now = timezone.now()
    with transaction.atomic():
        if _jobs.filter(pk=job.pk, status=Status.QUEUED).update(
            status=Status.CANCELLED,
            cancel_requested_at=now,
            finished_at=now,
            error_code="cancelled",
            error_message="Cancelled before it started.",
        ):
            _ended(job)
        elif _jobs.filter(
            pk=job.pk, status=Status.RUNNING, cancel_requested_at__isnull=True
        ).update(cancel_requested_at=now):
            append_events(
                job,
                [
                    log_event(
                        f"Cancellation requested by {caller.label if caller else 'system'}.",
                        "warning",
                    )
                ],
            )
        else:
            job.refresh_from_db()
            if job.is_terminal:
                raise ValidationError(
                    f"Job {job.public_id} has already {job.status}; there is nothing to cancel."
                )
            return job  # running, and its cancellation was already requested
        audit_record(tenant=job.tenant, actor=caller, action="job.cancel", target=job, details={})
    job.refresh_from_db()
    return job


# --- the reaper ---------------------------------------------------------------------------


@platform_scope("the reaper looks after every tenant's jobs")
def reap(now=None) -> dict:
    """Settle running jobs whose worker is gone, that ran past their time limit, or that did not
    stop within the grace after a cancel; then resend lost dispatches and dispatch waiting jobs.

    It reads everything it needs from the job rows (TTL, attempts, time limit), so a reaper that
    does not have a job kind's runner installed treats its jobs the same.
    """
    now = now or timezone.now()
    requeued, failed, cancelled = [], [], []
    grace = timedelta(seconds=settings.JOBS_CANCEL_GRACE_SECONDS)
    for job in _jobs.filter(status=Status.RUNNING).select_related("tenant"):
        same = _jobs.filter(
            pk=job.pk, status=Status.RUNNING, attempt=job.attempt, heartbeat_at=job.heartbeat_at
        )
        silence = (now - job.heartbeat_at).total_seconds() if job.heartbeat_at else float("inf")
        worker = f"The worker running attempt {job.attempt} ({job.worker or 'unknown'})"
        ended = dict(finished_at=now, eta_seconds=None)
        with transaction.atomic():
            if job.cancel_requested_at and (
                job.cancel_requested_at < now - grace or silence > job.heartbeat_ttl
            ):
                why = (
                    f"{worker} did not stop within {int(grace.total_seconds())} s of the cancellation"
                    if silence <= job.heartbeat_ttl
                    else f"{worker} stopped responding after the cancellation"
                )
                if same.update(
                    status=Status.CANCELLED,
                    error_code="cancelled",
                    error_message="Cancelled.",
                    **ended,
                ):
                    _ended(job, log_event(f"{why}; the job is cancelled.", "warning"))
                    cancelled.append(job.public_id)
            elif (
                job.time_limit
                and job.started_at
                and job.started_at < now - timedelta(seconds=job.time_limit)
            ):
                message = f"The job ran past its time limit of {_seconds(job.time_limit)} and was stopped."
                if same.update(
                    status=Status.FAILED, error_code="time_limit", error_message=message, **ended
                ):
                    _ended(job, log_event(message, "error"))
                    failed.append(job.public_id)
            elif silence > job.heartbeat_ttl:
                silent = f"{worker} stopped responding (no heartbeat for {int(silence)} s)."
                if job.attempt < job.max_attempts and same.filter(
                    cancel_requested_at__isnull=True
                ).update(
                    status=Status.QUEUED,
                    dispatched_at=None,
                    worker="",
                    eta_seconds=None,
                ):
                    job.refresh_from_db()
                    append_events(
                        job,
                        [
                            log_event(
                                f"{silent} Requeued for attempt {job.attempt + 1} of {job.max_attempts}.",
                                "warning",
                            ),
                            status_event(job, reason="worker_lost"),
                        ],
                    )
                    tenant_id = job.tenant_id
                    transaction.on_commit(
                        lambda tenant_id=tenant_id: schedule(tenant_id), robust=True
                    )
                    requeued.append(job.public_id)
                elif same.update(
                    status=Status.FAILED,
                    error_code="worker_lost",
                    error_message=f"{silent} The job was stopped; start it again to retry.",
                    **ended,
                ):
                    _ended(job, log_event(silent, "error"))
                    failed.append(job.public_id)
    redispatched = _redispatch(now)
    for tenant_id in set(
        _jobs.filter(status=Status.QUEUED, dispatched_at__isnull=True).values_list(
            "tenant_id", flat=True
        )
    ):
        schedule(tenant_id)
    return {
        "requeued": requeued,
        "failed": failed,
        "cancelled": cancelled,
        "redispatched": redispatched,
    }


def _seconds(value: float) -> str:
    value = int(value)
    return f"{value // 3600} h" if value % 3600 == 0 and value >= 3600 else f"{value} s"


def _redispatch(now) -> list[str]:
    """Resend "run job X" for jobs dispatched long ago and never started (a lost message).

    A resent message for a job that did start does nothing (claim() is conditional).
    """
    cutoff = now - timedelta(seconds=settings.JOBS_REDISPATCH_SECONDS)
    lost = list(
        _jobs.filter(
            status=Status.QUEUED, dispatched_at__lt=cutoff, tenant__status=Tenant.Status.ACTIVE
        ).values_list("pk", "public_id", "queue", "time_limit")[:500]
    )
    if lost:
        _jobs.filter(pk__in=[pk for pk, *_ in lost]).update(dispatched_at=now)
        for _, public_id, queue, time_limit in lost:
            send(public_id, queue, time_limit)
    return [public_id for _, public_id, _, _ in lost]
