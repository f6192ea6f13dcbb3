"""The tenant's billing pages: plan, gauges, daily chart, invoices and downloads, plan change, roles, brand."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from tests.conftest import make_member, pdf_text
from verticals.billing import invoicing, services
from verticals.billing.catalog import period_of, previous_period
from verticals.billing.metering import Usage, record
from verticals.billing.models import FEE, Invoice, Plan, PlanPrice, Subscription
from verticals.tenancy.roles import Role


def make_plan(code, *, fee="30", cap="soft", prices=None, currency="USD", **extra) -> Plan:
    plan = Plan.objects.create(
        code=code, name=code.title(), monthly_fee=Decimal(fee), cap=cap, currency=currency, **extra
    )
    for meter, (included, price) in (prices or {}).items():
        PlanPrice.objects.create(
            plan=plan, meter_id=meter, included=Decimal(included), unit_price=Decimal(price)
        )
    return plan


def last_period():
    """The monthly period before the current one (anchor day 1), from the real clock the pages read."""
    return previous_period(period_of(timezone.now(), 1)[0], 1)


def invoiced(world, plan, *, requests=150, task="sentiment"):
    """The world's tenant on `plan` since last period, some usage in it, and the period closed."""
    start, _ = last_period()
    services.subscribe(world.tenant, plan, now=start)
    record(
        world.tenant,
        [
            Usage(
                "inference.requests",
                Decimal(requests),
                task=task,
                occurred_at=start + timedelta(days=2),
            )
        ],
        source="test",
    )
    invoicing.close_period(timezone.now(), tenants=[world.tenant])
    return Invoice.objects.get(kind=Invoice.Kind.RETAIL, tenant=world.tenant)


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


@pytest.mark.django_db
def test_gauges_show_used_against_included_overage_and_unlimited(world_a):
    plan = make_plan(
        "starter", prices={"inference.requests": ("100", "0.01")}, requests_per_minute=60
    )
    services.subscribe(world_a.tenant, plan, now=period_of(timezone.now(), 1)[0])
    record(
        world_a.tenant,
        [
            Usage("inference.requests", Decimal(150), task="sentiment"),
            Usage("textgen.tokens", Decimal(1234), task="text-generation"),
        ],
        source="test",
    )
    page = signed_in(world_a.owner).get("/billing/")
    assert page.status_code == 200
    body = text(page)
    assert "Plan Starter" in body and "30.00 USD" in body and "60 metered calls a minute" in body
    gauge = re.search(
        r'data-testid="gauge-inference.requests".*?</div>\s*</div>', page.content.decode(), re.S
    ).group(0)
    assert "150 of 100 requests" in gauge and "150%" in gauge and "width: 100%" in gauge
    assert "50 requests over the included units, at 0.01 USD each: 0.50 USD so far" in re.sub(
        r"\s+", " ", gauge
    )
    tokens = re.search(
        r'data-testid="gauge-textgen.tokens".*?</div>\s*</div>', page.content.decode(), re.S
    ).group(0)
    assert "unlimited" in tokens and "1,234 tokens used" in tokens
    # The daily chart: one inline SVG per meter, a bar per day with its value as a tooltip.
    assert 'data-testid="chart-daily-inference.requests" data-points="30"' in body
    assert f"<title>{timezone.now():%Y-%m-%d}: 150 requests</title>" in body


@pytest.mark.django_db
def test_a_reached_hard_cap_is_red_and_says_work_stops(world_a):
    plan = make_plan("capped", cap="hard", prices={"vision.images": ("10", "0")})
    services.subscribe(world_a.tenant, plan, now=period_of(timezone.now(), 1)[0])
    record(world_a.tenant, [Usage("vision.images", Decimal(10))], source="test")
    page = signed_in(world_a.owner).get("/billing/").content.decode()
    assert re.search(r'class="gauge reached" data-testid="gauge-vision.images"', page)
    assert "10 of 10 images" in page and "Hard cap reached" in page


@pytest.mark.django_db
def test_no_plan_says_so(world_a):
    page = text(signed_in(world_a.owner).get("/billing/"))
    assert "not subscribed to a plan" in page and "Choose a plan" in page


@pytest.mark.django_db
def test_invoices_are_listed_with_totals_and_download_as_pdf_and_csv(world_a, world_b):
    invoice = invoiced(
        world_a, make_plan("starter", prices={"inference.requests": ("100", "0.01")})
    )
    assert invoice.total_minor == 3000 + 50
    client = signed_in(world_a.owner)
    listing = text(client.get("/billing/invoices/"))
    assert invoice.number in listing and "30.50 USD" in listing and "Retail" in listing
    detail = client.get(f"/billing/invoices/{invoice.public_id}/")
    assert detail.status_code == 200
    body = text(detail)
    assert "Plan Starter" in body and "Predictions (inference.requests)" in body
    assert "150" in body and "100" in body and "0.50 USD" in body and "30.50 USD" in body
    assert "Issued by <strong>Brand A</strong>" in body  # the brand stored on the invoice
    pdf = client.get(f"/billing/invoices/{invoice.public_id}/pdf")
    assert (
        pdf.status_code == 200
        and pdf["Content-Type"] == "application/pdf"
        and pdf.content.startswith(b"%PDF")
    )
    assert f'filename="{invoice.number}.pdf"' in pdf["Content-Disposition"]
    csv = client.get(f"/billing/invoices/{invoice.public_id}/csv")
    assert csv.status_code == 200 and csv["Content-Type"].startswith("text/csv")
    assert "30.50,USD" in csv.content.decode().replace('"', "")
    # Another tenant's invoice is not found, from the page or the downloads.
    other = signed_in(world_b.owner)
    assert other.get(f"/billing/invoices/{invoice.public_id}/").status_code == 404
    assert other.get(f"/billing/invoices/{invoice.public_id}/pdf").status_code == 404
    assert invoice.number not in text(other.get("/billing/invoices/"))


