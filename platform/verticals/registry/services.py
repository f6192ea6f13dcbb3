"""Writing to the registry: dataset uploads, model imports, the model garden, published models.

Each write stores files first and commits the rows last, and removes what it stored when
anything fails: a refused or failed upload leaves nothing behind.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max

from verticals.billing import port
from verticals.registry import archives, datasets, loadcheck, storage
from verticals.registry.datasets import DEFAULT_FRACTIONS, EXAMPLES_FILE
from verticals.registry.models import SPLITS, BaseModel, Dataset, DatasetVersion, ModelVersion
from verticals.sdk import discovery
from verticals.sdk.artifacts import read_config
from verticals.sdk.contracts import DatasetSplit, Example, Task
from verticals.sdk.ingestion import Refused
from verticals.tenancy.audit import audit_record
from verticals.tenancy.ids import new_public_id
from verticals.tenancy.models import Project

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class UploadRejected(ValidationError):
    """An upload the platform refuses (HTTP 400); `problems` list the first ones by line/file."""

    def __init__(self, message: str, problems: list[dict] | None = None, field: str = "file"):
        super().__init__({field: [message]})
        self.message_text = message
        self.problems = problems or []


def task_or_error(name: str, *, tenant=None, field: str = "task") -> Task:
    task = discovery.enabled_tasks(tenant).get(name)
    if task is None:
        known = ", ".join(discovery.enabled_tasks(tenant)) or "none are installed"
        raise ValidationError({field: [f"Unknown task '{name}'. Tasks: {known}."]})
    return task


def safe_filename(name: str) -> str:
    cleaned = _SAFE_NAME.sub("_", Path(name or "upload").name).strip("._") or "upload"
    return cleaned[-200:]


class UploadTooLarge(UploadRejected):
    """An upload over REGISTRY_MAX_UPLOAD_BYTES (HTTP 413)."""


def save_upload(upload, directory: Path) -> Path:
    """Write an uploaded file (Django UploadedFile or a local Path) into `directory`, capped in size."""
    limit = settings.REGISTRY_MAX_UPLOAD_BYTES
    if isinstance(upload, Path):
        size = upload.stat().st_size
        if size > limit:
            raise UploadTooLarge(f"The file has {size} bytes; uploads take at most {limit}.")
        target = directory / safe_filename(upload.name)
        shutil.copyfile(upload, target)
        return target
    if upload.size is not None and upload.size > limit:
        raise UploadTooLarge(f"The file has {upload.size} bytes; uploads take at most {limit}.")
    target = directory / safe_filename(upload.name)
    written = 0
    with target.open("wb") as sink:
        for chunk in upload.chunks():
            written += len(chunk)
            if written > limit:
                raise UploadTooLarge(
                    f"The file is larger than {limit} bytes, the most an upload may hold."
                )
            sink.write(chunk)
    if written == 0:
        raise UploadRejected("The file is empty.")
    return target


# --- datasets -------------------------------------------------------------------------------


def clean_fractions(validation: float | None, test: float | None) -> dict[str, float]:
    fractions = dict(DEFAULT_FRACTIONS)
    for name, value in (("validation", validation), ("test", test)):
        if value is not None:
            if not 0 <= value < 0.5:
                raise ValidationError(
                    {
                        f"{name}_fraction": [
                            f"Give a fraction from 0 to 0.5 (excluded), not {value}."
                        ]
                    }
                )
            fractions[name] = float(value)
    fractions["train"] = round(1 - fractions["validation"] - fractions["test"], 6)
    return fractions


def dataset_upload(
    *,
    project: Project,
    caller,
    upload,
    task: str = "",
    name: str = "",
    dataset: Dataset | None = None,
    description: str = "",
    seed: int = 0,
    validation_fraction: float | None = None,
    test_fraction: float | None = None,
) -> DatasetVersion:
    """Validate an upload against the task's schema and store it as a new dataset version.

    With `dataset`, the upload becomes that dataset's next version (same task); otherwise a
    dataset named `name` is made (or gets a new version if the project has one by that name).
    """
    tenant = project.tenant
    if dataset is not None:
        task = dataset.task
    task_obj = task_or_error(task, tenant=tenant)
    fractions = clean_fractions(validation_fraction, test_fraction)
    public_id = new_public_id("dsv")
    prefix = f"datasets/{tenant.public_id}/{public_id}"
    with storage.workspace("upload") as work:
        incoming = work / "incoming"
        incoming.mkdir()
        source = save_upload(upload, incoming)
        built = work / "version"
        try:
            task_obj.dataset.check_format(source.name)
            # An unlabelled task's examples (text generation) carry no label: no labels, no per-label counts.
            made = datasets.build_version(
                schema=task_obj.dataset,
                labelled=task_obj.labelled,
                source=source,
                directory=built,
                scratch=work,
                seed=seed,
                fractions=fractions,
            )
        except Refused as exc:
            raise UploadRejected(str(exc), [p.as_dict() for p in exc.problems]) from exc
        (built / "source").mkdir()
        digest = storage.sha256_of(source)
        size = source.stat().st_size
        source.rename(built / "source" / source.name)
        with storage.removed_on_failure(prefix):
            storage.store_tree(built, prefix)
            version = _dataset_version_record(
                project=project,
                caller=caller,
                dataset=dataset,
                name=name or Path(source.name).stem,
                task=task,
                description=description,
                public_id=public_id,
                prefix=prefix,
                source_name=source.name,
                size=size,
                digest=digest,
                made=made,
                seed=seed,
                fractions=fractions,
            )
    return version


def _dataset_version_record(
    *,
    project,
    caller,
    dataset,
    name,
    task,
    description,
    public_id,
    prefix,
    source_name,
    size,
    digest,
    made: datasets.BuiltVersion,
    seed,
    fractions,
) -> DatasetVersion:
    """The rows of a stored upload: the dataset (found by name, or made) and its next version."""
    tenant = project.tenant
    with transaction.atomic():
        if dataset is None:
            dataset_name = name[:200]
            dataset = (
                Dataset.objects.select_for_update()
                .filter(project=project, name=dataset_name)
                .first()
            )
            if dataset is None:
                dataset = Dataset.objects.create(
                    tenant=tenant,
                    project=project,
                    name=dataset_name,
                    task=task,
                    description=description,
                    created_by=caller.person if caller else None,
                )
            elif dataset.task != task:
                raise ValidationError(
                    {
                        "name": [
                            f"The project's dataset '{dataset_name}' is for the task '{dataset.task}', "
                            f"not '{task}'; choose another name."
                        ]
                    }
                )
        else:
            dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)
        number = (dataset.versions.aggregate(n=Max("version"))["n"] or 0) + 1
        version = DatasetVersion.objects.create(
            tenant=tenant,
            public_id=public_id,
            dataset=dataset,
            version=number,
            source_name=source_name,
            source_bytes=size,
            sha256=digest,
            storage_prefix=prefix,
            labels=made.labels,
            rows=made.rows,
            stats=made.stats,
            split_seed=seed,
            split_fractions=fractions,
            created_by=caller.person if caller else None,
        )
        audit_record(
            tenant=tenant,
            actor=caller,
            action="dataset.create",
            target=version,
            details={"dataset": dataset.public_id, "version": number, "rows": made.rows},
        )
    return version


def dataset_delete(*, dataset: Dataset, caller) -> None:
    """Delete a dataset and, once that commits, every version's files (model versions trained on
    it stay, their lineage pointing nowhere)."""
    prefixes = list(dataset.versions.values_list("storage_prefix", flat=True))
    with transaction.atomic():
        audit_record(
            tenant=dataset.tenant,
            actor=caller,
            action="dataset.delete",
            target=dataset,
            details={"name": dataset.name},
        )
        dataset.delete()
        transaction.on_commit(lambda: [storage.delete_prefix(p) for p in prefixes])


def dataset_preview(
    version: DatasetVersion, *, split: str = "train", limit: int = 20
) -> list[dict]:
    """The first examples of a split, read from the stored examples file (no local copy of the files)."""
    rows = []
    with storage.open_stored(version.storage_prefix, EXAMPLES_FILE) as handle:
        for line in handle:
            record = json.loads(line)
            if record.get("split") == split:
                rows.append(
                    {
                        "input": record["input"],
                        "label": record["label"],
                        "ref": record.get("ref", ""),
                    }
                )
                if len(rows) >= limit:
                    break
    return rows


def dataset_version_files(version: DatasetVersion) -> Path:
    return storage.local_copy(version.storage_prefix, lambda: _listing(version.storage_prefix))


def _listing(prefix: str) -> list[dict]:
    """Every file under a stored prefix (for copies from remote storage)."""
    store = storage.artifacts()
    found = []

    def walk(relative: str) -> None:
        directories, files = store.listdir(f"{prefix}/{relative}".rstrip("/"))
        found.extend({"name": f"{relative}{name}"} for name in files)
        for directory in directories:
            walk(f"{relative}{directory}/")

    walk("")
    return found


def dataset_splits(version: DatasetVersion) -> dict[str, DatasetSplit]:
    """The version's train/validation/test splits, with file inputs as local paths."""
    root = dataset_version_files(version)
    task = discovery.get_task(version.dataset.task)
    file_inputs = task is not None and task.dataset.input_kind == "file"
    members: dict[str, list[Example]] = {name: [] for name in SPLITS}
    with (root / EXAMPLES_FILE).open() as source:
        for line in source:
            record = json.loads(line)
            value = root / "files" / record["input"] if file_inputs else record["input"]
            members[record["split"]].append(
                Example(input=value, label=record["label"], ref=record["ref"])
            )
    return {name: DatasetSplit(name, members[name], list(version.labels)) for name in SPLITS}


