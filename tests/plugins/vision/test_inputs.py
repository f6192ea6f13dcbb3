"""decode_input: what API clients send, and every way it can be unusable."""

from __future__ import annotations

import base64

import pytest
from PIL import Image

from tests.plugins.vision.helpers import b64, png
from verticals.sdk import EncodedImage, InputError


def test_base64_png(task):
    image = task.decode_input(b64(png(Image.new("RGB", (20, 10), (10, 200, 30)))))
    assert isinstance(image, EncodedImage) and (image.format, image.width, image.height) == (
        "PNG",
        20,
        10,
    )
    rgb = image.decode()
    assert rgb.mode == "RGB" and rgb.size == (20, 10) and rgb.getpixel((0, 0)) == (10, 200, 30)


def test_data_url(task):
    data = png(Image.new("RGB", (12, 12), "blue"))
    image = task.decode_input("data:image/png;base64," + b64(data)).decode()
    assert image.size == (12, 12) and image.getpixel((3, 3)) == (0, 0, 255)


def test_raw_bytes_from_an_upload(task):
    image = task.decode_input(png(Image.new("RGB", (9, 9), "white"), "JPEG"))
    assert image.format == "JPEG" and image.decode().mode == "RGB" and image.decode().size == (9, 9)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "1"])
def test_other_modes_become_rgb(task, mode):
    assert task.decode_input(b64(png(Image.new(mode, (8, 8))))).decode().mode == "RGB"


def test_example_inputs_decode(task):
    inputs = task.example_inputs()
    assert inputs and all(isinstance(raw, str) for raw in inputs)
    assert all(task.decode_input(raw).decode().size == (64, 64) for raw in inputs)


def test_input_size_is_the_models_image_size(task):
    assert task.input_size({"image_size": 48}) == (48, 48)
    assert task.input_size({}) == (224, 224)  # an imported torchvision model that does not say
    assert task.input_size({"image_size": True}) == (224, 224)


def refused(task, raw) -> str:
    with pytest.raises(InputError) as caught:
        task.decode_input(raw)
    message = str(caught.value)
    assert len(message) > 15
    return message


def test_truncated_png(task):
    data = png(Image.effect_noise((64, 64), 40).convert("RGB"))
    assert "corrupt or truncated" in refused(task, b64(data[: len(data) // 2]))


def test_bytes_that_are_no_image(task):
    assert "not an image" in refused(task, b64(b"hello, this is a text file, not a picture"))
    assert "not an image" in refused(task, b"%PDF-1.4 not an image either")


def test_invalid_base64(task):
    assert "base64" in refused(task, "this is not base64!")
    assert "base64" in refused(task, "data:image/png;base64,@@@")


def test_empty_and_wrong_types(task):
    refused(task, "")
    refused(task, "   ")
    refused(task, b"")
    for raw in (None, 42, ["a"], {"image": "x"}):
        refused(task, raw)


def test_over_max_image_bytes(task):
    too_big = b"\x89PNG\r\n\x1a\n" + bytes(task.max_image_bytes)
    assert str(task.max_image_bytes) in refused(task, too_big)
    assert str(task.max_image_bytes) in refused(task, base64.b64encode(too_big).decode("ascii"))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb(task):
    # 100 million pixels of one colour: a few kilobytes of PNG, 300 MB once decoded as RGB.
    bomb = png(Image.new("1", (10_000, 10_000), 0))
    assert len(bomb) < 100_000
    message = refused(task, b64(bomb))
    assert "10000×10000" in message and f"{task.max_pixels:,}" in message


def test_limits(task):
    assert task.max_image_bytes == 10 * 1024 * 1024
    assert task.max_pixels == 40_000_000
