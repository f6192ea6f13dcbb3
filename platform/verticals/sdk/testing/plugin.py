"""pytest fixtures of the plugin test kit (registered through the `pytest11` entry point).

- `tenant`, `project`, `caller`: a real tenant (under its own partner) with an owner and a project;
- `tiny_dataset(task_name, rows=60, seed=0)`: uploads the task's example dataset, returns the version;
- `run_job(kind, task, params, in_project=None, by=None)`: creates a job and runs it in this
  process through the job engine's real worker code (no broker), returns the finished job.
"""

from __future__ import annotations

import itertools
from unittest import mock

import pytest

_names = itertools.count(1)


@pytest.fixture
def tenant(db):
    from verticals.tenancy.models import Partner
    from verticals.tenancy.services import partner_root, tenant_create

    n = next(_names)
    partner = Partner.objects.create(
        name=f"Test kit partner {n}", brand_name=f"Kit {n}", parent=partner_root()
    )
    return tenant_create(partner=partner, name=f"Test kit tenant {n}")


@pytest.fixture
def caller(tenant):
    from verticals.tenancy.caller import Caller
    from verticals.tenancy.models import Membership, User
    from verticals.tenancy.roles import Role
    from verticals.tenancy.scoping import tenant_context

    user = User.objects.create_user(
        email=f"kit-owner-{tenant.public_id.lower()}@example.com", password=None
    )
    with tenant_context(tenant):
        Membership.objects.create(tenant=tenant, user=user, role=Role.OWNER)
    return Caller(user=user, tenant=tenant, role=Role.OWNER)


@pytest.fixture
def project(tenant, caller):
    from verticals.tenancy.scoping import tenant_context
    from verticals.tenancy.services import project_create

    with tenant_context(tenant):
        return project_create(tenant=tenant, name="Test kit project")


@pytest.fixture
def artifacts_dir(settings, tmp_path):
    """Stored files of the test go to a temporary directory (removed with it)."""
    location = tmp_path / "artifacts"
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(location)},
        },
    }
    settings.REGISTRY_CACHE_DIR = tmp_path / "cache"
    settings.JOBS_SCRATCH_DIR = tmp_path / "scratch"
    from django.core.files.storage import storages

    storages._storages.pop(
        "artifacts", None
    )  # the handler caches backends: build it again from the settings
    yield location
    storages._storages.pop("artifacts", None)


@pytest.fixture
def tiny_dataset(project, caller, tmp_path, artifacts_dir):
    from verticals.registry.services import dataset_upload
    from verticals.sdk import discovery
    from verticals.tenancy.scoping import tenant_context

    def make(task_name: str, *, rows: int = 60, seed: int = 0, name: str = ""):
        task = discovery.get_task(task_name)
        assert task is not None, f"no task {task_name!r} is installed"
        folder = tmp_path / f"example-{task_name}-{next(_names)}"
        folder.mkdir()
        upload = task.example_dataset(folder, rows=rows, seed=seed)
        with tenant_context(project.tenant):
            return dataset_upload(
                project=project,
                caller=caller,
                upload=upload,
                task=task_name,
                name=name or f"{task_name}-example-{next(_names)}",
            )

    return make


@pytest.fixture
def run_job(project, caller, settings, artifacts_dir):
    from verticals.jobs import engine, worker
    from verticals.jobs.models import Job
    from verticals.tenancy.scoping import tenant_context

    settings.JOBS_HEARTBEAT_SECONDS = (
        0  # no heartbeat thread: the job runs inside the test's transaction
    )
    settings.JOBS_PROGRESS_SECONDS = 0

    def run(
        kind: str, task: str = "", params: dict | None = None, *, in_project=None, by=None
    ) -> Job:
        """Run a job in the kit's project (or `in_project`, as `by` — a Caller — when given)."""
        where = in_project or project
        with mock.patch("verticals.jobs.engine.send"), tenant_context(where.tenant):
            job = engine.job_create(
                project=where,
                kind=kind,
                task=task,
                params=params or {},
                caller=by if in_project else caller,
            )
            engine.schedule(where.tenant.pk)
        worker.execute(job.public_id)
        # the test reads its own job back by primary key
        return Job.dangerously_unscoped.get(pk=job.pk)

    return run
