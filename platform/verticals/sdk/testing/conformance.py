"""The conformance suite: what every task of every plugin must do, checked through core.

It trains a tiny model per task (the task's `tiny_params`) through a real train job, serves it
through the platform's predict path, validates each output against the task's declared
schema, and checks that save → load reproduces predictions exactly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

from verticals.sdk.contracts import DatasetSplit, Example, InputError, Task
from verticals.sdk.local import LocalTrainContext


def local_splits(task: Task, upload: Path, work: Path, *, seed: int = 0) -> dict[str, DatasetSplit]:
    """Read an upload with the task's schema and split it the way the platform does (for tests)."""
    from verticals.registry.datasets import DEFAULT_FRACTIONS, split_examples

    files = work / "files"
    files.mkdir(parents=True, exist_ok=True)
    examples = task.dataset.ingest(upload, files)
    labels = sorted({e.label for e in examples}) if task.labelled else []
    split = split_examples(
        examples, seed=seed, fractions=DEFAULT_FRACTIONS
    )  # on relative paths, as the platform does
    if task.dataset.input_kind == "file":
        split = {
            name: [Example(files / e.input, e.label, e.ref) for e in members]
            for name, members in split.items()
        }
    return {name: DatasetSplit(name, members, labels) for name, members in split.items()}


def _validate_outputs(task: Task, outputs: list) -> None:
    for output in outputs:
        jsonschema.validate(output, task.output_schema)


# Scores of an input predicted alone and among others may differ by float rounding (padding to a
# batch's longest input changes the order of sums); anything beyond this is a different answer.
SCORE_TOLERANCE = 1e-4


