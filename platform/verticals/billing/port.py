"""Billing as the work apps (jobs, registry, serving) meet it: one door, two sides.

* before work: `admit` (a served call: rate, hard caps, the task in the plan),
  `admit_job` (a job: the task, job time left, and for a job that adds a model version the
  plan's limit on them), `check_task_of`, `check_model_versions`, `running_jobs_limit`;
  a refusal is `Refused`, which carries its HTTP status and code;
* after work: `record` / `record_call` (usage events of ids: tenant, project, model public id,
  key, user) and `record_job_seconds`.

Billing imports none of the apps that call it: they pass ids and declared data, never their
model instances' relations, and they import billing only through this module.
"""

from __future__ import annotations

from verticals.billing.metering import Usage, record, record_call
from verticals.billing.quotas import (
    Admission,
    Refused,
    admit,
    check_model_versions,
    check_task_of,
    running_jobs_limit,
)
from verticals.billing.quotas import admit_job as _admit_job
from verticals.billing.sources import measures_storage, record_job_seconds

__all__ = [
    "Admission",
    "Refused",
    "Usage",
    "admit",
    "admit_job",
    "check_model_versions",
    "check_task_of",
    "measures_storage",
    "record",
    "record_call",
    "record_job_seconds",
    "running_jobs_limit",
]


def admit_job(tenant, *, task: str | None, model_versions: int | None = None) -> Admission:
    """A job may start (Refused otherwise): its task is in the plan, job time is left on a hard
    cap, and, when it would add a model version (`model_versions`: how many the tenant keeps
    now), the plan keeps one more."""
    admission = _admit_job(tenant, task=task)
    if model_versions is not None:
        check_model_versions(tenant, model_versions)
    return admission
