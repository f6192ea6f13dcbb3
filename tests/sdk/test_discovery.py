"""Start-up validation of plugins: every broken piece stops start-up with a message naming the
plugin and the problem; the installed plugins are found through their entry points."""

from decimal import Decimal

import pytest

from verticals.sdk import Architecture, DatasetSchema, LabelledText, Plugin, Task, discovery
from verticals.sdk.discovery import PluginError, validate_plugin


class GoodTask(Task):
    name = "toy"
    domain = "test"
    title = "Toy"
    dataset = LabelledText()
    architectures = (Architecture("linear", "Linear"),)
    default_architecture = "linear"
    params_schema = {
        "type": "object",
        "properties": {"epochs": {"type": "integer", "minimum": 1, "default": 1}},
    }
    input_schema = {"type": "string"}
    output_schema = {"type": "array"}
    metrics = ("accuracy",)
    primary_metric = "accuracy"

    def train(self, ctx): ...
    def evaluate(self, model, split): ...
    def save(self, model, directory): ...
    def load(self, directory, *, device="cpu"): ...
    def predict(self, model, inputs, *, options=None): ...
    def example_dataset(self, directory, *, rows=60, seed=0): ...
    def example_inputs(self): ...


def plugin_with(task_cls=GoodTask, plugin_name="toys", **task_attrs):
    task = type("Variant", (task_cls,), task_attrs)
    return type("ToyPlugin", (Plugin,), {"name": plugin_name, "title": "Toys", "tasks": [task]})


def test_a_good_plugin_passes():
    plugin = validate_plugin(plugin_with(), "app 'toys'")
    assert [t.name for t in plugin.task_instances] == ["toy"]


@pytest.mark.parametrize(
    "attrs,fragment",
    [
        ({"name": "Bad Name"}, "`name` must be a lower-case slug"),
        ({"title": ""}, "`title` is missing"),
        ({"dataset": "csv"}, "`dataset` must be a DatasetSchema instance"),
        ({"architectures": ()}, "`architectures` must list at least one"),
        ({"architectures": ("linear",)}, "`architectures` must list at least one"),
        ({"default_architecture": "cnn"}, "`default_architecture` 'cnn' is not one of ['linear']"),
        (
            {
                "architectures": (Architecture("ft", "Fine-tune", requires_base=True),),
                "default_architecture": "ft",
            },
            "the default must train from scratch",
        ),
        (
            {
                "params_schema": {
                    "type": "object",
                    "properties": {"epochs": {"type": "integer", "default": "one"}},
                }
            },
            "the defaults of params_schema do not match it",
        ),
        ({"params_schema": {"type": "nonsense"}}, "`params_schema` is not a valid JSON Schema"),
        (
            {
                "params_schema": {
                    "type": "object",
                    "properties": {"dataset": {"type": "string", "default": ""}},
                }
            },
            "reserves",
        ),
        ({"tiny_params": {"epochs": 0}}, "`tiny_params` do not match params_schema"),
        ({"input_schema": {}}, "`input_schema` must be a JSON Schema"),
        ({"metrics": ()}, "`metrics` must name at least one metric"),
        ({"primary_metric": "f1"}, "`primary_metric` 'f1' is not one of `metrics`"),
        ({"optimizations": ("quantize", "teleport")}, "unknown ones ['teleport']"),
        ({"meters": {"inference.requests": 0}}, "`meters` must map meter names to positive units"),
        (
            {"meters": {"inference.requests": 1 / 3}},
            "'inference.requests' charges 0.3333333333333333 units per input, which has more than 6 decimals",
        ),
        ({"playground": "hologram"}, "`playground` must be one of"),
        (
            {"dataset": type("OwnSchema", (DatasetSchema,), {})()},
            "`dataset` does not implement read(upload, files_dir)",
        ),
        ({"model_files": "config.json"}, "`model_files` must list patterns of file names"),
        (
            {"model_files": ("config.json", "weights/*.safetensors")},
            "`model_files` must list patterns of file names",
        ),
        ({"model_files": ("config.json",)}, "`model_files` must match 'model.safetensors'"),
    ],
)
def test_each_broken_piece_is_named(attrs, fragment):
    with pytest.raises(PluginError) as refused:
        validate_plugin(plugin_with(**attrs), "app 'toys'")
    message = str(refused.value)
    assert "Plugin 'toys' (app 'toys'), task '" in message and fragment in message, message


