"""The vision plugin: what Django's AppConfig (vision.apps.VisionConfig) names."""

from verticals.sdk import Plugin
from vision.classification import ImageClassificationTask


class VisionPlugin(Plugin):
    name = "vision"
    title = "Vision"
    description = "Image tasks: image classification, trained from scratch or fine-tuned from an imported torchvision model."
    tasks = [ImageClassificationTask]
    version = "1"
