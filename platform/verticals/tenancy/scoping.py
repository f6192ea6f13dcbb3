"""Tenant scoping from one place.

Each request (and, later, each job) sets the current tenant; managers of tenant-owned
models filter by it and fail closed when none is set. The unscoped manager is named
`dangerously_unscoped`: each use carries a comment saying why it is safe.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

from django.db import models

if TYPE_CHECKING:
    from verticals.tenancy.models import Tenant

_current_tenant: contextvars.ContextVar["Tenant | None"] = contextvars.ContextVar("tenant", default=None)


class TenantContextMissing(RuntimeError):
    """A tenant-owned table was queried with no tenant context set."""


class TenantMismatch(RuntimeError):
    """A row of one tenant was about to be written while another tenant's context was set."""


@contextmanager
def tenant_context(tenant: "Tenant | None") -> Iterator["Tenant | None"]:
    token = _current_tenant.set(tenant)
    try:
        yield tenant
    finally:
        _current_tenant.reset(token)


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


class TenantScopedManager(models.Manager):
    """Rows of the current tenant only; raises TenantContextMissing when there is none."""

    def get_queryset(self) -> models.QuerySet:
        tenant = require_current_tenant()
        return super().get_queryset().filter(tenant_id=tenant.pk)

    def none(self) -> models.QuerySet:
        """An empty queryset holds no tenant's rows, so it needs no context (schema tools use it)."""
        return super().get_queryset().none()


class TenantOwnedModel(models.Model):
    """Base for every tenant-owned table: a `tenant_id` column and a scoped default manager."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="+")

    objects = TenantScopedManager()
    dangerously_unscoped = models.Manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        current = get_current_tenant()
        if current is not None and self.tenant_id != current.pk:
            raise TenantMismatch(
                f"Refusing to write a {type(self).__name__} of tenant {self.tenant_id} "
                f"inside the context of tenant {current.pk}."
            )
        super().save(*args, **kwargs)
