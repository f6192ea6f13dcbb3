"""One error shape for every API failure: {"error": {"code", "message", "details"}}."""

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import set_rollback

from verticals.sdk.errors import ServiceError
from verticals.tenancy.paths import is_api_path
from verticals.tenancy.scoping import TenantContextMissing

logger = logging.getLogger(__name__)


def error_body(code: str, message: str, details=None) -> dict:
    return {
        "error": {
            "code": code,
            "message": message,
            "details": details if details is not None else {},
        }
    }


def _first_message(value) -> str:
    if isinstance(value, dict):
        key, inner = next(iter(value.items()))
        return (
            f"{key}: {_first_message(inner)}"
            if key != "non_field_errors"
            else _first_message(inner)
        )
    if isinstance(value, list) and value:
        return _first_message(value[0])
    return str(value)


def validation_message(detail) -> str:
    """Every failing field named with its first problem: `name: This field is required.`"""
    if isinstance(detail, dict):
        parts = []
        for field_name, problems in detail.items():
            text = _first_message(problems)
            parts.append(
                text if field_name in ("non_field_errors", "__all__") else f"{field_name}: {text}"
            )
        return " ".join(p if p.endswith(".") else p + "." for p in parts)
    return _first_message(detail)


def _django_validation_to_drf(exc: DjangoValidationError) -> exceptions.ValidationError:
    if hasattr(exc, "error_dict"):
        return exceptions.ValidationError(
            {k: [m for e in v for m in e.messages] for k, v in exc.error_dict.items()}
        )
    return exceptions.ValidationError({"non_field_errors": exc.messages})


def service_error_body(exc: ServiceError) -> dict:
    """A service's refusal or failure in the one shape: its code, its message (after the field
    it is about, as a validation error names it) and its details."""
    if exc.field:
        problem = {exc.field: [exc.message]}
        return error_body(
            exc.code,
            validation_message(problem),
            exc.details if exc.details is not None else problem,
        )
    return error_body(exc.code, exc.message, exc.details)


class RequestTooLarge(exceptions.APIException):
    """A body over the size a route reads (DATA_UPLOAD_MAX_MEMORY_SIZE for JSON and form fields)."""

    status_code = 413
    default_code = "request_too_large"

    def __init__(self, limit: int | None = None, message: str | None = None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE if limit is None else limit
        super().__init__(
            message
            or f"The request body is larger than the {limit} bytes this route reads; send less "
            "(files go as multipart/form-data uploads)."
        )


def exception_handler(exc, context):
    if isinstance(
        exc, RequestDataTooBig
    ):  # Django refused to read the body: nothing was parsed or done
        exc = RequestTooLarge()
    if isinstance(exc, ServiceError):
        # A service said no or failed, and says how to answer: the plan (429 with Retry-After, 402,
        # 403), serving (400 invalid or context_length_exceeded, 409, 503, 500), an InputError.
        set_rollback()
        if exc.status >= 500:
            logger.warning("%s (%s): %s", type(exc).__name__, exc.code, exc.message)
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else {}
        return Response(service_error_body(exc), status=exc.status, headers=headers)
    if isinstance(exc, DjangoValidationError):
        exc = _django_validation_to_drf(exc)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found: no such object in your tenant.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)

    if isinstance(exc, exceptions.APIException):
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        elif exc.status_code == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="api"'
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        if isinstance(exc, exceptions.ValidationError):
            body = error_body("invalid", validation_message(exc.detail), exc.detail)
        else:
            codes = exc.get_codes()
            code = codes if isinstance(codes, str) else exc.default_code
            body = error_body(code, str(exc.detail), getattr(exc, "details", None))
        set_rollback()
        return Response(body, status=exc.status_code, headers=headers)

    if isinstance(exc, TenantContextMissing):
        logger.error("tenant context missing", exc_info=exc)
    else:
        logger.exception("unhandled API error", exc_info=exc)
    set_rollback()
    return Response(
        error_body("server_error", "Something went wrong on our side; it has been logged."),
        status=500,
    )


# OpenAI's error type and code for our statuses (the OpenAI-compatible routes under /v1/).
OPENAI_KINDS = {
    401: ("invalid_request_error", "invalid_api_key"),
    402: ("insufficient_quota", None),
    403: ("permission_error", None),
    404: ("invalid_request_error", "not_found"),
    429: ("rate_limit_exceeded", "rate_limit_exceeded"),
    503: ("server_error", None),
}


def openai_body(status: int, body: dict) -> dict:
    """Our error body in OpenAI's shape: {"error": {"message", "type", "param", "code"}}; `param` is
    the first field a 400 names."""
    error = body["error"]
    type_, code = OPENAI_KINDS.get(
        status, ("invalid_request_error" if status < 500 else "server_error", None)
    )
    details = error.get("details")
    param = next(iter(details), None) if isinstance(details, dict) and status == 400 else None
    return {
        "error": {
            "message": error["message"],
            "type": type_,
            "param": param,
            "code": code or error["code"],
        }
    }


def error_response(request, status: int, code: str, message: str, details=None) -> JsonResponse:
    """An error answered outside DRF's views (middleware, Django's handlers) in the shape of the
    path's API: OpenAI's under /v1/, the one shape elsewhere."""
    body = error_body(code, message, details)
    return JsonResponse(
        openai_body(status, body) if request.path.startswith("/v1/") else body, status=status
    )


def json_or_default(default_view, status: int, code: str, message: str):
    """A Django-level error handler: JSON in the API's shape under API paths, the HTML page elsewhere."""

    def handler(request, exception=None, *args, **kwargs):
        if is_api_path(request.path):
            if isinstance(
                exception, RequestDataTooBig
            ):  # read outside a view (a middleware): still 413
                too_large = RequestTooLarge()
                return error_response(
                    request, too_large.status_code, too_large.default_code, str(too_large.detail)
                )
            return error_response(request, status, code, message)
        return default_view(request, *(() if exception is None else (exception,)), *args, **kwargs)

    return handler
