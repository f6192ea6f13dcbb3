"""The scope of the work under way: the tenant it is for, the partners whose console it serves,
or why it is platform-wide.

Context variables only (no models at import), so the database backend can read them for every
statement; `verticals.tenancy.scoping` builds the managers on them.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import wraps
from time import (
    monotonic,  # bound once: a test's clock patched on the time module leaves the audit alone
)
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from verticals.tenancy.models import Tenant

log = logging.getLogger("verticals.platform_scope")

_current_tenant: contextvars.ContextVar[Tenant | None] = contextvars.ContextVar(
    "tenant", default=None
)
# Why the work under way may see every tenant's rows (None: it may not). Set by platform_scope().
_platform_reason: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "platform_scope", default=None
)
# (partner ids, their tenants' ids) of a partner's console (None: none). Set by partner_scope().
_partners: contextvars.ContextVar[tuple[tuple[int, ...], tuple[int, ...]] | None] = (
    contextvars.ContextVar("partners", default=None)
)

# Each reason's entries into the escape hatch are logged at INFO at most once a minute per process,
# with how many there were since (the audit trail of platform-wide work; DEBUG has every one).
AUDIT_EVERY_SECONDS = 60.0
_audited: dict[str, list] = {}  # reason -> [monotonic time of its last line, entries since]
_audit_lock = threading.Lock()


class TenantContextMissing(RuntimeError):
    """A tenant-owned table was queried with no tenant context set."""


class TenantMismatch(RuntimeError):
    """A row of one tenant was about to be written while another tenant's context was set."""


@contextmanager
def tenant_context(tenant: Tenant | None) -> Iterator[Tenant | None]:
    """Work for `tenant` (None: for no tenant). Inside a platform scope it narrows the database's
    view to this tenant again, so one tenant's step of platform-wide work sees that tenant only."""
    token = _current_tenant.set(tenant)
    platform = _platform_reason.set(None)
    partners = _partners.set(None)
    try:
        yield tenant
    finally:
        _partners.reset(partners)
        _platform_reason.reset(platform)
        _current_tenant.reset(token)


@contextmanager
def platform_scope(reason: str) -> Iterator[None]:
    """The escape hatch: inside it the database lets every tenant's rows through, for work that is
    platform-wide by nature (the reaper, a billing close, the ledger's writer, staff in the admin,
    migrations). `reason` says why; it is logged with each entry. The tenant context, if any,
    stays: querysets of `objects` are still filtered by it in the application."""
    if not reason or not reason.strip():
        raise ValueError(
            "platform_scope() needs a reason: say why this work may see every tenant's rows."
        )
    _audit(reason)
    token = _platform_reason.set(reason)
    try:
        yield
    finally:
        _platform_reason.reset(token)


def _audit(reason: str) -> None:
    log.debug("platform scope entered: %s", reason)
    now = monotonic()
    with _audit_lock:
        seen = _audited.setdefault(reason, [float("-inf"), 0])
        seen[1] += 1
        if now - seen[0] < AUDIT_EVERY_SECONDS:
            return
        count, seen[0], seen[1] = seen[1], now, 0
    log.info(
        "platform scope: %s (%d entr%s since the last line)",
        reason,
        count,
        "y" if count == 1 else "ies",
    )


@contextmanager
def partner_scope(partner_ids) -> Iterator[None]:
    """A partner's console: the database lets through the rows of the tenants of these partners
    (the caller's partners and their sub-partners) and the partners' own invoices, none other.
    The console's queries filter by partner in the application too; writes for one tenant narrow
    to it (`tenant_context`, `for_tenant`)."""
    # (the database backend imports this module before models load)
    from verticals.tenancy.models import Tenant

    partner_ids = tuple(sorted(set(partner_ids)))
    tenant_ids = tuple(
        Tenant.objects.filter(partner_id__in=partner_ids)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    token = _partners.set((partner_ids, tenant_ids))
    platform = _platform_reason.set(None)
    try:
        yield
    finally:
        _platform_reason.reset(platform)
        _partners.reset(token)


def for_tenant(function):
    """Decorate a function whose first argument is the tenant it works for: its work runs in that
    tenant's context (in the application and the database), whoever calls it — a request of
    that tenant, partner staff from outside it, a platform task."""

    @wraps(function)
    def in_context(tenant, *args, **kwargs):
        with tenant_context(tenant):
            return function(tenant, *args, **kwargs)

    return in_context


# The database role a partner's console works as (verticals.tenancy.rls.PARTNER_ROLE); "none": the login's own.
PARTNER_ROLE = "verticals_partner_console"
UNSCOPED = ("", "", "", "", "none")


def database_scope() -> tuple[str, str, str, str, str]:
    """What the database is told for the statement about to run: (`app.tenant_id`,
    `app.tenant_ids`, `app.partner_ids`, `app.platform`, `role`), ids comma-separated. UNSCOPED
    lets no tenant-owned row through."""
    if _platform_reason.get() is not None:
        return "", "", "", "on", "none"
    partners = _partners.get()
    if partners is not None:
        return (
            "",
            ",".join(map(str, partners[1])),
            ",".join(map(str, partners[0])),
            "",
            PARTNER_ROLE,
        )
    tenant = _current_tenant.get()
    return ("" if tenant is None else str(tenant.pk)), "", "", "", "none"


def get_current_tenant() -> Tenant | None:
    return _current_tenant.get()


def require_current_tenant() -> Tenant:
    tenant = _current_tenant.get()
    if tenant is None:
        raise TenantContextMissing(
            "No tenant context is set: wrap the work in tenant_context(tenant), "
            "or use `dangerously_unscoped` with a comment saying why that is safe."
        )
    return tenant
