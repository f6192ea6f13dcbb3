"""The portal's registry pages through Django's test client: dataset uploads (form post and the
XHR/JSON variant), statistics and validation reports, the train form generated from a task's
schema, model pages (metrics, confusion matrix, lineage), the playground, roles and tenancy.

Models and datasets are real: tests.registry.factories trains a tiny model per task once per
test session and uploads the tasks' own example datasets.
"""

import re
from html import unescape
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from tests.conftest import make_member
from tests.registry.factories import (
    REVIEWS,
    csv_bytes,
    make_dataset_version,
    make_model_version,
    png_bytes,
)
from verticals.jobs.models import Job
from verticals.registry.models import Dataset, DatasetVersion, ModelVersion
from verticals.sdk.metrics import classification_evaluation
from verticals.tenancy.models import AuditEvent
from verticals.tenancy.roles import Role
from verticals.tenancy.scoping import tenant_context

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}
XHR = {"HTTP_ACCEPT": "application/json", "HTTP_X_REQUESTED_WITH": "XMLHttpRequest"}


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def text(response) -> str:
    return unescape(response.content.decode())


def csv_file(rows=REVIEWS * 3, name="reviews.csv", header="text,label") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, csv_bytes(rows, header=header), content_type="text/csv")


def base(world) -> str:
    return f"/projects/{world.project.public_id}"


def between(html: str, start: str, end: str = "</table>") -> str:
    """The part of the page from `start` to the next `end`."""
    at = html.index(start)
    return html[at : html.index(end, at)]


# --- datasets -----------------------------------------------------------------------------


def test_upload_a_csv_with_the_form_then_see_its_statistics_and_preview(world_a):
    client = signed_in(world_a.owner)
    page = text(client.get(f"{base(world_a)}/datasets/"))
    assert 'data-testid="upload-form"' in page and "upload.js" in page and "<progress" in page
    assert 'value="sentiment"' in page and 'value="image-classification"' in page, (
        "the enabled tasks"
    )

    answer = client.post(
        f"{base(world_a)}/datasets/",
        {
            "task": "sentiment",
            "name": "reviews",
            "file": csv_file(),
            "seed": "7",
            "validation_fraction": "0.2",
            "test_fraction": "",
        },
    )
    dataset = Dataset.dangerously_unscoped.get(project=world_a.project, name="reviews")
    assert answer.status_code == 302
    assert answer["Location"] == f"{base(world_a)}/datasets/{dataset.public_id}/?version=1"
    version = DatasetVersion.dangerously_unscoped.get(dataset=dataset)
    assert (
        version.split_seed == 7
        and version.split_fractions["validation"] == 0.2
        and version.rows == 18
    )

    html = text(client.get(answer["Location"]))
    assert "Dataset 'reviews' v1 uploaded: 18 examples, 2 labels." in html
    splits = between(html, 'data-testid="split-rows"')
    counts = {
        name: version.stats["splits"][name]["rows"] for name in ("train", "validation", "test")
    }
    assert sum(counts.values()) == 18 and counts["validation"] >= 2
    for name, rows in counts.items():
        assert re.search(
            rf'data-split="{name}"><td>{name}</td>\s*<td><div class="share"><span class="count">{rows} \(',
            splits,
        )
    labels = between(html, 'data-testid="label-distribution"')
    assert (
        'data-label="negative"' in labels
        and 'data-label="positive"' in labels
        and "width: " in labels
    )
    preview = between(html, 'data-testid="preview"')
    assert preview.count('<tr><td class="num">') == counts["train"]
    assert any(review in preview for review, _ in REVIEWS)
    assert 'data-testid="train-link"' in html and f"dataset={version.public_id}" in html

    # The list shows it with its latest version and labels.
    listing = text(client.get(f"{base(world_a)}/datasets/"))
    row = between(listing, 'data-testid="datasets"')
    assert "reviews" in row and "v1" in row and "18" in row and "negative, positive" in row

    # A new version from the dataset's page.
    again = client.post(
        f"{base(world_a)}/datasets/{dataset.public_id}/versions", {"file": csv_file(REVIEWS * 2)}
    )
    assert again.status_code == 302 and again["Location"].endswith("?version=2")
    second = text(client.get(again["Location"]))
    assert (
        "v2 uploaded: 12 examples" in second
        and 'data-testid="versions"' in second
        and "?version=1" in second
    )