@pytest.mark.parametrize(
    "units,fragment",
    [
        (
            1 / 3,
            "'inference.requests' charges 0.3333333333333333 units per input, which has more than 6 decimals",
        ),
        (1e-7, "which has more than 6 decimals"),
        (Decimal("0.0000001"), "which has more than 6 decimals"),
        ("1", "'inference.requests' has '1' (str), give an int, float or Decimal"),
        (True, "'inference.requests' has True (bool)"),
        (float("inf"), "positive units per predicted input; 'inference.requests' has inf"),
        (float("nan"), "positive units per predicted input; 'inference.requests' has nan"),
        (
            Decimal("-0.5"),
            "positive units per predicted input; 'inference.requests' has Decimal('-0.5')",
        ),
    ],
)
def test_meter_units_must_fit_micro_units(units, fragment):
    """Usage is stored in millionths of a unit: units per input with more decimals (or not a number)
    would make every metered predict fail, so start-up refuses them, naming plugin, task and meter."""
    with pytest.raises(PluginError) as refused:
        validate_plugin(plugin_with(meters={"inference.requests": units}), "app 'toys'")
    message = str(refused.value)
    assert "Plugin 'toys' (app 'toys'), task 'toy'" in message and fragment in message, message


@pytest.mark.parametrize(
    "units", [1, 0.5, 0.000001, 2.25, Decimal("0.333333"), Decimal("0.5000000000"), 10**9]
)
def test_meter_units_with_at_most_6_decimals_pass(units):
    plugin = validate_plugin(plugin_with(meters={"inference.requests": units}), "app 'toys'")
    assert plugin.task_instances[0].meters == {"inference.requests": units}


def test_meters_are_core_s_or_declared_by_the_plugin():
    from verticals.sdk import Meter
    from verticals.sdk.discovery import register_plugin

    with pytest.raises(
        PluginError, match=r"charges meters nobody declares \['speech.audio_seconds'\]"
    ):
        validate_plugin(plugin_with(meters={"speech.audio_seconds": 1.0}), "app 'toys'")
    own = type(
        "SpeechPlugin",
        (plugin_with(meters={"speech.audio_seconds": 1.0}),),
        {"meters": [Meter("speech.audio_seconds", "Audio transcribed", unit="second")]},
    )
    assert validate_plugin(own, "app 'toys'").task_instances[0].meters == {
        "speech.audio_seconds": 1.0
    }
    for meters, fragment in (
        ([Meter("Speech", "x")], "must be dotted lower case"),
        ([Meter("textgen.tokens", "x")], "is core's"),
        (["speech.audio_seconds"], "is not a verticals.sdk.Meter"),
    ):
        with pytest.raises(PluginError, match=fragment):
            validate_plugin(type("P", (plugin_with(),), {"meters": meters}), "app 'toys'")
    first = validate_plugin(type("A", (own,), {"name": "speech-a"}), "app 'a'")
    second = validate_plugin(type("B", (own,), {"name": "speech-b"}), "app 'b'")
    second.task_instances[0].name = "toy-b"
    from verticals.sdk import discovery

    saved = (dict(discovery._plugins), dict(discovery._tasks), dict(discovery._task_plugin))
    try:
        register_plugin(first, "app 'a'")
        assert discovery.meters()["speech.audio_seconds"][1] == "speech-a"
        with pytest.raises(
            PluginError,
            match="Meter 'speech.audio_seconds' is declared twice: by plugin 'speech-a'",
        ):
            register_plugin(second, "app 'b'")
    finally:
        for registry, before in zip(
            (discovery._plugins, discovery._tasks, discovery._task_plugin), saved, strict=True
        ):
            registry.clear()
            registry.update(before)


@pytest.mark.django_db
def test_the_meter_catalog_follows_the_code():
    from verticals.billing.catalog import sync_meters
    from verticals.billing.models import Meter as MeterRow

    MeterRow.objects.filter(key="vision.images").update(name="stale")
    sync_meters()
    assert MeterRow.objects.get(key="vision.images").name == "Images"
    assert set(MeterRow.objects.values_list("key", flat=True)) >= {
        "inference.requests",
        "textgen.tokens",
        "vision.images",
        "training.cpu_seconds",
        "training.gpu_seconds",
        "storage.gb_days",
    }