# --- models ---------------------------------------------------------------------------------


def _artifact_fields(directory: Path, prefix: str) -> dict:
    stored = storage.store_tree(directory, prefix)
    return {
        "storage_prefix": prefix,
        "files": stored,
        "size_bytes": sum(f["bytes"] for f in stored),
        "sha256": storage.tree_digest(directory),
        "config": read_config(directory),
    }


def _next_model_version(project: Project, name: str) -> int:
    # one numbering at a time per project
    Project.objects.select_for_update().filter(pk=project.pk).first()
    latest = ModelVersion.objects.filter(project=project, name=name).aggregate(n=Max("version"))[
        "n"
    ]
    return (latest or 0) + 1


@dataclass(frozen=True)
class StagedModel:
    """A model's files, checked and stored under their final prefix, waiting for their row."""

    public_id: str
    prefix: str
    fields: dict


def model_stage(
    *,
    tenant,
    task: Task,
    model=None,
    directory: Path | None = None,
    checked: archives.ModelFiles | None = None,
) -> StagedModel:
    """Save a model through its task (or take a directory), check its files by the model-archive
    policy, and store them. `checked`: files the policy already checked (an import), stored as they are."""
    public_id = new_public_id("mdl")
    prefix = f"models/{tenant.public_id}/{public_id}"
    with storage.workspace("publish") as work:
        if checked is None:
            if directory is None:
                directory = work / "saved"
                directory.mkdir()
                task.save(model, directory)
            try:
                # What a task saves is the platform's own: bounded by the plugin's code, not by the import limits.
                checked = archives.unpack_model(
                    directory,
                    work / "model",
                    patterns=task.model_files,
                    max_bytes=2**62,
                    max_files=settings.REGISTRY_MAX_ARCHIVE_FILES,
                )
            except Refused as exc:
                raise RuntimeError(
                    f"task {task.name!r} saved a model core refuses to store: {exc}"
                ) from exc
            if checked.dropped:
                raise RuntimeError(
                    f"task {task.name!r} saved files its model_files do not name (they would be dropped): "
                    f"{', '.join(checked.dropped)}"
                )
        with storage.removed_on_failure(prefix):
            fields = _artifact_fields(checked.directory, prefix)
    return StagedModel(public_id, prefix, fields)


