"""OpenAPI descriptions of the API's authentication schemes."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


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
