"""Members of a tenant: role changes and removal (joining goes through invitations)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from verticals.tenancy.audit import audit_record
from verticals.tenancy.caller import Caller
from verticals.tenancy.models import ApiKey, Invitation, Membership, Tenant
from verticals.tenancy.roles import Role, grantable_roles
from verticals.tenancy.services.common import check_grantable


def _check_owner_rules(*, caller: Caller, membership: Membership, new_role: str | None) -> None:
    if membership.role == Role.OWNER and not caller.can("member.manage_owners"):
        raise PermissionDenied("Only an owner may change or remove an owner.")
    if membership.role == Role.OWNER and new_role != Role.OWNER:
        # Lock the tenant row so that two owners demoting each other at once cannot both pass.
        Tenant.objects.select_for_update().get(pk=membership.tenant_id)
        if Membership.objects.filter(role=Role.OWNER).count() <= 1:
            raise ValidationError(
                {"role": "A tenant keeps at least one owner: make someone else owner first."}
            )


def _withdraw_invitations(invitations) -> list[str]:
    still_open = invitations.filter(accepted_at__isnull=True, revoked_at__isnull=True)
    ids = list(still_open.values_list("public_id", flat=True))
    still_open.update(revoked_at=timezone.now())
    return ids


def member_change_role(*, caller: Caller, membership: Membership, role: str) -> Membership:
    check_grantable(caller=caller, role=role)
    with transaction.atomic():
        _check_owner_rules(caller=caller, membership=membership, new_role=role)
        # Keys act with their creator's authority: none may keep a role above the new one.
        allowed = grantable_roles(role)
        lowered = ApiKey.objects.filter(created_by=membership.user).exclude(role__in=allowed)
        lowered_ids = list(lowered.values_list("public_id", flat=True))
        lowered.update(role=role)
        # Open invitations it sent for roles it may no longer grant are withdrawn.
        withdrawn = _withdraw_invitations(
            Invitation.objects.filter(invited_by_user=membership.user).exclude(role__in=allowed)
        )
        audit_record(
            tenant=caller.tenant,
            actor=caller,
            action="member.change_role",
            target=membership,
            details={
                "email": membership.user.email,
                "role": [membership.role, role],
                "lowered_api_keys": lowered_ids,
                "revoked_invitations": withdrawn,
            },
        )
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


def member_remove(*, caller: Caller, membership: Membership) -> None:
    with transaction.atomic():
        _check_owner_rules(caller=caller, membership=membership, new_role=None)
        # A member's API keys act with its authority: they go with it.
        revoked = ApiKey.objects.filter(created_by=membership.user, revoked_at__isnull=True)
        revoked_ids = list(revoked.values_list("public_id", flat=True))
        revoked.update(revoked_at=timezone.now())
        withdrawn = _withdraw_invitations(
            Invitation.objects.filter(invited_by_user=membership.user)
        )
        audit_record(
            tenant=caller.tenant,
            actor=caller,
            action="member.remove",
            target=membership,
            details={
                "email": membership.user.email,
                "role": membership.role,
                "revoked_api_keys": revoked_ids,
                "revoked_invitations": withdrawn,
            },
        )
        membership.delete()
