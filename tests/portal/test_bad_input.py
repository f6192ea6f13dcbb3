"""Bad input on every portal form answers 400, the form showing the problem at its field."""

import pytest
from django.test import Client

LONG = "x" * 5000

CASES = [
    ("/projects/", {}, "name"),
    ("/projects/", {"name": LONG}, "name"),
    ("/projects/", {"name": "ok", "description": LONG}, "description"),
    ("/members/", {"email": "nope", "role": "viewer"}, "email"),
    ("/members/", {"email": "a@example.com", "role": "emperor"}, "role"),
    ("/members/", {"email": "a@example.com"}, "role"),
    ("/api-keys/", {"name": "k", "role": "developer", "mode": "live"}, "scopes"),
    ("/api-keys/", {"name": "k", "scopes": ["fly"], "role": "developer", "mode": "live"}, "scopes"),
    (
        "/api-keys/",
        {
            "name": "k",
            "scopes": ["read"],
            "role": "developer",
            "mode": "live",
            "project": "prj_nope",
        },
        "project",
    ),
    (
        "/api-keys/",
        {
            "name": "k",
            "scopes": ["read"],
            "role": "developer",
            "mode": "live",
            "expires_at": "2001-01-01 00:00",
        },
        "expires_at",
    ),
    ("/api-keys/", {"name": LONG, "scopes": ["read"], "role": "developer", "mode": "live"}, "name"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("path, data, field_name", CASES)
def test_portal_form_errors(world_a, path, data, field_name):
    client = Client()
    client.force_login(world_a.owner)
    answer = client.post(path, data)
    assert answer.status_code == 400
    form = answer.context["form"]
    assert field_name in form.errors, form.errors
    assert str(form.errors[field_name][0]) in answer.content.decode()


@pytest.mark.django_db
def test_portal_role_change_with_a_bad_role_says_so(world_a):
    from tests.conftest import make_member

    member = make_member(world_a.tenant, "m@example.com", "developer")
    client = Client()
    client.force_login(world_a.owner)
    answer = client.post(f"/members/{member.public_id}/role", {"role": "emperor"}, follow=True)
    assert b"Choose a valid role" in answer.content
    member.refresh_from_db()
    assert member.role == "developer"
