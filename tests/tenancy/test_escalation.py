"""Nobody reaches further than granted: restricted keys, demoted members, minted keys,
keys on portal pages, partner staff whose own tenant is suspended, odd methods and dates."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from tests.conftest import make_key, make_member
from verticals.tenancy.models import ApiKey, Membership
from verticals.tenancy.roles import Role
from verticals.tenancy.scoping import tenant_context


def bearer(secret):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.mark.django_db
def test_project_restricted_key_cannot_act_on_the_whole_tenant(world_a):
    _key, secret = make_key(
        world_a.tenant, role=Role.ADMIN, project=world_a.project, user=world_a.owner
    )
    client = bearer(secret)
    for method, path, body in [
        ("get", "/api/v1/members/", None),
        ("post", "/api/v1/invitations/", {"email": "attacker@evil.example", "role": "admin"}),
        ("get", "/api/v1/invitations/", None),
        ("patch", f"/api/v1/members/{world_a.membership.public_id}/", {"role": "viewer"}),
        ("get", "/api/v1/audit-events/", None),
        ("post", "/api/v1/projects/", {"name": "elsewhere"}),
    ]:
        answer = (
            getattr(client, method)(path, body, format="json")
            if body
            else getattr(client, method)(path)
        )
        assert answer.status_code == 403, (method, path, answer.status_code)
        assert world_a.project.public_id in answer.json()["error"]["message"]
    assert client.get(f"/api/v1/projects/{world_a.project.public_id}/").status_code == 200


@pytest.mark.django_db
def test_demoting_a_member_lowers_its_keys(world_a):
    admin = make_member(world_a.tenant, "admin@example.com", Role.ADMIN)
    session = APIClient()
    session.force_login(admin.user)
    secret = session.post(
        "/api/v1/api-keys/",
        {"name": "ops", "scopes": ["read", "write"], "role": "admin"},
        format="json",
    ).json()["secret"]
    world_a.session().patch(
        f"/api/v1/members/{admin.public_id}/", {"role": "viewer"}, format="json"
    )
    key_client = bearer(secret)
    assert key_client.get("/api/v1/me").json()["role"] == "viewer"
    answer = key_client.post(
        "/api/v1/invitations/", {"email": "x@example.com", "role": "admin"}, format="json"
    )
    assert answer.status_code == 403


@pytest.mark.django_db
def test_a_key_cannot_mint_a_longer_lived_key(world_a):
    soon = timezone.now() + timedelta(minutes=5)
    _key, secret = make_key(world_a.tenant, role=Role.ADMIN, user=world_a.owner, expires_at=soon)
    client = bearer(secret)
    later = client.post(
        "/api/v1/api-keys/",
        {"name": "x", "scopes": ["read"], "expires_at": (soon + timedelta(days=1)).isoformat()},
        format="json",
    )
    assert later.status_code == 400 and later.json()["error"]["message"].startswith("expires_at:")
    default = client.post("/api/v1/api-keys/", {"name": "y", "scopes": ["read"]}, format="json")
    assert default.status_code == 201
    with tenant_context(world_a.tenant):
        assert ApiKey.objects.get(public_id=default.json()["id"]).expires_at == soon


@pytest.mark.django_db
def test_portal_pages_ignore_api_keys(world_a, world_b):
    _key, secret = make_key(world_a.tenant, user=world_a.owner)
    from django.test import Client

    client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert client.get("/projects/").status_code == 302  # to the login page: keys are for the API
    client.force_login(world_b.owner)
    page = client.get("/projects/").content.decode()
    assert world_b.project.name in page and world_a.project.name not in page


@pytest.mark.django_db
def test_partner_admin_in_a_suspended_tenant_can_still_reactivate_it(world_a):
    with tenant_context(world_a.tenant):
        Membership.objects.create(
            tenant=world_a.tenant, user=world_a.partner_admin, role=Role.VIEWER
        )
    partner = world_a.partner_session()
    base = f"/api/v1/partner/tenants/{world_a.tenant.public_id}/"
    assert partner.post(base + "suspend/", {"reason": "unpaid"}, format="json").status_code == 200
    assert (
        partner.get("/api/v1/projects/").status_code == 403
    )  # as a member of the suspended tenant
    assert partner.get("/api/v1/partner/tenants/").status_code == 200
    assert partner.post(base + "reactivate/").json()["status"] == "active"


@pytest.mark.django_db
def test_options_and_out_of_range_dates_are_4xx(world_a):
    client = world_a.client()
    assert client.options("/api/v1/projects/").status_code == 405
    assert client.options(f"/api/v1/projects/{world_a.project.public_id}/").status_code == 405
    for path in (
        "/api/v1/projects/?created_after=9999-12-31T23:59:59-05:00",
        "/api/v1/audit-events/?since=9999-12-31T23:59:59-05:00",
        "/api/v1/projects/?created_after=yesterday",
        "/api/v1/projects/?page=abc",
        "/api/v1/api-keys/?active=maybe",
    ):
        answer = client.get(path)
        assert 400 <= answer.status_code < 500, (path, answer.status_code)
        assert set(answer.json()["error"]) == {"code", "message", "details"}
    answer = client.post(
        "/api/v1/api-keys/",
        {"name": "x", "scopes": ["read"], "expires_at": "9999-12-31T23:59:59-05:00"},
        format="json",
    )
    assert answer.status_code == 400 and answer.json()["error"]["message"].startswith("expires_at:")


@pytest.mark.django_db
def test_admin_pages_work_for_staff_who_are_also_members(
    world_a, world_b, admin_client, admin_user
):
    from django.contrib import admin as django_admin
    from django.urls import reverse

    with tenant_context(world_b.tenant):
        Membership.objects.create(tenant=world_b.tenant, user=admin_user, role=Role.VIEWER)
    assert world_a.job.event_seq > 0  # a job with events: the jobs admin pages show rows too
    for model in django_admin.site._registry:
        meta = model._meta
        listing = admin_client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        assert listing.status_code == 200, meta.model_name
        manager = getattr(model, "dangerously_unscoped", model._default_manager)
        row = manager.filter(
            **({"tenant": world_a.tenant} if hasattr(model, "dangerously_unscoped") else {})
        ).first()
        if row is not None:
            change = admin_client.get(
                reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[row.pk])
            )
            assert change.status_code == 200, meta.model_name
    # A staff member of tenant B suspends tenant A from the admin: audited under the staff email.
    answer = admin_client.post(
        reverse("admin:tenancy_tenant_changelist"),
        {"action": "suspend_tenants", "_selected_action": [world_a.tenant.pk]},
    )
    assert answer.status_code == 302
    world_a.tenant.refresh_from_db()
    assert world_a.tenant.is_suspended
    from verticals.tenancy.models import AuditEvent

    event = AuditEvent.dangerously_unscoped.filter(
        tenant=world_a.tenant, action="tenant.suspend"
    ).get()
    assert event.actor == admin_user.email
    # Tenant-owned rows are read-only in the admin: their changes go through audited flows.
    change_url = reverse("admin:tenancy_project_change", args=[world_a.project.pk])
    assert admin_client.post(change_url, {"name": "Renamed by staff"}).status_code == 403


@pytest.mark.django_db
def test_revoking_a_key_revokes_the_keys_it_made(world_a):
    child = (
        bearer(world_a.secret)
        .post("/api/v1/api-keys/", {"name": "child", "scopes": ["read", "write"]}, format="json")
        .json()
    )
    grandchild = (
        bearer(child["secret"])
        .post("/api/v1/api-keys/", {"name": "gc", "scopes": ["read"]}, format="json")
        .json()
    )
    revoked = world_a.session().post(f"/api/v1/api-keys/{world_a.key.public_id}/revoke/")
    assert revoked.status_code == 200
    for secret in (world_a.secret, child["secret"], grandchild["secret"]):
        assert bearer(secret).get("/api/v1/projects/").status_code == 401


@pytest.mark.django_db
def test_an_inviters_open_invitations_go_when_it_is_removed_or_lowered(world_a):
    admin = make_member(world_a.tenant, "admin2@example.com", Role.ADMIN)
    client = APIClient()
    client.force_login(admin.user)
    high = client.post(
        "/api/v1/invitations/", {"email": "alt@example.com", "role": "admin"}, format="json"
    ).json()
    low = client.post(
        "/api/v1/invitations/", {"email": "low@example.com", "role": "viewer"}, format="json"
    ).json()
    world_a.session().patch(
        f"/api/v1/members/{admin.public_id}/", {"role": "developer"}, format="json"
    )
    statuses = {
        i["id"]: i["status"]
        for i in world_a.session().get("/api/v1/invitations/").json()["results"]
    }
    assert statuses[high["id"]] == "revoked" and statuses[low["id"]] == "pending"
    world_a.session().delete(f"/api/v1/members/{admin.public_id}/")
    statuses = {
        i["id"]: i["status"]
        for i in world_a.session().get("/api/v1/invitations/").json()["results"]
    }
    assert statuses[low["id"]] == "revoked"


@pytest.mark.django_db
def test_admin_cannot_resend_or_revoke_an_owner_invitation(world_a):
    owner_invite = (
        world_a.session()
        .post(
            "/api/v1/invitations/",
            {"email": "co-owner@example.com", "role": "owner"},
            format="json",
        )
        .json()
    )
    admin = make_member(world_a.tenant, "admin3@example.com", Role.ADMIN)
    client = APIClient()
    client.force_login(admin.user)
    for verb in ("resend", "revoke"):
        answer = client.post(f"/api/v1/invitations/{owner_invite['id']}/{verb}/")
        assert answer.status_code == 400 and answer.json()["error"]["message"].startswith(
            "role:"
        ), verb
