"""Billing under /api/v1/: plans, the subscription, usage, invoices, staff usage sources and
insights, and the partner console's billing (price book, tenant plans and usage, revenue,
growth, invoices, brand).

Money goes out as {"amount": "12.30", "currency": "USD", "minor": 1230}, unit prices as
{"amount": "0.0025", "currency": "USD"} and quantities as decimal strings: never floats.
A tenant never sees a wholesale price; a partner sees both legs of its own business.
"""

from __future__ import annotations

import io
import json
import logging
import re
from datetime import UTC, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

import django_filters
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q
from django.http import Http404, HttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import exceptions, mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from verticals.api.base import (
    CallerAPIView,
    CatalogViewSet,
    PartnerScopedViewSet,
    TenantScopedViewSet,
)
from verticals.api.filters import as_utc
from verticals.api.pagination import Pagination
from verticals.api.params import whole_number
from verticals.api.serializers import PartnerTenantCreateSerializer, StrictCharField
from verticals.billing import analytics, documents, invoicing, metering, services
from verticals.billing.catalog import meter_keys, period_of, standing
from verticals.billing.models import FEE, Invoice, Plan, PriceBookEntry, Subscription
from verticals.billing.money import (
    QUANTITY_PLACES,
    MoneyError,
    as_decimal,
    decimals_of,
    from_minor,
    to_minor,
)
from verticals.billing.pricing import PriceList, book_items, contract_at
from verticals.tenancy.models import Partner, Project, Tenant, hex_colour
from verticals.tenancy.scoping import tenant_context

log = logging.getLogger(__name__)
CSV = "text/csv"
TENANT_KINDS = (Invoice.Kind.RETAIL, Invoice.Kind.CREDIT_NOTE)
MAX_EVENTS = 1000
MAX_QUANTITY = Decimal(10) ** 12  # micro-units of this still fit a 64-bit integer
FUTURE_SLACK = timedelta(minutes=5)
MAX_MONTHS = 36
LOGO_MAX_BYTES = 1024 * 1024
LOGO_MAX_SIDE = 4096
LOGO_FORMATS = {"PNG": "png", "JPEG": "jpg", "GIF": "gif", "WEBP": "webp"}
SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,54}$")


# --- how values go out ----------------------------------------------------------------------


def money(minor: int, currency: str) -> dict:
    return {"amount": str(from_minor(minor, currency)), "currency": currency, "minor": int(minor)}


def money_list(by_currency: dict) -> list[dict]:
    """{currency: minor} (analytics' shape) as a list of money, by currency."""
    return [money(minor, currency) for currency, minor in sorted(by_currency.items())]


def decimal_text(value: Decimal | None) -> str | None:
    """A Decimal as a plain string without trailing zeros or exponent: 1.5, 100, 0.000001."""
    if value is None:
        return None
    text = format(Decimal(value).normalize(), "f")
    return "0" if text in ("-0", "") else text


def price(value: Decimal | None, currency: str) -> dict | None:
    """A unit price: at least the currency's decimals (49.00), more when it has them (0.0025)."""
    if value is None:
        return None
    value = Decimal(value).normalize()
    places = decimals_of(currency)
    if value.as_tuple().exponent > -places:
        value = value.quantize(Decimal(1).scaleb(-places))
    return {"amount": format(value, "f"), "currency": currency}


def fee_money(fee: Decimal, currency: str) -> dict:
    return money(to_minor(fee, currency), currency)


def quantities(by_meter: dict) -> dict:
    return {meter: decimal_text(value) for meter, value in sorted(by_meter.items())}


