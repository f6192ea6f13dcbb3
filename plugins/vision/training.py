"""The training loop of image classification (torch; imported lazily by the task)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from verticals.sdk import (
    TrainContext,
    TrainingError,
    TrainingLoop,
    load_weights,
    parameter_groups,
    read_config,
    usable_checkpoint,
)
from vision.networks import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageClassifier,
    augment,
    build_network,
    channel_stats,
    head_keys,
    open_rgb,
    to_pixels,
)
from vision.specs import LEARNING_RATES

# Decoded training images are kept in memory as uint8 up to this size; past it they are
# decoded again for every batch.
PRELOAD_BYTES = 2 * 1024**3
EVAL_BATCH = 64
RECALIBRATION_IMAGES = 2048


class ImageStore:
    """The images of a split, resized once to size×size (uint8), fetched by index."""

    def __init__(self, inputs, size: int, *, preload_bytes: int = PRELOAD_BYTES, progress=None):
        self.inputs = list(inputs)
        self.size = size
        self.pixels = None
        if self.inputs and len(self.inputs) * 3 * size * size <= preload_bytes:
            decoded = []
            for i in range(len(self.inputs)):
                decoded.append(self._decode(i))
                if progress is not None and (i + 1) % 1000 == 0:
                    progress(i + 1, len(self.inputs))
            self.pixels = torch.stack(decoded)

    def __len__(self) -> int:
        return len(self.inputs)

    def _decode(self, i: int) -> torch.Tensor:
        item = self.inputs[i]
        if isinstance(item, Image.Image):
            return to_pixels(item, self.size)
        try:
            return to_pixels(open_rgb(Path(item), self.size), self.size)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise TrainingError(
                f"The image {Path(item).name} of the dataset cannot be read ({exc})."
            ) from exc

    def get(self, indices) -> torch.Tensor:
        if self.pixels is not None:
            return self.pixels[torch.as_tensor(indices, dtype=torch.long)]
        return torch.stack([self._decode(int(i)) for i in indices])

    def batches(self, batch_size: int = EVAL_BATCH):
        for start in range(0, len(self), batch_size):
            yield self.get(list(range(start, min(start + batch_size, len(self)))))


def split_batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Consecutive chunks of `order`; a last chunk of one image joins the one before it
    (batch norm cannot train on a batch of one)."""
    chunks = list(torch.split(order, batch_size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2] = torch.cat([chunks[-2], chunks.pop()])
    return chunks


def learning_rate_at(step: int, total: int, peak: float, schedule: str) -> float:
    """Linear warm-up over the first 5 % of the steps (at least one), then cosine decay to 0
    ("cosine") or the peak rate throughout ("constant")."""
    warmup = max(1, round(total * 0.05))
    if step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "constant":
        return peak
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def train(ctx: TrainContext) -> ImageClassifier:
    params = ctx.params
    architecture = ctx.architecture
    if architecture not in LEARNING_RATES:
        raise TrainingError(
            f"Unknown architecture {architecture!r}; choose one of {', '.join(LEARNING_RATES)}."
        )
    labels = list(ctx.labels)
    if len(ctx.train) < 2:
        raise TrainingError(
            f"The training split holds {len(ctx.train)} image(s); training needs at least 2."
        )
    if len(labels) < 2:
        raise TrainingError("The dataset has fewer than 2 labels; a classifier needs at least 2.")
    device = torch.device(ctx.device)
    size = int(params["image_size"])
    epochs = int(params["epochs"])

    ctx.log(
        f"Decoding {len(ctx.train)} training and {len(ctx.validation)} validation images at {size}×{size} pixels."
    )

    def decoding(
        done: int, count: int
    ) -> None:  # long decodes show progress (and can be cancelled)
        ctx.report(0, None, description=f"decoding images: {done} of {count}")

    train_images = ImageStore(ctx.train.inputs, size, progress=decoding)
    val_images = ImageStore(ctx.validation.inputs, size, progress=decoding)
    train_targets = _targets(ctx.train, labels)
    val_targets = _targets(ctx.validation, labels)

    torch.manual_seed(ctx.seed)
    network = build_network(architecture, len(labels))
    if ctx.base is not None:
        mean, std = _start_from_base(ctx, network, architecture, labels)
        peak = params["learning_rate"] or LEARNING_RATES[architecture]["finetune"]
    else:
        mean, std = channel_stats(train_images.batches())
        peak = params["learning_rate"] or LEARNING_RATES[architecture]["scratch"]
    model = ImageClassifier(
        network, architecture=architecture, labels=labels, image_size=size, mean=mean, std=std
    ).to(device)
    optimizer = _optimizer(model, peak, params["weight_decay"])
    loss_fn = nn.CrossEntropyLoss(label_smoothing=float(params["label_smoothing"]))

    batch_size = int(params["batch_size"])
    steps_per_epoch = len(split_batches(torch.arange(len(train_images)), batch_size))
    total = epochs * steps_per_epoch
    loop = TrainingLoop(
        ctx,
        optimizer,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        learning_rate=peak,
        schedule=lambda step: learning_rate_at(step, total, peak, params["schedule"]),
        optimizer_prefix="optimizer.",
        epoch_seeds=epoch_seeds,
        step_description="",
        epoch_description="epoch {epoch} of {epochs}",
    )
    _resume(ctx, loop, model)
    ctx.log(
        f"Training {architecture} on {len(train_images)} images, {len(labels)} labels: {epochs} epochs of "
        f"{steps_per_epoch} steps, peak learning rate {peak:g}, normalization mean {model.mean} std {model.std}."
    )

    flip = bool(params["horizontal_flip"])
    min_scale = float(params["crop_scale"])
    for epoch in loop.epochs():
        model.train()
        for indices in split_batches(epoch.order(len(train_images)), batch_size):
            inputs = model.normalize(train_images.get(indices))
            inputs = augment(inputs, epoch.generator, min_scale=min_scale, flip=flip)
            loop.step(
                loss_fn(model(inputs), train_targets[indices].to(device)), samples=len(indices)
            )
        metrics = {}
        if len(val_images):
            val_loss, val_accuracy = validation_metrics(model, val_images, val_targets)
            metrics = {"val_loss": val_loss, "val_accuracy": val_accuracy}
        loop.end_epoch(
            metrics,
            weights=model.network.state_dict(),
            state={
                "architecture": architecture,
                "labels": labels,
                "image_size": size,
                "mean": model.mean,
                "std": model.std,
            },
        )
    recalibrate_batch_norm(model, train_images, batch_size, seed=ctx.seed)
    model.eval()
    return model


def recalibrate_batch_norm(
    model: ImageClassifier, images: ImageStore, batch_size: int, *, seed: int
) -> None:
    """Set every batch-norm layer's running mean and variance to those of the final weights
    over (up to RECALIBRATION_IMAGES of) the training images, without augmentation.

    During training the running statistics are a moving average over weights that kept
    changing; on short runs they lag far behind, and the model in eval mode can answer at
    chance although training converged (torchvision's MobileNetV3, whose momentum is 0.01,
    showed exactly that). Recomputing them costs one forward pass and fixes it for every
    architecture."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not layers:
        return
    model.eval()
    saved = []
    for layer in layers:
        saved.append(layer.momentum)
        layer.reset_running_stats()
        layer.momentum = None  # a cumulative average over every batch seen
        layer.train()
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[
        :RECALIBRATION_IMAGES
    ]
    with torch.no_grad():
        for indices in split_batches(order, batch_size):
            model(model.normalize(images.get(indices)))
    for layer, momentum in zip(layers, saved, strict=False):
        layer.momentum = momentum
    model.eval()


def _targets(split, labels: list[str]) -> torch.Tensor:
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({e.label for e in split.examples if e.label not in index})
    if unknown:
        raise TrainingError(
            f"The {split.name} split has labels the training split lacks: {', '.join(unknown[:5])}."
        )
    return torch.tensor([index[e.label] for e in split.examples], dtype=torch.long)


def validation_metrics(
    model: ImageClassifier, images: ImageStore, targets: torch.Tensor
) -> tuple[float, float]:
    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.inference_mode():
        for start, pixels in zip(
            range(0, len(images), EVAL_BATCH), images.batches(EVAL_BATCH), strict=False
        ):
            logits = model(model.normalize(pixels)).float().cpu()
            batch_targets = targets[start : start + len(pixels)]
            loss_sum += float(nn.functional.cross_entropy(logits, batch_targets, reduction="sum"))
            correct += int((logits.argmax(dim=1) == batch_targets).sum())
    return loss_sum / len(images), correct / len(images)


def epoch_seeds(seed: int, epoch: int) -> tuple[int, int]:
    """Every random draw of an epoch (its shuffle, its augmentation, dropout) comes from a seed of
    (run seed, epoch): a rerun resumed from a checkpoint continues exactly as the uninterrupted run
    would have."""
    return seed * 100_003 + epoch, seed * 100_003 + epoch


def _optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and normalization weights (1-dimensional tensors). The
    fused implementation: on CPU its step takes a sixth of the default's time (resnet18:
    8 ms instead of 56 ms, a sixth of a 32-pixel training step)."""
    return torch.optim.AdamW(
        parameter_groups(model, weight_decay, no_decay_names=()), lr=lr, fused=True
    )


def _resume(ctx: TrainContext, loop: TrainingLoop, model: ImageClassifier) -> None:
    """Continue from the job's last checkpoint, if it was made for this architecture, label set
    and image size."""
    checkpoint = usable_checkpoint(
        ctx,
        {
            "architecture": model.architecture,
            "labels": model.labels,
            "image_size": model.image_size,
        },
        warning="The checkpoint found was made for another architecture, label set or image size; starting over.",
    )
    if checkpoint is None:
        return
    model.mean, model.std = list(checkpoint.state["mean"]), list(checkpoint.state["std"])
    loop.resume(checkpoint, lambda weights: model.network.load_state_dict(weights, strict=True))


def _start_from_base(
    ctx: TrainContext, network: nn.Module, architecture: str, labels: list[str]
) -> tuple[list, list]:
    """Load the base model's (or parent version's) weights into `network`; keep the rows of the
    head for labels the base also predicts, start the others fresh. Returns mean and std."""
    from vision.classification import ImageClassificationTask  # the directory checks live there

    directory = Path(ctx.base)
    recognized = ImageClassificationTask().recognize(directory)
    if recognized is None:
        raise TrainingError(
            "The base model is not a torchvision-layout image classifier this task can use "
            "(config.json naming a known architecture, and model.safetensors with its weights)."
        )
    base_architecture, _ = recognized
    if base_architecture != architecture:
        raise TrainingError(
            f"The base model is a {base_architecture}; it cannot start a {architecture}. "
            f"Choose the architecture {base_architecture}."
        )
    config = read_config(directory)
    weights = load_weights(directory)
    # The labels the base's head predicts, by name: the parent version's, or the config's. An
    # imported model without names ("0", "1", … from recognize()) shares no label with the
    # dataset, even one whose labels are digits: its head is replaced whole.
    named = config.get("labels")
    base_labels = list(ctx.base_labels) or (list(named) if isinstance(named, list) else [])
    head_weight, head_bias = head_keys(architecture)
    own = network.state_dict()
    body = {key: value for key, value in weights.items() if key not in (head_weight, head_bias)}
    missing, unexpected = network.load_state_dict(body, strict=False)
    missing = [
        key
        for key in missing
        if key not in (head_weight, head_bias) and not key.endswith("num_batches_tracked")
    ]
    if missing or unexpected:
        raise TrainingError(
            f"The base model's weights do not fit {architecture}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}."
        )
    if head_weight in weights and head_bias in weights:
        if list(base_labels) == labels and weights[head_weight].shape == own[head_weight].shape:
            network.load_state_dict(
                {head_weight: weights[head_weight], head_bias: weights[head_bias]}, strict=False
            )
        else:
            shared = [
                (labels.index(label), i)
                for i, label in enumerate(base_labels)
                if label in labels and i < weights[head_weight].shape[0]
            ]
            if shared:
                new_weight, new_bias = own[head_weight].clone(), own[head_bias].clone()
                for new_row, old_row in shared:
                    new_weight[new_row] = weights[head_weight][old_row]
                    new_bias[new_row] = weights[head_bias][old_row]
                network.load_state_dict(
                    {head_weight: new_weight, head_bias: new_bias}, strict=False
                )
            ctx.log(
                f"The base model predicts other labels: the classifier head was replaced "
                f"({len(shared)} of {len(labels)} labels carried over)."
            )
    else:
        ctx.log("The base model has no classifier head: training a new one.")
    mean, std = config.get("mean"), config.get("std")
    if _is_triple(mean) and _is_triple(std) and min(std) > 0:
        return [float(v) for v in mean], [float(v) for v in std]
    ctx.log(
        "The base model's config gives no mean/std: normalizing with torchvision's ImageNet statistics."
    )
    return list(IMAGENET_MEAN), list(IMAGENET_STD)


def _is_triple(value) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 3
        and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in value
        )
    )
