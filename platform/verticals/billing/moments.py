"""Moments a client sends (aware date-times, read in UTC with an offset clocks use) and how a
moment is written back in messages: the API's filters and the usage ingest read them alike."""

from datetime import UTC, datetime, timedelta

# The UTC offsets clocks use (Baker Island's to Kiribati's). A wider one is a mistake, and
# PostgreSQL refuses any past ±15:59 ("time zone displacement out of range").
MIN_UTC_OFFSET, MAX_UTC_OFFSET = timedelta(hours=-12), timedelta(hours=14)


def as_utc(moment: datetime) -> datetime:
    """An aware date-time the client sent, in UTC; ValueError saying what to fix when its offset is
    none a clock uses or it leaves the years 1 to 9999 once in UTC (9999-12-31T23:59-05:00)."""
    offset = moment.utcoffset()
    if offset is not None and not MIN_UTC_OFFSET <= offset <= MAX_UTC_OFFSET:
        sign, minutes = (
            ("-" if offset < timedelta(0) else "+"),
            int(abs(offset).total_seconds()) // 60,
        )
        raise ValueError(
            f"Give a UTC offset from -12:00 to +14:00 (or Z), not {sign}{minutes // 60:02d}:{minutes % 60:02d}."
        )
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("Give a date and time between the years 1 and 9999 (UTC).") from None


def moment_text(moment: datetime) -> str:
    """A moment as the API writes it: ISO 8601 in UTC with a Z (2026-10-05T12:00:00Z)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