def when(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value.isoformat()


# --- schema shapes (what the dicts above look like) -------------------------------------------


class MoneySerializer(serializers.Serializer):
    amount = serializers.CharField(
        help_text="Decimal string in the currency's units, e.g. 12.30 (never a float)."
    )
    currency = serializers.CharField(help_text="ISO 4217 code.")
    minor = serializers.IntegerField(
        help_text="The amount in the currency's minor units (cents), exact."
    )


class UnitPriceSerializer(serializers.Serializer):
    amount = serializers.CharField(help_text="Decimal string, up to 9 decimals, e.g. 0.0025.")
    currency = serializers.CharField()


def page_of(name: str, child, **extra):
    """A paginated answer's shape with `extra` fields beside the rows."""
    return inline_serializer(
        name,
        {
            "count": serializers.IntegerField(),
            "next": serializers.CharField(allow_null=True),
            "previous": serializers.CharField(allow_null=True),
            "results": child,
            **extra,
        },
    )


def _quantity_map():
    return serializers.DictField(
        child=serializers.CharField(), help_text="Units per meter, as decimal strings."
    )


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


# --- query parameters -------------------------------------------------------------------------


def parse_when(name: str, value: str, *, end: bool = False) -> datetime:
    """An ISO date (its midnight UTC; for `end`, the day is included) or date-time (naive: UTC)."""
    hint = "Give an ISO date (2026-10-01) or date-time (2026-10-01T12:00:00Z; send '+' as %2B)."
    try:
        day = parse_date(
            value
        )  # first: a date alone would also parse as a date-time (its midnight)
        if day is not None:
            return datetime.combine(day + timedelta(days=1) if end else day, time(0), tzinfo=UTC)
        moment = parse_datetime(value)
        if moment is None:
            raise ValueError
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise exceptions.ValidationError(
            {name: [f"'{value[:40]}' is not a date or time. {hint}"]}
        ) from None
    try:
        return as_utc(moment)
    except ValueError as exc:
        raise exceptions.ValidationError({name: [str(exc)]}) from None


def time_range(params, default: tuple[datetime, datetime]) -> tuple[datetime, datetime]:
    start = parse_when("start", params["start"]) if params.get("start") else default[0]
    end = parse_when("end", params["end"], end=True) if params.get("end") else default[1]
    if start >= end:
        raise exceptions.ValidationError(
            {"end": [f"The end ({when(end)}) must come after the start ({when(start)})."]}
        )
    return start, end


def months_param(params, default: int = 12) -> int:
    return whole_number(
        params.get("months"), name="months", low=1, high=MAX_MONTHS, default=default
    )


def wants_csv(request) -> bool:
    return request.query_params.get("format") == "csv" or CSV in request.META.get("HTTP_ACCEPT", "")


class DownloadNegotiation:
    """Views that answer CSV themselves (`?format=csv` or `Accept: text/csv`): no renderer makes it,
    and their errors are JSON like everywhere else."""

    def perform_content_negotiation(self, request, force=False):
        if "format" in request.query_params or CSV in request.META.get("HTTP_ACCEPT", ""):
            force = True
        return super().perform_content_negotiation(request, force)


USAGE_PARAMETERS = [
    OpenApiParameter(
        "start",
        OpenApiTypes.STR,
        description="ISO date or date-time (UTC); default: the current period's start.",
    ),
    OpenApiParameter(
        "end",
        OpenApiTypes.STR,
        description="ISO date-time (excluded) or date (included); default: the period's end.",
    ),
    OpenApiParameter(
        "group_by",
        OpenApiTypes.STR,
        description="Comma list of meter, day, project, task (default: meter).",
    ),
    OpenApiParameter(
        "project", OpenApiTypes.STR, description="Only this project's usage (its id)."
    ),
    OpenApiParameter(
        "meter", OpenApiTypes.STR, description="Only this meter, e.g. inference.requests."
    ),
    OpenApiParameter(
        "format",
        OpenApiTypes.STR,
        enum=["json", "csv"],
        description="csv: the rows as a CSV download.",
    ),
]


class UsageRowSerializer(serializers.Serializer):
    """One group of the summary: the grouped-by fields, then the units and events in it."""

    meter = serializers.CharField(required=False)
    day = serializers.DateField(required=False)
    project = serializers.CharField(
        required=False, allow_null=True, help_text="A project's id (null: no project)."
    )
    task = serializers.CharField(required=False)
    quantity = serializers.CharField(help_text="Units, as a decimal string.")
    events = serializers.IntegerField()


UsagePage = page_of(
    "UsagePage",
    UsageRowSerializer(many=True),
    start=serializers.DateTimeField(),
    end=serializers.DateTimeField(),
    group_by=serializers.ListField(child=serializers.CharField()),
)


def usage_answer(view, request, tenant, *, restricted=None):
    """The usage summary of `tenant` for the request's parameters: JSON (paginated) or CSV.

    `restricted`: the one project the caller's key may see (its usage only)."""
    params = request.query_params
    unknown_format = params.get("format") not in (None, "", "json", "csv")
    if unknown_format:
        raise exceptions.ValidationError({"format": ["Give json or csv."]})
    current = standing(tenant)
    start, end = time_range(params, current.period if current else period_of(timezone.now(), 1))
    group_by = [
        name.strip() for name in (params.get("group_by") or "meter").split(",") if name.strip()
    ]
    bad = [name for name in group_by if name not in analytics.GROUPS]
    if not group_by or bad:
        raise exceptions.ValidationError(
            {
                "group_by": [
                    f"Group by any of {', '.join(analytics.GROUPS)} (comma separated); "
                    f"not {', '.join(bad) or 'nothing'}."
                ]
            }
        )
    group_by = list(dict.fromkeys(group_by))
    project = None
    if params.get("project"):
        # The tenant's own projects only (another tenant's, or another project than a restricted key's: 404).
        projects = Project.dangerously_unscoped.filter(
            tenant_id=tenant.pk, public_id=params["project"]
        )
        if restricted is not None:
            projects = projects.filter(pk=restricted.pk)
        project = projects.first()
        if project is None:
            raise Http404
    elif restricted is not None:
        project = restricted
    meter = params.get("meter") or None
    if meter is not None and meter not in meter_keys():
        raise exceptions.ValidationError(
            {"meter": [f"Unknown meter '{meter[:64]}'; known: {', '.join(sorted(meter_keys()))}."]}
        )
    rows = analytics.usage_summary(
        tenant, start=start, end=end, group_by=group_by, project=project, meter=meter
    )
    if wants_csv(request):
        response = HttpResponse(
            documents.usage_csv(rows, group_by), content_type=f"{CSV}; charset=utf-8"
        )
        response["Content-Disposition"] = (
            f'attachment; filename="usage-{tenant.public_id}-{start:%Y%m%d}-'
            f'{(end - timedelta(microseconds=1)):%Y%m%d}.csv"'
        )
        return response
    out = [
        {
            **{name: (when(row[name]) if name == "day" else row[name]) for name in group_by},
            "quantity": decimal_text(row["quantity"]),
            "events": row["events"],
        }
        for row in rows
    ]
    paginator = Pagination()
    page = paginator.paginate_queryset(out, request, view=view)
    answer = paginator.get_paginated_response(page)
    answer.data.update({"start": when(start), "end": when(end), "group_by": group_by})
    return answer


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


def change_plan(tenant, code, *, actor, trial_days: int = 0) -> Subscription:
    plan = plan_by_code(code)
    with tenant_context(tenant):  # partner staff act on a tenant from outside it
        return services.subscribe(tenant, plan, trial_days=trial_days, actor=actor)


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
        change_plan(self.caller.tenant, payload.validated_data["plan"], actor=self.caller)
        return Response(subscription_dict(self.caller.tenant, restricted=self.caller.project))


# --- usage ------------------------------------------------------------------------------------


class UsageView(DownloadNegotiation, CallerAPIView):
    """The tenant's usage summed by meter, day, project and/or task (JSON, or CSV)."""

    def required_action(self) -> str | None:
        return "usage.view" if self.request.method in ("GET", "HEAD") else None

    @extend_schema(
        parameters=USAGE_PARAMETERS, responses={200: UsagePage, (200, CSV): OpenApiTypes.STR}
    )
    def get(self, request):
        return usage_answer(self, request, self.caller.tenant, restricted=self.caller.project)


UsageEventsIn = inline_serializer(
    "UsageEvents",
    {
        "source": serializers.CharField(
            help_text="external:<name> or <name> (lower case, digits, . _ -)."
        ),
        "events": inline_serializer(
            "UsageEventIn",
            {
                "tenant": serializers.CharField(),
                "meter": serializers.CharField(),
                "quantity": serializers.CharField(
                    help_text="Decimal string or integer, at most 6 decimals (never a float)."
                ),
                "idempotency_key": serializers.CharField(max_length=200),
                "occurred_at": serializers.DateTimeField(required=False),
                "project": serializers.CharField(required=False),
                "task": serializers.CharField(required=False),
                "details": serializers.DictField(required=False),
            },
            many=True,
        ),
    },
)
UsageEventsOut = inline_serializer(
    "UsageEventsAccepted",
    {
        "accepted": serializers.IntegerField(),
        "duplicates": serializers.IntegerField(),
        "keys": inline_serializer(
            "UsageEventKeys",
            {
                "new": serializers.ListField(child=serializers.CharField()),
                "duplicate": serializers.ListField(child=serializers.CharField()),
            },
        ),
    },
)
EVENT_FIELDS = {
    "tenant",
    "meter",
    "quantity",
    "idempotency_key",
    "occurred_at",
    "project",
    "task",
    "details",
}


def require_staff(caller) -> None:
    person = caller.person if caller else None
    if person is None or not person.is_staff:
        raise exceptions.PermissionDenied(
            "Only platform staff may do this (a staff member's session or a key a staff member made)."
        )
    if caller.api_key is not None and "billing" not in caller.api_key.scopes:
        raise exceptions.PermissionDenied(
            "This API key lacks the 'billing' scope that staff billing routes need."
        )


class _EventProblems:
    """Problems of a batch, by `events[i].field`, reported together (the first few)."""

    LIMIT = 20

    def __init__(self):
        self.found: dict[str, list[str]] = {}
        self.more = 0

    def add(self, where: str, message: str) -> None:
        if len(self.found) < self.LIMIT:
            self.found.setdefault(where, [message])
        else:
            self.more += 1

    def raise_any(self) -> None:
        if self.found:
            if self.more:
                self.found["events"] = [
                    f"{self.more} more problems not listed; nothing was recorded."
                ]
            raise exceptions.ValidationError(self.found)


def _event_source(raw) -> str:
    if not isinstance(raw, str) or not raw:
        raise exceptions.ValidationError(
            {"source": ["Name the source: external:<name> or <name>."]}
        )
    name = raw[len("external:") :] if raw.startswith("external:") else raw
    if not SOURCE_NAME.match(name):
        raise exceptions.ValidationError(
            {
                "source": [
                    f"'{raw[:80]}' is not a source name: lower-case letters, digits, '.', '_' "
                    "and '-', at most 55, e.g. external:crm."
                ]
            }
        )
    return f"external:{name}"


def validate_events(events: list) -> tuple[dict[int, Tenant], list[metering.Usage]]:
    """Every event checked against the ledger's rules before anything is written."""
    problems = _EventProblems()
    now = timezone.now()
    oldest = now - timedelta(days=settings.BILLING_EVENT_MAX_AGE_DAYS)
    known_meters = meter_keys()
    wanted_tenants = {
        e.get("tenant") for e in events if isinstance(e, dict) and isinstance(e.get("tenant"), str)
    }
    tenants = {
        t.public_id: t
        for t in Tenant.objects.filter(public_id__in=wanted_tenants).select_related("partner")
    }
    wanted_projects = {
        e.get("project")
        for e in events
        if isinstance(e, dict) and isinstance(e.get("project"), str)
    }
    # Staff send usage for any tenant: each project is checked against the event's own tenant below.
    projects = {
        p.public_id: p
        for p in Project.dangerously_unscoped.filter(
            public_id__in=wanted_projects, tenant__in=tenants.values()
        )
    }
    invoiced: dict[int, list[tuple[datetime, datetime]]] = {}
    for (
        tenant_id,
        start,
        end,
    ) in Invoice.dangerously_unscoped.filter(  # the events' own tenants (staff send for any)
        kind=Invoice.Kind.RETAIL, tenant__in=tenants.values()
    ).values_list("tenant_id", "period_start", "period_end"):
        invoiced.setdefault(tenant_id, []).append((start, end))
    seen: set[tuple[int, str]] = set()
    items: list[tuple[Tenant, metering.Usage]] = []
    for i, event in enumerate(events):
        at = f"events[{i}]"
        if not isinstance(event, dict):
            problems.add(at, "Give an object with tenant, meter, quantity and idempotency_key.")
            continue
        for extra in sorted(set(event) - EVENT_FIELDS)[:1]:
            problems.add(
                f"{at}.{extra}", f"Unknown field; an event takes {', '.join(sorted(EVENT_FIELDS))}."
            )
        tenant = tenants.get(event.get("tenant")) if isinstance(event.get("tenant"), str) else None
        if tenant is None:
            problems.add(
                f"{at}.tenant",
                f"No tenant '{str(event.get('tenant'))[:64]}'."
                if event.get("tenant")
                else "Name the tenant (its id, ten_…).",
            )
        meter = event.get("meter")
        if not isinstance(meter, str) or meter not in known_meters:
            problems.add(
                f"{at}.meter",
                f"Unknown meter '{str(meter)[:64]}'; known: {', '.join(sorted(known_meters))}.",
            )
        quantity = None
        raw_quantity = event.get("quantity")
        if raw_quantity is None:
            problems.add(f"{at}.quantity", "Give the quantity as a decimal string or an integer.")
        else:
            try:
                quantity = as_decimal(raw_quantity, field="quantity", places=QUANTITY_PLACES)
                if quantity < 0:
                    raise MoneyError(f"quantity: {quantity} is negative; usage is never negative.")
                if quantity >= MAX_QUANTITY:
                    raise MoneyError(
                        f"quantity: {quantity} is too large; send at most {MAX_QUANTITY - 1} units per event."
                    )
            except MoneyError as exc:
                problems.add(f"{at}.quantity", str(exc).split(": ", 1)[-1])
                quantity = None
        key = event.get("idempotency_key")
        if not isinstance(key, str) or not key.strip():
            problems.add(
                f"{at}.idempotency_key",
                "Give an idempotency key: the same event sent again must carry the same key.",
            )
            key = None
        elif len(key) > 200:
            problems.add(
                f"{at}.idempotency_key", f"At most 200 characters; this one has {len(key)}."
            )
            key = None
        elif tenant is not None:
            if (tenant.pk, key) in seen:
                problems.add(
                    f"{at}.idempotency_key",
                    f"'{key[:80]}' is in this batch twice for tenant {tenant.public_id}.",
                )
            seen.add((tenant.pk, key))
        occurred = None
        if event.get("occurred_at") is not None:
            raw = event["occurred_at"]
            try:
                occurred = parse_datetime(raw) if isinstance(raw, str) else None
            except ValueError:
                occurred = None
            if occurred is None or occurred.tzinfo is None:
                problems.add(
                    f"{at}.occurred_at",
                    "Give an ISO date-time with a zone, e.g. 2026-10-05T12:00:00Z.",
                )
                occurred = None
            else:
                try:
                    occurred = as_utc(occurred)
                except ValueError as exc:
                    problems.add(f"{at}.occurred_at", str(exc))
                    occurred = None
        moment = occurred or now
        if occurred is not None:
            if occurred > now + FUTURE_SLACK:
                problems.add(
                    f"{at}.occurred_at",
                    f"{when(occurred)} is in the future; usage is sent after it happens.",
                )
            elif occurred < oldest:
                problems.add(
                    f"{at}.occurred_at",
                    f"{when(occurred)} is older than {settings.BILLING_EVENT_MAX_AGE_DAYS} days; "
                    "such usage is no longer accepted.",
                )
        if tenant is not None:
            for start, end in invoiced.get(tenant.pk, ()):
                if start <= moment < end:
                    problems.add(
                        f"{at}.occurred_at",
                        f"{when(moment)} is in the period {start:%Y-%m-%d} – {end:%Y-%m-%d}, "
                        f"already invoiced to {tenant.public_id}; correct it with a credit note.",
                    )
                    break
        project = None
        if event.get("project") is not None:
            project = projects.get(event["project"]) if isinstance(event["project"], str) else None
            if project is None or (tenant is not None and project.tenant_id != tenant.pk):
                problems.add(
                    f"{at}.project",
                    f"Tenant {tenant.public_id if tenant else '?'} has no project "
                    f"'{str(event['project'])[:64]}'.",
                )
                project = None
        task = event.get("task", "")
        if not isinstance(task, str) or len(task) > 64:
            problems.add(f"{at}.task", "Give the task's name (at most 64 characters).")
            task = ""
        details = event.get("details", {})
        if not isinstance(details, dict) or len(json.dumps(details, default=str)) > 2000:
            problems.add(f"{at}.details", "Give a JSON object of at most 2000 characters.")
            details = {}
        if tenant is not None and quantity is not None and key is not None:
            items.append(
                (
                    tenant,
                    metering.Usage(
                        meter=meter,
                        quantity=quantity,
                        idempotency_key=key,
                        project=project,
                        task=task,
                        details=details,
                        occurred_at=occurred,
                        route="external",
                    ),
                )
            )
    problems.raise_any()
    by_tenant: dict[int, Tenant] = {}
    for tenant, _ in items:
        by_tenant[tenant.pk] = tenant
    return by_tenant, items


class UsageEventsView(CallerAPIView):
    """Usage from a staff-run external source, counted once per (tenant, source, idempotency key)."""

    def required_action(self) -> str | None:
        return None  # staff only, checked in post(): the events name their tenants

    @extend_schema(
        request=UsageEventsIn,
        responses={
            201: UsageEventsOut,
            200: UsageEventsOut,
            400: OpenApiResponse(
                description="A problem with the batch: the message names events[i].field; nothing was recorded."
            ),
            403: OpenApiResponse(description="Not platform staff."),
        },
    )
    def post(self, request):
        require_staff(self.caller)
        body = request.data
        if not isinstance(body, dict):
            raise exceptions.ValidationError(
                {"events": ['Send {"source": "external:<name>", "events": [...]}.']}
            )
        unknown = sorted(set(body) - {"source", "events"})
        if unknown:
            raise exceptions.ValidationError(
                {unknown[0]: ["Unknown field; send source and events."]}
            )
        source = _event_source(body.get("source"))
        events = body.get("events")
        if not isinstance(events, list) or not events:
            raise exceptions.ValidationError({"events": ["Give a non-empty list of events."]})
        if len(events) > MAX_EVENTS:
            raise exceptions.ValidationError(
                {"events": [f"{len(events)} events; send at most {MAX_EVENTS} per request."]}
            )
        tenants, items = validate_events(events)
        fresh: set[tuple[int, str]] = set()
        with transaction.atomic():  # all tenants' events or none
            for tenant_pk, tenant in tenants.items():
                mine = [usage for owner, usage in items if owner.pk == tenant_pk]
                with tenant_context(tenant):
                    fresh.update(
                        (tenant_pk, key) for key in metering.record(tenant, mine, source=source)
                    )
        # Keys in the order sent (one tenant's key may be another's too: each event is listed once).
        new = [
            usage.idempotency_key
            for owner, usage in items
            if (owner.pk, usage.idempotency_key) in fresh
        ]
        duplicate = [
            usage.idempotency_key
            for owner, usage in items
            if (owner.pk, usage.idempotency_key) not in fresh
        ]
        body = {
            "accepted": len(new),
            "duplicates": len(duplicate),
            "keys": {"new": new, "duplicate": duplicate},
        }
        return Response(body, status=status.HTTP_201_CREATED if new else status.HTTP_200_OK)


class BareUsageEventsView(UsageEventsView):
    """`usage/events` without the trailing slash (the schema lists it once, with the slash)."""

    schema = None


# --- invoices -----------------------------------------------------------------------------------


class InvoiceFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=Invoice.Kind.choices)
    period = django_filters.DateFilter(
        method="filter_period", help_text="A day (YYYY-MM-DD) the invoice's period holds."
    )
    since = django_filters.DateFilter(
        method="filter_since", help_text="Periods starting on or after this day (UTC)."
    )
    until = django_filters.DateFilter(
        method="filter_until", help_text="Periods ending on or before this day's start (UTC)."
    )

    class Meta:
        model = Invoice
        fields = ["kind", "period", "since", "until"]

    @staticmethod
    def _midnight(day) -> datetime:
        return datetime.combine(day, time(0), tzinfo=UTC)

    def filter_period(self, queryset, name, value):
        moment = self._midnight(value)
        return queryset.filter(period_start__lte=moment, period_end__gt=moment)

    def filter_since(self, queryset, name, value):
        return queryset.filter(period_start__gte=self._midnight(value))

    def filter_until(self, queryset, name, value):
        return queryset.filter(period_end__lte=self._midnight(value))


