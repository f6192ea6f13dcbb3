"""Billing end to end through the API, both legs of the channel:

staff set a partner's wholesale prices; the partner sets its retail prices and creates a tenant
on the plan; the tenant's owner (an API key) uploads reviews, trains a sentiment model in a real
job through the job engine, and predicts with it; the period closes (`manage.py close_period`);
the tenant's retail invoice bills the fee and the usage at the partner's retail prices, the
operator's wholesale invoice bills the same lines at wholesale prices, and the partner's margin
is the difference — in /api/v1/invoices/, /api/v1/partner/invoices/ and /api/v1/partner/revenue/.
"""

import io
from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db.models import Sum
from django.utils import timezone

from tests.conftest import make_key, make_member, pdf_text
from tests.e2e.reviews import training_csv
from verticals.billing import catalog, services
from verticals.billing.catalog import period_of
from verticals.billing.models import FEE, Plan, PlanPrice, Subscription, UsageEvent
from verticals.billing.money import to_minor
from verticals.jobs import engine, worker
from verticals.jobs.models import Job
from verticals.sdk import discovery
from verticals.tenancy.models import Tenant
from verticals.tenancy.roles import Role

pytestmark = pytest.mark.django_db

# item: (list price, wholesale set by staff, retail set by the partner)
PRICES = {
    FEE: ("100", "60", "80"),
    "inference.requests": ("0.05", "0.02", "0.04"),
    "training.cpu_seconds": ("0.01", "0.004", "0.008"),
}
INCLUDED = {"inference.requests": "5", "training.cpu_seconds": "0"}


def amount(answer_money: dict) -> Decimal:
    assert set(answer_money) == {"amount", "currency", "minor"} and isinstance(
        answer_money["amount"], str
    )
    assert (
        answer_money["currency"] == "USD"
        and Decimal(answer_money["amount"]) * 100 == answer_money["minor"]
    )
    return Decimal(answer_money["amount"])


def cents(value: Decimal) -> Decimal:
    return Decimal(to_minor(value, "USD")) / 100


@pytest.fixture
def growth_plan(db) -> Plan:
    plan = Plan.objects.create(
        code="growth", name="Growth", monthly_fee=Decimal(PRICES[FEE][0]), currency="USD"
    )
    for meter, included in INCLUDED.items():
        PlanPrice.objects.create(
            plan=plan,
            meter_id=meter,
            included=Decimal(included),
            unit_price=Decimal(PRICES[meter][0]),
        )
    return plan


