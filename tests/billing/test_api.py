"""The billing API: plans, subscription, usage (JSON and CSV), staff usage sources, invoices and
credit notes, insights, and the partner console's price book, tenant plans and usage, revenue,
growth, invoices and brand — with the isolation between tenants and between partners."""

import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from rest_framework.test import APIClient

from tests.conftest import make_key, make_member, make_user, pdf_text
from verticals.billing import catalog, invoicing, services
from verticals.billing.catalog import period_of, previous_period
from verticals.billing.metering import Usage, record
from verticals.billing.models import (
    FEE,
    Invoice,
    Plan,
    PlanPrice,
    PriceBookEntry,
    Subscription,
    UsageEvent,
)
from verticals.tenancy.models import AuditEvent, Partner, PartnerMembership, Tenant
from verticals.tenancy.roles import PartnerRole, Role, Scope
from verticals.tenancy.scoping import tenant_context
from verticals.tenancy.services import partner_root, project_create, tenant_create

pytestmark = pytest.mark.django_db
UTC = UTC
JAN = datetime(2026, 1, 1, tzinfo=UTC)  # a closed period, long past


# --- helpers ------------------------------------------------------------------------------------


def make_plan(code, *, fee="30", prices=None, currency="USD", **extra) -> Plan:
    plan = Plan.objects.create(
        code=code, name=code.title(), monthly_fee=Decimal(fee), currency=currency, **extra
    )
    for meter, (included, unit_price) in (prices or {}).items():
        PlanPrice.objects.create(
            plan=plan, meter_id=meter, included=Decimal(included), unit_price=Decimal(unit_price)
        )
    return plan


@pytest.fixture
def starter(db) -> Plan:
    return make_plan(
        "starter",
        fee="30",
        prices={"inference.requests": ("100", "0.01"), "training.cpu_seconds": ("0", "0.002")},
    )


@pytest.fixture
def pro(db) -> Plan:
    return make_plan("pro", fee="90", prices={"inference.requests": ("1000", "0.005")})


def error(answer, status: int, *fragments: str) -> str:
    assert answer.status_code == status, (answer.status_code, answer.content[:500])
    body = answer.json()["error"]
    assert set(body) == {"code", "message", "details"}
    for fragment in fragments:
        assert fragment in body["message"], (fragment, body["message"])
    return body["message"]