class TenantInvoiceFilter(InvoiceFilter):
    kind = django_filters.ChoiceFilter(choices=[(k.value, k.label) for k in TENANT_KINDS])


class PartnerInvoiceFilter(InvoiceFilter):
    tenant = django_filters.CharFilter(
        field_name="tenant__public_id", help_text="Only this tenant's invoices (its id)."
    )

    class Meta(InvoiceFilter.Meta):
        fields = InvoiceFilter.Meta.fields + ["tenant"]


class InvoiceLineSerializer(serializers.Serializer):
    """A line as the billed tenant sees it."""

    position = serializers.IntegerField()
    kind = serializers.CharField()
    description = serializers.CharField()
    plan = serializers.SerializerMethodField()
    meter = serializers.CharField()
    quantity = serializers.SerializerMethodField()
    included = serializers.SerializerMethodField()
    billable = serializers.SerializerMethodField()
    unit_price = serializers.SerializerMethodField()
    amount = serializers.SerializerMethodField()
    by_task = serializers.DictField(
        child=serializers.CharField(), help_text="Usage lines: units per task."
    )

    def get_plan(self, line) -> str | None:
        return line.plan.code if line.plan_id else None

    def get_quantity(self, line) -> str:
        return decimal_text(line.quantity)

    def get_included(self, line) -> str:
        return decimal_text(line.included)

    def get_billable(self, line) -> str:
        return decimal_text(line.billable)

    @extend_schema_field(UnitPriceSerializer)
    def get_unit_price(self, line) -> dict:
        return price(line.unit_price, line.invoice.currency)

    @extend_schema_field(MoneySerializer)
    def get_amount(self, line) -> dict:
        return money(line.amount_minor, line.invoice.currency)


