"""Serving's failures carry their HTTP status and machine code (ServiceError), answered in one
place: the API's body, OpenAI's on /v1/, the portal's message. A context overflow is known by its
exception, whatever its words."""

import pickle

import pytest

from tests.conftest import ledger
from tests.registry.factories import make_model_version
from verticals.api.compat.openai import ChatCompletions, Completions, openai_exception_handler
from verticals.api.errors import exception_handler
from verticals.billing.quotas import Refused
from verticals.portal.views import service_refusal
from verticals.sdk import ContextLengthExceeded, InputError
from verticals.serving import process
from verticals.serving.errors import (
    BadInput,
    InferenceFailed,
    InferenceRestarted,
    ModelNotLoadable,
    ModelUnavailable,
)


def api_answer(exc):
    answer = exception_handler(exc, {})
    return answer.status_code, answer.data["error"]


def openai_answer(exc, view=ChatCompletions):
    answer = openai_exception_handler(exc, {"view": view()})
    return answer.status_code, answer.data["error"]


def test_a_context_overflow_gets_its_code_from_the_exception_not_its_words():
    # No "context" in the words: the code still says what happened.
    overflow = BadInput(
        "1,200 tokens asked for; this model holds 256.", code=ContextLengthExceeded.code
    )
    status, error = api_answer(overflow)
    assert (status, error["code"]) == (400, "context_length_exceeded")
    assert error["message"] == "inputs: 1,200 tokens asked for; this model holds 256."
    status, error = openai_answer(overflow)
    assert (status, error["code"], error["param"]) == (400, "context_length_exceeded", "messages")
    assert error["message"] == "1,200 tokens asked for; this model holds 256."
    assert openai_answer(overflow, Completions)[1]["param"] == "prompt"

    # "context" in the words of another refusal is no overflow.
    other = BadInput("The context field of a message is not read; send 'content'.")
    assert openai_answer(other)[1]["code"] == "invalid"
    assert api_answer(other)[1]["code"] == "invalid"


def test_the_code_survives_the_way_back_from_the_inference_process():
    travelled = pickle.loads(pickle.dumps(process._portable(ContextLengthExceeded("too long"))))
    assert isinstance(travelled, InputError) and travelled.code == "context_length_exceeded"
    assert str(travelled) == "too long" and travelled.status == 400
    loaded = pickle.loads(pickle.dumps(process._portable(ModelNotLoadable("no load"))))
    assert isinstance(loaded, ModelNotLoadable) and loaded.message == "no load"


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (BadInput("An input is empty; send some text.", "inputs[2]"), 400, "invalid"),
        (ModelUnavailable("This model has no head."), 409, "model_unavailable"),
        (InferenceRestarted("It stopped; retry."), 503, "inference_restarted"),
        (ModelNotLoadable("It does not load."), 503, "model_not_loadable"),
        (InferenceFailed("It failed; retry."), 500, "inference_failed"),
        (Refused(429, "rate_limited", "Slow down.", retry_after=17), 429, "rate_limited"),
        (InputError("A plugin's refusal."), 400, "invalid"),
    ],
)
def test_each_failure_is_answered_with_its_status_and_code(exc, status, code):
    answer = exception_handler(exc, {})
    assert (answer.status_code, answer.data["error"]["code"]) == (status, code)
    assert answer.data["error"]["message"].endswith(exc.message)
    if exc.retry_after:
        assert answer["Retry-After"] == "17"
    assert service_refusal(exc) == (exc.message, status)


def test_openai_keeps_its_own_answer_for_a_model_that_does_not_generate():
    status, error = openai_answer(ModelUnavailable("This model does not generate text."))
    assert (status, error["type"], error["param"], error["code"]) == (
        400,
        "invalid_request_error",
        "model",
        "model_not_supported",
    )
    status, error = openai_answer(InferenceRestarted("It stopped; retry."))
    assert (status, error["type"], error["code"]) == (503, "server_error", "inference_restarted")


@pytest.mark.django_db(transaction=True)
@pytest.mark.rls
def test_a_real_overflow_is_context_length_exceeded_on_both_apis(world_a):
    model = make_model_version(world_a, "text-generation", name="tiny-chat")
    client = world_a.client()
    predict = client.post(
        f"/api/v1/projects/{world_a.project.public_id}/models/{model.public_id}/predict",
        {"inputs": "hi", "parameters": {"max_tokens": 100000}},
        format="json",
    )
    assert predict.status_code == 400
    assert predict.json()["error"]["code"] == "context_length_exceeded"
    chat = client.post(
        "/v1/chat/completions",
        {
            "model": model.public_id,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 100000,
        },
        format="json",
    )
    assert chat.status_code == 400
    assert chat.json()["error"]["code"] == "context_length_exceeded"
    assert ledger(world_a.tenant) == []