@pytest.mark.django_db
def test_billing_pages_and_the_invoice_pdf_wear_the_partner_brand(world_a):
    world_a.partner.support_email = "billing@brand-a.example"
    world_a.partner.save()
    invoice = invoiced(world_a, make_plan("starter"))
    client = signed_in(world_a.owner)
    page = text(client.get("/billing/"))
    assert "Brand A" in page and "--brand: #1f6feb" in page and "billing@brand-a.example" in page
    # A later brand change does not rewrite an issued invoice: the PDF carries the brand it was issued under.
    world_a.partner.brand_name = "Renamed Brand"
    world_a.partner.save()
    pdf = pdf_text(client.get(f"/billing/invoices/{invoice.public_id}/pdf").content)
    assert "Brand A" in pdf and "billing@brand-a.example" in pdf and "Renamed Brand" not in pdf
    assert "Issued by <strong>Brand A</strong>" in text(
        client.get(f"/billing/invoices/{invoice.public_id}/")
    )


@pytest.mark.django_db
def test_the_plan_page_shows_the_partners_retail_prices_never_wholesale(world_a):
    plan = make_plan("pro", fee="30", prices={"inference.requests": ("1000", "0.01")})
    services.set_wholesale(world_a.partner, plan, FEE, "20")
    services.set_wholesale(world_a.partner, plan, "inference.requests", "0.004")
    services.set_retail(world_a.partner, plan, FEE, "45")
    page = text(signed_in(world_a.owner).get("/billing/plan/"))
    assert (
        "45.00 USD" in page and "0.01 USD per request" in page and "1,000 requests included" in page
    )
    assert "20.00 USD" not in page and "0.004" not in page and "30.00 USD" not in page


@pytest.mark.django_db
def test_a_plan_change_works_and_a_bad_one_shows_the_message(world_a):
    small = make_plan("small", fee="10")
    big = make_plan("big", fee="90")
    make_plan("retired", fee="5", is_active=False)
    services.subscribe(world_a.tenant, small, now=period_of(timezone.now(), 1)[0])
    client = signed_in(world_a.owner)
    form = text(client.get("/billing/plan/"))
    assert (
        "Small" in form
        and "Big" in form
        and "Retired" not in form
        and 'data-testid="plan-form"' in form
    )
    changed = client.post("/billing/plan/", {"plan": big.public_id})
    assert changed.status_code == 302 and changed["Location"] == "/billing/"
    assert (
        Subscription.dangerously_unscoped.get(tenant=world_a.tenant, ends_at__isnull=True).plan
        == big
    )
    assert "You are now on the plan Big" in text(client.get("/billing/"))
    again = client.post("/billing/plan/", {"plan": big.public_id})
    assert again.status_code == 400 and "already on the plan" in text(again)
    unknown = client.post("/billing/plan/", {"plan": "pln_nope"})
    assert unknown.status_code == 400 and "Choose one of the plans listed" in text(unknown)
    assert (
        Subscription.dangerously_unscoped.filter(tenant=world_a.tenant).count() == 2
    )  # nothing more was written


@pytest.mark.django_db
def test_billing_role_sees_invoices_and_changes_plan_but_may_not_train_or_predict(world_a):
    invoice = invoiced(world_a, make_plan("starter"))
    other = make_plan("other", fee="60")
    member = make_member(world_a.tenant, "billing@example.com", Role.BILLING)
    client = signed_in(member.user)
    overview = text(client.get("/billing/"))
    assert (
        "Recent invoices" in overview
        and invoice.number in overview
        and 'data-testid="nav-billing"' in overview
    )
    assert client.get(f"/billing/invoices/{invoice.public_id}/pdf").status_code == 200
    assert client.post("/billing/plan/", {"plan": other.public_id}).status_code == 302
    project = world_a.project.public_id
    assert client.get(f"/projects/{project}/train/").status_code == 403
    assert (
        client.post(f"/projects/{project}/models/mdl_any/predict", {"text": "hi"}).status_code
        == 403
    )


