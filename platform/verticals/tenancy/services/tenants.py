"""Partners and their customer tenants."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from verticals.tenancy.audit import audit_record
from verticals.tenancy.caller import Caller
from verticals.tenancy.models import Partner, Tenant
from verticals.tenancy.roles import Role
from verticals.tenancy.services.invitations import invite


def partner_root() -> Partner:
    root = Partner.objects.filter(parent__isnull=True).first()
    return root or Partner.objects.create(
        name=settings.PLATFORM_NAME, brand_name=settings.PLATFORM_NAME
    )


def partner_get_or_create(*, name: str) -> tuple[Partner, bool]:
    existing = Partner.objects.filter(name=name).first()
    if existing:
        return existing, False
    root = partner_root()
    if root.name == name:
        return root, False
    return Partner.objects.create(name=name, brand_name=name, parent=root), True


def _name_clash(partner: Partner, name: str) -> ValidationError:
    return ValidationError(
        {"name": f"Partner '{partner.name}' already has a tenant named '{name}'."}
    )


def tenant_create(
    *, partner: Partner, name: str, owner_email: str | None = None, actor: Caller | None = None
) -> Tenant:
    if Tenant.objects.filter(partner=partner, name=name).exists():
        raise _name_clash(partner, name)
    try:
        with transaction.atomic():
            tenant = Tenant.objects.create(partner=partner, name=name)
            audit_record(
                tenant=tenant,
                actor=actor,
                action="tenant.create",
                target=tenant,
                details={"partner": partner.public_id},
            )
            if owner_email:
                invite(tenant=tenant, email=owner_email, role=Role.OWNER, actor=actor)
    except IntegrityError:  # a concurrent create of the same name
        raise _name_clash(partner, name) from None
    return tenant


def tenant_update(*, tenant: Tenant, name: str, actor: Caller | None = None) -> Tenant:
    if Tenant.objects.filter(partner=tenant.partner, name=name).exclude(pk=tenant.pk).exists():
        raise _name_clash(tenant.partner, name)
    try:
        with transaction.atomic():
            audit_record(
                tenant=tenant,
                actor=actor,
                action="tenant.update",
                target=tenant,
                details={"name": [tenant.name, name]},
            )
            tenant.name = name
            tenant.save(update_fields=["name"])
    except IntegrityError:
        raise _name_clash(tenant.partner, name) from None
    return tenant


def _tenant_set_status(
    *, tenant: Tenant, status: str, reason: str, actor: Caller | None, action: str
) -> Tenant:
    with transaction.atomic():
        tenant.status = status
        tenant.suspended_reason = reason
        tenant.suspended_at = timezone.now() if status == Tenant.Status.SUSPENDED else None
        tenant.save(update_fields=["status", "suspended_reason", "suspended_at"])
        audit_record(
            tenant=tenant,
            actor=actor,
            action=action,
            target=tenant,
            details={"reason": reason} if reason else {},
        )
    return tenant


def tenant_suspend(*, tenant: Tenant, reason: str = "", actor: Caller | None = None) -> Tenant:
    return _tenant_set_status(
        tenant=tenant,
        status=Tenant.Status.SUSPENDED,
        reason=reason,
        actor=actor,
        action="tenant.suspend",
    )


def tenant_reactivate(*, tenant: Tenant, actor: Caller | None = None) -> Tenant:
    return _tenant_set_status(
        tenant=tenant,
        status=Tenant.Status.ACTIVE,
        reason="",
        actor=actor,
        action="tenant.reactivate",
    )
