"""The cross-tenant probe, generated from the URL conf.

Every route of the project (API and portal) is called with every method by tenant B's
principals (its API key, its owner's session, its partner admin's session), filling each
path parameter with tenant A's object ids. For every call the answer must equal the answer
for an id that does not exist (so nothing reveals that A's object is there), at least one
principal must get 404 on each object route, no answer may show A's rows, and A's rows must
be unchanged afterwards. A route that is neither probed nor exempted with a reason fails.
"""

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import NamedTuple

import pytest
from django.db.models import Q
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from tests.conftest import World, make_key
from verticals.billing.models import Invoice, Plan, PriceBookEntry, Subscription, UsageEvent
from verticals.jobs.models import Job, JobEffect, JobEvent, WebhookDelivery
from verticals.registry.models import Dataset, DatasetVersion, ModelVersion
from verticals.tenancy.models import (
    ApiKey,
    AuditEvent,
    Invitation,
    Membership,
    Partner,
    Project,
    Tenant,
)
from verticals.tenancy.paths import is_api_path
from verticals.tenancy.roles import Role

METHODS = ["get", "head", "options", "post", "put", "patch", "delete"]

# Routes the probe does not call, each with the reason.
EXEMPT = {
    "admin:": "Django admin: staff only (is_staff), not a tenant surface.",
    "schema": "OpenAPI document: describes routes, holds no tenant data.",
    "api-docs": "Swagger UI page: static, holds no tenant data.",
    "api-redoc": "Redoc page: static, holds no tenant data.",
    "healthz": "Liveness answer, holds no tenant data.",
    "portal:login": "Sign-in form, before any tenant is known.",
    "portal:logout": "Ends the caller's own session.",
    "portal:password_reset": "Takes an email; answers the same whether or not it exists.",
    "portal:password_reset_done": "Static confirmation page.",
    "portal:password_reset_confirm": "The signed token in the URL is the credential, not a tenant object id.",
    "portal:password_reset_complete": "Static confirmation page.",
    "portal:invitation": "The token in the URL is the credential (tests/portal/test_invitations.py covers it).",
    "<unnamed>^media/(?P<path>.*)": "Partner logos (public branding); tenant files are never served from MEDIA_URL.",
}


def invoice_of(world: World) -> Invoice:
    """The world's retail invoice for a closed month (made on first use, with its partner's wholesale invoice)."""
    if getattr(world, "_invoice", None) is None:
        from verticals.billing import invoicing, services

        plan, _ = Plan.objects.get_or_create(
            code="probe-plan", defaults={"name": "Probe plan", "monthly_fee": Decimal(10)}
        )
        start = datetime(2026, 1, 1, tzinfo=UTC)
        services.subscribe(world.tenant, plan, now=start)
        invoicing.close_period(datetime(2026, 2, 1, 1, tzinfo=UTC), tenants=[world.tenant])
        world._invoice = Invoice.objects.get(kind=Invoice.Kind.RETAIL, tenant=world.tenant)
    return world._invoice


def wholesale_of(world: World) -> Invoice:
    invoice_of(world)
    return Invoice.objects.get(kind=Invoice.Kind.WHOLESALE, partner=world.partner)


# How to fill each path parameter with tenant A's object (attribute of World, or a function).
PARAM_FILLERS = {
    "project_id": lambda w: w.project.public_id,
    "member_id": lambda w: w.membership.public_id,
    "key_id": lambda w: w.key.public_id,
    "tenant_id": lambda w: w.tenant.public_id,
    "event_id": lambda w: AuditEvent.dangerously_unscoped.filter(tenant=w.tenant).first().public_id,
    "invitation_id": lambda w: w.invitation.public_id,
    "job_id": lambda w: w.job.public_id,
    "dataset_id": lambda w: w.dataset_version.dataset.public_id,
    "model_id": lambda w: w.model.public_id,
    "model": lambda w: (
        w.generator.public_id
    ),  # the OpenAI-compatible routes' model: a text-generation model
    # Tenant routes take A's retail invoice; partner routes the same (one of A's partner's), so a
    # route that mixed up whose invoice it serves shows here.
    "invoice_id": lambda w: invoice_of(w).public_id,
}
BOGUS = {
    "project_id": "prj_doesnotexist000000",
    "member_id": "mem_doesnotexist000000",
    "key_id": "key_doesnotexist000000",
    "tenant_id": "ten_doesnotexist000000",
    "event_id": "aud_doesnotexist000000",
    "invitation_id": "inv_doesnotexist000000",
    "job_id": "job_doesnotexist000000",
    "dataset_id": "ds_doesnotexist0000000",
    "model_id": "mdl_doesnotexist000000",
    "model": "mdl_doesnotexist000000",
    "invoice_id": "invc_doesnotexist00000",
}