def model_record(
    *,
    staged: StagedModel,
    project: Project,
    task: Task,
    name: str,
    architecture: str,
    labels: list[str],
    metrics: dict,
    report: dict,
    params: dict,
    job=None,
    dataset_version=None,
    parent=None,
    base_model=None,
    caller=None,
    source: str = ModelVersion.Source.TRAINED,
) -> ModelVersion:
    """The row of a staged model (its files are removed if the row cannot be written)."""
    with storage.removed_on_failure(staged.prefix), transaction.atomic():
        return ModelVersion.objects.create(
            tenant=project.tenant,
            public_id=staged.public_id,
            project=project,
            name=name[:200],
            version=_next_model_version(project, name),
            task=task.name,
            architecture=architecture,
            labels=list(labels),
            metrics=metrics,
            report=report,
            params=params,
            source=source,
            dataset_version=dataset_version,
            job=job,
            parent=parent,
            base_model=base_model,
            created_by=caller.person if caller else (job.created_by if job else None),
            **staged.fields,
        )


def model_publish(
    *,
    project: Project,
    task: Task,
    model=None,
    directory: Path | None = None,
    checked: archives.ModelFiles | None = None,
    **record,
) -> ModelVersion:
    """Stage and record a model version in one go (see model_stage and model_record)."""
    staged = model_stage(
        tenant=project.tenant, task=task, model=model, directory=directory, checked=checked
    )
    return model_record(staged=staged, project=project, task=task, **record)


