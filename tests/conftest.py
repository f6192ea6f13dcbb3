"""Shared fixtures: real objects built through the services, two tenants under two partners."""

import re
import zlib
from dataclasses import dataclass, field

import pytest
from django.db import transaction
from rest_framework.test import APIClient

import tests.jobs.runners  # noqa: F401  (registers the test job kinds that World's job uses)
from verticals.billing import catalog, quotas, spool
from verticals.billing.models import UsageEvent
from verticals.jobs import engine
from verticals.jobs.models import Job
from verticals.tenancy.caller import Caller
from verticals.tenancy.models import (
    ApiKey,
    Invitation,
    Membership,
    Partner,
    PartnerMembership,
    Project,
    Tenant,
    User,
)
from verticals.tenancy.roles import PartnerRole, Role, Scope
from verticals.tenancy.scoping import platform_scope, tenant_context
from verticals.tenancy.services import (
    api_key_create,
    invite,
    partner_root,
    project_create,
    tenant_create,
)

PASSWORD = "correct-horse-battery-9"


@pytest.fixture(autouse=True)
def _test_code_sees_every_tenant(request):
    """Test code sets up and reads any tenant's rows (as a database superuser would). What it
    exercises still meets row-level security: a request, a job run, a task or a tenant's service
    sets its own scope (`tenant_context` narrows this one). Tests of the scoping itself, and of
    entry points that must set their own, are marked `rls` and start with no scope at all."""
    if request.node.get_closest_marker("rls"):
        yield
        return
    with platform_scope("test code reads and writes any tenant's rows"):
        yield


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session", autouse=True)
def _ledger_spool_stopped(django_db_setup, django_db_blocker):
    """The ledger spool's writer thread ends (with its database connection) before the test database goes."""
    yield
    with django_db_blocker.unblock():
        spool.stop()


def ledger(tenant=None) -> list:
    """The usage events of a tenant (of every tenant with None), oldest first, after this
    process's ledger spool wrote what it holds (the calls this test made, also through a live server)."""
    spool.flush()
    # A test reads any tenant's ledger, with what each event refers to (read along, in the same scope).
    events = UsageEvent.dangerously_unscoped.select_related("project", "api_key", "user").order_by(
        "id"
    )
    return list(events if tenant is None else events.filter(tenant_id=tenant.pk))


def pdf_text(pdf: bytes) -> str:
    """The text of a PDF: its bytes as Latin-1, then each content stream's (deflated ones
    inflated; a stream is cut by its /Length, never by searching for `endstream` in binary data)."""
    found = [pdf.decode("latin-1")]
    for head in re.finditer(rb"/Length (\d+)[^>]*>>\s*stream\r?\n", pdf):
        stream = pdf[head.end() : head.end() + int(head.group(1))]
        try:
            found.append(zlib.decompress(stream).decode("latin-1"))
        except zlib.error:
            found.append(stream.decode("latin-1"))
    return "\n".join(found)


@pytest.fixture(autouse=True)
def _billing_caches_forgotten():
    """What a process remembers between calls (plans, rate tokens) starts empty in every test."""
    catalog.forget_standing(None)
    catalog._seen.update(version=None, checked=float("-inf"))
    quotas._leases.clear()


@pytest.fixture(autouse=True)
def _ledger_spool_written(request):
    """Served calls outside a transaction go through the ledger spool (billing.spool): a test whose
    calls commit has what the spool holds written at its end, before its tables are emptied."""
    marker = request.node.get_closest_marker("django_db")
    committing = {"transactional_db", "live_server"} & set(request.fixturenames) or (
        marker and marker.kwargs.get("transaction")
    )
    if not committing:
        yield
        return
    request.getfixturevalue("transactional_db")  # set up before this fixture: emptied after it
    yield
    spool.flush()


@pytest.fixture(autouse=True)
def _private_artifacts(artifacts_dir):
    """Every test stores datasets and models in a temporary directory of its own (the test kit's fixture)."""
    return artifacts_dir


def make_user(email: str, password: str = PASSWORD) -> User:
    return User.objects.create_user(email=email, password=password)


def make_member(tenant: Tenant, email: str, role: str) -> Membership:
    with tenant_context(tenant):
        return Membership.objects.create(tenant=tenant, user=make_user(email), role=role)


