"""The torch side of image classification: networks, preprocessing and the model object.

Imported lazily (by the task's methods), never when Django loads the plugin: importing torch
and torchvision costs seconds and memory the web process does not need.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from verticals.sdk import decode_image
from vision.specs import HEADS

# What torchvision's ImageNet weights were trained with: the normalization of an imported
# torchvision model whose config.json does not give its own.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SimpleCNN(nn.Module):
    """Three conv-BN-ReLU blocks and a linear head: trains in seconds, for tests and tiny data."""

    def __init__(self, num_classes: int, width: int = 32):
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]

        self.features = nn.Sequential(
            *block(3, width),
            nn.MaxPool2d(2),
            *block(width, width * 2),
            nn.MaxPool2d(2),
            *block(width * 2, width * 4),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(width * 4, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


def build_network(architecture: str, num_classes: int) -> nn.Module:
    """A freshly initialised network (no downloaded weights, ever)."""
    from torchvision import models

    if architecture == "resnet18":
        # zero_init_residual: each residual block starts as the identity, which trains faster
        # from scratch; the state dict keys are torchvision's either way.
        return models.resnet18(weights=None, num_classes=num_classes, zero_init_residual=True)
    if architecture == "mobilenet_v3_small":
        network = models.mobilenet_v3_small(weights=None, num_classes=num_classes)
        # torchvision's MobileNetV3 uses batch-norm momentum 0.01 (tuned for ImageNet's ~10^6
        # steps). On a few hundred steps the running statistics stay near their initial
        # values, and the model in eval mode answers at chance although training converged.
        for module in network.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = 0.1
        return network
    if architecture == "simple-cnn":
        return SimpleCNN(num_classes)
    raise ValueError(f"unknown architecture {architecture!r}")


def head_keys(architecture: str) -> tuple[str, str]:
    prefix = HEADS[architecture]
    return f"{prefix}.weight", f"{prefix}.bias"


def expected_shapes(architecture: str) -> dict[str, tuple[int, ...]]:
    """The state dict keys and shapes of an architecture (built on the meta device: no memory)."""
    with torch.device("meta"):
        network = build_network(architecture, 2)
    return {key: tuple(value.shape) for key, value in network.state_dict().items()}


class ImageClassifier(nn.Module):
    """What train() returns and load() gives back: the network and how to feed it.

    `network` is a plain torchvision (or SimpleCNN) module whose state dict is what
    model.safetensors holds; the rest is config.json.
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        architecture: str,
        labels: Sequence[str],
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
    ):
        super().__init__()
        self.network = network
        self.architecture = architecture
        self.labels = list(labels)
        self.image_size = int(image_size)
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]

    def forward(self, pixel_values):
        return self.network(pixel_values)

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def config(self) -> dict:
        return {
            "architecture": self.architecture,
            "labels": self.labels,
            "num_classes": len(self.labels),
            "image_size": self.image_size,
            "mean": self.mean,
            "std": self.std,
            "resize": "bilinear",
        }

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 [N, 3, H, W] -> normalized float32 on the model's device."""
        return normalize(pixels.to(self.device), self.mean, self.std)


def open_rgb(path: Path, size: int) -> Image.Image:
    """An image file as RGB, decoded towards size×size exactly as a served image is (the SDK's
    decode_image), so that training, evaluation and predictions see the same pixels."""
    return decode_image(path, fit=(size, size))


def to_pixels(image: Image.Image, size: int) -> torch.Tensor:
    """A PIL image resized to size×size (bilinear, antialiased) as uint8 [3, size, size]."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def normalize(pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=torch.float32, device=pixels.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=pixels.device).view(1, -1, 1, 1)
    return (pixels.to(torch.float32) / 255.0 - m) / s


def channel_stats(batches) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (over all pixels) of uint8 [N, 3, H, W] batches, in [0, 1] units."""
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    count = 0
    for pixels in batches:
        values = pixels.to(torch.float64) / 255.0
        total += values.sum(dim=(0, 2, 3))
        squares += (values * values).sum(dim=(0, 2, 3))
        count += values.shape[0] * values.shape[2] * values.shape[3]
    if not count:
        return list(IMAGENET_MEAN), list(IMAGENET_STD)
    mean = total / count
    # a flat channel must not divide by 0
    std = (squares / count - mean * mean).clamp(min=0).sqrt().clamp(min=1e-2)
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


def augment(
    x: torch.Tensor, generator: torch.Generator, *, min_scale: float, flip: bool
) -> torch.Tensor:
    """Random resized crop (area in [min_scale, 1], aspect ratio in [3/4, 4/3]) and horizontal
    flip of a batch, in one bilinear resampling; every draw comes from `generator`."""
    n = x.shape[0]
    if min_scale >= 1.0 and not flip:
        return x
    draws = torch.rand(n, 4, generator=generator)  # area, ratio, x position, y position
    if min_scale < 1.0:
        area = min_scale + (1.0 - min_scale) * draws[:, 0]
        log_ratio = (draws[:, 1] * 2.0 - 1.0) * float(np.log(4.0 / 3.0))
        ratio = torch.exp(log_ratio)
        sx = torch.sqrt(area * ratio).clamp(max=1.0)  # crop width / image width
        sy = torch.sqrt(area / ratio).clamp(max=1.0)
    else:
        sx = torch.ones(n)
        sy = torch.ones(n)
    cx = (draws[:, 2] * 2.0 - 1.0) * (1.0 - sx)  # crop centre, in [-1, 1] coordinates
    cy = (draws[:, 3] * 2.0 - 1.0) * (1.0 - sy)
    sign = torch.ones(n)
    if flip:
        sign = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = sx * sign
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = sy
    theta[:, 1, 2] = cy
    theta = theta.to(x.device)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(
        x, grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )


PREDICT_BATCH = 64


def probabilities(model: ImageClassifier, images) -> list[list[float]]:
    """Softmax scores of each image (a PIL image or an image file's path), in order.

    Images go through the network PREDICT_BATCH at a time, so the same images always meet
    the same arithmetic: a loaded model reproduces the saved one's scores exactly."""
    model.eval()
    rows: list[list[float]] = []
    with torch.inference_mode():
        for start in range(0, len(images), PREDICT_BATCH):
            chunk = [
                item if isinstance(item, Image.Image) else open_rgb(Path(item), model.image_size)
                for item in images[start : start + PREDICT_BATCH]
            ]
            pixels = torch.stack([to_pixels(image, model.image_size) for image in chunk])
            logits = model(model.normalize(pixels)).float()
            rows.extend(torch.softmax(logits, dim=1).cpu().tolist())
    return rows
