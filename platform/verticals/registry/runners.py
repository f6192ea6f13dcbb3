"""The generic job kinds every task gets: train, evaluate, batch_predict.

Their params are checked (and ids resolved) when the job is created, so a wrong dataset or
model answers 400 at once; the runner then reads the rows by the ids it stored.
"""

from __future__ import annotations

import json
import time

from django.core.exceptions import ValidationError

from verticals.jobs.compute import configure_torch
from verticals.jobs.context import JobContext
from verticals.jobs.runners import JobError, Runner, register
from verticals.registry import selectors, services, storage
from verticals.registry.models import SPLITS, BaseModel, ModelVersion
from verticals.registry.training import JobTrainContext, drop_checkpoint
from verticals.sdk import discovery
from verticals.sdk.contracts import DatasetSplit, Task, TrainingError
from verticals.sdk.params import problems, with_defaults

PREDICTIONS_FILE = "predictions.jsonl"
SPLIT_PARAM = {"type": "string", "enum": ["all", *SPLITS]}
MODEL_PARAM = {"type": "string", "description": "The model version (mdl_…)."}
DATASET_PARAM = {
    "type": "string",
    "description": "A dataset (ds_…, its latest version) or a dataset version (dsv_…).",
}


def _fail(field: str, message: str):
    raise ValidationError({"params": [f"{field}: {message}"]})


def _task(name: str, project) -> Task:
    if not name:
        raise ValidationError({"task": ["Name the task this job is for (see /api/v1/tasks/)."]})
    return services.task_or_error(name, tenant=project.tenant)


def _dataset_version(project, value, task: Task):
    if not isinstance(value, str) or not value:
        _fail(
            "dataset",
            "give the id of a dataset (ds_…, its latest version) or of a dataset version (dsv_…).",
        )
    version = selectors.dataset_version_by_id(project=project, public_id=value)
    if version is None:
        _fail("dataset", f"this project has no dataset or dataset version '{value}'.")
    if version.dataset.task != task.name:
        _fail(
            "dataset",
            f"'{value}' is a dataset for the task '{version.dataset.task}', not '{task.name}'.",
        )
    return version


def _model_version(project, value, task: Task, field: str = "model") -> ModelVersion:
    if not isinstance(value, str) or not value:
        _fail(field, "give the id of a model version (mdl_…).")
    model = selectors.model_version_by_id(project=project, public_id=value)
    if model is None:
        _fail(field, f"this project has no model version '{value}'.")
    if model.task != task.name:
        _fail(field, f"'{value}' is a model for the task '{model.task}', not '{task.name}'.")
    return model


def _split_hyperparameters(params: dict, core: tuple[str, ...]) -> tuple[dict, dict]:
    return {k: v for k, v in params.items() if k in core}, {
        k: v for k, v in params.items() if k not in core
    }


