"""Portal pages through Django's test client (the browser test drives the same in Chromium)."""

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from tests.conftest import PASSWORD, make_member
from verticals.tenancy.models import ApiKey, Membership
from verticals.tenancy.roles import Role
from verticals.tenancy.scoping import tenant_context

PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cf00000301010018dd8db00000000049454e44ae426082"
)


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_login_page_and_login_by_email(world_a):
    client = Client()
    assert client.get("/projects/").status_code == 302
    assert client.get("/login/").status_code == 200
    answer = client.post("/login/", {"username": world_a.owner.email, "password": PASSWORD})
    assert answer.status_code == 302 and answer["Location"] == "/projects/"
    bad = Client().post("/login/", {"username": world_a.owner.email, "password": "wrong"})
    assert bad.status_code == 200 and b"correct" in bad.content


@pytest.mark.django_db
def test_projects_page_lists_and_creates(world_a, world_b):
    client = signed_in(world_a.owner)
    page = client.get("/projects/").content.decode()
    assert world_a.project.name in page and world_b.project.name not in page
    created = client.post("/projects/", {"name": "Churn model", "description": "Q3"})
    assert created.status_code == 302
    assert "Churn model" in client.get("/projects/").content.decode()
    empty = client.post("/projects/", {"name": ""})
    assert empty.status_code == 400 and b"This field is required" in empty.content
    duplicate = client.post("/projects/", {"name": "Churn model"})
    assert duplicate.status_code == 400 and b"already exists" in duplicate.content


@pytest.mark.django_db
def test_viewer_sees_no_create_form_and_cannot_post(world_a):
    viewer = make_member(world_a.tenant, "viewer@example.com", Role.VIEWER)
    client = signed_in(viewer.user)
    page = client.get("/projects/").content.decode()
    assert "New project" not in page
    assert client.post("/projects/", {"name": "sneaky"}).status_code == 403
    assert client.get("/api-keys/").status_code == 403


@pytest.mark.django_db
def test_api_key_secret_shown_exactly_once(world_a):
    client = signed_in(world_a.owner)
    answer = client.post(
        "/api-keys/",
        {"name": "ci", "scopes": ["read", "predict"], "role": "developer", "mode": "live"},
    )
    assert answer.status_code == 200 and answer["Cache-Control"] == "no-store"
    secrets = re.findall(r"vk_live_[0-9A-Za-z]{46}", answer.content.decode())
    assert len(set(secrets)) == 1
    assert secrets[0] not in client.get("/api-keys/").content.decode()
    with tenant_context(world_a.tenant):
        key = ApiKey.objects.get(name="ci")
    assert client.post(f"/api-keys/{key.public_id}/revoke").status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None


@pytest.mark.django_db
def test_members_invite_change_role_remove(world_a, mailoutbox, django_capture_on_commit_callbacks):
    client = signed_in(world_a.owner)
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            client.post("/members/", {"email": "new@example.com", "role": "developer"}).status_code
            == 302
        )
    assert mailoutbox[0].to == ["new@example.com"] and "/invitations/" in mailoutbox[0].body
    page = client.get("/members/").content.decode()
    assert "new@example.com" in page and "Open invitations" in page
    bad = client.post("/members/", {"email": "not an email", "role": "developer"})
    assert bad.status_code == 400 and b"Enter a valid email address" in bad.content
    member = make_member(world_a.tenant, "dev@example.com", Role.DEVELOPER)
    client.post(f"/members/{member.public_id}/role", {"role": "viewer"})
    member.refresh_from_db()
    assert member.role == "viewer"
    client.post(f"/members/{member.public_id}/remove")
    with tenant_context(world_a.tenant):
        assert not Membership.objects.filter(pk=member.pk).exists()
    # The last owner cannot be removed; the page says why.
    answer = client.post(f"/members/{world_a.membership.public_id}/remove", follow=True)
    assert b"at least one owner" in answer.content


@pytest.mark.django_db
def test_partner_logo_and_support_email_on_tenant_pages(world_a, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    world_a.partner.logo = SimpleUploadedFile("acme.png", PNG_1PX, content_type="image/png")
    world_a.partner.support_email = "help@brand-a.example"
    world_a.partner.save()
    page = signed_in(world_a.owner).get("/projects/").content.decode()
    assert re.search(r'<img src="/media/partner-logos/acme[^"]*\.png" alt="Brand A logo"', page)
    assert "help@brand-a.example" in page


@pytest.mark.django_db
def test_tenant_switcher_and_branding(world_a, world_b):
    with tenant_context(world_b.tenant):
        Membership.objects.create(tenant=world_b.tenant, user=world_a.owner, role=Role.DEVELOPER)
    client = signed_in(world_a.owner)
    page = client.get("/projects/").content.decode()
    assert "Brand A" in page and "--brand: #1f6feb" in page and 'id="tenant-switch"' in page
    assert client.post("/tenant/switch", {"tenant": world_b.tenant.public_id}).status_code == 302
    page = client.get("/projects/").content.decode()
    assert "Brand B" in page and "--brand: #8250df" in page and world_b.project.name in page
    assert world_a.project.name not in page
    assert client.post("/tenant/switch", {"tenant": "ten_notmine"}).status_code == 404


@pytest.mark.django_db
def test_htmx_role_change_and_remove_swap_one_row(world_a):
    dev = make_member(world_a.tenant, "dev@example.com", Role.DEVELOPER)
    client = signed_in(world_a.owner)
    hx = {"HTTP_HX_REQUEST": "true"}
    row = client.post(f"/members/{dev.public_id}/role", {"role": "viewer"}, **hx)
    html = row.content.decode()
    assert (
        row.status_code == 200
        and html.startswith(f'<tr id="member-{dev.public_id}"')
        and "<html" not in html
    )
    assert "is now viewer" in html and 'value="viewer" selected' in html
    refused = client.post(f"/members/{world_a.membership.public_id}/remove", **hx).content.decode()
    assert "at least one owner" in refused and refused.startswith("<tr")
    removed = client.post(f"/members/{dev.public_id}/remove", **hx)
    assert removed.status_code == 200 and removed.content == b""
    with tenant_context(world_a.tenant):
        assert not Membership.objects.filter(pk=dev.pk).exists()


@pytest.mark.django_db
def test_audit_page_for_owners_only(world_a):
    client = signed_in(world_a.owner)
    client.post("/projects/", {"name": "Logged"})
    page = client.get("/audit/?action=project.create").content.decode()
    assert "project.create" in page and world_a.owner.email in page and "Audit log" in page
    viewer = make_member(world_a.tenant, "viewer@example.com", Role.VIEWER)
    assert signed_in(viewer.user).get("/audit/").status_code == 403
    assert "Audit log" not in signed_in(viewer.user).get("/projects/").content.decode()


@pytest.mark.django_db
def test_partner_staff_with_no_tenant_land_in_the_partner_console(world_a):
    """The portal's home sends a partner's staff who belong to no tenant to the console, and a
    tenant member to the projects (neither gets the "not a member of any tenant" page)."""
    from django.test import Client

    staff = Client()
    staff.force_login(world_a.partner_admin)
    answer = staff.get("/")
    assert answer.status_code == 302 and answer["Location"].endswith("/partner/")
    member = Client()
    member.force_login(world_a.owner)
    answer = member.get("/")
    assert answer.status_code == 302 and answer["Location"].endswith("/projects/")
