"""Model versions through the API: import (safetensors only), lineage, download, predict."""

import io
import json
import tarfile
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.registry.factories import (
    make_model_version,
    png_base64,
    png_bytes,
    tiny_model_dir,
    zip_bytes,
)
from tests.registry.hostile import safetensors_file
from verticals.registry.models import ModelVersion

pytestmark = pytest.mark.django_db


def dir_files(task_name: str) -> dict[str, bytes]:
    root = tiny_model_dir(task_name)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def import_model(client, world, filename, content, task="sentiment", **fields):
    return client.post(
        f"/api/v1/projects/{world.project.public_id}/models/",
        {"file": SimpleUploadedFile(filename, content), "task": task, **fields},
        format="multipart",
    )


def stored_models(artifacts_dir):
    root = artifacts_dir / "models"
    return sorted(str(p) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_import_a_safetensors_model_and_predict_with_it(world_a):
    client = world_a.client()
    answer = import_model(
        client,
        world_a,
        "my-model.zip",
        zip_bytes({f"my-model/{k}": v for k, v in dir_files("sentiment").items()}),
    )
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert body["source"] == "imported" and body["task"] == "sentiment" and body["predictable"]
    assert body["name"] == "my-model" and {f["name"] for f in body["files"]} >= {
        "model.safetensors",
        "config.json",
    }
    predicted = client.post(
        f"/api/v1/projects/{world_a.project.public_id}/models/{body['id']}/predict",
        {"inputs": "A wonderful purchase"},
        format="json",
    )
    assert predicted.status_code == 200, predicted.json()
    assert {p["label"] for p in predicted.json()} == set(body["labels"])


@pytest.mark.parametrize(
    "pickle_name", ["pytorch_model.bin", "model.pt", "weights.pth", "model.ckpt"]
)
def test_a_pickle_checkpoint_is_refused_and_nothing_is_stored(world_a, artifacts_dir, pickle_name):
    files = dir_files("sentiment")
    files[pickle_name] = b"\x80\x04\x95fake pickle"
    answer = import_model(world_a.client(), world_a, "m.zip", zip_bytes(files))
    assert answer.status_code == 400
    message = answer.json()["error"]["message"]
    assert (
        pickle_name in message
        and "pickle" in message
        and "safetensors" in message
        and "save_file" in message
    )
    assert stored_models(artifacts_dir) == [] and not ModelVersion.dangerously_unscoped.exists()


def test_a_tar_archive_imports_and_links_are_refused(world_a):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
        for name, data in dir_files("sentiment").items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
    assert import_model(world_a.client(), world_a, "m.tar.gz", buffer.getvalue()).status_code == 201
    linked = io.BytesIO()
    with tarfile.open(fileobj=linked, mode="w") as bundle:
        info = tarfile.TarInfo("config.json")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        bundle.addfile(info)
    answer = import_model(world_a.client(), world_a, "evil.tar", linked.getvalue())
    assert answer.status_code == 400 and "links are refused" in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    "files,fragment",
    [
        ({"config.json": b"{}"}, "no .safetensors weights"),
        ({"model.safetensors": b"x"}, "no config.json"),
        (
            {
                "config.json": b'{"architecture": "no-such-net"}',
                "model.safetensors": safetensors_file({"w": ("F32", [2])}),
            },
            "does not recognize",
        ),
        (
            {"config.json": b'{"architecture": "resnet18"}', "model.safetensors": b"x"},
            "not a safetensors file",
        ),
        (
            {"config.json": b"{}", "model.safetensors": b"x", "modeling_evil.py": b"import os"},
            "modeling_evil.py",
        ),
        ({"\\tmp\\config.json": b"{}", "model.safetensors": b"x"}, "unsafe path"),
    ],
)
def test_unusable_archives_get_a_message(world_a, files, fragment):
    answer = import_model(world_a.client(), world_a, "m.zip", zip_bytes(files))
    assert answer.status_code == 400, answer.json()
    assert fragment in answer.json()["error"]["message"]


def test_weights_that_do_not_fit_are_refused(world_a):
    files = dir_files("sentiment")
    import torch
    from safetensors.torch import save

    files["model.safetensors"] = save({"nothing": torch.zeros(2)})
    answer = import_model(world_a.client(), world_a, "m.zip", zip_bytes(files))
    assert answer.status_code == 400 and "does not load" in answer.json()["error"]["message"]


