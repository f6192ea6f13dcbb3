"""One error shape for every API failure: {"error": {"code", "message", "details"}}."""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import set_rollback

from verticals.billing.quotas import Refused
from verticals.config.paths import is_api_path
from verticals.tenancy.scoping import TenantContextMissing

logger = logging.getLogger(__name__)

def error_body(code: str, message: str, details=None) -> dict:
    return {"error": {"code": code, "message": message, "details": details if details is not None else {}}}


def _first_message(value) -> str:
    if isinstance(value, dict):
        key, inner = next(iter(value.items()))
        return f"{key}: {_first_message(inner)}" if key != "non_field_errors" else _first_message(inner)
    if isinstance(value, list) and value:
        return _first_message(value[0])
    return str(value)


def validation_message(detail) -> str:
    """Every failing field named with its first problem: `name: This field is required.`"""
    if isinstance(detail, dict):
        parts = []
        for field_name, problems in detail.items():
            text = _first_message(problems)
            parts.append(text if field_name in ("non_field_errors", "__all__") else f"{field_name}: {text}")
        return " ".join(p if p.endswith(".") else p + "." for p in parts)
    return _first_message(detail)


def _django_validation_to_drf(exc: DjangoValidationError) -> exceptions.ValidationError:
    if hasattr(exc, "error_dict"):
        return exceptions.ValidationError({k: [m for e in v for m in e.messages] for k, v in exc.error_dict.items()})
    return exceptions.ValidationError({"non_field_errors": exc.messages})


def exception_handler(exc, context):
    if isinstance(exc, Refused):  # the plan said no: 429 (with Retry-After), 402 or 403
        set_rollback()
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else {}
        return Response(error_body(exc.code, exc.message), status=exc.status, headers=headers)
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
    return Response(error_body("server_error", "Something went wrong on our side; it has been logged."), status=500)


def json_or_default(default_view, status: int, code: str, message: str):
    """A Django-level error handler: JSON in the one shape under API paths, the HTML page elsewhere."""

    def handler(request, *args, **kwargs):
        if is_api_path(request.path):
            return JsonResponse(error_body(code, message), status=status)
        return default_view(request, *args, **kwargs)

    return handler
