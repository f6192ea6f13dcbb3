"""Reading the ledger and the invoices: usage summaries, gauges, partner reports, growth, insights.

Everything is summed by the database (GROUP BY); Python only arranges the rows. Money comes back
as {currency: minor units}, since a partner's tenants may pay in several currencies.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from verticals.billing.catalog import _add_months, period_of, standing
from verticals.billing.models import Invoice, InvoiceLine, Meter, Subscription, UsageEvent
from verticals.billing.money import to_minor
from verticals.billing.pricing import PriceList, contract_at
from verticals.tenancy.models import Partner, Tenant
from verticals.tenancy.scoping import platform_scope

GROUPS = {"meter": "meter", "day": "day", "project": "project__public_id", "task": "task"}


def _events(tenant_ids=None):
    # Callers pass the tenants they may see (one tenant, a partner's tenants, or all for staff).
    events = UsageEvent.dangerously_unscoped.all()
    return events if tenant_ids is None else events.filter(tenant_id__in=list(tenant_ids))


def usage_summary(
    tenant,
    *,
    start: datetime,
    end: datetime,
    group_by=("meter",),
    project=None,
    meter: str | None = None,
) -> list[dict]:
    """Units used in [start, end) grouped by any of meter, day, project, task:
    [{"meter", "day", "project", "task" (those grouped by), "quantity": Decimal, "events": int}]."""
    unknown = set(group_by) - set(GROUPS)
    if unknown:
        raise ValueError(f"Group by {', '.join(sorted(unknown))}? Use any of {', '.join(GROUPS)}.")
    events = _events([tenant.pk]).filter(occurred_at__gte=start, occurred_at__lt=end)
    if project is not None:
        events = events.filter(project=project)
    if meter:
        events = events.filter(meter=meter)
    if "day" in group_by:
        events = events.annotate(day=TruncDate("occurred_at", tzinfo=UTC))
    fields = [GROUPS[name] for name in group_by]
    rows = (
        events.values(*fields)
        .annotate(quantity=Sum("quantity"), events=Count("id"))
        .order_by(*fields)
    )
    return [
        {
            **{name: row[GROUPS[name]] for name in group_by},
            "quantity": row["quantity"],
            "events": row["events"],
        }
        for row in rows
    ]


def meter_names() -> dict[str, Meter]:
    return {meter.key: meter for meter in Meter.objects.all()}


def period_usage(tenant, now: datetime | None = None) -> dict:
    """The current period against the plan: {"plan", "subscription", "period": (start, end), "since":
    the start of the stretch counted (the period's, or a later plan change or contract), "meters":
    [{"meter", "name", "unit", "used" (since then), "included" (since then, prorated as the invoice
    does; None: not limited), "share" (0..1+ or None), "overage" (units beyond included), "unit_price"}]}."""
    now = now or timezone.now()
    current = standing(tenant)
    start, end = current.period if current else period_of(now, 1)
    since = current.segment.start if current else start
    used = {row["meter"]: row["quantity"] for row in usage_summary(tenant, start=since, end=end)}
    names = meter_names()
    keys = sorted(set(used) | set(current.meters() if current else ()))
    prices = PriceList(tenant, current.plan, current.segment.contract) if current else None
    meters = []
    for key in keys:
        quantity = used.get(key, Decimal(0))
        included = current.included(key) if current else None
        meter = names.get(key)
        meters.append(
            {
                "meter": key,
                "name": meter.name if meter else key,
                "unit": meter.unit if meter else "",
                "used": quantity,
                "included": included,
                "share": (quantity / included if included else None)
                if included is not None
                else None,
                "overage": max(Decimal(0), quantity - included)
                if included is not None
                else Decimal(0),
                "unit_price": prices.meter(key).retail if prices else None,
            }
        )
    return {
        "plan": current.plan if current else None,
        "subscription": current.subscription if current else None,
        "period": (start, end),
        "since": since,
        "meters": meters,
    }


def daily_usage(tenant, *, days: int = 30, now: datetime | None = None) -> dict:
    """{"days": [date, …], "series": [{"meter", "name", "unit", "values": [Decimal per day]}]} for the last `days` days."""
    now = now or timezone.now()
    first = (now - timedelta(days=days - 1)).date()
    start = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
    rows = usage_summary(
        tenant, start=start, end=now + timedelta(seconds=1), group_by=("meter", "day")
    )
    day_list = [first + timedelta(days=i) for i in range(days)]
    index = {day: i for i, day in enumerate(day_list)}
    names = meter_names()
    series: dict[str, list[Decimal]] = {}
    for row in rows:
        values = series.setdefault(row["meter"], [Decimal(0)] * days)
        if row["day"] in index:
            values[index[row["day"]]] = row["quantity"]
    return {
        "days": day_list,
        "series": [
            {
                "meter": key,
                "name": names[key].name if key in names else key,
                "unit": names[key].unit if key in names else "",
                "values": values,
            }
            for key, values in sorted(series.items())
        ],
    }


# --- money from invoices --------------------------------------------------------------------


def _add(target: dict, currency: str, minor: int | None) -> None:
    if minor:
        target[currency] = target.get(currency, 0) + minor


def _retail_money(invoices) -> dict[int, dict]:
    """Per tenant: {"revenue": {cur: minor}, "wholesale": {cur: minor}, "margin": {cur: minor}} of
    retail invoices (and their credit notes) — the partner's side."""
    found: dict[int, dict] = defaultdict(lambda: {"revenue": {}, "wholesale": {}, "margin": {}})
    totals = (
        invoices.filter(
            kind__in=[Invoice.Kind.RETAIL, Invoice.Kind.CREDIT_NOTE], tenant__isnull=False
        )
        .values("tenant_id", "currency")
        .annotate(total=Sum("total_minor"))
        .order_by()
    )
    for row in totals:
        _add(found[row["tenant_id"]]["revenue"], row["currency"], row["total"])
    costs = (
        InvoiceLine.objects.filter(
            invoice__in=invoices.filter(kind=Invoice.Kind.RETAIL),
            wholesale_amount_minor__isnull=False,
        )
        .values("invoice__tenant_id", "invoice__currency")
        .annotate(total=Sum("wholesale_amount_minor"))
        .order_by()
    )
    for row in costs:
        _add(found[row["invoice__tenant_id"]]["wholesale"], row["invoice__currency"], row["total"])
    for money in found.values():
        for currency in set(money["revenue"]) | set(money["wholesale"]):
            money["margin"][currency] = money["revenue"].get(currency, 0) - money["wholesale"].get(
                currency, 0
            )
    return found


def _in_range(invoices, start: datetime, end: datetime):
    """Invoices whose period ended in (start, end]: the money of those months."""
    return invoices.filter(period_end__gt=start, period_end__lte=end)


def partner_tenants_report(partner_ids, *, start: datetime, end: datetime) -> list[dict]:
    """Per tenant of these partners: plan, status, usage per meter in [start, end), and the money of
    invoices whose period ended in (start, end]: revenue (retail less credit notes), wholesale, margin."""
    tenants = list(
        Tenant.objects.filter(partner_id__in=list(partner_ids))
        .select_related("partner")
        .order_by("name")
    )
    ids = [tenant.pk for tenant in tenants]
    usage: dict[int, dict[str, Decimal]] = defaultdict(dict)
    rows = (
        _events(ids)
        .filter(occurred_at__gte=start, occurred_at__lt=end)
        .values("tenant_id", "meter")
        .annotate(quantity=Sum("quantity"))
        .order_by()
    )
    for row in rows:
        usage[row["tenant_id"]][row["meter"]] = row["quantity"]
    money = _retail_money(_in_range(Invoice.objects.filter(tenant_id__in=ids), start, end))
    plans = {
        s.tenant_id: s.plan
        for s in Subscription.dangerously_unscoped.filter(  # these partners' tenants
            tenant_id__in=ids, ends_at__isnull=True
        ).select_related("plan")
    }
    empty = {"revenue": {}, "wholesale": {}, "margin": {}}
    return [
        {
            "tenant": tenant,
            "plan": plans.get(tenant.pk),
            "status": tenant.status,
            "usage": usage.get(tenant.pk, {}),
            **money.get(tenant.pk, empty),
        }
        for tenant in tenants
    ]


def _month_bounds(months: int, now: datetime) -> list[tuple[datetime, datetime]]:
    year, month = now.year, now.month
    bounds = []
    for back in range(months - 1, -1, -1):
        y, m = _add_months(year, month, -back)
        start = datetime(y, m, 1, tzinfo=UTC)
        bounds.append((start, datetime(*_add_months(y, m, 1), 1, tzinfo=UTC)))
    return bounds


def mrr_at(tenant_ids, at: datetime) -> dict[str, int]:
    """Monthly recurring revenue at `at`: the retail monthly fee of every subscription open then."""

    subscriptions = (
        Subscription.dangerously_unscoped.filter(starts_at__lte=at)  # the tenants given
        .filter(Q(ends_at__isnull=True) | Q(ends_at__gt=at))
        .select_related("plan", "tenant__partner")
        .prefetch_related("plan__prices")
    )
    if tenant_ids is not None:
        subscriptions = subscriptions.filter(tenant_id__in=list(tenant_ids))
    total: dict[str, int] = {}
    for subscription in subscriptions:
        if subscription.tenant.suspended_at is not None and subscription.tenant.suspended_at <= at:
            continue
        fee = (
            PriceList(subscription.tenant, subscription.plan, contract_at(subscription.tenant, at))
            .fee()
            .retail
        )
        _add(total, subscription.plan.currency, to_minor(fee, subscription.plan.currency))
    return total


def growth(partner_ids=None, *, months: int = 12, now: datetime | None = None) -> list[dict]:
    """Month by month (oldest first): {"month": date, "new", "active", "churned" (tenants),
    "mrr", "revenue", "wholesale", "margin" ({currency: minor}), "usage_by_task" ({task: {meter: Decimal}})}.

    new: tenants created that month; active: tenants that used something; churned: tenants
    suspended, or whose subscription ended without a new one, that month."""
    now = now or timezone.now()
    tenants = (
        Tenant.objects.all()
        if partner_ids is None
        else Tenant.objects.filter(partner_id__in=list(partner_ids))
    )
    ids = None if partner_ids is None else list(tenants.values_list("pk", flat=True))
    invoices = Invoice.objects.all() if ids is None else Invoice.objects.filter(tenant_id__in=ids)
    rows = []
    for start, end in _month_bounds(months, now):
        events = _events(ids).filter(occurred_at__gte=start, occurred_at__lt=end)
        by_task: dict[str, dict[str, Decimal]] = defaultdict(dict)
        for row in (
            events.values("task", "meter")
            .annotate(quantity=Sum("quantity"))
            .order_by("task", "meter")
        ):
            by_task[row["task"] or "(none)"][row["meter"]] = row["quantity"]
        ended = Subscription.dangerously_unscoped.filter(
            ends_at__gte=start, ends_at__lt=end
        ).exclude(  # the tenants chosen above
            tenant_id__in=Subscription.dangerously_unscoped.filter(ends_at__isnull=True).values(
                "tenant_id"
            )
        )
        if ids is not None:
            ended = ended.filter(tenant_id__in=ids)
        churned = set(
            tenants.filter(suspended_at__gte=start, suspended_at__lt=end).values_list(
                "pk", flat=True
            )
        )
        churned |= set(ended.values_list("tenant_id", flat=True))
        money = {"revenue": {}, "wholesale": {}, "margin": {}}
        for per_tenant in _retail_money(_in_range(invoices, start, end)).values():
            for key in money:
                for currency, minor in per_tenant[key].items():
                    _add(money[key], currency, minor)
        rows.append(
            {
                "month": start.date(),
                "new": tenants.filter(created_at__gte=start, created_at__lt=end).count(),
                "active": events.values("tenant_id").distinct().count(),
                "churned": len(churned),
                "mrr": mrr_at(ids, min(end, now) - timedelta(microseconds=1)),
                **money,
                "usage_by_task": dict(by_task),
            }
        )
    return rows


def revenue_by_task(invoices) -> dict[str, dict[str, int]]:
    """Usage revenue of retail invoices split by task (each usage line by its units per task);
    plan fees under "(plan fees)". {task: {currency: minor}}."""
    found: dict[str, dict[str, int]] = defaultdict(dict)
    lines = InvoiceLine.objects.filter(
        invoice__in=invoices.filter(kind=Invoice.Kind.RETAIL)
    ).select_related("invoice")
    for line in lines.only("kind", "amount_minor", "quantity", "by_task", "invoice__currency"):
        currency = line.invoice.currency
        if line.kind == InvoiceLine.Kind.FEE or not line.by_task or not line.quantity:
            _add(
                found["(plan fees)" if line.kind == InvoiceLine.Kind.FEE else "(other)"],
                currency,
                line.amount_minor,
            )
            continue
        shares = sorted(line.by_task.items())
        given = 0
        for index, (task, units) in enumerate(shares):
            part = (
                line.amount_minor - given
                if index == len(shares) - 1
                else int(line.amount_minor * Decimal(units) / line.quantity)
            )
            given += part
            _add(found[task or "(none)"], currency, part)
    return dict(found)


@platform_scope("staff insights sum every tenant's usage and invoices")
def insights(*, months: int = 12, now: datetime | None = None) -> dict:
    """The operator's view across partners: {"by_partner": [...], "by_task": [...], "by_month": growth()}.

    by_partner: {"partner", "tenants", "revenue" (what the operator billed: wholesale invoices to a channel
    partner, retail invoices to its direct tenants), "partner_revenue" (what the partner billed its tenants),
    "partner_margin", "usage" ({meter: Decimal})} over the last `months` months."""
    now = now or timezone.now()
    start = _month_bounds(months, now)[0][0]
    recent = _in_range(Invoice.objects.all(), start, now)
    by_partner = []
    usage_rows = (
        _events()
        .filter(occurred_at__gte=start)
        .values("tenant__partner_id", "meter")
        .annotate(quantity=Sum("quantity"))
        .order_by()
    )
    usage: dict[int, dict[str, Decimal]] = defaultdict(dict)
    for row in usage_rows:
        usage[row["tenant__partner_id"]][row["meter"]] = row["quantity"]
    for partner in Partner.objects.annotate(tenant_count=Count("tenants")).order_by("name"):
        operator: dict[str, int] = {}
        partner_revenue: dict[str, int] = {}
        margin: dict[str, int] = {}
        own = recent.filter(tenant__partner=partner)
        for per_tenant in _retail_money(own).values():
            for currency, minor in per_tenant["revenue"].items():
                _add(partner_revenue, currency, minor)
            for currency, minor in per_tenant["margin"].items():
                margin[currency] = (
                    margin.get(currency, 0) + minor
                )  # a margin of zero is worth showing
        if partner.parent_id is None:
            operator = dict(partner_revenue)
            margin = {}
        else:
            for row in (
                recent.filter(partner=partner)
                .values("currency")
                .annotate(total=Sum("total_minor"))
                .order_by()
            ):
                _add(operator, row["currency"], row["total"])
        by_partner.append(
            {
                "partner": partner,
                "tenants": partner.tenant_count,
                "revenue": operator,
                "partner_revenue": partner_revenue,
                "partner_margin": margin,
                "usage": usage.get(partner.pk, {}),
            }
        )
    task_usage: dict[str, dict[str, Decimal]] = defaultdict(dict)
    calls: dict[str, int] = {}
    for row in (
        _events()
        .filter(occurred_at__gte=start)
        .values("task", "meter")
        .annotate(quantity=Sum("quantity"), events=Count("id"))
        .order_by()
    ):
        task_usage[row["task"] or "(none)"][row["meter"]] = row["quantity"]
        calls[row["task"] or "(none)"] = calls.get(row["task"] or "(none)", 0) + row["events"]
    revenue = revenue_by_task(recent)
    tasks = sorted(set(task_usage) | set(revenue))
    by_task = [
        {
            "task": task,
            "events": calls.get(task, 0),
            "usage": task_usage.get(task, {}),
            "revenue": revenue.get(task, {}),
        }
        for task in tasks
    ]
    return {
        "since": start,
        "by_partner": by_partner,
        "by_task": by_task,
        "by_month": growth(None, months=months, now=now),
    }


def month_label(day: date) -> str:
    return day.strftime("%b %Y")


__all__ = [
    "usage_summary",
    "period_usage",
    "daily_usage",
    "partner_tenants_report",
    "growth",
    "mrr_at",
    "revenue_by_task",
    "insights",
    "month_label",
    "meter_names",
]
