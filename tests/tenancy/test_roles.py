"""docs/roles.md is the role table; the API enforces exactly it, for every role × action."""

import itertools
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from tests.conftest import make_key, make_member, make_user
from verticals.jobs import engine
from verticals.tenancy.models import PartnerMembership
from verticals.tenancy.roles import PARTNER_ACTIONS, TENANT_ACTIONS, PartnerRole, Role, Scope
from verticals.tenancy.scoping import tenant_context
from verticals.tenancy.services import project_create

DOC = Path(__file__).resolve().parents[2] / "docs" / "roles.md"
_counter = itertools.count()


def doc_table(first_header: str) -> tuple[list[str], dict[str, list[str]]]:
    lines = DOC.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} "))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return header[1:], rows


def test_doc_tenant_table_is_the_code_table():
    columns, rows = doc_table("action")
    assert columns == [r.value for r in Role] + ["API key scope"]
    assert set(rows) == set(TENANT_ACTIONS), "actions in docs/roles.md differ from roles.py"
    for action, cells in rows.items():
        roles, scope = TENANT_ACTIONS[action]
        assert {
            r.value for r, cell in zip(Role, cells[: len(Role)], strict=True) if cell == "yes"
        } == {r.value for r in roles}, action
        assert all(cell in ("yes", "no") for cell in cells[:-1]), action
        assert cells[-1] == scope.value, action


def test_doc_lists_what_project_restricted_keys_may_not_do():
    import re

    from verticals.tenancy.roles import TENANT_WIDE_ACTIONS

    text = " ".join(DOC.read_text().split())
    listed = re.search(r"concern the whole tenant: ((?:[a-z_]+\.[a-z_]+(?:, )?)+)\.", text).group(1)
    assert set(listed.split(", ")) == set(TENANT_WIDE_ACTIONS)


def test_doc_partner_table_is_the_code_table():
    columns, rows = doc_table("action | partner_admin")
    assert columns == [r.value for r in PartnerRole]
    assert set(rows) == set(PARTNER_ACTIONS)
    for action, cells in rows.items():
        assert {r.value for r, cell in zip(PartnerRole, cells, strict=True) if cell == "yes"} == {
            r.value for r in PARTNER_ACTIONS[action]
        }


def _fresh_project(tenant):
    with tenant_context(tenant):
        return project_create(tenant=tenant, name=f"p{next(_counter)}")


def _fresh_member(tenant, role=Role.DEVELOPER):
    return make_member(tenant, f"m{next(_counter)}@example.com", role)


def _fresh_job(tenant):
    """A queued job (in a fresh project): something to cancel."""
    project = _fresh_project(tenant)
    with tenant_context(tenant):
        return project, engine.job_create(project=project, kind="test.noop")


def perform(client, action: str, tenant):
    """Do `action` through the API as `client`; return the response."""
    n = next(_counter)
    if action == "project.view":
        return client.get("/api/v1/projects/")
    if action == "project.create":
        return client.post("/api/v1/projects/", {"name": f"new-{n}"}, format="json")
    if action == "project.update":
        return client.patch(
            f"/api/v1/projects/{_fresh_project(tenant).public_id}/",
            {"description": "x"},
            format="json",
        )
    if action == "project.delete":
        return client.delete(f"/api/v1/projects/{_fresh_project(tenant).public_id}/")
    if action == "member.view":
        return client.get("/api/v1/members/")
    if action == "member.invite":
        return client.post(
            "/api/v1/invitations/",
            {"email": f"invitee{n}@example.com", "role": "viewer"},
            format="json",
        )
    if action == "member.change_role":
        return client.patch(
            f"/api/v1/members/{_fresh_member(tenant).public_id}/", {"role": "viewer"}, format="json"
        )
    if action == "member.remove":
        return client.delete(f"/api/v1/members/{_fresh_member(tenant).public_id}/")
    if action == "member.manage_owners":
        return client.patch(
            f"/api/v1/members/{_fresh_member(tenant).public_id}/", {"role": "owner"}, format="json"
        )
    if action == "api_key.view":
        return client.get("/api/v1/api-keys/")
    if action == "api_key.create":
        return client.post(
            "/api/v1/api-keys/",
            {"name": f"k{n}", "scopes": ["read"], "role": "viewer"},
            format="json",
        )
    if action == "api_key.revoke":
        key, _secret = make_key(tenant, role=Role.VIEWER, scopes=["read"])
        return client.post(f"/api/v1/api-keys/{key.public_id}/revoke/")
    if action == "audit.view":
        return client.get("/api/v1/audit-events/")
    if action == "job.view":
        project, job = _fresh_job(tenant)
        return client.get(f"/api/v1/projects/{project.public_id}/jobs/{job.public_id}/")
    if action == "job.create":
        return client.post(
            f"/api/v1/projects/{_fresh_project(tenant).public_id}/jobs/",
            {"kind": "test.noop"},
            format="json",
        )
    if action == "job.cancel":
        project, job = _fresh_job(tenant)
        return client.post(f"/api/v1/projects/{project.public_id}/jobs/{job.public_id}/cancel/")
    billing = _billing_action(client, action)
    if billing is not None:
        return billing
    registry = _registry_action(client, action, tenant, n)
    if registry is not None:
        return registry
    raise AssertionError(f"test_roles does not know how to perform {action}: add it to perform()")


