"""Sets the caller and the tenant context for each request."""

from verticals.tenancy.caller import resolve_caller
from verticals.tenancy.scoping import tenant_context


class CallerMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        caller, error = resolve_caller(request)
        request.caller, request.caller_error = caller, error
        tenant = caller.tenant if caller is not None and error is None else None
        with tenant_context(tenant):
            return self.get_response(request)
