"""Portal billing pages of a tenant: its plan and period, a usage gauge per meter, the daily usage
chart, invoices with their PDF/CSV downloads, and the plan change.

Also the display helpers the partner console and the staff insights share: money and units as
text (integer minor units through `format_money`, Decimals as they are, never floats) and the
geometry of the inline SVG charts (drawn by `_billing_chart.html`, no script needed).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone

from verticals.billing import analytics, documents, services
from verticals.billing.models import Contract, Invoice, Plan
from verticals.billing.money import decimals_of, format_money, to_minor
from verticals.billing.pricing import PriceList, contract_at
from verticals.portal.views import _apply_errors, _refuse, tenant_page

PAGE_SIZE = 50
RECENT_INVOICES = 5
CHART_DAYS = 30


# --- words for numbers ----------------------------------------------------------------------


def units_text(value) -> str:
    """A quantity as people read it: 1,010 · 1.5 · 0.000001 (exact, never a float)."""
    value = Decimal(value)
    if value == value.to_integral_value():
        return f"{int(value):,}"
    return f"{value.normalize():,f}"


def unit_words(value, unit: str) -> str:
    """A quantity with its unit, plural unless it is one: 1 request, 150 requests, 2.5 GB-days."""
    if not unit:
        return units_text(value)
    return f"{units_text(value)} {unit if Decimal(value) == 1 else unit + 's'}"


def price_text(price: Decimal | None, currency: str) -> str:
    """A unit price, exact to its last decimal but with at least the currency's: 0.01 USD, 0.000002 USD, 10.00 USD."""
    if price is None:
        return "—"
    places = decimals_of(currency)
    price = Decimal(price).normalize()
    if -price.as_tuple().exponent < places:
        price = price.quantize(Decimal(1).scaleb(-places))
    return f"{price:,f} {currency}"


def amount_text(amount: Decimal, currency: str) -> str:
    """A computed amount (units × unit price), rounded once to the minor unit like an invoice line."""
    return format_money(to_minor(amount, currency), currency)


def moneys_text(amounts: dict[str, int] | None, empty: str = "—") -> str:
    """{currency: minor} as '1,234.50 USD · 10 EUR'."""
    if not amounts:
        return empty
    return " · ".join(format_money(minor, currency) for currency, minor in sorted(amounts.items()))


def usage_text(usage: dict, names: dict) -> str:
    """{meter: units} as 'Predictions 1,200 · Generated-text tokens 35'."""
    if not usage:
        return "—"
    parts = []
    for key, units in sorted(usage.items()):
        meter = names.get(key)
        parts.append(f"{meter.name if meter else key} {units_text(units)}")
    return " · ".join(parts)


def period_text(start: datetime, end: datetime) -> str:
    """[start, end) as the days it covers: 2026-11-01 – 2026-11-30."""
    return f"{start:%Y-%m-%d} – {(end - timedelta(seconds=1)):%Y-%m-%d}"


# --- inline SVG charts ----------------------------------------------------------------------

_PX = Decimal("0.1")
_NICE = tuple(Decimal(step) for step in ("1", "2", "2.5", "4", "5", "6", "8", "10"))


def nice_ceiling(value: Decimal, *, whole: bool = False) -> Decimal:
    """The axis top for a peak: the next round step (1, 2, 2.5, 4, 5, 6, 8) times a power of ten, even for counts."""
    if value <= 0:
        return Decimal(0)
    if whole and value <= 2:
        return Decimal(2)
    power = Decimal(10) ** (value.adjusted())
    for step in _NICE:
        if step * power >= value and (not whole or (step * power) % 2 == 0):
            return step * power
    return 10 * power


def _px(value: Decimal) -> str:
    return str(Decimal(value).quantize(_PX, rounding=ROUND_HALF_UP))


