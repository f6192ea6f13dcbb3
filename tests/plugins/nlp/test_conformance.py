"""The built-in sentiment task passes the conformance suite every plugin runs against itself."""

from verticals.sdk.testing import TaskConformance


class TestSentimentConformance(TaskConformance):
    task_name = "sentiment"
