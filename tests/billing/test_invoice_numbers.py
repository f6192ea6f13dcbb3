"""Invoice numbers: one gapless series per issuer, billed party and year, so that no customer or
partner can count the invoices its issuer wrote to others."""

import re
from datetime import UTC, datetime

import pytest

from tests.billing.test_core import plan
from tests.conftest import pdf_text
from verticals.billing import documents, invoicing, services
from verticals.billing.models import Invoice
from verticals.tenancy.scoping import tenant_context
from verticals.tenancy.services import tenant_create

NUMBER = re.compile(r"^(INV|WHS|CRN)-([0-9A-Za-z]{6})-([0-9A-Za-z]{20})-(\d{4})-(\d{4,})$")


def _months(*tenants, months=(8, 9, 10)):
    """Subscribe the tenants in August 2026 and close each month in turn."""
    fee = plan("numbers", fee="10")
    for tenant in tenants:
        services.subscribe(tenant, fee, now=datetime(2026, 8, 1, tzinfo=UTC))
    for month in months:
        invoicing.close_period(datetime(2026, month + 1, 1, 1, tzinfo=UTC))


def _series(invoices) -> list[int]:
    return [
        int(i.number.rsplit("-", 1)[1]) for i in sorted(invoices, key=lambda i: (i.issued_at, i.pk))
    ]


@pytest.mark.django_db
def test_each_partner_s_wholesale_numbers_run_from_one_without_the_others_in_between(
    world_a, world_b
):
    _months(world_a.tenant, world_b.tenant)
    for world, other in ((world_a, world_b), (world_b, world_a)):
        wholesale = list(Invoice.objects.filter(kind=Invoice.Kind.WHOLESALE, partner=world.partner))
        assert len(wholesale) == 3
        # Three months of wholesale invoices to this partner, while the operator also billed the
        # other partner each month: this partner's numbers are 1, 2, 3, nothing skipped.
        assert _series(wholesale) == [1, 2, 3]
        for invoice in wholesale:
            parts = NUMBER.match(invoice.number)
            assert parts.group(1) == "WHS" and parts.group(4) == str(invoice.issued_at.year)
            assert parts.group(3) == world.partner.public_id.split("_", 1)[1]
            assert other.partner.public_id.split("_", 1)[1] not in invoice.number
    numbers = list(Invoice.objects.values_list("number", flat=True))
    assert len(numbers) == len(set(numbers))


@pytest.mark.django_db
def test_each_tenant_s_retail_numbers_and_credit_notes_are_its_own_gapless_series(world_a):
    neighbour = tenant_create(partner=world_a.partner, name="Neighbour")
    _months(world_a.tenant, neighbour, months=(8, 9))
    mine = list(Invoice.objects.filter(kind=Invoice.Kind.RETAIL, tenant=world_a.tenant))
    theirs = list(Invoice.objects.filter(kind=Invoice.Kind.RETAIL, tenant=neighbour))
    assert _series(mine) == [1, 2] and _series(theirs) == [1, 2]
    # A credit note continues the series of the party it is issued to.
    note = invoicing.issue_credit_note(mine[0], reason="Goodwill", amount_minor=100)
    assert note.number.startswith("CRN-") and _series([*mine, note]) == [1, 2, 3]
    # The issuer is the tenant's partner, named the same way on every one of its series.
    issuer_part = world_a.partner.public_id.split("_", 1)[1][:6]
    assert {NUMBER.match(i.number).group(2) for i in [*mine, *theirs, note]} == {issuer_part}


@pytest.mark.django_db
def test_a_series_starts_again_each_year(world_a):
    fee = plan("yearly", fee="10")
    services.subscribe(world_a.tenant, fee, now=datetime(2026, 12, 1, tzinfo=UTC))
    invoicing.close_period(datetime(2027, 1, 1, 1, tzinfo=UTC))
    first = Invoice.objects.get(kind=Invoice.Kind.RETAIL, tenant=world_a.tenant)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(invoicing.timezone, "now", lambda: datetime(2028, 2, 1, 2, tzinfo=UTC))
        invoicing.close_period(datetime(2027, 2, 1, 1, tzinfo=UTC))
    later = (
        Invoice.objects.filter(kind=Invoice.Kind.RETAIL, tenant=world_a.tenant)
        .exclude(pk=first.pk)
        .get()
    )
    assert (
        NUMBER.match(later.number).group(4) == "2028"
        and NUMBER.match(later.number).group(5) == "0001"
    )


@pytest.mark.django_db
def test_the_number_is_the_one_on_the_pdf_the_csv_and_the_api(world_a, world_b):
    _months(world_a.tenant, world_b.tenant, months=(8,))
    wholesale = Invoice.objects.get(kind=Invoice.Kind.WHOLESALE, partner=world_a.partner)
    retail = Invoice.objects.get(kind=Invoice.Kind.RETAIL, tenant=world_a.tenant)
    for invoice in (wholesale, retail):
        assert invoice.number in pdf_text(documents.invoice_pdf(invoice))
        assert invoice.number in documents.invoice_csv(invoice)
    listed = world_a.partner_session().get("/api/v1/partner/invoices/").json()["results"]
    assert {row["number"] for row in listed} == {wholesale.number, retail.number}
    with tenant_context(world_a.tenant):
        own = world_a.client().get("/api/v1/invoices/").json()["results"]
    assert [row["number"] for row in own] == [retail.number]
