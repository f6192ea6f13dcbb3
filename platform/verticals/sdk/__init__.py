"""verticals.sdk — the contract between core and domain plugins (DESIGN §4).

Plugins import from the SDK only: the names below, and the SDK's own modules for what a plugin
needs more rarely (`verticals.sdk.ingestion`, `.datasets`, `.artifacts`, `.generation`,
`.training`):

    from verticals.sdk import Plugin, Task, Architecture, LabelledText, InputError, ...
"""

from verticals.sdk.artifacts import (
    load_weights,
    optimizer_tensors,
    read_config,
    restore_optimizer,
    safetensors_shapes,
    save_weights,
    write_config,
)
from verticals.sdk.contracts import (
    OPTIMIZATIONS,
    Architecture,
    Checkpoint,
    ContextLengthExceeded,
    DatasetSplit,
    Evaluation,
    Example,
    InputError,
    Plugin,
    Task,
    TrainContext,
    TrainingError,
)
from verticals.sdk.datasets import (
    DatasetInvalid,
    DatasetSchema,
    LabelledImages,
    LabelledText,
    Problem,
)
from verticals.sdk.ingestion import upload_limits
from verticals.sdk.inputs import (
    EncodedImage,
    decode_image,
    image_bytes,
    image_input,
    read_image,
    rgb_image,
    text_input,
)
from verticals.sdk.local import LocalTrainContext
from verticals.sdk.meters import CORE_METERS, Meter
from verticals.sdk.metrics import CLASSIFICATION_OUTPUT, classification_evaluation, label_scores
from verticals.sdk.training import (
    Epoch,
    TrainingLoop,
    auto_epochs,
    check_finite,
    epoch_generator,
    epoch_order,
    epoch_seed,
    parameter_groups,
    usable_checkpoint,
    warmup_then_decay,
)

__all__ = [
    "OPTIMIZATIONS",
    "Architecture",
    "Checkpoint",
    "ContextLengthExceeded",
    "DatasetSplit",
    "Evaluation",
    "Example",
    "InputError",
    "Plugin",
    "Task",
    "TrainContext",
    "TrainingError",
    "DatasetInvalid",
    "DatasetSchema",
    "LabelledImages",
    "LabelledText",
    "Problem",
    "CORE_METERS",
    "Meter",
    "EncodedImage",
    "decode_image",
    "image_bytes",
    "image_input",
    "read_image",
    "rgb_image",
    "text_input",
    "LocalTrainContext",
    "CLASSIFICATION_OUTPUT",
    "classification_evaluation",
    "label_scores",
    "Epoch",
    "TrainingLoop",
    "auto_epochs",
    "check_finite",
    "epoch_generator",
    "epoch_order",
    "epoch_seed",
    "parameter_groups",
    "usable_checkpoint",
    "warmup_then_decay",
    "load_weights",
    "optimizer_tensors",
    "read_config",
    "restore_optimizer",
    "safetensors_shapes",
    "save_weights",
    "upload_limits",
    "write_config",
]
