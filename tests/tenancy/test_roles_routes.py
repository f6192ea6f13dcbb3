"""Every API route and portal page against docs/roles.md, generated from the URL conf.

Each route names the role-table action each of its methods needs (API views: their `actions`
or `required_action()`; portal pages: `tenant_page(...)` / `partner_page(...)`, which declare
`role_actions` / `partner_actions`). For every route and method, every tenant role (as a member
signed in, and as an API key of that role) and every partner role calls it on its own tenant's
objects: a role the page in docs/roles.md allows must not be refused (403), a role it does not
allow must be. A route that declares no action, and is not listed below with what it takes
instead, fails. The viewer's "no dataset rows anywhere" gets its own checks at the end.
"""

import itertools
import json
from functools import cached_property
from types import SimpleNamespace

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.api.test_cross_tenant_probe import exemption, invoice_of, iter_routes
from tests.conftest import make_finished_job, make_key, make_member
from tests.registry.factories import make_dataset_version, make_model_version
from tests.tenancy.test_roles import doc_table, partner_member_session
from verticals.tenancy.caller import Caller
from verticals.tenancy.models import AuditEvent
from verticals.tenancy.paths import is_api_path
from verticals.tenancy.roles import PartnerRole, Role
from verticals.tenancy.scoping import tenant_context
from verticals.tenancy.services import invite, project_create, tenant_create

pytestmark = pytest.mark.django_db
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_names = itertools.count()

# Routes that need no action of the role tables, each with what they take instead.
SIGNED_IN, STAFF = "any signed-in caller", "platform staff"
NO_ACTION = {
    "api:me": SIGNED_IN,  # who is calling
    "portal:switch_tenant": SIGNED_IN,  # picks among the caller's own memberships
    "api:usage-events": STAFF,
    "api:usage-events-bare": STAFF,
    "api:insights": STAFF,
    "api:invoice-credit-notes": STAFF,
    "portal:insights": STAFF,
    "api-not-found": SIGNED_IN,  # unknown API routes: 404 for everyone
}


def _doc_roles(first_header: str) -> dict[str, set[str]]:
    columns, rows = doc_table(first_header)
    return {
        action: {column for column, cell in zip(columns, cells, strict=True) if cell == "yes"}
        for action, cells in rows.items()
    }


TENANT_DOC = _doc_roles("action")  # docs/roles.md, not roles.py: the page is what is checked
PARTNER_DOC = _doc_roles("action | partner_admin")


def declared(route, caller) -> dict[str, tuple[str, str]] | None:
    """{method: (table, action)} a route declares, `table` 'tenant' or 'partner'; None if it declares nothing.

    A view's required_action() may depend on the caller (GET /v1/models: model.view for a caller
    that may not predict): it is asked with `caller`, the caller that will call it.
    """
    from verticals.api.base import PartnerScopedViewSet

    view, cls = route.callback, getattr(route.callback, "cls", None)
    if cls is None:  # a portal page
        for attribute, table in (("role_actions", "tenant"), ("partner_actions", "partner")):
            if hasattr(view, attribute):
                return {
                    method: (table, action) for method, action in getattr(view, attribute).items()
                }
        return None
    table = "partner" if issubclass(cls, PartnerScopedViewSet) else "tenant"
    if getattr(view, "actions", None):  # a viewset route: method -> DRF action -> role-table action
        return {method.upper(): (table, cls.actions[name]) for method, name in view.actions.items()}
    found = {}
    for method in METHODS:
        if not hasattr(cls, method.lower()):
            continue
        instance = cls()
        instance.request = SimpleNamespace(method=method, _request=SimpleNamespace(caller=caller))
        action = instance.required_action()
        if action is not None:
            found[method] = (table, action)
    return found or None