def test_upload_through_xhr_answers_json_with_the_statistics(world_a):
    client = signed_in(world_a.owner)
    answer = client.post(
        f"{base(world_a)}/datasets/",
        {"task": "sentiment", "name": "xhr", "file": csv_file()},
        **XHR,
    )
    assert answer.status_code == 201, answer.content
    body = answer.json()
    dataset = Dataset.dangerously_unscoped.get(project=world_a.project, name="xhr")
    assert (
        body["ok"]
        and body["dataset"] == dataset.public_id
        and body["number"] == 1
        and body["rows"] == 18
    )
    assert body["labels"] == ["negative", "positive"]
    assert body["url"] == f"{base(world_a)}/datasets/{dataset.public_id}/?version=1"
    assert (
        'data-testid="upload-done"' in body["html"]
        and 'data-testid="label-distribution"' in body["html"]
    )
    assert 'id="datasets-table"' in body["table"] and "xhr" in body["table"]
    assert client.get(body["url"]).status_code == 200


def test_a_bad_csv_shows_its_problems_by_line_and_stores_nothing(world_a, artifacts_dir):
    client = signed_in(world_a.owner)
    rows = [
        ("Great value", "positive"),
        ("Broken on arrival", ""),
        ("", "negative"),
        ("Fine", "positive"),
    ]

    answer = client.post(
        f"{base(world_a)}/datasets/", {"task": "sentiment", "name": "bad", "file": csv_file(rows)}
    )
    assert answer.status_code == 400
    html = text(answer)
    assert "The upload has 2 problem(s); fix them and upload again." in html
    report = between(html, 'data-testid="problems"')
    assert "<td>line 3</td><td>the label is empty</td>" in report
    assert "<td>line 4</td><td>'text' is empty</td>" in report
    assert answer.context["form"].errors["file"]

    xhr = client.post(
        f"{base(world_a)}/datasets/",
        {"task": "sentiment", "name": "bad", "file": csv_file(rows)},
        **XHR,
    )
    assert xhr.status_code == 400
    body = xhr.json()
    assert not body["ok"] and body["problems"] == [
        {"where": "line 3", "message": "the label is empty"},
        {"where": "line 4", "message": "'text' is empty"},
    ]
    assert "<td>line 3</td>" in body["html"] and "2 problem(s)" in body["message"]

    # The wrong columns, a wrong file type and a missing task: each says what to fix.
    header = client.post(
        f"{base(world_a)}/datasets/",
        {"task": "sentiment", "file": csv_file(header="review,label")},
        **XHR,
    ).json()
    assert "must name the columns 'text' and 'label'" in header["message"]
    assert header["problems"] == [{"where": "line 1", "message": "missing column(s): text"}]
    wrong = client.post(
        f"{base(world_a)}/datasets/",
        {"task": "sentiment", "file": SimpleUploadedFile("x.txt", b"a,b\n")},
        **XHR,
    )
    assert "is not an accepted file" in wrong.json()["message"]
    fields = client.post(
        f"{base(world_a)}/datasets/", {"file": csv_file(), "validation_fraction": "0.7"}
    )
    assert fields.status_code == 400 and set(fields.context["form"].errors) == {"task"}
    fraction = client.post(
        f"{base(world_a)}/datasets/",
        {"task": "sentiment", "file": csv_file(), "validation_fraction": "0.7"},
    )
    assert "Give a fraction from 0 to 0.5" in text(fraction)
    assert not Dataset.dangerously_unscoped.exists()
    stored = artifacts_dir / "datasets"
    assert not stored.exists() or not any(p.is_file() for p in stored.rglob("*"))


# --- the train form -----------------------------------------------------------------------


def field_html(page: str, name: str) -> str:
    found = re.search(rf'<div class="field[^"]*" data-field="{name}">(.*?)\n</div>', page, re.S)
    assert found, f"no field {name}"
    return found.group(1)


