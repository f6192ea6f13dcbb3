"""The chat playground of text-generation models: the playground's context (model picker,
parameters, copy-as-curl / Python snippets) for a model version's page and for the project's
chat page, and the endpoint that streams an answer as server-sent events.

The conversation lives in the page (`static/portal/chat.js`) and is sent whole each turn:
POST JSON {"model", "messages", "parameters"} to `chat_stream` answers `data:` events
{"text": delta} … then {"done": true, "finish_reason", "usage"} — or {"error": message} if the
generation fails midway. A request refused before the stream starts is a JSON
{"error", "where"} with 400 (bad input), 404 (no such model here), 409 or 503. The page reads
the stream with fetch (EventSource cannot POST); aborting the fetch closes the response, which
cancels the generation (api.streaming.event_stream).
"""

from __future__ import annotations

import json

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.shortcuts import render
from django.urls import reverse

from verticals.api.compat.openai import DEFAULT_TEMPERATURE  # as the snippets' calls get it
from verticals.api.inputs import unstorable
from verticals.api.streaming import event_stream, sse
from verticals.portal.jobs import _project
from verticals.portal.views import service_refusal, tenant_page
from verticals.registry import selectors
from verticals.registry.models import BaseModel, ModelVersion
from verticals.sdk.errors import ServiceError
from verticals.serving import service as serving

ROUTE = "portal.chat"
PARAMETERS = ("max_tokens", "temperature", "top_p", "stop", "seed")
# What the form starts with (a small model rambles at 1).
INITIAL_TEMPERATURE = 0.7
EXAMPLE = "What is the capital of France?"
KEY_VARIABLE = "VERTICALS_API_KEY"


# --- which models can chat ---------------------------------------------------------------


def chat_models(*, tenant, project) -> list[dict]:
    """The picker's choices: the project's text-generation model versions, then the garden's
    base models that generate, as {id, label, group, url}."""
    streaming = serving.generation_tasks(tenant)
    if not streaming:
        return []
    versions = ModelVersion.objects.filter(project=project, task__in=list(streaming)).order_by(
        "name", "-version"
    )
    choices = [
        {
            "id": m.public_id,
            "label": f"{m.name} v{m.version}",
            "group": "project",
            "url": reverse("portal:model_detail", args=[project.public_id, m.public_id]),
        }
        for m in versions
        if m.predictable
    ]
    choices += [
        {"id": b.name, "label": b.title or b.name, "group": "garden", "url": ""}
        for b in BaseModel.objects.all()
        if serving.base_generation_task(b, tenant) is not None
    ]
    return choices


def chat_model(*, project, value) -> ModelVersion | BaseModel | None:
    """The model a chat names: a model version of this project (`mdl_…`; scoped like the other
    model pages, so another tenant's or project's is not found) or a garden base model (by name
    or `bm_…`). Whether it generates text is serving's to say."""
    if not isinstance(value, str) or not value:
        return None
    if value.startswith("mdl_"):
        return (
            ModelVersion.objects.filter(project=project, public_id=value)
            .select_related("project")
            .first()
        )
    return selectors.base_model_by_id_or_name(value)


def model_label(model) -> str:
    return (
        f"{model.name} v{model.version}"
        if isinstance(model, ModelVersion)
        else (model.title or model.name)
    )


def model_ident(model) -> str:
    """The name the OpenAI-compatible routes know the model by."""
    return model.public_id if isinstance(model, ModelVersion) else model.name


# --- snippets ----------------------------------------------------------------------------


def snippets(
    *, api_base: str, model: str, messages: list[dict], parameters: dict
) -> dict[str, str]:
    """Copy-as-curl and copy-as-Python (openai client) for one chat request to the OpenAI-compatible
    route; the API key is read from an environment variable, never written out.
    `static/portal/chat.js` writes the same texts as the conversation grows: keep them alike."""
    body = {"model": model, "messages": messages, **parameters, "stream": True}
    data = json.dumps(body, indent=2, ensure_ascii=False).replace("'", "'\\''")
    curl = (
        f"# {KEY_VARIABLE}: an API key with the predict scope (API keys page)\n"
        f"curl -N {api_base}/chat/completions \\\n"
        f'  -H "Authorization: Bearer ${KEY_VARIABLE}" \\\n'
        '  -H "Content-Type: application/json" \\\n'
        f"  -d '{data}'"
    )
    # JSON of strings, numbers and lists is also a Python literal (no true/false/null here).
    listed = "".join(f"        {json.dumps(m, ensure_ascii=False)},\n" for m in messages)
    arguments = "".join(
        f"    {name}={json.dumps(value, ensure_ascii=False)},\n"
        for name, value in parameters.items()
    )
    python = (
        "import os\n\n"
        "from openai import OpenAI\n\n"
        f"# {KEY_VARIABLE}: an API key with the predict scope (API keys page)\n"
        f'client = OpenAI(base_url="{api_base}", api_key=os.environ["{KEY_VARIABLE}"])\n'
        "stream = client.chat.completions.create(\n"
        f"    model={json.dumps(model)},\n"
        f"    messages=[\n{listed}    ],\n"
        f"{arguments}"
        "    stream=True,\n"
        ")\n"
        "for chunk in stream:\n"
        "    if chunk.choices:\n"
        '        print(chunk.choices[0].delta.content or "", end="", flush=True)\n'
        "print()\n"
    )
    return {"curl": curl, "python": python}


# --- the playground ----------------------------------------------------------------------


