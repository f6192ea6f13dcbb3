"""Invitations: how a person joins a tenant (by saying yes to an emailed link)."""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from verticals.tenancy.audit import audit_record
from verticals.tenancy.caller import Caller
from verticals.tenancy.models import Invitation, Membership, Tenant, User
from verticals.tenancy.scoping import tenant_context
from verticals.tenancy.services.common import check_grantable, revoke_once

logger = logging.getLogger(__name__)

INVITATION_LIFETIME = timedelta(days=7)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token(invitation: Invitation) -> str:
    token = secrets.token_urlsafe(32)
    invitation.token_hash = _hash(token)
    invitation.expires_at = timezone.now() + INVITATION_LIFETIME
    return token


def _send(invitation: Invitation, token: str) -> None:
    """Email the link after commit. A mail failure is logged, not raised: the invitation stays
    pending and can be resent, and `sent_at` stays empty so the inviter can see it did not go."""
    tenant = invitation.tenant
    link = settings.PORTAL_BASE_URL + reverse("portal:invitation", args=[token])
    body = (
        f"{invitation.invited_by} invites you to join '{tenant.name}' on {tenant.partner.display_name} "
        f"as {invitation.role}.\n\nAccept here (the link works until {invitation.expires_at:%Y-%m-%d %H:%M} UTC):\n{link}\n"
    )
    try:
        send_mail(
            f"Join {tenant.name} on {tenant.partner.display_name}", body, None, [invitation.email]
        )
    except Exception:
        logger.exception("invitation %s: the email could not be sent", invitation.public_id)
        return
    # this row, by id
    Invitation.dangerously_unscoped.filter(pk=invitation.pk).update(sent_at=timezone.now())


def invitation_create(*, caller: Caller, email: str, role: str) -> Invitation:
    """A member invites someone to its own tenant, with a role it may grant."""
    check_grantable(caller=caller, role=role)
    return invite(tenant=caller.tenant, email=email, role=role, actor=caller)


def invite(*, tenant: Tenant, email: str, role: str, actor: Caller | None) -> Invitation:
    """Invite `email` to `tenant` as `role` (also how partner staff invite a new tenant's owner)."""
    email = email.strip().lower()
    with tenant_context(tenant):  # partner staff act on a tenant from outside it
        if Membership.objects.filter(user__email__iexact=email).exists():
            raise ValidationError({"email": f"{email} is already a member of this tenant."})
        if Invitation.objects.filter(
            email=email, accepted_at__isnull=True, revoked_at__isnull=True
        ).exists():
            raise ValidationError(
                {"email": f"{email} already has an open invitation: resend or revoke it."}
            )
        # The email names a person (or the partner), never an API key's prefix.
        person = actor.person if actor else None
        invitation = Invitation(
            tenant=tenant,
            email=email,
            role=role,
            invited_by_user=person,
            invited_by=person.email if person else tenant.partner.display_name,
        )
        token = _new_token(invitation)
        try:
            with transaction.atomic():
                invitation.save()
                audit_record(
                    tenant=tenant,
                    actor=actor,
                    action="member.invite",
                    target=invitation,
                    details={"email": email, "role": role},
                )
        except IntegrityError:  # a concurrent invitation of the same address
            raise ValidationError(
                {"email": f"{email} already has an open invitation: resend or revoke it."}
            ) from None
    transaction.on_commit(lambda: _send(invitation, token))
    return invitation


def invitation_resend(*, invitation: Invitation, actor: Caller) -> Invitation:
    check_grantable(caller=actor, role=invitation.role)
    if invitation.status not in (Invitation.Status.PENDING, Invitation.Status.EXPIRED):
        raise ValidationError(
            {"status": f"This invitation is {invitation.status}: only an open one can be resent."}
        )
    token = _new_token(invitation)
    invitation.sent_at = None
    with transaction.atomic():
        invitation.save(update_fields=["token_hash", "expires_at", "sent_at"])
        audit_record(
            tenant=invitation.tenant,
            actor=actor,
            action="member.invite_resend",
            target=invitation,
            details={"email": invitation.email},
        )
    transaction.on_commit(lambda: _send(invitation, token))
    return invitation


def invitation_revoke(*, invitation: Invitation, actor: Caller) -> Invitation:
    check_grantable(caller=actor, role=invitation.role)
    with transaction.atomic():
        # Locked and read again: an accept may have happened since the caller loaded it.
        locked = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if locked.accepted_at is not None:
            raise ValidationError(
                {"status": "This invitation was already accepted: remove the member instead."}
            )
        return revoke_once(
            row=locked, actor=actor, action="member.invite_revoke", details={"email": locked.email}
        )


def invitation_find(token: str) -> Invitation | None:
    """The pending invitation that `token` opens, or None. The token is the credential."""
    invitation = (  # found before any tenant is known: the token says which
        Invitation.dangerously_unscoped.select_related("tenant__partner")
        .filter(token_hash=_hash(token))
        .first()
    )
    if invitation is None or invitation.status != Invitation.Status.PENDING:
        return None
    return invitation


def _check_tenant_active(tenant: Tenant) -> None:
    if tenant.is_suspended:
        raise ValidationError({"tenant": tenant.suspension_message()})


def invitation_accept(*, invitation: Invitation, user: User) -> Membership:
    if user.email.lower() != invitation.email.lower():
        raise ValidationError(
            {
                "email": f"This invitation is for {invitation.email}; you are signed in as {user.email}."
            }
        )
    tenant = invitation.tenant
    _check_tenant_active(tenant)
    with tenant_context(tenant), transaction.atomic():
        locked = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if locked.status != Invitation.Status.PENDING:
            raise ValidationError({"status": f"This invitation is {locked.status}."})
        membership = Membership.objects.filter(user=user).first()
        if membership is None:
            membership = Membership.objects.create(tenant=tenant, user=user, role=locked.role)
        locked.accepted_at = timezone.now()
        locked.accepted_by = user
        locked.save(update_fields=["accepted_at", "accepted_by"])
        audit_record(
            tenant=tenant,
            actor=Caller(user=user, tenant=tenant, role=locked.role),
            action="member.join",
            target=membership,
            details={"email": user.email, "role": locked.role},
        )
    return membership


def user_create_from_invitation(*, invitation: Invitation, full_name: str, password: str) -> User:
    """A new person accepting an invitation: the account takes the invited address."""
    _check_tenant_active(invitation.tenant)
    exists = ValidationError({"email": "An account with this address exists: sign in to accept."})
    if User.objects.filter(email__iexact=invitation.email).exists():
        raise exists
    try:
        with transaction.atomic():
            return User.objects.create_user(
                email=invitation.email, password=password, full_name=full_name
            )
    except IntegrityError:  # the same form submitted twice at once
        raise exists from None