def model_delete(*, model: ModelVersion, caller) -> None:
    """Delete a model version and its files once that commits (serving drops its loaded copy on
    the model's post_delete signal: verticals.serving.apps)."""
    prefix = model.storage_prefix
    with transaction.atomic():
        audit_record(
            tenant=model.tenant,
            actor=caller,
            action="model.delete",
            target=model,
            details={"name": model.name, "version": model.version},
        )
        model.delete()
        transaction.on_commit(lambda: storage.delete_prefix(prefix))


def _unpack_import(upload, work: Path, patterns) -> archives.ModelFiles:
    """The checked files of an uploaded archive, or of a local archive or directory, under `work`."""
    if isinstance(upload, Path) and upload.is_dir():
        source = upload
    else:
        incoming = work / "incoming"
        incoming.mkdir()
        source = save_upload(upload, incoming)
    return archives.unpack_model(
        source,
        work / "model",
        patterns=patterns,
        max_bytes=settings.REGISTRY_MAX_EXTRACTED_BYTES,
        max_files=settings.REGISTRY_MAX_ARCHIVE_FILES,
    )


def _recognized(task: Task, root: Path) -> tuple[str, list[str]]:
    try:
        found = task.recognize(root)
    except Exception as exc:
        # a plugin reading files it did not expect: what it says is what to fix
        raise Refused(f"The task '{task.name}' cannot use this model: {exc}.") from exc
    if found is None:
        names = ", ".join(a.name for a in task.architectures)
        raise Refused(
            f"The task '{task.name}' does not recognize this model (its architectures: {names}); "
            "check config.json (Hugging Face `model_type`, or torchvision `architecture`)."
        )
    most = settings.REGISTRY_MAX_LABELS
    if len(found[1]) > most:
        # a dataset could not hold them either; and each label is a row of the head
        raise Refused(f"The model predicts {len(found[1])} labels; at most {most}.")
    return found