def _fresh_plan():
    """An active plan in the tenant's currency that nobody is on yet: a plan change to it can be made."""
    from decimal import Decimal

    from verticals.billing.models import Plan

    return Plan.objects.create(
        code=f"roles-{next(_counter)}", name="Roles", monthly_fee=Decimal(10), currency="USD"
    )


def _billing_action(client, action: str):
    if action == "usage.view":
        return client.get("/api/v1/usage/")
    if action == "plan.view":
        return client.get("/api/v1/plans/")
    if action == "invoice.view":
        return client.get("/api/v1/invoices/")
    if action == "plan.change":
        return client.post("/api/v1/subscription/", {"plan": _fresh_plan().code}, format="json")
    return None


def _world_of(tenant):
    """Enough of a World for the registry factories: the tenant and a fresh project."""
    from types import SimpleNamespace

    return SimpleNamespace(tenant=tenant, project=_fresh_project(tenant))


def _registry_action(client, action: str, tenant, n: int):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.registry.factories import (
        REVIEWS,
        csv_bytes,
        make_dataset_version,
        make_model_version,
        tiny_model_dir,
    )

    if action == "task.view":
        return client.get("/api/v1/tasks/")
    world = _world_of(tenant)
    base = f"/api/v1/projects/{world.project.public_id}"
    if action == "dataset.create":
        return client.post(
            f"{base}/datasets/",
            {"task": "sentiment", "file": SimpleUploadedFile("r.csv", csv_bytes(REVIEWS))},
            format="multipart",
        )
    if action in ("dataset.view", "dataset.delete", "dataset.download"):
        dataset = make_dataset_version(world, name=f"d{n}").dataset
        path = f"{base}/datasets/{dataset.public_id}/"
        return {
            "dataset.view": lambda: client.get(path),
            "dataset.delete": lambda: client.delete(path),
            "dataset.download": lambda: client.get(path + "download/"),
        }[action]()
    if action == "model.import":
        import io
        import zipfile

        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as bundle:
            for path in tiny_model_dir("sentiment").iterdir():
                bundle.write(path, path.name)
        return client.post(
            f"{base}/models/",
            {"task": "sentiment", "file": SimpleUploadedFile("m.zip", buffer.getvalue())},
            format="multipart",
        )
    if action in ("model.view", "model.delete", "model.download", "model.predict"):
        model = make_model_version(world, name=f"m{n}")
        path = f"{base}/models/{model.public_id}/"
        return {
            "model.view": lambda: client.get(path),
            "model.delete": lambda: client.delete(path),
            "model.download": lambda: client.get(path + "download/"),
            "model.predict": lambda: client.post(
                path + "predict", {"inputs": "great"}, format="json"
            ),
        }[action]()
    return None


@pytest.mark.django_db
@pytest.mark.parametrize("role", list(Role))
def test_every_role_by_session(world_a, role):
    member = _fresh_member(world_a.tenant, role)
    client = APIClient()
    client.force_login(member.user)
    for action, (roles, _scope) in TENANT_ACTIONS.items():
        answer = perform(client, action, world_a.tenant)
        if role in roles:
            assert answer.status_code < 300, (
                role,
                action,
                answer.status_code,
                answer.content[:300],
            )
        else:
            assert answer.status_code in (400, 403), (role, action, answer.status_code)
            assert answer.json()["error"]["code"] in ("permission_denied", "invalid")


