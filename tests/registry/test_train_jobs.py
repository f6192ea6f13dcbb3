"""The generic job kinds on top of the contract: train (scratch, parent), evaluate, batch_predict."""

import json

import pytest

from tests.registry.factories import make_dataset_version, make_model_version
from verticals.jobs.models import JobEvent
from verticals.registry.models import BaseModel, ModelVersion

pytestmark = pytest.mark.django_db


def jobs_url(world):
    return f"/api/v1/projects/{world.project.public_id}/jobs/"


@pytest.fixture
def run_in_a(run_job, world_a):
    def run(kind, task, params):
        return run_job(kind, task, params, in_project=world_a.project)

    return run


@pytest.fixture
def no_dispatch(monkeypatch):
    from unittest import mock

    with mock.patch("verticals.jobs.engine.send") as send:
        yield send


@pytest.mark.parametrize(
    "params,fragment",
    [
        ({}, "dataset"),
        (
            {"dataset": "dsv_nothere"},
            "this project has no dataset or dataset version 'dsv_nothere'",
        ),
        ({"dataset": "DATASET", "epochs": 0}, "epochs"),
        ({"dataset": "DATASET", "epochs": "many"}, "epochs"),
        ({"dataset": "DATASET", "colour": "red"}, "colour"),
        ({"dataset": "DATASET", "architecture": "gpt-9"}, "has no architecture 'gpt-9'"),
        ({"dataset": "DATASET", "architecture": "bert-finetune"}, "name a base_model or a parent"),
        (
            {"dataset": "DATASET", "base_model": "no-such-base"},
            "the model garden has no 'no-such-base'",
        ),
        ({"dataset": "DATASET", "parent": "mdl_nothere"}, "no model version 'mdl_nothere'"),
    ],
)
def test_train_params_are_checked_before_the_job_is_queued(world_a, no_dispatch, params, fragment):
    version = make_dataset_version(world_a)
    params = {k: (version.public_id if v == "DATASET" else v) for k, v in params.items()}
    answer = world_a.client().post(
        jobs_url(world_a), {"kind": "train", "task": "sentiment", "params": params}, format="json"
    )
    assert answer.status_code == 400, answer.json()
    assert fragment in answer.json()["error"]["message"]
    assert not no_dispatch.called


def test_a_dataset_of_another_task_and_a_missing_task_are_refused(world_a, no_dispatch):
    version = make_dataset_version(world_a)
    client = world_a.client()
    wrong = client.post(
        jobs_url(world_a),
        {"kind": "train", "task": "image-classification", "params": {"dataset": version.public_id}},
        format="json",
    )
    assert (
        wrong.status_code == 400 and "for the task 'sentiment'" in wrong.json()["error"]["message"]
    )
    missing = client.post(
        jobs_url(world_a),
        {"kind": "train", "params": {"dataset": version.public_id}},
        format="json",
    )
    assert missing.status_code == 400 and "Name the task" in missing.json()["error"]["message"]


def test_a_base_model_of_another_family_is_refused(world_a, no_dispatch):
    version = make_dataset_version(world_a)
    BaseModel.objects.create(
        name="tiny-resnet",
        title="r",
        family="resnet18",
        architecture="resnet18",
        storage_prefix="x",
    )
    answer = world_a.client().post(
        jobs_url(world_a),
        {
            "kind": "train",
            "task": "sentiment",
            "params": {"dataset": version.public_id, "base_model": "tiny-resnet"},
        },
        format="json",
    )
    assert (
        answer.status_code == 400
        and "cannot start a 'sentiment' model" in answer.json()["error"]["message"]
    )


def test_train_then_continue_from_the_parent_then_evaluate_and_batch_predict(world_a, run_in_a):
    from verticals.sdk import discovery

    task = discovery.get_task("sentiment")
    version = make_dataset_version(world_a, rows=40)
    job = run_in_a(
        "train",
        "sentiment",
        {"dataset": version.dataset.public_id, "name": "reviews-model", **task.tiny_params},
    )
    assert job.status == "succeeded", job.error_traceback
    # The stored params are resolved: the dataset's latest version, the architecture, the defaults.
    assert (
        job.params["dataset"] == version.public_id
        and job.params["architecture"] == task.default_architecture
    )
    assert set(task.params_schema["properties"]) <= set(job.params)
    first = ModelVersion.dangerously_unscoped.get(public_id=job.result["model_version"])
    assert (first.name, first.version, first.source) == ("reviews-model", 1, "trained")
    assert first.report["confusion_matrix"] and first.report["split"] == "test"
    assert job.result["samples"] > 0 and job.result["samples_per_second"] > 0
    metrics = {e.data["name"] for e in JobEvent.dangerously_unscoped.filter(job=job, type="metric")}
    assert {"train_loss", "val_loss", "val_accuracy"} <= metrics
    # The checkpoint is dropped once the model is published.
    from verticals.registry import storage

    assert not storage.artifacts().exists(
        f"checkpoints/{world_a.tenant.public_id}/{job.public_id}/checkpoint.safetensors"
    )

    child = run_in_a(
        "train",
        "sentiment",
        {
            "dataset": version.public_id,
            "parent": first.public_id,
            "name": "reviews-model",
            **task.tiny_params,
        },
    )
    assert child.status == "succeeded", child.error_traceback
    second = ModelVersion.dangerously_unscoped.get(public_id=child.result["model_version"])
    assert (
        second.version == 2
        and second.parent_id == first.pk
        and second.architecture == first.architecture
    )
    lineage = (
        world_a.client()
        .get(f"/api/v1/projects/{world_a.project.public_id}/models/{second.public_id}/")
        .json()["lineage"]
    )
    assert lineage["parent"]["id"] == first.public_id and lineage["job"] == child.public_id
    assert lineage["dataset_version"]["id"] == version.public_id

    evaluated = run_in_a(
        "evaluate", "", {"model": second.public_id, "dataset": version.public_id, "split": "all"}
    )
    assert evaluated.status == "succeeded", evaluated.error_traceback
    report = evaluated.result["report"]
    assert report["examples"] == version.rows and len(report["confusion_matrix"]) == len(
        version.labels
    )
    assert set(report["per_class"]) == set(version.labels)

    batch = run_in_a(
        "batch_predict",
        "sentiment",
        {"model": second.public_id, "dataset": version.public_id, "top_k": 1},
    )
    assert batch.status == "succeeded", batch.error_traceback
    download = world_a.client().get(
        f"/api/v1/projects/{world_a.project.public_id}/jobs/{batch.public_id}/output/"
    )
    assert download.status_code == 200
    rows = [json.loads(line) for line in b"".join(download.streaming_content).decode().splitlines()]
    assert len(rows) == version.rows and all(len(r["prediction"]) == 1 for r in rows)
    assert {"ref", "label", "input", "prediction"} <= set(rows[0])