class PartnerInvoiceLineSerializer(InvoiceLineSerializer):
    """A line as the partner sees it: both legs of the channel."""

    tenant = serializers.SerializerMethodField()
    wholesale_unit_price = serializers.SerializerMethodField()
    wholesale_amount = serializers.SerializerMethodField()
    retail_amount = serializers.SerializerMethodField()

    @extend_schema_field(
        inline_serializer(
            "InvoiceTenantRef",
            {"id": serializers.CharField(), "name": serializers.CharField()},
            allow_null=True,
        )
    )
    def get_tenant(self, line) -> dict | None:
        return {"id": line.tenant.public_id, "name": line.tenant.name} if line.tenant_id else None

    @extend_schema_field(UnitPriceSerializer(allow_null=True))
    def get_wholesale_unit_price(self, line) -> dict | None:
        return price(line.wholesale_unit_price, line.invoice.currency)

    @extend_schema_field(MoneySerializer(allow_null=True))
    def get_wholesale_amount(self, line) -> dict | None:
        """Retail lines of a partner's tenant: what the same line costs the partner."""
        minor = line.wholesale_amount_minor
        return None if minor is None else money(minor, line.invoice.currency)

    @extend_schema_field(MoneySerializer(allow_null=True))
    def get_retail_amount(self, line) -> dict | None:
        """Wholesale lines: what the partner billed its tenant for the same line."""
        minor = line.retail_amount_minor
        return None if minor is None else money(minor, line.invoice.currency)


