"""Job kinds for the tests (the product ships none): registered here, in the test process and in
worker processes started with JOBS_RUNNER_MODULES=tests.jobs.runners."""

import os
import signal
import time

from verticals.jobs.runners import JobError, Runner, register
from verticals.tenancy.models import Project

STEPS_SCHEMA = {
    "type": "object",
    "properties": {
        "steps": {"type": "integer", "minimum": 1, "maximum": 10000},
        "delay": {"type": "number", "minimum": 0, "maximum": 10},
        "fail_at": {"type": "integer", "minimum": 0},
        "crash_at": {"type": "integer", "minimum": 0},
        # On attempt 1 the process SIGKILLs itself at this step, after its effect, before its checkpoint.
        "die_at": {"type": "integer", "minimum": 0},
    },
    "required": ["steps"],
    "additionalProperties": False,
}


class Steps(Runner):
    """`steps` steps of `delay` seconds. Each step makes one side effect (a project named after the
    job and step) exactly once, reports a `loss` metric, logs, and checkpoints."""

    kind = "test.steps"
    title = "Steps (test)"
    queue = "train"
    params_schema = STEPS_SCHEMA
    retryable = True
    max_attempts = 3

    def run(self, ctx):
        steps, delay = ctx.params["steps"], ctx.params.get("delay", 0)
        start = ctx.resume.get("step", 0)
        for i in range(start, steps):
            if ctx.params.get("fail_at") == i:
                raise JobError(f"Step {i} found a bad row in the data.")
            if ctx.params.get("crash_at") == i:
                raise ZeroDivisionError("a bug in the runner")
            with ctx.once(f"step-{i}") as fresh:
                if fresh:
                    Project.objects.create(tenant=ctx.tenant, name=f"effect {ctx.job_id} step {i}")
            if ctx.params.get("die_at") == i and ctx.attempt == 1:
                os.kill(os.getpid(), signal.SIGKILL)
            ctx.log(f"step {i + 1} of {steps} (attempt {ctx.attempt})")
            ctx.report(i + 1, steps, {"loss": round(1.0 / (i + 1), 4)}, description=f"step {i + 1}")
            ctx.checkpoint({"step": i + 1})
            (ctx.scratch_dir / f"step-{i}.txt").write_text(
                f"attempt {ctx.attempt}"
            )  # files live for the attempt
            if delay:
                time.sleep(delay)
        return {"steps": steps, "attempt": ctx.attempt}


class Fragile(Steps):
    """The same work, but not retryable: a lost worker fails it."""

    kind = "test.fragile"
    retryable = False


class Noop(Runner):
    kind = "test.noop"
    queue = "inference"
    params_schema = {"type": "object", "additionalProperties": False}

    def run(self, ctx):
        return {"ok": True}


for runner in (Steps, Fragile, Noop):
    register(runner)