def test_model_detail_download_and_delete(
    world_a, artifacts_dir, django_capture_on_commit_callbacks
):
    model = make_model_version(world_a)
    client = world_a.client()
    base = f"/api/v1/projects/{world_a.project.public_id}/models/{model.public_id}/"
    detail = client.get(base).json()
    assert detail["lineage"] == {
        "dataset_version": None,
        "job": None,
        "parent": None,
        "base_model": None,
    }
    assert detail["metrics"] == {"accuracy": 1.0} and detail["size_bytes"] > 0
    download = client.get(base + "download/")
    assert download.status_code == 200 and download["Content-Type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))).namelist()
    assert "model.safetensors" in names and not [
        n for n in names if n.endswith((".bin", ".pt", ".pth"))
    ]
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(base).status_code == 204
    assert stored_models(artifacts_dir) == []
    assert client.get(base).status_code == 404


# --- predict ---------------------------------------------------------------------------------------


def predict_url(world, model):
    return f"/api/v1/projects/{world.project.public_id}/models/{model.public_id}/predict/"


def test_predict_one_or_many_in_pipeline_shapes(world_a):
    model = make_model_version(world_a)
    client = world_a.client()
    one = client.post(predict_url(world_a, model), {"inputs": "I love it"}, format="json")
    assert one.status_code == 200, one.json()
    scores = one.json()
    assert [set(s) for s in scores] == [{"label", "score"}] * len(model.labels)
    assert (
        scores == sorted(scores, key=lambda s: -s["score"])
        and abs(sum(s["score"] for s in scores) - 1) < 1e-4
    )
    many = client.post(
        predict_url(world_a, model),
        {"inputs": ["I love it", "I hate it"], "parameters": {"top_k": 1}},
        format="json",
    ).json()
    assert len(many) == 2 and all(len(x) == 1 for x in many)
    assert many[0][0]["label"] == scores[0]["label"]


@pytest.mark.parametrize(
    "body,fragment",
    [
        ({"inputs": 12}, "string"),
        ({"inputs": ""}, "empty"),
        ({"inputs": []}, "empty"),
        ({"inputs": ["fine", None]}, "inputs[1]"),
        ({"inputs": "x" * 30_000}, "characters"),
        ({"text": "hi"}, "inputs"),
        ({"inputs": "hi", "parameters": {"top_k": 0}}, "top_k"),
        ({"inputs": "hi", "parameters": {"temperature": 1}}, "temperature"),
        ({"inputs": ["hi"] * 500}, "at most"),
    ],
)
def test_bad_text_inputs_get_400_with_a_message(world_a, body, fragment):
    model = make_model_version(world_a)
    answer = world_a.client().post(predict_url(world_a, model), body, format="json")
    assert answer.status_code == 400, answer.json()
    assert fragment in answer.json()["error"]["message"]


def test_predict_images_as_base64_or_files_and_refuse_bad_ones(world_a, settings):
    model = make_model_version(world_a, "image-classification", name="shapes")
    client = world_a.client()
    url = predict_url(world_a, model)
    one = client.post(url, {"inputs": png_base64()}, format="json")
    assert one.status_code == 200, one.json()
    assert {p["label"] for p in one.json()} <= set(model.labels)
    data_url = client.post(
        url, {"inputs": ["data:image/png;base64," + png_base64()]}, format="json"
    )
    assert data_url.status_code == 200 and len(data_url.json()) == 1
    files = client.post(
        url,
        {
            "inputs": [
                SimpleUploadedFile("a.png", png_bytes()),
                SimpleUploadedFile("b.png", png_bytes()),
            ]
        },
        format="multipart",
    )
    assert files.status_code == 200, files.json()
    assert len(files.json()) == 2
    corrupt = client.post(
        url, {"inputs": [SimpleUploadedFile("c.png", png_bytes()[:50])]}, format="multipart"
    )
    assert corrupt.status_code == 400 and "image" in corrupt.json()["error"]["message"]
    not_base64 = client.post(url, {"inputs": "%%%not base64%%%"}, format="json")
    assert not_base64.status_code == 400 and "base64" in not_base64.json()["error"]["message"]
    settings.SERVING_MAX_BODY_BYTES = 2000
    big = client.post(url, {"inputs": png_base64(size=(400, 400)) + "A" * 3000}, format="json")
    assert big.status_code == 413 and "at most 2000 bytes" in big.json()["error"]["message"]


def test_a_model_without_a_head_cannot_predict(world_a):
    model = make_model_version(world_a)
    ModelVersion.dangerously_unscoped.filter(pk=model.pk).update(labels=[])
    answer = world_a.client().post(predict_url(world_a, model), {"inputs": "hi"}, format="json")
    assert answer.status_code == 409 and "fine-tune" in answer.json()["error"]["message"]


def test_models_list_filters_by_task(world_a):
    make_model_version(world_a)
    make_model_version(world_a, "image-classification", name="shapes")
    listed = (
        world_a.client()
        .get(f"/api/v1/projects/{world_a.project.public_id}/models/?task=image-classification")
        .json()
    )
    assert [m["name"] for m in listed["results"]] == ["shapes"]
    assert json.dumps(listed).count("storage_prefix") == 0


def test_an_import_that_fails_after_its_rows_leaves_no_version_no_audit_row_and_no_files(
    world_a, artifacts_dir, monkeypatch
):
    from verticals.registry import services
    from verticals.tenancy.models import AuditEvent
    from verticals.tenancy.scoping import tenant_context

    written = []

    def audit_then_fail(**kwargs):
        written.append(real_audit(**kwargs))
        raise RuntimeError("the connection dropped after the audit row")

    real_audit = services.audit_record
    monkeypatch.setattr(services, "audit_record", audit_then_fail)
    with tenant_context(world_a.tenant), pytest.raises(RuntimeError, match="connection dropped"):
        services.model_import(
            project=world_a.project,
            caller=None,
            task="sentiment",
            upload=tiny_model_dir("sentiment"),
        )
    assert written, "the audit row was written, inside the import's transaction"
    assert not ModelVersion.dangerously_unscoped.exists()
    assert not AuditEvent.dangerously_unscoped.filter(action="model.import").exists()
    assert stored_models(artifacts_dir) == []