def test_a_missing_method_is_named():
    class Lazy(Task):
        name, domain, title = "lazy", "test", "Lazy"
        dataset = LabelledText()
        architectures = (Architecture("linear", "Linear"),)
        default_architecture = "linear"
        input_schema, output_schema = {"type": "string"}, {"type": "array"}
        metrics, primary_metric = ("accuracy",), "accuracy"

        def train(self, ctx): ...

    with pytest.raises(
        PluginError,
        match="does not implement evaluate, save, load, predict, example_dataset, example_inputs",
    ):
        validate_plugin(plugin_with(Lazy), "app 'toys'")


def test_wrong_types_and_duplicates_are_refused(monkeypatch):
    with pytest.raises(PluginError, match="is not a verticals.sdk.Plugin subclass"):
        validate_plugin(object, "app 'x'")
    not_a_task = type("P", (Plugin,), {"name": "p", "tasks": [object]})
    with pytest.raises(PluginError, match="is not a verticals.sdk.Task subclass"):
        validate_plugin(not_a_task, "app 'x'")
    empty = type("P", (Plugin,), {"name": "p", "tasks": []})
    with pytest.raises(PluginError, match="declares no tasks"):
        validate_plugin(empty, "app 'x'")
    twice = type("P", (Plugin,), {"name": "p", "tasks": [GoodTask, GoodTask]})
    with pytest.raises(PluginError, match="declares the task 'toy' twice"):
        validate_plugin(twice, "app 'x'")
    # A task name another installed plugin already declared: both places are named.
    monkeypatch.setattr(discovery, "_tasks", dict(discovery._tasks))
    monkeypatch.setattr(discovery, "_task_plugin", dict(discovery._task_plugin))
    monkeypatch.setattr(discovery, "_plugins", dict(discovery._plugins))
    clash = validate_plugin(plugin_with(plugin_name="other", name="sentiment"), "app 'other'")
    with pytest.raises(
        PluginError,
        match=r"Task 'sentiment' is declared twice: by plugin 'nlp' \(app 'nlp'\) and by plugin 'other' \(app 'other'\)",
    ):
        discovery.register_plugin(clash, "app 'other'")


def test_the_built_in_plugins_come_from_entry_points():
    assert {"nlp.apps.NlpConfig", "vision.apps.VisionConfig"} <= set(discovery.plugin_app_paths())
    assert {"sentiment", "image-classification"} <= set(discovery.tasks())
    assert discovery.plugin_of("sentiment").name == "nlp"


def test_disabled_tasks_are_not_enabled(settings):
    settings.PLUGINS_DISABLED_TASKS = ["image-classification"]
    assert "image-classification" not in discovery.enabled_tasks()
    assert "image-classification" in discovery.tasks()


def test_a_broken_plugin_stops_start_up(tmp_path):
    """A real start-up (a fresh process) with a plugin package that breaks the contract."""
    import os
    import subprocess
    import sys
    import textwrap

    package = tmp_path / "brokenplugin"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "apps.py").write_text(
        textwrap.dedent("""
        from django.apps import AppConfig

        class BrokenConfig(AppConfig):
            name = "brokenplugin"
            plugin = "brokenplugin.plugin.BrokenPlugin"
    """)
    )
    (package / "plugin.py").write_text(
        textwrap.dedent("""
        from verticals.sdk import Plugin, Task

        class Half(Task):
            name = "half"

        class BrokenPlugin(Plugin):
            name = "broken"
            tasks = [Half]
    """)
    )
    dist = tmp_path / "brokenplugin-0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplugin\nVersion: 0\n")
    (dist / "entry_points.txt").write_text(
        "[verticals.plugins]\nbroken = brokenplugin.apps.BrokenConfig\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "VERTICALS_VAR_DIR": str(tmp_path / "var")}
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "manage.py", "check"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode != 0
    assert "Plugin 'broken' (app 'brokenplugin'), task 'half': `domain` is missing." in done.stderr
