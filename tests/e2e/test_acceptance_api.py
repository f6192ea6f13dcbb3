"""The plugin SDK's acceptance, through the REST API only, as an integrator would do it, with a
real Celery worker (Redis broker) running the jobs:

- sentiment: upload ≥ 80 labelled reviews, fine-tune the MiniLM-L6 base from the model garden
  with the default parameters, reach ≥ 0.85 accuracy on reviews the model never saw;
- image classification: train resnet18 from scratch on scikit-learn's digits rendered as image
  files, reach ≥ 0.9 accuracy on digits that were never uploaded;
- both predict in Hugging Face pipeline shapes.
"""

import base64
import io
import time
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from tests.e2e.reviews import HELD_OUT, training_csv
from tests.jobs.conftest import (  # noqa: F401
    live_worker,
    redis_broker,
    redis_worker,
    test_database_url,
    worker_factory,
)

pytestmark = pytest.mark.slow
WORKER_ENV = {"JOBS_HEARTBEAT_TTL": "120"}  # a training step may hold the GIL for a while


@pytest.fixture
def shared_artifacts(settings, live_worker):  # noqa: F811
    """This process and the worker read and write one artifact store (the worker's)."""
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(live_worker.var_dir / "artifacts")},
        },
    }
    settings.REGISTRY_CACHE_DIR = live_worker.var_dir / "cache"
    return live_worker


def wait_for_job(client, project_id: str, job_id: str, timeout: float = 900) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/projects/{project_id}/jobs/{job_id}/").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(1)
    raise AssertionError(
        f"job {job_id} did not finish within {timeout}s: {job['status']} {job['progress']}"
    )


def predict(client, project_id, model_id, inputs, batch=32) -> list:
    outputs = []
    for start in range(0, len(inputs), batch):
        answer = client.post(
            f"/api/v1/projects/{project_id}/models/{model_id}/predict",
            {"inputs": inputs[start : start + batch]},
            format="json",
        )
        assert answer.status_code == 200, answer.content[:500]
        outputs += answer.json()
    return outputs


def assert_pipeline_shape(output, labels):
    assert isinstance(output, list) and output
    assert all(set(item) == {"label", "score"} and item["label"] in labels for item in output)
    assert [item["score"] for item in output] == sorted(
        (item["score"] for item in output), reverse=True
    )


@pytest.mark.pretrained
def test_sentiment_fine_tuned_from_minilm_through_the_api(world_a, shared_artifacts):
    call_command("import_base_model", "--shipped", "--name", "minilm-l6")
    client, project = world_a.client(), world_a.project.public_id
    garden = {m["name"]: m for m in client.get("/api/v1/base-models/").json()["results"]}
    assert "sentiment" in garden["minilm-l6"]["tasks"]

    csv = training_csv()
    assert csv.count(b"\n") - 1 >= 80
    uploaded = client.post(
        f"/api/v1/projects/{project}/datasets/",
        {"file": SimpleUploadedFile("reviews.csv", csv), "task": "sentiment"},
        format="multipart",
    )
    assert uploaded.status_code == 201, uploaded.json()
    dataset = uploaded.json()
    job = client.post(
        f"/api/v1/projects/{project}/jobs/",
        {
            "kind": "train",
            "task": "sentiment",
            "params": {"dataset": dataset["id"], "base_model": "minilm-l6"},
        },
        format="json",
    )
    assert job.status_code == 201, job.json()
    done = wait_for_job(client, project, job.json()["id"])
    assert done["status"] == "succeeded", done["error"]
    model_id = done["result"]["model_version"]
    model = client.get(f"/api/v1/projects/{project}/models/{model_id}/").json()
    assert (
        model["lineage"]["base_model"]["name"] == "minilm-l6"
        and model["architecture"] == "bert-finetune"
    )
    assert "val_loss" in done["metrics"] and "train_loss" in done["metrics"]

    texts = [text for text, _label in HELD_OUT]
    outputs = predict(client, project, model_id, texts)
    for output in outputs:
        assert_pipeline_shape(output, {"positive", "negative"})
    accuracy = sum(
        out[0]["label"] == label for out, (_t, label) in zip(outputs, HELD_OUT, strict=True)
    ) / len(HELD_OUT)
    print(
        f"\nsentiment (MiniLM-L6 fine-tuned): held-out accuracy {accuracy:.3f} on {len(HELD_OUT)} unseen reviews"
    )
    assert accuracy >= 0.85
    one = client.post(
        f"/api/v1/projects/{project}/models/{model_id}/predict", {"inputs": texts[0]}, format="json"
    ).json()
    assert_pipeline_shape(one, {"positive", "negative"})


def digit_images(size: int = 16):
    """scikit-learn's digits as PNG files (8×8 grey levels 0–16, scaled up), with their labels."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for pixels, label in zip(digits.images, digits.target, strict=True):
        grey = (np.clip(pixels / 16.0, 0, 1) * 255).astype("uint8")
        image = Image.fromarray(grey, mode="L").resize((size, size), Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        yield buffer.getvalue(), str(int(label))


# 16 px and 3 epochs: the digits are 8×8 to begin with, and this reached 0.963 on the held-out
# digits in half the CPU time of 32 px and 5 epochs (0.977); the test is about the platform
# (upload, a real worker's train job, serving), the ≥ 0.9 bar stays.
DIGIT_PARAMS = {"architecture": "resnet18", "image_size": 16, "horizontal_flip": False, "epochs": 3}


def test_image_classifier_from_scratch_on_digits_through_the_api(world_a, shared_artifacts):
    images = list(digit_images())
    held_out, uploaded_images = images[::6], [pair for i, pair in enumerate(images) if i % 6]
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as archive:
        for i, (data, label) in enumerate(uploaded_images):
            archive.writestr(f"digits/{label}/{i}.png", data)
    client, project = world_a.client(), world_a.project.public_id
    uploaded = client.post(
        f"/api/v1/projects/{project}/datasets/",
        {
            "file": SimpleUploadedFile("digits.zip", bundle.getvalue()),
            "task": "image-classification",
        },
        format="multipart",
    )
    assert uploaded.status_code == 201, uploaded.json()
    version = uploaded.json()["versions"][0]
    assert version["labels"] == [str(d) for d in range(10)] and version["rows"] == len(
        uploaded_images
    )
    job = client.post(
        f"/api/v1/projects/{project}/jobs/",
        {
            "kind": "train",
            "task": "image-classification",
            "params": {"dataset": uploaded.json()["id"], **DIGIT_PARAMS},
        },
        format="json",
    )
    assert job.status_code == 201, job.json()
    done = wait_for_job(client, project, job.json()["id"])
    assert done["status"] == "succeeded", done["error"]
    model_id = done["result"]["model_version"]
    assert done["result"]["metrics"]["accuracy"] >= 0.9  # the platform's own test split

    inputs = [base64.b64encode(data).decode() for data, _label in held_out]
    outputs = predict(client, project, model_id, inputs)
    for output in outputs:
        assert_pipeline_shape(output, {str(d) for d in range(10)})
    accuracy = sum(
        out[0]["label"] == label for out, (_d, label) in zip(outputs, held_out, strict=True)
    ) / len(held_out)
    print(
        f"\ndigits (resnet18 from scratch): accuracy {accuracy:.3f} on {len(held_out)} digits never uploaded; "
        f"{done['result']['samples_per_second']} samples/s"
    )
    assert accuracy >= 0.9