def test_the_train_form_is_generated_from_the_schema_with_defaults(world_a):
    version = make_dataset_version(world_a, "sentiment", rows=24)
    client = signed_in(world_a.owner)
    page = text(client.get(f"{base(world_a)}/train/?task=sentiment"))

    dataset = field_html(page, "dataset")
    assert f'<option value="{version.public_id}" selected>reviews v1 · 24 rows' in dataset
    architecture = field_html(page, "architecture")
    assert 'value="transformer-small"' in architecture
    assert "BERT fine-tune (bert-finetune) — needs a base model or parent" in architecture
    assert "None: train from scratch" in field_html(page, "base_model")
    assert re.search(r'name="seed" value="0"', field_html(page, "seed"))

    batch = field_html(page, "batch_size")
    assert (
        'type="number"' in batch
        and 'value="16"' in batch
        and 'min="1"' in batch
        and 'max="512"' in batch
        and 'step="1"' in batch
    )
    assert "Texts per optimizer step." in batch and "Default: 16." in batch
    decay = field_html(page, "weight_decay")
    assert 'value="0.01"' in decay and 'step="any"' in decay
    epochs = field_html(page, "epochs")  # nullable, default null: empty, the architecture decides
    assert (
        'name="epochs"' in epochs and "value=" not in epochs.split('name="epochs"')[1].split(">")[0]
    )
    assert "Leave empty for the default." in epochs
    width = field_html(page, "d_model")  # an enum of integers: a select
    assert "<select" in width and '<option value="128" selected>128</option>' in width

    # The image task's schema: a boolean is a checkbox (checked by default), a string enum a select.
    image = text(client.get(f"{base(world_a)}/train/?task=image-classification"))
    flip = field_html(image, "horizontal_flip")
    assert 'type="checkbox"' in flip and "checked" in flip
    assert '<option value="cosine" selected>cosine</option>' in field_html(image, "schedule")
    assert 'data-testid="no-dataset"' in image, "no dataset of that task yet"

    # The dataset's page links here; without a task the page asks for one.
    chooser = text(client.get(f"{base(world_a)}/train/"))
    assert "?task=sentiment" in chooser and "?task=image-classification" in chooser
    assert client.get(f"{base(world_a)}/train/?task=nope").status_code == 404
    by_dataset = text(client.get(f"{base(world_a)}/train/?dataset={version.dataset.public_id}"))
    assert 'name="vocab_size"' in by_dataset, "the dataset names its task"


def test_submitting_the_train_form_creates_a_typed_train_job(
    world_a, django_capture_on_commit_callbacks
):
    version = make_dataset_version(world_a, "sentiment", rows=24)
    parent = make_model_version(world_a, "sentiment", name="parent")
    client = signed_in(world_a.owner)
    form = {
        "task": "sentiment",
        "dataset": version.public_id,
        "architecture": "",
        "base_model": "",
        "parent": "",
        "name": "my-model",
        "seed": "3",
        "epochs": "",
        "batch_size": "8",
        "learning_rate": "0.002",
        "weight_decay": "0",
        "d_model": "64",
        "num_heads": "2",
        "max_length": "",
    }
    with mock.patch("verticals.jobs.engine.send") as send:
        with django_capture_on_commit_callbacks(execute=True):
            answer = client.post(f"{base(world_a)}/train/?task=sentiment", form)
        assert answer.status_code == 302, text(answer)[:2000]
        job = Job.dangerously_unscoped.get(tenant=world_a.tenant, kind="train")
        assert send.call_args.args[:2] == (job.public_id, "train"), (
            "dispatched (to the mock) once committed"
        )
        assert answer["Location"] == f"{base(world_a)}/jobs/{job.public_id}/"
        assert job.task == "sentiment" and job.created_by == world_a.owner
        params = job.params
        assert (
            params["dataset"] == version.public_id
            and params["name"] == "my-model"
            and params["seed"] == 3
        )
        assert params["architecture"] == "transformer-small", "resolved by core"
        assert params["batch_size"] == 8 and type(params["batch_size"]) is int
        assert params["learning_rate"] == 0.002 and type(params["learning_rate"]) is float
        assert (
            params["weight_decay"] == 0
            and params["d_model"] == 64
            and type(params["d_model"]) is int
        )
        assert params["epochs"] is None and params["max_length"] == 128, (
            "empty fields take the schema's defaults"
        )
        assert "base_model" not in params and "parent" not in params
        page = text(client.get(answer["Location"]))
        assert "Training job" in page and '"batch_size": 8' in page

        # A parent version: the architecture follows it.
        further = client.post(
            f"{base(world_a)}/train/?task=sentiment",
            {**form, "parent": parent.public_id, "name": ""},
        )
        assert further.status_code == 302
        job2 = Job.dangerously_unscoped.filter(kind="train").exclude(pk=job.pk).get()
        assert (
            job2.params["parent"] == parent.public_id and job2.params["name"] == "reviews-sentiment"
        )