@pytest.mark.django_db
def test_a_viewer_sees_usage_and_plans_but_no_invoices_and_no_plan_form(world_a):
    invoice = invoiced(world_a, make_plan("starter"))
    other = make_plan("other", fee="60")
    member = make_member(world_a.tenant, "viewer@example.com", Role.VIEWER)
    client = signed_in(member.user)
    overview = text(client.get("/billing/"))
    assert (
        "Plan Starter" in overview
        and "Recent invoices" not in overview
        and invoice.number not in overview
    )
    refused = client.get("/billing/invoices/")
    assert refused.status_code == 403 and "invoice.view" in text(refused)
    assert client.get(f"/billing/invoices/{invoice.public_id}/pdf").status_code == 403
    plans = text(client.get("/billing/plan/"))
    assert "Other" in plans and 'data-testid="plan-form"' not in plans
    assert client.post("/billing/plan/", {"plan": other.public_id}).status_code == 403
    assert (
        Subscription.dangerously_unscoped.get(tenant=world_a.tenant, ends_at__isnull=True).plan.code
        == "starter"
    )


# --- the train form and the playground under a plan ----------------------------------------


def _page(response) -> str:
    from html import unescape

    return unescape(text(response))


def _train_form(version) -> dict:
    return {
        "task": "sentiment",
        "dataset": version.public_id,
        "architecture": "",
        "base_model": "",
        "parent": "",
        "name": "planned",
        "seed": "0",
        "epochs": "",
        "batch_size": "8",
        "learning_rate": "0.002",
        "weight_decay": "0",
        "d_model": "64",
        "num_heads": "2",
        "max_length": "",
    }


@pytest.mark.django_db
def test_the_train_page_offers_only_the_plans_tasks_and_refuses_others_with_403(world_a):
    from unittest import mock

    from tests.registry.factories import make_dataset_version
    from verticals.jobs.models import Job

    version = make_dataset_version(world_a, "sentiment", rows=24)
    base = f"/projects/{world_a.project.public_id}/train/"
    client = signed_in(world_a.owner)
    assert "?task=sentiment" in text(client.get(base)), "no subscription: every task"
    services.subscribe(
        world_a.tenant,
        make_plan("no-nlp", enabled_tasks=["image-classification", "text-generation"]),
    )
    chooser = client.get(base)
    assert chooser.status_code == 200
    assert "?task=image-classification" in text(chooser) and "?task=sentiment" not in text(chooser)
    refused = client.get(f"{base}?task=sentiment")
    assert refused.status_code == 403
    assert "The task 'sentiment' is not part of the plan 'No-Nlp' (no-nlp)" in _page(refused)
    assert "?task=image-classification" in text(refused), "the plan's tasks are offered instead"
    with mock.patch("verticals.jobs.engine.send") as send:
        posted = client.post(f"{base}?task=sentiment", _train_form(version))
    assert posted.status_code == 403 and "is not part of the plan 'No-Nlp'" in _page(posted)
    assert (
        not send.called
        and not Job.dangerously_unscoped.filter(tenant=world_a.tenant, kind="train").exists()
    )


@pytest.mark.django_db
def test_a_train_job_the_plan_refuses_shows_its_message_on_the_form_with_its_status(world_a):
    from unittest import mock

    from tests.registry.factories import make_dataset_version
    from verticals.jobs.models import Job

    version = make_dataset_version(world_a, "sentiment", rows=24)
    services.subscribe(world_a.tenant, make_plan("no-models", max_model_versions=0))
    client = signed_in(world_a.owner)
    with mock.patch("verticals.jobs.engine.send") as send:
        answer = client.post(
            f"/projects/{world_a.project.public_id}/train/?task=sentiment", _train_form(version)
        )
    assert answer.status_code == 402, text(answer)[:2000]
    page = _page(answer)
    assert 'data-testid="form-errors"' in page and 'data-testid="train-form"' in page
    assert "The plan 'No-Models' (no-models) keeps at most 0 model versions" in page
    assert 'value="planned"' in page, "the values are kept"
    assert (
        not send.called
        and not Job.dangerously_unscoped.filter(tenant=world_a.tenant, kind="train").exists()
    )


@pytest.mark.django_db
def test_the_playground_sends_a_generation_model_to_the_chat_playground(world_a):
    from verticals.billing.models import UsageEvent

    model = world_a.generator
    url = f"/projects/{world_a.project.public_id}/models/{model.public_id}/predict"
    client = signed_in(world_a.owner)
    answer = client.post(url, {"text": "Once upon a time"})
    assert answer.status_code == 409
    chat = f"/projects/{world_a.project.public_id}/chat/?model={model.public_id}"
    assert f"This model generates text: talk to it in the chat playground ({chat})." in _page(
        answer
    )
    fragment = client.post(url, {"text": "Once upon a time"}, HTTP_HX_REQUEST="true")
    assert fragment.status_code == 200, "HTMX swaps only 2xx: the message is in the fragment"
    assert 'data-testid="playground-error"' in text(fragment) and "chat playground" in text(
        fragment
    )
    assert not UsageEvent.dangerously_unscoped.filter(
        tenant_id=world_a.tenant.pk
    ).exists()  # the world's tenant's
