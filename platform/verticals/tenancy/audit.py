"""The audit log: one row per admin-relevant action, in the affected tenant."""

from __future__ import annotations

from typing import TYPE_CHECKING

from verticals.tenancy.models import AuditEvent, Tenant
from verticals.tenancy.scoping import tenant_context

if TYPE_CHECKING:
    from verticals.tenancy.caller import Caller


def audit_record(
    *, tenant: Tenant, actor: Caller | None, action: str, target, details: dict | None = None
) -> AuditEvent:
    # Partner staff act on a tenant from outside it: the row belongs to the affected tenant.
    with tenant_context(tenant):
        return AuditEvent.objects.create(
            tenant=tenant,
            action=action,
            actor=actor.label if actor else "system",
            actor_user=actor.user if actor else None,
            actor_api_key=actor.api_key if actor else None,
            target_type=type(target).__name__.lower(),
            target_id=target.public_id,
            details=details or {},
        )