def model_import(*, project: Project, caller, task: str, upload, name: str = "") -> ModelVersion:
    """Import a pretrained model (archive in Hugging Face or torchvision layout, safetensors only).

    The archive goes through the model-archive policy (registry.archives): only the files the task
    loads are kept, each checked as it is extracted; the audit row names the files dropped."""
    task_obj = task_or_error(task, tenant=project.tenant)
    port.check_task_of(project.tenant, task_obj.name)
    port.check_model_versions(
        project.tenant, ModelVersion.objects.filter(tenant=project.tenant).count()
    )
    with storage.workspace("import") as work:
        try:
            checked = _unpack_import(upload, work, task_obj.model_files)
            architecture, labels = _recognized(task_obj, checked.directory)
            # Proves the weights fit the architecture before anything is stored, in a process of its own.
            loadcheck.check_loads(task_obj, checked.directory)
        except Refused as exc:
            raise UploadRejected(str(exc), [p.as_dict() for p in exc.problems]) from exc
        label = (
            name
            or (getattr(upload, "name", "") and Path(upload.name).name.split(".")[0])
            or f"imported-{task}"
        )
        staged = model_stage(tenant=project.tenant, task=task_obj, checked=checked)
        # The version and its audit row commit together or not at all (and then its files go).
        with storage.removed_on_failure(staged.prefix), transaction.atomic():
            version = model_record(
                staged=staged,
                project=project,
                task=task_obj,
                name=label,
                architecture=architecture,
                labels=labels,
                metrics={},
                report={},
                params={},
                caller=caller,
                source=ModelVersion.Source.IMPORTED,
            )
            audit_record(
                tenant=project.tenant,
                actor=caller,
                action="model.import",
                target=version,
                details={"task": task, "files": checked.files, "dropped": checked.dropped[:100]},
            )
    return version


def base_model_import(
    *,
    source: Path,
    name: str,
    title: str = "",
    description: str = "",
    origin: str = "",
    license: str = "",
    replace: bool = False,
) -> BaseModel:
    """Add a pretrained model to the garden from a directory or an archive (staff, from the shell).

    The same model-archive policy as imports, keeping the files any installed task loads; the
    returned row carries `dropped_files`, the names the policy dropped (not stored)."""
    existing = BaseModel.objects.filter(name=name).first()
    if existing is not None and not replace:
        return existing
    patterns = sorted(
        {pattern for task in discovery.tasks().values() for pattern in task.model_files}
    )
    with storage.workspace("base") as work:
        checked = _unpack_import(source, work, patterns)
        config = read_config(checked.directory)
        family = config.get("model_type") or config.get("architecture") or ""
        users = {t.name: t.recognize(checked.directory) for t in discovery.tasks().values()}
        users = {k: v for k, v in users.items() if v is not None}
        if not users:
            raise Refused(f"No installed task can use '{name}' (family {family or 'unknown'}).")
        architecture, labels = next(iter(users.values()))
        public_id = new_public_id("bm")
        prefix = f"base-models/{public_id}"
        with storage.removed_on_failure(prefix):
            fields = _artifact_fields(checked.directory, prefix)
            with transaction.atomic():
                if existing is not None:
                    old_prefix = existing.storage_prefix
                    existing.delete()
                model = BaseModel.objects.create(
                    public_id=public_id,
                    name=name,
                    title=title or name,
                    description=description,
                    family=family,
                    architecture=architecture,
                    labels=labels,
                    source=origin,
                    license=license,
                    **fields,
                )
    if existing is not None:
        storage.delete_prefix(old_prefix)
    model.dropped_files = checked.dropped
    return model


def tasks_for_base(base: BaseModel) -> list[str]:
    """Tasks with an architecture that starts from this base model's family."""
    return [name for name, task in discovery.tasks().items() if task.architectures_for(base.family)]


def model_files(model) -> Path:
    """A local directory with a model version's (or base model's) files."""
    return storage.local_copy(model.storage_prefix, model.files)
