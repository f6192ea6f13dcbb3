"""/api/v1/tasks/ and /api/v1/base-models/: what a tenant may train and start from."""

import pytest

from tests.conftest import make_key
from verticals.registry.models import BaseModel

pytestmark = pytest.mark.django_db


def test_tasks_list_their_dataset_params_and_io_schemas(world_a):
    answer = world_a.client().get("/api/v1/tasks/")
    assert answer.status_code == 200
    tasks = {t["name"]: t for t in answer.json()["results"]}
    assert {"sentiment", "image-classification"} <= set(tasks)
    sentiment = tasks["sentiment"]
    assert sentiment["plugin"] == "nlp" and sentiment["domain"] == "nlp"
    assert sentiment["dataset"]["formats"] == [".csv", ".jsonl"]
    assert {"dataset", "base_model", "epochs"} <= set(sentiment["params_schema"]["properties"])
    assert sentiment["params_schema"]["required"] == ["dataset"]
    assert sentiment["input_schema"]["type"] == "string"
    assert sentiment["output_schema"]["items"]["required"] == ["label", "score"]
    assert {a["name"] for a in sentiment["architectures"]} >= {"transformer-small", "bert-finetune"}
    vision = tasks["image-classification"]
    assert {a["name"] for a in vision["architectures"]} >= {"resnet18", "mobilenet_v3_small"}
    assert "top3_accuracy" in vision["metrics"] and vision["playground"] == "image"


def test_disabled_tasks_are_not_listed(world_a, settings):
    settings.PLUGINS_DISABLED_TASKS = ["sentiment"]
    names = [t["name"] for t in world_a.client().get("/api/v1/tasks/").json()["results"]]
    assert "sentiment" not in names and "image-classification" in names


def test_every_role_reads_the_catalog_and_strangers_do_not(world_a):
    from rest_framework.test import APIClient

    _key, secret = make_key(world_a.tenant, role="billing", scopes=["read"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert client.get("/api/v1/tasks/").status_code == 200
    assert client.get("/api/v1/base-models/").status_code == 200
    assert APIClient().get("/api/v1/tasks/").status_code == 401
    assert APIClient().get("/api/v1/base-models/").status_code == 401


def test_base_models_show_which_tasks_can_start_from_them(world_a):
    BaseModel.objects.create(
        name="tiny-bert",
        title="Tiny BERT",
        family="bert",
        architecture="bert-finetune",
        storage_prefix="x",
        size_bytes=10,
    )
    listed = world_a.client().get("/api/v1/base-models/").json()["results"]
    assert [(m["name"], m["tasks"]) for m in listed] == [("tiny-bert", ["sentiment"])]
    assert "storage_prefix" not in listed[0]


def test_import_base_model_command_refuses_pickles_and_keeps_existing(tmp_path):
    from django.core.management import CommandError, call_command

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(CommandError, match="pytorch_model.bin' is a pickle-based checkpoint"):
        call_command("import_base_model", str(folder), "--name", "evil")
    with pytest.raises(CommandError, match="Give a PATH"):
        call_command("import_base_model")
    assert not BaseModel.objects.exists()
