"""What the billing split added to the API: invoice downloads are never cached, converted bodies
refuse unknown fields, the partner's writes land in its own audit trail, which it alone reads."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.billing.test_api import error, invoiced, signed_in, staff_user, starter  # noqa: F401
from tests.tenancy.test_brand import BAD_LOGOS
from verticals.billing import services
from verticals.billing.models import FEE
from verticals.tenancy.models import PartnerAuditEvent

pytestmark = pytest.mark.django_db


def test_every_invoice_download_is_no_store(world_a, starter):  # noqa: F811
    invoice = invoiced(world_a, starter)
    for client, prefix in (
        (world_a.client(), "/api/v1/invoices/"),
        (world_a.partner_session(), "/api/v1/partner/invoices/"),
    ):
        for fmt in ("pdf", "csv"):
            for slash in ("/", ""):
                answer = client.get(f"{prefix}{invoice.public_id}/{fmt}{slash}")
                assert answer.status_code == 200, (prefix, fmt, slash)
                assert answer["Cache-Control"] == "private, no-store", (prefix, fmt, slash)


def test_unknown_fields_are_refused_on_the_converted_bodies(world_a, starter):  # noqa: F811
    invoice = invoiced(world_a, starter)
    staff = signed_in(staff_user())
    error(
        staff.post(
            f"/api/v1/invoices/{invoice.public_id}/credit-notes/",
            {"reason": "Outage", "colour": "red"},
            format="json",
        ),
        400,
        "colour: Unknown field; send reason and, optionally, amount.",
    )
    error(
        world_a.partner_session().put(
            "/api/v1/partner/price-book/",
            {"plan": "starter", "item": FEE, "retail": "31", "discount": "5"},
            format="json",
        ),
        400,
        "discount: Unknown field; send plan, item and retail (and partner).",
    )
    error(
        world_a.partner_session().patch(
            "/api/v1/partner/brand/", {"brand_name": "X", "slogan": "y"}, format="json"
        ),
        400,
        "slogan: Unknown field; a brand takes brand_colour, brand_name, logo, support_email.",
    )
    assert not PartnerAuditEvent.objects.exists()


def test_the_partner_trail_shows_a_partner_only_its_own_actions(
    world_a,
    world_b,
    starter,  # noqa: F811
):
    services.set_wholesale(world_a.partner, starter, FEE, "20")
    a, b = world_a.partner_session(), world_b.partner_session()
    assert (
        a.put(
            "/api/v1/partner/price-book/",
            {"plan": "starter", "item": FEE, "retail": "24.5"},
            format="json",
        ).status_code
        == 200
    )
    assert (
        a.patch("/api/v1/partner/brand/", {"brand_name": "Acme"}, format="json").status_code == 200
    )
    created = a.post(
        "/api/v1/partner/tenants/", {"name": "Globex", "plan": "starter"}, format="json"
    )
    assert created.status_code == 201, created.content
    assert (
        b.patch("/api/v1/partner/brand/", {"brand_name": "Bee"}, format="json").status_code == 200
    )

    mine = a.get("/api/v1/partner/audit-events/")
    assert mine.status_code == 200
    actions = [row["action"] for row in mine.json()["results"]]
    assert actions == ["tenant.create", "brand.update", "price_book.retail"]
    assert all(row["actor"] == world_a.partner_admin.email for row in mine.json()["results"])
    theirs = b.get("/api/v1/partner/audit-events/").json()["results"]
    assert [row["action"] for row in theirs] == ["brand.update"]
    assert world_a.partner.public_id not in str(theirs) and "Globex" not in str(theirs)
    error(a.get(f"/api/v1/partner/audit-events/?partner={world_b.partner.public_id}"), 404)
    error(world_a.client().get("/api/v1/partner/audit-events/"), 403)


@pytest.mark.parametrize("name,data,fragment", BAD_LOGOS)
def test_the_api_refuses_a_bad_logo(world_a, settings, tmp_path, name, data, fragment):
    settings.MEDIA_ROOT = tmp_path
    error(
        world_a.partner_session().patch(
            "/api/v1/partner/brand/",
            {"logo": SimpleUploadedFile(name, data, content_type="image/png")},
            format="multipart",
        ),
        400,
        "logo:",
        fragment,
    )
    assert not PartnerAuditEvent.objects.exists()