def same_output(a, b, *, tolerance: float = SCORE_TOLERANCE) -> bool:
    """Whether two outputs are the same answer: equal structure, labels and texts; numbers within
    `tolerance`."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_output(a[k], b[k], tolerance=tolerance) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(
            same_output(x, y, tolerance=tolerance) for x, y in zip(a, b, strict=True)
        )
    return a == b


def check_alone_as_in_batch(predict: Callable[[list], list], raw: list, batched: list) -> None:
    """Each input predicted alone gets the answer it got among the others (`batched`, the outputs
    of `predict(raw)`): the predict path batches callers' inputs together, so an answer must not
    depend on what else was in the batch."""
    assert len(batched) == len(raw), f"{len(raw)} inputs gave {len(batched)} outputs"
    for i, item in enumerate(raw):
        alone = predict([item])
        assert len(alone) == 1, f"one input gave {len(alone)} outputs"
        assert same_output(alone[0], batched[i]), (
            f"input {i} predicted alone answered {alone[0]!r}, but {batched[i]!r} among "
            f"{len(raw)} inputs: an output must not depend on the rest of its batch"
        )


@pytest.mark.django_db
class TaskConformance:
    """Subclass with `task_name = "…"` in a plugin's tests; pytest collects the checks below."""

    task_name: str = ""

    @pytest.fixture
    def task(self) -> Task:
        from verticals.sdk import discovery

        found = discovery.get_task(self.task_name)
        assert found is not None, (
            f"the task {self.task_name!r} is not installed (check the plugin's entry point)"
        )
        return found

    def test_task_passes_start_up_validation(self, task):
        from verticals.sdk.discovery import plugin_of, validate_task

        validate_task(task, f"plugin '{plugin_of(task.name).name}'")

    def test_task_is_listed_with_its_schemas(self, task, project, caller):
        from rest_framework.test import APIClient

        from verticals.tenancy.roles import Role, Scope
        from verticals.tenancy.scoping import tenant_context
        from verticals.tenancy.services import api_key_create

        with tenant_context(project.tenant):
            _key, secret = api_key_create(
                caller=caller, name="kit", scopes=[Scope.READ], role=Role.VIEWER
            )
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        listed = {t["name"]: t for t in client.get("/api/v1/tasks/").json()["results"]}
        assert task.name in listed
        entry = listed[task.name]
        assert (
            entry["input_schema"] == task.input_schema
            and entry["output_schema"] == task.output_schema
        )
        assert set(task.params_schema.get("properties", {})) <= set(
            entry["params_schema"]["properties"]
        )

    def test_example_dataset_uploads_with_statistics(self, task, tiny_dataset):
        version = tiny_dataset(task.name, rows=40)
        assert version.rows >= 30
        # A labelled task's example data names two labels or more; an unlabelled one's, none.
        assert len(version.labels) >= 2 if task.labelled else version.labels == []
        splits = version.stats["splits"]
        assert splits["train"]["rows"] > 0 and splits["test"]["rows"] > 0
        assert sum(s["rows"] for s in splits.values()) == version.rows

    def test_save_then_load_reproduces_predictions_exactly(self, task, tmp_path):
        upload_dir = tmp_path / "upload"
        upload_dir.mkdir()
        splits = local_splits(
            task, task.example_dataset(upload_dir, rows=40, seed=1), tmp_path / "data"
        )
        ctx = LocalTrainContext(
            task,
            train=splits["train"],
            validation=splits["validation"],
            test=splits["test"],
            params=task.tiny_params,
            seed=0,
            scratch_dir=tmp_path / "scratch",
        )
        model = task.train(ctx)
        assert ctx.reports, (
            "train() never called ctx.report(): progress and cancellation depend on it"
        )
        inputs = [task.decode_input(raw) for raw in task.example_inputs()]
        before = task.predict(model, inputs)
        saved = tmp_path / "saved"
        saved.mkdir()
        task.save(model, saved)
        from verticals.registry.archives import check_model_files

        check_model_files(
            saved, task.model_files
        )  # safetensors weights, no pickles, nothing core would drop
        after = task.predict(task.load(saved), inputs)
        assert json.dumps(after, sort_keys=True) == json.dumps(before, sort_keys=True)
        _validate_outputs(task, after)
        assert task.recognize(saved) is not None, (
            "recognize() must accept the task's own saved models"
        )
        evaluation = task.evaluate(model, splits["test"])
        assert set(task.metrics) <= set(evaluation.metrics)

    def test_train_job_serves_predictions_and_jobs_evaluate_and_batch_predict(
        self, task, tiny_dataset, run_job
    ):
        from verticals.registry.models import ModelVersion
        from verticals.serving import service as serving
        from verticals.tenancy.scoping import tenant_context

        version = tiny_dataset(task.name, rows=40)
        job = run_job("train", task.name, {"dataset": version.public_id, **task.tiny_params})
        assert job.status == "succeeded", (
            job.error_code,
            job.error_message,
            job.error_traceback[-2000:],
        )
        with tenant_context(job.tenant):
            model = ModelVersion.objects.get(public_id=job.result["model_version"])
            assert model.dataset_version_id == version.pk and model.job_id == job.pk
            assert set(task.metrics) <= set(model.metrics)
            raw = task.example_inputs()
            outputs = serving.predict(model_version=model, inputs=raw)
            assert len(outputs) == len(raw)
            _validate_outputs(task, outputs)
            check_alone_as_in_batch(
                lambda inputs: serving.predict(model_version=model, inputs=inputs), raw, outputs
            )
            evaluated = run_job(
                "evaluate", task.name, {"model": model.public_id, "dataset": version.public_id}
            )
            assert evaluated.status == "succeeded", evaluated.error_message
            assert set(task.metrics) <= set(evaluated.result["metrics"])
            batch = run_job(
                "batch_predict", task.name, {"model": model.public_id, "dataset": version.public_id}
            )
            assert batch.status == "succeeded", batch.error_message
            assert batch.result["rows"] == version.rows

    def test_bad_inputs_are_refused_with_a_message(self, task):
        for bad in (None, 12345, {"not": "an input"}, ""):
            with pytest.raises(InputError) as refused:
                task.decode_input(bad)
            assert str(refused.value).strip(), "an InputError must say what to fix"