class Train(Runner):
    kind = "train"
    title = "Train a model"
    queue = "train"
    retryable = True
    params_schema = {
        "type": "object",
        "description": "Core parameters; the task's hyperparameters (GET /api/v1/tasks/) sit beside them.",
        "properties": {
            "dataset": DATASET_PARAM,
            "architecture": {
                "type": "string",
                "description": "One of the task's architectures; default: the task's, or the base's.",
            },
            "base_model": {
                "type": "string",
                "description": "A model garden entry (bm_… or its name) to fine-tune.",
            },
            "parent": {
                "type": "string",
                "description": "A model version (mdl_…) of this project to continue from.",
            },
            "seed": {"type": "integer", "minimum": 0, "default": 0},
            "name": {
                "type": "string",
                "minLength": 1,
                "maxLength": 200,
                "description": "The new model's name.",
            },
        },
        "required": ["dataset"],
    }
    CORE = tuple(params_schema["properties"])

    @classmethod
    def admission(cls, *, project, task: str, params: dict) -> dict:
        """A training adds a model version: the plan's limit on them is checked with its task."""
        # this tenant's
        kept = ModelVersion.dangerously_unscoped.filter(tenant_id=project.tenant_id).count()
        return {"task": task or None, "model_versions": kept}

    @classmethod
    def prepare(cls, *, project, task: str, params: dict) -> dict:
        task_obj = _task(task, project)
        core, hyper = _split_hyperparameters(params, cls.CORE)
        found = problems({**cls.params_schema, "additionalProperties": True}, core)
        if found:
            raise ValidationError({"params": found})
        hyper = with_defaults(task_obj.params_schema, hyper)
        found = problems(task_obj.params_schema, hyper)
        if found:
            raise ValidationError({"params": found})
        version = _dataset_version(project, core["dataset"], task_obj)
        architecture = core.get("architecture")
        if architecture is not None and task_obj.architecture(architecture) is None:
            _fail(
                "architecture",
                f"the task '{task}' has no architecture '{architecture}'; it has "
                f"{', '.join(a.name for a in task_obj.architectures)}.",
            )
        resolved = {
            "dataset": version.public_id,
            "seed": core.get("seed", 0),
            "name": core.get("name") or f"{version.dataset.name}-{task}",
        }
        if core.get("base_model") and core.get("parent"):
            _fail("base_model", "give either a base model or a parent version, not both.")
        if core.get("base_model"):
            base = selectors.base_model_by_id_or_name(core["base_model"])
            if base is None:
                _fail(
                    "base_model",
                    f"the model garden has no '{core['base_model']}' (see /api/v1/base-models/).",
                )
            fitting = task_obj.architectures_for(base.family)
            if not fitting:
                _fail("base_model", f"'{base.name}' ({base.family}) cannot start a '{task}' model.")
            if architecture is None:
                architecture = fitting[0].name
            elif task_obj.architecture(architecture) not in fitting:
                _fail(
                    "architecture",
                    f"'{architecture}' does not start from a {base.family} model; use "
                    f"{', '.join(a.name for a in fitting)}.",
                )
            resolved["base_model"] = base.public_id
        elif core.get("parent"):
            parent = _model_version(project, core["parent"], task_obj, "parent")
            if architecture is not None and architecture != parent.architecture:
                _fail(
                    "architecture",
                    f"the parent is a '{parent.architecture}' model; leave architecture out or give that.",
                )
            architecture = parent.architecture
            resolved["parent"] = parent.public_id
        else:
            architecture = architecture or task_obj.default_architecture
            if task_obj.architecture(architecture).requires_base:
                _fail(
                    "architecture",
                    f"'{architecture}' fine-tunes a pretrained model: name a base_model or a parent.",
                )
        resolved["architecture"] = architecture
        return {**resolved, **hyper}

    def run(self, ctx: JobContext) -> dict:
        configure_torch()
        params = ctx.params
        task = _runtime_task(ctx.job.task)
        version = selectors.dataset_version_by_id(project=ctx.project, public_id=params["dataset"])
        if version is None:
            raise JobError("The dataset of this job was deleted.", code="dataset_gone")
        base, base_dir, base_labels, parent = None, None, [], None
        if params.get("base_model"):
            base = BaseModel.objects.get(public_id=params["base_model"])
            base_dir, base_labels = services.model_files(base), list(base.labels)
        elif params.get("parent"):
            parent = selectors.model_version_by_id(project=ctx.project, public_id=params["parent"])
            if parent is None:
                raise JobError(
                    "The parent model version of this job was deleted.", code="model_gone"
                )
            base_dir, base_labels = services.model_files(parent), list(parent.labels)
        hyper = {k: v for k, v in params.items() if k not in Train.CORE}
        ctx.log(
            f"Training {params['architecture']} on {version.dataset.name} v{version.version} "
            f"({version.rows} examples, {len(version.labels)} labels)"
            + (
                f", starting from {base.name}"
                if base
                else f", continuing {parent.public_id}"
                if parent
                else ", from scratch"
            )
            + "."
        )
        splits = services.dataset_splits(version)
        tctx = JobTrainContext(
            ctx,
            task=task,
            params=hyper,
            architecture=params["architecture"],
            splits=splits,
            base=base_dir,
            base_labels=base_labels,
            seed=params["seed"],
        )
        started = time.monotonic()
        try:
            model = task.train(tctx)
        except TrainingError as exc:
            raise JobError(str(exc), code="training_failed") from exc
        train_seconds = time.monotonic() - started
        ctx.check_cancelled()
        ctx.report(1, 1, description="Evaluating")
        held_out = splits["test"] if len(splits["test"]) else splits["validation"]
        evaluation = task.evaluate(model, held_out) if len(held_out) else None
        validation = (
            task.evaluate(model, splits["validation"]) if len(splits["validation"]) else None
        )
        metrics = dict(evaluation.metrics) if evaluation else {}
        report = {"split": held_out.name, **evaluation.report} if evaluation else {}
        if validation:
            report["validation_metrics"] = validation.metrics
        # The files are stored first, outside the job row's lock; the row commits with the effect
        # marker, so a rerun after a lost worker never publishes twice (and drops its own files).
        staged = services.model_stage(tenant=ctx.tenant, task=task, model=model)
        with ctx.once("publish-model") as fresh:
            if fresh:
                services.model_record(
                    staged=staged,
                    project=ctx.project,
                    task=task,
                    name=params["name"],
                    architecture=params["architecture"],
                    labels=version.labels,
                    metrics=metrics,
                    report=report,
                    params=params,
                    job=ctx.job,
                    dataset_version=version,
                    parent=parent,
                    base_model=base,
                )
        if not fresh:
            storage.delete_prefix(staged.prefix)
        published = ModelVersion.objects.get(job=ctx.job)
        drop_checkpoint(ctx.job)
        ctx.log(
            f"Published {published.name} v{published.version} ({published.public_id}): "
            + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        )
        rate = tctx.samples_per_second()
        return {
            "model_version": published.public_id,
            "metrics": metrics,
            "train_seconds": round(train_seconds, 3),
            "samples": tctx.samples,
            "samples_per_second": round(rate, 3) if rate else None,
        }


