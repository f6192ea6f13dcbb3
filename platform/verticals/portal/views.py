"""Portal pages: projects, members and invitations, API keys, audit log, tenant switcher.

Writes go through the tenancy services.
"""

import logging
from functools import wraps

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from verticals.portal.forms import (
    ApiKeyForm,
    InviteForm,
    LoginForm,
    NewAccountForm,
    ProjectForm,
    RoleForm,
)
from verticals.sdk.errors import ServiceError
from verticals.tenancy import services
from verticals.tenancy.caller import SESSION_TENANT_KEY
from verticals.tenancy.models import ApiKey, AuditEvent, Invitation, Membership, Project, User
from verticals.tenancy.roles import AUDITED_ACTIONS, grantable_roles
from verticals.tenancy.throttle import REQUEST_LOCKOUT

logger = logging.getLogger(__name__)


def _refuse(request, message: str, status: int = 403):
    return render(request, "portal/refused.html", {"message": message}, status=status)


def service_refusal(error: ServiceError) -> tuple[str, int]:
    """What a page shows when a service refused or failed the work (a ServiceError: the plan,
    serving, an input): its message, and the status the API answers it with (api/errors.py)."""
    if error.status >= 500:
        logger.warning("%s (%s): %s", type(error).__name__, error.code, error.message)
    return error.message, error.status


class LoginView(auth_views.LoginView):
    """Sign in. A sign-in refused by the throttle answers 429 with Retry-After, and the form says
    until when."""

    template_name = "portal/login.html"
    redirect_authenticated_user = True
    authentication_form = LoginForm

    def form_invalid(self, form):
        response = super().form_invalid(form)
        lockout = getattr(self.request, REQUEST_LOCKOUT, None)
        if lockout is not None:
            response.status_code = 429
            response["Retry-After"] = str(lockout.retry_after)
        return response


def page_actions(action: str, methods: tuple[str, ...], writes: str | None) -> dict[str, str]:
    """The role-table action each method of a page needs: `action`, and `writes` for a POST where
    the page reads under one action and writes under another."""
    return {method: writes if writes and method == "POST" else action for method in methods}


def tenant_page(action: str, methods: tuple[str, ...] = ("GET",), writes: str | None = None):
    """A portal page of the current tenant: signed in, tenant not suspended, role allows `action`.

    `methods` are the HTTP methods it answers; others get 405. `writes` is the action a POST needs
    when it is not `action` (the page checks it where it writes). The page declares both on
    itself (`role_actions`): tests/tenancy/test_roles_routes.py checks every role against them.
    """

    def decorator(view):
        @login_required
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if request.method not in methods:
                return HttpResponseNotAllowed(methods)
            caller = request.caller
            if request.caller_error is not None:
                return _refuse(request, request.caller_error.message, request.caller_error.status)
            if caller.tenant is None:
                return _refuse(
                    request, "You are not a member of any tenant yet: ask an owner to invite you."
                )
            denial = caller.denial(action)
            if denial:
                return _refuse(request, denial)
            return view(request, *args, **kwargs)

        wrapped.role_actions = page_actions(action, methods, writes)
        return wrapped

    return decorator


def _require(caller, action: str) -> None:
    """For pages that read under one action and write under another."""
    denial = caller.denial(action)
    if denial:
        raise PermissionDenied(denial)


def _apply_errors(form, error: ValidationError) -> None:
    for field_name, problems in error.message_dict.items():
        form.add_error(field_name if field_name in form.fields else None, problems)


@tenant_page("project.view")
def _tenant_home(request):
    return redirect("portal:projects")


@login_required
def home(request):
    caller = getattr(request, "caller", None)
    # A partner's staff who belong to no tenant work in the partner console (checked before the
    # tenant page's own checks, which would refuse them: they have no tenant).
    if (
        caller is not None
        and caller.tenant is None
        and caller.user is not None
        and caller.partner_memberships()
    ):
        return redirect("portal:partner_tenants")
    return _tenant_home(request)


home.role_actions = _tenant_home.role_actions


