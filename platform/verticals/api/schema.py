"""OpenAPI descriptions the generator cannot infer: authentication schemes, composed shapes, and
the error answers every operation can give."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.plumbing import build_object_type, force_instance
from rest_framework import serializers


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "verticals.api.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "vk_live_…",
            "description": "A tenant API key: `Authorization: Bearer vk_live_…`.",
        }


class SessionScheme(OpenApiAuthenticationExtension):
    target_class = "verticals.api.auth.SessionAuthentication"
    name = "Session"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": "sessionid",
            "description": "A portal session (with CSRF).",
        }


class JobDetailScheme(OpenApiSerializerExtension):
    """A job's detail is the list's `Job` plus its metrics and log tail: `allOf` says so, and keeps
    the job's status choices in one component (two copies would collide in enum naming)."""

    target_class = "verticals.api.jobs.JobDetailSerializer"

    def map_serializer(self, auto_schema, direction):
        serializer = force_instance(self.target)
        job_serializer = type(serializer).__bases__[0]  # JobSerializer, which the detail extends
        base = auto_schema.resolve_serializer(job_serializer, direction)
        extra = [name for name in serializer.fields if name not in job_serializer.Meta.fields]
        properties = {
            name: auto_schema._map_serializer_field(serializer.fields[name], direction)
            for name in extra
        }
        return {"allOf": [base.ref, build_object_type(properties=properties, required=extra)]}


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(
        help_text="A stable code to branch on, e.g. `invalid`, `not_found`, `rate_limited`."
    )
    message = serializers.CharField(
        help_text="What went wrong and what to fix, naming each field at fault."
    )
    details = serializers.JSONField(
        help_text="The problems by field (`{field: [problems]}`), or more about the error."
    )


class ErrorSerializer(serializers.Serializer):
    """The one shape of every error answer."""

    error = ErrorDetailSerializer()


# What every operation can answer besides its own results. Each holds for every route: any path
# or query parameter can be bad (a NUL, a date out of range: 400), every route needs a caller
# (401) whose role, scopes and tenant allow it (403), an X-Tenant header or a path can name
# nothing of the caller's (404), and the access limits apply to every call (429).
ERRORS = {
    400: "Bad input: `message` names each field at fault and what to fix; `details` lists the problems by field.",
    401: "No credentials, or an API key that is malformed, unknown, revoked or expired.",
    403: "The caller's role, the key's scopes or project, or the plan do not allow this; or the tenant is suspended.",
    404: "Nothing of the caller's tenant by that id (another tenant's object answers the same), no such page, "
    "or an `X-Tenant` the caller is not a member of.",
    429: "Too many requests: a rate limit of the plan or of failed sign-ins; `Retry-After` says when to try again.",
}
# And what every operation that takes a body can answer about it.
BODY_ERRORS = {
    413: "The body is larger than this operation reads (files go as multipart/form-data uploads, up to their own limit).",
    415: "The body's Content-Type is not one this operation takes.",
}


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's schema of an operation, with what it leaves out about the API's answers:

    - the error answers every operation can give, in the one error shape (an operation's own
      description of a status, where it has one, stays; its body is the error shape too);
    - `allowEmptyValue` on optional query parameters: an empty one counts as absent, as django-filter
      and every view here read it (`?since=&page_size=` is the first page of everything).
    """

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        error = {
            "application/json": {"schema": self.resolve_serializer(ErrorSerializer, "response").ref}
        }
        responses = operation.setdefault("responses", {})
        for status, description in {
            **ERRORS,
            **(BODY_ERRORS if "requestBody" in operation else {}),
        }.items():
            responses.setdefault(str(status), {"description": description})
        for status, response in responses.items():
            if status.startswith(("4", "5")) and "content" not in response:
                response["content"] = error
        operation["responses"] = dict(sorted(responses.items()))
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "query" and not parameter.get("required"):
                parameter["allowEmptyValue"] = True
        return operation
