"""The one logo check (API and portal): a small raster image of a known format, no bomb."""

import io
import struct
import zlib

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from verticals.tenancy.brand import LOGO_MAX_BYTES, logo_checked


def png(size=(4, 2)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, "#d1242f").save(out, "PNG")
    return out.getvalue()


def bomb_png(side: int = 100_000) -> bytes:
    """A few hundred bytes whose header claims side × side pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    pixels = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
BAD_LOGOS = [
    pytest.param("bomb.png", bomb_png(), "more pixels", id="bomb"),
    pytest.param("wide.png", png((5000, 10)), "pixels", id="too-many-pixels"),
    pytest.param("logo.svg", SVG, "not one", id="svg"),
    pytest.param("logo.png", b"not a picture", "valid image", id="not-an-image"),
    pytest.param("big.png", b"\x89PNG" + b"0" * (LOGO_MAX_BYTES + 10), "at most", id="too-big"),
]


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="image/png")


def test_a_small_png_is_a_logo():
    logo = logo_checked(upload("acme.png", png()))
    assert logo.extension == "png" and logo.named_as_uploaded == "acme.png"


@pytest.mark.parametrize("name,data,fragment", BAD_LOGOS)
def test_a_bad_logo_is_refused_saying_why(name, data, fragment):
    with pytest.raises(ValidationError) as refused:
        logo_checked(upload(name, data))
    assert fragment in refused.value.messages[0]
