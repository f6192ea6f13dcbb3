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
from verticals.tenancy.audit import audit_record
from verticals.tenancy.caller import Caller
from verticals.tenancy.models import ApiKey, Membership, Partner, Project, Tenant, User
from verticals.tenancy.roles import Role, Scope, grantable_roles
from verticals.tenancy.scoping import tenant_context


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


def tenant_create(*, partner: Partner, name: str, owner_email: str | None = None, actor: Caller | None = None) -> Tenant:
    with transaction.atomic():
        if Tenant.objects.filter(partner=partner, name=name).exists():
            raise ValidationError({"name": f"Partner '{partner.name}' already has a tenant named '{name}'."})
        tenant = Tenant.objects.create(partner=partner, name=name)
        audit_record(tenant=tenant, actor=actor, action="tenant.create", target=tenant, details={"partner": partner.public_id})
        if owner_email:
            membership = _membership_add(tenant=tenant, email=owner_email, role=Role.OWNER, actor=actor)
            audit_record(tenant=tenant, actor=actor, action="member.invite", target=membership,
                         details={"email": membership.user.email, "role": Role.OWNER})
    return tenant


def tenant_update(*, tenant: Tenant, name: str, actor: Caller | None = None) -> Tenant:
    if Tenant.objects.filter(partner=tenant.partner, name=name).exclude(pk=tenant.pk).exists():
        raise ValidationError({"name": f"Partner '{tenant.partner.name}' already has a tenant named '{name}'."})
    with transaction.atomic():
        audit_record(tenant=tenant, actor=actor, action="tenant.update", target=tenant, details={"name": [tenant.name, name]})
        tenant.name = name
        tenant.save(update_fields=["name"])
    return tenant


def _tenant_set_status(*, tenant: Tenant, status: str, reason: str, actor: Caller | None, action: str) -> Tenant:
    with transaction.atomic():
        tenant.status = status
        tenant.suspended_reason = reason
        tenant.suspended_at = timezone.now() if status == Tenant.Status.SUSPENDED else None
        tenant.save(update_fields=["status", "suspended_reason", "suspended_at"])
        audit_record(tenant=tenant, actor=actor, action=action, target=tenant, details={"reason": reason} if reason else {})
    return tenant


def tenant_suspend(*, tenant: Tenant, reason: str = "", actor: Caller | None = None) -> Tenant:
    return _tenant_set_status(tenant=tenant, status=Tenant.Status.SUSPENDED, reason=reason, actor=actor, action="tenant.suspend")


def tenant_reactivate(*, tenant: Tenant, actor: Caller | None = None) -> Tenant:
    return _tenant_set_status(tenant=tenant, status=Tenant.Status.ACTIVE, reason="", actor=actor, action="tenant.reactivate")


# --- projects ---------------------------------------------------------------------------
def _check_project_name_free(*, tenant: Tenant, name: str, exclude: Project | None = None) -> None:
    clash = Project.objects.filter(tenant=tenant, name=name)
    if exclude is not None:
        clash = clash.exclude(pk=exclude.pk)
    if clash.exists():
        raise ValidationError({"name": f"A project named '{name}' already exists in this tenant."})


def project_create(*, tenant: Tenant, name: str, description: str = "", actor: Caller | None = None) -> Project:
    _check_project_name_free(tenant=tenant, name=name)
    try:
        with transaction.atomic():
            project = Project.objects.create(
                tenant=tenant, name=name, description=description, created_by=actor.person if actor else None
            )
            audit_record(tenant=tenant, actor=actor, action="project.create", target=project, details={"name": name})
            return project
    except IntegrityError:  # a concurrent create of the same name
        raise ValidationError({"name": f"A project named '{name}' already exists in this tenant."}) from None