def signed_in(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def key_client(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def staff_user(email="staff@operator.example"):
    user = make_user(email)
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    return user


def invoiced(world, plan, *, requests=150, start=JAN) -> Invoice:
    """The world's tenant on `plan` from `start`, usage in that month, and the month closed."""
    services.subscribe(world.tenant, plan, now=start)
    record(
        world.tenant,
        [
            Usage(
                "inference.requests",
                Decimal(requests),
                task="sentiment",
                project=world.project,
                occurred_at=start + timedelta(days=4),
            )
        ],
        source="test",
    )
    end = period_of(start, 1)[1]
    invoicing.close_period(end + timedelta(hours=1), tenants=[world.tenant])
    return Invoice.objects.get(kind=Invoice.Kind.RETAIL, tenant=world.tenant, period_start=start)


def with_margin(world, plan):
    """The world's partner buys the plan at 20.00 and its requests at 0.004, and sells at 25.00 and 0.008."""
    services.set_wholesale(world.partner, plan, FEE, "20")
    services.set_wholesale(world.partner, plan, "inference.requests", "0.004")
    services.set_retail(world.partner, plan, FEE, "25")
    services.set_retail(world.partner, plan, "inference.requests", "0.008")
    return plan


def money(amount: str, currency: str = "USD") -> dict:
    places = 0 if currency == "JPY" else 2
    return {"amount": amount, "currency": currency, "minor": int(Decimal(amount).scaleb(places))}


# --- plans --------------------------------------------------------------------------------------


def test_plans_show_what_the_tenant_pays_never_wholesale(world_a, world_b, starter, pro):
    with_margin(world_a, starter)
    make_plan("retired", is_active=False)
    answer = world_a.client().get("/api/v1/plans/")
    assert answer.status_code == 200
    body = answer.json()
    codes = [
        p["code"] for p in body["results"]
    ]  # the operator's first plans (a migration makes them) and these
    assert (
        {"starter", "pro"} <= set(codes) and "retired" not in codes and body["count"] == len(codes)
    )
    plan = next(p for p in body["results"] if p["code"] == "starter")
    assert plan["monthly_fee"] == money(
        "25.00"
    )  # the partner's retail, not the list price 30 nor wholesale 20
    meters = {m["meter"]: m for m in plan["meters"]}
    assert meters["inference.requests"]["unit_price"] == {"amount": "0.008", "currency": "USD"}
    assert (
        meters["inference.requests"]["included"] == "100"
        and meters["inference.requests"]["name"] == "Predictions"
    )
    assert plan["id"].startswith("pln_") and plan["cap"] == "soft" and plan["enabled_tasks"] == []
    text = answer.content.decode()
    assert "wholesale" not in text and "20.00" not in text and "0.004" not in text
    # Partner B has no price book: its tenant sees the list prices.
    other = next(
        p
        for p in world_b.client().get("/api/v1/plans/").json()["results"]
        if p["code"] == "starter"
    )
    assert (
        other["monthly_fee"] == money("30.00")
        and other["meters"][0]["unit_price"]["amount"] == "0.01"
    )


def test_a_direct_customer_of_the_operator_sees_list_prices(db, starter):
    tenant = tenant_create(partner=partner_root(), name="Direct Co")
    owner = make_member(tenant, "direct@example.com", Role.OWNER)
    plan = next(
        p
        for p in signed_in(owner.user).get("/api/v1/plans/").json()["results"]
        if p["code"] == "starter"
    )
    assert plan["monthly_fee"] == money("30.00")


# --- subscription ---------------------------------------------------------------------------------


def test_subscription_before_any_plan_then_a_change_with_usage(world_a, starter, pro):
    client = world_a.client()
    empty = client.get("/api/v1/subscription/").json()
    assert empty["status"] == "none" and empty["plan"] is None and empty["usage"] == []
    answer = client.post("/api/v1/subscription/", {"plan": "starter"}, format="json")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    # A first subscription starts a whole period now: its periods are anchored at this moment.
    subscription = Subscription.dangerously_unscoped.get(tenant=world_a.tenant)
    assert (
        body["plan"]["code"] == "starter"
        and body["status"] == "active"
        and body["anchor_day"] == subscription.starts_at.day
    )
    assert body["id"].startswith("sub_") and body["trial_ends_at"] is None
    start, end = catalog.subscription_period(subscription, timezone.now())
    assert start == subscription.starts_at
    assert body["period"] == {
        "start": start.isoformat().replace("+00:00", "Z"),
        "end": end.isoformat().replace("+00:00", "Z"),
    }
    record(world_a.tenant, [Usage("inference.requests", Decimal(25))], source="test")
    usage = {row["meter"]: row for row in client.get("/api/v1/subscription/").json()["usage"]}
    assert usage["inference.requests"] == {
        "meter": "inference.requests",
        "name": "Predictions",
        "unit": "request",
        "used": "25",
        "included": "100",
        "share": "0.2500",
        "overage": "0",
        "unit_price": {"amount": "0.01", "currency": "USD"},
    }
    changed = client.post("/api/v1/subscription/", {"plan": "pro"}, format="json")
    assert changed.status_code == 200 and changed.json()["plan"]["code"] == "pro"
    audited = AuditEvent.dangerously_unscoped.filter(
        tenant=world_a.tenant, action="subscription.change"
    )
    assert [e.details["plan"] for e in audited.order_by("pk")] == ["starter", "pro"]
    assert (
        Subscription.dangerously_unscoped.filter(tenant=world_a.tenant, ends_at__isnull=True)
        .get()
        .plan
        == pro
    )


def test_a_plan_change_that_cannot_be_made_says_why(world_a, starter):
    make_plan("retired", is_active=False)
    make_plan("euro", currency="EUR")
    client = world_a.client()
    services.subscribe(world_a.tenant, starter)
    url = "/api/v1/subscription/"
    error(
        client.post(url, {"plan": "starter"}, format="json"),
        400,
        "plan:",
        "already on the plan 'starter'",
    )
    error(
        client.post(url, {"plan": "gold"}, format="json"), 400, "plan:", "No plan 'gold'", "starter"
    )
    error(client.post(url, {"plan": "retired"}, format="json"), 400, "plan:", "no longer offered")
    error(client.post(url, {"plan": "euro"}, format="json"), 400, "plan:", "bills in EUR", "USD")
    error(client.post(url, {}, format="json"), 400, "plan:")
    error(client.post(url, {"plan": 7}, format="json"), 400, "plan:")
    assert Subscription.dangerously_unscoped.filter(tenant=world_a.tenant).count() == 1


def test_who_may_change_the_plan(world_a, starter, pro):
    services.subscribe(world_a.tenant, starter)
    billing = make_member(world_a.tenant, "billing@a.example", Role.BILLING)
    assert (
        signed_in(billing.user)
        .post("/api/v1/subscription/", {"plan": "pro"}, format="json")
        .status_code
        == 200
    )
    admin = make_member(world_a.tenant, "admin@a.example", Role.ADMIN)
    error(
        signed_in(admin.user).post("/api/v1/subscription/", {"plan": "starter"}, format="json"),
        403,
        "plan.change",
    )
    _key, secret = make_key(world_a.tenant, scopes=[Scope.READ, Scope.WRITE], user=world_a.owner)
    error(
        key_client(secret).post("/api/v1/subscription/", {"plan": "starter"}, format="json"),
        403,
        "'billing' scope",
    )
    viewer = make_member(world_a.tenant, "viewer@a.example", Role.VIEWER)
    assert signed_in(viewer.user).get("/api/v1/subscription/").status_code == 200


# --- usage ----------------------------------------------------------------------------------------


@pytest.fixture
def used(world_a, starter):
    """Usage of tenant A this period in two projects and two tasks, and some in the previous period."""
    services.subscribe(world_a.tenant, starter, now=JAN)
    with tenant_context(world_a.tenant):
        other = project_create(tenant=world_a.tenant, name="Other")
    start, _ = period_of(timezone.now(), 1)
    record(
        world_a.tenant,
        [
            Usage(
                "inference.requests",
                Decimal(3),
                project=world_a.project,
                task="sentiment",
                occurred_at=start + timedelta(hours=1),
            ),
            Usage(
                "inference.requests",
                Decimal(4),
                project=other,
                task="sentiment",
                occurred_at=start + timedelta(hours=2),
            ),
            Usage(
                "training.cpu_seconds",
                Decimal("1.5"),
                project=world_a.project,
                task="sentiment",
                occurred_at=start + timedelta(hours=3),
            ),
            Usage(
                "inference.requests",
                Decimal(100),
                project=world_a.project,
                task="sentiment",
                occurred_at=start - timedelta(days=3),
            ),
        ],
        source="test",
    )
    return SimpleNamespace(other=other, start=start)


def test_usage_by_meter_this_period_by_default(world_a, used):
    answer = world_a.client().get("/api/v1/usage/")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["group_by"] == ["meter"] and body["count"] == 2
    assert body["results"] == [
        {"meter": "inference.requests", "quantity": "7", "events": 2},
        {"meter": "training.cpu_seconds", "quantity": "1.5", "events": 1},
    ]
    assert body["start"] == used.start.isoformat().replace("+00:00", "Z")


def test_usage_grouped_and_filtered(world_a, used):
    client = world_a.client()
    start = (used.start - timedelta(days=5)).date().isoformat()
    rows = client.get(
        f"/api/v1/usage/?start={start}&group_by=project,day&meter=inference.requests"
    ).json()["results"]
    assert {(r["project"], r["day"], r["quantity"]) for r in rows} == {
        (world_a.project.public_id, (used.start - timedelta(days=3)).date().isoformat(), "100"),
        (world_a.project.public_id, used.start.date().isoformat(), "3"),
        (used.other.public_id, used.start.date().isoformat(), "4"),
    }
    only = client.get(f"/api/v1/usage/?project={used.other.public_id}&group_by=task").json()[
        "results"
    ]
    assert only == [{"task": "sentiment", "quantity": "4", "events": 1}]
    day = used.start.date().isoformat()
    one_day = client.get(f"/api/v1/usage/?start={day}&end={day}").json()
    assert one_day["end"] == (used.start + timedelta(days=1)).isoformat().replace(
        "+00:00", "Z"
    )  # a date `end` is included


def test_usage_of_another_tenants_project_answers_404(world_a, world_b, used):
    error(world_b.client().get(f"/api/v1/usage/?project={world_a.project.public_id}"), 404)
    error(world_a.client().get("/api/v1/usage/?project=prj_doesnotexist000000"), 404)


def test_a_key_restricted_to_a_project_sees_only_its_usage(world_a, used):
    _key, secret = make_key(world_a.tenant, project=world_a.project, user=world_a.owner)
    client = key_client(secret)
    rows = client.get("/api/v1/usage/").json()["results"]
    assert {r["meter"]: r["quantity"] for r in rows} == {
        "inference.requests": "3",
        "training.cpu_seconds": "1.5",
    }
    error(client.get(f"/api/v1/usage/?project={used.other.public_id}"), 404)
    subscription = client.get("/api/v1/subscription/").json()
    assert subscription["project"] == world_a.project.public_id
    assert {r["meter"]: r["used"] for r in subscription["usage"]}["inference.requests"] == "3"


@pytest.mark.parametrize(
    "query,param",
    [
        ("start=yesterday", "start:"),
        ("end=2026-13-45", "end:"),
        ("start=2026-10-02&end=2026-10-01T00:00:00Z", "end:"),
        ("group_by=colour", "group_by:"),
        ("group_by=,", "group_by:"),
        ("meter=nope.units", "meter:"),
        ("format=xml", "format:"),
        ("start=9999-12-31T23:59:59-05:00", "start:"),
    ],
)
def test_bad_usage_parameters_answer_400_naming_the_parameter(world_a, used, query, param):
    error(world_a.client().get(f"/api/v1/usage/?{query}"), 400, param)


def test_usage_as_csv(world_a, used):
    for answer in (
        world_a.client().get("/api/v1/usage/?format=csv&group_by=meter,project"),
        world_a.client().get("/api/v1/usage/?group_by=meter,project", HTTP_ACCEPT="text/csv"),
    ):
        assert answer.status_code == 200
        assert answer["Content-Type"].startswith("text/csv")
        assert re.match(
            r'attachment; filename="usage-ten_\w+-\d{8}-\d{8}\.csv"', answer["Content-Disposition"]
        )
        lines = answer.content.decode().splitlines()
        assert lines[0] == "meter,project,quantity,events"
        assert f"inference.requests,{used.other.public_id},4,1" in lines and len(lines) == 4


def test_usage_is_open_to_every_role_but_not_without_the_read_scope(world_a, used):
    viewer = make_member(world_a.tenant, "viewer@a.example", Role.VIEWER)
    assert signed_in(viewer.user).get("/api/v1/usage/").status_code == 200
    _key, secret = make_key(world_a.tenant, scopes=[Scope.BILLING], user=world_a.owner)
    error(key_client(secret).get("/api/v1/usage/"), 403, "'read' scope")


# --- usage from external sources (staff) -----------------------------------------------------------


def _event(world, key="e1", **extra):
    return {
        "tenant": world.tenant.public_id,
        "meter": "inference.requests",
        "quantity": "2",
        "idempotency_key": key,
        **extra,
    }


def test_staff_record_external_usage_once(world_a, world_b):
    staff = signed_in(staff_user())
    at = (timezone.now() - timedelta(hours=2)).isoformat()
    batch = {
        "source": "crm",
        "events": [
            _event(
                world_a,
                "a1",
                project=world_a.project.public_id,
                task="sentiment",
                occurred_at=at,
                details={"ticket": 7},
            ),
            _event(world_a, "a2", quantity=5),
            _event(world_b, "a1", meter="vision.images", quantity="0.25"),
        ],
    }
    first = staff.post("/api/v1/usage/events", batch, format="json")
    assert first.status_code == 201, first.content
    assert first.json() == {
        "accepted": 3,
        "duplicates": 0,
        "keys": {"new": ["a1", "a2", "a1"], "duplicate": []},
    }
    again = staff.post("/api/v1/usage/events/", batch, format="json")
    assert again.status_code == 200
    assert again.json() == {
        "accepted": 0,
        "duplicates": 3,
        "keys": {"new": [], "duplicate": ["a1", "a2", "a1"]},
    }
    rows = UsageEvent.dangerously_unscoped.filter(source="external:crm")
    assert rows.count() == 3
    first_row = rows.get(tenant=world_a.tenant, idempotency_key="a1")
    assert (
        first_row.project == world_a.project
        and first_row.details == {"ticket": 7}
        and first_row.quantity == Decimal(2)
    )
    assert rows.get(tenant=world_b.tenant).quantity == Decimal("0.25")
    # external:crm and crm are one source.
    third = staff.post(
        "/api/v1/usage/events",
        {"source": "external:crm", "events": [_event(world_a, "a2"), _event(world_a, "a3")]},
        format="json",
    )
    assert third.status_code == 201
    assert third.json() == {
        "accepted": 1,
        "duplicates": 1,
        "keys": {"new": ["a3"], "duplicate": ["a2"]},
    }


def test_only_staff_may_send_usage(world_a):
    body = {"source": "crm", "events": [_event(world_a)]}
    error(world_a.client().post("/api/v1/usage/events", body, format="json"), 403, "staff")
    error(world_a.session().post("/api/v1/usage/events", body, format="json"), 403, "staff")
    error(world_a.partner_session().post("/api/v1/usage/events", body, format="json"), 403)
    staff = staff_user()
    with tenant_context(world_a.tenant):
        from verticals.tenancy.models import Membership

        Membership.objects.create(tenant=world_a.tenant, user=staff, role=Role.OWNER)
    _key, unscoped = make_key(world_a.tenant, user=staff, scopes=["read", "write"])
    error(
        key_client(unscoped).post("/api/v1/usage/events", body, format="json"),
        403,
        "'billing' scope",
    )
    _key, secret = make_key(world_a.tenant, user=staff)
    assert key_client(secret).post("/api/v1/usage/events", body, format="json").status_code == 201
    assert UsageEvent.dangerously_unscoped.count() == 1


@pytest.mark.parametrize(
    "change,where,fragment",
    [
        ({"tenant": "ten_doesnotexist000000"}, "events[1].tenant", "No tenant"),
        ({"meter": "nope.units"}, "events[1].meter", "Unknown meter"),
        ({"quantity": "-1"}, "events[1].quantity", "negative"),
        ({"quantity": 1.5}, "events[1].quantity", "not a float"),
        ({"quantity": "0.0000001"}, "events[1].quantity", "at most 6 decimals"),
        ({"quantity": "lots"}, "events[1].quantity", "not a number"),
        ({"quantity": "1e15"}, "events[1].quantity", "too large"),
        ({"idempotency_key": ""}, "events[1].idempotency_key", "idempotency key"),
        ({"idempotency_key": "k" * 201}, "events[1].idempotency_key", "At most 200"),
        ({"idempotency_key": "e0"}, "events[1].idempotency_key", "twice"),
        ({"occurred_at": "2999-01-01T00:00:00Z"}, "events[1].occurred_at", "in the future"),
        ({"occurred_at": "2001-01-01T00:00:00Z"}, "events[1].occurred_at", "older than 30 days"),
        ({"occurred_at": "2026-01-05T00:00:00"}, "events[1].occurred_at", "with a zone"),
        ({"occurred_at": "last week"}, "events[1].occurred_at", "ISO date-time"),
        ({"colour": "red"}, "events[1].colour", "Unknown field"),
        ({"task": 5}, "events[1].task", "task"),
        ({"details": ["x"]}, "events[1].details", "JSON object"),
    ],
)
def test_a_bad_event_is_named_and_nothing_is_written(world_a, change, where, fragment):
    staff = signed_in(staff_user())
    events = [_event(world_a, "e0"), {**_event(world_a, "e1"), **change}]
    answer = staff.post("/api/v1/usage/events", {"source": "crm", "events": events}, format="json")
    error(answer, 400, where, fragment)
    assert not UsageEvent.dangerously_unscoped.exists()


def test_events_in_an_invoiced_period_and_projects_of_other_tenants_are_refused(
    world_a, world_b, starter, settings
):
    settings.BILLING_EVENT_MAX_AGE_DAYS = 100000
    invoiced(world_a, starter)
    staff = signed_in(staff_user())
    before = UsageEvent.dangerously_unscoped.count()
    late = _event(world_a, "late", occurred_at="2026-01-20T10:00:00Z")
    error(
        staff.post("/api/v1/usage/events", {"source": "crm", "events": [late]}, format="json"),
        400,
        "events[0].occurred_at",
        "already invoiced",
    )
    stolen = _event(world_b, "x", project=world_a.project.public_id)
    error(
        staff.post("/api/v1/usage/events", {"source": "crm", "events": [stolen]}, format="json"),
        400,
        "events[0].project",
        f"{world_b.tenant.public_id} has no project",
    )
    assert UsageEvent.dangerously_unscoped.count() == before


@pytest.mark.parametrize(
    "body,fragment",
    [
        ({"source": "crm", "events": []}, "events:"),
        ({"source": "crm"}, "events:"),
        ({"source": "CRM system", "events": [{}]}, "source:"),
        ({"events": [{}]}, "source:"),
        ({"source": "crm", "events": [{}], "extra": 1}, "extra:"),
        ({"source": "crm", "events": "x"}, "events:"),
    ],
)
def test_a_bad_batch_answers_400(world_a, body, fragment):
    error(signed_in(staff_user()).post("/api/v1/usage/events", body, format="json"), 400, fragment)


def test_at_most_1000_events_a_request(world_a):
    events = [_event(world_a, f"k{i}") for i in range(1001)]
    error(
        signed_in(staff_user()).post(
            "/api/v1/usage/events", {"source": "crm", "events": events}, format="json"
        ),
        400,
        "events:",
        "at most 1000",
    )
    events = events[:1000]
    answer = signed_in(staff_user("staff2@operator.example")).post(
        "/api/v1/usage/events", {"source": "crm", "events": events}, format="json"
    )
    assert answer.status_code == 201 and answer.json()["accepted"] == 1000


# --- invoices -------------------------------------------------------------------------------------


def test_a_tenant_sees_its_retail_invoices_and_credit_notes_without_wholesale(world_a, starter):
    with_margin(world_a, starter)
    invoice = invoiced(world_a, starter)
    credit = invoicing.issue_credit_note(invoice, reason="Outage", amount_minor=100)
    client = world_a.client()
    listing = client.get("/api/v1/invoices/")
    listed = listing.json()
    assert [i["id"] for i in listed["results"]] == [credit.public_id, invoice.public_id]
    assert (
        listed["results"][1]["credited"] == money("1.00")
        and listed["results"][0]["credits"]["id"] == invoice.public_id
    )
    detail = client.get(f"/api/v1/invoices/{invoice.public_id}/")
    assert detail.status_code == 200
    body = detail.json()
    # 25.00 retail fee; 150 requests of which 100 included at 0.008 retail: 0.40.
    assert (
        body["total"] == money("25.40") and body["kind"] == "retail" and body["currency"] == "USD"
    )
    assert [(line["kind"], line["amount"]["amount"]) for line in body["lines"]] == [
        ("fee", "25.00"),
        ("usage", "0.40"),
    ]
    usage = body["lines"][1]
    assert (usage["meter"], usage["quantity"], usage["included"], usage["billable"]) == (
        "inference.requests",
        "150",
        "100",
        "50",
    )
    assert usage["unit_price"] == {"amount": "0.008", "currency": "USD"} and usage["by_task"] == {
        "sentiment": "150"
    }
    assert body["brand"]["name"] == "Brand A" and body["bill_to"] == {
        "name": "Tenant A",
        "id": world_a.tenant.public_id,
    }
    text = detail.content.decode() + listing.content.decode()
    assert (
        "wholesale" not in text
        and "retail_amount" not in text
        and "margin" not in text
        and "0.004" not in text
    )
    assert Invoice.objects.filter(kind=Invoice.Kind.WHOLESALE, partner=world_a.partner).exists()
    assert [
        i["kind"] for i in client.get("/api/v1/invoices/?kind=credit_note").json()["results"]
    ] == ["credit_note"]
    assert client.get("/api/v1/invoices/?period=2026-01-15").json()["count"] == 2
    assert client.get("/api/v1/invoices/?period=2026-02-15").json()["count"] == 0
    assert client.get("/api/v1/invoices/?since=2026-01-01&until=2026-02-01").json()["count"] == 2
    error(client.get("/api/v1/invoices/?kind=wholesale"), 400, "kind:")
    error(client.get("/api/v1/invoices/?period=soon"), 400, "period:")


def test_another_tenants_invoice_and_the_partners_wholesale_invoice_answer_404(
    world_a, world_b, starter
):
    invoice = invoiced(world_a, starter)
    wholesale = Invoice.objects.get(kind=Invoice.Kind.WHOLESALE, partner=world_a.partner)
    for tail in ("", "pdf/", "csv/", "pdf", "csv"):
        error(world_b.client().get(f"/api/v1/invoices/{invoice.public_id}/{tail}"), 404)
        error(world_a.client().get(f"/api/v1/invoices/{wholesale.public_id}/{tail}"), 404)
    assert world_b.client().get("/api/v1/invoices/").json()["count"] == 0


def test_invoice_pdf_and_csv_downloads_carry_the_partners_brand(world_a, starter):
    invoice = invoiced(world_a, starter)
    client = world_a.client()
    for url in (
        f"/api/v1/invoices/{invoice.public_id}/pdf/",
        f"/api/v1/invoices/{invoice.public_id}/pdf",
    ):
        pdf = client.get(url)
        assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
        assert pdf["Content-Disposition"] == f'attachment; filename="{invoice.number}.pdf"'
        assert pdf.content.startswith(b"%PDF")
        drawn = pdf_text(pdf.content)
        assert "Brand A" in drawn and "Tenant A" in drawn and invoice.number in drawn
    csv = client.get(f"/api/v1/invoices/{invoice.public_id}/csv/")
    assert csv.status_code == 200 and csv["Content-Type"].startswith("text/csv")
    assert csv["Content-Disposition"] == f'attachment; filename="{invoice.number}.csv"'
    assert "total" in csv.content.decode() and "30.50,USD" in csv.content.decode()


def test_the_invoice_csv_writes_whole_unit_prices_as_plain_decimals(world_a, starter):
    import csv

    invoice = invoiced(world_a, starter)
    rows = list(
        csv.reader(
            io.StringIO(
                world_a.client().get(f"/api/v1/invoices/{invoice.public_id}/csv/").content.decode()
            )
        )
    )
    fee = next(row for row in rows if len(row) > 1 and row[1] == "fee")
    assert fee[8] in ("30", "30.00"), fee


def test_the_billing_role_sees_invoices_but_cannot_predict_or_train(world_a, starter):
    invoice = invoiced(world_a, starter)
    billing = signed_in(make_member(world_a.tenant, "billing@a.example", Role.BILLING).user)
    assert billing.get("/api/v1/invoices/").json()["results"][0]["id"] == invoice.public_id
    assert billing.get(f"/api/v1/invoices/{invoice.public_id}/pdf/").status_code == 200
    model = world_a.model
    error(
        billing.post(
            f"/api/v1/projects/{world_a.project.public_id}/models/{model.public_id}/predict",
            {"inputs": "great"},
            format="json",
        ),
        403,
        "model.predict",
    )
    error(
        billing.post(
            f"/api/v1/projects/{world_a.project.public_id}/jobs/",
            {"kind": "test.noop"},
            format="json",
        ),
        403,
        "job.create",
    )
    viewer = signed_in(make_member(world_a.tenant, "viewer@a.example", Role.VIEWER).user)
    error(viewer.get("/api/v1/invoices/"), 403, "invoice.view")
    error(viewer.get(f"/api/v1/invoices/{invoice.public_id}/pdf/"), 403)
    developer = signed_in(make_member(world_a.tenant, "dev@a.example", Role.DEVELOPER).user)
    error(developer.get("/api/v1/invoices/"), 403)
    _key, secret = make_key(
        world_a.tenant,
        scopes=[Scope.READ, Scope.WRITE, Scope.PREDICT, Scope.TRAIN],
        user=world_a.owner,
    )
    error(key_client(secret).get("/api/v1/invoices/"), 403, "'billing' scope")
    _key, restricted = make_key(world_a.tenant, project=world_a.project, user=world_a.owner)
    error(key_client(restricted).get("/api/v1/invoices/"), 403, "restricted to project")


# --- credit notes and insights (staff) --------------------------------------------------------------


def test_staff_credit_part_of_an_invoice_then_the_rest(world_a, world_b, starter):
    invoice = invoiced(world_a, starter)
    url = f"/api/v1/invoices/{invoice.public_id}/credit-notes/"
    staff = signed_in(staff_user())
    error(
        world_a.session().post(url, {"reason": "x"}, format="json"), 403, "staff"
    )  # its own invoice: not staff
    error(
        world_b.session().post(url, {"reason": "x"}, format="json"), 404
    )  # another tenant's: as if missing
    error(world_b.client().post(url, {"reason": "x"}, format="json"), 404)
    error(staff.post(url, {"amount": "1.00"}, format="json"), 400, "reason:")
    error(
        staff.post(url, {"reason": "Outage", "amount": 1.5}, format="json"),
        400,
        "amount:",
        "not a float",
    )
    error(
        staff.post(url, {"reason": "Outage", "amount": "1.005"}, format="json"),
        400,
        "amount:",
        "at most 2 decimals",
    )
    error(
        staff.post(url, {"reason": "Outage", "amount": "31.00"}, format="json"),
        400,
        "amount:",
        "at most 30.50 USD",
    )
    error(staff.post(url, {"reason": "Outage", "amount": "0"}, format="json"), 400, "amount:")
    error(
        staff.post(
            "/api/v1/invoices/invc_doesnotexist0000/credit-notes/", {"reason": "x"}, format="json"
        ),
        404,
    )
    first = staff.post(url, {"reason": "Outage on the 3rd", "amount": "3.50"}, format="json")
    assert first.status_code == 201, first.content
    assert first.json()["kind"] == "credit_note" and first.json()["total"] == money("-3.50")
    assert first.json()["credits"] == {"id": invoice.public_id, "number": invoice.number}
    rest = staff.post(url, {"reason": "Goodwill"}, format="json")
    assert rest.status_code == 201 and rest.json()["total"] == money("-27.00")
    error(staff.post(url, {"reason": "More"}, format="json"), 400, "at most 0.00 USD")
    assert world_a.client().get(f"/api/v1/invoices/{invoice.public_id}/").json()[
        "credited"
    ] == money("30.50")
    audited = AuditEvent.dangerously_unscoped.filter(tenant=world_a.tenant, action="invoice.credit")
    assert audited.count() == 2
    assert audited.order_by("pk").first().details == {
        "invoice": invoice.number,
        "amount": "3.50 USD",
        "reason": "Outage on the 3rd",
    }
    assert audited.order_by("pk").first().actor == "staff@operator.example"


def test_insights_are_for_staff_only(world_a, world_b, starter):
    invoiced(world_a, starter)
    answer = signed_in(staff_user()).get("/api/v1/insights/?months=36")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    row = next(r for r in body["by_partner"] if r["partner"]["id"] == world_a.partner.public_id)
    assert (
        row["revenue"] == [money("30.50")]
        and row["tenants"] == 1
        and row["usage"] == {"inference.requests": "150"}
    )
    assert any(t["task"] == "sentiment" for t in body["by_task"]) and len(body["by_month"]) == 36
    error(world_a.session().get("/api/v1/insights/"), 403, "staff")
    error(world_a.client().get("/api/v1/insights/"), 403, "staff")
    error(
        signed_in(staff_user("s2@operator.example")).get("/api/v1/insights/?months=99"),
        400,
        "months:",
    )


# --- partner console: price book ---------------------------------------------------------------------


def test_the_price_book_shows_list_wholesale_and_retail(world_a, world_b, starter):
    services.set_wholesale(world_a.partner, starter, FEE, "20")
    services.set_retail(world_a.partner, starter, "inference.requests", "0.012")
    answer = world_a.partner_session().get("/api/v1/partner/price-book/")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["partner"] == {"id": world_a.partner.public_id, "name": "Partner A"}
    rows = {row["item"]: row for row in body["results"] if row["plan"] == "starter"}
    assert set(rows) == {FEE, "inference.requests", "training.cpu_seconds"}
    assert (
        rows[FEE]["list_price"]["amount"] == "30.00" and rows[FEE]["wholesale"]["amount"] == "20.00"
    )
    assert rows[FEE]["retail"]["amount"] == "30.00" and rows[FEE]["retail_set"] is None
    assert (
        rows["inference.requests"]["retail"]["amount"] == "0.012"
        and rows["inference.requests"]["included"] == "100"
    )
    assert (
        rows["inference.requests"]["wholesale"]["amount"] == "0.01"
    )  # no wholesale set: the list price
    # Partner B's book holds none of A's prices; naming A's partner answers 404.
    b = world_b.partner_session()
    b_rows = [
        r for r in b.get("/api/v1/partner/price-book/").json()["results"] if r["plan"] == "starter"
    ]
    assert {r["retail"]["amount"] for r in b_rows} == {"30.00", "0.01", "0.002"}
    error(b.get(f"/api/v1/partner/price-book/?partner={world_a.partner.public_id}"), 404)
    error(
        b.put(
            "/api/v1/partner/price-book/",
            {"partner": world_a.partner.public_id, "plan": "starter", "item": FEE, "retail": "99"},
            format="json",
        ),
        404,
    )
    assert PriceBookEntry.objects.get(price_book__partner=world_a.partner, item=FEE).retail is None


def test_a_partner_sets_retail_prices_never_below_wholesale(world_a, starter):
    services.set_wholesale(world_a.partner, starter, FEE, "20")
    client = world_a.partner_session()
    url = "/api/v1/partner/price-book/"
    error(
        client.put(url, {"plan": "starter", "item": FEE, "retail": "15"}, format="json"),
        400,
        "retail:",
        "15",
        "20",
        "plan.fee",
    )
    saved = client.put(url, {"plan": "starter", "item": FEE, "retail": "24.5"}, format="json")
    assert saved.status_code == 200 and saved.json()["retail"] == {
        "amount": "24.50",
        "currency": "USD",
    }
    patched = client.patch(
        url, {"plan": "starter", "item": "inference.requests", "retail": "0.02"}, format="json"
    )
    assert patched.status_code == 200 and patched.json()["retail_set"]["amount"] == "0.02"
    reset = client.patch(url, {"plan": "starter", "item": FEE, "retail": None}, format="json")
    assert reset.json()["retail"]["amount"] == "30.00" and reset.json()["retail_set"] is None
    error(
        client.put(url, {"plan": "starter", "item": "vision.images", "retail": "1"}, format="json"),
        400,
        "item:",
        "does not price",
    )
    error(
        client.put(url, {"plan": "gold", "item": FEE, "retail": "1"}, format="json"),
        400,
        "plan:",
        "No plan 'gold'",
    )
    error(
        client.put(url, {"plan": "starter", "item": FEE, "retail": 25.5}, format="json"),
        400,
        "retail:",
        "float",
    )
    error(
        client.put(url, {"plan": "starter", "item": FEE, "retail": "-1"}, format="json"),
        400,
        "retail:",
    )
    error(client.put(url, {"plan": "starter", "item": FEE}, format="json"), 400, "retail:")
    error(client.put(url, {"plan": "starter", "retail": "30"}, format="json"), 400, "item:")
    viewer = make_user("viewer@partner-a.example")
    PartnerMembership.objects.create(partner=world_a.partner, user=viewer, role=PartnerRole.VIEWER)
    assert signed_in(viewer).get(url).status_code == 200
    error(
        signed_in(viewer).put(url, {"plan": "starter", "item": FEE, "retail": "29"}, format="json"),
        403,
        "partner.price.update",
    )
    error(world_a.client().get(url), 403, "API keys")
    error(world_a.session().get(url), 403)


def test_a_member_of_several_partners_names_one(world_a, world_b, starter):
    both = make_user("both@partners.example")
    for world in (world_a, world_b):
        PartnerMembership.objects.create(partner=world.partner, user=both, role=PartnerRole.ADMIN)
    client = signed_in(both)
    error(client.get("/api/v1/partner/price-book/"), 400, "partner:", "several partners")
    assert (
        client.get(f"/api/v1/partner/price-book/?partner={world_b.partner.public_id}").json()[
            "partner"
        ]["name"]
        == "Partner B"
    )
    # The operator itself has no retail prices of its own.
    root_admin = make_user("root@operator.example")
    PartnerMembership.objects.create(
        partner=partner_root(), user=root_admin, role=PartnerRole.ADMIN
    )
    error(
        signed_in(root_admin).put(
            "/api/v1/partner/price-book/",
            {"partner": partner_root().public_id, "plan": "starter", "item": FEE, "retail": "1"},
            format="json",
        ),
        400,
        "partner:",
    )


# --- partner console: tenants' plans and usage ---------------------------------------------------------


def test_a_partner_creates_a_tenant_on_a_plan_with_a_trial(world_a, starter):
    client = world_a.partner_session()
    answer = client.post(
        "/api/v1/partner/tenants/",
        {"name": "Globex", "plan": "starter", "trial_days": 14},
        format="json",
    )
    assert answer.status_code == 201, answer.content
    tenant = Tenant.objects.get(public_id=answer.json()["id"])
    subscription = Subscription.dangerously_unscoped.get(tenant=tenant)
    assert subscription.plan == starter and subscription.status == "trialing"
    assert AuditEvent.dangerously_unscoped.filter(
        tenant=tenant, action="subscription.change"
    ).exists()
    plain = client.post("/api/v1/partner/tenants/", {"name": "Initech"}, format="json")
    assert (
        plain.status_code == 201
        and Subscription.dangerously_unscoped.get(tenant__name="Initech").plan.code == "free"
    )  # BILLING_DEFAULT_PLAN
    error(
        client.post("/api/v1/partner/tenants/", {"name": "Hooli", "plan": "gold"}, format="json"),
        400,
        "plan:",
        "No plan",
    )
    error(
        client.post("/api/v1/partner/tenants/", {"name": "Hooli", "trial_days": 5}, format="json"),
        400,
        "trial_days:",
    )
    error(
        client.post(
            "/api/v1/partner/tenants/",
            {"name": "Hooli", "plan": "starter", "trial_days": 400},
            format="json",
        ),
        400,
        "trial_days:",
    )
    make_plan("retired", is_active=False)
    error(
        client.post(
            "/api/v1/partner/tenants/", {"name": "Hooli", "plan": "retired"}, format="json"
        ),
        400,
        "no longer offered",
    )
    assert not Tenant.objects.filter(name="Hooli").exists()


def test_a_partner_changes_its_tenants_plan(world_a, world_b, starter, pro):
    client = world_a.partner_session()
    url = f"/api/v1/partner/tenants/{world_a.tenant.public_id}/plan/"
    answer = client.post(url, {"plan": "starter"}, format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["plan"]["code"] == "starter" and answer.json()["status"] == "active"
    assert (
        client.post(url[:-1], {"plan": "pro"}, format="json").status_code == 200
    )  # without the trailing slash too
    error(client.post(url, {"plan": "pro"}, format="json"), 400, "already on the plan")
    event = (
        AuditEvent.dangerously_unscoped.filter(tenant=world_a.tenant, action="subscription.change")
        .order_by("-pk")
        .first()
    )
    assert event.actor == world_a.partner_admin.email and event.details == {
        "plan": "pro",
        "previous": "starter",
    }
    # Another partner's admin, the tenant's own owner and API keys cannot.
    error(world_b.partner_session().post(url, {"plan": "starter"}, format="json"), 404)
    error(world_a.session().post(url, {"plan": "starter"}, format="json"), 403)
    error(world_a.client().post(url, {"plan": "starter"}, format="json"), 403)
    viewer = make_user("viewer@partner-a.example")
    PartnerMembership.objects.create(partner=world_a.partner, user=viewer, role=PartnerRole.VIEWER)
    error(
        signed_in(viewer).post(url, {"plan": "starter"}, format="json"), 403, "partner.tenant.plan"
    )
    assert (
        Subscription.dangerously_unscoped.get(tenant=world_a.tenant, ends_at__isnull=True).plan
        == pro
    )


def test_a_partner_reads_its_tenants_usage(world_a, world_b, used):
    client = world_a.partner_session()
    url = f"/api/v1/partner/tenants/{world_a.tenant.public_id}/usage/"
    rows = client.get(url).json()["results"]
    assert {r["meter"]: r["quantity"] for r in rows} == {
        "inference.requests": "7",
        "training.cpu_seconds": "1.5",
    }
    only = client.get(f"{url}?project={used.other.public_id}").json()["results"]
    assert only == [{"meter": "inference.requests", "quantity": "4", "events": 1}]
    csv = client.get(f"{url}?format=csv")
    assert csv.status_code == 200 and csv["Content-Type"].startswith("text/csv")
    error(client.get(f"{url}?group_by=colour"), 400, "group_by:")
    error(client.get(f"{url}?project={world_b.project.public_id}"), 404)
    error(world_b.partner_session().get(url), 404)
    error(world_b.partner_session().get(f"{url}?format=csv"), 404)


# --- partner console: revenue, growth, invoices -------------------------------------------------------


def test_revenue_per_tenant_with_margin_and_none_of_another_partners(world_a, world_b, starter):
    with_margin(world_a, starter)
    invoiced(world_a, starter)
    invoiced(world_b, make_plan("basic", fee="10"))
    answer = world_a.partner_session().get(
        "/api/v1/partner/revenue/?start=2026-01-01&end=2026-02-28"
    )
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["count"] == 1
    row = body["results"][0]
    assert row["tenant"]["id"] == world_a.tenant.public_id and row["plan"] == {
        "code": "starter",
        "name": "Starter",
    }
    # Retail 25.00 + 50 × 0.008; wholesale 20.00 + 50 × 0.004.
    assert (
        row["revenue"] == [money("25.40")]
        and row["wholesale"] == [money("20.20")]
        and row["margin"] == [money("5.20")]
    )
    assert row["usage"] == {"inference.requests": "150"}
    assert body["totals"]["margin"] == [money("5.20")]
    b = world_b.partner_session().get("/api/v1/partner/revenue/?start=2026-01-01&end=2026-02-28")
    assert "Tenant A" not in b.content.decode() and b.json()["results"][0]["revenue"] == [
        money("10.00")
    ]
    error(world_a.partner_session().get("/api/v1/partner/revenue/?start=January"), 400, "start:")
    error(
        world_a.partner_session().get("/api/v1/partner/revenue/?start=2026-02-01&end=2026-01-01"),
        400,
        "end:",
    )
    error(
        world_a.partner_session().get(
            f"/api/v1/partner/revenue/?partner={world_b.partner.public_id}"
        ),
        404,
    )
    assert (
        world_a.partner_session().get("/api/v1/partner/revenue/").status_code == 200
    )  # the last 12 months


def test_growth_month_by_month(world_a, starter):
    invoiced(world_a, starter, start=previous_period(period_of(timezone.now(), 1)[0], 1)[0])
    client = world_a.partner_session()
    body = client.get("/api/v1/partner/growth/").json()
    assert body["months"] == 12 and len(body["results"]) == 12
    last = body["results"][-2]
    assert last["revenue"] == [money("30.50")] and last["usage_by_task"] == {
        "sentiment": {"inference.requests": "150"}
    }
    assert body["results"][-1]["mrr"] == [money("30.00")]
    assert len(client.get("/api/v1/partner/growth/?months=36").json()["results"]) == 36
    for bad in ("0", "37", "many", "-1"):
        error(client.get(f"/api/v1/partner/growth/?months={bad}"), 400, "months:")
    error(world_a.client().get("/api/v1/partner/growth/"), 403)


def test_partner_invoices_hold_both_legs_and_none_of_another_partners(world_a, world_b, starter):
    with_margin(world_a, starter)
    retail = invoiced(world_a, starter)
    invoiced(world_b, make_plan("basic", fee="10"))
    wholesale = Invoice.objects.get(kind=Invoice.Kind.WHOLESALE, partner=world_a.partner)
    client = world_a.partner_session()
    listed = client.get("/api/v1/partner/invoices/").json()
    assert {i["id"] for i in listed["results"]} == {retail.public_id, wholesale.public_id}
    detail = client.get(f"/api/v1/partner/invoices/{wholesale.public_id}/").json()
    assert detail["kind"] == "wholesale" and detail["total"] == money("20.20")
    assert detail["retail_total"] == money("25.40") and detail["margin"] == money("5.20")
    assert [
        (line["amount"]["amount"], line["retail_amount"]["amount"]) for line in detail["lines"]
    ] == [("20.00", "25.00"), ("0.20", "0.40")]
    assert detail["lines"][0]["tenant"] == {"id": world_a.tenant.public_id, "name": "Tenant A"}
    mine = client.get(f"/api/v1/partner/invoices/{retail.public_id}/").json()
    assert (
        mine["wholesale_total"] == money("20.20")
        and mine["lines"][1]["wholesale_unit_price"]["amount"] == "0.004"
    )
    assert client.get("/api/v1/partner/invoices/?kind=wholesale").json()["count"] == 1
    assert (
        client.get(f"/api/v1/partner/invoices/?tenant={world_a.tenant.public_id}").json()["count"]
        == 1
    )
    pdf = client.get(f"/api/v1/partner/invoices/{wholesale.public_id}/pdf")
    assert (
        pdf.status_code == 200
        and pdf["Content-Type"] == "application/pdf"
        and "Your margin" in pdf_text(pdf.content)
    )
    csv = client.get(f"/api/v1/partner/invoices/{wholesale.public_id}/csv/")
    assert csv.status_code == 200 and "retail_amount,margin" in csv.content.decode()
    b = world_b.partner_session()
    assert world_a.tenant.public_id not in b.get("/api/v1/partner/invoices/").content.decode()
    assert b.get("/api/v1/partner/invoices/").json()["count"] == 2
    for invoice in (retail, wholesale):
        for tail in ("", "pdf/", "csv/", "pdf", "csv"):
            error(b.get(f"/api/v1/partner/invoices/{invoice.public_id}/{tail}"), 404)
    error(world_a.client().get("/api/v1/partner/invoices/"), 403)


# --- partner console: brand ----------------------------------------------------------------------------


def png(size=(8, 8)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_brand_is_read_and_changed_and_shows_on_the_tenants_next_invoice(
    world_a, world_b, starter, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path
    client = world_a.partner_session()
    shown = client.get("/api/v1/partner/brand/").json()
    assert shown == {
        "id": world_a.partner.public_id,
        "name": "Partner A",
        "brand_name": "Brand A",
        "brand_colour": "#1f6feb",
        "support_email": "",
        "logo": None,
    }
    changed = client.patch(
        "/api/v1/partner/brand/",
        {
            "brand_name": "Acme Cloud",
            "brand_colour": "#d1242f",
            "support_email": "help@acme.example",
        },
        format="json",
    )
    assert changed.status_code == 200, changed.content
    assert changed.json()["brand_name"] == "Acme Cloud"
    logo = client.patch(
        "/api/v1/partner/brand/",
        {"logo": SimpleUploadedFile("acme.png", png(), content_type="image/png")},
        format="multipart",
    )
    assert logo.status_code == 200, logo.content
    assert re.match(r"/media/partner-logos/ptn_\w+\.png$", logo.json()["logo"])
    world_a.partner.refresh_from_db()
    assert world_a.partner.brand_colour == "#d1242f" and world_a.partner.logo.name.endswith(".png")
    # The tenant's next invoice wears the new brand, in the API and on the PDF.
    invoice = invoiced(world_a, starter)
    body = world_a.client().get(f"/api/v1/invoices/{invoice.public_id}/").json()
    assert body["brand"]["name"] == "Acme Cloud" and body["brand"]["colour"] == "#d1242f"
    assert body["brand"]["support_email"] == "help@acme.example" and body["brand"]["logo"].endswith(
        ".png"
    )
    drawn = pdf_text(world_a.client().get(f"/api/v1/invoices/{invoice.public_id}/pdf/").content)
    assert "Acme Cloud" in drawn and "help@acme.example" in drawn and "Brand A" not in drawn
    removed = client.patch("/api/v1/partner/brand/", {"logo": None}, format="json")
    assert removed.json()["logo"] is None
    # Partner B sees and changes only its own brand.
    assert world_b.partner_session().get("/api/v1/partner/brand/").json()["brand_name"] == "Brand B"
    error(
        world_b.partner_session().patch(
            f"/api/v1/partner/brand/?partner={world_a.partner.public_id}",
            {"brand_name": "Hijacked"},
            format="json",
        ),
        404,
    )
    world_a.partner.refresh_from_db()
    assert world_a.partner.brand_name == "Acme Cloud"


@pytest.mark.parametrize(
    "change,fragment",
    [
        ({"brand_colour": "red"}, "brand_colour:"),
        ({"brand_colour": "#12345"}, "brand_colour:"),
        ({"support_email": "not an email"}, "support_email:"),
        ({"brand_name": "x" * 121}, "brand_name:"),
        ({"name": "Renamed"}, "name:"),
        ({"logo": "https://example.com/logo.png"}, "logo:"),
    ],
)
def test_a_bad_brand_change_answers_400(world_a, change, fragment):
    error(
        world_a.partner_session().patch("/api/v1/partner/brand/", change, format="json"),
        400,
        fragment,
    )
    world_a.partner.refresh_from_db()
    assert world_a.partner.brand_name == "Brand A" and world_a.partner.name == "Partner A"


@pytest.mark.parametrize(
    "name,data,fragment",
    [
        ("logo.png", b"not a picture", "not one"),
        (
            "logo.svg",
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
            "not one",
        ),
        ("big.png", b"\x89PNG" + b"0" * (1024 * 1024 + 10), "at most 1048576"),
        ("huge.png", None, "pixels"),
    ],
)
def test_a_logo_must_be_a_small_real_image(world_a, settings, tmp_path, name, data, fragment):
    settings.MEDIA_ROOT = tmp_path
    data = png((5000, 10)) if data is None else data
    upload = SimpleUploadedFile(name, data, content_type="image/png")
    error(
        world_a.partner_session().patch(
            "/api/v1/partner/brand/", {"logo": upload}, format="multipart"
        ),
        400,
        "logo:",
        fragment,
    )
    world_a.partner.refresh_from_db()
    assert not world_a.partner.logo


def test_brand_changes_need_the_partner_admin_role(world_a):
    viewer = make_user("viewer@partner-a.example")
    PartnerMembership.objects.create(partner=world_a.partner, user=viewer, role=PartnerRole.VIEWER)
    client = signed_in(viewer)
    assert client.get("/api/v1/partner/brand/").status_code == 200
    error(
        client.patch("/api/v1/partner/brand/", {"brand_name": "Mine"}, format="json"),
        403,
        "partner.brand.update",
    )
    error(
        world_a.client().patch("/api/v1/partner/brand/", {"brand_name": "Mine"}, format="json"), 403
    )
    error(world_a.session().get("/api/v1/partner/brand/"), 403)
    assert Partner.objects.get(pk=world_a.partner.pk).brand_name == "Brand A"


# --- months that look like digits, and the default plan of a partner's new tenant -----------------------


@pytest.mark.parametrize("bad", ["²", "٣", "1²", "¹²", "+3", " 3", "3.0"])
def test_months_that_are_not_plain_digits_answer_400_naming_months(world_a, bad):
    """'²'.isdigit() is True but int('²') raises: such values are a 400, never a 500."""
    from urllib.parse import quote

    error(
        world_a.partner_session().get(f"/api/v1/partner/growth/?months={quote(bad)}"),
        400,
        "months:",
    )
    error(signed_in(staff_user()).get(f"/api/v1/insights/?months={quote(bad)}"), 400, "months:")


def test_a_partners_new_tenant_without_a_plan_goes_on_the_default_plan(world_a, settings):
    client = world_a.partner_session()
    free = Plan.objects.filter(code="free").first() or make_plan("free", fee="0", cap="hard")
    answer = client.post("/api/v1/partner/tenants/", {"name": "Globex"}, format="json")
    assert answer.status_code == 201, answer.content
    subscription = Subscription.dangerously_unscoped.get(tenant__public_id=answer.json()["id"])
    assert (
        subscription.plan == free
        and subscription.trial_ends_at is None
        and subscription.ends_at is None
    )

    settings.BILLING_DEFAULT_PLAN = "team-plus"
    custom = make_plan("team-plus", fee="50")
    answer = client.post("/api/v1/partner/tenants/", {"name": "Initech"}, format="json")
    assert (
        Subscription.dangerously_unscoped.get(tenant__public_id=answer.json()["id"]).plan == custom
    )
    named = client.post(
        "/api/v1/partner/tenants/", {"name": "Umbrella", "plan": "free"}, format="json"
    )
    assert (
        Subscription.dangerously_unscoped.get(tenant__public_id=named.json()["id"]).plan == free
    ), "a named plan wins"

    for code in (
        "",
        "no-such-plan",
    ):  # no default, or one that does not exist: no subscription, no failure
        settings.BILLING_DEFAULT_PLAN = code
        plain = client.post(
            "/api/v1/partner/tenants/", {"name": f"Plain {code or 'none'}"}, format="json"
        )
        assert plain.status_code == 201, plain.content
        assert not Subscription.dangerously_unscoped.filter(
            tenant__public_id=plain.json()["id"]
        ).exists()
    custom.is_active = False  # no longer offered: not a default either
    custom.save(update_fields=["is_active"])
    settings.BILLING_DEFAULT_PLAN = "team-plus"
    retired = client.post("/api/v1/partner/tenants/", {"name": "Retired default"}, format="json")
    assert (
        retired.status_code == 201
        and not Subscription.dangerously_unscoped.filter(
            tenant__public_id=retired.json()["id"]
        ).exists()
    )
