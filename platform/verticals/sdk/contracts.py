"""The plugin contract: what a domain plugin declares, and what core hands it.

A plugin is a Django app whose AppConfig has a `plugin` attribute (a `Plugin`); the plugin
lists its `Task`s. Plugins hold ML logic only — building, training, evaluating, saving,
loading and running models over tensors and files. Persistence, tenancy, storage, jobs,
metering and HTTP belong to core, which calls the methods below.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from verticals.sdk.artifacts import MODEL_FILES
from verticals.sdk.errors import ServiceError

if TYPE_CHECKING:  # pragma: no cover
    from verticals.sdk.datasets import DatasetSchema

OPTIMIZATIONS = ("quantize", "prune", "distill", "regularize")
PLAYGROUNDS = ("text", "image", "chat")


class InputError(ServiceError, ValueError):
    """An input a caller sent cannot be used (wrong type, empty, too long, corrupt image …).

    The message is shown to the caller as it is (HTTP 400): say what to fix. `code` is the
    machine code callers read (`invalid`; ContextLengthExceeded has its own).
    """

    status = 400
    code = "invalid"


class ContextLengthExceeded(InputError):
    """A prompt (with the tokens asked for) longer than the model's context: HTTP 400 with the
    code `context_length_exceeded`, which OpenAI clients recognize."""

    code = "context_length_exceeded"


class TrainingError(Exception):
    """Training cannot go on for a reason the customer should read (diverged, too few rows …)."""


@dataclass(frozen=True)
class Architecture:
    """A named model builder of a task.

    `families` are the model families (Hugging Face `model_type`, or a torchvision
    architecture name) whose pretrained weights this architecture starts from when the
    job names a base model or a parent version; `requires_base` says it cannot start from
    scratch (e.g. fine-tuning a pretrained encoder).
    """

    name: str
    title: str
    description: str = ""
    families: tuple[str, ...] = ()
    requires_base: bool = False


@dataclass(frozen=True)
class Example:
    """One labelled record of a dataset split: `input` is a str (text) or a Path (a file)."""

    input: Any
    label: str | None
    ref: str = ""  # where it came from in the upload ("line 12", "cats/3.png")


@dataclass
class DatasetSplit:
    """The examples of one split (train, validation or test) of a dataset version."""

    name: str
    examples: list[Example]
    labels: list[str]  # every label of the dataset version, sorted: class index = position

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self):
        return iter(self.examples)

    @property
    def inputs(self) -> list:
        return [e.input for e in self.examples]

    @property
    def targets(self) -> list[str | None]:
        return [e.label for e in self.examples]

    @property
    def label_ids(self) -> list[int]:
        index: dict[str | None, int] = {label: i for i, label in enumerate(self.labels)}
        return [index[e.label] for e in self.examples]


@dataclass
class Checkpoint:
    """What `TrainContext.restore()` gives back: the step, the tensors and the JSON state saved."""

    step: int
    tensors: dict
    state: dict


@dataclass
class Evaluation:
    """Metrics of a model on a split; `report` holds task-specific tables (confusion matrix …)."""

    metrics: dict[str, float]
    report: dict = field(default_factory=dict)


class TrainContext:
    """What a task's `train()` gets. Core builds it; see verticals.registry.training."""

    task: Task
    params: dict  # hyperparameters, validated, with the schema's defaults filled in
    architecture: str  # a name from task.architectures
    labels: list[str]
    train: DatasetSplit
    validation: DatasetSplit
    test: DatasetSplit
    base: Path | None  # local directory of the base model or parent version to start from
    base_labels: list[str]  # the labels of the parent version (empty for a base model)
    device: str  # "cpu" or "cuda"
    seed: int
    scratch_dir: Path

    def report(
        self,
        step: float,
        total: float | None = None,
        metrics: dict | None = None,
        *,
        description: str = "",
    ) -> None:
        """Progress and metric points; raises (stopping training) once the job was cancelled."""
        raise NotImplementedError

    def log(self, message: str, level: str = "info") -> None:
        raise NotImplementedError

    def checkpoint(self, step: int, tensors: dict, state: dict | None = None) -> None:
        """Save tensors (a state dict, flattened optimizer state …) and JSON state; a rerun of
        the job after a lost worker gets them back from `restore()`."""
        raise NotImplementedError

    def restore(self) -> Checkpoint | None:
        raise NotImplementedError

    def count_samples(self, n: int) -> None:
        """Add `n` to the samples trained on (shown as samples/s, used by the benchmark)."""
        raise NotImplementedError