def project_update(*, project: Project, actor: Caller | None = None, **changes) -> Project:
    if "name" in changes:
        _check_project_name_free(tenant=project.tenant, name=changes["name"], exclude=project)
    with transaction.atomic():
        changed = {k: [getattr(project, k), v] for k, v in changes.items() if getattr(project, k) != v}
        for field_name, value in changes.items():
            setattr(project, field_name, value)
        project.save()
        audit_record(tenant=project.tenant, actor=actor, action="project.update", target=project, details=changed)
    return project


def project_delete(*, project: Project, actor: Caller | None = None) -> None:
    with transaction.atomic():
        audit_record(tenant=project.tenant, actor=actor, action="project.delete", target=project, details={"name": project.name})
        project.delete()


# --- members ----------------------------------------------------------------------------
def _check_grantable(*, caller: Caller, role: str, field_name: str = "role") -> None:
    allowed = grantable_roles(caller.role)
    if role not in allowed:
        names = ", ".join(allowed)
        raise ValidationError({field_name: f"Your role '{caller.role}' may grant only: {names}."})


def _membership_add(*, tenant: Tenant, email: str, role: str, actor: Caller | None, full_name: str = "") -> Membership:
    email = email.strip().lower()
    user = User.objects.filter(email__iexact=email).first()
    new_user = user is None
    if new_user:
        user = User.objects.create_user(email=email, full_name=full_name)
    elif Membership.dangerously_unscoped.filter(tenant=tenant, user=user).exists():  # one tenant, by id
        raise ValidationError({"email": f"{email} is already a member of this tenant."})
    with tenant_context(tenant):  # partner staff add a tenant's first owner from outside it
        membership = Membership.objects.create(tenant=tenant, user=user, role=role)
    who = actor.label if actor and actor.user else tenant.partner.display_name
    transaction.on_commit(lambda: _send_invitation(user=user, tenant=tenant, who=who, new_user=new_user))
    return membership


def _send_invitation(*, user: User, tenant: Tenant, who: str, new_user: bool) -> None:
    lines = [f"{who} added you to '{tenant.name}' on {tenant.partner.display_name}."]
    if new_user:
        uid = urlsafe_base64_encode(force_bytes(user.pk))
        token = default_token_generator.make_token(user)
        lines.append("Choose your password here: " + settings.PORTAL_BASE_URL + reverse("portal:password_reset_confirm", args=[uid, token]))
    send_mail(f"You were added to {tenant.name}", "\n\n".join(lines), None, [user.email])


def member_invite(*, caller: Caller, email: str, role: str, full_name: str = "") -> Membership:
    _check_grantable(caller=caller, role=role)
    with transaction.atomic():
        membership = _membership_add(tenant=caller.tenant, email=email, role=role, actor=caller, full_name=full_name)
        audit_record(tenant=caller.tenant, actor=caller, action="member.invite", target=membership,
                     details={"email": membership.user.email, "role": role})
    return membership


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
        audit_record(tenant=caller.tenant, actor=caller, action="member.change_role", target=membership,
                     details={"email": membership.user.email, "role": [membership.role, role]})
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
        audit_record(tenant=caller.tenant, actor=caller, action="member.remove", target=membership,
                     details={"email": membership.user.email, "role": membership.role, "revoked_api_keys": revoked_ids})
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
    with transaction.atomic():
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
            created_by=caller.person,
        )
        audit_record(tenant=caller.tenant, actor=caller, action="api_key.create", target=key,
                     details={"name": name, "role": role, "scopes": key.scopes,
                              "project": project.public_id if project else None})
    return key, parsed.secret


def api_key_revoke(*, api_key: ApiKey, actor: Caller | None = None) -> ApiKey:
    if api_key.revoked_at is None:
        with transaction.atomic():
            api_key.revoked_at = timezone.now()
            api_key.save(update_fields=["revoked_at"])
            audit_record(tenant=api_key.tenant, actor=actor, action="api_key.revoke", target=api_key,
                         details={"name": api_key.name})
    return api_key