class InvoiceSerializer(serializers.ModelSerializer):
    """An invoice or credit note as the billed tenant sees it, under its issuer's brand."""

    id = serializers.CharField(source="public_id", read_only=True)
    period = serializers.SerializerMethodField()
    total = serializers.SerializerMethodField()
    credited = serializers.SerializerMethodField()
    credits = serializers.SerializerMethodField()
    brand = serializers.SerializerMethodField()
    bill_to = serializers.SerializerMethodField()
    pdf = serializers.SerializerMethodField()
    csv = serializers.SerializerMethodField()

    class Meta:
        model = Invoice
        fields = [
            "id",
            "number",
            "kind",
            "currency",
            "period",
            "issued_at",
            "total",
            "credited",
            "credits",
            "reason",
            "brand",
            "bill_to",
            "pdf",
            "csv",
        ]

    link_prefix = "/api/v1/invoices/"

    @extend_schema_field(
        inline_serializer(
            "InvoicePeriod",
            {"start": serializers.DateTimeField(), "end": serializers.DateTimeField()},
        )
    )
    def get_period(self, invoice) -> dict:
        return {"start": when(invoice.period_start), "end": when(invoice.period_end)}

    @extend_schema_field(MoneySerializer)
    def get_total(self, invoice) -> dict:
        return money(invoice.total_minor, invoice.currency)

    @extend_schema_field(MoneySerializer(allow_null=True))
    def get_credited(self, invoice) -> dict | None:
        """What credit notes took back of this invoice (null on a credit note)."""
        if invoice.kind == Invoice.Kind.CREDIT_NOTE:
            return None
        return money(invoicing.credited_minor(invoice), invoice.currency)

    @extend_schema_field(
        inline_serializer(
            "CreditedInvoiceRef",
            {"id": serializers.CharField(), "number": serializers.CharField()},
            allow_null=True,
        )
    )
    def get_credits(self, invoice) -> dict | None:
        """A credit note: the invoice it corrects."""
        return (
            {"id": invoice.credits.public_id, "number": invoice.credits.number}
            if invoice.credits_id
            else None
        )

    @extend_schema_field(
        inline_serializer(
            "InvoiceBrand",
            {
                "name": serializers.CharField(),
                "colour": serializers.CharField(),
                "support_email": serializers.CharField(),
                "logo": serializers.CharField(allow_null=True),
            },
        )
    )
    def get_brand(self, invoice) -> dict:
        """The issuer's brand as it was at issue (a partner's tenants see the partner)."""
        brand = invoice.brand or {}
        logo = brand.get("logo") or ""
        return {
            "name": brand.get("name", ""),
            "colour": brand.get("colour", ""),
            "support_email": brand.get("support_email", ""),
            "logo": default_storage.url(logo) if logo else None,
        }

    @extend_schema_field(
        inline_serializer(
            "InvoiceBillTo", {"name": serializers.CharField(), "id": serializers.CharField()}
        )
    )
    def get_bill_to(self, invoice) -> dict:
        bill_to = invoice.bill_to or {}
        return {
            "name": bill_to.get("name", ""),
            "id": bill_to.get("tenant") or bill_to.get("partner") or "",
        }

    def get_pdf(self, invoice) -> str:
        return f"{self.link_prefix}{invoice.public_id}/pdf/"

    def get_csv(self, invoice) -> str:
        return f"{self.link_prefix}{invoice.public_id}/csv/"


