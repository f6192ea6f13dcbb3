"""Jobs under /api/v1/projects/{project_id}/jobs/: create, list, inspect, cancel, follow (SSE), deliveries.

The event stream is a server-sent-events response over the job's `JobEvent` rows: it replays
what follows the client's Last-Event-ID, then polls for new rows and ends once it has sent the
job's terminal status event. One poll function serves both servers: a sync generator under
WSGI, an async generator under ASGI (where Django would buffer a sync iterator whole).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.handlers.asgi import ASGIRequest
from django.core.serializers.json import DjangoJSONEncoder
from django.db import close_old_connections, connection
from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import exceptions, mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from verticals.api import filters
from verticals.api.base import ProjectScopedViewSet
from verticals.api.params import MAX_INT
from verticals.api.serializers import StrictCharField, StrictSerializer
from verticals.jobs import engine, selectors, webhooks
from verticals.jobs.models import Job, JobEvent, WebhookDelivery
from verticals.registry import storage
from verticals.tenancy.scoping import tenant_context

EVENT_STREAM = "text/event-stream"
LOG_TAIL_LINES = 50
# Events one poll reads at a time; a client far behind gets the rest in the same poll.
EVENTS_PER_READ = 500
MAX_EVENT_ID = MAX_INT
EVENT_ID = {"type": "integer", "minimum": 0, "maximum": MAX_EVENT_ID}


# --- request shapes -----------------------------------------------------------------------


@extend_schema_field({"type": "object", "additionalProperties": True})
class JsonObjectField(serializers.JSONField):
    """A JSON object ({…}); any other JSON value is a wrong type."""

    default_error_messages = {
        "not_object": "Give a JSON object ({{…}}), not {kind}.",
        "null": "Give a JSON object ({{…}}), not null.",
    }

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            self.fail("not_object", kind=_json_kind(value))
        return value


def _json_kind(value) -> str:
    if value is None:
        return "null"
    return {
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


class JobWebhookInputSerializer(serializers.Serializer):
    url = serializers.URLField(
        help_text="Where to POST the signed messages (http or https, public addresses)."
    )
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=webhooks.EVENTS),
        required=False,
        help_text="Which messages to send: start, progress (throttled), completed. Default: completed.",
    )
    secret = serializers.CharField(
        required=False,
        help_text="A Standard Webhooks secret (whsec_…); one is generated when left out.",
    )


@extend_schema_field(JobWebhookInputSerializer)
class JobWebhookField(JsonObjectField):
    """The webhook part of a create request; `engine.job_create` checks what is inside."""


class JobCreateSerializer(StrictSerializer):
    takes = "a job takes {fields}"

    kind = StrictCharField(max_length=64, help_text="The job kind (its runner), e.g. `train`.")
    task = StrictCharField(
        max_length=64,
        required=False,
        allow_blank=True,
        help_text="The plugin task the job serves, if any.",
    )
    params = JsonObjectField(
        required=False, help_text="Parameters, validated against the JSON schema of the kind."
    )
    webhook = JobWebhookField(
        required=False,
        allow_null=True,
        help_text="Signed messages about the job (Standard Webhooks).",
    )


# --- response shapes ----------------------------------------------------------------------


class JobProgressSerializer(serializers.Serializer):
    current = serializers.FloatField()
    total = serializers.FloatField(allow_null=True)
    percent = serializers.FloatField(allow_null=True)
    description = serializers.CharField()
    eta_seconds = serializers.FloatField(allow_null=True)


class JobErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField(help_text="What went wrong, in words meant for the customer.")
    traceback = serializers.CharField(
        required=False, allow_null=True, help_text="Staff sessions only."
    )


class JobWebhookSerializer(serializers.Serializer):
    url = serializers.URLField()
    events = serializers.ListField(child=serializers.ChoiceField(choices=webhooks.EVENTS))
    secret = serializers.CharField(
        required=False, help_text="In the create answer only: verify signatures with it."
    )


class JobSerializer(serializers.ModelSerializer):
    """A job: what it runs, where it stands, how it ended."""

    # Context: `caller` (tracebacks are for staff sessions), `show_secret` (the create answer only).

    id = serializers.CharField(source="public_id", read_only=True)
    project = serializers.CharField(source="project.public_id", read_only=True)
    status = serializers.ChoiceField(choices=Job.Status.choices, read_only=True)
    progress = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    webhook = serializers.SerializerMethodField()
    worker = serializers.SerializerMethodField()
    created_by = serializers.EmailField(source="created_by.email", read_only=True, allow_null=True)

    class Meta:
        model = Job
        fields = [
            "id",
            "project",
            "kind",
            "task",
            "queue",
            "status",
            "params",
            "progress",
            "result",
            "error",
            "attempt",
            "max_attempts",
            "worker",
            "heartbeat_at",
            "created_at",
            "started_at",
            "finished_at",
            "cancel_requested_at",
            "resource_seconds",
            "webhook",
            "created_by",
        ]
        read_only_fields = fields

    @extend_schema_field(JobProgressSerializer)
    def get_progress(self, job: Job) -> dict:
        return {
            "current": job.progress_current,
            "total": job.progress_total,
            "percent": job.percent,
            "description": job.progress_description,
            "eta_seconds": job.eta_seconds,
        }

    @extend_schema_field(JobErrorSerializer(allow_null=True))
    def get_error(self, job: Job) -> dict | None:
        if not (job.error_code or job.error_message):
            return None
        error = {"code": job.error_code, "message": job.error_message}
        if _is_staff_session(self.context.get("caller")):
            error["traceback"] = job.error_traceback or None
        return error

    @extend_schema_field(
        serializers.CharField(
            allow_null=True, help_text="The worker process (staff sessions only)."
        )
    )
    def get_worker(self, job: Job) -> str | None:
        return job.worker if _is_staff_session(self.context.get("caller")) else None

    @extend_schema_field(JobWebhookSerializer(allow_null=True))
    def get_webhook(self, job: Job) -> dict | None:
        if not job.webhook_url:
            return None
        hook = {"url": job.webhook_url, "events": list(job.webhook_events)}
        if self.context.get("show_secret"):
            hook["secret"] = job.webhook_secret
        return hook


class JobDetailSerializer(JobSerializer):
    """A job with its metric series and the tail of its log."""

    metrics = serializers.SerializerMethodField()
    log_tail = serializers.SerializerMethodField()

    class Meta(JobSerializer.Meta):
        fields = JobSerializer.Meta.fields + ["metrics", "log_tail"]
        read_only_fields = fields

    @extend_schema_field(
        {
            "type": "object",
            "description": "{metric name: [[step, value], …]} in step order.",
            "additionalProperties": {
                "type": "array",
                "items": {"type": "array", "items": {"type": "number"}},
            },
        }
    )
    def get_metrics(self, job: Job) -> dict:
        return selectors.metric_series(job)

    @extend_schema_field(
        inline_serializer(
            "JobLogLine",
            {
                "id": serializers.IntegerField(),
                "at": serializers.DateTimeField(),
                "level": serializers.CharField(),
                "message": serializers.CharField(),
            },
            many=True,
        )
    )
    def get_log_tail(self, job: Job) -> list[dict]:
        return selectors.log_tail(job, LOG_TAIL_LINES)


class WebhookDeliverySerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    tries = serializers.ListField(
        child=serializers.DictField(),
        read_only=True,
        help_text="The last tries, oldest first: {at, status, error, ms}.",
    )

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event_type",
            "status",
            "attempts",
            "response_status",
            "last_error",
            "tries",
            "created_at",
            "delivered_at",
            "next_attempt_at",
        ]
        read_only_fields = fields


def _is_staff_session(caller) -> bool:
    """Tracebacks are for staff people signed in, never for API keys (whoever made the key)."""
    return (
        caller is not None
        and caller.api_key is None
        and caller.user is not None
        and caller.user.is_staff
    )


class JobFinished(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "job_finished"
    default_detail = "The job has already finished; there is nothing to cancel."


class IdempotencyKeyReused(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "idempotency_key_reused"
    default_detail = (
        "This Idempotency-Key was used for another request; use a new key for a new job."
    )


def _idempotency_key(request) -> str:
    """The Idempotency-Key header: a retried create with the same key gets the same job back."""
    key = request.headers.get("Idempotency-Key", "").strip()
    if key and (len(key) > 200 or not key.isprintable()):
        raise exceptions.ValidationError(
            {"Idempotency-Key": ["Give at most 200 printable characters (a UUID is a good key)."]}
        )
    return key


# --- the event stream ---------------------------------------------------------------------


def sse_event(event: JobEvent) -> bytes:
    data = json.dumps(selectors.event_dict(event), cls=DjangoJSONEncoder, separators=(",", ":"))
    return f"id: {event.seq}\nevent: {event.type}\ndata: {data}\n\n".encode()


KEEPALIVE = b": keep-alive\n\n"


class JobEventStream:
    """One client's view of a job's events from an id on; `poll()` returns what to send next.

    The stream is read after the view has returned, when the request's tenant context is gone:
    each poll enters the tenant's context again.
    """

    def __init__(self, job: Job, *, tenant, after: int):
        self.job = job
        self.tenant = tenant
        self.after = after
        self.finished = False
        self.poll_seconds = settings.JOBS_SSE_POLL_SECONDS
        self.keepalive_seconds = settings.JOBS_SSE_KEEPALIVE_SECONDS
        now = time.monotonic()
        self.deadline = now + settings.JOBS_SSE_MAX_SECONDS
        self.last_sent = now

    def poll(self) -> list[bytes]:
        """The events after the last one sent (up to and including a terminal status event)."""
        chunks: list[bytes] = []
        with tenant_context(self.tenant):
            while True:
                # The row first, then the events: when the row says the job ended, the events read
                # next include its terminal status event (written in the same transaction).
                row = Job.objects.filter(pk=self.job.pk).values("status", "event_seq").first()
                if row is None:  # the job (its project) was deleted meanwhile
                    self.finished = True
                    break
                events = selectors.events_after(self.job, self.after, limit=EVENTS_PER_READ)
                for event in events:
                    chunks.append(sse_event(event))
                    self.after = event.seq
                    if (
                        event.type == JobEvent.Type.STATUS
                        and event.data.get("status") in Job.TERMINAL
                    ):
                        self.finished = True
                        break
                if self.finished:
                    break
                if row["status"] in Job.TERMINAL and self.after >= row["event_seq"]:
                    self.finished = True  # a replay that started after the terminal event
                    break
                if len(events) < EVENTS_PER_READ:
                    break
        # A stream lives long: it keeps no database connection between polls (per CONN_MAX_AGE),
        # except inside an atomic block (a test's transaction), which closing would break.
        if not connection.in_atomic_block:
            close_old_connections()
        now = time.monotonic()
        if chunks:
            self.last_sent = now
        elif not self.finished and now - self.last_sent >= self.keepalive_seconds:
            chunks.append(KEEPALIVE)
            self.last_sent = now
        if now >= self.deadline:
            self.finished = True  # the client reconnects with Last-Event-ID
        return chunks

    def wait_seconds(self) -> float:
        return max(0.0, min(self.poll_seconds, self.deadline - time.monotonic()))

    def sync_chunks(self) -> Iterator[bytes]:
        """For WSGI: polls in the thread that serves the request (each poll releases its connection)."""
        while True:
            yield from self.poll()
            if self.finished:
                return
            time.sleep(self.wait_seconds())

    async def async_chunks(self) -> AsyncIterator[bytes]:
        """For ASGI: polls in the request's thread-sensitive executor, waits on the event loop.

        Thread-sensitive sync_to_async runs every poll in the one thread Django gives this
        request; each poll releases the connection it used.
        """
        poll = sync_to_async(self.poll, thread_sensitive=True)
        while True:
            for chunk in await poll():
                yield chunk
            if self.finished:
                return
            await asyncio.sleep(self.wait_seconds())


def _last_event_id(request) -> int:
    """Where to start: the Last-Event-ID header (a reconnecting EventSource) or `last_event_id`."""
    raw = request.headers.get("Last-Event-ID")
    field = "Last-Event-ID"
    if raw is None or not raw.strip():
        raw, field = request.query_params.get("last_event_id"), "last_event_id"
    if raw is None or not raw.strip():
        return 0
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if value < 0 or value > MAX_EVENT_ID:
        raise exceptions.ValidationError(
            {
                field: [
                    f"Give the id of the last event you received (a whole number, 0 or more), not '{raw[:40]}'."
                ]
            }
        )
    return value


EVENTS_DESCRIPTION = """\
A `text/event-stream` of the job's events, oldest first. Each event is

    id: <event id>
    event: status | progress | metric | log
    data: {"id": …, "type": …, "at": "…", …}

