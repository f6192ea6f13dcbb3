"""A partner's audit trail is partner-owned: on PostgreSQL only a platform scope and the console of
its own partner pass its rows (no tenant session passes any), whatever SQL reaches the table."""

import pytest
from django.db import DatabaseError, transaction

from tests.tenancy.test_rls import postgresql, raw
from verticals.tenancy.audit import partner_audit_record
from verticals.tenancy.models import PartnerAuditEvent
from verticals.tenancy.scoping import partner_scope, platform_scope, tenant_context

pytestmark = [pytest.mark.rls, pytest.mark.django_db]


def trail() -> list[str]:
    return sorted(action for (action,) in raw("SELECT action FROM tenancy_partnerauditevent"))


@postgresql
def test_the_table_has_its_forced_policies(world_a):
    ((enabled, forced),) = raw(
        "SELECT relrowsecurity, relforcerowsecurity FROM pg_class "
        "WHERE oid = 'tenancy_partnerauditevent'::regclass"
    )
    policies = dict(
        raw(
            "SELECT policyname, qual FROM pg_policies WHERE tablename = 'tenancy_partnerauditevent'"
        )
    )
    assert enabled and forced
    assert "app.platform" in policies["tenant_isolation"]
    assert "app.partner_ids" in policies["partner_console"]


@postgresql
def test_a_partner_console_reads_and_writes_its_own_trail_only(world_a, world_b):
    for world, action in ((world_a, "a.did"), (world_b, "b.did")):
        partner_audit_record(partner=world.partner, actor=None, action=action, target=world.tenant)
    with platform_scope("test: every partner's trail"):
        assert trail() == ["a.did", "b.did"]
    with partner_scope([world_a.partner.pk]):
        assert trail() == ["a.did"]
        with pytest.raises(DatabaseError), transaction.atomic():
            PartnerAuditEvent.objects.create(
                partner=world_b.partner, action="forged", actor="x", target_type="t", target_id="t"
            )
    with tenant_context(world_a.tenant):
        assert trail() == []  # a tenant's session sees no partner's trail
    assert trail() == []  # no scope: nothing (fail closed)


def test_the_writer_sets_its_own_scope(world_a):
    # Called with no scope at all (a platform task, a tenant's request), the row is still written.
    event = partner_audit_record(
        partner=world_a.partner, actor=None, action="a.did", target=world_a.tenant
    )
    with platform_scope("test: read it back"):
        assert PartnerAuditEvent.objects.get(pk=event.pk).partner_id == world_a.partner.pk
