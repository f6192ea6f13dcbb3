"""Meters: the billable units of work. Core declares the ones below; a plugin declares its own in
`Plugin.meters` and charges them from its tasks (`Task.meters`: units per predicted input).

    class SpeechPlugin(Plugin):
        meters = [Meter("speech.audio_seconds", "Audio transcribed", unit="second")]
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KEY = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


@dataclass(frozen=True)
class Meter:
    key: str  # dotted lower case, e.g. "speech.audio_seconds"
    name: str  # shown on invoices and usage pages
    unit: str = "unit"  # singular: request, token, image, second, GB-day
    description: str = ""


CORE_METERS: tuple[Meter, ...] = (
    Meter(
        "inference.requests",
        "Predictions",
        "request",
        "Inputs predicted by a served model (one per input of a call).",
    ),
    Meter(
        "textgen.tokens",
        "Generated-text tokens",
        "token",
        "Prompt and completion tokens of text generation.",
    ),
    Meter("vision.images", "Images", "image", "Images predicted by a vision model."),
    Meter(
        "training.cpu_seconds",
        "Job CPU time",
        "second",
        "CPU seconds used by train, evaluate and batch-predict jobs.",
    ),
    Meter(
        "training.gpu_seconds",
        "Job GPU time",
        "second",
        "GPU seconds used by jobs that ran on an accelerator.",
    ),
    Meter(
        "storage.gb_days",
        "Storage",
        "GB-day",
        "Datasets and model versions stored, measured once a day.",
    ),
)
