"""Text generation through the predict endpoint: whole answers, server-sent event streams,
refusals with a message, and the usage each call records for billing."""

import json

import pytest

from tests.conftest import ledger
from tests.registry.factories import make_model_version

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.rls,
]  # streams are consumed here, after the view: they set their own scope


@pytest.fixture
def generator_model(world_a):
    return make_model_version(world_a, "text-generation", name="tiny-chat")


def predict_url(world, model):
    return f"/api/v1/projects/{world.project.public_id}/models/{model.public_id}/predict"


def events_of(response) -> list[dict]:
    assert response["Content-Type"].startswith("text/event-stream")
    body = b"".join(response.streaming_content).decode()
    return [
        json.loads(block[len("data: ") :])
        for block in body.split("\n\n")
        if block.startswith("data: ")
    ]


def usage_rows(world):
    return ledger(world.tenant)


def test_predict_answers_whole_texts_and_records_usage(world_a, generator_model):
    client = world_a.client()
    one = client.post(
        predict_url(world_a, generator_model),
        {"inputs": "English: bread\nFrench:", "parameters": {"max_tokens": 12, "temperature": 0}},
        format="json",
    )
    assert one.status_code == 200, one.json()
    body = one.json()
    assert set(body) == {"generated_text", "finish_reason", "usage"} and isinstance(
        body["generated_text"], str
    )
    assert (
        body["finish_reason"] in ("stop", "length")
        and 1 <= body["usage"]["completion_tokens"] <= 12
    )

    many = client.post(
        predict_url(world_a, generator_model),
        {
            "inputs": [
                "English: bread\nFrench:",
                {"messages": [{"role": "user", "content": "What is the capital of Italy?"}]},
            ],
            "parameters": {"max_tokens": 8, "temperature": 0},
        },
        format="json",
    )
    assert many.status_code == 200, many.json()
    assert len(many.json()) == 2
    assert (
        many.json()[0]["generated_text"]
        == body["generated_text"][: len(many.json()[0]["generated_text"])]
    )

    rows = usage_rows(world_a)
    assert len(rows) == 3
    first = rows[0]
    assert (first.meter, first.route, first.task, first.model) == (
        "textgen.tokens",
        "predict",
        "text-generation",
        generator_model.public_id,
    )
    assert (
        first.prompt_tokens == body["usage"]["prompt_tokens"]
        and first.completion_tokens == body["usage"]["completion_tokens"]
    )
    assert first.quantity == first.prompt_tokens + first.completion_tokens
    assert first.api_key_id == world_a.key.pk and first.project_id == world_a.project.pk


def test_a_stream_sends_the_text_as_it_grows(world_a, generator_model):
    client = world_a.client()
    prompt = {"messages": [{"role": "user", "content": "What colour is snow?"}]}
    whole = client.post(
        predict_url(world_a, generator_model),
        {"inputs": prompt, "parameters": {"max_tokens": 30, "temperature": 0}},
        format="json",
    ).json()
    streamed = client.post(
        predict_url(world_a, generator_model),
        {"inputs": prompt, "parameters": {"max_tokens": 30, "temperature": 0}, "stream": True},
        format="json",
    )
    assert streamed.status_code == 200
    events = events_of(streamed)
    assert len(events) >= 3
    assert all(e["generated_text"] is None for e in events[:-1])
    last = events[-1]
    assert (
        last["generated_text"]
        == "".join(e["token"]["text"] for e in events)
        == whole["generated_text"]
    )
    assert last["details"]["finish_reason"] == whole["finish_reason"]
    assert last["details"]["generated_tokens"] == whole["usage"]["completion_tokens"]
    assert usage_rows(world_a)[-1].route == "predict.stream"


@pytest.mark.parametrize(
    "body, field, fragment",
    [
        ({"inputs": {"messages": []}}, "inputs", "messages"),
        ({"inputs": {"messages": [{"role": "wizard", "content": "hi"}]}}, "inputs", "role"),
        ({"inputs": 42}, "inputs", "prompt"),
        ({"inputs": "hi", "parameters": {"max_tokens": 100000}}, "inputs", "context"),
        ({"inputs": "hi", "parameters": {"max_tokens": "many"}}, "parameters", "max_tokens"),
        ({"inputs": "hi", "parameters": {"temperature": 9}}, "parameters", "temperature"),
        ({"inputs": "hi", "parameters": {"top_k": 3}}, "parameters", "top_k"),
        ({"inputs": ["a", "b"], "stream": True}, "inputs", "one input"),
        ({"inputs": "hi", "stream": "yes"}, "stream", "true or false"),
        ({"inputs": "hi", "temperature": 0}, "temperature", "Unknown field"),
    ],
)
def test_bad_generation_requests_get_400_with_a_message(
    world_a, generator_model, body, field, fragment
):
    answer = world_a.client().post(predict_url(world_a, generator_model), body, format="json")
    assert answer.status_code == 400, answer.content[:300]
    error = answer.json()["error"]
    assert field in error["details"], error
    assert fragment.lower() in error["message"].lower(), error["message"]
    assert usage_rows(world_a) == []


def test_a_stream_closed_early_stops_and_records_what_was_sent(world_a, generator_model):
    streamed = world_a.client().post(
        predict_url(world_a, generator_model),
        {
            "inputs": "English: bread\nFrench:",
            "parameters": {"max_tokens": 200, "temperature": 0},
            "stream": True,
        },
        format="json",
    )
    chunks = iter(streamed.streaming_content)
    first = next(chunks)
    assert first.startswith(b"data: ")
    streamed.close()  # the client went away
    rows = usage_rows(world_a)
    assert (
        len(rows) == 1 and rows[0].finish_reason == "cancelled" and rows[0].completion_tokens < 200
    )