class Objects:
    """A tenant's objects to fill a route's path with, each made on first use."""

    def __init__(self, world):
        self.world = world
        self.tenant = world.tenant

    @cached_property
    def project(self):
        with tenant_context(self.tenant):
            return project_create(tenant=self.tenant, name=f"roles-{next(_names)}")

    @cached_property
    def fill(self) -> dict:
        return {
            "project_id": lambda: self.project.public_id,
            "job_id": lambda: (
                make_finished_job(self.tenant, self.project, self.world.owner).public_id
            ),
            "dataset_id": lambda: (
                make_dataset_version(
                    self.world, project=self.project, name=f"d{next(_names)}"
                ).dataset.public_id
            ),
            "model_id": lambda: (
                make_model_version(
                    self.world, project=self.project, name=f"m{next(_names)}"
                ).public_id
            ),
            # The OpenAI routes' model: the role check comes before the model is looked up, and a
            # text-generation model takes long to make, so a missing one (404 once allowed) does.
            "model": lambda: "mdl_doesnotexist000000",
            "member_id": lambda: (
                make_member(self.tenant, f"member{next(_names)}@example.com", Role.VIEWER).public_id
            ),
            "key_id": lambda: (
                make_key(self.tenant, role=Role.VIEWER, scopes=["read"], user=self.world.owner)[
                    0
                ].public_id
            ),
            "invitation_id": lambda: (
                invite(
                    tenant=self.tenant,
                    email=f"invitee{next(_names)}@example.com",
                    role=Role.VIEWER,
                    actor=None,
                ).public_id
            ),
            "event_id": lambda: (
                AuditEvent.dangerously_unscoped.filter(tenant=self.tenant).first().public_id
            ),
            "invoice_id": lambda: invoice_of(self.world).public_id,
            "tenant_id": lambda: (
                tenant_create(partner=self.world.partner, name=f"Customer {next(_names)}").public_id
            ),
        }

    def path(self, route) -> str:
        from django.urls import reverse

        if "rest" in route.params:
            return "/api/v1/no-such-route/"
        return reverse(route.name, kwargs={name: self.fill[name]() for name in route.params})


def call(client, method: str, path: str):
    """The call with an empty body: a role that may act gets past the role check and no further
    than the body's check (400), so nothing heavy runs."""
    if method == "GET":
        return client.get(path)
    if is_api_path(path):
        return getattr(client, method.lower())(path, {}, format="json")
    return getattr(client, method.lower())(path, {})


def refused(answer) -> bool:
    return answer.status_code == 403


def routes_to_check():
    for route in iter_routes():
        if exemption(route.name) or route.name.startswith("<unnamed>"):
            continue
        yield route


def test_every_route_declares_its_actions_and_they_are_in_the_doc(world_a):
    caller = Caller(user=world_a.owner, tenant=world_a.tenant, role=Role.OWNER)
    undeclared, unknown, checked = [], [], 0
    for route in routes_to_check():
        actions = declared(route, caller)
        if actions is None:
            if route.name not in NO_ACTION:
                undeclared.append(f"{route.name} ({route.regex})")
            continue
        checked += 1
        for method, (table, action) in actions.items():
            if action not in (TENANT_DOC if table == "tenant" else PARTNER_DOC):
                unknown.append(f"{method} {route.name}: {action}")
    assert not undeclared, (
        "Routes that declare no action of docs/roles.md: give the view its actions (tenant_page, "
        "partner_page, `actions`, required_action) or list it in NO_ACTION with why:\n"
        + "\n".join(undeclared)
    )
    assert not unknown, "Actions that docs/roles.md does not list:\n" + "\n".join(unknown)
    assert checked >= 80


def _principals(world, role):
    """A member of `role` signed in (portal and API) and an API key of `role` (API only)."""
    member = make_member(world.tenant, f"{role}-{next(_names)}@example.com", role)
    session = APIClient()
    session.force_login(member.user)
    _key, secret = make_key(world.tenant, role=role, user=world.owner)
    key = APIClient()
    key.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    caller = Caller(user=member.user, tenant=world.tenant, role=role)
    return {"session": session, "key": key}, caller


def _check(route, method, who, client, path, table, action, allowed, problems):
    answer = call(client, method, path)
    text = (
        "" if getattr(answer, "streaming", False) else answer.content.decode(errors="replace")[:200]
    )
    assert answer.status_code < 500, f"{method} {path} as {who}: {answer.status_code} {text}"
    if allowed and refused(answer):
        problems.append(
            f"{method} {route.name} as {who}: refused, but docs/roles.md allows {action}: {text}"
        )
    if (
        not allowed
        and not refused(answer)
        and not (table == "partner" and answer.status_code == 404)
    ):
        problems.append(
            f"{method} {route.name} as {who}: {answer.status_code}, but docs/roles.md does not allow {action}"
        )