def test_the_output_of_a_job_without_one_is_404(world_a):
    answer = world_a.client().get(
        f"/api/v1/projects/{world_a.project.public_id}/jobs/{world_a.job.public_id}/output/"
    )
    assert answer.status_code == 404 and "batch_predict" in answer.json()["error"]["message"]


def test_evaluate_refuses_a_model_without_a_head_and_foreign_ids(world_a, world_b, no_dispatch):
    model = make_model_version(world_a)
    version = make_dataset_version(world_a)
    client = world_a.client()
    ModelVersion.dangerously_unscoped.filter(pk=model.pk).update(labels=[])
    headless = client.post(
        jobs_url(world_a),
        {"kind": "evaluate", "params": {"model": model.public_id, "dataset": version.public_id}},
        format="json",
    )
    assert (
        headless.status_code == 400 and "fine-tune it first" in headless.json()["error"]["message"]
    )
    ModelVersion.dangerously_unscoped.filter(pk=model.pk).update(labels=["negative", "positive"])
    other = make_dataset_version(world_b)
    foreign = client.post(
        jobs_url(world_a),
        {"kind": "evaluate", "params": {"model": model.public_id, "dataset": other.public_id}},
        format="json",
    )
    assert (
        foreign.status_code == 400
        and f"no dataset or dataset version '{other.public_id}'"
        in foreign.json()["error"]["message"]
    )


def test_a_rerun_restores_the_checkpoint_the_lost_attempt_saved(world_a, no_dispatch, settings):
    """checkpoint() stores tensors and state with the job; the next attempt's restore() gets them back."""
    import torch

    from verticals.jobs import engine
    from verticals.jobs.context import JobContext
    from verticals.jobs.models import Job
    from verticals.registry import storage
    from verticals.registry.training import JobTrainContext
    from verticals.sdk import DatasetSplit, discovery
    from verticals.tenancy.scoping import tenant_context

    version = make_dataset_version(world_a)
    with tenant_context(world_a.tenant):
        job = engine.job_create(
            project=world_a.project,
            kind="train",
            task="sentiment",
            params={"dataset": version.public_id},
        )
    Job.dangerously_unscoped.filter(pk=job.pk).update(status="running", attempt=1)
    empty = {
        name: DatasetSplit(name, [], ["negative", "positive"])
        for name in ("train", "validation", "test")
    }

    def train_context():
        fresh = Job.dangerously_unscoped.select_related("tenant", "project").get(pk=job.pk)
        return JobTrainContext(
            JobContext(fresh),
            task=discovery.get_task("sentiment"),
            params={},
            architecture="x",
            splits=empty,
            base=None,
            base_labels=[],
            seed=0,
        )

    settings.TRAIN_CHECKPOINT_SECONDS = 0
    first = train_context()
    assert first.restore() is None
    first.checkpoint(3, {"weight": torch.arange(6.0).reshape(2, 3)}, {"epoch": 3, "best": 0.5})
    first.checkpoint(4, {"weight": torch.ones(2, 3)}, {"epoch": 4})  # the latest one wins
    settings.TRAIN_CHECKPOINT_SECONDS = 3600
    first.checkpoint(
        5, {"weight": torch.zeros(2, 3)}, {"epoch": 5}
    )  # too soon after the last: not stored
    Job.dangerously_unscoped.filter(pk=job.pk).update(
        attempt=2
    )  # the reaper gave the job to a new attempt
    restored = train_context().restore()
    assert restored.step == 4 and restored.state == {"epoch": 4}
    assert torch.equal(restored.tensors["weight"], torch.ones(2, 3))
    from verticals.registry.training import drop_checkpoint

    drop_checkpoint(job)
    assert not storage.artifacts().exists(
        f"checkpoints/{world_a.tenant.public_id}/{job.public_id}/checkpoint.safetensors"
    )
