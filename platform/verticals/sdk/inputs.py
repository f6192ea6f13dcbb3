"""Decoding what API clients send as one input: text, and images (base64 or data URLs)."""

from __future__ import annotations

import base64
import binascii
import io
import re

from verticals.sdk.contracts import InputError
from verticals.sdk.datasets import image_problem

_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(;[\w=.-]+)*;base64,", re.I)


def text_input(raw, *, max_chars: int) -> str:
    """A non-empty string of at most `max_chars` characters."""
    if not isinstance(raw, str):
        raise InputError(f"Each input is a string of text, not {_kind(raw)}.")
    if not raw.strip():
        raise InputError("An input is empty; send some text.")
    if len(raw) > max_chars:
        raise InputError(f"An input has {len(raw)} characters; this model takes at most {max_chars}.")
    return raw


def image_bytes(raw, *, max_bytes: int) -> bytes:
    """The bytes of an image sent as base64 (optionally a data: URL) or as raw bytes (multipart)."""
    if isinstance(raw, (bytes, bytearray)):
        data = bytes(raw)
    elif isinstance(raw, str):
        if not raw.strip():
            raise InputError("An image input is empty; send the image as base64 (or a data: URL), or upload it as a file.")
        encoded = _DATA_URL.sub("", raw.strip(), count=1)
        if len(encoded) > (max_bytes * 4) // 3 + 8:
            raise InputError(f"An image is larger than {max_bytes} bytes; send a smaller one.")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InputError("An image input is not valid base64; encode the file's bytes with base64.") from exc
    else:
        raise InputError(f"Each image input is a base64 string (or an uploaded file), not {_kind(raw)}.")
    if not data:
        raise InputError("An image input is empty.")
    if len(data) > max_bytes:
        raise InputError(f"An image has {len(data)} bytes; at most {max_bytes}.")
    return data


def image_input(raw, *, max_bytes: int, max_pixels: int):
    """A decoded RGB PIL image; corrupt, truncated, oversized or bomb images raise InputError."""
    from PIL import Image

    data = image_bytes(raw, max_bytes=max_bytes)
    problem = image_problem(data, max_pixels=max_pixels)
    if problem:
        raise InputError(f"The image cannot be used: {problem}.")
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def _kind(value) -> str:
    if value is None:
        return "null"
    return {list: "an array", dict: "an object", bool: "a boolean", int: "a number", float: "a number"}.get(type(value), type(value).__name__)