with `data` by type: status `{status, attempt, error, result}`, progress `{current, total,
description, eta_seconds}`, metric `{step, name, value}`, log `{level, message}`.

The stream sends every event after `Last-Event-ID` (the header a reconnecting EventSource sends,
or the `last_event_id` query parameter; 0 or none: from the start), then new ones as they come,
with a `: keep-alive` comment line when nothing happened for a while. It ends after the job's
terminal status event (`succeeded`, `failed` or `cancelled`; for a finished job: the replay, then
the end), or after a time limit: reconnect with the last id you received to go on.
"""


# One event of the stream, as OpenAPI (before 3.2's `itemSchema`) describes a text/event-stream.
SSE_EVENT = {
    "type": "object",
    "properties": {
        "id": {
            "type": "string",
            "description": "The event's id: send it back as Last-Event-ID to go on after it.",
        },
        "event": {"type": "string", "enum": ["status", "progress", "metric", "log"]},
        "data": {
            "type": "string",
            "description": "The event as JSON: `{id, type, at, …}` (see above).",
        },
    },
    "required": ["id", "event", "data"],
}


# --- the resource -------------------------------------------------------------------------


class JobViewSet(mixins.ListModelMixin, ProjectScopedViewSet):
    """Jobs of one project: long work (training, optimization, batch predictions) run by workers."""

    model = Job
    serializer_class = JobSerializer
    filterset_class = filters.JobFilter
    ordering_fields = ["created_at", "finished_at"]
    lookup_url_kwarg = "job_id"
    actions = {
        "list": "job.view",
        "retrieve": "job.view",
        "events": "job.view",
        "deliveries": "job.view",
        "create": "job.create",
        "cancel": "job.cancel",
        # A job's output file (a batch_predict's predictions) echoes its dataset's rows, refs and
        # labels: reading it is a dataset download.
        "output": "dataset.download",
    }

    def perform_content_negotiation(self, request, force=False):
        # An EventSource asks for `text/event-stream`, which no renderer makes: the stream is a
        # StreamingHttpResponse, and the errors this view raises are JSON like everywhere else.
        if EVENT_STREAM in request.META.get("HTTP_ACCEPT", ""):
            force = True
        return super().perform_content_negotiation(request, force)

    def scope_queryset(self, queryset):
        return super().scope_queryset(queryset).select_related("project", "created_by")

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "caller": self.caller}

    def _answer(
        self, job: Job, *, detail: bool = True, show_secret: bool = False, status_code: int = 200
    ) -> Response:
        context = {**self.get_serializer_context(), "show_secret": show_secret}
        serializer = (JobDetailSerializer if detail else JobSerializer)(job, context=context)
        return Response(serializer.data, status=status_code)

    def _reload(self, job: Job) -> Job:
        return self.get_queryset().get(pk=job.pk)

    @extend_schema(
        request=JobCreateSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                required=False,
                description="Make retries safe: a create with a key used before answers the job it made "
                "(with the header Idempotent-Replayed: true); the same key with another request is a 422.",
            )
        ],
        responses={
            201: JobSerializer,
            422: OpenApiResponse(description="The Idempotency-Key was used for another request."),
        },
    )
    def create(self, request, project_id=None):
        """Queue a job; it starts when a worker is free and the tenant is under its running limit."""
        project = self.get_project()
        payload = JobCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        try:
            job = engine.job_create(
                project=project,
                kind=data["kind"],
                params=data.get("params"),
                task=data.get("task", ""),
                caller=self.caller,
                webhook=data.get("webhook"),
                idempotency_key=_idempotency_key(request),
            )
        except engine.IdempotencyConflict as conflict:
            raise IdempotencyKeyReused(str(conflict)) from None
        # The job as it was made (a worker may already have started it by now: the events say so).
        answer = self._answer(
            job, detail=False, show_secret=True, status_code=status.HTTP_201_CREATED
        )
        if job.replayed:
            answer["Idempotent-Replayed"] = "true"
        return answer

    @extend_schema(responses=JobDetailSerializer)
    def retrieve(self, request, project_id=None, job_id=None):
        """A job with its metric series and the last lines of its log."""
        return self._answer(self.get_object())

    @extend_schema(
        request=None,
        responses={
            200: JobSerializer,
            409: OpenApiResponse(description="The job has already finished."),
        },
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    def cancel(self, request, project_id=None, job_id=None):
        """Cancel a queued job at once; ask a running one to stop (it does at its next progress report)."""
        job = self.get_object()
        try:
            job = engine.request_cancel(job, self.caller)
        except DjangoValidationError as finished:  # it had finished (perhaps just now)
            raise JobFinished(finished.messages[0]) from None
        return self._answer(self._reload(job), detail=False)

    @extend_schema(responses=WebhookDeliverySerializer(many=True))
    @action(detail=True, methods=["get"], filter_backends=[])
    def deliveries(self, request, project_id=None, job_id=None):
        """The job's webhook delivery log, newest first: every message and each try to deliver it."""
        job = self.get_object()
        rows = WebhookDelivery.objects.filter(job=job).order_by("-created_at", "-id")
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)

    @extend_schema(
        summary="Follow the job's events (server-sent events)",
        description=EVENTS_DESCRIPTION,
        parameters=[
            OpenApiParameter(
                "Last-Event-ID",
                {"anyOf": [EVENT_ID, {"type": "string", "maxLength": 0}]},
                OpenApiParameter.HEADER,
                required=False,
                description="Send the events after this id (a reconnecting EventSource sets it; empty: "
                "none received).",
            ),
            OpenApiParameter(
                "last_event_id",
                EVENT_ID,
                OpenApiParameter.QUERY,
                required=False,
                description="The same, for clients that cannot set headers; the header wins.",
            ),
        ],
        responses={
            (200, EVENT_STREAM): OpenApiResponse(
                response=SSE_EVENT,
                description="The event stream (the schema is one event's).",
                examples=[
                    OpenApiExample(
                        "events",
                        value=(
                            'id: 7\nevent: progress\ndata: {"id":7,"type":"progress","at":"2026-01-01T12:00:00+00:00",'
                            '"current":3.0,"total":10.0,"description":"epoch 3","eta_seconds":12.5}\n\n'
                            'id: 8\nevent: status\ndata: {"id":8,"type":"status","at":"2026-01-01T12:00:13+00:00",'
                            '"status":"succeeded","attempt":1,"error":null,"result":{"accuracy":0.97}}\n\n'
                        ),
                        media_type=EVENT_STREAM,
                    )
                ],
            ),
            400: OpenApiResponse(description="Last-Event-ID is not a whole number."),
        },
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def events(self, request, project_id=None, job_id=None):
        job = self.get_object()
        after = _last_event_id(request)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        if request.method == "HEAD":  # the headers only: no stream to hold open for nobody
            return HttpResponse(content_type=EVENT_STREAM, headers=headers)
        stream = JobEventStream(job, tenant=self.caller.tenant, after=after)
        if isinstance(request._request, ASGIRequest):
            content = stream.async_chunks()
        else:
            content = stream.sync_chunks()
        return StreamingHttpResponse(content, content_type=EVENT_STREAM, headers=headers)

    @extend_schema(
        responses={
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            404: OpenApiResponse(description="The job wrote no file (yet)."),
        }
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def output(self, request, project_id=None, job_id=None):
        """The file a job wrote (a batch_predict job's predictions, as JSON lines)."""
        from django.http import FileResponse

        job = self.get_object()
        output = (job.result or {}).get("output") if job.status == Job.Status.SUCCEEDED else None
        if not output:
            raise exceptions.NotFound(
                "This job has no output file: only a succeeded batch_predict job writes one."
            )
        handle = storage.open_stored(output["storage_prefix"], output["file"])
        return FileResponse(
            handle, as_attachment=True, filename=f"{job.public_id}-{output['file']}"
        )
