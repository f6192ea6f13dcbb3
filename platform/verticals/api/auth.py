"""DRF authentication over the caller that CallerMiddleware resolved."""

from rest_framework import authentication, exceptions

from verticals.tenancy.caller import bearer_token


class CallerRefused(exceptions.APIException):
    """The caller is known but refused (bad key, suspended tenant): its own status and code."""

    def __init__(self, error):
        self.status_code = error.status
        if error.retry_after:
            self.wait = error.retry_after  # the error handler sends it as Retry-After
        super().__init__(detail=error.message, code=error.code)


class KeyPrincipal:
    """`request.user` for a call made with an API key: authenticated, but no person."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    pk = None
    email = None

    def __init__(self, api_key):
        self.api_key = api_key

    def __str__(self) -> str:
        return f"API key {self.api_key.public_id}"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer vk_live_…`."""

    def authenticate(self, request):
        if bearer_token(request._request) is None:
            return None
        caller, error = request._request.caller, request._request.caller_error
        if error is not None:
            raise CallerRefused(error)
        return KeyPrincipal(caller.api_key), caller.api_key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


class SessionAuthentication(authentication.SessionAuthentication):
    """A signed-in portal user, with CSRF checks. A suspended current tenant is refused by the
    tenant routes' permission, not here, so that partner routes stay open to partner staff."""
