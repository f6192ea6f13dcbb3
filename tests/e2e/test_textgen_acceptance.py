"""Text generation's acceptance with the real SmolLM2-135M-Instruct, as an integrator does it:
the official `openai` client against a running server lists models, chats without and with
streaming, and runs a legacy completion; a fine-tune job (real Celery worker) on a small tenant
text set lowers its validation loss, and the fine-tuned version appears in /v1/models with the
base as its parent."""

import json
import time

import openai
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from tests.e2e.test_acceptance_api import shared_artifacts, wait_for_job  # noqa: F401
from tests.jobs.conftest import (  # noqa: F401
    live_worker,
    redis_broker,
    redis_worker,
    test_database_url,
    worker_factory,
)

pytestmark = [pytest.mark.slow, pytest.mark.pretrained, pytest.mark.django_db(transaction=True)]
BASE = "smollm2-135m-instruct"
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
WORKER_ENV = {
    "JOBS_HEARTBEAT_TTL": "300"
}  # a fine-tuning step of a 135 M model may hold the GIL for seconds

# A made-up house style the base model cannot know: the fine-tune has to learn it.
TICKETS = [
    (
        f"Summarise ticket {n}: the {thing} is broken.",
        f"TICKET-{n} | {thing.upper()} | status: open",
    )
    for n, thing in enumerate(
        [
            "printer",
            "laptop",
            "router",
            "badge reader",
            "monitor",
            "keyboard",
            "phone",
            "projector",
            "scanner",
            "webcam",
            "headset",
            "dock",
            "charger",
            "mouse",
            "speaker",
            "tablet",
            "server",
            "switch",
            "camera",
            "kiosk",
        ],
        start=101,
    )
]


def client_for(live_server, secret: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{live_server.url}/v1", api_key=secret, max_retries=0, timeout=300
    )


def test_smollm2_answers_through_the_openai_client(live_server, world_a):
    call_command("import_base_model", "--shipped", "--name", BASE)
    client = client_for(live_server, world_a.secret)
    assert BASE in {m.id for m in client.models.list()}

    answer = client.chat.completions.create(
        model=BASE, messages=FRANCE, max_tokens=24, temperature=0
    )
    text = answer.choices[0].message.content
    print(f"\nSmolLM2: {text!r}")
    assert "Paris" in text
    assert answer.usage.prompt_tokens > 5 and 1 <= answer.usage.completion_tokens <= 24

    started, arrivals, pieces = time.monotonic(), [], []
    for chunk in client.chat.completions.create(
        model=BASE, messages=FRANCE, max_tokens=24, temperature=0, stream=True
    ):
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
                arrivals.append(time.monotonic() - started)
    assert "".join(pieces) == text
    assert len(pieces) > 3
    assert arrivals[-1] - arrivals[0] > 0.3 * arrivals[-1], (
        arrivals
    )  # one by one, before the answer was complete

    legacy = client.completions.create(
        model=BASE, prompt="The capital of France is", max_tokens=8, temperature=0
    )
    assert legacy.choices[0].text.strip() and legacy.choices[0].finish_reason in ("stop", "length")


def test_a_fine_tune_lowers_validation_loss_and_is_served(live_server, world_a, shared_artifacts):  # noqa: F811
    call_command("import_base_model", "--shipped", "--name", BASE)
    api, project = world_a.client(), world_a.project.public_id
    rows = "".join(
        json.dumps(
            {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        )
        + "\n"
        for q, a in TICKETS
    )
    uploaded = api.post(
        f"/api/v1/projects/{project}/datasets/",
        {"file": SimpleUploadedFile("tickets.jsonl", rows.encode()), "task": "text-generation"},
        format="multipart",
    )
    assert uploaded.status_code == 201, uploaded.json()
    job = api.post(
        f"/api/v1/projects/{project}/jobs/",
        {
            "kind": "train",
            "task": "text-generation",
            "params": {
                "dataset": uploaded.json()["id"],
                "base_model": BASE,
                "method": "lora",
                "epochs": 3,
                "batch_size": 8,
                "max_length": 96,
            },
        },
        format="json",
    )
    assert job.status_code == 201, job.json()
    done = wait_for_job(api, project, job.json()["id"], timeout=1500)
    assert done["status"] == "succeeded", done["error"]
    series = dict(done["metrics"])["val_loss"]
    before, after = series[0][1], series[-1][1]
    print(
        f"\nfine-tune (LoRA, 3 epochs, {len(TICKETS)} rows): validation loss {before:.3f} -> {after:.3f}"
    )
    assert after <= before - 0.5, (
        series
    )  # the stated margin: at least 0.5 nats per answer token lower

    model_id = done["result"]["model_version"]
    cards = {m.id: m for m in client_for(live_server, world_a.secret).models.list()}
    assert model_id in cards and cards[model_id].parent == BASE and cards[model_id].root == BASE
    reply = client_for(live_server, world_a.secret).chat.completions.create(
        model=model_id,
        messages=[{"role": "user", "content": "Summarise ticket 300: the fridge is broken."}],
        max_tokens=24,
        temperature=0,
    )
    print(f"fine-tuned: {reply.choices[0].message.content!r}")
    assert reply.choices[0].message.content
