"""The partner console's billing: price book, its tenants' plans and usage, revenue, growth,
invoices. A tenant never sees a wholesale price; a partner sees both legs of its own business."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import exceptions, mixins, serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from verticals.api.base import (
    PartnerScopedViewSet,
)
from verticals.api.billing.formatting import (
    MoneySerializer,
    UnitPriceSerializer,
    decimal_text,
    money_list,
    page_of,
    price,
    quantities,
    quantity_map,
    when,
)
from verticals.api.billing.insights import MONTHS_PARAMETER, GrowthRow, PartnerRef, growth_rows
from verticals.api.billing.invoices import (
    InvoiceDownloads,
    PartnerInvoiceDetailSerializer,
    PartnerInvoiceFilter,
    PartnerInvoiceSerializer,
)
from verticals.api.billing.plans import (
    PlanChangeSerializer,
    SubscriptionOut,
    plan_by_code,
    subscription_dict,
)
from verticals.api.billing.queries import CSV, DownloadNegotiation, months_param, time_range
from verticals.api.billing.usage import USAGE_PARAMETERS, UsagePage, usage_answer
from verticals.api.pagination import Pagination
from verticals.api.serializers import (
    AsSentField,
    PartnerTenantCreateSerializer,
    StrictCharField,
    StrictSerializer,
)
from verticals.billing import analytics, selectors, services
from verticals.billing.models import FEE, Invoice, Plan
from verticals.tenancy.models import Partner, PartnerAuditEvent, Tenant

log = logging.getLogger(__name__)


# --- the partner console ---------------------------------------------------------------------------

PARTNER_PARAMETER = OpenApiParameter(
    "partner",
    OpenApiTypes.STR,
    description="Which of your partners (its id); needed only when you belong to several.",
)


class PartnerConsoleViewSet(PartnerScopedViewSet):
    """A partner-level resource (not a tenant's): the partners the caller's role allows the action on."""

    model = Partner
    partner_field = "pk"

    def partners(self):
        return Partner.objects.filter(pk__in=self.caller.partner_ids_for(self.required_action()))

    def chosen_partner(self, wanted=None) -> Partner:
        """`?partner=` (or the body's `partner`), else the caller's one partner allowed the action."""
        allowed = self.partners()
        wanted = wanted or self.request.query_params.get("partner")
        if wanted:
            partner = allowed.filter(public_id=wanted).first() if isinstance(wanted, str) else None
            if partner is None:
                raise exceptions.NotFound(f"No partner '{str(wanted)[:64]}' that you may act on.")
            return partner
        direct = [
            pm.partner
            for pm in self.caller.partner_memberships()
            if pm.partner.pk in {p.pk for p in allowed}
        ]
        if len(direct) != 1:
            raise exceptions.ValidationError(
                {"partner": ["You belong to several partners: name one by id (?partner=ptn_…)."]}
            )
        return direct[0]

    def partner_ids(self) -> list[int]:
        """Every partner the caller may see for the action, or the subtree of `?partner=`."""
        if self.request.query_params.get("partner"):
            return self.chosen_partner().descendant_ids()
        return self.caller.partner_ids_for(self.required_action())


# Price book ----------------------------------------------------------------------------------------


class PriceBookRow(serializers.Serializer):
    plan = serializers.CharField(help_text="The plan's code.")
    plan_name = serializers.CharField()
    currency = serializers.CharField()
    item = serializers.CharField(help_text="plan.fee, or a meter key.")
    name = serializers.CharField()
    included = serializers.CharField(
        allow_null=True, help_text="Meters: units included per period."
    )
    list_price = UnitPriceSerializer()
    wholesale = UnitPriceSerializer(
        allow_null=True, help_text="What you pay the operator (null: the operator itself)."
    )
    retail = UnitPriceSerializer(
        help_text="What your tenants pay: your price, else the list price (never below wholesale)."
    )
    retail_set = UnitPriceSerializer(
        allow_null=True, help_text="The retail price you set (null: the list price applies)."
    )


PriceBookPage = page_of("PriceBookPage", PriceBookRow(many=True), partner=PartnerRef)


class PriceBookChangeSerializer(StrictSerializer):
    takes = "send plan, item and retail (and partner)"

    plan = AsSentField()  # plan_by_code says what is wrong with it (validate_plan)
    item = AsSentField(
        help_text="plan.fee, or a meter key the plan prices.",
        error_messages={"required": f"Name the item: {FEE}, or a meter the plan prices."},
    )
    retail = AsSentField(
        allow_null=True,
        help_text="Decimal string; null: back to the list price.",
        error_messages={
            "required": "Give the retail price as a decimal string, or null for the list price."
        },
    )
    partner = AsSentField(required=False)

    def validate_plan(self, value) -> Plan:
        try:
            return plan_by_code(value)
        except exceptions.ValidationError as exc:
            raise serializers.ValidationError(exc.detail["plan"]) from None

    def validate_item(self, value):
        if not isinstance(value, str) or not value:
            raise serializers.ValidationError(f"Name the item: {FEE}, or a meter the plan prices.")
        return value


def price_book_rows(partner: Partner, plans=None) -> list[dict]:
    """The book's rows (billing.selectors.price_book_rows, the portal's too) as the API writes them."""
    return [
        {
            "plan": row.plan.code,
            "plan_name": row.plan.name,
            "currency": row.plan.currency,
            "item": row.item,
            "name": "Plan fee" if row.is_fee else row.name,
            "included": decimal_text(row.included),
            "list_price": price(row.list_price, row.plan.currency),
            "wholesale": price(row.wholesale, row.plan.currency),
            "retail": price(row.retail, row.plan.currency),
            "retail_set": price(row.retail_set, row.plan.currency),
        }
        for row in selectors.price_book_rows(partner=partner, plans=plans)
    ]


class PartnerPriceBookView(PartnerConsoleViewSet):
    """A partner's price book: list, wholesale and retail price of each plan's fee and meters."""

    actions = {"show": "partner.billing.view", "change": "partner.price.update"}

    @extend_schema(parameters=[PARTNER_PARAMETER], responses=PriceBookPage)
    def show(self, request):
        partner = self.chosen_partner()
        paginator = Pagination()
        page = paginator.paginate_queryset(price_book_rows(partner), request, view=self)
        answer = paginator.get_paginated_response(page)
        answer.data["partner"] = {"id": partner.public_id, "name": partner.name}
        return answer

    @extend_schema(
        request=PriceBookChangeSerializer,
        responses={
            200: PriceBookRow,
            400: OpenApiResponse(
                description="Unknown plan or item, or a retail price below the wholesale price (the message names both)."
            ),
        },
    )
    def change(self, request):
        payload = PriceBookChangeSerializer(data=request.data)
        # As ever: an unknown field first, then whose price book it is (404), then the values.
        payload.refuse_unknown_fields(request.data)
        partner = self.chosen_partner(
            request.data.get("partner") if isinstance(request.data, dict) else None
        )
        payload.is_valid(raise_exception=True)
        body = payload.validated_data
        plan = body["plan"]
        entry = services.price_book_set_retail(
            partner=partner, plan=plan, item=body["item"], retail=body["retail"], actor=self.caller
        )
        row = next(
            r
            for r in price_book_rows(partner, Plan.objects.filter(pk=plan.pk))
            if r["item"] == entry.item
        )
        return Response(row)


# Tenants' plans and usage ---------------------------------------------------------------------------


class PartnerTenantPlanCreateSerializer(PartnerTenantCreateSerializer):
    """A new tenant, optionally put on a plan at once."""

    plan = StrictCharField(
        max_length=40,
        required=False,
        help_text="The plan's code (GET /api/v1/partner/price-book/).",
    )
    trial_days = serializers.IntegerField(min_value=0, max_value=365, required=False, default=0)

    def validate(self, attrs):
        if attrs.get("trial_days") and not attrs.get("plan"):
            raise serializers.ValidationError({"trial_days": "A trial needs a plan: name one."})
        if attrs.get("plan"):
            attrs["plan"] = plan_by_code(attrs["plan"])
        return attrs


class PartnerPlanChangeSerializer(PlanChangeSerializer):
    trial_days = serializers.IntegerField(min_value=0, max_value=365, required=False, default=0)


def default_plan() -> Plan | None:
    """The plan a partner's new tenant goes on when the partner names none: BILLING_DEFAULT_PLAN,
    or None (no subscription) when the setting is empty or names no plan offered."""
    code = settings.BILLING_DEFAULT_PLAN
    if not code:
        return None
    plan = Plan.objects.filter(code=code, is_active=True).first()
    if plan is None:
        log.warning(
            "BILLING_DEFAULT_PLAN names the plan '%s', which does not exist or is not offered: "
            "the new tenant has no subscription.",
            code,
        )
    return plan


class PartnerTenantBillingViewSet(DownloadNegotiation, PartnerScopedViewSet):
    """The plan and usage of a partner's tenant (`partner/tenants/{id}/plan/`, `…/usage/`)."""

    model = Tenant
    lookup_url_kwarg = "tenant_id"
    actions = {"plan": "partner.tenant.plan", "usage": "partner.billing.view"}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Tenant.objects.none()
        ids = self.caller.partner_ids_for(self.required_action() or "partner.tenant.view")
        return Tenant.objects.filter(partner_id__in=ids).select_related("partner")

    @extend_schema(
        request=PartnerPlanChangeSerializer,
        responses={
            200: SubscriptionOut,
            400: OpenApiResponse(
                description="Unknown or retired plan, the current plan, or a plan in another currency."
            ),
        },
    )
    @action(detail=True, methods=["post"], filter_backends=[], pagination_class=None)
    def plan(self, request, tenant_id=None):
        """Put the tenant on a plan, or change its plan (prorated on its invoice; audited in the tenant's log)."""
        tenant = self.get_object()
        payload = PartnerPlanChangeSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        services.subscription_change(
            tenant=tenant,
            plan=plan_by_code(payload.validated_data["plan"]),
            actor=self.caller,
            trial_days=payload.validated_data["trial_days"],
            partner=tenant.partner,  # the change shows in its partner's trail too
        )
        return Response(subscription_dict(tenant))

    @extend_schema(
        parameters=USAGE_PARAMETERS, responses={200: UsagePage, (200, CSV): OpenApiTypes.STR}
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def usage(self, request, tenant_id=None):
        """The tenant's usage summary (the parameters of /api/v1/usage/)."""
        return usage_answer(self, request, self.get_object())


# Revenue and growth -------------------------------------------------------------------------------


class RevenueRow(serializers.Serializer):
    tenant = inline_serializer(
        "RevenueTenantRef",
        {
            "id": serializers.CharField(),
            "name": serializers.CharField(),
            "partner": serializers.CharField(),
        },
    )
    status = serializers.CharField()
    plan = inline_serializer(
        "RevenuePlanRef",
        {"code": serializers.CharField(), "name": serializers.CharField()},
        allow_null=True,
    )
    usage = quantity_map()
    revenue = MoneySerializer(many=True, help_text="Retail invoices less credit notes.")
    wholesale = MoneySerializer(many=True, help_text="What the same lines cost you.")
    margin = MoneySerializer(many=True, help_text="revenue − wholesale.")


RevenuePage = page_of(
    "PartnerRevenuePage",
    RevenueRow(many=True),
    start=serializers.DateTimeField(),
    end=serializers.DateTimeField(),
    totals=inline_serializer(
        "PartnerRevenueTotals",
        {
            "revenue": MoneySerializer(many=True),
            "wholesale": MoneySerializer(many=True),
            "margin": MoneySerializer(many=True),
        },
    ),
)


def last_months(months: int, now: datetime) -> datetime:
    """The first day of the month `months - 1` before this one: the start of the last `months` months."""
    index = now.year * 12 + now.month - 1 - (months - 1)
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


class PartnerRevenueView(PartnerConsoleViewSet):
    """Per tenant: revenue (retail invoices less credit notes), wholesale cost, margin, usage and plan."""

    actions = {"report": "partner.billing.view"}

    @extend_schema(
        parameters=[
            PARTNER_PARAMETER,
            OpenApiParameter(
                "start",
                OpenApiTypes.STR,
                description="ISO date or date-time; default: the first day of 11 months ago.",
            ),
            OpenApiParameter(
                "end",
                OpenApiTypes.STR,
                description="ISO date-time (excluded) or date (included); default: now.",
            ),
        ],
        responses=RevenuePage,
    )
    def report(self, request):
        now = timezone.now()
        start, end = time_range(request.query_params, (last_months(12, now), now))
        rows = analytics.partner_tenants_report(self.partner_ids(), start=start, end=end)
        totals = {"revenue": {}, "wholesale": {}, "margin": {}}
        out = []
        for row in rows:
            for key, target in totals.items():
                for currency, minor in row[key].items():
                    target[currency] = target.get(currency, 0) + minor
            tenant, plan = row["tenant"], row["plan"]
            out.append(
                {
                    "tenant": {
                        "id": tenant.public_id,
                        "name": tenant.name,
                        "partner": tenant.partner.public_id,
                    },
                    "status": row["status"],
                    "plan": {"code": plan.code, "name": plan.name} if plan else None,
                    "usage": quantities(row["usage"]),
                    "revenue": money_list(row["revenue"]),
                    "wholesale": money_list(row["wholesale"]),
                    "margin": money_list(row["margin"]),
                }
            )
        paginator = Pagination()
        page = paginator.paginate_queryset(out, request, view=self)
        answer = paginator.get_paginated_response(page)
        answer.data.update(
            {
                "start": when(start),
                "end": when(end),
                "totals": {key: money_list(value) for key, value in totals.items()},
            }
        )
        return answer


class PartnerGrowthView(PartnerConsoleViewSet):
    """Month by month: new, active and churned tenants, MRR, revenue, wholesale, margin, usage by task."""

    actions = {"report": "partner.billing.view"}

    @extend_schema(
        parameters=[PARTNER_PARAMETER, MONTHS_PARAMETER],
        responses=inline_serializer(
            "PartnerGrowth", {"months": serializers.IntegerField(), "results": GrowthRow(many=True)}
        ),
    )
    def report(self, request):
        months = months_param(request.query_params)
        rows = analytics.growth(self.partner_ids(), months=months)
        return Response({"months": months, "results": growth_rows(rows)})


# Invoices -----------------------------------------------------------------------------------------


class PartnerInvoiceViewSet(
    InvoiceDownloads, mixins.ListModelMixin, mixins.RetrieveModelMixin, PartnerScopedViewSet
):
    """The operator's wholesale invoices to the caller's partners, and their tenants' retail invoices
    and credit notes."""

    model = Invoice
    lookup_url_kwarg = "invoice_id"
    filterset_class = PartnerInvoiceFilter
    ordering_fields = ["issued_at", "period_start"]
    actions = {
        "list": "partner.billing.view",
        "retrieve": "partner.billing.view",
        "pdf": "partner.billing.view",
        "csv": "partner.billing.view",
    }

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Invoice.objects.none()
        ids = self.caller.partner_ids_for(self.required_action() or "partner.billing.view")
        return (
            Invoice.objects.filter(Q(partner_id__in=ids) | Q(tenant__partner_id__in=ids))
            .select_related("tenant", "credits")
            .prefetch_related("lines")
        )

    def get_serializer_class(self):
        return (
            PartnerInvoiceDetailSerializer
            if self.action == "retrieve"
            else PartnerInvoiceSerializer
        )


# The partner's own audit trail ------------------------------------------------------------------------


class PartnerAuditEventSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)

    class Meta:
        model = PartnerAuditEvent
        fields = ["id", "action", "actor", "target_type", "target_id", "details", "created_at"]


class PartnerAuditEventView(mixins.ListModelMixin, PartnerConsoleViewSet):
    """What was done in one partner's console (its price book, brand, new tenants, their plans),
    newest first: that partner's own trail, never another's (not even a sub-partner's)."""

    actions = {"list": "partner.tenant.view"}
    serializer_class = PartnerAuditEventSerializer
    filter_backends = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # OpenAPI generation: no request, no rows
            return PartnerAuditEvent.objects.none()
        return PartnerAuditEvent.objects.filter(partner=self.chosen_partner())

    @extend_schema(parameters=[PARTNER_PARAMETER])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)