class InvoiceDetailSerializer(InvoiceSerializer):
    lines = serializers.SerializerMethodField()

    class Meta(InvoiceSerializer.Meta):
        fields = InvoiceSerializer.Meta.fields + ["lines"]

    line_serializer = InvoiceLineSerializer

    @extend_schema_field(InvoiceLineSerializer(many=True))
    def get_lines(self, invoice) -> list[dict]:
        lines = invoice.lines.select_related("plan", "tenant", "invoice").order_by("position")
        return self.line_serializer(lines, many=True).data


class PartnerInvoiceSerializer(InvoiceSerializer):
    """An invoice as a partner sees it: its tenants' retail invoices with their wholesale cost, and
    the operator's wholesale invoices to it with what it billed its tenants for the same lines."""

    tenant = serializers.SerializerMethodField()
    wholesale_total = serializers.SerializerMethodField()
    retail_total = serializers.SerializerMethodField()
    margin = serializers.SerializerMethodField()

    class Meta(InvoiceSerializer.Meta):
        fields = InvoiceSerializer.Meta.fields + [
            "tenant",
            "wholesale_total",
            "retail_total",
            "margin",
        ]

    link_prefix = "/api/v1/partner/invoices/"

    @extend_schema_field(
        inline_serializer(
            "PartnerInvoiceTenantRef",
            {"id": serializers.CharField(), "name": serializers.CharField()},
            allow_null=True,
        )
    )
    def get_tenant(self, invoice) -> dict | None:
        return (
            {"id": invoice.tenant.public_id, "name": invoice.tenant.name}
            if invoice.tenant_id
            else None
        )

    def _wholesale_minor(self, invoice) -> int | None:
        if invoice.kind == Invoice.Kind.WHOLESALE:
            return invoice.total_minor
        if invoice.kind == Invoice.Kind.RETAIL:
            costs = [line.wholesale_amount_minor for line in invoice.lines.all()]
            return None if any(cost is None for cost in costs) or not costs else sum(costs)
        return None

    def _retail_minor(self, invoice) -> int | None:
        if invoice.kind == Invoice.Kind.WHOLESALE:
            return invoice.retail_total_minor
        return invoice.total_minor if invoice.kind == Invoice.Kind.RETAIL else None

    @extend_schema_field(MoneySerializer(allow_null=True))
    def get_wholesale_total(self, invoice) -> dict | None:
        """What the lines cost the partner (null for a direct customer of the operator, and on credit notes)."""
        minor = self._wholesale_minor(invoice)
        return None if minor is None else money(minor, invoice.currency)

    @extend_schema_field(MoneySerializer(allow_null=True))
    def get_retail_total(self, invoice) -> dict | None:
        """What the tenants were billed for the lines."""
        minor = self._retail_minor(invoice)
        return None if minor is None else money(minor, invoice.currency)

    @extend_schema_field(MoneySerializer(allow_null=True))
    def get_margin(self, invoice) -> dict | None:
        """retail_total − wholesale_total."""
        retail, wholesale = self._retail_minor(invoice), self._wholesale_minor(invoice)
        return (
            None
            if retail is None or wholesale is None
            else money(retail - wholesale, invoice.currency)
        )


class PartnerInvoiceDetailSerializer(PartnerInvoiceSerializer):
    lines = serializers.SerializerMethodField()

    class Meta(PartnerInvoiceSerializer.Meta):
        fields = PartnerInvoiceSerializer.Meta.fields + ["lines"]

    @extend_schema_field(PartnerInvoiceLineSerializer(many=True))
    def get_lines(self, invoice) -> list[dict]:
        lines = invoice.lines.select_related("plan", "tenant", "invoice").order_by("position")
        return PartnerInvoiceLineSerializer(lines, many=True).data


def invoice_download(invoice: Invoice, kind: str) -> HttpResponse:
    if kind == "pdf":
        response = HttpResponse(documents.invoice_pdf(invoice), content_type="application/pdf")
    else:
        response = HttpResponse(
            documents.invoice_csv(invoice), content_type=f"{CSV}; charset=utf-8"
        )
    response["Content-Disposition"] = f'attachment; filename="{invoice.number}.{kind}"'
    return response


class WithoutSlash:
    """A route's twin without the trailing slash: the same view, left out of the schema (it lists
    the route once, with the slash), one object, so no filters or pages."""

    schema = None
    filter_backends = []
    pagination_class = None


class InvoiceDownloads:
    """`{id}/pdf/` and `{id}/csv/` of an invoice the viewset lets the caller see."""

    @extend_schema(responses={(200, "application/pdf"): OpenApiTypes.BINARY})
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def pdf(self, request, invoice_id=None):
        """The invoice as a PDF, under its issuer's brand."""
        return invoice_download(self.get_object(), "pdf")

    @extend_schema(responses={(200, CSV): OpenApiTypes.STR})
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def csv(self, request, invoice_id=None):
        """The invoice's lines and total as CSV (amounts as decimals in the currency)."""
        return invoice_download(self.get_object(), "csv")


class InvoiceViewSet(
    InvoiceDownloads, mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet
):
    """The tenant's invoices and credit notes (retail: what its provider bills it)."""

    model = Invoice
    lookup_url_kwarg = "invoice_id"
    filterset_class = TenantInvoiceFilter
    ordering_fields = ["issued_at", "period_start"]
    actions = {
        "list": "invoice.view",
        "retrieve": "invoice.view",
        "pdf": "invoice.view",
        "csv": "invoice.view",
    }

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Invoice.objects.none()
        # Invoices are not tenant-owned rows (wholesale ones bill partners): the filter is explicit.
        return Invoice.objects.filter(
            tenant_id=self.caller.tenant.pk, kind__in=TENANT_KINDS
        ).select_related("credits")

    def get_serializer_class(self):
        return InvoiceDetailSerializer if self.action == "retrieve" else InvoiceSerializer


class BareInvoiceDownloadView(WithoutSlash, InvoiceViewSet):
    """`{id}/pdf` and `{id}/csv` without the trailing slash."""


