"""The portal's chat playground for text-generation models: the playground on a model's page and
on the project's chat page (model picker, parameters, copy-as-curl / Python snippets), the
endpoint that streams an answer as server-sent events, its refusals, roles and tenancy, the
usage it records, and the fine-tune form for the task.

Models are real: tests.registry.factories trains a tiny text-generation model once per session.
"""

import json
import re
import shlex
from html import unescape
from unittest import mock

import pytest
from django.core.management import call_command
from django.test import Client

from tests.conftest import ledger, make_member
from tests.registry.factories import make_dataset_version, tiny_model_dir
from verticals.jobs.models import Job
from verticals.portal import chat
from verticals.registry.models import BaseModel
from verticals.tenancy.roles import Role

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.rls,
]  # streams are consumed here, after the view: they set their own scope

GARDEN = "tiny-garden"
CHAT = [{"role": "user", "content": "What colour is snow?"}]


def signed_in(user, **options) -> Client:
    client = Client(**options)
    client.force_login(user)
    return client


def text(response) -> str:
    return unescape(response.content.decode())


def model_url(world, model) -> str:
    return f"/projects/{world.project.public_id}/models/{model.public_id}/"


def stream_url(world) -> str:
    return f"/projects/{world.project.public_id}/chat/stream"


def post_chat(client, world, body, **extra):
    return client.post(
        stream_url(world), data=json.dumps(body), content_type="application/json", **extra
    )


def events_of(response) -> list[dict]:
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"].startswith("text/event-stream")
    body = b"".join(response.streaming_content).decode()
    return [
        json.loads(block[len("data: ") :])
        for block in body.split("\n\n")
        if block.startswith("data: ")
    ]


def usage_rows(world) -> list:
    return ledger(world.tenant)


def snippet(page: str, name: str) -> str:
    found = re.search(
        rf'<pre class="json" id="chat-{name}" data-snippet="{name}"[^>]*>(.*?)</pre>', page, re.S
    )
    assert found, f"no {name} snippet"
    return unescape(found.group(1))


@pytest.fixture
def garden():
    """The tiny text-generation model imported into the model garden, as staff would."""
    call_command(
        "import_base_model",
        str(tiny_model_dir("text-generation")),
        "--name",
        GARDEN,
        "--title",
        "Tiny garden chat",
    )
    return BaseModel.objects.get(name=GARDEN)


# --- the page -----------------------------------------------------------------------------


def test_a_generator_page_has_the_chat_playground_and_a_sentiment_page_has_not(world_a, garden):
    client = signed_in(world_a.owner)
    page = text(client.get(model_url(world_a, world_a.generator)))
    assert 'data-chat data-state="idle"' in page and "portal/chat.js" in page
    assert (
        f'data-stream-url="{stream_url(world_a)}"' in page
        and 'data-api-base="http://testserver/v1"' in page
    )
    for control in (
        "chat-input",
        "chat-send",
        "chat-stop",
        "chat-model",
        "chat-params",
        "copy-curl",
        "copy-python",
    ):
        assert f'data-testid="{control}"' in page, control
    for parameter in ("system", "max_tokens", "temperature", "top_p", "stop", "seed"):
        assert f'data-param="{parameter}"' in page, parameter
    assert 'name="csrfmiddlewaretoken"' in page
    assert 'id="playground-text"' not in page, "not the one-text playground"

    # The picker: this project's generators (this one chosen), then the garden's; not the sentiment model.
    sentiment = world_a.model
    picker = page[
        page.index('id="chat-model"') : page.index("</select>", page.index('id="chat-model"'))
    ]
    assert re.search(
        rf'<option value="{world_a.generator.public_id}" data-url="[^"]+" selected>', picker
    )
    assert f'<option value="{GARDEN}" data-url="">Tiny garden chat · {GARDEN}</option>' in picker
    assert picker.index("This project's models") < picker.index("Model garden")
    assert sentiment.public_id not in picker

    answer = client.get(model_url(world_a, sentiment))
    assert answer.status_code == 200
    other = text(answer)
    assert 'id="playground-text"' in other and "data-chat" not in other and "chat.js" not in other