def _runtime_task(name: str) -> Task:
    task = discovery.get_task(name)
    if task is None:
        raise JobError(f"The task '{name}' is not installed on this worker.", code="task_missing")
    return task


def _split_choice(value: str) -> list[str]:
    return list(SPLITS) if value == "all" else [value]


class ModelOnDataset(Runner):
    """Base of the kinds that run a model version over a dataset version (evaluate, batch_predict)."""

    @classmethod
    def admission(cls, *, project, task: str, params: dict) -> dict:
        """Without a `task` the job runs its model version's, and the plan is asked about that one."""
        if not task and isinstance(params.get("model"), str):
            task = (
                ModelVersion.objects.filter(project=project, public_id=params["model"])
                .values_list("task", flat=True)
                .first()
                or task
            )
        return {"task": task or None}

    @classmethod
    def prepare(cls, *, project, task: str, params: dict) -> dict:
        params = super().prepare(
            project=project, task=task, params=with_defaults(cls.params_schema, params)
        )
        return _resolve_model_and_dataset(project, task, params)

    @staticmethod
    def inputs(ctx: JobContext):
        """(task, model version, dataset version, the examples of the chosen split(s))."""
        configure_torch()
        task, model_version, version = _load_pair(ctx)
        splits = services.dataset_splits(version)
        return (
            task,
            model_version,
            version,
            [e for name in _split_choice(ctx.params["split"]) for e in splits[name].examples],
        )


class Evaluate(ModelOnDataset):
    kind = "evaluate"
    title = "Evaluate a model version on a dataset"
    queue = "inference"
    retryable = True
    params_schema = {
        "type": "object",
        "properties": {
            "model": MODEL_PARAM,
            "dataset": DATASET_PARAM,
            "split": {
                **SPLIT_PARAM,
                "default": "test",
                "description": "Which split to evaluate on (all: every example).",
            },
        },
        "required": ["model", "dataset"],
        "additionalProperties": False,
    }

    def run(self, ctx: JobContext) -> dict:

        task, model_version, version, examples = self.inputs(ctx)
        if not examples:
            raise JobError(
                f"The {ctx.params['split']} split of this dataset version is empty.",
                code="empty_split",
            )
        ctx.report(0, 1, description="Loading the model")
        model = task.load(services.model_files(model_version))
        ctx.report(0, 1, description=f"Evaluating on {len(examples)} examples")
        evaluation = task.evaluate(
            model, DatasetSplit(ctx.params["split"], examples, list(version.labels))
        )
        ctx.report(1, 1, {k: v for k, v in evaluation.metrics.items()})
        return {
            "model_version": model_version.public_id,
            "dataset_version": version.public_id,
            "split": ctx.params["split"],
            "metrics": evaluation.metrics,
            "report": evaluation.report,
        }