def chart(
    *,
    chart_id: str,
    title: str,
    labels: list[str],
    series: list[dict],
    kind: str = "bar",
    fmt=units_text,
    width: int = 640,
    height: int = 170,
    tooltips: list[str] | None = None,
    whole: bool = False,
) -> dict:
    """The geometry of one chart: `series` is [{"name", "values": [number per label]}], drawn as
    grouped bars or as lines on an axis from 0 to a round top; `fmt` writes a value (axis and
    tooltips); `tooltips` names each label in full where the axis shortens it; `whole`: the values
    are counts (the axis' middle stays a whole number)."""
    left, right, top, bottom = 70, 8, 10, 22
    plot_w, plot_h = Decimal(width - left - right), Decimal(height - top - bottom)
    count = max(1, len(labels))
    values = [Decimal(v or 0) for s in series for v in s["values"]]
    peak = nice_ceiling(max([v for v in values if v > 0], default=Decimal(0)), whole=whole)
    slot = plot_w / count
    names = tooltips or labels
    bars, lines = [], []

    def y_of(value: Decimal) -> Decimal:
        return Decimal(top) + plot_h - (plot_h * value / peak if peak else Decimal(0))

    if kind == "bar":
        inner = slot * Decimal("0.8")
        width_each = inner / max(1, len(series))
        for s_index, s in enumerate(series):
            for index, raw in enumerate(s["values"]):
                value = max(
                    Decimal(raw or 0), Decimal(0)
                )  # drawn from 0 up; the tooltip tells a negative value
                tall = plot_h * value / peak if peak else Decimal(0)
                if value > 0:
                    tall = max(tall, Decimal(1))  # a small non-zero value stays visible
                bars.append(
                    {
                        "x": _px(
                            left + slot * index + slot * Decimal("0.1") + width_each * s_index
                        ),
                        "y": _px(Decimal(top) + plot_h - tall),
                        "w": _px(max(width_each - Decimal("0.5"), Decimal("0.5"))),
                        "h": _px(tall),
                        "series": s_index,
                        "title": f"{names[index]}: {fmt(raw or 0)}"
                        + (f" {s['name']}" if len(series) > 1 else ""),
                    }
                )
    else:
        for s_index, s in enumerate(series):
            dots = []
            for index, raw in enumerate(s["values"]):
                value = max(Decimal(raw or 0), Decimal(0))
                dots.append(
                    {
                        "x": _px(left + slot * index + slot / 2),
                        "y": _px(y_of(value)),
                        "title": f"{names[index]}: {fmt(raw or 0)}"
                        + (f" {s['name']}" if len(series) > 1 else ""),
                    }
                )
            lines.append(
                {
                    "series": s_index,
                    "points": " ".join(f"{d['x']},{d['y']}" for d in dots),
                    "dots": dots,
                }
            )
    step = max(1, math.ceil(count / 8))
    x_labels = [
        {"x": _px(left + slot * index + slot / 2), "text": label}
        for index, label in enumerate(labels)
        if index % step == 0
    ]
    return {
        "id": chart_id,
        "title": title,
        "kind": kind,
        "width": width,
        "height": height,
        "bars": bars,
        "lines": lines,
        "x_labels": x_labels,
        "label_y": height - 6,
        "left": left,
        "right": width - right,
        "top": top,
        "middle": _px(Decimal(top) + plot_h / 2),
        "base": _px(Decimal(top) + plot_h),
        "peak": fmt(peak) if peak else "",
        "half": fmt(peak / 2) if peak else "",
        "empty": not peak,
        "legend": [{"name": s["name"], "series": index} for index, s in enumerate(series)]
        if len(series) > 1
        else [],
        "points": sum(len(s["values"]) for s in series),
    }


def money_fmt(currency: str):
    """A chart value writer for {currency: minor} series: minor units in, '12.30 USD' out."""
    return lambda minor: format_money(
        int(Decimal(minor).to_integral_value(rounding=ROUND_HALF_UP)), currency
    )


