"""Tenant scoping from one place, enforced twice.

Each request, job and command sets the current tenant; managers of tenant-owned models filter
by it and fail closed when none is set (the first wall). On PostgreSQL the same context is handed
to the database with every statement (`verticals.tenancy.backend`), whose row-level security
policies let only that tenant's rows through, and none without a context (the second wall).

The escape hatch for platform-wide work is one and named: `platform_scope(reason)` for a block,
and the `dangerously_unscoped` manager for one query; both let every tenant's rows through at the
database too, and each use carries its reason (tests/tenancy/test_rls.py checks that it does).
"""

from __future__ import annotations

from django.db import models

from verticals.tenancy.context import (  # noqa: F401  (the scoping API is imported from here)
    TenantContextMissing,
    TenantMismatch,
    database_scope,
    for_tenant,
    get_current_tenant,
    partner_scope,
    platform_scope,
    require_current_tenant,
    tenant_context,
)


class TenantScopedManager(models.Manager):
    """Rows of the current tenant only; raises TenantContextMissing when there is none."""

    def get_queryset(self) -> models.QuerySet:
        tenant = require_current_tenant()
        return super().get_queryset().filter(tenant_id=tenant.pk)

    def none(self) -> models.QuerySet:
        """An empty queryset holds no tenant's rows, so it needs no context (schema tools use it)."""
        return super().get_queryset().none()


class UnscopedQuerySet(models.QuerySet):
    """Every tenant's rows, in the application and (through `platform_scope`) in the database.
    What evaluates it (iteration, count, aggregate, exists …) and the writes Django builds afresh
    (create, bulk_create, the delete collector) run inside a platform scope here; the queries it
    builds also carry a mark that the PostgreSQL backend's compilers honour (an update, a subquery
    of another unscoped query)."""

    REASON = "a dangerously_unscoped query (its reason is the comment where it is made)"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.query.platform_scope = True  # read by verticals.tenancy.backend.compiler

    def _unscoped(self, method: str, *args, **kwargs):
        with platform_scope(self.REASON):
            return getattr(super(), method)(*args, **kwargs)

    def _fetch_all(self):
        with platform_scope(self.REASON):
            super()._fetch_all()

    def count(self):
        return self._unscoped("count")

    def aggregate(self, *args, **kwargs):
        return self._unscoped("aggregate", *args, **kwargs)

    def exists(self):
        return self._unscoped("exists")

    def iterator(self, *args, **kwargs):
        with platform_scope(self.REASON):
            yield from super().iterator(*args, **kwargs)

    def create(self, **kwargs):
        return self._unscoped("create", **kwargs)

    def bulk_create(self, *args, **kwargs):
        return self._unscoped("bulk_create", *args, **kwargs)

    def bulk_update(self, *args, **kwargs):
        return self._unscoped("bulk_update", *args, **kwargs)

    def get_or_create(self, *args, **kwargs):
        return self._unscoped("get_or_create", *args, **kwargs)

    def update_or_create(self, *args, **kwargs):
        return self._unscoped("update_or_create", *args, **kwargs)

    def delete(self):
        return self._unscoped("delete")

    delete.alters_data = True
    delete.queryset_only = True


UnscopedManager = models.Manager.from_queryset(UnscopedQuerySet)


class TenantOwnedModel(models.Model):
    """Base for every tenant-owned table: a `tenant_id` column and a scoped default manager."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="+")

    objects = TenantScopedManager()
    dangerously_unscoped = UnscopedManager()

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
