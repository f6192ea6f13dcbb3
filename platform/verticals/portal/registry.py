"""Portal pages for the registry: datasets (upload with a progress bar, statistics, preview),
the train form generated from a task's schema, model versions (metrics, confusion matrix,
lineage) and the playground that predicts with one model.

Uploads post the form as multipart. `static/portal/upload.js` sends it with XMLHttpRequest
(for the progress bar) asking for JSON, and gets {ok, message, html, url, problems, errors};
without JavaScript the same view answers a redirect, or the page again with the problems.

The playground posts with HTMX and always gets its result fragment with HTTP 200 (HTMX does
not swap 4xx answers): a refused input is a message inside the fragment. A plain form post
gets the whole model page (400 when the input was refused).
"""

from __future__ import annotations

import json

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse

from verticals.billing.catalog import standing
from verticals.billing.quotas import Refused, check_task_of
from verticals.jobs import engine
from verticals.portal import chat
from verticals.portal.jobs import _project
from verticals.portal.registry_forms import DatasetUploadForm, DatasetVersionForm, TrainForm
from verticals.portal.views import _error_text, _is_htmx, _refuse, service_refusal, tenant_page
from verticals.registry import selectors, services
from verticals.registry.models import SPLITS, Dataset, DatasetVersion, ModelVersion
from verticals.sdk import discovery
from verticals.sdk.errors import ServiceError
from verticals.serving import service as serving

PAGE_SIZE = 50
PREVIEW_ROWS = 20
LABELS_LISTED = 8


# --- lookups ------------------------------------------------------------------------------


def _dataset(project, dataset_id: str) -> Dataset:
    # Scoped managers: another tenant's (or another project's) dataset is a 404, as a missing one.
    return get_object_or_404(
        Dataset.objects.select_related("project", "created_by"),
        project=project,
        public_id=dataset_id,
    )


def _model(project, model_id: str) -> ModelVersion:
    return get_object_or_404(
        ModelVersion.objects.select_related(
            "project", "job", "parent", "base_model", "dataset_version__dataset", "created_by"
        ),
        project=project,
        public_id=model_id,
    )


def _tasks(request) -> dict:
    return discovery.enabled_tasks(request.caller.tenant)


def _plan_tasks(request, tasks: dict) -> dict:
    """Of `tasks`, those the tenant's plan includes (all of them without a subscription)."""
    current = standing(request.caller.tenant)
    return (
        tasks
        if current is None
        else {name: task for name, task in tasks.items() if current.plan.allows_task(name)}
    )


def _wants_json(request) -> bool:
    return (
        "application/json" in request.headers.get("Accept", "")
        or request.headers.get("X-Requested-With") == "XMLHttpRequest"
    )


def _form_errors(form, error: ValidationError) -> None:
    """A ValidationError from core onto the form: at the field it names, else above the form."""
    if hasattr(error, "error_dict"):
        for name, problems in error.message_dict.items():
            form.add_error(name if name in form.fields else None, problems)
    else:
        form.add_error(None, error.messages)


def _percent(part: float, whole: float) -> str:
    """A share in percent as text for the page (also a CSS width: never localized)."""
    return f"{100.0 * part / whole:.1f}" if whole else "0.0"


# --- words for numbers --------------------------------------------------------------------


