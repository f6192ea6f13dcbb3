"""What the vision tasks declare about their architectures, without importing torch."""

from __future__ import annotations

from verticals.sdk import Architecture

ARCHITECTURES = (
    Architecture(
        name="resnet18",
        title="ResNet-18",
        description="torchvision's ResNet-18 (11 M parameters). The default: learns from scratch on a few hundred "
        "images and fine-tunes from an imported torchvision resnet18.",
        families=("resnet18",),
    ),
    Architecture(
        name="mobilenet_v3_small",
        title="MobileNetV3 Small",
        description="torchvision's MobileNetV3-Small (1.5 M parameters): a fast, small model for CPU serving; "
        "fine-tunes from an imported torchvision mobilenet_v3_small.",
        families=("mobilenet_v3_small",),
    ),
    Architecture(
        name="simple-cnn",
        title="Simple CNN",
        description="Three convolution blocks and a linear head (0.1 M parameters): trains in seconds, for small "
        "or simple images and quick trials.",
        families=("simple-cnn",),
    ),
)

# The classifier head of each architecture (a prefix of the state dict keys): replaced when a
# base model or parent version predicts other labels.
HEADS = {"resnet18": "fc", "mobilenet_v3_small": "classifier.3", "simple-cnn": "head"}

# Peak learning rates used when the job leaves `learning_rate` null; all with AdamW (fused),
# weight decay 0.01 (none on biases and norms), 5 % linear warm-up then cosine decay, and
# batch-norm statistics recomputed over the training images after the last epoch (see
# training.recalibrate_batch_norm). Measured on 2 CPU cores, from scratch:
#  - resnet18, 1e-3: sklearn digits at 32 px, 5 epochs, no flips: 0.983-0.994 held out over
#    three splits (about 63 s); 180 drawn shapes at 64 px: 0.967 after 15 epochs (0.883 after
#    10; 3e-3 gave 0.933 after 10).
#  - mobilenet_v3_small, 3e-3 (180 shapes, 64 px, 15 epochs: 1e-3 0.90, 3e-3 0.983, 1e-2
#    0.967). It also needs batch-norm momentum 0.1 instead of torchvision's 0.01 (set in
#    networks.build_network): with 0.01 it answered at chance (0.333) in eval mode although
#    its training loss had fallen to 0.05.
#  - simple-cnn, 3e-3: 1.0 on the 180 shapes after 10 epochs.
# Fine-tuning rates (a third of the from-scratch ones, so pretrained features are not washed
# out) follow common practice; no pretrained weights could be measured offline.
LEARNING_RATES = {
    "resnet18": {"scratch": 1e-3, "finetune": 3e-4},
    "mobilenet_v3_small": {"scratch": 3e-3, "finetune": 1e-3},
    "simple-cnn": {"scratch": 3e-3, "finetune": 1e-3},
}
