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


def metric_series(job: Job, limit_per_metric: int = 2000) -> dict[str, list[list[float]]]:
    """{metric name: [[step, value], …]} in step order (the last `limit_per_metric` points of each)."""
    series: dict[str, list[list[float]]] = {}
    for data in JobEvent.objects.filter(job=job, type=Type.METRIC).order_by("seq").values_list("data", flat=True):
        series.setdefault(data["name"], []).append([data["step"], data["value"]])
    return {name: points[-limit_per_metric:] for name, points in series.items()}


def log_tail(job: Job, lines: int = 100) -> list[dict]:
    """The last `lines` log lines, oldest first: {id, at, level, message}."""
    rows = JobEvent.objects.filter(job=job, type=Type.LOG).order_by("-seq")[:lines]
    return [{"id": e.seq, "at": e.created_at.isoformat(), "level": e.data.get("level", "info"), "message": e.data.get("message", "")}
            for e in reversed(list(rows))]