def metric_text(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.4f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def version_statistics(version: DatasetVersion) -> dict:
    """Rows per split, and each label's count and share of each split (the bars' widths)."""
    stats = version.stats or {}
    splits = stats.get("splits") or {}
    total = stats.get("rows", version.rows) or 0
    split_rows = [
        {
            "name": name,
            "rows": (splits.get(name) or {}).get("rows", 0),
            "share": _percent((splits.get(name) or {}).get("rows", 0), total),
        }
        for name in SPLITS
    ]
    label_rows = []
    for label in version.labels:
        cells = []
        for split in split_rows:
            count = ((splits.get(split["name"]) or {}).get("labels") or {}).get(label, 0)
            cells.append({"count": count, "share": _percent(count, split["rows"])})
        overall = (stats.get("labels") or {}).get(label, sum(c["count"] for c in cells))
        label_rows.append(
            {"label": label, "cells": cells, "count": overall, "share": _percent(overall, total)}
        )
    return {"rows": total, "splits": split_rows, "labels": label_rows}


def preview(version: DatasetVersion, limit: int = PREVIEW_ROWS) -> list[dict] | None:
    """The first examples of the train split; None when the stored file cannot be read."""
    try:
        return services.dataset_preview(version, split="train", limit=limit)
    except (OSError, ValueError, KeyError):
        return None


def confusion_table(report: dict) -> dict | None:
    """The confusion matrix as rows (true label) of cells (predicted label), each with its count
    and its share of the row, which sets the cell's colour."""
    labels, matrix = report.get("labels"), report.get("confusion_matrix")
    if (
        not labels
        or not matrix
        or len(matrix) != len(labels)
        or any(len(row) != len(labels) for row in matrix)
    ):
        return None
    rows = []
    for i, (label, row) in enumerate(zip(labels, matrix, strict=True)):
        total = sum(row)
        cells = []
        for j, count in enumerate(row):
            share = 100.0 * count / total if total else 0.0
            cells.append(
                {
                    "count": count,
                    "share": f"{share:.1f}",
                    "alpha": f"{share / 100:.3f}",
                    "diagonal": i == j,
                    "strong": share >= 55,
                    "predicted": labels[j],
                }
            )
        rows.append({"label": label, "cells": cells, "total": total})
    return {"labels": labels, "rows": rows}


def per_class_rows(report: dict) -> list[dict]:
    per_class = report.get("per_class") or {}
    order = list(report.get("labels") or []) + [
        k for k in per_class if k not in (report.get("labels") or [])
    ]
    rows = []
    for label in order:
        values = per_class.get(label)
        if not isinstance(values, dict):
            continue
        rows.append(
            {
                "label": label,
                "support": values.get("support", ""),
                **{k: metric_text(values.get(k)) for k in ("precision", "recall", "f1")},
                "f1_width": f"{100 * float(values.get('f1') or 0):.1f}",
            }
        )
    return rows


def label_bars(output) -> list[dict] | None:
    """[{label, score}] (a classification) as bars; None for another output shape."""
    if not isinstance(output, list) or not all(
        isinstance(o, dict) and "label" in o and "score" in o for o in output
    ):
        return None
    return [{"label": o["label"], "percent": f"{100 * float(o['score']):.1f}"} for o in output]


# --- datasets -----------------------------------------------------------------------------


def _datasets(project):
    latest_first = DatasetVersion.objects.order_by("-version")
    datasets = list(
        Dataset.objects.filter(project=project)
        .select_related("created_by")
        .prefetch_related(Prefetch("versions", queryset=latest_first))
    )
    for dataset in datasets:
        versions = list(dataset.versions.all())
        dataset.latest = versions[0] if versions else None
        dataset.version_count = len(versions)
        labels = dataset.latest.labels if dataset.latest else []
        more = len(labels) - LABELS_LISTED
        dataset.labels_text = ", ".join(labels[:LABELS_LISTED]) + (
            f" … (+{more})" if more > 0 else ""
        )
    return datasets


def task_formats(task) -> dict:
    """What a task's uploads look like, in words for the upload form."""
    described = task.dataset.describe()
    example = described.get("example") or {}
    return {
        "name": task.name,
        "title": task.title,
        "formats": ", ".join(task.dataset.formats),
        "layouts": "; ".join(described.get("layouts") or []),
        "example": next(iter(example.values()), "") if isinstance(example, dict) else "",
    }


def _datasets_context(request, project, form, **extra) -> dict:
    tasks = _tasks(request)
    return {
        "project": project,
        "datasets": _datasets(project),
        "form": form,
        "tasks": tasks,
        "task_help": [task_formats(t) for t in tasks.values()],
        "can_upload": request.caller.can("dataset.create"),
        **extra,
    }


def _upload(request, project, form, dataset=None):
    """(the new version, or None and the problems of the validation report, and the message)."""
    if not form.is_valid():
        return None, [], "The upload needs a few fixes: see the fields."
    try:
        version = services.dataset_upload(
            project=project, caller=request.caller, dataset=dataset, **form.upload_arguments()
        )
    except services.UploadRejected as rejected:
        form.add_error("file" if "file" in form.fields else None, rejected.message_text)
        return None, rejected.problems, rejected.message_text
    except ValidationError as error:
        _form_errors(form, error)
        return None, [], _error_text(error)
    return version, [], ""


def _upload_answer(
    request, project, form, version, problems: list, message: str, *, page, table: bool = False
):
    """The outcome of an upload: JSON for the script, a redirect or the page again without it."""
    if version is not None:
        dataset = version.dataset
        text = (
            f"Dataset '{dataset.name}' v{version.version} uploaded: {version.rows} examples, "
            f"{len(version.labels)} labels."
        )
        url = (
            reverse("portal:dataset_detail", args=[project.public_id, dataset.public_id])
            + f"?version={version.version}"
        )
        if _wants_json(request):
            context = {
                "project": project,
                "dataset": dataset,
                "version": version,
                "stats": version_statistics(version),
                "message": text,
                "url": url,
                "can_train": request.caller.can("job.create"),
            }
            body = {
                "ok": True,
                "message": text,
                "url": url,
                "dataset": dataset.public_id,
                "version": version.public_id,
                "number": version.version,
                "rows": version.rows,
                "labels": version.labels,
                "html": render_to_string("portal/_upload_outcome.html", context, request=request),
            }
            if table:
                table_context = {"project": project, "datasets": _datasets(project)}
                body["table"] = render_to_string(
                    "portal/_datasets_table.html", table_context, request=request
                )
            return JsonResponse(body, status=201)
        messages.success(request, text)
        return redirect(url)
    if _wants_json(request):
        errors = {
            name: [e["message"] for e in found]
            for name, found in form.errors.get_json_data().items()
        }
        context = {"message": message, "problems": problems, "form": form, "failed": True}
        return JsonResponse(
            {
                "ok": False,
                "message": message,
                "problems": problems,
                "errors": errors,
                "html": render_to_string("portal/_upload_outcome.html", context, request=request),
            },
            status=400,
        )
    return page(status=400, upload_message=message, problems=problems)


def _refuse_upload(request, denial: str):
    if _wants_json(request):
        return JsonResponse(
            {
                "ok": False,
                "message": denial,
                "problems": [],
                "errors": {},
                "html": render_to_string(
                    "portal/_upload_outcome.html",
                    {"message": denial, "failed": True},
                    request=request,
                ),
            },
            status=403,
        )
    return _refuse(request, denial)


@tenant_page("dataset.view", methods=("GET", "POST"), writes="dataset.create")
def dataset_list(request, project_id: str):
    """The project's datasets, and the form that uploads a new one."""
    project = _project(project_id)
    tasks = _tasks(request)
    if request.method == "POST":
        denial = request.caller.denial("dataset.create")
        if denial:
            return _refuse_upload(request, denial)
        form = DatasetUploadForm(request.POST, request.FILES, tasks=tasks)
        version, problems, message = _upload(request, project, form)

        def page(status, **extra):
            return render(
                request,
                "portal/datasets.html",
                _datasets_context(request, project, form, **extra),
                status=status,
            )

        return _upload_answer(
            request, project, form, version, problems, message, page=page, table=True
        )
    wanted = request.GET.get("task", "")
    form = DatasetUploadForm(tasks=tasks, initial={"task": wanted} if wanted in tasks else None)
    return render(request, "portal/datasets.html", _datasets_context(request, project, form))


def _dataset_context(request, project, dataset, version_form=None, **extra) -> dict:
    versions = list(dataset.versions.order_by("-version"))
    wanted = request.GET.get("version", "")
    chosen = next(
        (v for v in versions if wanted.isascii() and wanted.isdigit() and v.version == int(wanted)),
        versions[0] if versions else None,
    )
    task = _tasks(request).get(dataset.task)
    caller = request.caller
    if version_form is None and caller.can("dataset.create"):
        version_form = DatasetVersionForm(formats=list(task.dataset.formats) if task else None)
    trained = (
        ModelVersion.objects.filter(project=project, dataset_version__dataset=dataset)
        .select_related("dataset_version")
        .order_by("-created_at")[:20]
    )
    return {
        "project": project,
        "dataset": dataset,
        "versions": versions,
        "version": chosen,
        "task": task,
        "stats": version_statistics(chosen) if chosen else None,
        # The examples themselves are the dataset's rows: only roles that may download it see them.
        "preview": preview(chosen) if chosen and caller.can("dataset.download") else None,
        "file_inputs": task is not None and task.dataset.input_kind == "file",
        "version_form": version_form,
        "models": trained,
        "can_upload": caller.can("dataset.create"),
        "can_delete": caller.can("dataset.delete"),
        "can_download": caller.can("dataset.download"),
        "can_train": caller.can("job.create") and task is not None,
        **extra,
    }


@tenant_page("dataset.view")
def dataset_detail(request, project_id: str, dataset_id: str):
    project = _project(project_id)
    dataset = _dataset(project, dataset_id)
    return render(
        request, "portal/dataset_detail.html", _dataset_context(request, project, dataset)
    )


@tenant_page("dataset.view", methods=("POST",), writes="dataset.create")
def dataset_version_upload(request, project_id: str, dataset_id: str):
    """A new version of the dataset (same task)."""
    project = _project(project_id)
    dataset = _dataset(project, dataset_id)
    denial = request.caller.denial("dataset.create")
    if denial:
        return _refuse_upload(request, denial)
    task = _tasks(request).get(dataset.task)
    form = DatasetVersionForm(
        request.POST, request.FILES, formats=list(task.dataset.formats) if task else None
    )
    version, problems, message = _upload(request, project, form, dataset=dataset)

    def page(status, **extra):
        context = _dataset_context(request, project, dataset, version_form=form, **extra)
        return render(request, "portal/dataset_detail.html", context, status=status)

    return _upload_answer(request, project, form, version, problems, message, page=page)


@tenant_page("dataset.delete", methods=("POST",))
def dataset_delete(request, project_id: str, dataset_id: str):
    """Delete the dataset and every version's files (model versions trained on it stay)."""
    project = _project(project_id)
    dataset = _dataset(project, dataset_id)
    services.dataset_delete(dataset=dataset, caller=request.caller)
    messages.success(request, f"Dataset '{dataset.name}' deleted.")
    return redirect("portal:project_datasets", project_id=project.public_id)


# --- the train form -----------------------------------------------------------------------


def _initial_dataset(project, task, wanted: str) -> str:
    if wanted:
        version = selectors.dataset_version_by_id(project=project, public_id=wanted)
        if version is not None and version.dataset.task == task.name:
            return version.public_id
    newest = (
        DatasetVersion.objects.filter(dataset__project=project, dataset__task=task.name)
        .order_by("-dataset__created_at", "-version")
        .first()
    )
    return newest.public_id if newest else ""


def _job_errors(form: TrainForm, error: ValidationError) -> None:
    if not hasattr(error, "error_dict"):
        form.apply_core_errors(error.messages)
        return
    for name, problems in error.message_dict.items():
        if name == "params":
            form.apply_core_errors(problems)
        else:
            form.add_error(name if name in form.fields else None, problems)


@tenant_page("job.create", methods=("GET", "POST"))
def train(request, project_id: str):
    """A train job, its form generated from the task's params schema."""
    project = _project(project_id)
    installed = _tasks(request)
    tasks = _plan_tasks(request, installed)  # the choices: the tasks the plan includes
    name = request.POST.get("task") or request.GET.get("task", "")
    wanted = request.GET.get("dataset", "")
    if not name and wanted:
        version = selectors.dataset_version_by_id(project=project, public_id=wanted)
        name = version.dataset.task if version is not None else ""
    if not name and len(tasks) == 1:
        name = next(iter(tasks))
    task = installed.get(name)
    if task is None:
        context = {"project": project, "tasks": tasks, "unknown": name}
        return render(request, "portal/train.html", context, status=404 if name else 200)
    if name not in tasks:  # installed, but not in the plan: say so above the choices
        try:
            check_task_of(request.caller.tenant, name)
        except Refused as refused:
            messages.error(request, refused.message)
            return render(
                request,
                "portal/train.html",
                {"project": project, "tasks": tasks},
                status=refused.status,
            )
    refused_status = None
    if request.method == "POST":
        form = TrainForm(request.POST, task=task, project=project)
        if form.is_valid():
            params = form.params()
            if form.is_valid():  # a value params() could not cast adds its error
                try:
                    job = engine.job_create(
                        project=project,
                        kind="train",
                        task=task.name,
                        params=params,
                        caller=request.caller,
                    )
                except ValidationError as error:
                    _job_errors(form, error)
                except Refused as refused:
                    # 403 task not in plan, 402 model versions or job time used up
                    form.add_error(None, refused.message)
                    refused_status = refused.status
                else:
                    messages.success(request, f"Training job {job.public_id} queued.")
                    return redirect(
                        "portal:job_detail", project_id=project.public_id, job_id=job.public_id
                    )
    else:
        initial = {
            "dataset": _initial_dataset(project, task, wanted),
            "parent": request.GET.get("parent", ""),
        }
        form = TrainForm(initial=initial, task=task, project=project)
    context = {
        "project": project,
        "task": task,
        "tasks": tasks,
        "form": form,
        "has_datasets": bool(form.fields["dataset"].choices),
        "can_upload": request.caller.can("dataset.create"),
    }
    return render(
        request,
        "portal/train.html",
        context,
        status=refused_status or (400 if form.errors else 200),
    )


# --- model versions -----------------------------------------------------------------------


def _primary(model: ModelVersion, tasks: dict) -> tuple[str, str]:
    task = tasks.get(model.task)
    metrics = model.metrics or {}
    name = (
        task.primary_metric
        if task is not None and task.primary_metric in metrics
        else next(iter(metrics), "")
    )
    return name, metric_text(metrics[name]) if name else ""


@tenant_page("model.view")
def model_list(request, project_id: str):
    project = _project(project_id)
    tasks = _tasks(request)
    models = ModelVersion.objects.filter(project=project).select_related(
        "base_model", "dataset_version__dataset"
    )
    task = request.GET.get("task", "")
    if task:
        models = models.filter(task=task)
    page = Paginator(models, PAGE_SIZE).get_page(request.GET.get("page"))
    for model in page:
        model.primary_name, model.primary_value = _primary(model, tasks)
    used = sorted(set(ModelVersion.objects.filter(project=project).values_list("task", flat=True)))
    context = {
        "project": project,
        "page": page,
        "task": task,
        "task_names": used,
        "tasks": tasks,
        "can_train": request.caller.can("job.create") and bool(tasks),
    }
    return render(request, "portal/models.html", context)


def _model_context(request, project, model: ModelVersion, **extra) -> dict:
    caller = request.caller
    task = _tasks(request).get(model.task)
    report = model.report or {}
    primary, _value = _primary(model, _tasks(request))
    metrics = [
        {"name": k, "value": metric_text(v), "primary": k == primary}
        for k, v in (model.metrics or {}).items()
    ]
    validation = [
        {"name": k, "value": metric_text(v)}
        for k, v in (report.get("validation_metrics") or {}).items()
    ]
    dataset_version = model.dataset_version
    examples = task.input_schema.get("examples") if task is not None else None
    playground = (
        task.playground
        if task is not None and model.predictable and caller.can("model.predict")
        else ""
    )
    return {
        "project": project,
        "model": model,
        "task": task,
        "metrics": metrics,
        "validation_metrics": validation,
        "report_split": report.get("split", ""),
        "report_examples": report.get("examples"),
        "confusion": confusion_table(report),
        "per_class": per_class_rows(report),
        "dataset_version": dataset_version,
        "dataset_gone": dataset_version is None and bool((model.params or {}).get("dataset")),
        "params_json": json.dumps(model.params, indent=2, sort_keys=True) if model.params else "",
        "playground": playground,
        **(chat.playground_context(request, project, model) if playground == "chat" else {}),
        "placeholder": examples[0]
        if isinstance(examples, list) and examples and isinstance(examples[0], str)
        else "",
        "can_delete": caller.can("model.delete"),
        "can_download": caller.can("model.download"),
        "can_train": caller.can("job.create") and task is not None,
        "download_url": f"/api/v1/projects/{project.public_id}/models/{model.public_id}/download/",
        **extra,
    }


@tenant_page("model.view")
def model_detail(request, project_id: str, model_id: str):
    project = _project(project_id)
    model = _model(project, model_id)
    return render(request, "portal/model_detail.html", _model_context(request, project, model))


def _predict(request, model: ModelVersion, task) -> tuple[list | None, object, str, int]:
    """(bars, or None and the raw output, a message for refused input, the HTTP status)."""
    upload = None
    if task is not None and task.playground == "image":
        upload = request.FILES.get("image")
        if upload is None:
            return None, None, "Choose an image file to classify.", 400
    try:
        if upload is not None:
            serving.check_file_size(upload.name, upload.size)  # as the API's predict checks it
        # Read and decoded within the bound on what concurrent predict calls hold, as the API's are.
        with serving.reading_body(upload.size if upload is not None else 0):
            raw = upload.read() if upload is not None else request.POST.get("text", "")
            outputs = serving.predict(
                model_version=model,
                inputs=[raw],
                options={},
                single=True,
                caller=request.caller,
                route="portal.predict",
            )
    except ServiceError as refused:  # a bad input, the plan, the model or its process
        return None, None, *service_refusal(refused)
    return label_bars(outputs[0]), outputs[0], "", 200


@tenant_page("model.predict", methods=("POST",))
def model_predict(request, project_id: str, model_id: str):
    """The playground: one input through serving, answered as label bars."""
    project = _project(project_id)
    model = _model(project, model_id)
    task = _tasks(request).get(model.task)
    if task is not None and task.streams:
        # a generation is metered in tokens by the chat playground, not as one predict
        chat_url = reverse("portal:chat", args=[project.public_id]) + f"?model={model.public_id}"
        bars, output, status = None, None, 409
        problem = f"This model generates text: talk to it in the chat playground ({chat_url})."
        if not _is_htmx(request):
            # the model page shows the chat playground, not the result fragment
            messages.error(request, problem)
    else:
        bars, output, problem, status = _predict(request, model, task)
    result = {
        "bars": bars,
        "raw": json.dumps(output, indent=2) if bars is None and output is not None else "",
        "problem": problem,
        "name": getattr(request.FILES.get("image"), "name", ""),
    }
    if _is_htmx(request):
        response = render(request, "portal/_playground_result.html", {"result": result})
        response["Cache-Control"] = "no-store"
        return response
    context = _model_context(
        request, project, model, result=result, text=request.POST.get("text", "")
    )
    return render(request, "portal/model_detail.html", context, status=status)


@tenant_page("model.delete", methods=("POST",))
def model_delete(request, project_id: str, model_id: str):
    """Delete the model version and its files."""
    project = _project(project_id)
    model = _model(project, model_id)
    services.model_delete(model=model, caller=request.caller)
    messages.success(request, f"Model '{model.name}' v{model.version} deleted.")
    return redirect("portal:project_models", project_id=project.public_id)
