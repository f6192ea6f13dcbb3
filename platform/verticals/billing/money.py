"""Money and quantities without floats.

Amounts are integers of the currency's minor unit (cents, yen, fils): sums in the database are
exact on every backend. Unit prices are Decimals with up to 9 decimals (a token may cost a
millionth of a cent). An amount is rounded once, when an invoice line is made: half up.
Quantities are Decimals with 6 decimals, stored as integers of micro-units.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django.db import models

# ISO 4217 minor units of the currencies the platform bills in.
CURRENCY_DECIMALS: dict[str, int] = {
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "CHF": 2,
    "CAD": 2,
    "AUD": 2,
    "SGD": 2,
    "INR": 2,
    "BRL": 2,
    "ZAR": 2,
    "JPY": 0,
    "KRW": 0,
    "CLP": 0,
    "ISK": 0,
    "KWD": 3,
    "BHD": 3,
    "OMR": 3,
    "JOD": 3,
    "TND": 3,
}
CURRENCY_CHOICES = [(code, code) for code in sorted(CURRENCY_DECIMALS)]

QUANTITY_PLACES = 6
_MICRO = Decimal(10) ** QUANTITY_PLACES
PRICE_PLACES = 9
# Prices are stored with 24 digits, 9 of them decimals; quantities as 64-bit micro-units.
MAX_NUMBER = Decimal(10) ** 12


class MoneyError(ValueError):
    pass


def decimals_of(currency: str) -> int:
    try:
        return CURRENCY_DECIMALS[currency]
    except KeyError:
        raise MoneyError(
            f"Unknown currency '{currency}'; use one of {', '.join(sorted(CURRENCY_DECIMALS))}."
        ) from None


def to_minor(amount: Decimal, currency: str) -> int:
    """An exact or computed amount in the currency's minor units, rounded half up (the one rounding)."""
    places = decimals_of(currency)
    return int(
        (Decimal(amount) * (Decimal(10) ** places)).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    )


def from_minor(minor: int, currency: str) -> Decimal:
    places = decimals_of(currency)
    return (Decimal(int(minor)) / (Decimal(10) ** places)).quantize(Decimal(1).scaleb(-places))


def format_money(minor: int, currency: str) -> str:
    """'1,234.50 USD', '1,235 JPY', '12.345 KWD'."""
    places = decimals_of(currency)
    return f"{from_minor(minor, currency):,.{places}f} {currency}"


def as_decimal(value, *, field: str = "value", places: int | None = None) -> Decimal:
    """A Decimal from a string or int (never a float: it would carry binary noise); ValueError with a message."""
    if isinstance(value, float):
        raise MoneyError(f'{field}: give a decimal string such as "0.0025", not a float.')
    if isinstance(value, bool):
        raise MoneyError(f"{field}: give a number.")
    try:
        number = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError):
        raise MoneyError(f"{field}: '{value}' is not a number.") from None
    if not number.is_finite():
        raise MoneyError(f"{field}: give a finite number.")
    if abs(number) >= MAX_NUMBER:
        raise MoneyError(f"{field}: {value} is too large; give less than {MAX_NUMBER:,}.")
    if places is not None and number != number.quantize(
        Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP
    ):
        raise MoneyError(f"{field}: at most {places} decimals.")
    return number


def to_micro(quantity) -> int:
    number = as_decimal(quantity, field="quantity", places=QUANTITY_PLACES)
    return int(number * _MICRO)


def from_micro(micro: int) -> Decimal:
    return Decimal(int(micro)) / _MICRO  # exact, with no trailing zeros: 1.5, 100, 0.000001


class QuantityField(models.BigIntegerField):
    """A Decimal quantity with 6 decimals, stored as an integer of micro-units (exact sums in SQL)."""

    def from_db_value(self, value, expression, connection):
        return None if value is None else from_micro(value)

    def to_python(self, value):
        from django.core.exceptions import ValidationError

        if value is None or isinstance(value, Decimal):
            return value
        try:
            return as_decimal(value, field=self.name, places=QUANTITY_PLACES)
        except MoneyError as exc:
            raise ValidationError(str(exc)) from None

    def formfield(self, **kwargs):
        """A decimal field in forms (the admin): up to 6 decimals, never negative, below MAX_NUMBER."""
        from django import forms

        return forms.DecimalField(
            max_digits=19,
            decimal_places=QUANTITY_PLACES,
            min_value=0,
            max_value=MAX_NUMBER - Decimal("0.000001"),
            required=not self.blank,
            **{
                key: value
                for key, value in kwargs.items()
                if key in ("label", "help_text", "initial")
            },
        )

    def get_prep_value(self, value):
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value * int(_MICRO)
        return to_micro(value)

    def get_db_prep_value(self, value, connection, prepared=False):
        return value if prepared else self.get_prep_value(value)


# SQLite hands decimal columns back through a float: more than 15 significant digits would not
# come back as they went in, so no price may have more (on any database, for one rule).
PRICE_DIGITS = 15


def check_price_digits(value) -> None:
    from django.core.exceptions import ValidationError

    if (
        value is not None
        and Decimal(value).is_finite()
        and len(Decimal(value).normalize().as_tuple().digits) > PRICE_DIGITS
    ):
        raise ValidationError(f"{value} has more than {PRICE_DIGITS} significant digits; round it.")


def price_field(**kwargs) -> models.DecimalField:
    kwargs["validators"] = [*kwargs.get("validators", ()), check_price_digits]
    return models.DecimalField(max_digits=24, decimal_places=PRICE_PLACES, **kwargs)
