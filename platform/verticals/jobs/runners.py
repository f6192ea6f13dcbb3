"""The runner contract: a job kind is a `Runner` subclass registered by its `kind`.

    @register
    class Train(Runner):
        kind = "train"
        queue = "train"
        params_schema = {"type": "object", "properties": {"epochs": {"type": "integer", "minimum": 1}}}
        retryable = True

        def run(self, ctx: JobContext) -> dict:
            for step in range(ctx.resume.get("step", 0), total):
                ...
                ctx.report(step + 1, total, {"loss": loss})   # also stops a cancelled job
                ctx.checkpoint({"step": step + 1})
            return {"accuracy": 0.97}                          # the job's result

The jobs app names no kind itself: the apps above it register theirs (the registry's model
jobs — train, evaluate, batch predict, import — in `verticals.registry.runners`), and staff may
name extra modules in the JOBS_RUNNER_MODULES setting, imported when Django starts.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, ClassVar

import jsonschema
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError

from verticals.sdk.params import problems as schema_problems

if TYPE_CHECKING:
    from verticals.jobs.context import JobContext

QUEUES = ("train", "optimize", "inference", "default")
_registry: dict[str, type[Runner]] = {}


class JobError(Exception):
    """A failure the customer should read as it is (bad data, diverged training …).

    Any other exception fails the job with a generic message; its traceback is kept for staff.
    """

    code = "job_error"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        if code:
            self.code = code


class Runner:
    """Base class of a job kind. Subclasses set `kind` and implement `run(ctx)`."""

    kind: ClassVar[str] = ""
    title: ClassVar[str] = ""
    queue: ClassVar[str] = "default"
    params_schema: ClassVar[dict] = {"type": "object"}
    # A job whose worker died is rerun (from its checkpoint) while attempts remain; else it fails.
    retryable: ClassVar[bool] = False
    max_attempts: ClassVar[int] = 3
    # Seconds without a heartbeat after which the reaper treats the worker as gone.
    heartbeat_ttl: ClassVar[float | None] = None
    # Seconds a run may take before the reaper fails it (JOBS_TIME_LIMIT when None; 0: no limit).
    time_limit: ClassVar[float | None] = None

    def run(self, ctx: JobContext) -> dict | None:  # pragma: no cover - the contract
        raise NotImplementedError

    @classmethod
    def attempts_allowed(cls) -> int:
        return max(1, cls.max_attempts) if cls.retryable else 1

    @classmethod
    def ttl(cls) -> float:
        return float(cls.heartbeat_ttl or settings.JOBS_HEARTBEAT_TTL)

    @classmethod
    def limit(cls) -> float | None:
        value = settings.JOBS_TIME_LIMIT if cls.time_limit is None else cls.time_limit
        return float(value) if value else None

    @classmethod
    def validate_params(cls, params) -> list[str]:
        """Messages naming each problem in `params` (empty when they are valid)."""
        return schema_problems(cls.params_schema, params)

    @classmethod
    def admission(cls, *, project, task: str, params: dict) -> dict:
        """What billing is asked before the job is queued (the keywords of billing.port.admit_job,
        given the params `prepare` returned): the task the plan must include, and, for a kind that
        adds a model version, how many the tenant keeps now (`model_versions`)."""
        return {"task": task or None}

    @classmethod
    def prepare(cls, *, project, task: str, params: dict) -> dict:
        """The params to store for a new job, or ValidationError naming what to fix.

        The default checks them against `params_schema`; kinds whose params depend on the task
        or name other objects (a dataset, a model) override this and resolve them here, before
        the job is queued, so that a wrong id answers 400 instead of a failed job.
        """
        problems = cls.validate_params(params)
        if problems:
            raise ValidationError({"params": problems})
        return params


def register(cls: type[Runner]) -> type[Runner]:
    """Register a runner class under its kind; registering another class for a taken kind fails."""
    if not (isinstance(cls, type) and issubclass(cls, Runner)):
        raise ImproperlyConfigured(f"{cls!r} is not a Runner subclass.")
    if not cls.kind:
        raise ImproperlyConfigured(f"Runner {cls.__qualname__} has no `kind`.")
    if cls.queue not in QUEUES:
        raise ImproperlyConfigured(
            f"Runner {cls.kind!r} names queue {cls.queue!r}; queues are {', '.join(QUEUES)}."
        )
    jsonschema.Draft202012Validator.check_schema(cls.params_schema)
    existing = _registry.get(cls.kind)
    if existing is not None and existing.__qualname__ != cls.__qualname__:
        raise ImproperlyConfigured(
            f"Job kind {cls.kind!r} is registered twice: {existing.__qualname__} and {cls.__qualname__}."
        )
    _registry[cls.kind] = cls
    return cls


def unregister(kind: str) -> None:
    _registry.pop(kind, None)


def get_runner(kind: str) -> type[Runner] | None:
    return _registry.get(kind)


def registered() -> dict[str, type[Runner]]:
    return dict(sorted(_registry.items()))


def import_runner_modules() -> None:
    for name in settings.JOBS_RUNNER_MODULES:
        importlib.import_module(name)