def test_an_invalid_value_re_renders_the_form_with_the_message_and_the_values(world_a):
    version = make_dataset_version(world_a, "sentiment", rows=24)
    client = signed_in(world_a.owner)
    form = {
        "task": "sentiment",
        "dataset": version.public_id,
        "name": "kept-name",
        "seed": "5",
        "batch_size": "0",
        "learning_rate": "0.5",
        "d_model": "64",
    }
    with mock.patch("verticals.jobs.engine.send"):
        answer = client.post(f"{base(world_a)}/train/?task=sentiment", form)
        assert answer.status_code == 400
        page = text(answer)
        batch = field_html(page, "batch_size")
        assert (
            "0 is less than the minimum of 1" in batch
            and 'value="0"' in batch
            and "has-error" in page
        )
        assert 'value="kept-name"' in field_html(page, "name") and 'value="0.5"' in field_html(
            page, "learning_rate"
        )
        assert '<option value="64" selected>' in field_html(page, "d_model")
        assert "The job was not created" in page

        words = client.post(
            f"{base(world_a)}/train/?task=sentiment", {**form, "batch_size": "lots"}
        )
        assert words.status_code == 400 and "Enter a whole number." in field_html(
            text(words), "batch_size"
        )
        bert = client.post(
            f"{base(world_a)}/train/?task=sentiment",
            {**form, "batch_size": "8", "architecture": "bert-finetune"},
        )
        assert "fine-tunes a pretrained model: name a base_model or a parent" in field_html(
            text(bert), "architecture"
        )
        other = client.post(
            f"{base(world_a)}/train/?task=sentiment",
            {**form, "batch_size": "8", "dataset": "dsv_elsewhere"},
        )
        assert "Select a valid choice." in field_html(text(other), "dataset")
    assert not Job.dangerously_unscoped.filter(kind="train").exists()


# --- model versions and the playground ----------------------------------------------------


