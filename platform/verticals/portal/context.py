"""Template context for every portal page: the caller, its tenants and the partner's brand."""

from verticals.tenancy.models import Partner


def _partner_of(caller):
    if caller is not None and caller.tenant is not None:
        return caller.tenant.partner
    if caller is not None and caller.memberships:
        return caller.memberships[0].tenant.partner
    return None


def _brand(partner) -> dict:
    if partner is None:
        partner = Partner.objects.filter(parent__isnull=True).first()
    if partner is None:
        return {"name": "Verticals", "colour": "#1f6feb", "logo_url": None, "support_email": ""}
    return {
        "name": partner.display_name,
        "colour": partner.brand_colour,
        "logo_url": partner.logo.url if partner.logo else None,
        "support_email": partner.support_email,
    }


def portal(request) -> dict:
    caller = getattr(request, "caller", None)
    # A page about one tenant before anyone is signed in (an invitation) names its partner.
    return {
        "caller": caller,
        "brand": _brand(getattr(request, "brand_partner", None) or _partner_of(caller)),
    }
