"""Bad input on every API write route answers 400 in the one error shape, naming the field."""

import pytest

from tests.api.test_cross_tenant_probe import PARAM_FILLERS, iter_routes

LONG = "x" * 5000

PRICE_BOOK = [
    ({}, "plan"),
    ({"plan": "nope", "item": "plan.fee", "retail": "1"}, "plan"),
    ({"plan": 5, "item": "plan.fee"}, "plan"),
    ({"plan": "team", "retail": "1"}, "item"),
    ({"plan": "team", "item": "nope.units", "retail": "1"}, "item"),
    ({"plan": "team", "item": "plan.fee"}, "retail"),
    ({"plan": "team", "item": "plan.fee", "retail": 1.5}, "retail"),
    ({"plan": "team", "item": "plan.fee", "retail": "lots"}, "retail"),
    ({"plan": "team", "item": "plan.fee", "retail": "1"}, "retail"),
    ({"plan": "team", "item": "plan.fee", "retail": "99", "colour": "red"}, "colour"),
]
PLAN = [
    ({}, "plan"),
    ({"plan": 5}, "plan"),
    ({"plan": "nope"}, "plan"),
    ({"plan": LONG}, "plan"),
    ({"plan": "team", "trial_days": -1}, "trial_days"),
    ({"plan": "team", "trial_days": "x"}, "trial_days"),
]

