"""The partner console: tenants with usage, revenue and margin; create, change plan, suspend and
reactivate; the price book; the brand; growth; invoices; isolation between partners."""

import io
import re
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from PIL import Image

from tests.conftest import make_user
from tests.portal.test_billing_pages import invoiced, last_period, make_plan, signed_in, text
from verticals.billing import services
from verticals.billing.analytics import month_label
from verticals.billing.metering import Usage, record
from verticals.billing.models import FEE, Invoice, PriceBookEntry, Subscription
from verticals.tenancy.models import Invitation, Membership, PartnerMembership, Tenant
from verticals.tenancy.roles import PartnerRole, Role
from verticals.tenancy.scoping import tenant_context


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 2), "#d1242f").save(out, "PNG")
    return out.getvalue()


def starter_with_margin(world):
    """A plan the world's partner buys at 20.00 and sells at the list price, 30.00."""
    plan = make_plan("starter", fee="30", prices={"inference.requests": ("100", "0.01")})
    services.set_wholesale(world.partner, plan, FEE, "20")
    return plan


@pytest.mark.django_db
def test_the_console_lists_its_tenants_with_plan_usage_revenue_and_margin(world_a, world_b):
    invoiced(world_a, starter_with_margin(world_a))
    record(world_a.tenant, [Usage("inference.requests", Decimal(40))], source="test")
    page = signed_in(world_a.partner_admin).get("/partner/")
    assert page.status_code == 200
    body = text(page)
    row = re.search(rf'data-testid="tenant-{world_a.tenant.public_id}".*?</tr>', body).group(0)
    assert "Tenant A" in row and "Starter" in row and "Active" in row and "Predictions 40" in row
    assert (
        "30.50 USD" in row and "10.00 USD" in row
    )  # revenue of last month's invoice; margin over the 20.00 wholesale fee
    assert "Tenant B" not in body
    assert "Brand A" in body  # the console wears the partner's brand
    assert 'data-testid="nav-partner"' in body


@pytest.mark.django_db
def test_users_without_a_partner_membership_get_404(world_a):
    owner = signed_in(world_a.owner)
    for url in (
        "/partner/",
        "/partner/prices/",
        "/partner/brand/",
        "/partner/growth/",
        "/partner/invoices/",
        f"/partner/tenants/{world_a.tenant.public_id}/",
    ):
        assert owner.get(url).status_code == 404, url
    assert 'data-testid="nav-partner"' not in text(owner.get("/projects/"))


@pytest.mark.django_db
def test_partner_b_cannot_open_or_touch_partner_a_tenants_or_invoices(world_a, world_b):
    invoice = invoiced(world_a, starter_with_margin(world_a))
    wholesale = Invoice.objects.get(kind=Invoice.Kind.WHOLESALE, partner=world_a.partner)
    b = signed_in(world_b.partner_admin)
    tenant = world_a.tenant.public_id
    assert b.get(f"/partner/tenants/{tenant}/").status_code == 404
    assert b.post(f"/partner/tenants/{tenant}/suspend", {"reason": "x"}).status_code == 404
    assert b.post(f"/partner/tenants/{tenant}/reactivate").status_code == 404
    for number in (invoice.public_id, wholesale.public_id):
        assert b.get(f"/partner/invoices/{number}/").status_code == 404
        assert b.get(f"/partner/invoices/{number}/pdf").status_code == 404
    assert b.get(f"/partner/?partner={world_a.partner.public_id}").status_code == 404
    world_a.tenant.refresh_from_db()
    assert not world_a.tenant.is_suspended


