"""Reading a job's events: metric series, log tail, and events after an id (for SSE and polling).

Callers pass a job they reached through a scoped query, under its tenant's context.
"""

from __future__ import annotations

from verticals.jobs.models import Job, JobEvent

Type = JobEvent.Type


def event_dict(event: JobEvent) -> dict:
    return {"id": event.seq, "type": event.type, "at": event.created_at.isoformat(), **event.data}


def events_after(job: Job, after: int = 0, limit: int = 500) -> list[JobEvent]:
    return list(JobEvent.objects.filter(job=job, seq__gt=after).order_by("seq")[:limit])


def metric_points_after(
    job: Job, after: int = 0, limit: int | None = None
) -> tuple[dict[str, list[list[float]]], int | None]:
    """{metric name: [[step, value], …]} of the metric events after event `after`, in order, and
    the id of the last event read when `limit` cut the answer short (else None)."""
    rows = (
        JobEvent.objects.filter(job=job, type=Type.METRIC, seq__gt=after)
        .order_by("seq")
        .values_list("seq", "data")
    )
    rows = list(rows[:limit] if limit else rows)
    series: dict[str, list[list[float]]] = {}
    for _seq, data in rows:
        series.setdefault(data["name"], []).append([data["step"], data["value"]])
    return series, (rows[-1][0] if limit and len(rows) == limit else None)


def metric_series(job: Job, limit_per_metric: int = 2000) -> dict[str, list[list[float]]]:
    """{metric name: [[step, value], …]} in step order (the last `limit_per_metric` points of each)."""
    series, _cut = metric_points_after(job)
    return {name: points[-limit_per_metric:] for name, points in series.items()}


def log_tail(job: Job, lines: int = 100) -> list[dict]:
    """The last `lines` log lines, oldest first: {id, at, level, message}."""
    rows = JobEvent.objects.filter(job=job, type=Type.LOG).order_by("-seq")[:lines]
    return [
        {
            "id": e.seq,
            "at": e.created_at.isoformat(),
            "level": e.data.get("level", "info"),
            "message": e.data.get("message", ""),
        }
        for e in reversed(list(rows))
    ]
