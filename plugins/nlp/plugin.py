"""The NLP plugin: its tasks (torch is imported only when a task trains, loads or predicts)."""

from __future__ import annotations

from nlp.sentiment import SentimentTask
from nlp.textgen import TextGenerationTask
from verticals.sdk import Plugin


class NlpPlugin(Plugin):
    name = "nlp"
    title = "Natural language"
    description = (
        "Text tasks: sentiment analysis, trained from scratch or fine-tuned from a pretrained BERT model; "
        "text generation (chat and completion), trained from scratch or fine-tuned from a pretrained causal "
        "language model such as SmolLM2, fully or with LoRA."
    )
    tasks = [SentimentTask, TextGenerationTask]
    version = "2"
