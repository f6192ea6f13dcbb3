"""Staff insights: revenue, partner margin and usage by partner, by task (with revenue by task) and
by month, so the operator sees which channels and verticals grow. Staff only; others get 404."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import render

from verticals.billing import analytics
from verticals.portal.billing import chart, money_fmt, moneys_text, usage_text
from verticals.portal.partner import growth_context, months_wanted


def _main_currency(rows: list[dict], key: str) -> str | None:
    """The currency with the most money under `key` across rows (bars compare amounts of one currency)."""
    totals: dict[str, int] = {}
    for row in rows:
        for currency, minor in row[key].items():
            totals[currency] = totals.get(currency, 0) + minor
    return max(sorted(totals), key=lambda c: totals[c]) if totals else None


def _shares(rows: list[dict], key: str, currency: str | None) -> list[int]:
    """Each row's share (0–100) of the largest amount in `currency`, for the bars in the tables."""
    if currency is None:
        return [0 for _ in rows]
    values = [max(0, row[key].get(currency, 0)) for row in rows]
    peak = max(values, default=0)
    return [values[i] * 100 // peak if peak else 0 for i in range(len(rows))]


@login_required
def overview(request):
    if not request.user.is_staff:
        raise Http404("No such page.")
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    months = months_wanted(request)
    data = analytics.insights(months=months)
    names = analytics.meter_names()

    partner_currency = _main_currency(data["by_partner"], "revenue")
    partners = [
        {
            "partner": row["partner"],
            "tenants": row["tenants"],
            "operator": row["partner"].parent_id is None,
            "revenue": moneys_text(row["revenue"], "0"),
            "partner_revenue": moneys_text(row["partner_revenue"], "0"),
            "margin": "—"
            if row["partner"].parent_id is None
            else moneys_text(row["partner_margin"], "0"),
            "usage": usage_text(row["usage"], names),
            "share": share,
        }
        for row, share in zip(
            data["by_partner"],
            _shares(data["by_partner"], "revenue", partner_currency),
            strict=True,
        )
    ]

    task_currency = _main_currency(data["by_task"], "revenue")
    tasks = [
        {
            "task": row["task"],
            "events": row["events"],
            "usage": usage_text(row["usage"], names),
            "revenue": moneys_text(row["revenue"], "0"),
            "share": share,
        }
        for row, share in zip(
            data["by_task"], _shares(data["by_task"], "revenue", task_currency), strict=True
        )
    ]

    charts = []
    if partner_currency:
        ranked = sorted(data["by_partner"], key=lambda r: -r["revenue"].get(partner_currency, 0))[
            :12
        ]
        charts.append(
            chart(
                chart_id="by-partner",
                title=f"Revenue by partner ({partner_currency})",
                labels=[r["partner"].name[:14] for r in ranked],
                tooltips=[r["partner"].name for r in ranked],
                series=[
                    {
                        "name": "operator revenue",
                        "values": [r["revenue"].get(partner_currency, 0) for r in ranked],
                    },
                    {
                        "name": "partner margin",
                        "values": [r["partner_margin"].get(partner_currency, 0) for r in ranked],
                    },
                ],
                fmt=money_fmt(partner_currency),
            )
        )
    if task_currency:
        ranked = sorted(data["by_task"], key=lambda r: -r["revenue"].get(task_currency, 0))[:12]
        charts.append(
            chart(
                chart_id="by-task",
                title=f"Revenue by task ({task_currency})",
                labels=[r["task"][:14] for r in ranked],
                tooltips=[r["task"] for r in ranked],
                series=[
                    {
                        "name": "revenue",
                        "values": [r["revenue"].get(task_currency, 0) for r in ranked],
                    }
                ],
                fmt=money_fmt(task_currency),
            )
        )
    context = {
        "months": months,
        "since": data["since"],
        "partners": partners,
        "tasks": tasks,
        "overview_charts": charts,
        "partner_currency": partner_currency,
        "task_currency": task_currency,
        **growth_context(data["by_month"], names),
    }
    return render(request, "portal/insights.html", context)
