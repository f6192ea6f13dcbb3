"""Permission checks against the role table (verticals.tenancy.roles)."""

from rest_framework import exceptions, permissions

from verticals.api.auth import CallerRefused


class TenantActionPermission(permissions.BasePermission):
    """The view names the tenant action of each request; the caller's role and scopes must allow it."""

    def has_permission(self, request, view) -> bool:
        caller = getattr(request._request, "caller", None)
        if request._request.caller_error is not None:  # e.g. the current tenant is suspended
            raise CallerRefused(request._request.caller_error)
        if caller is None or not request.user.is_authenticated:
            raise exceptions.NotAuthenticated(
                "Sign in, or send an API key as `Authorization: Bearer <key>`."
            )
        action = view.required_action()
        if action is None:
            return True
        denial = caller.denial(action)
        if denial:
            raise exceptions.PermissionDenied(denial)
        return True


class PartnerActionPermission(permissions.BasePermission):
    """Partner routes: a partner member whose partner role allows the action on some partner."""

    def has_permission(self, request, view) -> bool:
        caller = getattr(request._request, "caller", None)
        if caller is None or not request.user.is_authenticated:
            raise exceptions.NotAuthenticated("Sign in as a partner member.")
        if caller.api_key is not None:
            raise exceptions.PermissionDenied(
                "API keys act for one tenant; partner routes need a partner member's session."
            )
        action = view.required_action()
        if action is None:  # a method the route does not serve: the view answers 405
            return True
        if not caller.partner_ids_for(action):
            raise exceptions.PermissionDenied(f"None of your partner roles allows {action}.")
        return True


def require_staff(caller) -> None:
    person = caller.person if caller else None
    if person is None or not person.is_staff:
        raise exceptions.PermissionDenied(
            "Only platform staff may do this (a staff member's session or a key a staff member made)."
        )
    if caller.api_key is not None and "billing" not in caller.api_key.scopes:
        raise exceptions.PermissionDenied(
            "This API key lacks the 'billing' scope that staff billing routes need."
        )
