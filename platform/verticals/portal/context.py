"""Template context for every portal page: the caller, its tenants and the partner's brand."""

from verticals.tenancy.models import Partner


def _brand(caller) -> dict:
    partner = None
    if caller is not None and caller.tenant is not None:
        partner = caller.tenant.partner
    elif caller is not None and caller.memberships:
        partner = caller.memberships[0].tenant.partner
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
    return {"caller": caller, "brand": _brand(caller)}
