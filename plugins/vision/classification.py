"""Image classification: one label per image, from a zip of class folders.

torch and torchvision are imported inside the methods (from vision.networks and
vision.training), never when Django loads the plugin.
"""

from __future__ import annotations

from pathlib import Path

from verticals.sdk import (
    CLASSIFICATION_OUTPUT,
    DatasetSplit,
    EncodedImage,
    Evaluation,
    InputError,
    LabelledImages,
    Task,
    TrainContext,
    classification_evaluation,
    image_input,
    label_scores,
    load_weights,
    read_config,
    rgb_image,
    safetensors_shapes,
    save_weights,
    upload_limits,
    write_config,
)
from vision.specs import ARCHITECTURES, HEADS

WEIGHTS = "model.safetensors"  # what sdk.save_weights writes
IMPORTED_IMAGE_SIZE = 224  # the input side of an imported torchvision model whose config gives none

PARAMS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "epochs": {
            "type": "integer",
            "minimum": 1,
            "maximum": 1000,
            "default": 15,
            "description": "Passes over the training images.",
        },
        "batch_size": {
            "type": "integer",
            "minimum": 2,
            "maximum": 1024,
            "default": 32,
            "description": "Images per optimization step.",
        },
        "learning_rate": {
            "type": ["number", "null"],
            "exclusiveMinimum": 0,
            "maximum": 1,
            "default": None,
            "description": "Peak AdamW learning rate (linear warm-up, then the schedule). null: the architecture's "
            "default — from scratch resnet18 1e-3, mobilenet_v3_small 3e-3, simple-cnn 3e-3; "
            "fine-tuning resnet18 3e-4, mobilenet_v3_small 1e-3, simple-cnn 1e-3.",
        },
        "schedule": {
            "enum": ["cosine", "constant"],
            "default": "cosine",
            "description": "After a 5 % warm-up: cosine decay to 0, or the peak rate throughout.",
        },
        "weight_decay": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "default": 0.01,
            "description": "AdamW weight decay (not applied to biases and normalization weights).",
        },
        "label_smoothing": {
            "type": "number",
            "minimum": 0,
            "maximum": 0.5,
            "default": 0.0,
            "description": "Cross-entropy label smoothing.",
        },
        "image_size": {
            "type": "integer",
            "minimum": 16,
            "maximum": 512,
            "default": 64,
            "description": "Side in pixels each image is resized to (training and prediction alike).",
        },
        "horizontal_flip": {
            "type": "boolean",
            "default": True,
            "description": "Augment with mirrored images (turn off for text, digits, or anything that is not "
            "symmetric left to right).",
        },
        "crop_scale": {
            "type": "number",
            "minimum": 0.05,
            "maximum": 1,
            "default": 0.6,
            "description": "Random resized crops keep between this fraction of the image's area and all of it "
            "(aspect ratio 3/4 to 4/3); 1 turns cropping off.",
        },
    },
}