@pytest.mark.django_db
def test_create_a_tenant_on_a_plan_with_a_trial_and_its_owner_invited(
    world_a, mailoutbox, django_capture_on_commit_callbacks
):
    plan = starter_with_margin(world_a)
    client = signed_in(world_a.partner_admin)
    form = text(client.get("/partner/tenants/new"))
    assert "Starter — 30.00 USD a month" in form
    with django_capture_on_commit_callbacks(execute=True):
        created = client.post(
            "/partner/tenants/new",
            {
                "name": "Globex",
                "owner_email": "boss@globex.example",
                "plan": plan.public_id,
                "trial_days": "14",
            },
        )
    assert created.status_code == 302
    tenant = Tenant.objects.get(name="Globex")
    assert (
        tenant.partner == world_a.partner
        and created["Location"] == f"/partner/tenants/{tenant.public_id}/"
    )
    subscription = Subscription.dangerously_unscoped.get(tenant=tenant)
    assert subscription.plan == plan and subscription.trial_ends_at > timezone.now()
    invitation = Invitation.dangerously_unscoped.get(tenant=tenant)
    assert invitation.email == "boss@globex.example" and invitation.role == "owner"
    assert len(mailoutbox) == 1 and "Brand A" in mailoutbox[0].body + mailoutbox[0].subject
    page = text(client.get(created["Location"]))
    assert "Globex" in page and "Trial ends" in page and "Plan Starter" in page


@pytest.mark.django_db
def test_a_bad_tenant_form_shows_the_message_and_writes_nothing(world_a):
    plan = starter_with_margin(world_a)
    client = signed_in(world_a.partner_admin)
    before = Tenant.objects.count()
    bad_trial = client.post(
        "/partner/tenants/new",
        {
            "name": "Initech",
            "owner_email": "a@initech.example",
            "plan": plan.public_id,
            "trial_days": "400",
        },
    )
    assert bad_trial.status_code == 400 and "less than or equal to 365" in text(bad_trial)
    clash = client.post(
        "/partner/tenants/new",
        {
            "name": "Tenant A",
            "owner_email": "a@initech.example",
            "plan": plan.public_id,
            "trial_days": "0",
        },
    )
    assert clash.status_code == 400 and "already has a tenant named" in text(clash)
    retired = make_plan("retired", is_active=False)
    gone = client.post(
        "/partner/tenants/new",
        {
            "name": "Initech",
            "owner_email": "a@initech.example",
            "plan": retired.public_id,
            "trial_days": "0",
        },
    )
    assert gone.status_code == 400 and "Choose one of the plans listed" in text(gone)
    assert (
        Tenant.objects.count() == before
        and not Invitation.dangerously_unscoped.filter(email="a@initech.example").exists()
    )


@pytest.mark.django_db
def test_suspend_with_a_reason_then_reactivate(world_a):
    client = signed_in(world_a.partner_admin)
    url = f"/partner/tenants/{world_a.tenant.public_id}"
    missing = client.post(f"{url}/suspend", {"reason": ""})
    assert missing.status_code == 400 and "Say why the tenant is suspended" in text(missing)
    world_a.tenant.refresh_from_db()
    assert not world_a.tenant.is_suspended
    assert client.post(f"{url}/suspend", {"reason": "Unpaid invoice"}).status_code == 302
    world_a.tenant.refresh_from_db()
    assert world_a.tenant.is_suspended and world_a.tenant.suspended_reason == "Unpaid invoice"
    page = text(client.get(f"{url}/"))
    assert (
        "Suspended" in page and "Unpaid invoice" in page and 'data-testid="reactivate-form"' in page
    )
    refused = signed_in(world_a.owner).get("/projects/")
    assert refused.status_code == 403 and "Unpaid invoice" in text(refused)
    assert client.post(f"{url}/reactivate").status_code == 302
    world_a.tenant.refresh_from_db()
    assert not world_a.tenant.is_suspended
    assert signed_in(world_a.owner).get("/projects/").status_code == 200


@pytest.mark.django_db
def test_the_partner_changes_a_tenants_plan(world_a):
    small = make_plan("small", fee="10")
    big = make_plan("big", fee="90")
    services.subscribe(world_a.tenant, small)
    client = signed_in(world_a.partner_admin)
    url = f"/partner/tenants/{world_a.tenant.public_id}"
    assert client.post(f"{url}/plan", {"plan": big.public_id}).status_code == 302
    assert (
        Subscription.dangerously_unscoped.get(tenant=world_a.tenant, ends_at__isnull=True).plan
        == big
    )
    again = client.post(f"{url}/plan", {"plan": big.public_id})
    assert again.status_code == 400 and "already on the plan" in text(again)


