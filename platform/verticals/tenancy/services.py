"""Writes on tenancy objects. Views and commands call these; nothing else writes these rows."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from verticals.tenancy import keys
from verticals.tenancy.caller import Caller
from verticals.tenancy.models import ApiKey, Membership, Partner, Project, Tenant, User
from verticals.tenancy.roles import Role, Scope, grantable_roles


# --- partners and tenants ---------------------------------------------------------------
def partner_root() -> Partner:
    root = Partner.objects.filter(parent__isnull=True).first()
    return root or Partner.objects.create(name=settings.PLATFORM_NAME, brand_name=settings.PLATFORM_NAME)


def partner_get_or_create(*, name: str) -> tuple[Partner, bool]:
    existing = Partner.objects.filter(name=name).first()
    if existing:
        return existing, False
    root = partner_root()
    if root.name == name:
        return root, False
    return Partner.objects.create(name=name, brand_name=name, parent=root), True


def tenant_create(*, partner: Partner, name: str, owner_email: str | None = None, invited_by: User | None = None) -> Tenant:
    with transaction.atomic():
        if Tenant.objects.filter(partner=partner, name=name).exists():
            raise ValidationError({"name": f"Partner '{partner.name}' already has a tenant named '{name}'."})
        tenant = Tenant.objects.create(partner=partner, name=name)
        if owner_email:
            _membership_add(tenant=tenant, email=owner_email, role=Role.OWNER, invited_by=invited_by)
    return tenant


def tenant_update(*, tenant: Tenant, name: str) -> Tenant:
    if Tenant.objects.filter(partner=tenant.partner, name=name).exclude(pk=tenant.pk).exists():
        raise ValidationError({"name": f"Partner '{tenant.partner.name}' already has a tenant named '{name}'."})
    tenant.name = name
    tenant.save(update_fields=["name"])
    return tenant


def tenant_suspend(*, tenant: Tenant, reason: str = "") -> Tenant:
    tenant.status = Tenant.Status.SUSPENDED
    tenant.suspended_reason = reason
    tenant.suspended_at = timezone.now()
    tenant.save(update_fields=["status", "suspended_reason", "suspended_at"])
    return tenant


def tenant_reactivate(*, tenant: Tenant) -> Tenant:
    tenant.status = Tenant.Status.ACTIVE
    tenant.suspended_reason = ""
    tenant.suspended_at = None
    tenant.save(update_fields=["status", "suspended_reason", "suspended_at"])
    return tenant


# --- projects ---------------------------------------------------------------------------
def _check_project_name_free(*, tenant: Tenant, name: str, exclude: Project | None = None) -> None:
    clash = Project.objects.filter(tenant=tenant, name=name)
    if exclude is not None:
        clash = clash.exclude(pk=exclude.pk)
    if clash.exists():
        raise ValidationError({"name": f"A project named '{name}' already exists in this tenant."})


def project_create(*, tenant: Tenant, name: str, description: str = "", created_by: User | None = None) -> Project:
    _check_project_name_free(tenant=tenant, name=name)
    try:
        with transaction.atomic():
            return Project.objects.create(tenant=tenant, name=name, description=description, created_by=created_by)
    except IntegrityError:  # a concurrent create of the same name
        raise ValidationError({"name": f"A project named '{name}' already exists in this tenant."}) from None


def project_update(*, project: Project, **changes) -> Project:
    if "name" in changes:
        _check_project_name_free(tenant=project.tenant, name=changes["name"], exclude=project)
    for field_name, value in changes.items():
        setattr(project, field_name, value)
    project.save()
    return project


def project_delete(*, project: Project) -> None:
    project.delete()


# --- members ----------------------------------------------------------------------------
def _check_grantable(*, caller: Caller, role: str, field_name: str = "role") -> None:
    allowed = grantable_roles(caller.role)
    if role not in allowed:
        names = ", ".join(allowed)
        raise ValidationError({field_name: f"Your role '{caller.role}' may grant only: {names}."})


def _membership_add(*, tenant: Tenant, email: str, role: str, invited_by: User | None, full_name: str = "") -> Membership:
    email = email.strip().lower()
    user = User.objects.filter(email__iexact=email).first()
    new_user = user is None
    if new_user:
        user = User.objects.create_user(email=email, full_name=full_name)
    elif Membership.dangerously_unscoped.filter(tenant=tenant, user=user).exists():  # one tenant, by id
        raise ValidationError({"email": f"{email} is already a member of this tenant."})
    membership = Membership.dangerously_unscoped.create(tenant=tenant, user=user, role=role)  # tenant given
    transaction.on_commit(lambda: _send_invitation(user=user, tenant=tenant, invited_by=invited_by, new_user=new_user))
    return membership


def _send_invitation(*, user: User, tenant: Tenant, invited_by: User | None, new_user: bool) -> None:
    who = invited_by.email if invited_by else tenant.partner.display_name
    lines = [f"{who} added you to '{tenant.name}' on {tenant.partner.display_name}."]
    if new_user:
        uid = urlsafe_base64_encode(force_bytes(user.pk))
        token = default_token_generator.make_token(user)
        lines.append("Choose your password here: " + settings.PORTAL_BASE_URL + reverse("portal:password_reset_confirm", args=[uid, token]))
    send_mail(f"You were added to {tenant.name}", "\n\n".join(lines), None, [user.email])


def member_invite(*, caller: Caller, email: str, role: str, full_name: str = "") -> Membership:
    _check_grantable(caller=caller, role=role)
    with transaction.atomic():
        return _membership_add(
            tenant=caller.tenant, email=email, role=role, invited_by=caller.user, full_name=full_name
        )


def _check_owner_rules(*, caller: Caller, membership: Membership, new_role: str | None) -> None:
    if membership.role == Role.OWNER and not caller.can("member.manage_owners"):
        raise PermissionDenied("Only an owner may change or remove an owner.")
    if membership.role == Role.OWNER and new_role != Role.OWNER:
        owners = Membership.objects.filter(role=Role.OWNER).select_for_update()
        if owners.count() <= 1:
            raise ValidationError({"role": "A tenant keeps at least one owner: make someone else owner first."})


def member_change_role(*, caller: Caller, membership: Membership, role: str) -> Membership:
    _check_grantable(caller=caller, role=role)
    with transaction.atomic():
        _check_owner_rules(caller=caller, membership=membership, new_role=role)
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


def member_remove(*, caller: Caller, membership: Membership) -> None:
    with transaction.atomic():
        _check_owner_rules(caller=caller, membership=membership, new_role=None)
        # A member's API keys act with its authority: they go with it.
        ApiKey.objects.filter(created_by=membership.user, revoked_at__isnull=True).update(revoked_at=timezone.now())
        membership.delete()


# --- API keys ---------------------------------------------------------------------------
def api_key_create(
    *,
    caller: Caller,
    name: str,
    scopes: list[str],
    role: str | None = None,
    project: Project | None = None,
    expires_at: datetime | None = None,
    mode: str = ApiKey.Mode.LIVE,
) -> tuple[ApiKey, str]:
    """Create a key and return it with its secret, which is never shown again."""
    role = role or (Role.DEVELOPER if Role.DEVELOPER in grantable_roles(caller.role) else caller.role)
    _check_grantable(caller=caller, role=role)
    unknown = sorted(set(scopes) - set(Scope.values))
    if unknown or not scopes:
        raise ValidationError({"scopes": f"Choose one or more of: {', '.join(Scope.values)}."})
    if caller.api_key is not None:
        # A key may mint keys, but never with more reach than itself.
        extra = sorted(set(scopes) - set(caller.api_key.scopes))
        if extra:
            raise ValidationError({"scopes": f"This API key cannot grant scopes it lacks: {', '.join(extra)}."})
        if caller.project is not None and (project is None or project.pk != caller.project.pk):
            raise ValidationError({"project": f"This API key is restricted to project {caller.project.public_id}."})
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "Give a time in the future."})
    parsed = keys.generate_secret(mode)
    key = ApiKey.objects.create(
        tenant=caller.tenant,
        name=name,
        mode=mode,
        lookup=parsed.lookup,
        secret_hash=keys.hash_secret(parsed.secret),
        role=role,
        scopes=sorted(set(scopes)),
        project=project,
        expires_at=expires_at,
        created_by=caller.user or (caller.api_key.created_by if caller.api_key else None),
    )
    return key, parsed.secret


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key
