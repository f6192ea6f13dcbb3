"""The predict route's bounds, as an integrator meets them: bodies up to SERVING_MAX_BODY_BYTES (413
above it, whatever Django allows other routes), and images checked from their headers, one by one
and together, before any of them is decoded (400 naming the input and the limits)."""

from __future__ import annotations

import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from tests.memory import b64, noise_png, zero_png
from tests.registry.factories import make_model_version
from verticals.api.registry import PredictJSONParser, RequestTooLarge
from verticals.serving import service

pytestmark = pytest.mark.django_db


def predict_url(world, model, slash: str = "") -> str:
    return f"/api/v1/projects/{world.project.public_id}/models/{model.public_id}/predict{slash}"


@pytest.fixture
def shapes(world_a):
    return make_model_version(world_a, "image-classification", name="shapes")


def error(answer) -> str:
    return answer.json()["error"]["message"]


@pytest.mark.parametrize("slash", ["", "/"])
def test_a_body_over_djangos_limit_for_other_routes_is_served(world_a, shapes, settings, slash):
    # As with the 11 MB of base64 images that once answered 500 against Django's 5 MB default.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 20_000
    body = {"inputs": [b64(noise_png(60, seed)) for seed in range(4)]}
    assert len(json.dumps(body)) > 40_000
    answer = world_a.client().post(predict_url(world_a, shapes, slash), body, format="json")
    assert answer.status_code == 200, answer.json()
    assert len(answer.json()) == 4


@pytest.mark.parametrize("slash", ["", "/"])
def test_a_body_over_the_predict_limit_is_413_with_what_to_do(world_a, shapes, settings, slash):
    settings.SERVING_MAX_BODY_BYTES = 50_000
    answer = world_a.client().post(
        predict_url(world_a, shapes, slash), {"inputs": ["A" * 60_000]}, format="json"
    )
    assert answer.status_code == 413
    body = answer.json()["error"]
    assert body["code"] == "request_too_large"
    assert "at most 50000 bytes" in body["message"] and "batch_predict" in body["message"]


@pytest.mark.parametrize("declared", ["9" * 5000, "99999999999999999999"])
def test_a_content_length_no_number_type_holds_is_413_not_a_server_error(world_a, shapes, declared):
    answer = world_a.client().post(
        predict_url(world_a, shapes), {"inputs": "hi"}, format="json", CONTENT_LENGTH=declared
    )
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "request_too_large"


def test_a_body_longer_than_its_content_length_said_is_413(settings):
    settings.SERVING_MAX_BODY_BYTES = 1000
    with pytest.raises(RequestTooLarge):
        PredictJSONParser().parse(
            io.BytesIO(b'{"inputs": "' + b"A" * 2000 + b'"}'), "application/json", {}
        )
    assert PredictJSONParser().parse(io.BytesIO(b'{"inputs": "hi"}'), "application/json", {}) == {
        "inputs": "hi"
    }


def test_multipart_form_fields_over_djangos_limit_are_413(world_a, shapes, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2000
    answer = world_a.client().post(
        predict_url(world_a, shapes), {"inputs": b64(noise_png(60, 1))}, format="multipart"
    )
    assert answer.status_code == 413 and "as files" in error(answer)
    files = world_a.client().post(
        predict_url(world_a, shapes),
        {"inputs": [SimpleUploadedFile("a.png", noise_png(60, 1))]},
        format="multipart",
    )
    assert files.status_code == 200, files.json()


def truncated_jpeg(side: int) -> bytes:
    """A JPEG whose header is whole and whose data stops halfway: refused only when decoded."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (90, 120, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()[: buffer.tell() // 2]


def test_images_over_the_calls_pixel_budget_are_refused_before_any_is_decoded(
    world_a, shapes, settings
):
    settings.SERVING_MAX_IMAGE_PIXELS, settings.SERVING_MAX_REQUEST_PIXELS = 4_000_000, 6_000_000
    whole = b64(zero_png(2000, 2000))
    answer = world_a.client().post(
        predict_url(world_a, shapes),
        {"inputs": [b64(truncated_jpeg(2000)), whole, whole]},
        format="json",
    )
    assert answer.status_code == 400
    message = error(answer)
    # inputs[1] breaks the budget; inputs[0] was never decoded (it would have been refused as corrupt).
    assert message.startswith(
        "inputs[1]: The call's 3 images hold 12,000,000 pixels (8,000,000 up to this one)"
    )
    assert (
        "4,000,000 pixels per image and 6,000,000 in all" in message and "batch_predict" in message
    )


def test_an_image_over_the_per_image_setting_is_refused(world_a, shapes, settings):
    settings.SERVING_MAX_IMAGE_PIXELS = 1_000_000
    answer = world_a.client().post(
        predict_url(world_a, shapes),
        {"inputs": [b64(noise_png(30, 1)), b64(zero_png(1200, 1000))]},
        format="json",
    )
    assert answer.status_code == 400
    assert error(answer).startswith(
        "inputs[1]: The image has 1200×1000 = 1,200,000 pixels; a predict call takes at "
        "most 1,000,000 pixels per image"
    )
    single = world_a.client().post(
        predict_url(world_a, shapes), {"inputs": b64(zero_png(1200, 1000))}, format="json"
    )
    assert single.status_code == 400 and error(single).startswith("inputs: The image has 1200×1000")


def test_one_large_image_is_served_from_a_small_decoded_copy(world_a, shapes):
    decoded = service.decode_inputs(
        service.task_of(shapes), [b64(zero_png(6300, 6300))], model_version=shapes
    )
    side = shapes.config["image_size"]
    assert isinstance(decoded[0], Image.Image) and decoded[0].mode == "RGB"
    assert (
        2 * side <= min(decoded[0].size) and max(decoded[0].size) < 4 * side
    )  # what travels to the inference process
    answer = world_a.client().post(
        predict_url(world_a, shapes), {"inputs": b64(zero_png(6300, 6300))}, format="json"
    )
    assert answer.status_code == 200, answer.json()
    assert {p["label"] for p in answer.json()} <= set(shapes.labels)


def test_a_corrupt_image_is_named_when_decoded(world_a, shapes):
    answer = world_a.client().post(
        predict_url(world_a, shapes),
        {"inputs": [b64(noise_png(20, 1)), b64(truncated_jpeg(300))]},
        format="json",
    )
    assert answer.status_code == 400
    assert error(answer).startswith(
        "inputs[1]: The image cannot be used: a corrupt or truncated image"
    )
