"""A partner's white label (name, colour, support address, logo) shown to its tenants."""

from __future__ import annotations

import io

from django.core.files.base import ContentFile
from django.db import transaction
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import exceptions, serializers
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from verticals.api.billing.partner import PARTNER_PARAMETER, PartnerConsoleViewSet
from verticals.api.serializers import StrictCharField
from verticals.tenancy.models import Partner, hex_colour

LOGO_MAX_BYTES = 1024 * 1024
LOGO_MAX_SIDE = 4096
LOGO_FORMATS = {"PNG": "png", "JPEG": "jpg", "GIF": "gif", "WEBP": "webp"}


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


BrandChange = {
    "application/json": inline_serializer(
        "BrandChange",
        {
            "brand_name": serializers.CharField(required=False),
            "brand_colour": serializers.CharField(required=False),
            "support_email": serializers.EmailField(required=False),
            "logo": serializers.CharField(
                required=False, allow_null=True, help_text="null: remove the logo."
            ),
            "partner": serializers.CharField(required=False),
        },
    ),
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


def checked_logo(upload) -> tuple[bytes, str]:
    """The logo's bytes and extension: a real raster image, small, and no decompression bomb."""
    from PIL import Image

    size = getattr(upload, "size", None)
    if size is None or size > LOGO_MAX_BYTES:
        raise exceptions.ValidationError(
            {"logo": [f"The logo has {size} bytes; at most {LOGO_MAX_BYTES} (1 MB)."]}
        )
    data = upload.read()
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            kind = image.format
            width, height = image.size
            if kind not in LOGO_FORMATS:
                raise ValueError
            if width > LOGO_MAX_SIDE or height > LOGO_MAX_SIDE:
                raise exceptions.ValidationError(
                    {
                        "logo": [
                            f"The logo is {width}×{height} pixels; at most "
                            f"{LOGO_MAX_SIDE}×{LOGO_MAX_SIDE}."
                        ]
                    }
                )
            image.verify()
    except exceptions.ValidationError:
        raise
    except Exception:  # Pillow raises many kinds for a file that is not an image it reads
        raise exceptions.ValidationError(
            {"logo": ["Upload a PNG, JPEG, GIF or WebP image; this file is not one."]}
        ) from None
    return data, LOGO_FORMATS[kind]


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
        known = {"brand_name", "brand_colour", "support_email", "logo", "partner"}
        takes = ", ".join(sorted(known - {"partner"}))
        # An array, or a multipart body whose parts have no names, changes nothing: it is a mistake.
        if not hasattr(data, "keys") or not (set(data) | set(request.FILES)) - {"partner"}:
            raise exceptions.ValidationError(
                {"non_field_errors": [f"Send an object with what to change: {takes}."]}
            )
        partner = self.chosen_partner(data.get("partner"))
        unknown = sorted(set(data) - known)
        if unknown:
            raise exceptions.ValidationError(
                {unknown[0]: [f"Unknown field; a brand takes {takes}."]}
            )
        fields = {
            key: data[key] for key in ("brand_name", "brand_colour", "support_email") if key in data
        }
        payload = BrandSerializer(partner, data=fields, partial=True)
        payload.is_valid(raise_exception=True)
        logo = None
        remove_logo = False
        if "logo" in request.FILES:
            logo = checked_logo(request.FILES["logo"])
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
        with transaction.atomic():
            for key, value in payload.validated_data.items():
                setattr(partner, key, value)
            if remove_logo:
                # The file stays: invoices issued under this brand keep naming it.
                partner.logo = ""
            if logo is not None:
                partner.logo.save(
                    f"{partner.public_id}.{logo[1]}", ContentFile(logo[0]), save=False
                )
            partner.full_clean(
                exclude=["parent", "name", "public_id"],
                validate_unique=False,
                validate_constraints=False,
            )
            partner.save()
        return Response(BrandSerializer(partner).data)
