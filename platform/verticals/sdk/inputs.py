"""Decoding what API clients send as one input: text, and images (base64 or data URLs).

Images are bounded before they cost memory: `image_input` reads an image's header (its format,
width and height) and checks it without decoding a pixel, so that core can refuse a request whose
images are too large, one by one or together, before any of them is decoded; `EncodedImage.decode`
then decodes it no larger than the model needs.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from pathlib import Path

from verticals.sdk.contracts import InputError
from verticals.sdk.ingestion import IMAGE_SIGNATURES, ImageRefused, image_header

_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(;[\w=.-]+)*;base64,", re.I)

# The formats an image may have, as datasets take them (Pillow's names; a camera's multi-picture
# JPEG opens as MPO).
IMAGE_FORMATS = tuple(IMAGE_SIGNATURES)

# Decoding towards a size keeps at least this many times that size on each side (Pillow's own
# `reducing_gap` of thumbnail()): a later resize to the size looks as it would from the full image.
REDUCING_GAP = 2.0
# a reduced image is converted to RGB this many source bytes at a time
_BAND_BYTES = 4 * 1024 * 1024


def text_input(raw, *, max_chars: int) -> str:
    """A non-empty string of at most `max_chars` characters."""
    if not isinstance(raw, str):
        raise InputError(f"Each input is a string of text, not {_kind(raw)}.")
    if not raw.strip():
        raise InputError("An input is empty; send some text.")
    if len(raw) > max_chars:
        raise InputError(
            f"An input has {len(raw)} characters; this model takes at most {max_chars}."
        )
    return raw


def image_bytes(raw, *, max_bytes: int) -> bytes:
    """The bytes of an image sent as base64 (optionally a data: URL) or as raw bytes (multipart)."""
    if isinstance(raw, (bytes, bytearray)):
        data = bytes(raw)
    elif isinstance(raw, str):
        if not raw.strip():
            raise InputError(
                "An image input is empty; send the image as base64 (or a data: URL), or upload it as a file."
            )
        encoded = _DATA_URL.sub("", raw.strip(), count=1)
        if len(encoded) > (max_bytes * 4) // 3 + 8:
            raise InputError(f"An image is larger than {max_bytes} bytes; send a smaller one.")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InputError(
                "An image input is not valid base64; encode the file's bytes with base64."
            ) from exc
    else:
        raise InputError(
            f"Each image input is a base64 string (or an uploaded file), not {_kind(raw)}."
        )
    if not data:
        raise InputError("An image input is empty.")
    if len(data) > max_bytes:
        raise InputError(f"An image has {len(data)} bytes; at most {max_bytes}.")
    return data


class EncodedImage:
    """An image file (its bytes, or its path) whose header was read and checked: `format`, `width`
    and `height` are known, no pixel is decoded yet. `decode()` gives the RGB PIL image."""

    __slots__ = ("source", "format", "width", "height")

    def __init__(self, source: bytes | Path, format: str, width: int, height: int):
        self.source, self.format, self.width, self.height = source, format, width, height

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def __repr__(self) -> str:
        return f"<EncodedImage {self.format} {self.width}×{self.height}>"

    def decode(self, *, fit: tuple[int, int] | None = None):
        """The image as RGB, decoded towards `fit` (see decode_image)."""
        return decode_image(self.source, fit=fit)


def decode_image(source: bytes | Path, *, fit: tuple[int, int] | None = None):
    """An image file (bytes or a path) as an RGB PIL image. With `fit` (width, height: what the
    model resizes its inputs to), it is decoded no larger than that resize needs: JPEGs at 1/2,
    1/4 or 1/8 scale in the decoder itself (draft), then every format reduced by whole factors
    (each output pixel the average of a block) while each side stays at least REDUCING_GAP times
    fit's, as Pillow's `resize(fit, reducing_gap=2.0)` prepares a resize. What is kept, and sent
    on to the model, is then small whatever the image's own size. Corrupt or truncated data
    raises InputError."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(
            io.BytesIO(source) if isinstance(source, bytes) else source, formats=IMAGE_FORMATS
        ) as image:
            if fit:
                wanted = (max(1, int(fit[0] * REDUCING_GAP)), max(1, int(fit[1] * REDUCING_GAP)))
                image.draft(None, wanted)  # JPEG only; other formats ignore it
                image.load()
                factor = (max(1, image.width // wanted[0]), max(1, image.height // wanted[1]))
                if factor != (1, 1):
                    return _reduced_rgb(image, factor)
            else:
                image.load()
            return image.convert("RGB")
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
    ) as exc:
        raise InputError(
            f"The image cannot be used: a corrupt or truncated image ({exc})."
        ) from exc


def _reduced_rgb(image, factor: tuple[int, int]):
    """`image.convert("RGB").reduce(factor)`, converted a band of rows at a time, so that the full-size
    RGB copy (as large as the decoded image again) is never made."""
    from PIL import Image

    width, height = image.size
    out = Image.new("RGB", (-(-width // factor[0]), -(-height // factor[1])))
    rows = max(factor[1], _BAND_BYTES // (4 * width) // factor[1] * factor[1])
    for top in range(0, height, rows):
        band = image.crop((0, top, width, min(height, top + rows)))
        out.paste(band.convert("RGB").reduce(factor), (0, top // factor[1]))
    return out


def read_image(source: bytes | Path, *, max_pixels: int) -> EncodedImage:
    """The image's header, read and checked without decoding it (ingestion.image_header: a format of
    IMAGE_FORMATS, at most `max_pixels` pixels, whole chunks). InputError otherwise."""
    try:
        kind, width, height = image_header(source, max_pixels=max_pixels)
    except ImageRefused as refused:
        if refused.size is not None:
            width, height = refused.size
            raise InputError(
                f"The image has {width}×{height} = {width * height:,} pixels; at most {max_pixels:,}. "
                "Send a smaller image."
            ) from None
        if refused.too_many:
            raise InputError(f"The image has too many pixels; at most {max_pixels:,}.") from None
        raise InputError(f"The image cannot be used: {refused}.") from None
    return EncodedImage(source, kind, width, height)


def image_input(raw, *, max_bytes: int, max_pixels: int) -> EncodedImage:
    """An image as sent (base64, a data: URL, or a file's bytes), its header checked: not decoded
    yet (see EncodedImage.decode). Wrong types, bad base64, unknown formats, corrupt headers and
    images over `max_pixels` raise InputError."""
    return read_image(image_bytes(raw, max_bytes=max_bytes), max_pixels=max_pixels)


def rgb_image(item, *, fit: tuple[int, int] | None = None):
    """A PIL image as RGB, from a PIL image or an EncodedImage (decoded towards `fit`)."""
    if isinstance(item, EncodedImage):
        return item.decode(fit=fit)
    return item if item.mode == "RGB" else item.convert("RGB")


def _kind(value) -> str:
    if value is None:
        return "null"
    return {
        list: "an array",
        dict: "an object",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)