class ImageClassificationTask(Task):
    """One label per image.

    Training decodes every image once, resized (bilinear) to image_size×image_size, and
    normalizes with the training set's per-channel mean and std (a base model's own when
    fine-tuning; ImageNet's for an imported torchvision model that gives none); augmentation
    (random resized crop, horizontal flip) happens in training only. config.json records
    architecture, labels, image_size, mean and std, so prediction feeds the model exactly as
    it was trained. Per-architecture learning rates and what they were measured on: specs.py.

    The model object (train's result, load's) is a `networks.ImageClassifier`: an nn.Module
    whose `network` is the plain torchvision module (its state dict is model.safetensors).
    """

    name = "image-classification"
    domain = "vision"
    title = "Image classification"
    description = (
        "Sort images into your own classes. Upload a zip with one folder of images per class (or a labels.csv of "
        "path,label next to the images); train a ResNet-18, a MobileNetV3-Small or a small CNN from scratch, or "
        "fine-tune an imported torchvision model; predictions are labels by descending score."
    )
    dataset = LabelledImages()
    architectures = ARCHITECTURES
    default_architecture = "resnet18"
    params_schema = PARAMS_SCHEMA
    tiny_params = {"epochs": 5, "batch_size": 8, "image_size": 48, "crop_scale": 1.0}
    input_schema = {
        "type": "string",
        "minLength": 1,
        "title": "Image",
        "description": "An image file (PNG, JPEG, BMP, GIF or WebP) encoded as base64, or as a data: URL "
        "(data:image/png;base64,…); at most 10 MB and 40 million pixels.",
        "contentMediaType": "image/*",
    }
    output_schema = CLASSIFICATION_OUTPUT
    metrics = ("accuracy", "macro_f1", "top3_accuracy")
    primary_metric = "accuracy"
    optimizations = ("quantize", "prune", "distill")
    meters = {"inference.requests": 1.0, "vision.images": 1.0}
    playground = "image"
    max_batch = 32

    max_image_bytes = 10 * 1024 * 1024
    max_pixels = 40_000_000
    default_top_k = 5

    # --- training and evaluation ---------------------------------------------------------

    def train(self, ctx: TrainContext):
        from vision import training  # (torch loads with a model, not with the plugin)

        return training.train(ctx)

    def evaluate(self, model, split: DatasetSplit) -> Evaluation:
        from vision.networks import probabilities  # (torch loads with a model, not with the plugin)

        # The split's labels first, then any the model predicts that the split lacks (a parent
        # version evaluated on a new dataset version): scores are reordered to match.
        labels = list(split.labels) + [label for label in model.labels if label not in split.labels]
        column = [labels.index(label) for label in model.labels]
        scores = []
        for row in probabilities(model, split.inputs) if len(split) else []:
            aligned = [0.0] * len(labels)
            for j, value in zip(column, row, strict=False):
                aligned[j] = value
            scores.append(aligned)
        predicted = [max(range(len(row)), key=row.__getitem__) for row in scores]
        return classification_evaluation(
            split.label_ids, predicted, labels, scores=scores, top_k=(3,)
        )

    # --- artifacts ------------------------------------------------------------------------

    def save(self, model, directory: Path) -> None:
        directory = Path(directory)
        save_weights(model.network.state_dict(), directory)
        write_config(directory, model.config())

    def load(self, directory: Path, *, device: str = "cpu"):
        # (torch loads with a model, not with the plugin)
        from vision.networks import IMAGENET_MEAN, IMAGENET_STD, ImageClassifier, build_network

        directory = Path(directory)
        recognized = self.recognize(directory)
        if recognized is None:
            raise ValueError(
                f"{directory} holds no image classifier this task can load "
                f"(config.json naming one of {', '.join(HEADS)}, and model.safetensors)."
            )
        architecture, labels = recognized
        if not labels:
            raise ValueError(
                f"The model in {directory} has no classifier head; fine-tune it on a dataset first."
            )
        config = read_config(directory)
        network = build_network(architecture, len(labels))
        missing, unexpected = network.load_state_dict(load_weights(directory), strict=False)
        if unexpected or any(not key.endswith("num_batches_tracked") for key in missing):
            raise ValueError(f"The weights in {directory} do not fit {architecture}.")
        size = _image_size(config)
        mean, std = config.get("mean"), config.get("std")
        if not (_floats(mean) and _floats(std) and min(std) > 0):
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        model = ImageClassifier(
            network, architecture=architecture, labels=labels, image_size=size, mean=mean, std=std
        )
        return model.to(device).eval()

    def recognize(self, directory: Path) -> tuple[str, list[str]] | None:
        """A torchvision-layout directory: config.json naming an architecture of this task, and
        model.safetensors whose tensor names and shapes (read from its header, nothing run)
        are that architecture's. Labels: config's `labels`, else "0", "1", … for each row of
        the head, else [] when the weights hold no head."""
        directory = Path(directory)
        config = read_config(directory)
        architecture = config.get("architecture")
        if not isinstance(architecture, str) or architecture not in HEADS:
            return None
        shapes = safetensors_shapes(directory / WEIGHTS)
        if shapes is None:
            return None
        # (torch loads with a model, not with the plugin)
        from vision.networks import expected_shapes, head_keys

        expected = expected_shapes(architecture)
        head_weight, head_bias = head_keys(architecture)
        for key, shape in expected.items():
            if key in (head_weight, head_bias) or (
                key.endswith("num_batches_tracked") and key not in shapes
            ):
                continue
            if shapes.get(key) != shape:
                return None
        if set(shapes) - set(expected):
            return None
        if (head_weight in shapes) != (head_bias in shapes):
            return None
        classes = 0
        if head_weight in shapes:
            weight, bias = shapes[head_weight], shapes[head_bias]
            if (
                len(weight) != 2
                or weight[1] != expected[head_weight][1]
                or bias != (weight[0],)
                or weight[0] < 1
            ):
                return None
            classes = weight[0]
            if classes > upload_limits().labels:
                # each class gets a label below: refuse before naming millions
                raise ValueError(
                    f"its head has {classes} classes; at most {upload_limits().labels}"
                )
        declared = config.get("num_classes")
        if declared is not None and declared != classes:
            return None
        labels = config.get("labels")
        if (
            isinstance(labels, list)
            and labels
            and all(isinstance(x, str) and x for x in labels)
            and len(set(labels)) == len(labels)
        ):
            return (architecture, list(labels)) if len(labels) == classes else None
        return architecture, [str(i) for i in range(classes)]

    # --- prediction -----------------------------------------------------------------------

    def decode_input(self, raw):
        return image_input(raw, max_bytes=self.max_image_bytes, max_pixels=self.max_pixels)

    def input_size(self, config: dict) -> tuple[int, int]:
        size = _image_size(config)
        return size, size

    def predict(self, model, inputs: list, *, options: dict | None = None) -> list:
        from PIL import Image

        from vision.networks import probabilities  # (torch loads with a model, not with the plugin)

        top_k = (options or {}).get("top_k", self.default_top_k)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise InputError(
                "top_k must be a positive integer (the number of labels to return per image)."
            )
        fit = (model.image_size, model.image_size)
        # Served calls bring PIL images (core decoded them in the web process, towards input_size);
        # batch_predict jobs and direct calls bring what decode_input returns, or raw inputs.
        images = [
            rgb_image(
                item if isinstance(item, (Image.Image, EncodedImage)) else self.decode_input(item),
                fit=fit,
            )
            for item in inputs
        ]
        if not images:
            return []
        return [
            label_scores(row, model.labels, top_k=top_k) for row in probabilities(model, images)
        ]

    # --- test kit -------------------------------------------------------------------------

    def example_dataset(self, directory: Path, *, rows: int = 60, seed: int = 0) -> Path:
        from vision import shapes  # (torch loads with a model, not with the plugin)

        return shapes.write_zip(Path(directory) / "shapes.zip", rows=rows, seed=seed)

    def example_inputs(self) -> list:
        from vision import shapes  # (torch loads with a model, not with the plugin)

        return shapes.example_inputs()


def _image_size(config: dict) -> int:
    """The side a model's inputs are resized to: config.json's image_size, else the imported default."""
    size = config.get("image_size")
    if isinstance(size, int) and not isinstance(size, bool) and 8 <= size <= 4096:
        return size
    return IMPORTED_IMAGE_SIZE


def _floats(value) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )
