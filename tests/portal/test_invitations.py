"""Joining a tenant: an emailed link, accepted by the person it was sent to, once."""

import re

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone

from tests.conftest import PASSWORD, make_user
from verticals.tenancy.models import Invitation, Membership
from verticals.tenancy.scoping import tenant_context


def invite(world, email, role, mailoutbox, capture) -> str:
    """Invite through the API as A's owner; return the link path from the email."""
    with capture(execute=True):
        answer = world.session().post(
            "/api/v1/invitations/", {"email": email, "role": role}, format="json"
        )
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert set(body) == {
        "id",
        "email",
        "role",
        "status",
        "invited_by",
        "created_at",
        "expires_at",
        "sent_at",
        "accepted_at",
        "revoked_at",
    }
    return re.search(r"https?://[^/]+(/invitations/\S+/)", mailoutbox[-1].body).group(1)


def members_of(world) -> set[str]:
    with tenant_context(world.tenant):
        return set(Membership.objects.values_list("user__email", flat=True))


@pytest.mark.django_db
def test_new_person_creates_an_account_and_joins(
    world_a, mailoutbox, django_capture_on_commit_callbacks
):
    link = invite(
        world_a, "Newbie@Example.com", "developer", mailoutbox, django_capture_on_commit_callbacks
    )
    client = Client()
    page = client.get(link)
    assert (
        page.status_code == 200
        and b"newbie@example.com" in page.content
        and b"Create your account" in page.content
    )
    assert (
        "Brand A" in page.content.decode() and "--brand: #1f6feb" in page.content.decode()
    )  # the partner's brand
    weak = client.post(link, {"full_name": "New Bie", "password1": "123", "password2": "123"})
    assert weak.status_code == 400 and "newbie@example.com" not in members_of(world_a)
    joined = client.post(
        link,
        {"full_name": "New Bie", "password1": "Fresh-pass-2026!", "password2": "Fresh-pass-2026!"},
    )
    assert joined.status_code == 302 and joined["Location"] == "/projects/"
    assert "newbie@example.com" in members_of(world_a)
    assert client.get("/projects/").status_code == 200  # signed in, in the new tenant
    assert Client().get(link).status_code == 404  # used once


@pytest.mark.django_db
def test_existing_user_signs_in_then_accepts(
    world_a, world_b, mailoutbox, django_capture_on_commit_callbacks
):
    link = invite(
        world_a, world_b.owner.email, "viewer", mailoutbox, django_capture_on_commit_callbacks
    )
    # Nothing about B's owner leaks to A while the invitation is open.
    listed = world_a.session().get("/api/v1/invitations/").json()["results"]
    assert world_b.owner.public_id not in str(listed) and world_b.owner.email not in members_of(
        world_a
    )
    anonymous = Client().get(link)
    assert b"Log in as" in anonymous.content
    client = Client()
    assert client.login(username=world_b.owner.email, password=PASSWORD)
    assert client.post(link).status_code == 302
    assert world_b.owner.email in members_of(world_a)


@pytest.mark.django_db
def test_someone_else_cannot_accept(world_a, mailoutbox, django_capture_on_commit_callbacks):
    link = invite(
        world_a, "target@example.com", "admin", mailoutbox, django_capture_on_commit_callbacks
    )
    intruder = make_user("intruder@example.com")
    client = Client()
    client.force_login(intruder)
    assert client.get(link).status_code == 403
    assert client.post(link).status_code == 403
    assert "intruder@example.com" not in members_of(world_a)
    assert Client().get("/invitations/not-a-real-token/").status_code == 404