def test_a_partners_tenant_is_billed_retail_and_the_partner_wholesale(
    world_a, growth_plan, settings
):
    settings.JOBS_HEARTBEAT_SECONDS = (
        0  # the job runs inside the test's transaction: no heartbeat thread
    )
    settings.JOBS_PROGRESS_SECONDS = 0
    settings.TRAIN_DEVICE = "cpu"  # CPU seconds, whatever the machine has

    # Staff set the partner's wholesale prices (the Django admin does the same).
    for item, (_list, wholesale, _retail) in PRICES.items():
        services.set_wholesale(world_a.partner, growth_plan, item, wholesale)

    # The partner sets its retail prices and creates a tenant on the plan, through the API.
    partner = world_a.partner_session()
    for item, (_list, _wholesale, retail) in PRICES.items():
        answer = partner.put(
            "/api/v1/partner/price-book/",
            {"plan": "growth", "item": item, "retail": retail},
            format="json",
        )
        assert answer.status_code == 200, answer.content
        assert Decimal(answer.json()["retail"]["amount"]) == Decimal(retail)
    created = partner.post(
        "/api/v1/partner/tenants/", {"name": "Umbrella", "plan": "growth"}, format="json"
    )
    assert created.status_code == 201, created.content
    tenant = Tenant.objects.get(public_id=created.json()["id"])
    period = period_of(timezone.now(), 1)
    # The tenant has been on the plan since the calendar month began: a whole month's fee (the API
    # subscribed it just now, its periods anchored at this moment).
    Subscription.dangerously_unscoped.filter(tenant=tenant).update(
        starts_at=period[0], anchor_day=1, anchor_seconds=0
    )
    catalog.forget_standing(tenant)

    # The tenant's owner works through the API with a key: what it sees are the partner's retail prices.
    owner = make_member(tenant, "owner@umbrella.example", Role.OWNER)
    _key, secret = make_key(tenant, user=owner.user)
    client = world_a.client()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    plans = {p["code"]: p for p in client.get("/api/v1/plans/").json()["results"]}
    assert plans["growth"]["monthly_fee"]["amount"] == "80.00"
    project = client.post("/api/v1/projects/", {"name": "Reviews"}, format="json").json()["id"]
    uploaded = client.post(
        f"/api/v1/projects/{project}/datasets/",
        {"file": SimpleUploadedFile("reviews.csv", training_csv()), "task": "sentiment"},
        format="multipart",
    )
    assert uploaded.status_code == 201, uploaded.content

    # A real train job through the job engine, run to its end here (the broker is left out).
    params = {
        "dataset": uploaded.json()["id"],
        "name": "reviews",
        **discovery.get_task("sentiment").tiny_params,
    }
    with mock.patch("verticals.jobs.engine.send"):
        answer = client.post(
            f"/api/v1/projects/{project}/jobs/",
            {"kind": "train", "task": "sentiment", "params": params},
            format="json",
        )
        assert answer.status_code == 201, answer.content
        engine.schedule(tenant.pk)
    assert worker.execute(answer.json()["id"]) == Job.Status.SUCCEEDED
    job = client.get(f"/api/v1/projects/{project}/jobs/{answer.json()['id']}/").json()
    assert job["status"] == "succeeded", job["error"]
    model = job["result"]["model_version"]

    # Predictions: 3 calls of 4 inputs, 12 requests; 5 are included, 7 are billed.
    for _ in range(3):
        predicted = client.post(
            f"/api/v1/projects/{project}/models/{model}/predict",
            {"inputs": ["great product", "awful", "love it", "broke at once"]},
            format="json",
        )
        assert predicted.status_code == 200, predicted.content
    ledger = UsageEvent.dangerously_unscoped.filter(tenant=tenant)
    cpu = ledger.filter(meter="training.cpu_seconds").aggregate(q=Sum("quantity"))["q"]
    assert (
        ledger.filter(meter="inference.requests").aggregate(q=Sum("quantity"))["q"] == 12
        and cpu > 0
    )
    assert all(period[0] <= at < period[1] for at in ledger.values_list("occurred_at", flat=True))

    # The period closes.
    out = io.StringIO()
    call_command("close_period", "--now", (period[1] + timedelta(hours=1)).isoformat(), stdout=out)
    assert "Umbrella" in out.getvalue() and "Partner A" in out.getvalue()

    # The tenant's retail invoice: the partner's retail prices, under the partner's brand.
    listed = client.get("/api/v1/invoices/").json()
    assert listed["count"] == 1
    retail = client.get(f"/api/v1/invoices/{listed['results'][0]['id']}/").json()
    expected_retail = {
        FEE: Decimal("80.00"),
        "inference.requests": cents(7 * Decimal("0.04")),
        "training.cpu_seconds": cents(cpu * Decimal("0.008")),
    }
    lines = {line["meter"] or FEE: line for line in retail["lines"]}
    assert {item: amount(line["amount"]) for item, line in lines.items()} == expected_retail
    assert (
        lines["inference.requests"]["quantity"],
        lines["inference.requests"]["included"],
        lines["inference.requests"]["billable"],
    ) == ("12", "5", "7")
    assert Decimal(lines["training.cpu_seconds"]["quantity"]) == cpu
    assert amount(retail["total"]) == sum(expected_retail.values())
    assert retail["brand"]["name"] == "Brand A" and "wholesale" not in str(retail)
    assert "Brand A" in pdf_text(client.get(f"/api/v1/invoices/{retail['id']}/pdf/").content)

    # The operator's wholesale invoice to the partner: the same lines at wholesale prices.
    wholesale_list = partner.get("/api/v1/partner/invoices/?kind=wholesale").json()
    assert wholesale_list["count"] == 1
    wholesale = partner.get(
        f"/api/v1/partner/invoices/{wholesale_list['results'][0]['id']}/"
    ).json()
    expected_wholesale = {
        FEE: Decimal("60.00"),
        "inference.requests": cents(7 * Decimal("0.02")),
        "training.cpu_seconds": cents(cpu * Decimal("0.004")),
    }
    assert {
        line["meter"] or FEE: amount(line["amount"]) for line in wholesale["lines"]
    } == expected_wholesale
    assert {
        line["meter"] or FEE: amount(line["retail_amount"]) for line in wholesale["lines"]
    } == expected_retail
    assert all(line["tenant"]["id"] == tenant.public_id for line in wholesale["lines"])
    retail_total, wholesale_total = sum(expected_retail.values()), sum(expected_wholesale.values())
    assert (
        amount(wholesale["total"]) == wholesale_total
        and amount(wholesale["retail_total"]) == retail_total
    )
    assert amount(wholesale["margin"]) == retail_total - wholesale_total

    # The partner's view of the tenant's invoice and its revenue report agree.
    seen = partner.get(f"/api/v1/partner/invoices/{retail['id']}/").json()
    assert (
        amount(seen["wholesale_total"]) == wholesale_total
        and amount(seen["margin"]) == retail_total - wholesale_total
    )
    report = partner.get(
        f"/api/v1/partner/revenue/?start={period[0].date().isoformat()}"
        f"&end={(period[1] + timedelta(days=1)).date().isoformat()}"
    ).json()
    row = next(r for r in report["results"] if r["tenant"]["id"] == tenant.public_id)
    assert [amount(m) for m in row["revenue"]] == [retail_total]
    assert [amount(m) for m in row["wholesale"]] == [wholesale_total]
    assert [amount(m) for m in row["margin"]] == [retail_total - wholesale_total]
    assert row["plan"]["code"] == "growth" and row["usage"]["inference.requests"] == "12"
