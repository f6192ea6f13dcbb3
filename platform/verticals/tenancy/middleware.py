"""Sets the caller and the tenant context for each request."""

import logging
from contextlib import nullcontext

from django.urls import reverse

from verticals.tenancy.caller import resolve_caller
from verticals.tenancy.scoping import platform_scope, tenant_context

log = logging.getLogger("verticals.platform_scope")


class CallerMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.admin_prefix = None

    def __call__(self, request):
        caller, error = resolve_caller(request)
        request.caller, request.caller_error = caller, error
        tenant = caller.tenant if caller is not None and error is None else None
        if self.admin_prefix is None:
            self.admin_prefix = reverse("admin:index")
        platform = nullcontext()
        if request.path.startswith(self.admin_prefix):
            # Staff work across tenants in the admin, through unscoped querysets by design;
            # their own membership must not make the admin's writes look cross-tenant.
            tenant = None
            user = getattr(request, "user", None)
            if user is not None and user.is_active and user.is_staff:
                platform = platform_scope(f"staff {user.email} in the admin")
                log.info(
                    "staff %s in the admin, every tenant's rows: %s %s",
                    user.email,
                    request.method,
                    request.path,
                )
        with tenant_context(tenant), platform:
            return self.get_response(request)
