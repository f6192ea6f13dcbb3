"""Jobs and what they leave behind: events (status, progress, metric, log), effects, webhook deliveries."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from verticals.tenancy.ids import PublicIdField
from verticals.tenancy.scoping import TenantOwnedModel


class Job(TenantOwnedModel):
    """One unit of long work: the row is the truth; a broker message only says "run job X"."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})
    replayed = False  # set by engine.job_create on a job an earlier create with the same Idempotency-Key made

    public_id = PublicIdField(prefix="job")
    project = models.ForeignKey("tenancy.Project", on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=64)
    task = models.CharField(
        max_length=64, blank=True, help_text="The plugin task the job serves, if any."
    )
    queue = models.CharField(max_length=32)
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True
    )

    progress_current = models.FloatField(default=0)
    progress_total = models.FloatField(null=True, blank=True)
    progress_description = models.CharField(max_length=200, blank=True)
    eta_seconds = models.FloatField(null=True, blank=True)

    result = models.JSONField(default=dict, blank=True)
    checkpoint = models.JSONField(
        null=True, blank=True, help_text="The runner's last saved state; a rerun resumes from it."
    )
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True, help_text="Shown to the customer.")
    error_traceback = models.TextField(blank=True, help_text="Staff only.")

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    attempt = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=1)
    heartbeat_ttl = models.FloatField(
        default=60, help_text="Seconds of silence after which the reaper acts (from the kind)."
    )
    time_limit = models.FloatField(
        null=True, blank=True, help_text="Seconds a run may take (from the kind); none: no limit."
    )
    resource_seconds = models.FloatField(default=0, help_text="CPU seconds used by all attempts.")

    created_by = models.ForeignKey(
        "tenancy.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    api_key = models.ForeignKey(
        "tenancy.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    webhook_url = models.URLField(max_length=2000, blank=True)
    webhook_events = models.JSONField(default=list, blank=True)
    webhook_secret = models.CharField(max_length=100, blank=True)
    webhook_progress_sent_at = models.DateTimeField(null=True, blank=True)

    event_seq = models.PositiveIntegerField(default=0, help_text="The id of the job's last event.")
    # A client's Idempotency-Key: a retried create with the same key gets this job back.
    idempotency_key = models.CharField(max_length=200, blank=True)
    request_hash = models.CharField(
        max_length=64, blank=True, help_text="What the keyed create asked for."
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="job_idempotency_key_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "status", "created_at"], name="job_fair_share"),
            models.Index(fields=["status", "heartbeat_at"], name="job_reaper"),
            models.Index(fields=["tenant", "project", "created_at"], name="job_list"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} ({self.kind}, {self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL

    @property
    def percent(self) -> float | None:
        if not self.progress_total:
            return None
        return round(min(100.0, 100.0 * self.progress_current / self.progress_total), 1)


class JobEvent(TenantOwnedModel):
    """What happened to a job, in order: `seq` is the SSE event id (per job, gap-free)."""

    class Type(models.TextChoices):
        STATUS = "status", "Status"
        PROGRESS = "progress", "Progress"
        METRIC = "metric", "Metric"
        LOG = "log", "Log"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=16, choices=Type.choices)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["job", "seq"]
        constraints = [models.UniqueConstraint(fields=["job", "seq"], name="job_event_seq_unique")]
        indexes = [models.Index(fields=["job", "type", "seq"], name="job_event_type")]


class JobEffect(TenantOwnedModel):
    """A side effect a runner made once (`JobContext.once`): a rerun finds it and skips it."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="effects")
    key = models.CharField(max_length=200)
    attempt = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "key"], name="job_effect_once")]


class WebhookDelivery(TenantOwnedModel):
    """One webhook message about a job and every try to deliver it."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    public_id = PublicIdField(prefix="whd")
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="deliveries")
    message_id = models.CharField(
        max_length=40, unique=True, help_text="The webhook-id header: the same on every try."
    )
    event_type = models.CharField(max_length=32)
    payload = models.JSONField()
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    tries = models.JSONField(
        default=list, blank=True, help_text="Every try: when, HTTP status or error, milliseconds."
    )
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