@pytest.mark.parametrize("role", list(Role))
def test_every_route_answers_each_tenant_role_as_docs_roles_md_says(world_a, role):
    principals, caller = _principals(world_a, role)
    shared = Objects(world_a)
    problems, checked = [], 0
    for route in routes_to_check():
        actions = declared(route, caller)
        if actions is None:
            _check_no_action(route, principals, shared, problems)
            continue
        for method, (table, action) in actions.items():
            checked += 1
            allowed = table == "tenant" and role in TENANT_DOC[action]
            # A call that may change what it names gets objects of its own; reads share theirs.
            objects = shared if method == "GET" or not route.params else Objects(world_a)
            path = objects.path(route)
            for who, client in principals.items():
                if who == "key" and not is_api_path(path):
                    continue  # the portal goes by the session
                _check(
                    route, method, f"{role} ({who})", client, path, table, action, allowed, problems
                )
    assert not problems, "\n".join(problems)
    assert checked >= 100, checked


def _check_no_action(route, principals, objects, problems):
    need = NO_ACTION[route.name]
    path = objects.path(route)
    for method in ("GET", "POST"):
        answer = call(principals["session"], method, path)
        if need == STAFF and answer.status_code < 400 and answer.status_code != 405:
            problems.append(
                f"{method} {route.name}: {answer.status_code} for a member who is not staff"
            )


@pytest.mark.parametrize("role", list(PartnerRole))
def test_every_partner_route_answers_each_partner_role_as_docs_roles_md_says(world_a, role):
    session = partner_member_session(world_a.partner, role)
    caller = Caller(user=session.user)
    shared = Objects(world_a)
    problems = []
    for route in routes_to_check():
        actions = declared(route, caller)
        for method, (table, action) in (actions or {}).items():
            if table != "partner":
                continue
            objects = shared if method == "GET" or not route.params else Objects(world_a)
            _check(
                route,
                method,
                role,
                session,
                objects.path(route),
                table,
                action,
                role in PARTNER_DOC[action],
                problems,
            )
    assert not problems, "\n".join(problems)


# --- the viewer sees no dataset rows anywhere ----------------------------------------------------


@pytest.fixture
def batch_output(world_a, run_job):
    """A succeeded batch_predict job over a small dataset: its output echoes the rows."""
    model = make_model_version(world_a, name="batch-model")
    version = make_dataset_version(world_a, rows=12, name="batch-data")
    job = run_job(
        "batch_predict",
        "sentiment",
        {"model": model.public_id, "dataset": version.public_id},
        in_project=world_a.project,
    )
    assert job.status == "succeeded", job.error_traceback
    return f"/api/v1/projects/{world_a.project.public_id}/jobs/{job.public_id}/output/"


def _examples(version) -> list[str]:
    from verticals.registry.services import dataset_preview

    texts = [row["input"] for row in dataset_preview(version, limit=5)]
    assert texts
    return texts


def test_a_viewer_cannot_read_a_batch_predict_output_but_can_see_the_job(world_a, batch_output):
    principals, _caller = _principals(world_a, Role.VIEWER)
    for who, client in principals.items():
        answer = client.get(batch_output)
        assert answer.status_code == 403, (who, answer.status_code)
        error = answer.json()["error"]
        assert error["code"] == "permission_denied" and "dataset.download" in error["message"], who
        assert client.get(batch_output.removesuffix("output/")).status_code == 200, (
            who
        )  # job.view it keeps
    developers, _caller = _principals(world_a, Role.DEVELOPER)
    for who, client in developers.items():
        answer = client.get(batch_output)
        assert answer.status_code == 200, who
        rows = [
            json.loads(line) for line in b"".join(answer.streaming_content).decode().splitlines()
        ]
        assert len(rows) == 12 and {"ref", "label", "input"} <= set(rows[0])


def test_the_portal_dataset_page_shows_a_viewer_statistics_but_no_examples(world_a):
    version = make_dataset_version(world_a, rows=12, name="preview-data")
    examples = _examples(version)
    page = f"/projects/{world_a.project.public_id}/datasets/{version.dataset.public_id}/"
    viewer = Client()
    viewer.force_login(make_member(world_a.tenant, "viewer-preview@example.com", Role.VIEWER).user)
    seen = viewer.get(page)
    assert seen.status_code == 200
    html = seen.content.decode()
    assert "does not allow downloading datasets" in html and str(version.rows) in html
    assert not any(text in html for text in examples)
    developer = Client()
    developer.force_login(
        make_member(world_a.tenant, "dev-preview@example.com", Role.DEVELOPER).user
    )
    shown = developer.get(page).content.decode()
    assert all(text in shown for text in examples)