class BatchPredict(ModelOnDataset):
    kind = "batch_predict"
    title = "Predict a whole dataset into a downloadable file"
    queue = "inference"
    retryable = True
    params_schema = {
        "type": "object",
        "properties": {
            "model": MODEL_PARAM,
            "dataset": DATASET_PARAM,
            "split": {**SPLIT_PARAM, "default": "all"},
            "top_k": {
                "type": "integer",
                "minimum": 1,
                "maximum": 1000,
                "description": "Labels per prediction (default: the task's).",
            },
        },
        "required": ["model", "dataset"],
        "additionalProperties": False,
    }

    def run(self, ctx: JobContext) -> dict:
        task, model_version, version, examples = self.inputs(ctx)
        model = task.load(services.model_files(model_version))
        options = {"top_k": ctx.params["top_k"]} if ctx.params.get("top_k") else {}
        file_inputs = task.dataset.input_kind == "file"
        out_dir = ctx.scratch_dir / "out"
        out_dir.mkdir()
        out = out_dir / PREDICTIONS_FILE
        batch = max(1, task.max_batch)
        with out.open("w") as sink:
            for start in range(0, len(examples), batch):
                chunk = examples[start : start + batch]
                decoded = [
                    task.decode_input(e.input.read_bytes() if file_inputs else e.input)
                    for e in chunk
                ]
                for example, prediction in zip(
                    chunk, task.predict(model, decoded, options=options), strict=True
                ):
                    row = {"ref": example.ref, "label": example.label, "prediction": prediction}
                    if not file_inputs:
                        row["input"] = example.input
                    sink.write(json.dumps(row) + "\n")
                ctx.report(start + len(chunk), len(examples), description="Predicting")
        prefix = f"predictions/{ctx.tenant.public_id}/{ctx.job_id}"
        with ctx.once("store-predictions") as fresh:
            if fresh:
                storage.delete_prefix(prefix)  # a rerun's partial file, if any
                storage.store_tree(out_dir, prefix)
        return {
            "model_version": model_version.public_id,
            "dataset_version": version.public_id,
            "rows": len(examples),
            "output": {
                "storage_prefix": prefix,
                "file": PREDICTIONS_FILE,
                "bytes": out.stat().st_size,
            },
        }


def _resolve_model_and_dataset(project, task: str, params: dict) -> dict:
    model = selectors.model_version_by_id(project=project, public_id=params["model"])
    if model is None:
        _fail("model", f"this project has no model version '{params['model']}'.")
    if task and task != model.task:
        _fail("model", f"'{model.public_id}' is a model for the task '{model.task}', not '{task}'.")
    task_obj = _task(model.task, project)
    if not model.predictable:
        _fail(
            "model",
            f"'{model.public_id}' has no classification head yet (an imported encoder); fine-tune it first.",
        )
    version = _dataset_version(project, params["dataset"], task_obj)
    return {**params, "model": model.public_id, "dataset": version.public_id}


def _load_pair(ctx: JobContext):
    model_version = selectors.model_version_by_id(
        project=ctx.project, public_id=ctx.params["model"]
    )
    version = selectors.dataset_version_by_id(project=ctx.project, public_id=ctx.params["dataset"])
    if model_version is None or version is None:
        raise JobError(
            "The model version or the dataset of this job was deleted.", code="input_gone"
        )
    return _runtime_task(model_version.task), model_version, version


register(Train)
register(Evaluate)
register(BatchPredict)