# route name -> method -> [(body, field the message must name)]
CASES = {
    "api:partner-price-book": {"put": PRICE_BOOK, "patch": PRICE_BOOK},
    "api:partner-brand": {
        "patch": [
            ({"brand_colour": "red"}, "brand_colour"),
            ({"support_email": "x"}, "support_email"),
            ({"brand_name": LONG}, "brand_name"),
            ({"brand_name": 5}, "brand_name"),
            ({"logo": "https://example.com/l.png"}, "logo"),
            ({"colour": "red"}, "colour"),
        ]
    },
    "api:partner-tenant-billing-plan": {"post": PLAN},
    "api:partner-tenant-plan-bare": {"post": PLAN},
    "api:subscription": {
        "post": [
            ({}, "plan"),
            ({"plan": 5}, "plan"),
            ({"plan": "nope"}, "plan"),
            ({"plan": LONG}, "plan"),
        ]
    },
    "api:project-list": {
        "post": [
            ({}, "name"),
            ({"name": 7}, "name"),
            ({"name": LONG}, "name"),
            ({"name": "ok", "description": LONG}, "description"),
            ({"name": ["a"]}, "name"),
        ],
    },
    "api:project-detail": {
        "put": [({}, "name"), ({"name": LONG}, "name")],
        "patch": [
            ({"name": ""}, "name"),
            ({"name": {"a": 1}}, "name"),
            ({"description": LONG}, "description"),
        ],
    },
    "api:invitation-list": {
        "post": [
            ({"role": "viewer"}, "email"),
            ({"email": "not-an-email", "role": "viewer"}, "email"),
            ({"email": "a@example.com"}, "role"),
            ({"email": "a@example.com", "role": "emperor"}, "role"),
            ({"email": "a" * 250 + "@example.com", "role": "viewer"}, "email"),
            ({"email": ["a@example.com"], "role": "viewer"}, "email"),
        ],
    },
    "api:member-detail": {
        "patch": [({}, "role"), ({"role": "emperor"}, "role"), ({"role": 3}, "role")],
    },
    "api:api-key-list": {
        "post": [
            ({"scopes": ["read"]}, "name"),
            ({"name": "k"}, "scopes"),
            ({"name": "k", "scopes": []}, "scopes"),
            ({"name": "k", "scopes": ["fly"]}, "scopes"),
            ({"name": "k", "scopes": "read"}, "scopes"),
            ({"name": LONG, "scopes": ["read"]}, "name"),
            ({"name": "k", "scopes": ["read"], "project": "prj_nope"}, "project"),
            ({"name": "k", "scopes": ["read"], "project": 12}, "project"),
            ({"name": "k", "scopes": ["read"], "expires_at": "tomorrow"}, "expires_at"),
            ({"name": "k", "scopes": ["read"], "role": "emperor"}, "role"),
            ({"name": "k", "scopes": ["read"], "mode": "prod"}, "mode"),
        ],
    },
    "api:partner-tenant-list": {
        "post": [
            ({}, "name"),
            ({"name": LONG}, "name"),
            ({"name": "T", "partner": "ptn_nope"}, "partner"),
            ({"name": "T", "owner_email": "nope"}, "owner_email"),
            ({"name": 5.5}, "name"),
            ({"name": "T", "plan": "nope"}, "plan"),
            ({"name": "T", "plan": 5}, "plan"),
            ({"name": "T", "trial_days": 3}, "trial_days"),
            ({"name": "T", "plan": "team", "trial_days": 999}, "trial_days"),
        ],
    },
    "api:partner-tenant-detail": {"patch": [({}, "name"), ({"name": LONG}, "name")]},
    "api:partner-tenant-suspend": {
        "post": [({"reason": LONG}, "reason"), ({"reason": ["x"]}, "reason")]
    },
    "api:job-list": {
        "post": [
            ({}, "kind"),
            ({"kind": 7}, "kind"),
            ({"kind": LONG}, "kind"),
            ({"kind": "no.such.kind"}, "kind"),
            ({"kind": "test.steps"}, "params"),
            ({"kind": "test.steps", "params": {"steps": "many"}}, "params"),
            ({"kind": "test.steps", "params": [1]}, "params"),
            ({"kind": "test.noop", "params": "{}"}, "params"),
            ({"kind": "test.noop", "task": 5}, "task"),
            ({"kind": "test.noop", "task": LONG}, "task"),
            ({"kind": "test.noop", "colour": "red"}, "colour"),
            ({"kind": "test.noop", "webhook": "https://hooks.example.com/"}, "webhook"),
            ({"kind": "test.noop", "webhook": {}}, "webhook.url"),
            ({"kind": "test.noop", "webhook": {"url": "ftp://hooks.example.com/"}}, "webhook.url"),
            (
                {
                    "kind": "test.noop",
                    "webhook": {"url": "https://hooks.example.com/", "events": ["finish"]},
                },
                "webhook.events",
            ),
            (
                {
                    "kind": "test.noop",
                    "webhook": {"url": "https://hooks.example.com/", "secret": "hunter2"},
                },
                "webhook.secret",
            ),
            (
                {
                    "kind": "test.noop",
                    "webhook": {"url": "https://hooks.example.com/", "retries": 3},
                },
                "webhook",
            ),
        ],
    },
    "api:dataset-list": {
        "post": [
            ({}, "task"),
            ({"task": 5}, "task"),
            ({"task": "sentiment"}, "file"),
            ({"task": "no-such-task", "file": "x"}, "file"),
            ({"task": "sentiment", "name": LONG}, "name"),
            ({"task": "sentiment", "seed": -1}, "seed"),
            ({"task": "sentiment", "seed": "x"}, "seed"),
            ({"task": "sentiment", "test_fraction": "half"}, "test_fraction"),
        ],
    },
    "api:dataset-versions": {
        "post": [({}, "file"), ({"seed": "x"}, "seed"), ({"description": LONG}, "description")]
    },
    "api:model-list": {
        "post": [
            ({}, "task"),
            ({"task": 5}, "task"),
            ({"task": "sentiment"}, "file"),
            ({"task": "sentiment", "name": LONG}, "name"),
        ],
    },
    "api:model-predict": {
        "post": [
            ({}, "inputs"),
            ({"inputs": 5}, "inputs"),
            ({"inputs": ""}, "inputs"),
            ({"inputs": []}, "inputs"),
            ({"inputs": "hi", "parameters": {"top_k": "x"}}, "top_k"),
            ({"inputs": "hi", "parameters": [1]}, "parameters"),
            ({"inputs": "hi", "extra": 1}, "extra"),
            ({"inputs": ["ok", 3]}, "inputs[1]"),
        ],
    },
    "api:model-predict-bare": {"post": [({}, "inputs"), ({"inputs": {"text": "hi"}}, "inputs")]},
}
# Write routes that take no body.
NO_BODY = {
    "api:api-key-revoke": "post",
    "api:partner-tenant-reactivate": "post",
    "api:project-detail": "delete",
    "api:member-detail": "delete",
    "api:invitation-resend": "post",
    "api:invitation-revoke": "post",
    "api:job-cancel": "post",
    "api:dataset-detail": "delete",
    "api:model-detail": "delete",
}