def test_the_project_chat_page_takes_a_garden_model(world_a, garden):
    client = signed_in(world_a.owner)
    base = f"/projects/{world_a.project.public_id}/chat/"
    page = text(client.get(f"{base}?model={GARDEN}"))
    assert "Chat with Tiny garden chat" in page and "data-chat" in page
    assert re.search(rf'<option value="{GARDEN}" data-url="" selected>', page)
    assert 'data-testid="chat-page-link"' not in page, "already on its own page"
    assert f'"model": "{GARDEN}"' in snippet(page, "curl")

    # Without ?model: the first of the picker. An unknown model: 404 with a message.
    assert "data-chat" in text(client.get(base))
    missing = client.get(f"{base}?model=nope")
    assert missing.status_code == 404 and "No model 'nope'" in text(missing)
    # The model page links here with its model chosen.
    assert f'href="{base}?model={world_a.generator.public_id}"' in text(
        client.get(model_url(world_a, world_a.generator))
    )


def test_a_project_without_generators_says_how_to_get_one(world_a):
    page = text(signed_in(world_a.owner).get(f"/projects/{world_a.project.public_id}/chat/"))
    assert (
        'data-testid="chat-none"' in page
        and "?task=text-generation" in page
        and "data-chat" not in page
    )


# --- the stream ---------------------------------------------------------------------------


