"""Query parameters of the billing routes (time ranges, months) and CSV negotiation."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from django.utils.dateparse import parse_date, parse_datetime
from rest_framework import exceptions

from verticals.api.billing.formatting import when
from verticals.api.params import whole_number
from verticals.billing.moments import as_utc

CSV = "text/csv"
MAX_MONTHS = 36


# --- query parameters -------------------------------------------------------------------------


def parse_when(name: str, value: str, *, end: bool = False) -> datetime:
    """An ISO date (its midnight UTC; for `end`, the day is included) or date-time (naive: UTC)."""
    hint = "Give an ISO date (2026-10-01) or date-time (2026-10-01T12:00:00Z; send '+' as %2B)."
    try:
        # first: a date alone would also parse as a date-time (its midnight)
        day = parse_date(value)
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