class Route(NamedTuple):
    name: str
    regex: str
    params: list[str]
    callback: object


def iter_routes(patterns=None, prefix="", namespace=""):
    """Every route of the URL conf, resolvers expanded."""
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        regex = prefix + entry.pattern.regex.pattern.lstrip("^").rstrip("$")
        if isinstance(entry, URLResolver):
            inner_ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from iter_routes(entry.url_patterns, regex, inner_ns)
        elif isinstance(entry, URLPattern):
            name = f"{namespace}{entry.name}" if entry.name else f"{namespace}<unnamed>^{regex}"
            yield Route(name, regex, list(re.compile(regex).groupindex), entry.callback)


def exemption(name: str) -> str | None:
    """A route's exemption: by its exact name, or by a whole namespace (a key ending in ':')."""
    if name in EXEMPT:
        return EXEMPT[name]
    namespace = name.split(":", 1)[0] + ":" if ":" in name else None
    return EXEMPT.get(namespace) if namespace else None


def markers(world: World) -> list[str]:
    """Strings that would betray A's rows in an answer."""
    return [
        world.tenant.public_id,
        world.tenant.name,
        world.project.public_id,
        world.project.name,
        world.membership.public_id,
        world.key.public_id,
        world.key.lookup,
        world.owner.email,
        world.partner.public_id,
        world.invitation.public_id,
        world.invitation.email,
        world.job.public_id,
        world.dataset_version.public_id,
        world.dataset_version.dataset.public_id,
        world.dataset_version.dataset.name,
        world.model.public_id,
        world.model.name,
        world.generator.public_id,
        world.generator.name,
        invoice_of(world).public_id,
        invoice_of(world).number,
        wholesale_of(world).public_id,
        wholesale_of(world).number,
    ]


def snapshot(world: World) -> dict:
    # The probe looks at A's rows from outside any request: it checks them by A's id directly.
    _ = (
        world.job,
        world.dataset_version,
        world.model,
        world.generator,
    )  # made now, so that they are in the picture before the probe
    invoice_of(world)
    return {
        "tenant": Tenant.objects.filter(pk=world.tenant.pk).values().get(),
        "projects": list(
            Project.dangerously_unscoped.filter(tenant=world.tenant).values().order_by("pk")
        ),
        "members": list(
            Membership.dangerously_unscoped.filter(tenant=world.tenant).values().order_by("pk")
        ),
        "keys": list(
            ApiKey.dangerously_unscoped.filter(tenant=world.tenant).values().order_by("pk")
        ),
        "audit": list(
            AuditEvent.dangerously_unscoped.filter(tenant=world.tenant).values().order_by("pk")
        ),
        "invitations": list(
            Invitation.dangerously_unscoped.filter(tenant=world.tenant).values().order_by("pk")
        ),
        "jobs": list(Job.dangerously_unscoped.filter(tenant=world.tenant).values().order_by("pk")),
        "job_events": list(
            JobEvent.dangerously_unscoped.filter(tenant=world.tenant).values().order_by("pk")
        ),
        "job_effects": list(
            JobEffect.dangerously_unscoped.filter(tenant=world.tenant).values().order_by("pk")
        ),
        "deliveries": list(
            WebhookDelivery.dangerously_unscoped.filter(tenant=world.tenant).values().order_by("pk")
        ),
        "datasets": list(
            Dataset.dangerously_unscoped.filter(tenant=world.tenant).values().order_by("pk")
        ),
        "dataset_versions": list(
            DatasetVersion.dangerously_unscoped.filter(tenant=world.tenant).values().order_by("pk")
        ),
        "models": list(
            ModelVersion.dangerously_unscoped.filter(tenant=world.tenant).values().order_by("pk")
        ),
        "files": stored_files(world),
        "partner": Partner.objects.filter(pk=world.partner.pk).values().get(),
        "subscriptions": list(
            Subscription.dangerously_unscoped.filter(tenant=world.tenant).values().order_by("pk")
        ),
        "usage": list(
            UsageEvent.dangerously_unscoped.filter(tenant=world.tenant).values().order_by("pk")
        ),
        "invoices": list(
            Invoice.objects.filter(Q(tenant=world.tenant) | Q(partner=world.partner))
            .values()
            .order_by("pk")
        ),
        "price_book": list(
            PriceBookEntry.objects.filter(price_book__partner=world.partner).values().order_by("pk")
        ),
    }