@tenant_page("project.view", methods=("GET", "POST"), writes="project.create")
def projects(request):
    caller = request.caller
    form = ProjectForm(request.POST if request.method == "POST" else None)
    if request.method == "POST":
        _require(caller, "project.create")
        if form.is_valid():
            try:
                project = services.project_create(
                    tenant=caller.tenant, actor=caller, **form.cleaned_data
                )
            except ValidationError as error:
                _apply_errors(form, error)
            else:
                messages.success(request, f"Project '{project.name}' created.")
                return redirect("portal:projects")
    context = {"form": form, "projects": Project.objects.select_related("created_by")}
    return render(request, "portal/projects.html", context, status=400 if form.errors else 200)


@tenant_page("project.view")
def project_detail(request, project_id: str):
    project = get_object_or_404(Project.objects.all(), public_id=project_id)
    return render(request, "portal/project_detail.html", {"project": project})


@tenant_page("project.delete", methods=("POST",))
def project_delete(request, project_id: str):
    project = get_object_or_404(Project.objects.all(), public_id=project_id)
    services.project_delete(project=project, actor=request.caller)
    messages.success(request, f"Project '{project.name}' deleted.")
    return redirect("portal:projects")


@tenant_page("member.view", methods=("GET", "POST"), writes="member.invite")
def members(request):
    caller = request.caller
    form = InviteForm(
        request.POST if request.method == "POST" else None, grantable=grantable_roles(caller.role)
    )
    if request.method == "POST":
        _require(caller, "member.invite")
        if form.is_valid():
            try:
                invitation = services.invitation_create(caller=caller, **form.cleaned_data)
            except ValidationError as error:
                _apply_errors(form, error)
            else:
                messages.success(
                    request, f"Invitation sent to {invitation.email} ({invitation.role})."
                )
                return redirect("portal:members")
    context = {
        "form": form,
        "members": Membership.objects.select_related("user"),
        "invitations": Invitation.objects.filter(accepted_at__isnull=True, revoked_at__isnull=True),
        "grantable": grantable_roles(caller.role),
    }
    return render(request, "portal/members.html", context, status=400 if form.errors else 200)


@tenant_page("member.invite", methods=("POST",))
def invitation_manage(request, invitation_id: str, verb: str):
    invitation = get_object_or_404(Invitation.objects.all(), public_id=invitation_id)
    change = {"resend": services.invitation_resend, "revoke": services.invitation_revoke}[verb]
    try:
        change(invitation=invitation, actor=request.caller)
    except ValidationError as error:
        messages.error(request, _error_text(error))
    else:
        messages.success(
            request,
            f"Invitation to {invitation.email}: {'sent again' if verb == 'resend' else 'revoked'}.",
        )
    return redirect("portal:members")


@require_http_methods(["GET", "POST"])
def invitation(request, token: str):
    """The link in an invitation email: sign in (or create the account) and accept."""
    found = services.invitation_find(token)
    if found is None:
        return _refuse(
            request, "This invitation is no longer valid: ask for a new one.", status=404
        )
    request.brand_partner = found.tenant.partner
    if found.tenant.is_suspended:
        return _refuse(request, found.tenant.suspension_message())
    context = {"invitation": found, "tenant": found.tenant, "account_exists": False, "form": None}
    if request.user.is_authenticated:
        if request.user.email.lower() != found.email.lower():
            context["wrong_user"] = True
            return render(request, "portal/invitation.html", context, status=403)
        if request.method == "POST":
            return _accept(request, found, request.user)
        return render(request, "portal/invitation.html", context)
    if User.objects.filter(email__iexact=found.email).exists():
        context["account_exists"] = True
        return render(request, "portal/invitation.html", context)
    form = NewAccountForm(request.POST if request.method == "POST" else None, email=found.email)
    context["form"] = form
    if request.method == "POST" and form.is_valid():
        try:
            user = services.user_create_from_invitation(
                invitation=found,
                full_name=form.cleaned_data["full_name"],
                password=form.cleaned_data["password1"],
            )
        except ValidationError as error:
            _apply_errors(form, error)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return _accept(request, found, user)
    return render(request, "portal/invitation.html", context, status=400 if form.errors else 200)


def _accept(request, found, user):
    try:
        membership = services.invitation_accept(invitation=found, user=user)
    except ValidationError as error:
        return _refuse(request, _error_text(error), status=409)
    request.session[SESSION_TENANT_KEY] = membership.tenant.public_id
    messages.success(request, f"Welcome to {membership.tenant.name}.")
    return redirect("portal:projects")


