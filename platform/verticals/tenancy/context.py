"""The scope of the work under way: which tenant it is for, or why it is platform-wide.

Context variables only (no models), so the database backend can read them for every statement;
`verticals.tenancy.scoping` builds the managers on them.
"""

from __future__ import annotations

import contextvars
import logging
from contextlib import contextmanager
from functools import wraps
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from verticals.tenancy.models import Tenant

log = logging.getLogger("verticals.platform_scope")

_current_tenant: contextvars.ContextVar["Tenant | None"] = contextvars.ContextVar("tenant", default=None)
# Why the work under way may see every tenant's rows (None: it may not). Set by platform_scope().
_platform_reason: contextvars.ContextVar[str | None] = contextvars.ContextVar("platform_scope", default=None)


class TenantContextMissing(RuntimeError):
    """A tenant-owned table was queried with no tenant context set."""


class TenantMismatch(RuntimeError):
    """A row of one tenant was about to be written while another tenant's context was set."""


@contextmanager
def tenant_context(tenant: "Tenant | None") -> Iterator["Tenant | None"]:
    """Work for `tenant` (None: for no tenant). Inside a platform scope it narrows the database's
    view to this tenant again, so one tenant's step of platform-wide work sees that tenant only."""
    token = _current_tenant.set(tenant)
    platform = _platform_reason.set(None)
    try:
        yield tenant
    finally:
        _platform_reason.reset(platform)
        _current_tenant.reset(token)


@contextmanager
def platform_scope(reason: str) -> Iterator[None]:
    """The escape hatch: inside it the database lets every tenant's rows through, for work that is
    platform-wide by nature (the reaper, a billing close, the ledger's writer, staff in the admin,
    migrations). `reason` says why; it is logged with each entry. The tenant context, if any,
    stays: querysets of `objects` are still filtered by it in the application."""
    if not reason or not reason.strip():
        raise ValueError("platform_scope() needs a reason: say why this work may see every tenant's rows.")
    log.debug("platform scope entered: %s", reason)
    token = _platform_reason.set(reason)
    try:
        yield
    finally:
        _platform_reason.reset(token)


def for_tenant(function):
    """Decorate a function whose first argument is the tenant it works for: its work runs in that
    tenant's context (in the application and the database), whoever calls it — a request of
    that tenant, partner staff from outside it, a platform task."""

    @wraps(function)
    def in_context(tenant, *args, **kwargs):
        with tenant_context(tenant):
            return function(tenant, *args, **kwargs)

    return in_context


def database_scope() -> tuple[str, str]:
    """What the database is told for the statement about to run: (`app.tenant_id`, `app.platform`).
    ("", "") lets no tenant-owned row through."""
    if _platform_reason.get() is not None:
        return "", "on"
    tenant = _current_tenant.get()
    return ("" if tenant is None else str(tenant.pk)), ""


def get_current_tenant() -> "Tenant | None":
    return _current_tenant.get()


def require_current_tenant() -> "Tenant":
    tenant = _current_tenant.get()
    if tenant is None:
        raise TenantContextMissing(
            "No tenant context is set: wrap the work in tenant_context(tenant), "
            "or use `dangerously_unscoped` with a comment saying why that is safe."
        )
    return tenant