@pytest.mark.django_db
def test_retail_below_wholesale_is_refused_next_to_the_field_and_nothing_is_written(world_a):
    plan = starter_with_margin(world_a)
    client = signed_in(world_a.partner_admin)
    page = client.get("/partner/prices/")
    fee_row = re.search(r'data-testid="price-starter-plan.fee".*?</tr>', text(page)).group(0)
    assert "30.00 USD" in fee_row and "20.00 USD" in fee_row  # list and wholesale (read only)
    fee, meter = (
        f"retail__{plan.public_id}__plan.fee",
        f"retail__{plan.public_id}__inference.requests",
    )
    refused = client.post("/partner/prices/", {fee: "15", meter: "0.02"})
    assert refused.status_code == 400
    row = re.search(r'data-testid="price-starter-plan.fee".*?</tr>', text(refused)).group(0)
    assert "15 is below the wholesale price 20" in row and 'value="15"' in row
    assert not PriceBookEntry.objects.filter(
        item="inference.requests"
    ).exists()  # the valid change was not kept either
    assert PriceBookEntry.objects.get(item=FEE).retail is None
    for wrong, message in (
        ("abc", "is not a number"),
        ("-1", "never negative"),
        ("1e30", "too large"),
    ):
        answer = client.post("/partner/prices/", {fee: wrong})
        assert answer.status_code == 400 and message in text(answer), wrong
    saved = client.post("/partner/prices/", {fee: "35", meter: "0.02"})
    assert saved.status_code == 302
    assert PriceBookEntry.objects.get(item=FEE).retail == Decimal(35)
    assert PriceBookEntry.objects.get(item="inference.requests").retail == Decimal("0.02")
    # The tenant's plan page shows the new retail price.
    assert "35.00 USD" in text(signed_in(world_a.owner).get("/billing/plan/"))