def test_the_model_page_shows_metrics_confusion_matrix_per_class_and_lineage(world_a):
    version = make_dataset_version(world_a, "sentiment", rows=24)
    parent = make_model_version(world_a, "sentiment", name="parent")
    model = make_model_version(world_a, "sentiment", name="child")
    labels = list(model.labels)
    evaluation = classification_evaluation([0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 0], labels)
    job = world_a.job
    ModelVersion.dangerously_unscoped.filter(pk=model.pk).update(
        report={"split": "test", **evaluation.report},
        metrics=evaluation.metrics,
        dataset_version=version,
        parent=parent,
        job=job,
        params={"dataset": version.public_id, "batch_size": 8},
    )
    client = signed_in(world_a.owner)

    listing = text(client.get(f"{base(world_a)}/models/"))
    row = between(listing, 'data-testid="models"')
    assert (
        "child v1" in row and "parent v1" in row and "transformer-small" in row and "Trained" in row
    )
    assert f"accuracy <strong>{evaluation.metrics['accuracy']:.4f}".rstrip("0") in row

    page = text(client.get(f"{base(world_a)}/models/{model.public_id}/"))
    metrics = between(page, 'data-testid="metrics"')
    assert "accuracy" in metrics and "primary" in metrics and "macro_f1" in metrics
    matrix = between(page, 'data-testid="confusion"')
    assert f'<th scope="col">{labels[0]}</th><th scope="col">{labels[1]}</th>' in matrix
    cells = re.findall(
        r'<td class="(diagonal|off)[^"]*"\s+title="[^"]*"\s+style="background-color: [^"]*">(\d+)</td>',
        matrix,
    )
    assert cells == [("diagonal", "2"), ("off", "1"), ("off", "1"), ("diagonal", "3")]
    assert "66.7% of the row" in matrix and "color-mix(in srgb, var(--brand) 75.0%" in matrix
    per_class = between(page, 'data-testid="per-class"')
    assert labels[0] in per_class and "0.6667" in per_class and "0.75" in per_class
    lineage = between(page, 'data-testid="lineage"', "</section>")
    assert (
        f'href="{base(world_a)}/datasets/{version.dataset.public_id}/?version=1">reviews v1</a>'
        in lineage
    )
    assert f'href="{base(world_a)}/models/{parent.public_id}/">parent v1</a>' in lineage
    assert f'href="{base(world_a)}/jobs/{job.public_id}/">{job.public_id}</a>' in lineage
    assert '"batch_size": 8' in page and "model.safetensors" in page and "config.json" in page
    assert (
        f'href="/api/v1/projects/{world_a.project.public_id}/models/{model.public_id}/download/"'
        in page
    )
    assert (
        client.get(
            f"/api/v1/projects/{world_a.project.public_id}/models/{model.public_id}/download/"
        ).status_code
        == 200
    )
    assert 'data-testid="delete"' in page and 'data-testid="playground"' in page

    # The dataset's page lists the model trained on it; the parent's page has no lineage to show.
    assert f"{base(world_a)}/models/{model.public_id}/" in text(
        client.get(f"{base(world_a)}/datasets/{version.dataset.public_id}/")
    )
    assert "No metrics" not in text(client.get(f"{base(world_a)}/models/{parent.public_id}/"))


def test_the_text_playground_answers_label_bars_and_readable_errors(world_a):
    model = make_model_version(world_a, "sentiment")
    client = signed_in(world_a.owner)
    url = f"{base(world_a)}/models/{model.public_id}/predict"

    answer = client.post(url, {"text": "I loved this product, it works perfectly"}, **HX)
    assert answer.status_code == 200
    bars = re.findall(
        r'<li data-label="([^"]+)" data-score="([\d.]+)"><span class="label">\1</span>'
        r'<span class="bar" aria-hidden="true"><span style="width: \2%"></span></span>'
        r'<span class="score">\2%</span></li>',
        answer.content.decode(),
    )
    assert sorted(label for label, _ in bars) == sorted(model.labels)
    scores = [float(score) for _, score in bars]
    assert scores == sorted(scores, reverse=True) and abs(sum(scores) - 100) < 0.5

    empty = client.post(url, {"text": "   "}, **HX)
    assert empty.status_code == 200, "HTMX swaps 2xx answers only"
    assert (
        'data-testid="playground-error"' in empty.content.decode()
        and "An input is empty; send some text." in text(empty)
    )
    too_long = client.post(url, {"text": "x" * 10_001}, **HX)
    assert "has 10001 characters; this model takes at most 10000" in text(too_long)

    # Without HTMX: the whole page, with the bars (or the refusal, HTTP 400).
    plain = client.post(url, {"text": "Terrible, it broke after one day"})
    assert (
        plain.status_code == 200
        and 'data-testid="label-bars"' in text(plain)
        and "Terrible, it broke" in text(plain)
    )
    refused = client.post(url, {"text": ""})
    assert refused.status_code == 400 and "An input is empty" in text(refused)


