"""Tenant-owned managers fail closed and never write across tenants."""

import pytest

from verticals.tenancy.models import Project
from verticals.tenancy.scoping import TenantContextMissing, TenantMismatch, tenant_context


def test_query_without_tenant_context_fails_closed(world_a):
    with pytest.raises(TenantContextMissing, match="No tenant context"):
        list(Project.objects.all())


def test_query_sees_only_current_tenant(world_a, world_b):
    with tenant_context(world_a.tenant):
        assert list(Project.objects.values_list("name", flat=True)) == ["Project A"]
    with tenant_context(world_b.tenant):
        assert list(Project.objects.values_list("name", flat=True)) == ["Project B"]


def test_writing_another_tenants_row_is_refused(world_a, world_b):
    with tenant_context(world_b.tenant), pytest.raises(TenantMismatch):
        Project.objects.model(tenant=world_a.tenant, name="smuggled").save()
    assert not Project.dangerously_unscoped.filter(name="smuggled").exists()


def test_every_tenant_owned_table_carries_tenant_id():
    from django.apps import apps

    from verticals.tenancy.scoping import TenantOwnedModel

    owned = [m for m in apps.get_models() if issubclass(m, TenantOwnedModel)]
    assert {m.__name__ for m in owned} >= {"Project", "Membership", "ApiKey"}
    for model in owned:
        assert model._meta.get_field("tenant").column == "tenant_id"
