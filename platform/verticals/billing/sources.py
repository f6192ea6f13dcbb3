"""Usage from outside the serving path: the job runner's CPU/GPU seconds and the daily storage snapshot."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Sum

from verticals.billing.metering import Usage, record
from verticals.tenancy.scoping import platform_scope

GB = Decimal(10) ** 9


def record_job_seconds(job, attempt: int, seconds: float, device: str = "cpu") -> None:
    """One event per job attempt: its CPU (or GPU) seconds; a redelivered finish counts once."""
    if seconds <= 0:
        return
    meter = "training.gpu_seconds" if device == "cuda" else "training.cpu_seconds"
    quantity = Decimal(str(seconds)).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)
    record(
        job.tenant,
        [
            Usage(
                meter=meter,
                quantity=quantity,
                idempotency_key=f"{job.public_id}:{attempt}",
                project=job.project,
                task=job.task,
                route=f"job.{job.kind}",
                details={"job": job.public_id, "attempt": attempt},
            )
        ],
        source="jobs",
    )


@platform_scope("the storage snapshot measures every tenant")
def snapshot_storage(day: date, at: datetime | None = None) -> int:
    """Each tenant's stored bytes (dataset uploads and model versions) now, as one GB-day for `day`,
    stamped `at` (default: noon that day); returns tenants recorded. The beat measures today and
    stamps it now, so the event lands in a period still open (a closed one would never bill it)."""
    from verticals.registry.models import DatasetVersion, ModelVersion
    from verticals.tenancy.models import Tenant

    # One pass over every tenant's rows is the snapshot's purpose: grouped by tenant.
    datasets = dict(
        DatasetVersion.dangerously_unscoped.values("tenant_id")
        .annotate(b=Sum("source_bytes"))
        .values_list("tenant_id", "b")
    )
    models = dict(
        ModelVersion.dangerously_unscoped.values("tenant_id")
        .annotate(b=Sum("size_bytes"))
        .values_list("tenant_id", "b")
    )  # likewise
    at = at or datetime.combine(day, time(12), tzinfo=UTC)
    count = 0
    for tenant in Tenant.objects.filter(pk__in=set(datasets) | set(models)):
        stored = Decimal((datasets.get(tenant.pk) or 0) + (models.get(tenant.pk) or 0))
        if not stored:
            continue
        record(
            tenant,
            [
                Usage(
                    meter="storage.gb_days",
                    quantity=(stored / GB).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP),
                    idempotency_key=f"storage:{day.isoformat()}",
                    occurred_at=at,
                    details={"bytes": int(stored)},
                )
            ],
            source="storage",
        )
        count += 1
    return count
