"""Usage: the tenant's summary (JSON or CSV) and the staff ingest of usage events from
external sources."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.http import Http404, HttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from verticals.api.base import (
    CallerAPIView,
)
from verticals.api.billing.formatting import decimal_text, page_of, when
from verticals.api.billing.queries import CSV, DownloadNegotiation, time_range, wants_csv
from verticals.api.filters import as_utc
from verticals.api.pagination import Pagination
from verticals.api.permissions import require_staff
from verticals.billing import analytics, documents, metering
from verticals.billing.catalog import meter_keys, period_of, standing
from verticals.billing.models import Invoice
from verticals.billing.money import (
    QUANTITY_PLACES,
    MoneyError,
    as_decimal,
)
from verticals.tenancy.models import Project, Tenant
from verticals.tenancy.scoping import tenant_context

MAX_EVENTS = 1000
MAX_QUANTITY = Decimal(10) ** 12  # micro-units of this still fit a 64-bit integer
FUTURE_SLACK = timedelta(minutes=5)
SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,54}$")


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
