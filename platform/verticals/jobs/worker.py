"""Running one job in a worker process: claim it, run its runner, record how it ended."""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
import traceback

from django.conf import settings

from verticals.jobs import compute, engine, runners
from verticals.jobs.context import Heartbeat, JobCancelled, JobContext, JobSuperseded
from verticals.jobs.models import Job
from verticals.jobs.runners import JobError
from verticals.tenancy.scoping import tenant_context

log = logging.getLogger(__name__)
Status = Job.Status


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def execute(public_id: str) -> str | None:
    """Run the job if this message may start it; return its final status (None: nothing to do)."""
    job = engine.claim(public_id, worker_name())
    if job is None:
        log.info(
            "job %s: not queued for a start (a duplicate or stale message); nothing to do",
            public_id,
        )
        return None
    with tenant_context(job.tenant):
        return _run(job)


def _run(job: Job) -> str | None:
    runner_cls = runners.get_runner(job.kind)
    if runner_cls is None:
        engine.finish(
            job,
            job.attempt,
            Status.FAILED,
            error_code="unknown_kind",
            error_message=f"No worker can run jobs of kind '{job.kind}'. Contact support.",
        )
        return Status.FAILED
    ctx = JobContext(job)
    heart = Heartbeat(ctx) if settings.JOBS_HEARTBEAT_SECONDS > 0 else None
    if heart:
        heart.start()
    cpu0 = time.process_time()
    outcome: dict = {}
    try:
        if ctx.attempt > 1:
            ctx.log(
                f"Attempt {ctx.attempt} of {job.max_attempts}"
                + (" resumes from its checkpoint." if ctx.resume else ".")
            )
        result = runner_cls().run(ctx)
        if result is not None and not isinstance(result, dict):
            raise TypeError(
                f"runner {job.kind!r} returned {type(result).__name__}; a job's result is a dict or None"
            )
        outcome = dict(status=Status.SUCCEEDED, result=result or {})
    except JobCancelled:
        outcome = dict(
            status=Status.CANCELLED,
            error_code="cancelled",
            error_message="Cancelled while running.",
        )
    except JobSuperseded:
        log.warning(
            "job %s: attempt %s lost the job to the reaper; its result is dropped",
            job.public_id,
            ctx.attempt,
        )
    except JobError as exc:
        outcome = dict(status=Status.FAILED, error_code=exc.code, error_message=str(exc))
    except Exception as exc:
        # the runner's bug or an environment failure: the customer sees a plain message
        log.exception("job %s failed", job.public_id)
        outcome = dict(
            status=Status.FAILED,
            error_code="internal_error",
            traceback=traceback.format_exc(),
            error_message=f"The job stopped on an internal error ({type(exc).__name__}). Our staff can see the details.",
        )
    finally:
        if heart:
            heart.stop()
        ctx.cleanup()
    cpu = time.process_time() - cpu0
    # The attempt's compute is counted and billed with its end, in one transaction (engine.finish),
    # or on its own when the attempt lost the job meanwhile.
    if outcome:
        status = outcome.pop("status")
        if engine.finish(job, ctx.attempt, status, **outcome, cpu_seconds=cpu, device=_device()):
            return status
    engine.add_resource_seconds(job, ctx.attempt, cpu, device=_device())
    return None


def _device() -> str:
    """Where the attempt ran: a job that never loaded torch ran on the CPU."""
    if "torch" not in sys.modules:
        return "cpu"
    return compute.device()