def test_the_stream_sends_texts_that_add_up_then_done_and_records_usage(world_a):
    model = world_a.generator
    client = signed_in(world_a.owner)
    parameters = {"max_tokens": 24, "temperature": 0}
    events = events_of(
        post_chat(
            client, world_a, {"model": model.public_id, "messages": CHAT, "parameters": parameters}
        )
    )
    texts, last = events[:-1], events[-1]
    assert texts and all(set(e) == {"text"} and e["text"] for e in texts)
    assert last["done"] is True and last["finish_reason"] in ("stop", "length")
    usage = last["usage"]
    assert 1 <= usage["completion_tokens"] <= 24 and usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    # The same answer as the API gives whole (greedy).
    whole = (
        world_a.client()
        .post(
            f"/api/v1/projects/{world_a.project.public_id}/models/{model.public_id}/predict",
            {"inputs": {"messages": CHAT}, "parameters": parameters},
            format="json",
        )
        .json()
    )
    assert "".join(e["text"] for e in texts) == whole["generated_text"]

    row = usage_rows(world_a)[0]
    assert (row.route, row.meter, row.model, row.task) == (
        "portal.chat",
        "textgen.tokens",
        model.public_id,
        "text-generation",
    )
    assert (
        row.user == world_a.owner
        and row.api_key is None
        and row.project == world_a.project
        and row.model == model.public_id
    )
    assert (row.prompt_tokens, row.completion_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert row.finish_reason == last["finish_reason"]


def test_a_conversation_with_a_system_prompt_and_stop_strings_streams(world_a):
    messages = [
        {"role": "system", "content": "Answer briefly."},
        *CHAT,
        {"role": "assistant", "content": "White."},
        {"role": "user", "content": "And grass?"},
    ]
    events = events_of(
        post_chat(
            signed_in(world_a.owner),
            world_a,
            {
                "model": world_a.generator.public_id,
                "messages": messages,
                "parameters": {
                    "max_tokens": 16,
                    "temperature": 0.7,
                    "top_p": 0.9,
                    "stop": ["\n\n"],
                    "seed": 7,
                },
            },
        )
    )
    assert events[-1]["done"] is True


def test_a_garden_model_streams_and_its_usage_names_the_project(world_a, garden):
    events = events_of(
        post_chat(
            signed_in(world_a.owner),
            world_a,
            {"model": GARDEN, "messages": CHAT, "parameters": {"max_tokens": 8, "temperature": 0}},
        )
    )
    assert events[-1]["done"] is True
    row = usage_rows(world_a)[0]
    assert (row.route, row.model, row.project) == ("portal.chat", GARDEN, world_a.project)


def test_without_a_temperature_the_stream_samples_as_the_openai_api(world_a):
    """Empty temperature: 1, as /v1/chat/completions, so that the snippets answer as the playground did."""
    body = {
        "model": world_a.generator.public_id,
        "messages": CHAT,
        "parameters": {"max_tokens": 12, "seed": 3},
    }
    with mock.patch("verticals.serving.service.generate", wraps=chat.serving.generate) as generate:
        events_of(post_chat(signed_in(world_a.owner), world_a, body))
    assert generate.call_args.kwargs["options"] == {"max_tokens": 12, "seed": 3, "temperature": 1.0}
    assert generate.call_args.kwargs["route"] == "portal.chat"


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        ({"messages": CHAT, "parameters": {}}, 400, "Choose a model"),
        (
            {"model": "mdl_doesnotexist000000", "messages": CHAT},
            404,
            "No model 'mdl_doesnotexist000000'",
        ),
        ({"model": "GENERATOR", "messages": []}, 400, "Write a message first"),
        ({"model": "GENERATOR", "messages": "hello"}, 400, "Write a message first"),
        ({"model": "GENERATOR", "messages": [{"role": "wizard", "content": "hi"}]}, 400, "role"),
        (
            {"model": "GENERATOR", "messages": CHAT, "parameters": {"temperature": 9}},
            400,
            "temperature",
        ),
        ({"model": "GENERATOR", "messages": CHAT, "parameters": {"top_k": 3}}, 400, "top_k"),
        (
            {
                "model": "GENERATOR",
                "messages": CHAT,
                "parameters": {"stop": ["a", "b", "c", "d", "e"]},
            },
            400,
            "stop",
        ),
        (
            {"model": "GENERATOR", "messages": CHAT, "parameters": {"max_tokens": 100000}},
            400,
            "context",
        ),
        (
            {"model": "GENERATOR", "messages": CHAT, "parameters": [1]},
            400,
            "parameters as an object",
        ),
        ({"model": "SENTIMENT", "messages": CHAT}, 409, "does not generate text"),
        (
            {"model": "mdl_\u0000x", "messages": CHAT},
            400,
            "model: Null characters",
        ),  # PostgreSQL refuses NUL: once a 500
        (
            {"model": "GENERATOR", "messages": [{"role": "user", "content": "hi \ud800"}]},
            400,
            "messages[0].content: Surrogate",
        ),
    ],
)
def test_bad_requests_are_refused_with_a_message_before_any_stream(world_a, body, status, fragment):
    names = {"GENERATOR": world_a.generator.public_id, "SENTIMENT": world_a.model.public_id}
    if body.get("model") in names:
        body = {**body, "model": names[body["model"]]}
    answer = post_chat(signed_in(world_a.owner), world_a, body)
    assert answer.status_code == status, answer.content[:300]
    assert answer["Content-Type"] == "application/json" and not answer.streaming
    assert fragment.lower() in answer.json()["error"].lower(), answer.json()
    assert usage_rows(world_a) == []


def test_a_body_that_is_not_json_is_refused(world_a):
    client = signed_in(world_a.owner)
    for data, content_type in [
        ("{not json", "application/json"),
        ("model=x", "application/x-www-form-urlencoded"),
        ("[1, 2]", "application/json"),
    ]:
        answer = client.post(stream_url(world_a), data=data, content_type=content_type)
        assert answer.status_code == 400 and "Send a JSON object" in answer.json()["error"]
    assert client.get(stream_url(world_a)).status_code == 405, "POST only"


# Closing a streaming response ends the request (request_finished closes the database connection):
# outside a test transaction.
@pytest.mark.django_db(transaction=True)
def test_a_stream_closed_early_records_what_was_sent(world_a):
    answer = post_chat(
        signed_in(world_a.owner),
        world_a,
        {
            "model": world_a.generator.public_id,
            "messages": CHAT,
            "parameters": {"max_tokens": 200, "temperature": 0},
        },
    )
    chunks = iter(answer.streaming_content)
    assert next(chunks).startswith(b"data: ")
    answer.close()  # the page pressed Stop (the fetch was aborted)
    rows = usage_rows(world_a)
    assert (
        len(rows) == 1 and rows[0].finish_reason == "cancelled" and rows[0].completion_tokens < 200
    )


