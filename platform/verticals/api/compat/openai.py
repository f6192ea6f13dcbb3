"""OpenAI-compatible routes (`/v1/models`, `/v1/completions`, `/v1/chat/completions`): point an
OpenAI client at the platform with a tenant's API key (scope `predict`).

`model` is a model version's public id (`mdl_…`, of the key's tenant, and of its project when the
key is restricted to one) or the name of a model-garden base model that generates text. Errors
use OpenAI's shape and status codes: {"error": {"message", "type", "param", "code"}}.
"""

from __future__ import annotations

import time
import uuid

from rest_framework import exceptions
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from verticals.api.base import CallerAPIView
from verticals.api.errors import error_body, exception_handler, openai_body
from verticals.api.streaming import event_stream, sse
from verticals.registry.models import BaseModel, ModelVersion
from verticals.sdk.errors import ServiceError
from verticals.serving import service as serving

GENERATION = ("max_tokens", "temperature", "top_p", "stop", "seed")
# OpenAI's default when a call names none: sampling (send 0 for greedy). The portal's chat
# playground uses it too, so that the snippets it offers answer as it did.
DEFAULT_TEMPERATURE = 1.0
# Accepted and ignored at their neutral values (clients send them by default).
NEUTRAL = {
    "n": 1,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "logprobs": False,
    "user": None,
    "echo": False,
    "best_of": 1,
    "suffix": None,
    "logit_bias": None,
    "top_logprobs": None,
    "parallel_tool_calls": None,
    "response_format": None,
    "service_tier": None,
    "store": None,
    "metadata": None,
}