def stored_files(world: World) -> list[str]:
    """A's stored dataset and model files (names and sizes): none may change or go."""
    from pathlib import Path

    from verticals.registry import storage

    found = []
    for top in ("datasets", "models"):
        root = Path(storage.artifacts().path(f"{top}/{world.tenant.public_id}"))
        if root.exists():
            found += sorted(
                f"{p.relative_to(root)}:{p.stat().st_size}" for p in root.rglob("*") if p.is_file()
            )
    return found


def principals(world_b: World):
    return {
        "b-api-key": world_b.client(),
        "b-owner-session": world_b.session(),
        "b-partner-admin": world_b.partner_session(),
    }


def body_for(world_a: World) -> dict:
    """A write body that points at A's objects wherever a field takes an id."""
    return {
        "name": "probe",
        "description": "probe",
        "role": Role.VIEWER,
        "reason": "probe",
        "scopes": ["read"],
        "project": world_a.project.public_id,
        "tenant": world_a.tenant.public_id,
        "partner": world_a.partner.public_id,
        "kind": "test.noop",
        "params": {},
        "job": world_a.job.public_id,
        "task": "sentiment",
        "dataset": world_a.dataset_version.public_id,
        "model": world_a.model.public_id,
        "inputs": "probe",
        "parent": world_a.model.public_id,
    }


def call(client, method: str, path: str, body: dict):
    if method in ("get", "head", "options", "delete"):
        return getattr(client, method)(path)
    if is_api_path(path):
        return getattr(client, method)(path, body, format="json")
    # Portal forms read request.POST: send a form, with A's ids in every field that takes one.
    return getattr(client, method)(path, body)


def text_of(response) -> str:
    if getattr(response, "streaming", False):
        return ""
    return response.content.decode(errors="replace")


@pytest.mark.django_db
def test_every_route_is_probed_or_exempted(world_a, world_b):
    unknown_params, probed = [], 0
    for name, regex, params, _view in iter_routes():
        if exemption(name):
            continue
        missing = [p for p in params if p not in PARAM_FILLERS and p != "rest"]
        if missing:
            unknown_params.append(f"{name} ({regex}): no filler for {missing}")
        probed += 1
    assert not unknown_params, (
        "Routes the probe cannot fill; add a PARAM_FILLERS entry or an EXEMPT reason:\n"
        + "\n".join(unknown_params)
    )
    assert probed >= 15


# The probe's routes are split into this many shards, each a test of its own (with its own two
# worlds), so that parallel runs (pytest-xdist) spread the probe over their workers.
PROBE_SHARDS = 4


def probed_routes(shard: int) -> list[Route]:
    """The routes the probe calls in one shard: every route not exempted, in turn across the shards."""
    routes = [route for route in iter_routes() if not exemption(route.name)]
    return routes[shard::PROBE_SHARDS]


def test_the_probe_shards_cover_every_route_once():
    shards = [[route.name for route in probed_routes(shard)] for shard in range(PROBE_SHARDS)]
    every = [route.name for route in iter_routes() if not exemption(route.name)]
    assert sorted(name for shard in shards for name in shard) == sorted(every)
    assert all(shards), shards