def test_the_stream_needs_the_csrf_token(world_a):
    client = signed_in(world_a.owner, enforce_csrf_checks=True)
    body = {
        "model": world_a.generator.public_id,
        "messages": CHAT,
        "parameters": {"max_tokens": 4, "temperature": 0},
    }
    assert post_chat(client, world_a, body).status_code == 403
    page = text(client.get(model_url(world_a, world_a.generator)))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    assert events_of(post_chat(client, world_a, body, HTTP_X_CSRFTOKEN=token))[-1]["done"] is True


# --- roles and tenants --------------------------------------------------------------------


def test_a_viewer_sees_no_playground_and_cannot_stream(world_a):
    model = world_a.generator
    viewer = make_member(world_a.tenant, "viewer@example.com", Role.VIEWER)
    client = signed_in(viewer.user)
    page = text(client.get(model_url(world_a, model)))
    assert 'data-testid="lineage"' in page and "data-chat" not in page
    assert client.get(f"/projects/{world_a.project.public_id}/chat/").status_code == 403
    refused = post_chat(client, world_a, {"model": model.public_id, "messages": CHAT})
    assert refused.status_code == 403 and "does not allow model.predict" in text(refused)
    assert usage_rows(world_a) == []


def test_another_tenants_project_and_model_are_404(world_a, world_b):
    model = world_a.generator
    client = signed_in(world_b.owner)
    body = {"model": model.public_id, "messages": CHAT, "parameters": {"max_tokens": 4}}
    assert post_chat(client, world_a, body).status_code == 404
    in_own_project = post_chat(client, world_b, body)
    assert in_own_project.status_code == 404 and model.name not in text(in_own_project)
    assert (
        client.get(
            f"/projects/{world_a.project.public_id}/chat/?model={model.public_id}"
        ).status_code
        == 404
    )
    own_page = client.get(f"/projects/{world_b.project.public_id}/chat/?model={model.public_id}")
    assert own_page.status_code == 404 and model.name not in text(own_page)
    assert usage_rows(world_a) == [] and usage_rows(world_b) == []


# --- snippets -----------------------------------------------------------------------------


def test_the_snippets_name_the_model_and_the_openai_route_and_no_secret(world_a):
    model = world_a.generator
    page = text(signed_in(world_a.owner).get(model_url(world_a, model)))
    curl, python = snippet(page, "curl"), snippet(page, "python")
    for code in (curl, python):
        assert model.public_id in code and "VERTICALS_API_KEY" in code
        assert world_a.secret not in code and world_a.key.lookup not in code
    assert "curl -N http://testserver/v1/chat/completions" in curl
    assert (
        'base_url="http://testserver/v1"' in python and "client.chat.completions.create(" in python
    )
    compile(python, "snippet.py", "exec")

    # The curl's body is a request the OpenAI-compatible route takes.
    words = shlex.split(curl.split("\n", 1)[1].replace("\\\n", " "))
    body = json.loads(words[words.index("-d") + 1])
    assert body == {
        "model": model.public_id,
        "messages": [{"role": "user", "content": chat.EXAMPLE}],
        "temperature": chat.INITIAL_TEMPERATURE,
        "stream": True,
    }
    answer = world_a.client().post("/v1/chat/completions", {**body, "max_tokens": 4}, format="json")
    assert answer.status_code == 200 and answer["Content-Type"].startswith("text/event-stream")
    assert b"[DONE]" in b"".join(answer.streaming_content)