class OpenAIError(exceptions.APIException):
    def __init__(
        self,
        message: str,
        *,
        status_code: int = 400,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.status_code, self.type, self.param, self.openai_code = status_code, type_, param, code


# Serving's refusals that OpenAI's clients know by another status and code: (status, param, code).
AS_OPENAI = {"model_unavailable": (400, "model", "model_not_supported")}


def openai_exception_handler(exc, context):
    """Every failure of these routes in OpenAI's error shape."""
    if not isinstance(exc, OpenAIError):
        answer = exception_handler(exc, context)  # our shape, status and headers; re-worded below
        answer.data = openai_body(answer.status_code, answer.data)
        if isinstance(exc, ServiceError):  # its code as it is; OpenAI names the parameter apart
            error = answer.data["error"]
            error["message"] = exc.message
            if exc.field:
                error["param"] = _param(exc, context.get("view"))
            if exc.code in AS_OPENAI:
                answer.status_code, error["param"], error["code"] = AS_OPENAI[exc.code]
        return answer
    return Response(
        {
            "error": {
                "message": str(exc.detail),
                "type": exc.type,
                "param": exc.param,
                "code": exc.openai_code,
            }
        },
        status=exc.status_code,
    )


def _param(exc: ServiceError, view) -> str:
    """The request argument a serving error is about, in OpenAI's names: the prompt or the
    messages for the input, the parameter itself for a parameter (`max_tokens: …`)."""
    if exc.field == "parameters":
        return exc.message.split(":")[0]
    if exc.field == "inputs":
        return "messages" if getattr(view, "chat", True) else "prompt"
    return exc.field


class OpenAIView(CallerAPIView):
    parser_classes = [JSONParser]
    action_name = "model.predict"
    schema = None  # OpenAI's own specification describes these routes

    def get_exception_handler(self):
        return openai_exception_handler

    def required_action(self) -> str | None:
        return self.action_name


def _model_card(model, tenant) -> dict:
    if isinstance(model, ModelVersion):
        parent = (
            model.parent.public_id
            if model.parent_id
            else (model.base_model.name if model.base_model_id else None)
        )
        root = model.base_model.name if model.base_model_id else model.public_id
        return {
            "id": model.public_id,
            "object": "model",
            "created": int(model.created_at.timestamp()),
            "owned_by": model.tenant.public_id,
            "name": f"{model.name} v{model.version}",
            "task": model.task,
            "parent": parent,
            "root": root,
        }
    task = serving.base_generation_task(model, tenant)
    return {
        "id": model.name,
        "object": "model",
        "created": int(model.created_at.timestamp()),
        "owned_by": "verticals",
        "name": model.title,
        "task": task.name if task else None,
        "parent": None,
        "root": model.name,
    }


def resolve_model(caller, name) -> ModelVersion | BaseModel:
    """The model a request names, among those this caller may use; 404 in OpenAI's words if none."""
    missing = OpenAIError(
        f"The model '{name}' does not exist or you do not have access to it.",
        status_code=404,
        param="model",
        code="model_not_found",
    )
    if not isinstance(name, str) or not name:
        raise OpenAIError("You must provide a model parameter.", param="model")
    if name.startswith("mdl_"):
        models = ModelVersion.objects.filter(
            public_id=name, task__in=list(serving.generation_tasks(caller.tenant))
        )
        if caller.project is not None:
            models = models.filter(project=caller.project)
        model = models.select_related("project").first()
    else:
        model = BaseModel.objects.filter(name=name).first()
        if model is not None and serving.base_generation_task(model, caller.tenant) is None:
            model = None
    if model is None:
        raise missing
    return model


class ModelList(OpenAIView):
    """GET /v1/models: the caller's text-generation model versions and the garden's base models."""

    def required_action(self) -> str | None:
        caller = self.caller
        return (
            "model.view"
            if caller is not None and caller.denial("model.predict")
            else "model.predict"
        )

    def get(self, request):
        tenant = self.caller.tenant
        versions = ModelVersion.objects.filter(
            task__in=list(serving.generation_tasks(tenant))
        ).select_related("parent", "base_model", "tenant")
        if self.caller.project is not None:
            versions = versions.filter(project=self.caller.project)
        bases = [
            base
            for base in BaseModel.objects.all()
            if serving.base_generation_task(base, tenant) is not None
        ]
        return Response(
            {"object": "list", "data": [_model_card(m, tenant) for m in [*bases, *versions]]}
        )


class ModelDetail(ModelList):
    def get(self, request, model):
        return Response(_model_card(resolve_model(self.caller, model), self.caller.tenant))


def _options(body: dict, *, chat: bool) -> dict:
    known = (
        set(GENERATION)
        | {"model", "stream", "stream_options", "max_completion_tokens"}
        | set(NEUTRAL)
    )
    known |= {"messages"} if chat else {"prompt"}
    for name in body:
        if name not in known:
            raise OpenAIError(f"Unrecognized request argument supplied: {name}", param=name)
    for name, neutral in NEUTRAL.items():
        if body.get(name) not in (None, neutral) and name not in (
            "user",
            "metadata",
            "store",
            "service_tier",
        ):
            raise OpenAIError(
                f"'{name}' is not supported here; leave it out or send {neutral!r}.", param=name
            )
    options = {name: body[name] for name in GENERATION if body.get(name) is not None}
    options.setdefault("temperature", DEFAULT_TEMPERATURE)
    if body.get("max_completion_tokens") is not None:
        options["max_tokens"] = body["max_completion_tokens"]
    if isinstance(options.get("stop"), str):
        options["stop"] = [options["stop"]]
    return options


def _messages(raw) -> list[dict]:
    """OpenAI chat messages as the task takes them: text content, `developer` as `system`."""
    if not isinstance(raw, list) or not raw:
        raise OpenAIError(
            "'messages' must be a non-empty array of {role, content}.", param="messages"
        )
    messages = []
    for index, message in enumerate(raw):
        if not isinstance(message, dict) or "role" not in message:
            raise OpenAIError(
                f"messages[{index}] must be an object with a role and content.",
                param=f"messages[{index}]",
            )
        content = message.get("content")
        if isinstance(content, list):  # content parts: only text can be read here
            if any(not isinstance(part, dict) or part.get("type") != "text" for part in content):
                raise OpenAIError(
                    f"messages[{index}].content: only text parts are supported.",
                    param=f"messages[{index}].content",
                )
            content = "".join(str(part.get("text", "")) for part in content)
        role = "system" if message["role"] == "developer" else message["role"]
        messages.append({"role": role, "content": content})
    return messages


def _stream_flags(body: dict) -> tuple[bool, bool]:
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise OpenAIError("'stream' must be true or false.", param="stream")
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise OpenAIError("'stream_options' must be an object.", param="stream_options")
    return stream, bool(stream_options.get("include_usage")) and stream


def _usage(generation) -> dict:
    return {
        "prompt_tokens": generation.prompt_tokens,
        "completion_tokens": generation.completion_tokens,
        "total_tokens": generation.prompt_tokens + generation.completion_tokens,
    }


class _Completion(OpenAIView):
    chat = True
    object_name = "chat.completion"
    id_prefix = "chatcmpl-"
    route = "openai.chat"

    def post(self, request):
        body = request.data
        if not isinstance(body, dict):
            raise OpenAIError("Send a JSON object.")
        model = resolve_model(self.caller, body.get("model"))
        options = _options(body, chat=self.chat)
        stream, include_usage = _stream_flags(body)
        raw_input = self.raw_input(body)
        # Serving's failures (ServiceError) carry their status and code: openai_exception_handler.
        generation = serving.generate(
            model=model,
            caller=self.caller,
            raw_input=raw_input,
            options=options,
            route=self.route,
        )
        ident, created = self.id_prefix + uuid.uuid4().hex[:24], int(time.time())
        name = body["model"]
        if stream:
            chunks = self.chunks(generation, ident, created, name, include_usage)
            return event_stream(request, chunks, cancel=generation.cancel, close=generation.close)
        try:
            text = "".join(event.text for event in generation)
        finally:
            generation.close()
        if generation.finish_reason == "error":
            raise serving.InferenceFailed("The model failed while generating; retry.")
        return Response(
            {
                "id": ident,
                "object": self.object_name,
                "created": created,
                "model": name,
                "choices": [self.choice(text, generation.finish_reason)],
                "usage": _usage(generation),
            }
        )

    def chunks(self, generation, ident, created, name, include_usage):
        head = {
            "id": ident,
            "object": self.object_name + ".chunk" if self.chat else self.object_name,
            "created": created,
            "model": name,
        }
        try:
            if self.chat:
                yield sse(
                    {
                        **head,
                        "choices": [
                            {
                                "index": 0,
                                "delta": {"role": "assistant", "content": ""},
                                "finish_reason": None,
                            }
                        ],
                    }
                )
            for event in generation:
                if event.text:
                    yield sse({**head, "choices": [self.delta(event.text, None)]})
                if event.finished:
                    if event.finish_reason == "error":
                        yield sse(
                            {
                                "error": {
                                    "message": "The model failed while generating; retry.",
                                    "type": "server_error",
                                    "param": None,
                                    "code": None,
                                }
                            }
                        )
                        return
                    yield sse({**head, "choices": [self.delta("", event.finish_reason)]})
            if include_usage:
                yield sse({**head, "choices": [], "usage": _usage(generation)})
            yield sse("[DONE]")
        except ServiceError as exc:  # e.g. the inference process stopped midway (503)
            yield sse(openai_body(exc.status, error_body(exc.code, exc.message)))


class ChatCompletions(_Completion):
    """POST /v1/chat/completions."""

    def raw_input(self, body):
        return {"messages": _messages(body.get("messages"))}

    def choice(self, text, finish_reason):
        return {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": finish_reason,
        }

    def delta(self, text, finish_reason):
        return {
            "index": 0,
            "delta": {"content": text} if text else {},
            "logprobs": None,
            "finish_reason": finish_reason,
        }


class Completions(_Completion):
    """POST /v1/completions (legacy): one prompt string."""

    chat = False
    object_name = "text_completion"
    id_prefix = "cmpl-"
    route = "openai.completions"

    def raw_input(self, body):
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str) or not prompt:
            raise OpenAIError(
                "'prompt' must be a non-empty string (one prompt per call).", param="prompt"
            )
        return prompt

    def choice(self, text, finish_reason):
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}

    def delta(self, text, finish_reason):
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
