"""OpenAPI descriptions the generator cannot infer: authentication schemes, composed shapes."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerExtension
from drf_spectacular.plumbing import build_object_type, force_instance


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
        return {"type": "apiKey", "in": "cookie", "name": "sessionid", "description": "A portal session (with CSRF)."}


class JobDetailScheme(OpenApiSerializerExtension):
    """A job's detail is the list's `Job` plus its metrics and log tail: `allOf` says so, and keeps
    the job's status choices in one component (two copies would collide in enum naming)."""

    target_class = "verticals.api.jobs.JobDetailSerializer"

    def map_serializer(self, auto_schema, direction):
        from verticals.api.jobs import JobSerializer

        base = auto_schema.resolve_serializer(JobSerializer, direction)
        serializer = force_instance(self.target)
        extra = [name for name in serializer.fields if name not in JobSerializer.Meta.fields]
        properties = {name: auto_schema._map_serializer_field(serializer.fields[name], direction) for name in extra}
        return {"allOf": [base.ref, build_object_type(properties=properties, required=extra)]}