def playground_context(request, project, model) -> dict:
    """What templates/portal/_chat_playground.html needs, `model` chosen in the picker."""
    api_base = request.build_absolute_uri("/v1").rstrip("/")
    ident = model_ident(model) if model is not None else ""
    choices = chat_models(tenant=request.caller.tenant, project=project)
    if model is not None and not any(c["id"] == ident for c in choices):
        choices.insert(0, {"id": ident, "label": model_label(model), "group": "project", "url": ""})
    example = [{"role": "user", "content": EXAMPLE}]
    return {
        "chat": {
            "model": ident,
            "label": model_label(model) if model is not None else "",
            "project_models": [c for c in choices if c["group"] == "project"],
            "garden_models": [c for c in choices if c["group"] == "garden"],
            "stream_url": reverse("portal:chat_stream", args=[project.public_id]),
            "page_url": reverse("portal:chat", args=[project.public_id]),
            "api_base": api_base,
            "example": EXAMPLE,
            "temperature": INITIAL_TEMPERATURE,
            "snippets": snippets(
                api_base=api_base,
                model=ident,
                messages=example,
                parameters={"temperature": INITIAL_TEMPERATURE},
            )
            if ident
            else None,
        },
    }


@tenant_page("model.predict")
def chat_page(request, project_id: str):
    """The project's chat page: any of its text-generation models or a garden model (`?model=`)."""
    project = _project(project_id)
    wanted = request.GET.get("model", "")
    model = chat_model(project=project, value=wanted) if wanted else None
    if wanted and model is None:
        context = {
            "project": project,
            "missing": wanted,
            **playground_context(request, project, None),
        }
        return render(request, "portal/chat.html", context, status=404)
    if model is None:
        first = next(iter(chat_models(tenant=request.caller.tenant, project=project)), None)
        model = chat_model(project=project, value=first["id"]) if first else None
    return render(
        request,
        "portal/chat.html",
        {"project": project, "model": model, **playground_context(request, project, model)},
    )


# --- the stream --------------------------------------------------------------------------


def _refused(message: str, status: int = 400, where: str = "") -> JsonResponse:
    response = JsonResponse({"error": message, "where": where}, status=status)
    response["Cache-Control"] = "no-store"
    return response


def _where(refused: ServiceError) -> str:
    """The part of the form a refusal is about: the parameters, the messages or the model."""
    if refused.field:
        return "parameters" if refused.field == "parameters" else "messages"
    return "model" if isinstance(refused, serving.ModelUnavailable) else ""


def _parameters(raw) -> dict:
    """The generation parameters the page sent, OpenAI's default temperature filled in; serving
    checks the values against the task's schema (an unknown name is refused there)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise serving.BadInput(
            'Give the parameters as an object, e.g. {"max_tokens": 64}.', "parameters"
        )
    options = {name: value for name, value in raw.items() if value is not None and value != ""}
    if isinstance(options.get("stop"), list) and not options["stop"]:
        del options["stop"]
    options.setdefault("temperature", DEFAULT_TEMPERATURE)
    return options


def _events(generation):
    """The portal's events: {"text"} as the answer grows, then {"done", "finish_reason", "usage"}."""
    try:
        for event in generation:
            if event.text:
                yield sse({"text": event.text})
            if event.finished:
                if event.finish_reason == "error":
                    yield sse(
                        {
                            "error": f"The model failed while generating ({event.error or 'no reason given'}); retry."
                        }
                    )
                    return
                yield sse(
                    {
                        "done": True,
                        "finish_reason": event.finish_reason,
                        "usage": {
                            "prompt_tokens": generation.prompt_tokens,
                            "completion_tokens": generation.completion_tokens,
                            "total_tokens": generation.prompt_tokens + generation.completion_tokens,
                        },
                    }
                )
                return
    except ServiceError as stopped:  # e.g. the inference process stopped midway
        yield sse({"error": service_refusal(stopped)[0]})


@tenant_page("model.predict", methods=("POST",))
def chat_stream(request, project_id: str):
    """One assistant turn: POST JSON {model, messages, parameters} → server-sent events."""
    project = _project(project_id)
    try:
        body = json.loads(request.body or b"null")
    except RequestDataTooBig:
        return _refused("The conversation is too long to send; clear it and start again.", 413)
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        return _refused(
            'Send a JSON object: {"model", "messages": [{"role", "content"}, …], "parameters"}.'
        )
    if found := unstorable(body):  # NUL, lone surrogates, infinity: no database holds them
        where, problem = found
        return _refused(
            f"{where}: {problem}" if where else problem, where=where.split(".")[0].split("[")[0]
        )
    if not isinstance(body.get("model"), str) or not body["model"]:
        return _refused(
            "Choose a model: a model version's id (mdl_…) or a garden model's name.", where="model"
        )
    model = chat_model(project=project, value=body["model"])
    if model is None:
        return _refused(
            f"No model {body.get('model')!r} in this project or the model garden.", 404, "model"
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _refused(
            "Write a message first: 'messages' is a non-empty list of {role, content}.",
            where="messages",
        )
    try:
        generation = serving.generate(
            model=model,
            caller=request.caller,
            raw_input={"messages": messages},
            options=_parameters(body.get("parameters")),
            route=ROUTE,
            project=project,
        )
    except ServiceError as refused:  # a bad input or parameter, the plan, the model, its process
        response = _refused(*service_refusal(refused), _where(refused))
        if refused.retry_after:  # 429: the seconds left in the rate window, as the API sends them
            response["Retry-After"] = str(refused.retry_after)
        return response
    return event_stream(
        request, _events(generation), cancel=generation.cancel, close=generation.close
    )