@pytest.mark.django_db
@pytest.mark.parametrize("role", list(Role))
def test_every_role_by_api_key(world_a, role):
    _key, secret = make_key(world_a.tenant, role=role, user=world_a.owner)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    for action, (roles, _scope) in TENANT_ACTIONS.items():
        answer = perform(client, action, world_a.tenant)
        expected_ok = role in roles
        assert (answer.status_code < 300) == expected_ok, (
            role,
            action,
            answer.status_code,
            answer.content[:300],
        )


@pytest.mark.django_db
@pytest.mark.parametrize("scope", list(Scope))
def test_a_key_without_the_scope_gets_403(world_a, scope):
    others = [s for s in Scope if s != scope]
    _key, secret = make_key(world_a.tenant, role=Role.OWNER, scopes=others, user=world_a.owner)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    for action, (_roles, needed) in TENANT_ACTIONS.items():
        if needed != scope:
            continue
        answer = perform(client, action, world_a.tenant)
        assert answer.status_code == 403, action
        assert f"'{scope.value}' scope" in answer.json()["error"]["message"]


def partner_perform(client, action: str, tenant):
    n = next(_counter)
    base = f"/api/v1/partner/tenants/{tenant.public_id}/"
    return {
        "partner.tenant.view": lambda: client.get("/api/v1/partner/tenants/"),
        "partner.tenant.create": lambda: client.post(
            "/api/v1/partner/tenants/", {"name": f"T{n}"}, format="json"
        ),
        "partner.tenant.update": lambda: client.patch(
            base, {"name": f"Renamed {n}"}, format="json"
        ),
        "partner.tenant.suspend": lambda: client.post(
            base + "suspend/", {"reason": "unpaid"}, format="json"
        ),
        "partner.tenant.reactivate": lambda: client.post(base + "reactivate/"),
        "partner.tenant.plan": lambda: client.post(
            base + "plan/", {"plan": _fresh_plan().code}, format="json"
        ),
        "partner.billing.view": lambda: client.get("/api/v1/partner/revenue/"),
        "partner.price.update": lambda: client.put(
            "/api/v1/partner/price-book/",
            {"plan": _fresh_plan().code, "item": "plan.fee", "retail": "12.50"},
            format="json",
        ),
        "partner.brand.update": lambda: client.patch(
            "/api/v1/partner/brand/", {"brand_colour": f"#{n % 0xFFFFFF:06x}"}, format="json"
        ),
    }[action]()


def partner_member_session(partner, role: str) -> APIClient:
    """A session of a new member of `partner` with `role`."""
    user = make_user(f"{role}-{next(_counter)}@partner.example")
    PartnerMembership.objects.create(partner=partner, user=user, role=role)
    client = APIClient()
    client.force_login(user)
    client.user = user
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("role", list(PartnerRole))
def test_every_partner_role(world_a, role):
    client = partner_member_session(world_a.partner, role)
    for action, roles in PARTNER_ACTIONS.items():
        answer = partner_perform(client, action, world_a.tenant)
        if role in roles:
            assert answer.status_code < 300, (
                role,
                action,
                answer.status_code,
                answer.content[:300],
            )
        else:
            assert answer.status_code == 403, (role, action, answer.status_code)


@pytest.mark.django_db
def test_admin_cannot_make_an_owner_and_last_owner_stays(world_a):
    admin = _fresh_member(world_a.tenant, Role.ADMIN)
    client = APIClient()
    client.force_login(admin.user)
    target = _fresh_member(world_a.tenant, Role.VIEWER)
    answer = client.patch(f"/api/v1/members/{target.public_id}/", {"role": "owner"}, format="json")
    assert answer.status_code == 400 and "role:" in answer.json()["error"]["message"]
    assert client.delete(f"/api/v1/members/{world_a.membership.public_id}/").status_code == 403
    owner = APIClient()
    owner.force_login(world_a.owner)
    answer = owner.patch(
        f"/api/v1/members/{world_a.membership.public_id}/", {"role": "admin"}, format="json"
    )
    assert answer.status_code == 400 and "at least one owner" in answer.json()["error"]["message"]


@pytest.mark.django_db
def test_removing_a_member_revokes_its_keys(world_a):
    dev = _fresh_member(world_a.tenant, Role.DEVELOPER)
    dev_client = APIClient()
    dev_client.force_login(dev.user)
    secret = dev_client.post(
        "/api/v1/api-keys/", {"name": "mine", "scopes": ["read"]}, format="json"
    ).json()["secret"]
    assert world_a.session().delete(f"/api/v1/members/{dev.public_id}/").status_code == 204
    key_client = APIClient()
    key_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert key_client.get("/api/v1/me").status_code == 401