@pytest.mark.django_db
def test_the_brand_page_saves_the_brand_and_refuses_a_bad_colour(world_a, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    client = signed_in(world_a.partner_admin)
    assert 'data-testid="brand-preview"' in text(client.get("/partner/brand/"))
    bad = client.post(
        "/partner/brand/", {"brand_name": "Acme Cloud", "brand_colour": "red", "support_email": ""}
    )
    assert bad.status_code == 400 and "Give a colour as #rrggbb" in text(bad)
    world_a.partner.refresh_from_db()
    assert world_a.partner.brand_name == "Brand A"
    assert (
        "Acme Cloud" not in text(bad).split("<main>")[0]
    )  # the top bar still shows the saved brand
    logo = SimpleUploadedFile("acme.png", png(), content_type="image/png")
    saved = client.post(
        "/partner/brand/",
        {
            "brand_name": "Acme Cloud",
            "brand_colour": "#d1242f",
            "support_email": "help@acme.example",
            "logo": logo,
        },
    )
    assert saved.status_code == 302
    world_a.partner.refresh_from_db()
    assert world_a.partner.brand_colour == "#d1242f" and world_a.partner.logo.name.startswith(
        "partner-logos/acme"
    )
    page = text(signed_in(world_a.owner).get("/billing/"))
    assert "Acme Cloud" in page and "--brand: #d1242f" in page and "help@acme.example" in page
    not_image = client.post(
        "/partner/brand/",
        {
            "brand_name": "Acme Cloud",
            "brand_colour": "#d1242f",
            "support_email": "",
            "logo": SimpleUploadedFile("x.png", b"not a picture", content_type="image/png"),
        },
    )
    assert not_image.status_code == 400 and "valid image" in text(not_image)


@pytest.mark.django_db
def test_the_growth_page_shows_months_mrr_revenue_and_usage_by_task(world_a):
    invoiced(world_a, starter_with_margin(world_a), task="sentiment")
    page = signed_in(world_a.partner_admin).get("/partner/growth/?months=3")
    assert page.status_code == 200
    body = text(page)
    growth = re.search(r'data-testid="growth".*?</table>', body).group(0)
    last = month_label(last_period()[0].date())
    row = re.search(rf"<tr><td>{last}</td>.*?</tr>", growth).group(0)
    assert "30.00 USD" in row and "30.50 USD" in row and "10.00 USD" in row  # MRR, revenue, margin
    assert (
        'data-testid="chart-mrr-USD" data-points="3"' in body
        and 'data-testid="chart-tenants"' in body
    )
    assert "<polyline" in body and "<rect" in body
    usage = re.search(r'data-testid="usage-by-task".*?</section>', body).group(0)
    assert "sentiment" in usage and "150 requests" in usage


@pytest.mark.django_db
def test_the_invoices_page_lists_wholesale_invoices_with_margin_and_downloads(world_a):
    retail = invoiced(world_a, starter_with_margin(world_a))
    wholesale = Invoice.objects.get(kind=Invoice.Kind.WHOLESALE, partner=world_a.partner)
    client = signed_in(world_a.partner_admin)
    body = text(client.get("/partner/invoices/"))
    row = re.search(rf'data-testid="invoice-{wholesale.number}".*?</tr>', body).group(0)
    assert (
        "20.50 USD" in row and "30.50 USD" in row and "10.00 USD" in row
    )  # paid, billed to tenants, margin
    assert retail.number in body
    detail = text(client.get(f"/partner/invoices/{wholesale.public_id}/"))
    assert "Tenant A" in detail and 'data-testid="margin">10.00 USD' in detail
    pdf = client.get(f"/partner/invoices/{wholesale.public_id}/pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    csv = client.get(f"/partner/invoices/{retail.public_id}/csv")
    assert csv.status_code == 200 and "30.50,USD" in csv.content.decode().replace('"', "")


@pytest.mark.django_db
def test_a_user_of_several_partners_switches_between_them(world_a, world_b):
    PartnerMembership.objects.create(
        partner=world_b.partner, user=world_a.partner_admin, role=PartnerRole.VIEWER
    )
    client = signed_in(world_a.partner_admin)
    first = text(client.get("/partner/"))
    assert (
        'data-testid="partner-switcher"' in first
        and "Tenant A" in first
        and "Tenant B" not in first
    )
    other = text(client.get(f"/partner/?partner={world_b.partner.public_id}"))
    assert "Tenant B" in other and "Tenant A" not in other and "Brand B" in other
    assert (
        f"/partner/tenants/{world_b.tenant.public_id}/?partner={world_b.partner.public_id}" in other
    )
    assert (
        client.get(
            f"/partner/tenants/{world_b.tenant.public_id}/?partner={world_b.partner.public_id}"
        ).status_code
        == 200
    )
    # A viewer at partner B: it reads, but may not suspend or change prices there.
    refused = client.post(
        f"/partner/tenants/{world_b.tenant.public_id}/suspend?partner={world_b.partner.public_id}",
        {"reason": "no"},
    )
    assert refused.status_code == 403 and "partner.tenant.suspend" in text(refused)
    assert (
        client.post(f"/partner/prices/?partner={world_b.partner.public_id}", {}).status_code == 403
    )
    assert (
        client.get(f"/partner/tenants/new?partner={world_b.partner.public_id}").status_code == 403
    )


@pytest.mark.django_db
def test_a_partner_admin_who_is_also_a_tenant_member_acts_on_its_customers(world_a, world_b):
    # Signed in with a tenant of its own selected (another partner's), the admin still writes the customer's rows.
    user = make_user("both@example.com")
    PartnerMembership.objects.create(partner=world_a.partner, user=user, role=PartnerRole.ADMIN)
    with tenant_context(world_b.tenant):
        Membership.objects.create(tenant=world_b.tenant, user=user, role=Role.OWNER)
    plan = make_plan("small", fee="10")
    client = signed_in(user)
    assert (
        client.post(
            f"/partner/tenants/{world_a.tenant.public_id}/plan", {"plan": plan.public_id}
        ).status_code
        == 302
    )
    assert Subscription.dangerously_unscoped.get(tenant=world_a.tenant).plan == plan
    assert (
        client.post(
            f"/partner/tenants/{world_a.tenant.public_id}/suspend", {"reason": "Audit"}
        ).status_code
        == 302
    )
    assert Tenant.objects.get(pk=world_a.tenant.pk).is_suspended
    assert not Subscription.dangerously_unscoped.filter(tenant=world_b.tenant).exists()
