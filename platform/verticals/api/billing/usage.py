"""Usage: the tenant's summary (JSON or CSV) and the staff ingest of usage events from
external sources."""

from __future__ import annotations

from datetime import timedelta

from django.http import Http404, HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from verticals.api.base import (
    CallerAPIView,
)
from verticals.api.billing.formatting import decimal_text, page_of, when
from verticals.api.billing.queries import CSV, DownloadNegotiation, time_range, wants_csv
from verticals.api.pagination import Pagination
from verticals.api.permissions import require_staff
from verticals.api.serializers import AsSentField, StrictCharField, StrictSerializer
from verticals.billing import analytics, documents
from verticals.billing.catalog import meter_keys, period_of, standing
from verticals.billing.usage_events import (
    MAX_EVENTS,
    usage_events_check,
    usage_events_record,
    usage_source_name,
)
from verticals.tenancy.models import Project

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


UsageEventIn = inline_serializer(
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
)


@extend_schema_field(UsageEventIn)
class UsageEventListField(AsSentField):
    """The events as sent: the ledger's rules check each (usage_events_check), naming
    events[i].field in every problem."""


# A batch of usage events from one external source (no docstring: the schema's text stays as it was).
class UsageEventsSerializer(StrictSerializer):
    takes = "send source and events"
    not_an_object = {"events": ['Send {"source": "external:<name>", "events": [...]}.']}

    source = StrictCharField(
        help_text="external:<name> or <name> (lower case, digits, . _ -).",
        error_messages={
            key: "Name the source: external:<name> or <name>."
            for key in ("required", "blank", "null")
        },
    )
    events = UsageEventListField(
        allow_blank=True,  # a list, not a string: no minLength in the document
        error_messages={"required": "Give a non-empty list of events."},
    )

    def validate_source(self, value) -> str:
        return usage_source_name(value)

    def validate_events(self, value) -> list:
        if not isinstance(value, list) or not value:
            raise serializers.ValidationError("Give a non-empty list of events.")
        if len(value) > MAX_EVENTS:
            raise serializers.ValidationError(
                f"{len(value)} events; send at most {MAX_EVENTS} per request."
            )
        return value


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


class UsageEventsView(CallerAPIView):
    """Usage from a staff-run external source, counted once per (tenant, source, idempotency key)."""

    def required_action(self) -> str | None:
        return None  # staff only, checked in post(): the events name their tenants

    @extend_schema(
        request=UsageEventsSerializer,
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
        payload = UsageEventsSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        batch = usage_events_check(events=payload.validated_data["events"])
        if batch.problems:
            raise exceptions.ValidationError(batch.problems)
        recorded = usage_events_record(batch=batch, source=payload.validated_data["source"])
        new = [usage.idempotency_key for _, usage, fresh in recorded if fresh]
        duplicate = [usage.idempotency_key for _, usage, fresh in recorded if not fresh]
        body = {
            "accepted": len(new),
            "duplicates": len(duplicate),
            "keys": {"new": new, "duplicate": duplicate},
        }
        return Response(body, status=status.HTTP_201_CREATED if new else status.HTTP_200_OK)
