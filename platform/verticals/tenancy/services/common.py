"""Checks shared by the tenancy services."""

from django.core.exceptions import ValidationError

from verticals.tenancy.caller import Caller
from verticals.tenancy.roles import grantable_roles


def check_grantable(*, caller: Caller, role: str, field_name: str = "role") -> None:
    allowed = grantable_roles(caller.role)
    if role not in allowed:
        names = ", ".join(allowed)
        raise ValidationError({field_name: f"Your role '{caller.role}' may grant only: {names}."})