def test_snippets_quote_what_a_conversation_holds():
    messages = [
        {"role": "system", "content": 'Say "it\'s"\nthen stop.'},
        {"role": "user", "content": "Ça va? 'yes' \\ no"},
    ]
    parameters = {"max_tokens": 32, "temperature": 0.5, "stop": ["\n\n", "END"], "seed": 11}
    texts = chat.snippets(
        api_base="https://portal.example/v1",
        model="mdl_x",
        messages=messages,
        parameters=parameters,
    )
    words = shlex.split(texts["curl"].split("\n", 1)[1].replace("\\\n", " "))
    assert json.loads(words[words.index("-d") + 1]) == {
        "model": "mdl_x",
        "messages": messages,
        **parameters,
        "stream": True,
    }
    assert words[words.index("-H") + 1] == "Authorization: Bearer $VERTICALS_API_KEY", (
        "left for the shell to fill"
    )

    calls = []
    fake = mock.MagicMock()
    fake.OpenAI.return_value.chat.completions.create.side_effect = lambda **kw: (
        calls.append(kw) or []
    )
    with (
        mock.patch.dict("sys.modules", {"openai": fake}),
        mock.patch.dict("os.environ", {"VERTICALS_API_KEY": "k"}),
    ):
        exec(compile(texts["python"], "snippet.py", "exec"), {})
    assert fake.OpenAI.call_args.kwargs == {"base_url": "https://portal.example/v1", "api_key": "k"}
    assert calls == [{"model": "mdl_x", "messages": messages, **parameters, "stream": True}]


# --- the fine-tune form -------------------------------------------------------------------


def test_the_fine_tune_form_of_text_generation_renders_and_submits(
    world_a, garden, django_capture_on_commit_callbacks
):
    version = make_dataset_version(world_a, "text-generation", rows=24, name="chats")
    client = signed_in(world_a.owner)
    url = f"/projects/{world_a.project.public_id}/train/?task=text-generation"
    page = text(client.get(url))
    assert f'<option value="{version.public_id}" selected>chats v1' in page
    assert f'<option value="{garden.public_id}">Tiny garden chat' in page
    method = page[
        page.index('name="method"') : page.index("</select>", page.index('name="method"'))
    ]
    assert (
        '<option value="lora" selected>lora</option>' in method
        and '<option value="full">full</option>' in method
    )
    for name in ("lora_rank", "lora_alpha", "max_length", "context_length"):
        assert f'name="{name}"' in page, name

    form = {
        "task": "text-generation",
        "dataset": version.public_id,
        "architecture": "causal-lm-finetune",
        "base_model": garden.public_id,
        "parent": "",
        "name": "",
        "seed": "0",
        "method": "full",
        "epochs": "1",
        "batch_size": "4",
        "max_length": "64",
        "lora_rank": "8",
        "lora_alpha": "16",
        "lora_dropout": "0.05",
        "weight_decay": "0",
        "warmup_ratio": "0.05",
        "learning_rate": "",
        "d_model": "256",
        "num_layers": "4",
        "num_heads": "4",
        "context_length": "1024",
        "dropout": "0",
    }
    with mock.patch("verticals.jobs.engine.send"), django_capture_on_commit_callbacks(execute=True):
        answer = client.post(url, form)
    assert answer.status_code == 302, text(answer)[:3000]
    job = Job.dangerously_unscoped.get(tenant=world_a.tenant, kind="train")
    assert (
        job.task == "text-generation"
        and job.params["method"] == "full"
        and job.params["epochs"] == 1
    )
    assert (
        job.params["base_model"] == garden.public_id
        and job.params["architecture"] == "causal-lm-finetune"
    )


def test_a_plan_refusal_answers_its_status_and_a_rate_limit_its_retry_after(world_a):
    from verticals.billing.quotas import Refused

    model = world_a.generator
    client = signed_in(world_a.owner)
    body = {"model": model.public_id, "messages": CHAT}
    limited = Refused(
        429,
        "rate_limited",
        "The plan 'Free' allows 60 metered calls a minute; retry in 17 s.",
        retry_after=17,
    )
    with mock.patch("verticals.portal.chat.serving.generate", side_effect=limited):
        answer = post_chat(client, world_a, body)
    assert answer.status_code == 429 and answer["Retry-After"] == "17"
    assert answer.json()["error"] == limited.message
    capped = Refused(
        402, "quota_exhausted", "The plan 'Free' includes 1,000 tokens a month and they are used."
    )
    with mock.patch("verticals.portal.chat.serving.generate", side_effect=capped):
        answer = post_chat(client, world_a, body)
    assert answer.status_code == 402 and "Retry-After" not in answer
