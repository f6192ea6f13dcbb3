"""One error shape everywhere; `me`; tenant selection and suspension."""

import pytest
from rest_framework.test import APIClient

from verticals.tenancy.roles import Role


def assert_error(answer, status: int, code: str | None = None) -> dict:
    assert answer.status_code == status, answer.content[:300]
    error = answer.json()["error"]
    assert set(error) == {"code", "message", "details"} and error["message"]
    if code:
        assert error["code"] == code
    return error


@pytest.mark.django_db
def test_error_shape_for_auth_missing_route_and_method(world_a):
    assert_error(APIClient().get("/api/v1/projects/"), 401, "not_authenticated")
    assert_error(world_a.client().get("/api/v1/no-such-thing"), 404, "not_found")
    # The OpenAI-compatible prefix answers in OpenAI's shape, unknown routes too.
    unknown = APIClient().get("/v1/no-such-route")
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "invalid_request_error"
    assert set(unknown.json()["error"]) == {"message", "type", "param", "code"}
    assert_error(world_a.client().delete("/api/v1/projects/"), 405, "method_not_allowed")
    assert_error(world_a.client().get("/api/v1/projects/prj_missing/"), 404, "not_found")


@pytest.mark.django_db
def test_session_writes_need_csrf(world_a):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(world_a.owner)
    error = assert_error(
        client.post("/api/v1/projects/", {"name": "x"}, format="json"), 403, "permission_denied"
    )
    assert "CSRF" in error["message"]
    # A write to no route is a 404 in the API's shape, not Django's HTML CSRF page.
    assert_error(
        client.post("/api/v1/projects/prj_a.b/", {"name": "x"}, format="json"), 404, "not_found"
    )


@pytest.mark.django_db
def test_me_for_a_user_in_two_tenants_and_the_tenant_header(world_a, world_b):
    from verticals.tenancy.models import Membership
    from verticals.tenancy.scoping import tenant_context

    with tenant_context(world_b.tenant):
        Membership.objects.create(tenant=world_b.tenant, user=world_a.owner, role=Role.VIEWER)
    client = world_a.session()
    me = client.get("/api/v1/me").json()
    assert (
        me["type"] == "user"
        and me["tenant"]["id"] == world_a.tenant.public_id
        and me["role"] == "owner"
    )
    assert {t["id"] for t in me["tenants"]} == {world_a.tenant.public_id, world_b.tenant.public_id}
    other = client.get("/api/v1/me", HTTP_X_TENANT=world_b.tenant.public_id).json()
    assert other["tenant"]["id"] == world_b.tenant.public_id and other["role"] == "viewer"
    assert "project.create" not in other["permissions"]
    listed = client.get("/api/v1/projects/", HTTP_X_TENANT=world_b.tenant.public_id).json()[
        "results"
    ]
    assert [p["id"] for p in listed] == [world_b.project.public_id]
    assert_error(client.get("/api/v1/me", HTTP_X_TENANT="ten_notmine"), 404, "not_found")


@pytest.mark.django_db
def test_suspended_tenant_refuses_users_and_keys_with_a_message(world_a):
    partner = world_a.partner_session()
    suspended = partner.post(
        f"/api/v1/partner/tenants/{world_a.tenant.public_id}/suspend/",
        {"reason": "invoice overdue"},
        format="json",
    )
    assert suspended.status_code == 200 and suspended.json()["status"] == "suspended"
    for client in (world_a.client(), world_a.session()):
        error = assert_error(client.get("/api/v1/projects/"), 403, "tenant_suspended")
        assert "suspended" in error["message"] and "invoice overdue" in error["message"]
    page = world_a.session().get("/projects/")
    assert page.status_code == 403 and b"is suspended" in page.content
    assert (
        partner.post(f"/api/v1/partner/tenants/{world_a.tenant.public_id}/reactivate/").json()[
            "status"
        ]
        == "active"
    )
    assert world_a.client().get("/api/v1/projects/").status_code == 200


@pytest.mark.django_db
def test_partner_creates_tenant_with_owner_who_gets_an_email(
    world_a, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        answer = world_a.partner_session().post(
            "/api/v1/partner/tenants/",
            {"name": "Initech", "owner_email": "Boss@Initech.example"},
            format="json",
        )
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert body["partner"]["id"] == world_a.partner.public_id and body["status"] == "active"
    assert (
        mailoutbox
        and mailoutbox[0].to == ["boss@initech.example"]
        and "/invitations/" in mailoutbox[0].body
    )
    assert "as owner" in mailoutbox[0].body
    listed = (
        world_a.partner_session().get("/api/v1/partner/tenants/?status=active").json()["results"]
    )
    assert {"Initech", world_a.tenant.name} <= {t["name"] for t in listed}


@pytest.mark.django_db
def test_partner_sees_sub_partner_tenants_but_not_siblings(world_a, world_b):
    from verticals.tenancy.models import Partner
    from verticals.tenancy.services import tenant_create

    sub = Partner.objects.create(name="Sub of A", parent=world_a.partner)
    sub_tenant = tenant_create(partner=sub, name="Sub tenant")
    names = {
        t["name"]
        for t in world_a.partner_session().get("/api/v1/partner/tenants/").json()["results"]
    }
    assert sub_tenant.name in names and world_b.tenant.name not in names


@pytest.mark.django_db
def test_api_keys_cannot_use_partner_routes(world_a):
    assert_error(world_a.client().get("/api/v1/partner/tenants/"), 403, "permission_denied")


@pytest.mark.django_db
def test_openapi_schema_and_docs_served_offline(db):
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/v1/projects/" in paths and "/api/v1/partner/tenants/{tenant_id}/suspend/" in paths
    docs = APIClient().get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert (
        "swagger-ui" in html
        and "cdn" not in html.lower()
        and "/static/drf_spectacular_sidecar/" in html
    )
