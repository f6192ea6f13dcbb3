"""A partner's white label (name, colour, support address, logo) shown to its tenants."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import exceptions, serializers
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from verticals.api.billing.partner import PARTNER_PARAMETER, PartnerConsoleViewSet
from verticals.api.serializers import AsSentField, StrictCharField, StrictSerializer
from verticals.tenancy.brand import LOGO_MAX_BYTES, logo_checked
from verticals.tenancy.models import Partner, hex_colour
from verticals.tenancy.services.brand import BRAND_FIELDS, partner_brand_update

# Brand ---------------------------------------------------------------------------------------------


class BrandSerializer(serializers.ModelSerializer):
    """A partner's white label: its tenants' portal and invoices carry it."""

    id = serializers.CharField(source="public_id", read_only=True)
    name = serializers.CharField(read_only=True)
    brand_name = StrictCharField(max_length=120, required=False, allow_blank=True)
    brand_colour = serializers.RegexField(
        hex_colour.regex,
        required=False,
        error_messages={"invalid": "Give a colour as #rrggbb, e.g. #1f6feb."},
    )
    support_email = serializers.EmailField(max_length=254, required=False, allow_blank=True)
    logo = serializers.SerializerMethodField()

    class Meta:
        model = Partner
        fields = ["id", "name", "brand_name", "brand_colour", "support_email", "logo"]

    def get_logo(self, partner) -> str | None:
        return partner.logo.url if partner.logo else None


class AsSentEmailField(AsSentField, serializers.EmailField):
    """An email address as sent (BrandSerializer checks it; "" clears it)."""


class BrandChangeSerializer(StrictSerializer):
    takes = "a brand takes brand_colour, brand_name, logo, support_email"

    brand_name = AsSentField(required=False)
    brand_colour = AsSentField(required=False)
    support_email = AsSentEmailField(required=False)
    logo = AsSentField(required=False, allow_null=True, help_text="null: remove the logo.")
    partner = AsSentField(required=False)


BrandChange = {
    "application/json": BrandChangeSerializer,
    "multipart/form-data": inline_serializer(
        "BrandUpload",
        {
            "brand_name": serializers.CharField(required=False),
            "brand_colour": serializers.CharField(required=False),
            "support_email": serializers.EmailField(required=False),
            "logo": serializers.ImageField(
                required=False,
                help_text=f"PNG, JPEG, GIF or WebP, at most {LOGO_MAX_BYTES // 1024} KB.",
            ),
            "partner": serializers.CharField(required=False),
        },
    ),
}


class PartnerBrandView(PartnerConsoleViewSet):
    """A partner's white label (name, colour, support address, logo) shown to its tenants."""

    actions = {"show": "partner.billing.view", "change": "partner.brand.update"}
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(parameters=[PARTNER_PARAMETER], responses=BrandSerializer)
    def show(self, request):
        return Response(BrandSerializer(self.chosen_partner()).data)

    @extend_schema(
        parameters=[PARTNER_PARAMETER],
        request=BrandChange,
        responses={
            200: BrandSerializer,
            400: OpenApiResponse(
                description="A bad colour or email, or a logo that is not a small PNG, JPEG, GIF or WebP image."
            ),
        },
    )
    def change(self, request):
        data = request.data
        takes = ", ".join(
            name for name in sorted(BrandChangeSerializer().fields) if name != "partner"
        )
        # An array, or a multipart body whose parts have no names, changes nothing: it is a mistake.
        if not hasattr(data, "keys") or not (set(data) | set(request.FILES)) - {"partner"}:
            raise exceptions.ValidationError(
                {"non_field_errors": [f"Send an object with what to change: {takes}."]}
            )
        partner = self.chosen_partner(data.get("partner"))
        BrandChangeSerializer(data=data).is_valid(raise_exception=True)  # no unknown field
        fields = {key: data[key] for key in BRAND_FIELDS if key in data}
        payload = BrandSerializer(partner, data=fields, partial=True)
        payload.is_valid(raise_exception=True)
        logo = None
        remove_logo = False
        if "logo" in request.FILES:
            try:
                logo = logo_checked(request.FILES["logo"])
            except DjangoValidationError as exc:
                raise exceptions.ValidationError({"logo": exc.messages}) from None
        elif "logo" in data:
            if data["logo"] in (None, ""):
                remove_logo = True
            else:
                raise exceptions.ValidationError(
                    {
                        "logo": [
                            "Upload the logo as a file (multipart/form-data), or send null to remove it."
                        ]
                    }
                )
        partner_brand_update(
            partner=partner,
            actor=self.caller,
            changes=dict(payload.validated_data),
            logo=logo,
            remove_logo=remove_logo,
        )
        return Response(BrandSerializer(partner).data)