class Task:
    """One ML capability of a plugin. Subclass it, set the class attributes, implement the methods.

    Core validates every declared piece at start-up (verticals.sdk.discovery) and turns the
    task into API endpoints, job kinds (train, evaluate, batch_predict), portal pages and meters.
    """

    name: ClassVar[str] = ""  # unique across plugins, e.g. "sentiment"
    domain: ClassVar[str] = ""  # e.g. "nlp"
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    dataset: ClassVar[DatasetSchema]  # an instance from verticals.sdk.datasets (or a subclass)
    architectures: ClassVar[Sequence[Architecture]] = ()
    default_architecture: ClassVar[str] = ""
    # JSON Schema (an object) of the training hyperparameters, each with a default.
    params_schema: ClassVar[dict] = {"type": "object", "properties": {}}
    # Hyperparameters that train a tiny model in seconds (the test kit and the scaffold use them).
    tiny_params: ClassVar[dict] = {}
    # JSON Schema of ONE input as an API client sends it, and of ONE output the task answers.
    input_schema: ClassVar[dict] = {}
    output_schema: ClassVar[dict] = {}
    metrics: ClassVar[Sequence[str]] = ()
    primary_metric: ClassVar[str] = ""
    optimizations: ClassVar[Sequence[str]] = ()
    # Meters this task charges and the units per predicted input (billing reads them).
    meters: ClassVar[dict[str, float]] = {"inference.requests": 1.0}
    streams: ClassVar[bool] = False
    playground: ClassVar[str] = "text"
    max_batch: ClassVar[int] = 32  # inputs one predict call (or one predictor batch) may hold
    # The files of a model directory this task loads (patterns of names at its top, as fnmatch reads
    # them): a stored model keeps only these, and every *.safetensors among them is checked.
    model_files: ClassVar[Sequence[str]] = MODEL_FILES
    # Whether outputs name the dataset's labels: then a model without labels (an imported encoder)
    # has no head and cannot predict yet. A generation task says False.
    labelled: ClassVar[bool] = True
    # A streaming task (streams = True) declares the JSON Schema of its generation parameters
    # (max_tokens, temperature, …) and implements `engine` and `generation_request` below.
    generation_params_schema: ClassVar[dict] = {}

    # --- training and evaluation ---------------------------------------------------------

    def train(self, ctx: TrainContext) -> Any:
        """Train a model (from scratch, or from ctx.base) and return it."""
        raise NotImplementedError

    def evaluate(self, model: Any, split: DatasetSplit) -> Evaluation:
        """Metrics named in `metrics` (and a report) of `model` on `split`."""
        raise NotImplementedError

    # --- artifacts ------------------------------------------------------------------------

    def save(self, model: Any, directory: Path) -> None:
        """Write the model into an empty directory: `model.safetensors` (never a pickle), a
        `config.json`, and any tokenizer/processor files it needs to load again."""
        raise NotImplementedError

    def load(self, directory: Path, *, device: str = "cpu") -> Any:
        """Load a model saved by `save()` (or an imported one this task recognizes), ready to predict."""
        raise NotImplementedError

    def recognize(self, directory: Path) -> tuple[str, list[str]] | None:
        """For an imported directory (Hugging Face or torchvision layout, safetensors only): the
        architecture name and the labels it predicts (empty when it has no head yet), or None
        when this task cannot use it. Must not execute code from the directory."""
        return None

    # --- prediction -----------------------------------------------------------------------

    def decode_input(self, raw: Any) -> Any:
        """Turn one input as sent (validated against input_schema) into what `predict` takes;
        raise InputError with a message for anything unusable."""
        return raw

    def input_size(self, config: dict) -> tuple[int, int] | None:
        """(Image tasks.) The (width, height) a model resizes each input image to, read from the
        model's config.json (`config`); None when it looks at images at any size. Core decodes the
        images of a predict call in the web process no larger than that resize needs
        (verticals.sdk.decode_image), so that only small images travel to the inference process."""
        return None

    def predict(self, model: Any, inputs: list, *, options: dict | None = None) -> list:
        """Outputs (matching output_schema) for a batch of decoded inputs, in order."""
        raise NotImplementedError

    def engine(self, model: Any):
        """(Streaming tasks.) The loaded model's one `verticals.sdk.generation.ContinuousBatcher`,
        made at the first call and kept with the model (its `close()` stops it when the model
        leaves the cache)."""
        raise NotImplementedError

    def generation_request(self, model: Any, decoded_input: Any, options: dict):
        """(Streaming tasks.) A `GenerationRequest` for one decoded input and checked generation
        parameters; raise InputError for what cannot run, ContextLengthExceeded for a prompt
        (with the tokens asked for) longer than the model's context."""
        raise NotImplementedError

    # --- test kit -------------------------------------------------------------------------

    def example_dataset(self, directory: Path, *, rows: int = 60, seed: int = 0) -> Path:
        """Write a small labelled upload this task accepts into `directory`; return the file."""
        raise NotImplementedError

    def example_inputs(self) -> list:
        """A few inputs as an API client sends them (JSON values)."""
        raise NotImplementedError

    # --- helpers core uses ----------------------------------------------------------------

    def architecture(self, name: str) -> Architecture | None:
        return next((a for a in self.architectures if a.name == name), None)

    def architectures_for(self, family: str) -> list[Architecture]:
        return [a for a in self.architectures if family in a.families]


class Plugin:
    """A domain plugin: a name, a title and its tasks (Task subclasses or instances)."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    tasks: ClassVar[Sequence[type[Task] | Task]] = ()
    version: ClassVar[str] = "0"
    # Meters of its own (verticals.sdk.Meter) that its tasks charge, beside core's (verticals.sdk.meters).
    meters: ClassVar[Sequence] = ()
    # Set by discovery when it validates and registers the plugin.
    task_instances: list[Task]
    source: str


Predictor = Callable[[list], list]
