"""Who is calling, for which tenant, with which role and scopes: resolved once per request."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone

from verticals.tenancy import keys
from verticals.tenancy.models import ApiKey, Membership, PartnerMembership, Project, Tenant, User
from verticals.tenancy.paths import is_api_path
from verticals.tenancy.roles import (
    TENANT_ACTIONS,
    TENANT_WIDE_ACTIONS,
    partner_role_allows,
    role_allows,
    scope_for,
)
from verticals.tenancy.selectors import user_memberships
from verticals.tenancy.throttle import key_failed

TENANT_HEADER = "HTTP_X_TENANT"
SESSION_TENANT_KEY = "tenant"


@dataclass(frozen=True)
class CallerError:
    status: int
    code: str
    message: str
    retry_after: int | None = None  # seconds, for a 429


@dataclass
class Caller:
    user: User | None = None
    api_key: ApiKey | None = None
    tenant: Tenant | None = None
    role: str | None = None
    memberships: list[Membership] = field(default_factory=list)
    _partner_memberships: list[PartnerMembership] | None = field(default=None, repr=False)

    @property
    def scopes(self) -> frozenset[str] | None:
        """An API key's scopes; None for a signed-in user (a session is not scope-limited)."""
        return frozenset(self.api_key.scopes) if self.api_key else None

    @property
    def person(self) -> User | None:
        """The person behind the call: the signed-in user, or whoever created the API key."""
        return self.user or (self.api_key.created_by if self.api_key else None)

    @property
    def label(self) -> str:
        if self.api_key is not None:
            return f"API key {self.api_key.display_prefix}… ({self.api_key.name})"
        return self.user.email if self.user else "system"

    @property
    def project(self) -> Project | None:
        """The one project an API key is restricted to, if any."""
        return self.api_key.project if self.api_key else None

    def denial(self, action: str) -> str | None:
        """Why this caller may not perform `action`, or None when it may."""
        if self.tenant is None:
            return "No tenant is selected: you are not a member of any tenant."
        if not role_allows(self.role, action):
            return f"Your role '{self.role}' does not allow {action}."
        scopes = self.scopes
        if scopes is not None and scope_for(action) not in scopes:
            return f"This API key lacks the '{scope_for(action)}' scope needed for {action}."
        if self.project is not None and action in TENANT_WIDE_ACTIONS:
            return f"This API key is restricted to project {self.project.public_id}; {action} concerns the whole tenant."
        return None

    def can(self, action: str) -> bool:
        return self.denial(action) is None

    def permissions(self) -> list[str]:
        return [action for action in TENANT_ACTIONS if self.can(action)]

    def partner_memberships(self) -> list[PartnerMembership]:
        # Read once per request: permission checks and querysets both ask.
        if self._partner_memberships is None:
            self._partner_memberships = (
                []
                if self.user is None
                else list(
                    PartnerMembership.objects.filter(user=self.user).select_related("partner")
                )
            )
        return self._partner_memberships

    def partner_ids_for(self, action: str) -> list[int]:
        """Partners (with their sub-partners) whose tenants this caller may act on for `action`."""
        ids: list[int] = []
        for membership in self.partner_memberships():
            if partner_role_allows(membership.role, action):
                ids.extend(membership.partner.descendant_ids())
        return ids


def bearer_token(request: HttpRequest) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()


def _invalid_key(
    request: HttpRequest, message: str, key: ApiKey | None = None
) -> tuple[None, CallerError]:
    """A failed key lookup: counted by the throttle, a 401 — or a 429 once the caller's address (or
    the key named) is over its limit. Only failures are counted: a correct key never waits on it."""

    lockout = key_failed(request, key=key)
    if lockout is not None:
        return None, CallerError(
            429, "too_many_attempts", lockout.key_message(), retry_after=lockout.retry_after
        )
    return None, CallerError(401, "invalid_api_key", message)


def _resolve_api_key(request: HttpRequest, secret: str) -> tuple[Caller | None, CallerError | None]:
    parsed = keys.parse_secret(secret)
    if parsed is None:
        return _invalid_key(request, "The API key is malformed: check that it was copied whole.")
    # Authentication runs before any tenant is known: the key itself says whose it is.
    key = (
        ApiKey.dangerously_unscoped.select_related("tenant__partner", "project")
        .filter(lookup=parsed.lookup)
        .first()
    )
    if key is None:
        return _invalid_key(request, "The API key is not valid.")
    if not hmac.compare_digest(key.secret_hash, keys.hash_secret(secret)):
        return _invalid_key(request, "The API key is not valid.", key)
    now = timezone.now()
    if key.revoked_at is not None:
        return None, CallerError(
            401, "api_key_revoked", f"This API key was revoked at {key.revoked_at.isoformat()}."
        )
    if key.expires_at is not None and key.expires_at <= now:
        return None, CallerError(
            401, "api_key_expired", f"This API key expired at {key.expires_at.isoformat()}."
        )
    if key.tenant.is_suspended:
        return None, CallerError(403, "tenant_suspended", key.tenant.suspension_message())
    if key.last_used_at is None or now - key.last_used_at > timedelta(
        seconds=settings.API_KEY_LAST_USED_RESOLUTION
    ):
        ApiKey.dangerously_unscoped.filter(pk=key.pk).update(last_used_at=now)  # same row as above
        key.last_used_at = now
    return Caller(api_key=key, tenant=key.tenant, role=key.role), None


def _resolve_user(request: HttpRequest, user: User) -> tuple[Caller | None, CallerError | None]:
    memberships = user_memberships(user)
    wanted = request.META.get(TENANT_HEADER) or request.session.get(SESSION_TENANT_KEY)
    chosen = None
    caller = Caller(user=user, memberships=memberships)
    if wanted:
        chosen = next((m for m in memberships if m.tenant.public_id == wanted), None)
        if chosen is None and request.META.get(TENANT_HEADER):
            return caller, CallerError(
                404, "not_found", f"You are not a member of a tenant with id '{wanted}'."
            )
    if chosen is None and memberships:
        chosen = next((m for m in memberships if not m.tenant.is_suspended), memberships[0])
    if chosen is not None:
        if chosen.tenant.is_suspended:
            return caller, CallerError(403, "tenant_suspended", chosen.tenant.suspension_message())
        caller.tenant, caller.role = chosen.tenant, chosen.role
    return caller, None


def resolve_caller(request: HttpRequest) -> tuple[Caller | None, CallerError | None]:
    """The caller of this request; never raises. An error is reported by whoever serves it.

    API keys count on the API's paths only: the portal and the admin go by the session.
    """
    token = bearer_token(request)
    if token is not None and is_api_path(request.path):
        return _resolve_api_key(request, token)
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return _resolve_user(request, user)
    return None, None