def daily_charts(tenant, *, days: int = CHART_DAYS) -> list[dict]:
    """One small bar chart per meter used in the last `days` days."""
    daily = analytics.daily_usage(tenant, days=days)
    labels = [f"{day:%d %b}" for day in daily["days"]]
    full = [f"{day:%Y-%m-%d}" for day in daily["days"]]
    charts = []
    for s in daily["series"]:
        unit = s["unit"]

        def fmt(value, unit=unit):
            return unit_words(value, unit)

        made = chart(
            chart_id=f"daily-{s['meter']}",
            title=f"{s['name']} per day",
            labels=labels,
            tooltips=full,
            series=[{"name": s["name"], "values": s["values"]}],
            fmt=fmt,
            height=130,
        )
        made.update(
            {"meter": s["meter"], "name": s["name"], "total": fmt(sum(s["values"], Decimal(0)))}
        )
        charts.append(made)
    return charts


# --- what a tenant is on and would pay ------------------------------------------------------


def _limits(plan: Plan) -> list[str]:
    return [
        f"{plan.requests_per_minute:,} metered calls a minute"
        if plan.requests_per_minute
        else "No rate limit",
        f"{unit_words(plan.concurrent_jobs, 'job')} at once"
        if plan.concurrent_jobs
        else "Jobs at once: the platform default",
        f"{unit_words(plan.max_model_versions, 'model version')} kept"
        if plan.max_model_versions
        else "No limit on model versions",
        f"Tasks: {', '.join(plan.enabled_tasks)}" if plan.enabled_tasks else "Every installed task",
    ]


def plan_offer(tenant, plan: Plan, contract: Contract | None, names: dict) -> dict:
    """A plan at the prices this tenant pays (its contract, its partner's retail, else list); never wholesale."""
    prices = PriceList(tenant, plan, contract)
    currency = plan.currency
    meters = []
    for listed in plan.prices.all():
        price = prices.meter(listed.meter_id)
        meter = names.get(listed.meter_id)
        unit = meter.unit if meter else ""
        meters.append(
            {
                "meter": listed.meter_id,
                "name": meter.name if meter else listed.meter_id,
                "unit": unit,
                "included": unit_words(price.included, unit),
                # A hard cap stops work when the included units run out: no overage is sold.
                "then": "work stops"
                if plan.cap == Plan.Cap.HARD
                else f"{price_text(price.retail, currency)} per {unit or 'unit'}",
            }
        )
    return {
        "plan": plan,
        "fee": amount_text(prices.fee().retail, currency),
        "hard": plan.cap == Plan.Cap.HARD,
        "cap": "Hard cap" if plan.cap == Plan.Cap.HARD else "Soft cap",
        "cap_help": plan.get_cap_display(),
        "limits": _limits(plan),
        "meters": meters,
    }


def plan_offers(tenant, names: dict, *, current: Plan | None) -> list[dict]:
    contract = contract_at(tenant)
    offers = []
    for plan in Plan.objects.filter(is_active=True).prefetch_related("prices"):
        offer = plan_offer(tenant, plan, contract, names)
        offer["current"] = current is not None and plan.pk == current.pk
        offers.append(offer)
    return offers


