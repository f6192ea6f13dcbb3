"""Forms of the registry pages: dataset uploads, and the train form generated from a task's schema.

The train form holds core's train parameters (dataset version, architecture, base model or
parent, name, seed) and one field per hyperparameter of the task's JSON schema. Fields only
parse types here; ranges and combinations are checked by core (`Train.prepare`, through
`engine.job_create`), whose messages the page shows at the field they name.
"""

from __future__ import annotations

import json

from django import forms

from verticals.registry import services
from verticals.registry.models import BaseModel, DatasetVersion, ModelVersion

MAX_SEED = 2**31 - 1
CORE_FIELDS = ("dataset", "architecture", "base_model", "parent", "name", "seed")


# --- dataset uploads ----------------------------------------------------------------------


def _fraction_field(label: str) -> forms.FloatField:
    return forms.FloatField(
        label=label,
        required=False,
        widget=forms.NumberInput(
            attrs={"min": "0", "max": "0.49", "step": "0.01", "placeholder": "0.1"}
        ),
        help_text="0 to 0.5 (excluded); empty: 0.1.",
    )


class DatasetVersionForm(forms.Form):
    """A new version of a dataset: the file, and how to split it."""

    file = forms.FileField(label="File")
    seed = forms.IntegerField(
        label="Split seed",
        required=False,
        min_value=0,
        max_value=MAX_SEED,
        initial=0,
        help_text="The same file and seed always give the same split.",
    )
    validation_fraction = _fraction_field("Validation fraction")
    test_fraction = _fraction_field("Test fraction")

    def __init__(self, *args, formats: list[str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if formats:
            self.fields["file"].widget.attrs["accept"] = ",".join(formats)

    OPTIONS = ("seed", "validation_fraction", "test_fraction")

    def main_fields(self):
        return [field for field in self if field.name not in self.OPTIONS]

    def option_fields(self):
        return [field for field in self if field.name in self.OPTIONS]

    def upload_arguments(self) -> dict:
        data = self.cleaned_data
        return {
            "upload": data["file"],
            "seed": data.get("seed") or 0,
            "validation_fraction": data.get("validation_fraction"),
            "test_fraction": data.get("test_fraction"),
        }


class DatasetUploadForm(DatasetVersionForm):
    """A new dataset: its task and name come first."""

    task = forms.ChoiceField(label="Task")
    name = forms.CharField(
        label="Name",
        max_length=200,
        required=False,
        help_text="Default: the file's name. An existing name of the same task gets a new version.",
    )
    description = forms.CharField(label="Description", max_length=2000, required=False)
    field_order = [
        "task",
        "name",
        "file",
        "description",
        "seed",
        "validation_fraction",
        "test_fraction",
    ]

    def __init__(self, *args, tasks: dict, **kwargs):
        formats = sorted({f for t in tasks.values() for f in t.dataset.formats})
        super().__init__(*args, formats=formats, **kwargs)
        self.fields["task"].choices = [(name, task.title) for name, task in tasks.items()]
        self.tasks = tasks

    def upload_arguments(self) -> dict:
        data = self.cleaned_data
        return {
            **super().upload_arguments(),
            "task": data["task"],
            "name": data.get("name", ""),
            "description": data.get("description", ""),
        }


# --- the train form -----------------------------------------------------------------------


def _types(spec: dict) -> tuple[str | None, bool]:
    """(the JSON type of a property other than null, whether null is allowed)."""
    declared = spec.get("type")
    types = declared if isinstance(declared, list) else [declared] if declared else []
    nullable = "null" in types
    concrete = [t for t in types if t != "null"]
    if not concrete and "enum" in spec:
        kinds = {type(v) for v in spec["enum"] if v is not None}
        concrete = [
            "boolean"
            if kinds == {bool}
            else "integer"
            if kinds == {int}
            else "number"
            if kinds <= {int, float}
            else "string"
        ]
        nullable = nullable or None in spec["enum"]
    return (concrete[0] if concrete else None), nullable


def _words(value) -> str:
    if value is None:
        return "automatic"
    if isinstance(value, bool):
        return "on" if value else "off"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _enum_keys(values: list) -> dict[str, object]:
    """The form value of each enum member: its text, or its JSON where texts would clash ("1" and 1)."""
    plain = {v if isinstance(v, str) else json.dumps(v): v for v in values}
    return plain if len(plain) == len(values) else {json.dumps(v): v for v in values}


def _number_attrs(spec: dict, step: str) -> dict:
    attrs = {"step": step}
    low = spec.get("minimum", spec.get("exclusiveMinimum"))
    high = spec.get("maximum", spec.get("exclusiveMaximum"))
    if low is not None:
        attrs["min"] = str(low)
    if high is not None:
        attrs["max"] = str(high)
    return attrs


class SchemaField:
    """How one hyperparameter of the schema becomes a form field, and its value a param."""

    def __init__(self, name: str, spec: dict, required: bool):
        self.name = name
        self.spec = spec
        self.type, self.nullable = _types(spec)
        self.has_default = "default" in spec
        self.default = spec.get("default")
        self.required = required and not self.has_default

    def help_text(self) -> str:
        parts = [self.spec.get("description", "").strip()]
        if self.has_default and self.type != "boolean":
            default = _words(self.default)
            parts.append(
                f"Default: {default}."
                + (" Leave empty for the default." if self.default is None else "")
            )
        return " ".join(p for p in parts if p)

    def form_field(self) -> forms.Field:
        label = self.spec.get("title") or self.name.replace("_", " ").capitalize()
        common = {"label": label, "required": self.required, "help_text": self.help_text()}
        initial = self.default if self.has_default and self.default is not None else None
        if "enum" in self.spec:
            keys = _enum_keys(self.spec["enum"])
            choices = [(key, _words(v)) for key, v in keys.items() if v is not None]
            if not self.required and (self.default is None or self.nullable):
                choices.insert(
                    0,
                    (
                        "",
                        "default" if self.default is None else f"default ({_words(self.default)})",
                    ),
                )
            chosen = next(
                (key for key, v in keys.items() if v == initial and type(v) is type(initial)), ""
            )
            return forms.ChoiceField(choices=choices, initial=chosen, **common)
        if self.type == "boolean":
            return forms.BooleanField(
                initial=bool(self.default),
                label=label,
                required=False,
                help_text=common["help_text"],
            )
        if self.type == "integer":
            return forms.IntegerField(
                initial=initial,
                widget=forms.NumberInput(attrs=_number_attrs(self.spec, "1")),
                **common,
            )
        if self.type == "number":
            return forms.FloatField(
                initial=initial,
                widget=forms.NumberInput(attrs=_number_attrs(self.spec, "any")),
                **common,
            )
        if self.type in ("array", "object"):
            return forms.CharField(
                initial=json.dumps(initial) if initial is not None else "",
                widget=forms.Textarea(attrs={"rows": 2}),
                **common,
            )
        attrs = {}
        if "maxLength" in self.spec:
            attrs["maxlength"] = str(self.spec["maxLength"])
        return forms.CharField(
            initial=initial, widget=forms.TextInput(attrs=attrs), strip=True, **common
        )

    def param(self, value):
        """(include?, the value cast to the schema's type) for a cleaned form value."""
        if self.type == "boolean" and "enum" not in self.spec:
            return True, bool(value)
        if value is None or value == "":
            return False, None  # empty: core fills in the schema's default
        if "enum" in self.spec:
            return True, _enum_keys(self.spec["enum"])[value]
        if self.type in ("array", "object"):
            try:
                return True, json.loads(value)
            except json.JSONDecodeError as exc:
                raise forms.ValidationError(f"Give JSON ({exc.msg}).") from exc
        return True, value


def _dataset_choices(project, task) -> list:
    versions = (
        DatasetVersion.objects.select_related("dataset")
        .filter(dataset__project=project, dataset__task=task.name)
        .order_by("dataset__name", "-version")
    )
    groups: dict[str, list] = {}
    for version in versions:
        label = f"{version.dataset.name} v{version.version} · {version.rows} rows · {version.created_at:%Y-%m-%d}"
        groups.setdefault(version.dataset.name, []).append((version.public_id, label))
    return list(groups.items())


def fitting_base_models(task) -> list[BaseModel]:
    return [base for base in BaseModel.objects.all() if task.name in services.tasks_for_base(base)]


class TrainForm(forms.Form):
    """Core's train parameters, then the task's hyperparameters, generated from its schema."""

    dataset = forms.ChoiceField(label="Dataset version")
    architecture = forms.ChoiceField(label="Architecture", required=False)
    base_model = forms.ChoiceField(
        label="Base model",
        required=False,
        help_text="A pretrained model from the model garden to fine-tune.",
    )
    parent = forms.ChoiceField(
        label="Parent model version",
        required=False,
        help_text="A model version of this project to continue training from.",
    )
    name = forms.CharField(label="Model name", max_length=200, required=False)
    seed = forms.IntegerField(
        label="Seed",
        required=False,
        min_value=0,
        max_value=MAX_SEED,
        initial=0,
        widget=forms.NumberInput(attrs={"step": "1", "min": "0"}),
    )

    def __init__(self, *args, task, project, **kwargs):
        super().__init__(*args, **kwargs)
        self.task = task
        self.fields["dataset"].choices = _dataset_choices(project, task)
        default = task.architecture(task.default_architecture)
        self.fields["architecture"].choices = [
            (
                "",
                f"Automatic: {default.title if default else task.default_architecture}, "
                "or what the base model or parent fits",
            )
        ] + [
            (
                a.name,
                f"{a.title} ({a.name})"
                + (" — needs a base model or parent" if a.requires_base else ""),
            )
            for a in task.architectures
        ]
        self.base_models = fitting_base_models(task)
        self.fields["base_model"].choices = [("", "None: train from scratch")] + [
            (b.public_id, f"{b.title or b.name} · {b.family}") for b in self.base_models
        ]
        self.parents = list(
            ModelVersion.objects.filter(project=project, task=task.name).order_by(
                "-created_at", "-id"
            )
        )
        self.fields["parent"].choices = [("", "None")] + [
            (
                m.public_id,
                f"{m.name} v{m.version} · {m.architecture}"
                + ("" if m.predictable else " (no head yet)"),
            )
            for m in self.parents
        ]
        self.fields[
            "name"
        ].help_text = (
            f"Default: <dataset name>-{task.name}. The same name again makes the next version."
        )
        schema = task.params_schema
        required = set(schema.get("required", []))
        self.schema_fields = {
            name: SchemaField(name, spec, name in required)
            for name, spec in (schema.get("properties") or {}).items()
        }
        for name, schema_field in self.schema_fields.items():
            self.fields[name] = schema_field.form_field()

    def core_fields(self):
        return [self[name] for name in CORE_FIELDS]

    def hyper_fields(self):
        return [self[name] for name in self.schema_fields]

    def params(self) -> dict:
        """The train job's params: types cast to the schema, empty optional values left out."""
        data = self.cleaned_data
        params = {"dataset": data["dataset"], "seed": data.get("seed") or 0}
        for name in ("architecture", "base_model", "parent", "name"):
            if data.get(name):
                params[name] = data[name]
        for name, schema_field in self.schema_fields.items():
            try:
                include, value = schema_field.param(data.get(name))
            except forms.ValidationError as error:
                self.add_error(name, error)
                continue
            if include:
                params[name] = value
        return params

    def apply_core_errors(self, messages: list[str]) -> None:
        """Core's messages name the parameter first ("batch_size: …"): show each at its field."""
        for message in messages:
            field, _, rest = message.partition(": ")
            if rest and field in self.fields:
                self.add_error(field, rest)
            else:
                self.add_error(None, message)
