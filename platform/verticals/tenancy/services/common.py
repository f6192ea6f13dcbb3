"""Pieces shared by the tenancy services: the granting check and audited revocation."""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from verticals.tenancy.audit import audit_record
from verticals.tenancy.caller import Caller
from verticals.tenancy.roles import grantable_roles


def revoke_once(*, row, actor: Caller | None, action: str, details: dict):
    """Set `revoked_at` on a key or an invitation and audit it; a second revoke changes nothing."""
    if row.revoked_at is None:
        with transaction.atomic():
            row.revoked_at = timezone.now()
            row.save(update_fields=["revoked_at"])
            audit_record(tenant=row.tenant, actor=actor, action=action, target=row, details=details)
    return row


def check_grantable(*, caller: Caller, role: str, field_name: str = "role") -> None:
    allowed = grantable_roles(caller.role)
    if role not in allowed:
        names = ", ".join(allowed)
        raise ValidationError({field_name: f"Your role '{caller.role}' may grant only: {names}."})
