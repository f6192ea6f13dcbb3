"""The portal's brand form refuses what the API refuses, in the same words; the console's audit
trail page shows the partner its own actions only."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.portal.test_billing_pages import signed_in, text
from tests.tenancy.test_brand import BAD_LOGOS
from verticals.tenancy.brand import logo_checked
from verticals.tenancy.models import PartnerAuditEvent

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("name,data,fragment", BAD_LOGOS)
def test_the_portal_refuses_a_bad_logo_as_the_api_does(
    world_a, settings, tmp_path, name, data, fragment
):
    settings.MEDIA_ROOT = tmp_path
    with pytest.raises(Exception) as api_refusal:
        logo_checked(SimpleUploadedFile(name, data))
    answer = signed_in(world_a.partner_admin).post(
        "/partner/brand/",
        {
            "brand_name": "Acme Cloud",
            "brand_colour": "#d1242f",
            "support_email": "",
            "logo": SimpleUploadedFile(name, data, content_type="image/png"),
        },
    )
    assert answer.status_code == 400
    page = text(answer)
    assert fragment in page and api_refusal.value.messages[0].split(";")[0] in page
    world_a.partner.refresh_from_db()
    assert world_a.partner.brand_name == "Brand A" and not world_a.partner.logo
    assert not PartnerAuditEvent.objects.exists()


def test_the_audit_page_shows_a_partner_only_its_own_trail(world_a, world_b, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    for world, name in ((world_a, "Acme Cloud"), (world_b, "Bee Cloud")):
        saved = signed_in(world.partner_admin).post(
            "/partner/brand/",
            {"brand_name": name, "brand_colour": "#d1242f", "support_email": ""},
        )
        assert saved.status_code == 302
    page = signed_in(world_a.partner_admin).get("/partner/audit/")
    assert page.status_code == 200
    body = text(page)
    assert "brand.update" in body and "Acme Cloud" in body and "Bee Cloud" not in body
    assert world_a.partner_admin.email in body and world_b.partner_admin.email not in body
    other = signed_in(world_a.partner_admin).get(
        f"/partner/audit/?partner={world_b.partner.public_id}"
    )
    assert other.status_code == 404