def test_the_image_playground_answers_label_bars_for_a_png(world_a, settings):
    model = make_model_version(world_a, "image-classification", name="shapes")
    client = signed_in(world_a.owner)
    page = text(client.get(f"{base(world_a)}/models/{model.public_id}/"))
    assert (
        'type="file" id="playground-image" name="image" accept="image/*"' in page
        and "playground.js" in page
    )
    assert 'hx-encoding="multipart/form-data"' in page
    url = f"{base(world_a)}/models/{model.public_id}/predict"

    answer = client.post(
        url, {"image": SimpleUploadedFile("red.png", png_bytes(), content_type="image/png")}, **HX
    )
    assert answer.status_code == 200
    html = answer.content.decode()
    labels = re.findall(r'<li data-label="([^"]+)" data-score="[\d.]+">', html)
    assert labels and set(labels) <= set(model.labels) and "red.png" in html

    corrupt = client.post(url, {"image": SimpleUploadedFile("x.png", b"not an image at all")}, **HX)
    assert (
        corrupt.status_code == 200
        and "The image cannot be used: not an image Pillow can read" in text(corrupt)
    )
    missing = client.post(url, {}, **HX)
    assert "Choose an image file to classify." in text(missing)

    # The API's rule for a file sent to predict (serving.check_file_size), before it is read.
    settings.SERVING_MAX_BODY_BYTES = 50
    big = client.post(url, {"image": SimpleUploadedFile("big.png", png_bytes())}, **HX)
    assert f"'big.png' has {len(png_bytes())} bytes; at most 50." in text(big)


# --- deleting -----------------------------------------------------------------------------


def test_owner_deletes_a_dataset_and_a_model(world_a, artifacts_dir):
    version = make_dataset_version(world_a, "sentiment", rows=24)
    model = make_model_version(world_a, "sentiment")
    client = signed_in(world_a.owner)
    dataset_id = version.dataset.public_id

    assert client.get(f"{base(world_a)}/datasets/{dataset_id}/delete").status_code == 405, (
        "POST only"
    )
    gone = client.post(f"{base(world_a)}/datasets/{dataset_id}/delete", follow=True)
    assert gone.redirect_chain[-1][
        0
    ] == f"{base(world_a)}/datasets/" and "Dataset 'reviews' deleted." in text(gone)
    assert not Dataset.dangerously_unscoped.filter(public_id=dataset_id).exists()
    removed = client.post(f"{base(world_a)}/models/{model.public_id}/delete", follow=True)
    assert "Model 'tiny' v1 deleted." in text(removed)
    assert not ModelVersion.dangerously_unscoped.filter(pk=model.pk).exists()
    actions = set(
        AuditEvent.dangerously_unscoped.filter(tenant=world_a.tenant).values_list(
            "action", flat=True
        )
    )
    assert {"dataset.delete", "model.delete"} <= actions


# --- roles and tenants --------------------------------------------------------------------


def test_a_viewer_sees_no_controls_and_is_refused_on_post(world_a):
    version = make_dataset_version(world_a, "sentiment", rows=24)
    model = make_model_version(world_a, "sentiment")
    viewer = make_member(world_a.tenant, "viewer@example.com", Role.VIEWER)
    client = signed_in(viewer.user)
    dataset_id = version.dataset.public_id

    datasets = text(client.get(f"{base(world_a)}/datasets/"))
    assert (
        "reviews" in datasets
        and 'data-testid="upload-form"' not in datasets
        and "link-train" not in datasets
    )
    detail = text(client.get(f"{base(world_a)}/datasets/{dataset_id}/"))
    assert 'data-testid="stats"' in detail
    for control in (
        'data-testid="upload-form"',
        'data-testid="delete"',
        'data-testid="train-link"',
        "/download/",
    ):
        assert control not in detail, control
    page = text(client.get(f"{base(world_a)}/models/{model.public_id}/"))
    assert 'data-testid="lineage"' in page
    for control in (
        'data-testid="playground"',
        'data-testid="delete"',
        'data-testid="download"',
        "train-further",
    ):
        assert control not in page, control
    assert "train-link" not in text(client.get(f"{base(world_a)}/models/"))
    project = text(client.get(f"{base(world_a)}/"))
    assert (
        'data-testid="project-datasets"' in project and 'data-testid="project-train"' not in project
    )

    assert client.get(f"{base(world_a)}/train/?task=sentiment").status_code == 403
    refusals = [
        client.post(f"{base(world_a)}/datasets/", {"task": "sentiment", "file": csv_file()}),
        client.post(f"{base(world_a)}/datasets/{dataset_id}/versions", {"file": csv_file()}),
        client.post(f"{base(world_a)}/datasets/{dataset_id}/delete"),
        client.post(
            f"{base(world_a)}/train/?task=sentiment",
            {"task": "sentiment", "dataset": version.public_id},
        ),
        client.post(f"{base(world_a)}/models/{model.public_id}/predict", {"text": "hello"}, **HX),
        client.post(f"{base(world_a)}/models/{model.public_id}/delete"),
    ]
    assert [r.status_code for r in refusals] == [403] * 6
    assert "Your role 'viewer' does not allow dataset.create." in text(refusals[0])
    xhr = client.post(
        f"{base(world_a)}/datasets/", {"task": "sentiment", "file": csv_file()}, **XHR
    )
    assert xhr.status_code == 403 and "does not allow dataset.create" in xhr.json()["message"]
    with tenant_context(world_a.tenant):
        assert (
            Dataset.objects.count() == 1
            and ModelVersion.objects.count() == 1
            and not Job.objects.exists()
        )


