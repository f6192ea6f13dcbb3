"""Billing core: the ledger counts once, quotas refuse with the right status, invoices add up."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from verticals.billing import invoicing, quotas, services
from verticals.billing.metering import Usage, record
from verticals.billing.models import Invoice, Plan, PlanPrice, UsageEvent

T0 = datetime(2026, 10, 1, tzinfo=UTC)


def plan(code="p", *, fee="10", cap="soft", rpm=None, prices=None, currency="USD", **extra) -> Plan:
    plan = Plan.objects.create(
        code=code,
        name=code.title(),
        monthly_fee=Decimal(fee),
        cap=cap,
        requests_per_minute=rpm,
        currency=currency,
        **extra,
    )
    for meter, (included, price) in (prices or {}).items():
        PlanPrice.objects.create(
            plan=plan, meter_id=meter, included=Decimal(included), unit_price=Decimal(price)
        )
    return plan


def test_an_event_sent_again_counts_once(world_a):
    first = record(
        world_a.tenant,
        [Usage("inference.requests", Decimal(3), idempotency_key="k1")],
        source="external:crm",
    )
    again = record(
        world_a.tenant,
        [
            Usage("inference.requests", Decimal(3), idempotency_key="k1"),
            Usage("inference.requests", Decimal("0.5"), idempotency_key="k2"),
        ],
        source="external:crm",
    )
    assert first == ["k1"] and again == ["k2"]
    assert sorted(UsageEvent.dangerously_unscoped.values_list("quantity", flat=True)) == [
        Decimal("0.5"),
        Decimal(3),
    ]


def test_an_unknown_meter_is_refused_before_anything_is_written(world_a):
    with pytest.raises(ValueError, match="Unknown meter 'nope.units'"):
        record(
            world_a.tenant,
            [Usage("inference.requests", Decimal(1)), Usage("nope.units", Decimal(1))],
            source="x",
        )
    assert not UsageEvent.dangerously_unscoped.exists()


def test_the_rate_limit_refuses_with_retry_after(world_a):
    services.subscribe(world_a.tenant, plan(rpm=2))
    quotas.admit(world_a.tenant, task="sentiment", units={})
    quotas.admit(world_a.tenant, task="sentiment", units={})
    with pytest.raises(quotas.Refused) as refused:
        quotas.admit(world_a.tenant, task="sentiment", units={})
    assert refused.value.status == 429 and 1 <= refused.value.retry_after <= 60


def test_a_hard_cap_refuses_with_402_naming_meter_and_plan(world_a):
    services.subscribe(
        world_a.tenant, plan("capped", cap="hard", prices={"inference.requests": ("3", "0")})
    )
    admission = quotas.admit(
        world_a.tenant, task="sentiment", units={"inference.requests": Decimal(2)}
    )
    record(
        world_a.tenant,
        [Usage("inference.requests", Decimal(2))],
        source="serving",
        admission=admission,
    )
    with pytest.raises(quotas.Refused) as refused:
        quotas.admit(world_a.tenant, task="sentiment", units={"inference.requests": Decimal(2)})
    assert refused.value.status == 402
    assert "inference.requests" in refused.value.message and "'Capped'" in refused.value.message
    quotas.admit(
        world_a.tenant, task="sentiment", units={"inference.requests": Decimal(1)}
    )  # the last one fits


def test_a_task_outside_the_plan_is_refused_with_403(world_a):
    services.subscribe(world_a.tenant, plan("vision-only", enabled_tasks=["image-classification"]))
    with pytest.raises(quotas.Refused) as refused:
        quotas.admit(world_a.tenant, task="sentiment", units={})
    assert refused.value.status == 403 and "Vision-Only" in refused.value.message


def test_an_invoice_prorates_a_plan_change_and_bills_overage(world_a):
    small = plan("small", fee="30", prices={"inference.requests": ("100", "0.01")})
    big = plan("big", fee="90", prices={"inference.requests": ("1000", "0.005")})
    services.subscribe(world_a.tenant, small, now=T0)
    services.subscribe(
        world_a.tenant, big, now=datetime(2026, 10, 16, 12, tzinfo=UTC)
    )  # half of October
    record(
        world_a.tenant,
        [Usage("inference.requests", Decimal(150), occurred_at=datetime(2026, 10, 5, tzinfo=UTC))],
        source="x",
    )
    record(
        world_a.tenant,
        [Usage("inference.requests", Decimal(700), occurred_at=datetime(2026, 10, 20, tzinfo=UTC))],
        source="x",
    )
    issued = invoicing.close_period(datetime(2026, 11, 1, 1, tzinfo=UTC))
    retail = [i for i in issued if i.kind == Invoice.Kind.RETAIL]
    assert len(retail) == 1
    lines = list(retail[0].lines.all())
    # Half a month of each: 15.00 fee; 150 used of 50 included at 0.01; 45.00 fee; 700 used of 500 included at 0.005.
    assert [line.amount_minor for line in lines] == [1500, 100, 4500, 100]
    assert [line.included for line in lines if line.meter] == [Decimal(50), Decimal(500)]
    assert retail[0].total_minor == 6200
    # The partner pays list prices when its price book is empty: no margin.
    wholesale = [i for i in issued if i.kind == Invoice.Kind.WHOLESALE]
    assert len(wholesale) == 1 and wholesale[0].partner == world_a.partner
    assert wholesale[0].total_minor == wholesale[0].retail_total_minor == 6200
    assert (
        invoicing.close_period(datetime(2026, 11, 1, 2, tzinfo=UTC)) == []
    )  # closing again issues nothing


def test_documents_and_analytics_read_an_issued_invoice(world_a):
    from verticals.billing import analytics, documents

    services.subscribe(
        world_a.tenant, plan("docs", fee="12.5", prices={"textgen.tokens": ("10", "0.001")}), now=T0
    )
    record(
        world_a.tenant,
        [
            Usage(
                "textgen.tokens",
                Decimal(1010),
                task="text-generation",
                occurred_at=datetime(2026, 10, 3, tzinfo=UTC),
            )
        ],
        source="x",
    )
    invoicing.close_period(datetime(2026, 11, 1, 1, tzinfo=UTC))
    retail = Invoice.objects.get(kind=Invoice.Kind.RETAIL)
    assert retail.total_minor == 1250 + 100
    pdf = documents.invoice_pdf(retail)
    assert pdf.startswith(b"%PDF") and len(pdf) > 500
    text = documents.invoice_csv(retail)
    assert "13.50,USD" in text.replace('"', "")
    wholesale = Invoice.objects.get(kind=Invoice.Kind.WHOLESALE)
    assert "Wholesale" in documents.invoice_pdf(wholesale).decode(
        "latin-1"
    ) or documents.invoice_pdf(wholesale).startswith(b"%PDF")
    month = analytics.growth([world_a.partner.pk], months=2, now=datetime(2026, 11, 15, tzinfo=UTC))
    assert month[0]["revenue"] == {"USD": 1350} and month[0]["usage_by_task"] == {
        "text-generation": {"textgen.tokens": Decimal(1010)}
    }
    assert analytics.revenue_by_task(Invoice.objects.all())["text-generation"] == {"USD": 100}
    report = analytics.partner_tenants_report(
        [world_a.partner.pk],
        start=datetime(2026, 10, 1, tzinfo=UTC),
        end=datetime(2026, 11, 2, tzinfo=UTC),
    )
    assert report[0]["revenue"] == {"USD": 1350} and report[0]["margin"] == {"USD": 0}
    credit = invoicing.issue_credit_note(retail, reason="Goodwill", amount_minor=350)
    assert credit.total_minor == -350 and documents.invoice_pdf(credit).startswith(b"%PDF")
    insight = analytics.insights(months=2, now=datetime(2026, 11, 15, tzinfo=UTC))
    row = next(r for r in insight["by_partner"] if r["partner"] == world_a.partner)
    assert (
        row["revenue"] == {"USD": 1350}
        and row["partner_revenue"] == {"USD": 1000}
        and row["partner_margin"] == {"USD": -350}
    )


def test_a_job_records_its_cpu_seconds_once_per_attempt(world_a):
    from unittest import mock

    from verticals.billing.sources import record_job_seconds
    from verticals.jobs import engine, worker
    from verticals.tenancy.scoping import tenant_context

    with mock.patch("verticals.jobs.engine.send"), tenant_context(world_a.tenant):
        job = engine.job_create(project=world_a.project, kind="test.steps", params={"steps": 3})
        engine.schedule(world_a.tenant.pk)
        assert worker.execute(job.public_id) == "succeeded"
    event = UsageEvent.dangerously_unscoped.get(tenant=world_a.tenant)
    assert (event.meter, event.source, event.route, event.project, event.idempotency_key) == (
        "training.cpu_seconds",
        "jobs",
        "job.test.steps",
        world_a.project,
        f"{job.public_id}:1",
    )
    assert event.quantity > 0
    record_job_seconds(
        job, 1, 9.5
    )  # the same attempt reported again (a redelivered finish): counted once
    assert UsageEvent.dangerously_unscoped.filter(tenant=world_a.tenant).count() == 1


def test_the_daily_storage_snapshot_bills_gb_days_once_a_day(world_a):
    from datetime import date

    from verticals.billing.sources import snapshot_storage
    from verticals.registry.models import DatasetVersion

    version = world_a.dataset_version
    DatasetVersion.dangerously_unscoped.filter(pk=version.pk).update(source_bytes=2_500_000_000)
    assert snapshot_storage(date(2026, 10, 4)) == 1
    snapshot_storage(date(2026, 10, 4))  # the beat ran twice that day
    snapshot_storage(date(2026, 10, 5))
    events = list(
        UsageEvent.dangerously_unscoped.filter(meter="storage.gb_days").order_by("occurred_at")
    )
    assert [e.quantity for e in events] == [Decimal("2.5"), Decimal("2.5")]
    assert [e.occurred_at.date() for e in events] == [date(2026, 10, 4), date(2026, 10, 5)]


def test_a_job_on_a_plan_without_its_task_is_refused_and_the_plan_sets_the_fair_share(world_a):
    from verticals.jobs import engine
    from verticals.tenancy.scoping import tenant_context

    services.subscribe(
        world_a.tenant, plan("two-jobs", concurrent_jobs=2, enabled_tasks=["image-classification"])
    )
    assert engine.running_limit(world_a.tenant) == 2
    with tenant_context(world_a.tenant), pytest.raises(quotas.Refused) as refused:
        engine.job_create(
            project=world_a.project,
            kind="train",
            task="sentiment",
            params={"dataset": world_a.dataset_version.public_id},
        )
    assert refused.value.status == 403


def test_model_versions_are_limited_by_the_plan(world_a):
    services.subscribe(world_a.tenant, plan("one-model", max_model_versions=1))
    quotas.check_model_versions(world_a.tenant, 0)
    with pytest.raises(quotas.Refused) as refused:
        quotas.check_model_versions(world_a.tenant, 1)
    assert refused.value.status == 402 and "at most 1 model versions" in refused.value.message


def test_a_released_reservation_gives_the_units_back(world_a):
    services.subscribe(
        world_a.tenant, plan("capped2", cap="hard", prices={"vision.images": ("2", "0")})
    )
    admission = quotas.admit(
        world_a.tenant, task="image-classification", units={"vision.images": Decimal(2)}
    )
    admission.release()  # the prediction failed
    again = quotas.admit(
        world_a.tenant, task="image-classification", units={"vision.images": Decimal(2)}
    )
    record(world_a.tenant, [Usage("vision.images", Decimal(2))], source="serving", admission=again)
    with pytest.raises(quotas.Refused):
        quotas.admit(
            world_a.tenant, task="image-classification", units={"vision.images": Decimal(1)}
        )


def test_a_hard_capped_plan_runs_jobs_while_some_job_time_is_left(world_a):
    from verticals.billing.sources import record_job_seconds
    from verticals.jobs.models import Job

    services.subscribe(
        world_a.tenant,
        plan(
            "jobs-capped",
            cap="hard",
            prices={"training.cpu_seconds": ("10", "0"), "training.gpu_seconds": ("0", "0")},
        ),
    )
    quotas.admit_job(world_a.tenant, task="sentiment")  # no GPU time included, but CPU time is left
    job = Job.dangerously_unscoped.get(pk=world_a.job.pk)
    record_job_seconds(job, 1, 10.0)
    with pytest.raises(quotas.Refused) as refused:
        quotas.admit_job(world_a.tenant, task="sentiment")
    assert refused.value.status == 402 and "training.cpu_seconds" in refused.value.message


def test_a_contract_s_included_units_are_what_the_gauge_the_cap_and_the_invoice_use(world_a):
    from verticals.billing import analytics

    since = services.subscribe(
        world_a.tenant,
        plan("contracted", cap="hard", prices={"inference.requests": ("10", "0.01")}),
    ).starts_at
    services.contract_create(
        world_a.tenant,
        name="Custom",
        starts_at=since,
        prices={"inference.requests": {"unit_price": "0.002", "included": "3"}},
    )
    gauge = next(
        m
        for m in analytics.period_usage(world_a.tenant)["meters"]
        if m["meter"] == "inference.requests"
    )
    assert gauge["included"] == Decimal(3) and gauge["unit_price"] == Decimal("0.002")
    quotas.admit(world_a.tenant, task="sentiment", units={"inference.requests": Decimal(3)})
    with pytest.raises(quotas.Refused):
        quotas.admit(world_a.tenant, task="sentiment", units={"inference.requests": Decimal(1)})


def test_prices_too_large_or_not_numbers_are_refused_with_a_message(world_a):
    from django.core.exceptions import ValidationError

    from verticals.tenancy.models import Partner

    team = plan("priced", prices={"inference.requests": ("10", "0.01")})
    for bad, fragment in (
        ("1e30", "too large"),
        ("abc", "not a number"),
        ("NaN", "finite"),
        ("0.0000000001", "at most 9 decimals"),
    ):
        with pytest.raises(ValidationError, match=fragment):
            services.set_wholesale(
                Partner.objects.get(pk=world_a.partner.pk), team, "inference.requests", bad
            )


def test_the_admin_takes_included_units_as_decimals_never_negative():
    from django.core.exceptions import ValidationError

    field = PlanPrice._meta.get_field("included").formfield()
    assert field.clean("1.5") == Decimal("1.5")
    for bad in ("-1", "0.0000001", "10000000000000"):
        with pytest.raises(ValidationError):
            field.clean(bad)
    with pytest.raises(ValidationError, match="at most 6 decimals"):
        PlanPrice._meta.get_field("included").to_python("0.0000001")


def test_an_issued_invoice_and_its_lines_never_change(world_a):
    from django.core.exceptions import ValidationError

    services.subscribe(world_a.tenant, plan("fixed", fee="5"), now=T0)
    invoicing.close_period(datetime(2026, 11, 1, 1, tzinfo=UTC))
    invoice = Invoice.objects.get(kind=Invoice.Kind.RETAIL)
    invoice.total_minor = 1
    with pytest.raises(ValidationError, match="never changed"):
        invoice.save()
    with pytest.raises(ValidationError, match="never deleted"):
        invoice.lines.first().delete()
    assert Invoice.objects.get(pk=invoice.pk).total_minor == 500