def _client_for(name, world):
    return world.partner_session() if name.startswith("api:partner-") else world.session()


def _path(name, regex, params, world):
    from django.urls import reverse

    return reverse(name, kwargs={p: PARAM_FILLERS[p](world) for p in params})


@pytest.mark.django_db
def test_every_api_write_route_has_bad_input_cases(world_a):
    from django.urls import resolve

    missing = []
    for name, regex, params, _view in iter_routes():
        if not name.startswith("api:"):
            continue
        path = _path(name, regex, params, world_a)
        callback = resolve(path).func
        methods = set(getattr(callback, "actions", {}) or {}) & {"post", "put", "patch", "delete"}
        for method in methods:
            if method not in CASES.get(name, {}) and NO_BODY.get(name) != method:
                missing.append(f"{method.upper()} {name}")
    assert not missing, "write routes without bad-input cases: " + ", ".join(missing)


@pytest.mark.django_db
def test_bad_input_answers_400_naming_the_field(world_a):
    routes = {r.name: (r.regex, r.params) for r in iter_routes()}
    failures = []
    for name, methods in CASES.items():
        regex, params = routes[name]
        path = _path(name, regex, params, world_a)
        client = _client_for(name, world_a)
        for method, cases in methods.items():
            for body, field_name in cases:
                answer = getattr(client, method)(path, body, format="json")
                error = (
                    answer.json().get("error", {})
                    if answer.headers.get("Content-Type", "").startswith("application/json")
                    else {}
                )
                ok = (
                    answer.status_code == 400
                    and set(error) == {"code", "message", "details"}
                    and error["message"].startswith(f"{field_name}:")
                    and field_name in error["details"]
                )
                if not ok:
                    failures.append(
                        f"{method.upper()} {name} {str(body)[:60]}: {answer.status_code} {answer.content[:200]!r}"
                    )
    assert not failures, "\n".join(failures)


@pytest.mark.django_db
def test_malformed_json_and_wrong_media_type(world_a):
    client = world_a.session()
    answer = client.post("/api/v1/projects/", data="{not json", content_type="application/json")
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "parse_error"
    answer = client.post("/api/v1/projects/", data="name=x", content_type="text/csv")
    assert answer.status_code == 415 and answer.json()["error"]["code"] == "unsupported_media_type"


@pytest.mark.django_db
def test_duplicate_names_are_400_naming_the_field(world_a):
    answer = world_a.session().post(
        "/api/v1/projects/", {"name": world_a.project.name}, format="json"
    )
    assert answer.status_code == 400 and answer.json()["error"]["message"].startswith("name:")
    answer = world_a.session().post(
        "/api/v1/invitations/", {"email": world_a.owner.email, "role": "viewer"}, format="json"
    )
    assert answer.status_code == 400 and answer.json()["error"]["message"].startswith("email:")
    answer = world_a.session().post(
        "/api/v1/invitations/", {"email": world_a.invitation.email, "role": "viewer"}, format="json"
    )
    assert answer.status_code == 400 and "open invitation" in answer.json()["error"]["message"]
    answer = world_a.partner_session().post(
        "/api/v1/partner/tenants/", {"name": world_a.tenant.name}, format="json"
    )
    assert answer.status_code == 400 and answer.json()["error"]["message"].startswith("name:")