def make_key(
    tenant: Tenant, *, role: str = Role.OWNER, scopes=None, project=None, user=None, **extra
) -> tuple[ApiKey, str]:
    with tenant_context(tenant):
        caller = Caller(user=user, tenant=tenant, role=Role.OWNER)
        return api_key_create(
            caller=caller,
            name=f"key-{role}",
            scopes=list(scopes or Scope.values),
            role=role,
            project=project,
            **extra,
        )


@dataclass
class World:
    """One partner with one tenant and what a tenant has: owner, project, key, partner admin."""

    partner: Partner
    tenant: Tenant
    owner: User
    membership: Membership
    project: Project
    key: ApiKey
    secret: str
    partner_admin: User
    invitation: Invitation
    _job: Job | None = field(default=None, repr=False)
    _dataset_version: object = field(default=None, repr=False)
    _model: object = field(default=None, repr=False)
    _generator: object = field(default=None, repr=False)

    @property
    def job(self) -> Job:
        """A finished job in the world's project, made on first use: tests that count or schedule
        jobs start from none."""
        if self._job is None:
            self._job = make_finished_job(self.tenant, self.project, self.owner)
        return self._job

    @property
    def dataset_version(self):
        """A sentiment dataset (one version) in the world's project, made on first use."""
        if self._dataset_version is None:
            from tests.registry.factories import make_dataset_version

            self._dataset_version = make_dataset_version(
                self, "sentiment", name=f"reviews-{self.tenant.public_id[-6:]}"
            )
        return self._dataset_version

    @property
    def model(self):
        """A tiny trained sentiment model version in the world's project, made on first use."""
        if self._model is None:
            from tests.registry.factories import make_model_version

            self._model = make_model_version(
                self, "sentiment", name=f"model-{self.tenant.public_id[-6:]}"
            )
        return self._model

    @property
    def generator(self):
        """A tiny trained text-generation model version in the world's project, made on first use."""
        if self._generator is None:
            from tests.registry.factories import make_model_version

            self._generator = make_model_version(
                self, "text-generation", name=f"chat-{self.tenant.public_id[-6:]}"
            )
        return self._generator

    def client(self) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.secret}")
        return client

    def session(self) -> APIClient:
        client = APIClient(enforce_csrf_checks=False)
        client.force_login(self.owner)
        return client

    def partner_session(self) -> APIClient:
        client = APIClient()
        client.force_login(self.partner_admin)
        return client


def build_world(label: str, brand_colour: str = "#1f6feb") -> World:
    root = partner_root()
    partner = Partner.objects.create(
        name=f"Partner {label}", brand_name=f"Brand {label}", parent=root, brand_colour=brand_colour
    )
    tenant = tenant_create(partner=partner, name=f"Tenant {label}")
    owner_membership = make_member(tenant, f"owner-{label.lower()}@example.com", Role.OWNER)
    with tenant_context(tenant):
        project = project_create(tenant=tenant, name=f"Project {label}")
    key, secret = make_key(tenant, user=owner_membership.user)
    partner_admin = make_user(f"partner-admin-{label.lower()}@example.com")
    PartnerMembership.objects.create(partner=partner, user=partner_admin, role=PartnerRole.ADMIN)
    invitation = invite(
        tenant=tenant, email=f"invitee-{label.lower()}@example.com", role=Role.VIEWER, actor=None
    )
    return World(
        partner,
        tenant,
        owner_membership.user,
        owner_membership,
        project,
        key,
        secret,
        partner_admin,
        invitation,
    )


def make_finished_job(tenant: Tenant, project: Project, user: User) -> Job:
    """A job with events, ended (cancelled) so that it holds no place in the tenant's queue."""
    # One transaction: the job is cancelled before its dispatch would run (on commit), so no
    # broker or worker ever hears of it.
    with tenant_context(tenant), transaction.atomic():
        caller = Caller(user=user, tenant=tenant, role=Role.OWNER)
        job = engine.job_create(
            project=project, kind="test.steps", params={"steps": 2}, caller=caller
        )
        return engine.request_cancel(job, caller)


@pytest.fixture
def world_a(db) -> World:
    return build_world("A")


@pytest.fixture
def world_b(db) -> World:
    return build_world("B", brand_colour="#8250df")