@pytest.mark.django_db
@pytest.mark.parametrize("shard", range(PROBE_SHARDS))
def test_tenant_b_cannot_reach_tenant_a(world_a, world_b, shard):
    # B's owner and keys get every power, so that only tenancy can stop them.
    before = snapshot(world_a)
    # What would betray A's rows, and the body that names them: worked out once, since A's rows
    # may not change during the probe (the last assertion checks that they did not).
    betraying, body = markers(world_a), body_for(world_a)
    sent = str(body)
    betrayals, leaks, unreached = [], [], []
    for name, regex, params, _view in probed_routes(shard):
        params = [p for p in params if p != "rest"]
        if "rest" in re.compile(regex).groupindex:
            path_a = path_bogus = "/" + regex.split("(?P")[0] + "probe/" + world_a.project.public_id
        else:
            path_a = reverse(name, kwargs={p: PARAM_FILLERS[p](world_a) for p in params})
            path_bogus = reverse(name, kwargs={p: BOGUS[p] for p in params})
        saw_404 = False
        for who, client in principals(world_b).items():
            for method in METHODS:
                answer = call(client, method, path_a, body)
                text = text_of(answer)
                if params:
                    bogus = call(client, method, path_bogus, body)
                    if answer.status_code != bogus.status_code:
                        betrayals.append(
                            f"{method.upper()} {path_a} as {who}: {answer.status_code}, but {bogus.status_code} for a missing id"
                        )
                    saw_404 |= answer.status_code == 404
                    to_login = answer.status_code == 302 and "/login/" in answer.get("Location", "")
                    if answer.status_code < 400 and not to_login:
                        leaks.append(
                            f"{method.upper()} {path_a} as {who}: {answer.status_code} on A's object"
                        )
                # What the caller sent (in the body or the path) may come back in a message; nothing else of A's may.
                found = [m for m in betraying if m in text and m not in sent and m not in path_a]
                if found:
                    leaks.append(f"{method.upper()} {path_a} as {who}: answer shows {found}")
                assert answer.status_code < 500, (
                    f"{method.upper()} {path_a} as {who}: {answer.status_code} {text[:300]}"
                )
        if params and not saw_404:
            unreached.append(f"{name}: no principal got 404")
    assert not betrayals, "\n".join(betrayals)
    assert not leaks, "\n".join(leaks)
    assert not unreached, "\n".join(unreached)
    assert snapshot(world_a) == before, "tenant A's rows changed during the probe"


@pytest.mark.django_db
def test_b_lists_show_none_of_a(world_a, world_b):
    own_jobs = f"/api/v1/projects/{world_b.project.public_id}/jobs/"
    own_datasets = f"/api/v1/projects/{world_b.project.public_id}/datasets/"
    own_models = f"/api/v1/projects/{world_b.project.public_id}/models/"
    _ = (
        world_a.job,
        world_b.job,
        world_a.model,
        world_b.model,
        world_a.dataset_version,
        world_b.dataset_version,
    )
    invoice_of(world_a), invoice_of(world_b)
    billing_lists = [
        "/api/v1/plans/",
        "/api/v1/usage/",
        "/api/v1/usage/?group_by=project,task",
        "/api/v1/invoices/",
        "/api/v1/partner/invoices/",
        "/api/v1/partner/price-book/",
        "/api/v1/partner/revenue/?start=2025-12-01",
        "/api/v1/partner/growth/?months=36",
    ]
    for path in [
        "/api/v1/projects/",
        "/api/v1/members/",
        "/api/v1/api-keys/",
        "/api/v1/audit-events/",
        "/api/v1/partner/tenants/",
        own_jobs,
        own_datasets,
        own_models,
        "/api/v1/tasks/",
        "/api/v1/base-models/",
        *billing_lists,
    ]:
        for who, client in principals(world_b).items():
            answer = client.get(path)
            if answer.status_code == 200:
                assert "results" in answer.json(), (path, who, answer.json())
                assert not [m for m in markers(world_a) if m in answer.content.decode()], (
                    path,
                    who,
                )
    # Billing answers that are one object, not a list, and the usage download.
    for path in [
        "/api/v1/subscription/",
        "/api/v1/partner/brand/",
        "/api/v1/usage/?format=csv&group_by=project",
    ]:
        for who, client in principals(world_b).items():
            answer = client.get(path)
            assert answer.status_code in (200, 403), (path, who, answer.status_code)
            assert not [m for m in markers(world_a) if m in answer.content.decode()], (path, who)
    # B's own rows are there, so the emptiness of A's is not an accident of empty lists.
    assert world_b.project.public_id in world_b.client().get("/api/v1/projects/").content.decode()
    assert (
        world_b.tenant.public_id
        in world_b.partner_session().get("/api/v1/partner/tenants/").content.decode()
    )
    assert world_b.job.public_id in world_b.client().get(own_jobs).content.decode()
    assert (
        world_b.dataset_version.dataset.public_id
        in world_b.client().get(own_datasets).content.decode()
    )
    assert world_b.model.public_id in world_b.client().get(own_models).content.decode()
    assert (
        invoice_of(world_b).public_id in world_b.client().get("/api/v1/invoices/").content.decode()
    )
    b_partner_invoices = world_b.partner_session().get("/api/v1/partner/invoices/").content.decode()
    assert (
        invoice_of(world_b).public_id in b_partner_invoices
        and wholesale_of(world_b).public_id in b_partner_invoices
    )
    assert (
        world_b.tenant.public_id
        in world_b.partner_session()
        .get("/api/v1/partner/revenue/?start=2025-12-01")
        .content.decode()
    )