def gauges(usage: dict) -> list[dict]:
    """A gauge per meter of `analytics.period_usage`: used against included, the percentage, red
    when a hard cap is reached, the overage and what it costs so far on a soft cap."""
    plan = usage["plan"]
    hard = plan is not None and plan.cap == Plan.Cap.HARD
    found = []
    for m in usage["meters"]:
        used, included = m["used"], m["included"]
        unit = m["unit"]
        gauge = {
            "meter": m["meter"],
            "name": m["name"],
            "unit": unit,
            "used": unit_words(used, unit),
            "used_number": units_text(used),
            "unlimited": included is None,
            "included": None,
            "percent": None,
            "width": 0,
            "reached": False,
            "over": False,
        }
        if included is not None:
            if included > 0:
                percent = (used * 100 / included).to_integral_value(rounding=ROUND_DOWN)
            else:
                percent = Decimal(100) if used > 0 or hard else Decimal(0)
            gauge.update(
                {
                    "included": unit_words(included, unit),
                    "percent": int(percent),
                    "width": int(min(percent, Decimal(100))),
                    "reached": hard and used >= included,
                }
            )
            if not hard and m["overage"] > 0 and plan is not None:
                price = m["unit_price"] or Decimal(0)
                gauge.update(
                    {
                        "over": True,
                        "overage": unit_words(m["overage"], unit),
                        "unit_price": price_text(price, plan.currency),
                        "overage_amount": amount_text(m["overage"] * price, plan.currency),
                    }
                )
        found.append(gauge)
    return found


def plan_summary(tenant, usage: dict, names: dict, now: datetime | None = None) -> dict | None:
    """The current plan as the tenant pays it, with its subscription's status and trial end."""
    plan, subscription = usage["plan"], usage["subscription"]
    if plan is None:
        return None
    now = now or timezone.now()
    summary = plan_offer(tenant, plan, contract_at(tenant, now), names)
    trial_ends = subscription.trial_ends_at
    summary.update(
        {
            "subscription": subscription,
            "status": subscription.status_at(now),
            "trial_ends_at": trial_ends if trial_ends and trial_ends > now else None,
            "since": subscription.starts_at,
            "contract": contract_at(tenant, now),
        }
    )
    return summary


# --- invoices -------------------------------------------------------------------------------


def invoice_row(invoice: Invoice) -> dict:
    return {
        "invoice": invoice,
        "period": period_text(invoice.period_start, invoice.period_end),
        "total": invoice.total,
        "kind": invoice.get_kind_display(),
        "retail_total": None
        if invoice.retail_total_minor is None
        else format_money(invoice.retail_total_minor, invoice.currency),
        "margin": None
        if invoice.margin_minor is None
        else format_money(invoice.margin_minor, invoice.currency),
    }


def invoice_lines(invoice: Invoice) -> list[dict]:
    currency = invoice.currency
    rows = []
    for line in invoice.lines.select_related("tenant").order_by("position"):
        usage = line.kind == line.Kind.USAGE
        rows.append(
            {
                "line": line,
                "kind": line.get_kind_display(),
                "description": line.description,
                "tenant": line.tenant.name if line.tenant_id else "",
                "quantity": units_text(line.quantity)
                if usage
                else (
                    f"{units_text(line.quantity * 100)}% of the period"
                    if line.kind == line.Kind.FEE
                    else units_text(line.quantity)
                ),
                "included": units_text(line.included) if usage else "",
                "billable": units_text(line.billable) if usage else "",
                "unit_price": price_text(line.unit_price, currency),
                "amount": format_money(line.amount_minor, currency),
                "retail": None
                if line.retail_amount_minor is None
                else format_money(line.retail_amount_minor, currency),
                "margin": None
                if line.retail_amount_minor is None
                else format_money(line.retail_amount_minor - line.amount_minor, currency),
            }
        )
    return rows


def invoice_context(invoice: Invoice) -> dict:
    """What an invoice page shows: its brand as issued, the lines, what corrects it or what it corrects."""
    brand = invoice.brand or {}
    credits = [invoice_row(note) for note in invoice.credit_notes.order_by("issued_at", "pk")]
    return {
        "invoice": invoice,
        "row": invoice_row(invoice),
        "lines": invoice_lines(invoice),
        "credits": credits,
        "issued_brand": {
            "name": brand.get("name", ""),
            "colour": brand.get("colour") or "#1f6feb",
            "support_email": brand.get("support_email", ""),
        },
        "bill_to": (invoice.bill_to or {}).get("name", ""),
        "wholesale": invoice.kind == Invoice.Kind.WHOLESALE,
    }


