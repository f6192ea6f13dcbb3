"""Query parameters and headers the views read by hand (not through a filter set or a serializer)."""

import sys

from rest_framework import exceptions

# The largest number a query may compare with an integer column: every database's int holds it.
MAX_INT = 2**31 - 1


def whole_number(
    raw: str | None, *, name: str, low: int, high: int, default: int | None = None
) -> int | None:
    """`raw` as a whole number from `low` to `high` (`default` when it is absent or empty); otherwise 400
    naming the parameter. Only ASCII digits count ('²' and '١' are digits to str.isdigit()), and
    the length is checked before int() reads them (int() refuses over 4,300 digits)."""
    if raw is None or raw == "":  # an empty parameter counts as absent, as everywhere in the API
        return default
    if not (
        raw.isascii() and raw.isdecimal() and len(raw) <= len(str(high)) and low <= int(raw) <= high
    ):
        raise exceptions.ValidationError(
            {name: [f"Give a whole number from {low} to {high}, not '{raw[:40]}'."]}
        )
    return int(raw)


def content_length(request) -> int:
    """The body's declared length: 0 when absent or not a number, and a length no limit takes when
    it has more digits than any real body (int() would refuse 4,300 of them)."""
    raw = request.META.get("CONTENT_LENGTH") or ""
    if not (raw.isascii() and raw.isdecimal()):
        return 0
    return int(raw) if len(raw) <= 18 else sys.maxsize
