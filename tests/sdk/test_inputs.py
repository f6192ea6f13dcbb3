"""Images as API clients send them: the header is checked before any pixel is decoded, and decoding
towards the model's input size keeps only what that size needs."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image

from tests.memory import zero_png
from verticals.sdk import EncodedImage, InputError, decode_image, image_input, read_image
from verticals.sdk.inputs import _reduced_rgb


def encoded(image: Image.Image, format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def noise(size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Image.Image:
    if mode in ("RGBA", "LA"):
        return Image.frombytes(
            mode, size, random.Random(seed).randbytes(size[0] * size[1] * len(mode))
        )
    return Image.frombytes(
        "RGB", size, random.Random(seed).randbytes(size[0] * size[1] * 3)
    ).convert(mode)


def test_the_header_is_read_without_decoding():
    data = zero_png(6300, 6300)  # 39.7 million pixels in about 120 kB
    image = image_input(data, max_bytes=10**7, max_pixels=40_000_000)
    assert isinstance(image, EncodedImage) and (image.format, image.width, image.height) == (
        "PNG",
        6300,
        6300,
    )
    assert image.pixels == 39_690_000 and image.source == data


def test_over_the_pixel_limit_is_refused_from_the_header():
    with pytest.raises(InputError, match="6300×6300 = 39,690,000 pixels; at most 1,000,000"):
        read_image(zero_png(6300, 6300), max_pixels=1_000_000)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_header_claiming_billions_of_pixels_is_refused():
    with pytest.raises(InputError, match="at most 40,000,000"):
        read_image(zero_png(20_000, 20_000), max_pixels=40_000_000)


@pytest.mark.parametrize("format", ["TIFF", "ICO", "PPM"])
def test_formats_other_than_the_documented_ones_are_refused(format):
    with pytest.raises(InputError, match="not an image Pillow can read"):
        read_image(encoded(Image.new("RGB", (16, 16)), format), max_pixels=10**6)


@pytest.mark.parametrize("format", ["PNG", "JPEG", "BMP", "GIF", "WEBP"])
def test_documented_formats_are_read(format):
    image = read_image(encoded(Image.new("RGB", (30, 20), "red"), format), max_pixels=10**6)
    assert (image.format, image.width, image.height) == (format, 30, 20)
    assert image.decode().size == (30, 20)


def test_a_png_with_a_damaged_chunk_is_refused_before_decoding():
    data = bytearray(encoded(noise((64, 64))))
    data[60] ^= 0xFF  # inside the first IDAT chunk: its checksum no longer matches
    with pytest.raises(InputError, match="corrupt or truncated"):
        read_image(bytes(data), max_pixels=10**6)


def test_a_truncated_jpeg_is_refused_when_decoded():
    data = encoded(noise((256, 256)), "JPEG")
    image = read_image(data[: len(data) // 2], max_pixels=10**6)  # its header is whole
    with pytest.raises(InputError, match="corrupt or truncated"):
        image.decode()


def test_decoding_towards_a_size_keeps_twice_that_size_at_most_a_whole_factor_more():
    image = decode_image(zero_png(6300, 6300), fit=(64, 64))
    # reduced by 49 (6300 // 128): each side at least 2 × 64, far from 6300
    assert image.mode == "RGB" and image.size == (129, 129)
    wide = decode_image(encoded(noise((1000, 300))), fit=(64, 64))
    assert wide.size == (143, 150)  # each side on its own: 1000 / 7 and 300 / 2, rounded up
    small = encoded(noise((100, 90)))
    assert (
        decode_image(small, fit=(64, 64)).tobytes()
        == Image.open(io.BytesIO(small)).convert("RGB").tobytes()
    )


def test_jpegs_are_scaled_in_the_decoder():
    data = encoded(noise((2000, 1600)), "JPEG", quality=90)
    image = decode_image(data, fit=(64, 64))
    assert image.size == (250, 200)  # the decoder's 1/8 scale: no further whole factor keeps 2 × 64
    assert decode_image(data).size == (2000, 1600)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "L", "LA", "1"])
def test_reducing_by_bands_equals_reducing_the_whole_rgb_image(mode):
    image = noise((701, 333), mode, seed=3)
    for factor in [(2, 2), (7, 3), (5, 11)]:
        expected = image.convert("RGB").reduce(factor)
        got = _reduced_rgb(image, factor)
        assert got.size == expected.size and got.tobytes() == expected.tobytes(), (mode, factor)


def test_a_reduced_image_resizes_to_nearly_what_the_full_one_does():
    side = 1600
    smooth = Image.radial_gradient("L").resize((side, side)).convert("RGB")
    data = encoded(smooth)
    full = smooth.resize((64, 64), Image.BILINEAR)
    reduced = decode_image(data, fit=(64, 64)).resize((64, 64), Image.BILINEAR)
    difference = max(abs(a - b) for a, b in zip(full.tobytes(), reduced.tobytes(), strict=True))
    assert difference <= 3, difference