def test_another_tenants_ids_are_404(world_a, world_b):
    version = make_dataset_version(world_a, "sentiment", rows=24)
    model = make_model_version(world_a, "sentiment")
    client = signed_in(world_b.owner)
    a, b = base(world_a), base(world_b)
    dataset_id = version.dataset.public_id
    gets = [
        f"{a}/datasets/",
        f"{a}/datasets/{dataset_id}/",
        f"{a}/train/?task=sentiment",
        f"{a}/models/",
        f"{a}/models/{model.public_id}/",
        # B's own project with A's dataset and model ids
        f"{b}/datasets/{dataset_id}/",
        f"{b}/models/{model.public_id}/",
    ]
    for path in gets:
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert world_a.project.name not in text(answer) and "reviews" not in text(answer), path
    posts = [
        (f"{a}/datasets/", {"task": "sentiment", "file": csv_file()}),
        (f"{a}/datasets/{dataset_id}/versions", {"file": csv_file()}),
        (f"{b}/datasets/{dataset_id}/versions", {"file": csv_file()}),
        (f"{a}/datasets/{dataset_id}/delete", {}),
        (f"{b}/datasets/{dataset_id}/delete", {}),
        (f"{a}/train/?task=sentiment", {"task": "sentiment", "dataset": version.public_id}),
        (f"{a}/models/{model.public_id}/predict", {"text": "hello"}),
        (f"{b}/models/{model.public_id}/predict", {"text": "hello"}),
        (f"{a}/models/{model.public_id}/delete", {}),
        (f"{b}/models/{model.public_id}/delete", {}),
    ]
    for path, data in posts:
        assert client.post(path, data).status_code == 404, path
    # B's train form offers none of A's dataset versions, and refuses one named by hand.
    make_dataset_version(world_b, "sentiment", rows=24, name="b-reviews")
    form = text(client.get(f"{b}/train/?task=sentiment"))
    assert "b-reviews v1" in form and version.public_id not in form
    with mock.patch("verticals.jobs.engine.send"):
        sneaky = client.post(
            f"{b}/train/?task=sentiment", {"task": "sentiment", "dataset": version.public_id}
        )
    assert sneaky.status_code == 400 and "Select a valid choice." in text(sneaky)
    assert Dataset.dangerously_unscoped.filter(tenant=world_a.tenant).count() == 1
    assert ModelVersion.dangerously_unscoped.filter(tenant=world_a.tenant).count() == 1


def test_the_project_page_and_nav_link_to_datasets_and_models(world_a):
    client = signed_in(world_a.owner)
    page = text(client.get(f"{base(world_a)}/"))
    assert f'href="{base(world_a)}/datasets/" data-testid="project-datasets"' in page
    assert f'href="{base(world_a)}/models/" data-testid="project-models"' in page
    assert f'href="{base(world_a)}/train/" data-testid="project-train"' in page
    jobs = text(client.get(f"{base(world_a)}/jobs/"))
    nav = between(jobs, "<nav>", "</nav>")
    assert f'href="{base(world_a)}/datasets/"' in nav and f'href="{base(world_a)}/models/"' in nav
    assert "/datasets/" not in between(text(client.get("/projects/")), "<nav>", "</nav>"), (
        "no project, no project links"
    )