@pytest.mark.django_db
def test_key_restricted_to_one_project_sees_only_that_project(world_a):
    from verticals.tenancy.scoping import tenant_context
    from verticals.tenancy.services import project_create

    with tenant_context(world_a.tenant):
        other = project_create(tenant=world_a.tenant, name="Other")
    _key, secret = make_key(world_a.tenant, project=world_a.project, user=world_a.owner)
    own_job = world_a.job
    client = world_a.client()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    answer = client.get("/api/v1/projects/")
    assert answer.status_code == 200, answer.json()
    listed = [p["id"] for p in answer.json()["results"]]
    assert listed == [world_a.project.public_id]
    assert client.get(f"/api/v1/projects/{other.public_id}/").status_code == 404
    refused = client.post("/api/v1/projects/", {"name": "new"}, format="json")
    assert refused.status_code == 403
    assert world_a.project.public_id in refused.json()["error"]["message"]
    # The other project's jobs are out of reach too: 404, as for another tenant's.
    from tests.conftest import make_finished_job

    other_job = make_finished_job(world_a.tenant, other, world_a.owner)
    jobs = f"/api/v1/projects/{other.public_id}/jobs/"
    assert client.get(jobs).status_code == 404
    assert client.post(jobs, {"kind": "test.noop"}, format="json").status_code == 404
    for tail in ("", "events/", "deliveries/"):
        assert client.get(f"{jobs}{other_job.public_id}/{tail}").status_code == 404, tail
    assert client.post(f"{jobs}{other_job.public_id}/cancel/").status_code == 404
    # Nor does naming its own project reach the other project's job.
    assert (
        client.get(
            f"/api/v1/projects/{world_a.project.public_id}/jobs/{other_job.public_id}/"
        ).status_code
        == 404
    )
    own = client.get(f"/api/v1/projects/{world_a.project.public_id}/jobs/")
    assert [j["id"] for j in own.json()["results"]] == [own_job.public_id]
    # Datasets and models of the other project: 404 too, under their own project and under the key's.
    from tests.registry.factories import make_dataset_version, make_model_version

    other_model = make_model_version(world_a, project=other, name="other-model")
    other_dataset = make_dataset_version(world_a, project=other, name="other-data").dataset
    for project_id in (other.public_id, world_a.project.public_id):
        base = f"/api/v1/projects/{project_id}"
        assert client.get(f"{base}/models/{other_model.public_id}/").status_code == 404
        assert (
            client.post(
                f"{base}/models/{other_model.public_id}/predict", {"inputs": "hi"}, format="json"
            ).status_code
            == 404
        )
        assert client.get(f"{base}/models/{other_model.public_id}/download/").status_code == 404
        assert client.get(f"{base}/datasets/{other_dataset.public_id}/").status_code == 404
        assert client.get(f"{base}/datasets/{other_dataset.public_id}/download/").status_code == 404
    assert (
        client.post(
            f"/api/v1/projects/{world_a.project.public_id}/jobs/",
            {
                "kind": "evaluate",
                "params": {"model": other_model.public_id, "dataset": other_dataset.public_id},
            },
            format="json",
        ).status_code
        == 400
    )


def test_every_api_view_stands_on_a_scoping_base():
    """API views reach rows only through the scoped bases; a new view that does not is caught here."""
    from drf_spectacular.views import (
        SpectacularAPIView,
        SpectacularRedocView,
        SpectacularSwaggerView,
    )
    from rest_framework.views import APIView

    from verticals.api.base import (
        CallerAPIView,
        CatalogViewSet,
        PartnerScopedViewSet,
        TenantScopedViewSet,
    )

    bases = (TenantScopedViewSet, PartnerScopedViewSet, CallerAPIView, CatalogViewSet)
    schema_views = (SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView)
    offenders, checked = [], 0
    for route in iter_routes():
        cls = getattr(route.callback, "cls", None)
        if cls is None or not issubclass(cls, APIView) or issubclass(cls, schema_views):
            continue
        checked += 1
        if not issubclass(cls, bases):
            offenders.append(f"{route.name}: {cls.__name__}")
    assert checked >= 10 and not offenders, f"API views outside the scoped bases: {offenders}"