def _is_htmx(request) -> bool:
    return request.headers.get("HX-Request") == "true"


def _error_text(error: Exception) -> str:
    return " ".join(getattr(error, "messages", None) or [str(error)])


def _member_row(request, membership, *, error: str = "", notice: str = ""):
    context = {
        "m": membership,
        "grantable": grantable_roles(request.caller.role),
        "row_error": error,
        "row_notice": notice,
    }
    return render(request, "portal/_member_row.html", context)


def _member_outcome(
    request, membership, *, error: str = "", notice: str = "", removed: bool = False
):
    """HTMX gets the row (or nothing, once removed) to swap in place; a plain form post gets a redirect."""
    if _is_htmx(request):
        if removed:
            return HttpResponse("")
        membership.refresh_from_db()
        return _member_row(request, membership, error=error, notice=notice)
    if error:
        messages.error(request, error)
    else:
        messages.success(request, notice)
    return redirect("portal:members")


@tenant_page("member.change_role", methods=("POST",))
def member_role(request, member_id: str):
    membership = get_object_or_404(Membership.objects.select_related("user"), public_id=member_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        return _member_outcome(request, membership, error="Choose a valid role.")
    try:
        services.member_change_role(
            caller=request.caller, membership=membership, role=form.cleaned_data["role"]
        )
    except (ValidationError, PermissionDenied) as error:
        return _member_outcome(request, membership, error=_error_text(error))
    return _member_outcome(
        request, membership, notice=f"{membership.user.email} is now {membership.role}."
    )


@tenant_page("member.remove", methods=("POST",))
def member_remove(request, member_id: str):
    membership = get_object_or_404(Membership.objects.select_related("user"), public_id=member_id)
    try:
        services.member_remove(caller=request.caller, membership=membership)
    except (ValidationError, PermissionDenied) as error:
        return _member_outcome(request, membership, error=_error_text(error))
    return _member_outcome(
        request, membership, notice=f"{membership.user.email} removed.", removed=True
    )


@tenant_page("api_key.view", methods=("GET", "POST"), writes="api_key.create")
def api_keys(request):
    caller = request.caller
    grantable = grantable_roles(caller.role)
    form = ApiKeyForm(request.POST if request.method == "POST" else None, grantable=grantable)
    created = None
    if request.method == "POST":
        _require(caller, "api_key.create")
        if form.is_valid():
            try:
                key, secret = services.api_key_create(caller=caller, **form.cleaned_data)
            except ValidationError as error:
                _apply_errors(form, error)
            else:
                created = {"key": key, "secret": secret}
                form = ApiKeyForm(grantable=grantable)
    context = {
        "form": form,
        "keys": ApiKey.objects.select_related("project", "created_by"),
        "created": created,
    }
    # The secret is rendered into this one response only; a reload shows the list without it.
    response = render(request, "portal/api_keys.html", context, status=400 if form.errors else 200)
    response["Cache-Control"] = "no-store"
    return response


@tenant_page("api_key.revoke", methods=("POST",))
def api_key_revoke(request, key_id: str):
    key = get_object_or_404(ApiKey.objects.select_related("project"), public_id=key_id)
    services.api_key_revoke(api_key=key, actor=request.caller)
    if _is_htmx(request):
        return render(request, "portal/_api_key_row.html", {"k": key})
    messages.success(request, f"Key '{key.name}' revoked.")
    return redirect("portal:api_keys")


@tenant_page("audit.view")
def audit_log(request):
    events = AuditEvent.objects.all()
    action = request.GET.get("action", "")
    if action:
        events = events.filter(action=action)
    return render(
        request,
        "portal/audit.html",
        {"events": events[:200], "action": action, "actions": sorted(AUDITED_ACTIONS)},
    )


@login_required
@require_POST
def switch_tenant(request):
    """Choose the tenant the portal (and session API calls without X-Tenant) act on."""
    wanted = request.POST.get("tenant", "")
    memberships = request.caller.memberships if request.caller else []
    if not any(m.tenant.public_id == wanted for m in memberships):
        raise Http404("No such tenant among your memberships.")
    request.session[SESSION_TENANT_KEY] = wanted
    return redirect("portal:projects")
