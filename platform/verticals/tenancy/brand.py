"""A partner's logo: the one check the API and the portal make of an upload before it is stored."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from django.core.exceptions import ValidationError
from PIL import Image

LOGO_MAX_BYTES = 1024 * 1024
LOGO_MAX_SIDE = 4096
LOGO_FORMATS = {"PNG": "png", "JPEG": "jpg", "GIF": "gif", "WEBP": "webp"}
NOT_AN_IMAGE = "Upload a valid image (PNG, JPEG, GIF or WebP); this file is not one."


@dataclass(frozen=True)
class Logo:
    """A checked logo: its bytes, the extension of its format, the name it was uploaded under."""

    data: bytes
    extension: str
    upload_name: str = ""

    @property
    def named_as_uploaded(self) -> str:
        """The upload's name with its format's extension (acme.png)."""
        stem = Path(self.upload_name or "logo").stem or "logo"
        return f"{stem}.{self.extension}"


def logo_checked(upload) -> Logo:
    """The upload as a logo: a real raster image of a known format, small in bytes and in pixels,
    and no decompression bomb. Only the header is read to learn the size; ValidationError (one
    message) says what is wrong."""
    size = getattr(upload, "size", None)
    if size is None or size > LOGO_MAX_BYTES:
        raise ValidationError(f"The logo has {size} bytes; at most {LOGO_MAX_BYTES} (1 MB).")
    data = upload.read()
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            kind = image.format
            width, height = image.size
            if kind not in LOGO_FORMATS:
                raise ValueError
            if width > LOGO_MAX_SIDE or height > LOGO_MAX_SIDE:
                raise ValidationError(
                    f"The logo is {width}×{height} pixels; at most {LOGO_MAX_SIDE}×{LOGO_MAX_SIDE}."
                )
            image.verify()
    except ValidationError:
        raise
    except Image.DecompressionBombError:  # a header claiming far more pixels than any logo has
        raise ValidationError(
            f"The logo claims more pixels than Pillow will decode; at most "
            f"{LOGO_MAX_SIDE}×{LOGO_MAX_SIDE} pixels."
        ) from None
    except Exception:  # Pillow raises many kinds for a file that is not an image it reads
        raise ValidationError(NOT_AN_IMAGE) from None
    return Logo(data, LOGO_FORMATS[kind], getattr(upload, "name", "") or "")