CreditNoteIn = inline_serializer(
    "CreditNoteRequest",
    {
        "reason": serializers.CharField(max_length=400, help_text="Printed on the credit note."),
        "amount": serializers.CharField(
            required=False,
            help_text="Decimal string in the invoice's currency; default: all that is left.",
        ),
    },
)


class InvoiceCreditNoteView(CallerAPIView):
    """Staff: take back (part of) an issued invoice with a credit note."""

    def required_action(self) -> str | None:
        return None  # staff only, checked in post()

    @extend_schema(
        request=CreditNoteIn,
        responses={
            201: PartnerInvoiceDetailSerializer,
            400: OpenApiResponse(
                description="No reason, or an amount that is not above zero or is over what is left to credit."
            ),
        },
    )
    def post(self, request, invoice_id=None):
        # Staff credit any invoice; others only learn below whether it is their own.
        invoices = Invoice.dangerously_unscoped.filter(public_id=invoice_id).select_related(
            "tenant", "issuer"
        )
        caller = self.caller
        if caller.person is None or not caller.person.is_staff:
            # Others learn nothing of invoices that are not theirs: 404, as for a missing one; 403 for their own.
            own = (
                caller.tenant is not None
                and caller.can("invoice.view")
                and invoices.filter(tenant_id=caller.tenant.pk, kind__in=TENANT_KINDS).exists()
            )
            if not own:
                raise Http404
            require_staff(caller)
        invoice = invoices.first()
        if invoice is None:
            raise Http404
        body = request.data if isinstance(request.data, dict) else {}
        unknown = sorted(set(body) - {"reason", "amount"})
        if unknown:
            raise exceptions.ValidationError(
                {unknown[0]: ["Unknown field; send reason and, optionally, amount."]}
            )
        reason = body.get("reason")
        if not isinstance(reason, str) or not reason.strip() or len(reason) > 400:
            raise exceptions.ValidationError(
                {
                    "reason": [
                        "Say why the invoice is credited (at most 400 characters); "
                        "the reason is printed on the credit note."
                    ]
                }
            )
        amount_minor = None
        if body.get("amount") not in (None, ""):
            try:
                amount = as_decimal(
                    body["amount"], field="amount", places=decimals_of(invoice.currency)
                )
            except MoneyError as exc:
                raise exceptions.ValidationError(
                    {"amount": [f"{str(exc).split(': ', 1)[-1]} ({invoice.currency})"]}
                ) from None
            amount_minor = int(amount.scaleb(decimals_of(invoice.currency)))
        credit = invoicing.issue_credit_note(
            invoice, reason=reason, amount_minor=amount_minor, actor=caller
        )  # audited there
        return Response(PartnerInvoiceDetailSerializer(credit).data, status=status.HTTP_201_CREATED)


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
                "usage": _quantity_map(),
            },
            many=True,
        ),
        "by_task": inline_serializer(
            "InsightsTask",
            {
                "task": serializers.CharField(),
                "events": serializers.IntegerField(),
                "usage": _quantity_map(),
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
PriceBookChange = inline_serializer(
    "PriceBookChange",
    {
        "plan": serializers.CharField(),
        "item": serializers.CharField(help_text="plan.fee, or a meter key the plan prices."),
        "retail": serializers.CharField(
            allow_null=True, help_text="Decimal string; null: back to the list price."
        ),
        "partner": serializers.CharField(required=False),
    },
)


def price_book_rows(partner: Partner, plans=None) -> list[dict]:
    if plans is None:
        plan_ids = PriceBookEntry.objects.filter(price_book__partner=partner).values("plan_id")
        plans = Plan.objects.filter(Q(is_active=True) | Q(pk__in=plan_ids))
    names = analytics.meter_names()
    rows = []
    for entry in book_items(
        partner, plans.prefetch_related("prices").order_by("monthly_fee", "code")
    ):
        plan, meter = entry.plan, names.get(entry.item)
        rows.append(
            {
                "plan": plan.code,
                "plan_name": plan.name,
                "currency": plan.currency,
                "item": entry.item,
                "name": "Plan fee" if entry.item == FEE else (meter.name if meter else entry.item),
                "included": decimal_text(entry.included),
                "list_price": price(entry.list_price, plan.currency),
                "wholesale": price(entry.wholesale, plan.currency),
                "retail": price(entry.retail, plan.currency),
                "retail_set": price(entry.retail_set, plan.currency),
            }
        )
    return rows


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
        request=PriceBookChange,
        responses={
            200: PriceBookRow,
            400: OpenApiResponse(
                description="Unknown plan or item, or a retail price below the wholesale price (the message names both)."
            ),
        },
    )
    def change(self, request):
        body = request.data if isinstance(request.data, dict) else {}
        unknown = sorted(set(body) - {"plan", "item", "retail", "partner"})
        if unknown:
            raise exceptions.ValidationError(
                {unknown[0]: ["Unknown field; send plan, item and retail (and partner)."]}
            )
        partner = self.chosen_partner(body.get("partner"))
        plan = plan_by_code(body.get("plan"))
        item = body.get("item")
        if not isinstance(item, str) or not item:
            raise exceptions.ValidationError(
                {"item": [f"Name the item: {FEE}, or a meter the plan prices."]}
            )
        if "retail" not in body:
            raise exceptions.ValidationError(
                {
                    "retail": [
                        "Give the retail price as a decimal string, or null for the list price."
                    ]
                }
            )
        services.set_retail(partner, plan, item, body["retail"])
        row = next(
            r
            for r in price_book_rows(partner, Plan.objects.filter(pk=plan.pk))
            if r["item"] == item
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


def subscribe_new_tenant(tenant, plan: Plan, *, trial_days: int, actor) -> Subscription:
    with tenant_context(tenant):
        return services.subscribe(tenant, plan, trial_days=trial_days, actor=actor)


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
        change_plan(
            tenant,
            payload.validated_data["plan"],
            actor=self.caller,
            trial_days=payload.validated_data["trial_days"],
        )
        return Response(subscription_dict(tenant))

    @extend_schema(
        parameters=USAGE_PARAMETERS, responses={200: UsagePage, (200, CSV): OpenApiTypes.STR}
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def usage(self, request, tenant_id=None):
        """The tenant's usage summary (the parameters of /api/v1/usage/)."""
        return usage_answer(self, request, self.get_object())


class BarePartnerTenantPlanView(WithoutSlash, PartnerTenantBillingViewSet):
    """`partner/tenants/{id}/plan` without the trailing slash."""


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
    usage = _quantity_map()
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


class BarePartnerInvoiceDownloadView(WithoutSlash, PartnerInvoiceViewSet):
    """Partner invoices' `{id}/pdf` and `{id}/csv` without the trailing slash."""


# Brand ---------------------------------------------------------------------------------------------


class BrandSerializer(serializers.ModelSerializer):
    """A partner's white label: its tenants' portal and invoices carry it."""

    id = serializers.CharField(source="public_id", read_only=True)
    name = serializers.CharField(read_only=True)
    brand_name = StrictCharField(max_length=120, required=False, allow_blank=True)
    brand_colour = serializers.RegexField(
        hex_colour.regex,
        required=False,
        error_messages={"invalid": "Give a colour as #rrggbb, e.g. #1f6feb."},
    )
    support_email = serializers.EmailField(max_length=254, required=False, allow_blank=True)
    logo = serializers.SerializerMethodField()

    class Meta:
        model = Partner
        fields = ["id", "name", "brand_name", "brand_colour", "support_email", "logo"]

    def get_logo(self, partner) -> str | None:
        return partner.logo.url if partner.logo else None


BrandChange = {
    "application/json": inline_serializer(
        "BrandChange",
        {
            "brand_name": serializers.CharField(required=False),
            "brand_colour": serializers.CharField(required=False),
            "support_email": serializers.EmailField(required=False),
            "logo": serializers.CharField(
                required=False, allow_null=True, help_text="null: remove the logo."
            ),
            "partner": serializers.CharField(required=False),
        },
    ),
    "multipart/form-data": inline_serializer(
        "BrandUpload",
        {
            "brand_name": serializers.CharField(required=False),
            "brand_colour": serializers.CharField(required=False),
            "support_email": serializers.EmailField(required=False),
            "logo": serializers.ImageField(
                required=False,
                help_text=f"PNG, JPEG, GIF or WebP, at most {LOGO_MAX_BYTES // 1024} KB.",
            ),
            "partner": serializers.CharField(required=False),
        },
    ),
}


def checked_logo(upload) -> tuple[bytes, str]:
    """The logo's bytes and extension: a real raster image, small, and no decompression bomb."""
    from PIL import Image

    size = getattr(upload, "size", None)
    if size is None or size > LOGO_MAX_BYTES:
        raise exceptions.ValidationError(
            {"logo": [f"The logo has {size} bytes; at most {LOGO_MAX_BYTES} (1 MB)."]}
        )
    data = upload.read()
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            kind = image.format
            width, height = image.size
            if kind not in LOGO_FORMATS:
                raise ValueError
            if width > LOGO_MAX_SIDE or height > LOGO_MAX_SIDE:
                raise exceptions.ValidationError(
                    {
                        "logo": [
                            f"The logo is {width}×{height} pixels; at most "
                            f"{LOGO_MAX_SIDE}×{LOGO_MAX_SIDE}."
                        ]
                    }
                )
            image.verify()
    except exceptions.ValidationError:
        raise
    except Exception:  # Pillow raises many kinds for a file that is not an image it reads
        raise exceptions.ValidationError(
            {"logo": ["Upload a PNG, JPEG, GIF or WebP image; this file is not one."]}
        ) from None
    return data, LOGO_FORMATS[kind]


class PartnerBrandView(PartnerConsoleViewSet):
    """A partner's white label (name, colour, support address, logo) shown to its tenants."""

    actions = {"show": "partner.billing.view", "change": "partner.brand.update"}
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(parameters=[PARTNER_PARAMETER], responses=BrandSerializer)
    def show(self, request):
        return Response(BrandSerializer(self.chosen_partner()).data)

    @extend_schema(
        parameters=[PARTNER_PARAMETER],
        request=BrandChange,
        responses={
            200: BrandSerializer,
            400: OpenApiResponse(
                description="A bad colour or email, or a logo that is not a small PNG, JPEG, GIF or WebP image."
            ),
        },
    )
    def change(self, request):
        data = request.data
        known = {"brand_name", "brand_colour", "support_email", "logo", "partner"}
        takes = ", ".join(sorted(known - {"partner"}))
        # An array, or a multipart body whose parts have no names, changes nothing: it is a mistake.
        if not hasattr(data, "keys") or not (set(data) | set(request.FILES)) - {"partner"}:
            raise exceptions.ValidationError(
                {"non_field_errors": [f"Send an object with what to change: {takes}."]}
            )
        partner = self.chosen_partner(data.get("partner"))
        unknown = sorted(set(data) - known)
        if unknown:
            raise exceptions.ValidationError(
                {unknown[0]: [f"Unknown field; a brand takes {takes}."]}
            )
        fields = {
            key: data[key] for key in ("brand_name", "brand_colour", "support_email") if key in data
        }
        payload = BrandSerializer(partner, data=fields, partial=True)
        payload.is_valid(raise_exception=True)
        logo = None
        remove_logo = False
        if "logo" in request.FILES:
            logo = checked_logo(request.FILES["logo"])
        elif "logo" in data:
            if data["logo"] in (None, ""):
                remove_logo = True
            else:
                raise exceptions.ValidationError(
                    {
                        "logo": [
                            "Upload the logo as a file (multipart/form-data), or send null to remove it."
                        ]
                    }
                )
        with transaction.atomic():
            for key, value in payload.validated_data.items():
                setattr(partner, key, value)
            if remove_logo:
                # The file stays: invoices issued under this brand keep naming it.
                partner.logo = ""
            if logo is not None:
                partner.logo.save(
                    f"{partner.public_id}.{logo[1]}", ContentFile(logo[0]), save=False
                )
            partner.full_clean(
                exclude=["parent", "name", "public_id"],
                validate_unique=False,
                validate_constraints=False,
            )
            partner.save()
        return Response(BrandSerializer(partner).data)


def partner_tenant_created(tenant, payload: dict, actor) -> None:
    """After a partner creates a tenant: the plan it named, if any (call it in the same transaction)."""
    if payload.get("plan") is not None:
        subscribe_new_tenant(
            tenant, payload["plan"], trial_days=payload.get("trial_days") or 0, actor=actor
        )
