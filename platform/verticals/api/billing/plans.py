"""Plans at the prices the calling tenant pays, and the tenant's subscription (show, change)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import exceptions, mixins, serializers
from rest_framework.response import Response

from verticals.api.base import (
    CallerAPIView,
    CatalogViewSet,
)
from verticals.api.billing.formatting import (
    MoneySerializer,
    UnitPriceSerializer,
    decimal_text,
    fee_money,
    price,
    when,
)
from verticals.api.serializers import StrictCharField
from verticals.billing import analytics, services
from verticals.billing.models import Plan
from verticals.billing.pricing import PriceList, contract_at


class PlanMeterSerializer(serializers.Serializer):
    meter = serializers.CharField()
    name = serializers.CharField()
    unit = serializers.CharField()
    included = serializers.CharField(help_text="Units included per billing period.")
    unit_price = UnitPriceSerializer(
        help_text="Price of each unit beyond the included ones (what you pay)."
    )


class PlanSerializer(serializers.Serializer):
    """A plan at the prices the calling tenant pays (its partner's retail prices, or its contract's)."""

    id = serializers.CharField(source="public_id", read_only=True)
    code = serializers.CharField(read_only=True)
    name = serializers.CharField(read_only=True)
    description = serializers.CharField(read_only=True)
    currency = serializers.CharField(read_only=True)
    monthly_fee = serializers.SerializerMethodField()
    cap = serializers.CharField(
        read_only=True,
        help_text="hard: work stops when included units run out; soft: billed as overage.",
    )
    requests_per_minute = serializers.IntegerField(read_only=True, allow_null=True)
    concurrent_jobs = serializers.IntegerField(read_only=True, allow_null=True)
    max_model_versions = serializers.IntegerField(read_only=True, allow_null=True)
    enabled_tasks = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="Tasks the plan includes; empty: every installed task.",
    )
    is_active = serializers.BooleanField(read_only=True, help_text="Offered for new subscriptions.")
    meters = serializers.SerializerMethodField()

    def _prices(self, plan) -> PriceList:
        cache = self.context.setdefault("_price_lists", {})
        if plan.pk not in cache:
            cache[plan.pk] = PriceList(self.context["tenant"], plan, self.context.get("contract"))
        return cache[plan.pk]

    @extend_schema_field(MoneySerializer)
    def get_monthly_fee(self, plan) -> dict:
        return fee_money(self._prices(plan).fee().retail, plan.currency)

    @extend_schema_field(PlanMeterSerializer(many=True))
    def get_meters(self, plan) -> list[dict]:
        if "_meters" not in self.context:
            self.context["_meters"] = analytics.meter_names()
        names = self.context["_meters"]
        prices = self._prices(plan)
        rows = []
        for listed in plan.prices.all():
            meter = names.get(listed.meter_id)
            own = prices.meter(listed.meter_id)
            rows.append(
                {
                    "meter": listed.meter_id,
                    "name": meter.name if meter else listed.meter_id,
                    "unit": meter.unit if meter else "",
                    "included": decimal_text(own.included),
                    "unit_price": price(own.retail, plan.currency),
                }
            )
        return rows


def plan_dict(plan: Plan, tenant) -> dict:
    return PlanSerializer(plan, context={"tenant": tenant, "contract": contract_at(tenant)}).data


def plan_by_code(code, field: str = "plan") -> Plan:
    if not isinstance(code, str) or not code:
        raise exceptions.ValidationError(
            {field: ["Give a plan's code as a string (see GET /api/v1/plans/)."]}
        )
    plan = Plan.objects.filter(code=code).first()
    if plan is None:
        offered = (
            ", ".join(Plan.objects.filter(is_active=True).values_list("code", flat=True)[:20])
            or "none"
        )
        raise exceptions.ValidationError(
            {field: [f"No plan '{code[:60]}'; plans offered: {offered}."]}
        )
    return plan


# --- plans and the subscription -----------------------------------------------------------------


class PlanViewSet(mixins.ListModelMixin, CatalogViewSet):
    """The plans offered, at the prices the calling tenant would pay (never wholesale prices)."""

    model = Plan
    serializer_class = PlanSerializer
    actions = {"list": "plan.view"}
    filter_backends = []

    def get_queryset(self):
        return Plan.objects.filter(is_active=True).prefetch_related("prices")

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if not getattr(self, "swagger_fake_view", False):
            context.update(tenant=self.caller.tenant, contract=contract_at(self.caller.tenant))
        return context


class PeriodUsageSerializer(serializers.Serializer):
    meter = serializers.CharField()
    name = serializers.CharField()
    unit = serializers.CharField()
    used = serializers.CharField()
    included = serializers.CharField(allow_null=True, help_text="null: not limited.")
    share = serializers.CharField(
        allow_null=True, help_text="used / included (1 = all used), 4 decimals."
    )
    overage = serializers.CharField(allow_null=True)
    unit_price = UnitPriceSerializer(allow_null=True)


SubscriptionOut = inline_serializer(
    "Subscription",
    {
        "id": serializers.CharField(allow_null=True),
        "plan": PlanSerializer(allow_null=True),
        "status": serializers.ChoiceField(choices=["trialing", "active", "none"]),
        "starts_at": serializers.DateTimeField(allow_null=True),
        "trial_ends_at": serializers.DateTimeField(allow_null=True),
        "anchor_day": serializers.IntegerField(allow_null=True),
        "period": inline_serializer(
            "Period", {"start": serializers.DateTimeField(), "end": serializers.DateTimeField()}
        ),
        "project": serializers.CharField(
            allow_null=True,
            help_text="Set when the usage is one project's (a key restricted to it).",
        ),
        "usage": PeriodUsageSerializer(many=True),
    },
)


def subscription_dict(tenant, *, restricted=None) -> dict:
    found = analytics.period_usage(tenant)
    subscription, plan = found["subscription"], found["plan"]
    meters = found["meters"]
    if restricted is not None:
        # A key restricted to one project sees that project's units only: its share of a tenant-wide
        # allowance would mislead, so share and overage are left out.
        start, end = found["period"]
        used = {
            row["meter"]: row["quantity"]
            for row in analytics.usage_summary(tenant, start=start, end=end, project=restricted)
        }
        meters = [
            {**row, "used": used.get(row["meter"], Decimal(0)), "share": None, "overage": None}
            for row in meters
        ]
    currency = plan.currency if plan else "USD"
    return {
        "id": subscription.public_id if subscription else None,
        "plan": plan_dict(plan, tenant) if plan else None,
        "status": subscription.status if subscription else "none",
        "starts_at": when(subscription.starts_at) if subscription else None,
        "trial_ends_at": when(subscription.trial_ends_at) if subscription else None,
        "anchor_day": subscription.anchor_day if subscription else None,
        "period": {"start": when(found["period"][0]), "end": when(found["period"][1])},
        "project": restricted.public_id if restricted is not None else None,
        "usage": [
            {
                "meter": row["meter"],
                "name": row["name"],
                "unit": row["unit"],
                "used": decimal_text(row["used"]),
                "included": decimal_text(row["included"]),
                "share": None
                if row["share"] is None
                else str(Decimal(row["share"]).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)),
                "overage": decimal_text(row["overage"]),
                "unit_price": price(row["unit_price"], currency),
            }
            for row in meters
        ],
    }


class PlanChangeSerializer(serializers.Serializer):
    plan = StrictCharField(
        max_length=40, help_text="The code of the plan to move to (GET /api/v1/plans/)."
    )


class SubscriptionView(CallerAPIView):
    """The tenant's plan, period and usage against it; POST changes the plan (prorated on the invoice)."""

    def required_action(self) -> str | None:
        return {"GET": "plan.view", "HEAD": "plan.view", "POST": "plan.change"}.get(
            self.request.method
        )

    @extend_schema(responses=SubscriptionOut)
    def get(self, request):
        return Response(subscription_dict(self.caller.tenant, restricted=self.caller.project))

    @extend_schema(
        request=PlanChangeSerializer,
        responses={
            200: SubscriptionOut,
            400: OpenApiResponse(
                description="Unknown or retired plan, the current plan, or a plan in another currency."
            ),
        },
    )
    def post(self, request):
        payload = PlanChangeSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        services.subscription_change(
            tenant=self.caller.tenant,
            plan=plan_by_code(payload.validated_data["plan"]),
            actor=self.caller,
        )
        return Response(subscription_dict(self.caller.tenant, restricted=self.caller.project))
