"""The partner's writes as services: each takes the actor and leaves its audit row (the partner's
trail, the tenant's log) in its own transaction; a failure after the write leaves neither."""

from decimal import Decimal
from unittest import mock

import pytest
from django.core.exceptions import ValidationError

from tests.billing.test_api import make_plan
from verticals.billing import services
from verticals.billing.models import FEE, PriceBookEntry, Subscription
from verticals.tenancy.caller import Caller
from verticals.tenancy.models import AuditEvent, Partner, PartnerAuditEvent, Tenant
from verticals.tenancy.services import partner_brand_update

pytestmark = pytest.mark.django_db


class Boom(Exception):
    pass


def admin_of(world) -> Caller:
    return Caller(user=world.partner_admin)


@pytest.fixture
def starter(db):
    return make_plan("starter", fee="30", prices={"inference.requests": ("100", "0.01")})


def test_a_retail_price_change_is_in_the_partners_trail(world_a, starter):
    services.set_wholesale(world_a.partner, starter, FEE, "20")
    entry = services.price_book_set_retail(
        partner=world_a.partner, plan=starter, item=FEE, retail="24.50", actor=admin_of(world_a)
    )
    assert entry.retail == Decimal("24.5")
    (event,) = PartnerAuditEvent.objects.filter(partner=world_a.partner)
    assert event.action == "price_book.retail" and event.actor == world_a.partner_admin.email
    assert event.target_id == starter.public_id
    assert event.details == {"plan": "starter", "item": FEE, "retail": "24.5"}


def test_a_refused_price_leaves_no_row(world_a, starter):
    services.set_wholesale(world_a.partner, starter, FEE, "20")
    with pytest.raises(ValidationError):
        services.price_book_set_retail(
            partner=world_a.partner, plan=starter, item=FEE, retail="15", actor=admin_of(world_a)
        )
    assert not PartnerAuditEvent.objects.exists()


def test_a_failure_after_the_price_write_leaves_neither(world_a, starter):
    with mock.patch("verticals.billing.services.partner_audit_record", side_effect=Boom):
        with pytest.raises(Boom):
            services.price_book_set_retail(
                partner=world_a.partner,
                plan=starter,
                item=FEE,
                retail="40",
                actor=admin_of(world_a),
            )
    assert not PriceBookEntry.objects.filter(retail=Decimal(40)).exists()
    assert not PartnerAuditEvent.objects.exists()


def test_a_brand_change_is_in_the_partners_trail(world_a):
    partner_brand_update(
        partner=world_a.partner,
        actor=admin_of(world_a),
        changes={"brand_name": "Acme Cloud", "brand_colour": "#d1242f"},
    )
    world_a.partner.refresh_from_db()
    assert world_a.partner.brand_name == "Acme Cloud"
    (event,) = PartnerAuditEvent.objects.filter(partner=world_a.partner)
    assert event.action == "brand.update" and event.target_id == world_a.partner.public_id
    assert event.details["changed"] == ["brand_colour", "brand_name"]


def test_a_failure_after_the_brand_write_leaves_neither(world_a):
    with mock.patch("verticals.tenancy.services.brand.partner_audit_record", side_effect=Boom):
        with pytest.raises(Boom):
            partner_brand_update(
                partner=Partner.objects.get(pk=world_a.partner.pk),
                actor=admin_of(world_a),
                changes={"brand_name": "Never saved"},
            )
    assert Partner.objects.get(pk=world_a.partner.pk).brand_name == "Brand A"
    assert not PartnerAuditEvent.objects.exists()


def test_a_bad_brand_leaves_neither(world_a):
    with pytest.raises(ValidationError):
        partner_brand_update(
            partner=Partner.objects.get(pk=world_a.partner.pk),
            actor=admin_of(world_a),
            changes={"brand_colour": "red"},
        )
    assert Partner.objects.get(pk=world_a.partner.pk).brand_colour != "red"
    assert not PartnerAuditEvent.objects.exists()


def test_a_partners_new_tenant_and_plan_change_are_in_both_logs(world_a, starter):
    pro = make_plan("pro", fee="90")
    tenant = services.partner_tenant_create(
        partner=world_a.partner, name="Globex", plan=starter, actor=admin_of(world_a)
    )
    services.subscription_change(
        tenant=tenant, plan=pro, actor=admin_of(world_a), partner=world_a.partner
    )
    trail = list(
        PartnerAuditEvent.objects.filter(partner=world_a.partner)
        .order_by("pk")
        .values_list("action", "target_id")
    )
    assert trail == [
        ("tenant.create", tenant.public_id),
        ("tenant.plan.change", tenant.public_id),
    ]
    assert set(
        AuditEvent.dangerously_unscoped.filter(tenant=tenant).values_list("action", flat=True)
    ) >= {"tenant.create", "subscription.change"}


def test_a_failed_plan_on_a_new_tenant_leaves_no_tenant(world_a, starter):
    starter.is_active = False
    starter.save(update_fields=["is_active"])
    with pytest.raises(ValidationError):
        services.partner_tenant_create(
            partner=world_a.partner, name="Globex", plan=starter, actor=admin_of(world_a)
        )
    assert not Tenant.objects.filter(name="Globex").exists()
    assert not Subscription.dangerously_unscoped.filter(tenant__name="Globex").exists()
    assert not PartnerAuditEvent.objects.exists()


def test_a_tenants_own_plan_change_is_not_in_the_partners_trail(world_a, starter):
    services.subscription_change(tenant=world_a.tenant, plan=starter, actor=None)
    assert not PartnerAuditEvent.objects.exists()