@pytest.mark.django_db
def test_resend_replaces_the_link_and_revoke_or_expiry_kill_it(
    world_a, mailoutbox, django_capture_on_commit_callbacks
):
    first = invite(
        world_a, "later@example.com", "viewer", mailoutbox, django_capture_on_commit_callbacks
    )
    with tenant_context(world_a.tenant):
        invitation = Invitation.objects.get(email="later@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        resent = world_a.session().post(f"/api/v1/invitations/{invitation.public_id}/resend/")
    assert resent.status_code == 200
    second = re.search(r"(/invitations/\S+/)", mailoutbox[-1].body).group(1)
    assert (
        second != first
        and Client().get(first).status_code == 404
        and Client().get(second).status_code == 200
    )
    Invitation.dangerously_unscoped.filter(pk=invitation.pk).update(expires_at=timezone.now())
    assert Client().get(second).status_code == 404
    assert (
        world_a.session().get("/api/v1/invitations/?status=expired").json()["results"][0]["id"]
        == invitation.public_id
    )
    revoked = world_a.session().post(f"/api/v1/invitations/{invitation.public_id}/revoke/")
    assert revoked.json()["status"] == "revoked"
    again = world_a.session().post(f"/api/v1/invitations/{invitation.public_id}/resend/")
    assert again.status_code == 400 and again.json()["error"]["message"].startswith("status:")


@pytest.mark.django_db
def test_a_mail_failure_keeps_the_invitation_open_and_says_so(
    world_a, settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = "tests.portal.failing_mail.Backend"
    with django_capture_on_commit_callbacks(execute=True):
        answer = world_a.session().post(
            "/api/v1/invitations/", {"email": "x@example.com", "role": "viewer"}, format="json"
        )
    assert answer.status_code == 201
    detail = world_a.session().get(f"/api/v1/invitations/{answer.json()['id']}/").json()
    assert detail["status"] == "pending" and detail["sent_at"] is None


@pytest.mark.django_db
def test_a_suspended_tenants_invitation_cannot_be_accepted(
    world_a, mailoutbox, django_capture_on_commit_callbacks
):
    from verticals.tenancy.services import tenant_suspend

    link = invite(
        world_a, "late@example.com", "admin", mailoutbox, django_capture_on_commit_callbacks
    )
    tenant_suspend(tenant=world_a.tenant, reason="unpaid")
    client = Client()
    assert client.get(link).status_code == 403
    answer = client.post(
        link, {"full_name": "L", "password1": "Fresh-pass-2026!", "password2": "Fresh-pass-2026!"}
    )
    assert answer.status_code == 403 and b"suspended" in answer.content
    assert "late@example.com" not in members_of(world_a)


@pytest.mark.django_db
def test_revoke_after_accept_is_refused(
    world_a, world_b, mailoutbox, django_capture_on_commit_callbacks
):
    from verticals.tenancy.caller import Caller
    from verticals.tenancy.services import invitation_accept, invitation_revoke

    invite(world_a, world_b.owner.email, "viewer", mailoutbox, django_capture_on_commit_callbacks)
    with tenant_context(world_a.tenant):
        stale = Invitation.objects.get(email=world_b.owner.email)
    invitation_accept(invitation=stale, user=world_b.owner)
    with tenant_context(world_a.tenant), pytest.raises(ValidationError, match="already accepted"):
        invitation_revoke(
            invitation=stale, actor=Caller(user=world_a.owner, tenant=world_a.tenant, role="owner")
        )
    assert Invitation.dangerously_unscoped.get(pk=stale.pk).revoked_at is None


@pytest.mark.django_db
def test_password_like_the_address_is_refused(
    world_a, mailoutbox, django_capture_on_commit_callbacks
):
    link = invite(
        world_a,
        "jonathan.smithers@example.com",
        "viewer",
        mailoutbox,
        django_capture_on_commit_callbacks,
    )
    answer = Client().post(
        link,
        {"full_name": "Jon", "password1": "jonathan.smithers", "password2": "jonathan.smithers"},
    )
    assert answer.status_code == 400 and b"too similar" in answer.content


@pytest.mark.django_db
def test_an_invitation_sent_with_a_key_names_the_person_not_the_key(
    world_a, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        world_a.client().post(
            "/api/v1/invitations/", {"email": "k@example.com", "role": "viewer"}, format="json"
        )
    body = mailoutbox[-1].body
    assert world_a.owner.email in body and "vk_live_" not in body and world_a.key.lookup not in body
