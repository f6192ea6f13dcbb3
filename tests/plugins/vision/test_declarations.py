"""What the vision plugin and its task declare: attributes, schemas, the example dataset, imports."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema

from tests.plugins.vision.helpers import ingest
from verticals.sdk import CLASSIFICATION_OUTPUT, OPTIMIZATIONS, LabelledImages, Plugin, Task
from verticals.sdk.params import problems, with_defaults
from vision.classification import ImageClassificationTask
from vision.plugin import VisionPlugin


def test_plugin():
    assert issubclass(VisionPlugin, Plugin)
    assert VisionPlugin.name == "vision" and VisionPlugin.title and VisionPlugin.description
    assert list(VisionPlugin.tasks) == [ImageClassificationTask]


def test_task_declarations(task):
    assert isinstance(task, Task)
    assert (task.name, task.domain, task.playground, task.primary_metric) == (
        "image-classification",
        "vision",
        "image",
        "accuracy",
    )
    assert task.title and task.description
    assert isinstance(task.dataset, LabelledImages)
    assert task.output_schema == CLASSIFICATION_OUTPUT
    assert tuple(task.metrics) == ("accuracy", "macro_f1", "top3_accuracy")
    assert set(task.optimizations) <= set(OPTIMIZATIONS)
    assert task.meters == {"inference.requests": 1.0, "vision.images": 1.0}
    assert 1 <= task.max_batch <= 64
    jsonschema.Draft202012Validator.check_schema(task.input_schema)
    assert task.input_schema["type"] == "string"


def test_architectures(task):
    names = [a.name for a in task.architectures]
    assert {"resnet18", "mobilenet_v3_small", "simple-cnn"} <= set(names) and len(names) == len(
        set(names)
    )
    assert task.default_architecture == "resnet18"
    for architecture in task.architectures:
        assert architecture.title and architecture.families == (architecture.name,)
        assert task.architectures_for(architecture.name) == [architecture]
        assert not architecture.requires_base


def test_params_schema(task):
    schema = task.params_schema
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert all("default" in spec for spec in schema["properties"].values())
    defaults = with_defaults(schema, {})
    assert problems(schema, defaults) == []
    assert defaults["learning_rate"] is None and defaults["horizontal_flip"] is True
    assert problems(schema, task.tiny_params) == []
    assert (
        problems(schema, {"epochs": 0})
        and problems(schema, {"learning_rate": 0})
        and problems(schema, {"nope": 1})
    )
    assert problems(schema, {"image_size": 32, "epochs": 6, "horizontal_flip": False}) == []


def test_example_dataset(task, tmp_path):
    upload = task.example_dataset(tmp_path / "a", rows=30, seed=3)
    assert upload.suffix == ".zip" and upload.parent == tmp_path / "a"
    with zipfile.ZipFile(upload) as archive:
        names = archive.namelist()
    assert len(names) == 30 and {name.split("/")[0] for name in names} == {
        "circle",
        "square",
        "triangle",
    }
    examples = ingest(upload, tmp_path / "files")
    assert len(examples) == 30 and all(e.input.is_file() for e in examples)
    again = task.example_dataset(tmp_path / "b", rows=30, seed=3)
    assert again.read_bytes() == upload.read_bytes()  # seeded
    assert task.example_dataset(tmp_path / "c", rows=30, seed=4).read_bytes() != upload.read_bytes()
    assert len(ingest(task.example_dataset(tmp_path / "d"), tmp_path / "d-files")) == 60


def test_importing_the_plugin_does_not_import_torch():
    code = (
        "import sys, vision.plugin, vision.classification; "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'numpy', 'PIL')); "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_plugin_imports_only_the_sdk_from_the_platform():
    import vision

    package = Path(vision.__file__).parent
    for source in package.glob("*.py"):
        text = source.read_text()
        assert "django" not in text.replace("Django", "").lower() or source.name == "apps.py", (
            source.name
        )
        for line in text.splitlines():
            if line.lstrip().startswith(("import verticals", "from verticals")):
                assert line.lstrip().startswith(
                    ("from verticals.sdk import", "from verticals.sdk ")
                ), (source.name, line)
