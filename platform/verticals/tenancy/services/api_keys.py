"""API keys of a tenant."""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from verticals.tenancy import keys
from verticals.tenancy.audit import audit_record
from verticals.tenancy.caller import Caller
from verticals.tenancy.models import ApiKey, Project
from verticals.tenancy.roles import Role, Scope, grantable_roles
from verticals.tenancy.services.common import check_grantable, revoke_once


def _check_within_parent_key(
    *, parent: ApiKey, scopes: list[str], project: Project | None, expires_at
):
    """A key may mint keys, but never with more reach than itself. Returns the expiry to use."""
    extra = sorted(set(scopes) - set(parent.scopes))
    if extra:
        raise ValidationError(
            {"scopes": f"This API key cannot grant scopes it lacks: {', '.join(extra)}."}
        )
    if parent.project is not None and (project is None or project.pk != parent.project_id):
        raise ValidationError(
            {"project": f"This API key is restricted to project {parent.project.public_id}."}
        )
    if parent.expires_at is not None:
        if expires_at is None:
            return parent.expires_at
        if expires_at > parent.expires_at:
            raise ValidationError(
                {
                    "expires_at": f"This API key expires at {parent.expires_at.isoformat()}: a key it creates cannot outlive it."
                }
            )
    return expires_at


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
    role = role or (
        Role.DEVELOPER if Role.DEVELOPER in grantable_roles(caller.role) else caller.role
    )
    check_grantable(caller=caller, role=role)
    unknown = sorted(set(scopes) - set(Scope.values))
    if unknown or not scopes:
        raise ValidationError({"scopes": f"Choose one or more of: {', '.join(Scope.values)}."})
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "Give a time in the future."})
    if caller.api_key is not None:
        expires_at = _check_within_parent_key(
            parent=caller.api_key, scopes=scopes, project=project, expires_at=expires_at
        )
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
            parent=caller.api_key,
        )
        audit_record(
            tenant=caller.tenant,
            actor=caller,
            action="api_key.create",
            target=key,
            details={
                "name": name,
                "role": role,
                "scopes": key.scopes,
                "project": project.public_id if project else None,
            },
        )
    return key, parsed.secret


def api_key_revoke(*, api_key: ApiKey, actor: Caller | None = None) -> ApiKey:
    """Revoke a key and every key it created, however deep (a leaked key's offspring go too)."""
    with transaction.atomic():
        family, frontier = [], [api_key.pk]
        while frontier:
            frontier = list(
                ApiKey.objects.filter(parent_id__in=frontier).values_list("pk", flat=True)
            )
            family.extend(frontier)
        descendants = ApiKey.objects.filter(pk__in=family, revoked_at__isnull=True)
        descendant_ids = list(descendants.values_list("public_id", flat=True))
        descendants.update(revoked_at=timezone.now())
        details = {
            "name": api_key.name,
            **({"revoked_children": descendant_ids} if descendant_ids else {}),
        }
        return revoke_once(row=api_key, actor=actor, action="api_key.revoke", details=details)
