"""The audit log records who did what, through the API, the portal and the partner console."""

import pytest

from tests.conftest import make_member
from verticals.tenancy.roles import Role


def audit(world, **params) -> list[dict]:
    answer = world.session().get("/api/v1/audit-events/", params)
    assert answer.status_code == 200
    return answer.json()["results"]


@pytest.mark.django_db
def test_writes_are_audited_with_their_actor(world_a):
    key_client = world_a.client()
    project = key_client.post("/api/v1/projects/", {"name": "Audited"}, format="json").json()
    key_client.patch(
        f"/api/v1/projects/{project['id']}/", {"description": "now with text"}, format="json"
    )
    session = world_a.session()
    session.post(
        "/api/v1/invitations/", {"email": "new@example.com", "role": "viewer"}, format="json"
    )
    created_key = session.post(
        "/api/v1/api-keys/", {"name": "ci", "scopes": ["read"]}, format="json"
    ).json()
    session.post(f"/api/v1/api-keys/{created_key['id']}/revoke/")
    key_client.delete(f"/api/v1/projects/{project['id']}/")

    events = audit(world_a)
    actions = [e["action"] for e in events]
    for expected in (
        "project.create",
        "project.update",
        "member.invite",
        "api_key.create",
        "api_key.revoke",
        "project.delete",
    ):
        assert expected in actions
    by_action = {}
    for event in events:  # newest first: keep the newest of each action
        by_action.setdefault(event["action"], event)
    assert by_action["project.create"]["actor"].startswith("API key vk_live_")
    assert by_action["project.update"]["details"] == {"description": ["", "now with text"]}
    assert by_action["member.invite"]["actor"] == world_a.owner.email
    assert by_action["member.invite"]["details"] == {"email": "new@example.com", "role": "viewer"}
    assert created_key["secret"] not in str(events)
    assert [e["action"] for e in audit(world_a, action="api_key.revoke")] == ["api_key.revoke"]


@pytest.mark.django_db
def test_jobs_started_and_cancelled_through_the_api_are_audited(world_a):
    jobs = f"/api/v1/projects/{world_a.project.public_id}/jobs/"
    job = world_a.client().post(jobs, {"kind": "test.noop"}, format="json").json()
    world_a.session().post(f"{jobs}{job['id']}/cancel/")
    events = audit(world_a, target_id=job["id"])
    assert [e["action"] for e in events] == ["job.cancel", "job.create"]
    cancel, create = events
    assert create["actor"].startswith("API key vk_live_") and create["details"] == {
        "kind": "test.noop",
        "project": world_a.project.public_id,
    }
    assert cancel["actor"] == world_a.owner.email


@pytest.mark.django_db
def test_partner_actions_show_in_the_tenants_log(world_a):
    world_a.partner_session().post(
        f"/api/v1/partner/tenants/{world_a.tenant.public_id}/suspend/",
        {"reason": "unpaid"},
        format="json",
    )
    world_a.partner_session().post(
        f"/api/v1/partner/tenants/{world_a.tenant.public_id}/reactivate/"
    )
    events = audit(world_a, target_id=world_a.tenant.public_id)
    assert [e["action"] for e in events][:2] == ["tenant.reactivate", "tenant.suspend"]
    assert events[1]["actor"] == world_a.partner_admin.email and events[1]["details"] == {
        "reason": "unpaid"
    }


@pytest.mark.django_db
def test_partner_admin_who_is_also_a_tenant_member_creates_a_tenant(world_a):
    # The caller's own tenant context is set; the new tenant's rows are written in the new tenant.
    from verticals.tenancy.models import Membership
    from verticals.tenancy.scoping import tenant_context

    with tenant_context(world_a.tenant):
        Membership.objects.create(
            tenant=world_a.tenant, user=world_a.partner_admin, role=Role.VIEWER
        )
    answer = world_a.partner_session().post(
        "/api/v1/partner/tenants/",
        {"name": "Second", "owner_email": "boss@second.example"},
        format="json",
    )
    assert answer.status_code == 201, answer.content


@pytest.mark.django_db
def test_viewer_cannot_read_the_log(world_a):
    viewer = make_member(world_a.tenant, "v@example.com", Role.VIEWER)
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_login(viewer.user)
    assert client.get("/api/v1/audit-events/").status_code == 403


def test_audited_actions_list_is_what_the_services_write():
    import re
    from pathlib import Path

    from verticals.billing import invoicing
    from verticals.billing import services as billing
    from verticals.jobs import engine
    from verticals.registry import services as registry
    from verticals.tenancy import services, throttle
    from verticals.tenancy.roles import AUDITED_ACTIONS, PARTNER_AUDITED_ACTIONS

    # Tenancy's services and throttle, the job engine, the registry's and billing's services are where audited actions are written.
    source = (
        "".join(p.read_text() for p in Path(services.__file__).parent.glob("*.py"))
        + Path(engine.__file__).read_text()
        + Path(registry.__file__).read_text()
        + Path(billing.__file__).read_text()
        + Path(invoicing.__file__).read_text()
        + Path(throttle.__file__).read_text()
    )
    written = set(re.findall(r'action="([a-z_]+(?:\.[a-z_]+)+)"', source))
    assert written == AUDITED_ACTIONS | PARTNER_AUDITED_ACTIONS
