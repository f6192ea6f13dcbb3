"""The built-in image-classification task passes the conformance suite every plugin runs against itself."""

from verticals.sdk.testing import TaskConformance


class TestImageClassificationConformance(TaskConformance):
    task_name = "image-classification"
