"""The OpenAI-compatible routes, driven by the official `openai` client against a running server.
(That stream chunks arrive while the answer is being written is timed with the real SmolLM2 in
tests/e2e/test_textgen_acceptance.py: this tiny model writes a whole answer in milliseconds.)"""

import time

import openai
import pytest

from tests.conftest import ledger, make_key
from tests.registry.factories import make_model_version
from verticals.tenancy.roles import Role, Scope

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.rls,
]  # streams are consumed here, after the view: they set their own scope


@pytest.fixture
def generator_model(world_a):
    return make_model_version(world_a, "text-generation", name="tiny-chat")


def client_for(live_server, secret: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{live_server.url}/v1", api_key=secret, max_retries=0, timeout=60
    )


CHAT = [{"role": "user", "content": "What is the capital of Italy?"}]


def test_list_models_chat_stream_and_legacy_completion(live_server, world_a, generator_model):
    client = client_for(live_server, world_a.secret)
    listed = {m.id: m for m in client.models.list()}
    assert generator_model.public_id in listed
    assert world_a.model.public_id not in listed  # a sentiment model does not generate text
    assert client.models.retrieve(generator_model.public_id).id == generator_model.public_id

    answer = client.chat.completions.create(
        model=generator_model.public_id, messages=CHAT, max_tokens=16, temperature=0
    )
    assert answer.object == "chat.completion" and answer.model == generator_model.public_id
    choice = answer.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert (
        answer.usage.completion_tokens >= 1
        and answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    )

    started = time.monotonic()
    pieces, arrivals, finish, usage = [], [], None, None
    for chunk in client.chat.completions.create(
        model=generator_model.public_id,
        messages=CHAT,
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    ):
        assert chunk.object == "chat.completion.chunk"
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.content:
                pieces.append(c.delta.content)
                arrivals.append(time.monotonic() - started)
            finish = c.finish_reason or finish
    assert "".join(pieces) == choice.message.content
    assert len(pieces) > 1 and finish == choice.finish_reason
    assert usage.completion_tokens == answer.usage.completion_tokens

    legacy = client.completions.create(
        model=generator_model.public_id,
        prompt="English: bread\nFrench:",
        max_tokens=8,
        temperature=0,
    )
    assert legacy.object == "text_completion" and isinstance(legacy.choices[0].text, str)

    routes = [u.route for u in ledger(world_a.tenant)]
    assert routes == ["openai.chat", "openai.chat", "openai.completions"]


def test_errors_in_openai_shape(live_server, world_a, world_b, generator_model):
    client = client_for(live_server, world_a.secret)
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="mdl_doesnotexist000000", messages=CHAT)
    assert (
        missing.value.body["code"] == "model_not_found" and missing.value.body["param"] == "model"
    )

    with pytest.raises(openai.BadRequestError) as empty:
        client.chat.completions.create(model=generator_model.public_id, messages=[])
    assert (
        empty.value.body["param"] == "messages"
        and empty.value.body["type"] == "invalid_request_error"
    )

    with pytest.raises(openai.BadRequestError) as too_long:
        client.chat.completions.create(
            model=generator_model.public_id, messages=CHAT, max_tokens=100000
        )
    assert (
        too_long.value.body["code"] == "context_length_exceeded"
        and "100000" in too_long.value.body["message"]
    )

    with pytest.raises(openai.BadRequestError) as unsupported:
        client.chat.completions.create(model=generator_model.public_id, messages=CHAT, n=3)
    assert unsupported.value.body["param"] == "n"

    _key, read_only = make_key(
        world_a.tenant, scopes=[Scope.READ], role=Role.DEVELOPER, user=world_a.owner
    )
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client_for(live_server, read_only).chat.completions.create(
            model=generator_model.public_id, messages=CHAT
        )
    assert set(denied.value.body) == {"message", "type", "param", "code"}

    with pytest.raises(openai.AuthenticationError):
        client_for(live_server, "vk_live_not_a_key").models.list()

    # Another tenant's key cannot use (or see) this tenant's model.
    other = client_for(live_server, world_b.secret)
    with pytest.raises(openai.NotFoundError):
        other.chat.completions.create(model=generator_model.public_id, messages=CHAT)
    with pytest.raises(openai.NotFoundError):
        other.models.retrieve(generator_model.public_id)
    assert generator_model.public_id not in {m.id for m in other.models.list()}
    assert not ledger()
