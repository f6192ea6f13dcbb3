"""Why a prediction or a generation did not run, each with its HTTP status and machine code
(verticals.sdk.errors.ServiceError): the API answers them in one place (`api/errors.py`), the
OpenAI routes in OpenAI's shape, the portal shows their message."""

from __future__ import annotations

from verticals.sdk.contracts import InputError
from verticals.sdk.errors import ServiceError


class BadInput(InputError):
    """An input or parameter that cannot run (400), naming which one: `where` is `inputs`,
    `inputs[3]` in a list, or `parameters`. Its code is the InputError's (`invalid`, or
    `context_length_exceeded` for a prompt longer than the model's context)."""

    def __init__(self, message: str, where: str = "inputs", *, code: str | None = None):
        super().__init__(message, field=where, code=code)

    @property
    def where(self) -> str:
        return self.field

    @where.setter
    def where(self, value: str) -> None:
        self.field = value


class ModelUnavailable(ServiceError):
    """The model cannot serve (its task is not installed here, it has no head, or it does not
    predict that way)."""

    status = 409
    code = "model_unavailable"


class InferenceRestarted(ServiceError):
    """The inference process stopped during the call (e.g. out of memory); retry."""

    status = 503
    code = "inference_restarted"


class ModelNotLoadable(ServiceError):
    """The model's files did not load in the inference process (the error is logged there)."""

    status = 503
    code = "model_not_loadable"


class InferenceFailed(ServiceError):
    """The model failed while it ran the call (the error is logged where it happened)."""

    status = 500
    code = "inference_failed"