def _tenant_invoices(tenant):
    # Invoices are not tenant-owned rows (a wholesale one bills a partner): filter by the tenant explicitly.
    return Invoice.objects.filter(
        tenant=tenant, kind__in=[Invoice.Kind.RETAIL, Invoice.Kind.CREDIT_NOTE]
    )


# --- the plan change form -------------------------------------------------------------------


class PlanChangeForm(forms.Form):
    plan = forms.ModelChoiceField(
        queryset=Plan.objects.none(),
        to_field_name="public_id",
        empty_label=None,
        error_messages={
            "invalid_choice": "Choose one of the plans listed: that plan is not offered.",
            "required": "Choose a plan.",
        },
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["plan"].queryset = Plan.objects.filter(is_active=True)


def submit_plan_change(form: PlanChangeForm, *, tenant, actor, partner=None) -> bool:
    """The plan the form parsed, put through the one plan-change service (the API's too); its
    refusals land on the form."""
    if not form.is_valid():
        return False
    try:
        services.subscription_change(
            tenant=tenant, plan=form.cleaned_data["plan"], actor=actor, partner=partner
        )
    except ValidationError as error:
        _apply_errors(form, error)
        return False
    return True


# --- pages ----------------------------------------------------------------------------------


@tenant_page("usage.view")
def overview(request):
    caller = request.caller
    tenant = caller.tenant
    now = timezone.now()
    usage = analytics.period_usage(tenant, now)
    names = analytics.meter_names()
    context = {
        "summary": plan_summary(tenant, usage, names, now),
        "period": period_text(*usage["period"]),
        "period_end": usage["period"][1],
        "gauges": gauges(usage),
        "charts": daily_charts(tenant),
        "chart_days": CHART_DAYS,
        "can_see_plans": caller.can("plan.view"),
        "can_change_plan": caller.can("plan.change"),
        "can_see_invoices": caller.can("invoice.view"),
    }
    if context["can_see_invoices"]:
        context["invoices"] = [invoice_row(i) for i in _tenant_invoices(tenant)[:RECENT_INVOICES]]
    return render(request, "portal/billing.html", context)


@tenant_page("plan.view", methods=("GET", "POST"), writes="plan.change")
def plan_change(request):
    caller = request.caller
    tenant = caller.tenant
    form = PlanChangeForm(request.POST if request.method == "POST" else None)
    if request.method == "POST":
        denial = caller.denial("plan.change")
        if denial:
            return _refuse(request, denial)
        if submit_plan_change(form, tenant=tenant, actor=caller):
            messages.success(request, f"You are now on the plan {form.cleaned_data['plan'].name}.")
            return redirect("portal:billing")
    usage = analytics.period_usage(tenant)
    names = analytics.meter_names()
    context = {
        "form": form,
        "offers": plan_offers(tenant, names, current=usage["plan"]),
        "current": usage["plan"],
        "can_change_plan": caller.can("plan.change"),
    }
    return render(request, "portal/billing_plans.html", context, status=400 if form.errors else 200)


@tenant_page("invoice.view")
def invoice_list(request):
    page = Paginator(_tenant_invoices(request.caller.tenant), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "portal/billing_invoices.html",
        {"page": page, "rows": [invoice_row(i) for i in page]},
    )


@tenant_page("invoice.view")
def invoice_detail(request, invoice_id: str):
    invoice = get_object_or_404(
        _tenant_invoices(request.caller.tenant).select_related("credits"), public_id=invoice_id
    )
    return render(request, "portal/billing_invoice.html", invoice_context(invoice))


@tenant_page("invoice.view")
def invoice_download(request, invoice_id: str, fmt: str):
    invoice = get_object_or_404(
        _tenant_invoices(request.caller.tenant).select_related("credits"), public_id=invoice_id
    )
    return documents.invoice_response(invoice, fmt)
