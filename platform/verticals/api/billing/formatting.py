"""How billing values go out (money, unit prices, quantities, moments) and the schema shapes
of those dicts.

Money goes out as {"amount": "12.30", "currency": "USD", "minor": 1230}, unit prices as
{"amount": "0.0025", "currency": "USD"} and quantities as decimal strings: never floats.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from drf_spectacular.utils import (
    inline_serializer,
)
from rest_framework import serializers

from verticals.billing.money import (
    decimals_of,
    from_minor,
    to_minor,
)

# --- how values go out ----------------------------------------------------------------------


def money(minor: int, currency: str) -> dict:
    return {"amount": str(from_minor(minor, currency)), "currency": currency, "minor": int(minor)}


def money_list(by_currency: dict) -> list[dict]:
    """{currency: minor} (analytics' shape) as a list of money, by currency."""
    return [money(minor, currency) for currency, minor in sorted(by_currency.items())]


def decimal_text(value: Decimal | None) -> str | None:
    """A Decimal as a plain string without trailing zeros or exponent: 1.5, 100, 0.000001."""
    if value is None:
        return None
    text = format(Decimal(value).normalize(), "f")
    return "0" if text in ("-0", "") else text


def price(value: Decimal | None, currency: str) -> dict | None:
    """A unit price: at least the currency's decimals (49.00), more when it has them (0.0025)."""
    if value is None:
        return None
    value = Decimal(value).normalize()
    places = decimals_of(currency)
    if value.as_tuple().exponent > -places:
        value = value.quantize(Decimal(1).scaleb(-places))
    return {"amount": format(value, "f"), "currency": currency}


def fee_money(fee: Decimal, currency: str) -> dict:
    return money(to_minor(fee, currency), currency)


def quantities(by_meter: dict) -> dict:
    return {meter: decimal_text(value) for meter, value in sorted(by_meter.items())}


def when(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value.isoformat()


# --- schema shapes (what the dicts above look like) -------------------------------------------


class MoneySerializer(serializers.Serializer):
    amount = serializers.CharField(
        help_text="Decimal string in the currency's units, e.g. 12.30 (never a float)."
    )
    currency = serializers.CharField(help_text="ISO 4217 code.")
    minor = serializers.IntegerField(
        help_text="The amount in the currency's minor units (cents), exact."
    )


class UnitPriceSerializer(serializers.Serializer):
    amount = serializers.CharField(help_text="Decimal string, up to 9 decimals, e.g. 0.0025.")
    currency = serializers.CharField()


def page_of(name: str, child, **extra):
    """A paginated answer's shape with `extra` fields beside the rows."""
    return inline_serializer(
        name,
        {
            "count": serializers.IntegerField(),
            "next": serializers.CharField(allow_null=True),
            "previous": serializers.CharField(allow_null=True),
            "results": child,
            **extra,
        },
    )


def quantity_map():
    return serializers.DictField(
        child=serializers.CharField(), help_text="Units per meter, as decimal strings."
    )
