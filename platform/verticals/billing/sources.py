"""Usage from outside the serving path: the job runner's CPU/GPU seconds and the daily storage snapshot."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_UP, Decimal

from verticals.billing.metering import Usage, record
from verticals.tenancy.models import Tenant
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


# What each app keeps per tenant, in bytes: functions returning {tenant id: bytes}, registered by
# the apps that store things (the registry: dataset uploads and model versions) when Django starts.
_storage_measures: list[Callable[[], dict[int, int]]] = []


def measures_storage(measure: Callable[[], dict[int, int]]) -> Callable[[], dict[int, int]]:
    """Count what `measure` returns in the daily storage snapshot (registered once)."""
    if measure not in _storage_measures:
        _storage_measures.append(measure)
    return measure


@platform_scope("the storage snapshot measures every tenant")
def snapshot_storage(day: date, at: datetime | None = None) -> int:
    """Each tenant's stored bytes (what every registered measure counts) now, as one GB-day for
    `day`, stamped `at` (default: noon that day); returns tenants recorded. The beat measures today
    and stamps it now, so the event lands in a period still open (a closed one would never bill it)."""
    stored_by_tenant: dict[int, int] = {}
    for measure in _storage_measures:
        for tenant_id, stored in measure().items():
            stored_by_tenant[tenant_id] = stored_by_tenant.get(tenant_id, 0) + (stored or 0)
    at = at or datetime.combine(day, time(12), tzinfo=UTC)
    count = 0
    for tenant in Tenant.objects.filter(pk__in=set(stored_by_tenant)):
        stored = Decimal(stored_by_tenant[tenant.pk])
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
