"""`manage.py bootstrap`: creates what is missing, is idempotent, prints one JSON object."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from verticals.tenancy.models import Membership, Partner, Project, Tenant, User
from verticals.tenancy.scoping import tenant_context


def bootstrap(**options) -> dict:
    out = StringIO()
    with tenant_context(
        None
    ):  # as from the shell: no scope but the command's own (row-level security)
        call_command("bootstrap", stdout=out, **options)
    return json.loads(out.getvalue())


@pytest.mark.django_db
def test_bootstrap_creates_everything_then_nothing_more():
    first = bootstrap(partner="Acme", tenant="Globex", email="Owner@Globex.example")
    assert set(first) >= {"partner", "tenant", "project", "user", "api_key"}
    assert first["created"] == ["partner", "tenant", "user", "membership", "project"]
    assert first["user"]["password"]  # generated for a new user, printed once
    assert first["partner"]["id"].startswith("ptn_") and first["project"]["id"].startswith("prj_")
    second = bootstrap(partner="Acme", tenant="Globex", email="owner@globex.example")
    assert second["created"] == [] and second["user"]["password"] is None
    assert {k: second[k] for k in ("partner", "tenant", "project")} == {
        k: first[k] for k in ("partner", "tenant", "project")
    }
    assert second["api_key"] != first["api_key"]
    assert Tenant.objects.count() == 1 and User.objects.count() == 1
    assert (
        Membership.dangerously_unscoped.count() == 1 and Project.dangerously_unscoped.count() == 1
    )
    # Acme sits under the platform operator, the root of the partner tree.
    assert Partner.objects.get(name="Acme").parent.parent is None


@pytest.mark.django_db
def test_bootstrap_outputs_work(client):
    result = bootstrap(
        partner="Acme", tenant="Globex", email="o@globex.example", password="s3cret-pass-word"
    )
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {result['api_key']}")
    me = api.get("/api/v1/me").json()
    assert me["tenant"]["id"] == result["tenant"]["id"] and me["role"] == "owner"
    assert client.login(username="o@globex.example", password="s3cret-pass-word")


@pytest.mark.django_db
def test_bootstrap_rejects_a_bad_email():
    with pytest.raises(CommandError, match="not an email"):
        bootstrap(partner="Acme", tenant="Globex", email="nope")


@pytest.mark.django_db
def test_bootstrap_puts_a_new_tenant_on_a_plan_once():
    from verticals.billing.models import Plan

    # The plans the billing migration offers (a transactional test run before this one in the same
    # process, as pytest-xdist orders them, empties every table).
    for code in ("team", "free"):
        if not Plan.objects.filter(code=code).exists():
            Plan.objects.create(code=code, name=code.title(), monthly_fee=0, currency="USD")
    from verticals.billing.models import Subscription

    first = bootstrap(partner="Acme", tenant="Globex", email="o@globex.example", plan="team")
    assert first["plan"] == "team" and "subscription" in first["created"]
    again = bootstrap(partner="Acme", tenant="Globex", email="o@globex.example", plan="free")
    assert (
        again["plan"] == "team" and "subscription" not in again["created"]
    )  # an existing tenant keeps its plan
    assert Subscription.dangerously_unscoped.count() == 1
    with pytest.raises(CommandError, match="'gold' is not an offered plan; offered: "):
        bootstrap(partner="Acme", tenant="Initech", email="o@initech.example", plan="gold")
    assert not Tenant.objects.filter(name="Initech").exists()
