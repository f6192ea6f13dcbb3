"""Staff insights: revenue, margin and usage across partners, tasks and months."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.response import Response

from verticals.api.base import (
    CallerAPIView,
)
from verticals.api.billing.formatting import (
    MoneySerializer,
    money_list,
    quantities,
    quantity_map,
    when,
)
from verticals.api.billing.queries import MAX_MONTHS, months_param
from verticals.api.permissions import require_staff
from verticals.billing import analytics

# --- staff insights -------------------------------------------------------------------------------


def growth_rows(rows: list[dict]) -> list[dict]:
    return [
        {
            "month": row["month"].isoformat(),
            "label": analytics.month_label(row["month"]),
            "new": row["new"],
            "active": row["active"],
            "churned": row["churned"],
            "mrr": money_list(row["mrr"]),
            "revenue": money_list(row["revenue"]),
            "wholesale": money_list(row["wholesale"]),
            "margin": money_list(row["margin"]),
            "usage_by_task": {
                task: quantities(meters) for task, meters in sorted(row["usage_by_task"].items())
            },
        }
        for row in rows
    ]


class GrowthRow(serializers.Serializer):
    month = serializers.DateField(help_text="The month's first day.")
    label = serializers.CharField()
    new = serializers.IntegerField(help_text="Tenants created that month.")
    active = serializers.IntegerField(help_text="Tenants that used something.")
    churned = serializers.IntegerField(
        help_text="Tenants suspended, or whose subscription ended without a new one."
    )
    mrr = MoneySerializer(many=True)
    revenue = MoneySerializer(many=True)
    wholesale = MoneySerializer(many=True)
    margin = MoneySerializer(many=True)
    usage_by_task = serializers.DictField(
        child=serializers.DictField(child=serializers.CharField())
    )


MONTHS_PARAMETER = OpenApiParameter(
    "months", OpenApiTypes.INT, description=f"How many months back (1 to {MAX_MONTHS}; default 12)."
)
PartnerRef = inline_serializer(
    "PartnerRefShort", {"id": serializers.CharField(), "name": serializers.CharField()}
)

InsightsOut = inline_serializer(
    "Insights",
    {
        "since": serializers.DateTimeField(),
        "by_partner": inline_serializer(
            "InsightsPartner",
            {
                "partner": PartnerRef,
                "tenants": serializers.IntegerField(),
                "revenue": MoneySerializer(many=True),
                "partner_revenue": MoneySerializer(many=True),
                "partner_margin": MoneySerializer(many=True),
                "usage": quantity_map(),
            },
            many=True,
        ),
        "by_task": inline_serializer(
            "InsightsTask",
            {
                "task": serializers.CharField(),
                "events": serializers.IntegerField(),
                "usage": quantity_map(),
                "revenue": MoneySerializer(many=True),
            },
            many=True,
        ),
        "by_month": GrowthRow(many=True),
    },
)


class InsightsView(CallerAPIView):
    """Staff: revenue, margin and usage across partners, tasks and months."""

    @extend_schema(
        parameters=[MONTHS_PARAMETER],
        responses={200: InsightsOut, 403: OpenApiResponse(description="Not staff.")},
    )
    def get(self, request):
        require_staff(self.caller)
        found = analytics.insights(months=months_param(request.query_params))
        return Response(
            {
                "since": when(found["since"]),
                "by_partner": [
                    {
                        "partner": {"id": row["partner"].public_id, "name": row["partner"].name},
                        "tenants": row["tenants"],
                        "revenue": money_list(row["revenue"]),
                        "partner_revenue": money_list(row["partner_revenue"]),
                        "partner_margin": money_list(row["partner_margin"]),
                        "usage": quantities(row["usage"]),
                    }
                    for row in found["by_partner"]
                ],
                "by_task": [
                    {
                        "task": row["task"],
                        "events": row["events"],
                        "usage": quantities(row["usage"]),
                        "revenue": money_list(row["revenue"]),
                    }
                    for row in found["by_task"]
                ],
                "by_month": growth_rows(found["by_month"]),
            }
        )
