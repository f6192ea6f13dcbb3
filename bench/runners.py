"""The benchmark's own job kind (the product ships none): a runner that does nothing.

Registered in the benchmark process and, through JOBS_RUNNER_MODULES=bench.runners, in the
worker it starts; nowhere else.
"""

from verticals.jobs.runners import Runner, register


class BenchNoop(Runner):
    """Returns at once: what is left of a job's round trip is the platform's own overhead."""

    kind = "bench.noop"
    title = "No-op (benchmark)"
    queue = "default"
    params_schema = {"type": "object", "additionalProperties": False}

    def run(self, ctx) -> dict:
        return {"ok": True}


register(BenchNoop)
