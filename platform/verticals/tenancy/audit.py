"""The audit logs: one row per admin-relevant action, in the affected tenant's log, and a partner's
own trail of what was done in its console."""

from __future__ import annotations

from typing import TYPE_CHECKING

from verticals.tenancy.models import AuditEvent, Partner, PartnerAuditEvent, Tenant
from verticals.tenancy.scoping import partner_scope, tenant_context

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


def partner_audit_record(
    *, partner: Partner, actor: Caller | None, action: str, target, details: dict | None = None
) -> PartnerAuditEvent:
    """A row of `partner`'s own trail. Call it inside the transaction of the write it records: a
    failure after it leaves neither."""
    # Written in this partner's console scope whoever calls (a tenant's context, a platform task):
    # the database's policy lets the row through for its own partner only.
    with partner_scope([partner.pk]):
        return PartnerAuditEvent.objects.create(
            partner=partner,
            action=action,
            actor=actor.label if actor else "system",
            actor_user=actor.user if actor else None,
            target_type=type(target).__name__.lower(),
            target_id=target.public_id,
            details=details or {},
        )
