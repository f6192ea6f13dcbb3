"""The built-in NLP tasks pass the conformance suite every plugin runs against itself."""

from verticals.sdk.testing import TaskConformance


class TestSentimentConformance(TaskConformance):
    task_name = "sentiment"


class TestTextGenerationConformance(TaskConformance):
    task_name = "text-generation"
