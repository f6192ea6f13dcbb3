"""Input no database can take is refused by name, never a server error: NUL characters anywhere
(PostgreSQL's text and jsonb refuse them) and lone surrogates (no database encodes them), dates out
of range, bodies over the limit, numbers no column holds. Each answer is 4xx in the API's shape
(OpenAI's on /v1/), on SQLite as on PostgreSQL, and nothing was written."""

import json

import pytest
from django.urls import reverse

from tests.api.test_cross_tenant_probe import BOGUS, iter_routes
from verticals.tenancy.models import Project

OUT_OF_RANGE = [
    "2020-01-01T00:00:00+17:49",
    "2020-01-01T00:00:00-12:30",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:00-05:00",
]


def assert_names(answer, field: str, status: int = 400):
    """`answer` is `status` in the one error shape, its message starting with `field`."""
    assert answer.status_code == status, (answer.status_code, answer.content[:300])
    error = answer.json()["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert error["message"].startswith(f"{field}:"), error["message"]
    assert field in error["details"], error


def assert_openai_names(answer, param: str, status: int = 400):
    """`answer` is `status` in OpenAI's error shape, naming `param`."""
    assert answer.status_code == status, (answer.status_code, answer.content[:300])
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    assert error["message"].startswith(f"{param}:"), error["message"]


# --- dates ----------------------------------------------------------------------------------


def date_filters(world):
    jobs = f"/api/v1/projects/{world.project.public_id}/jobs/"
    return [
        ("/api/v1/projects/", "created_after"),
        ("/api/v1/projects/", "created_before"),
        (jobs, "created_after"),
        (jobs, "created_before"),
        ("/api/v1/audit-events/", "since"),
        ("/api/v1/audit-events/", "until"),
        ("/api/v1/usage/", "start"),
        ("/api/v1/usage/", "end"),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_dates_out_of_range_are_400_naming_the_filter(world_a, value):
    client = world_a.client()
    for path, field in date_filters(world_a):
        assert_names(client.get(path, {field: value}), field)


@pytest.mark.django_db
def test_dates_with_an_offset_clocks_use_filter_in_utc(world_a):
    """The offset is honoured (and the database sees UTC): 14:00 at +14:00 is midnight UTC."""
    created = world_a.project.created_at
    just_after = created.replace(microsecond=0).timestamp() + 1
    from datetime import datetime, timedelta, timezone

    kiribati = timezone(timedelta(hours=14))
    after = datetime.fromtimestamp(just_after, kiribati).isoformat()
    before = datetime.fromtimestamp(just_after - 3600, timezone(timedelta(hours=-12))).isoformat()
    client = world_a.client()
    ids = lambda answer: [p["id"] for p in answer.json()["results"]]  # noqa: E731
    assert ids(client.get("/api/v1/projects/", {"created_after": after})) == []
    assert ids(client.get("/api/v1/projects/", {"created_before": after})) == [
        world_a.project.public_id
    ]
    assert ids(client.get("/api/v1/projects/", {"created_after": before})) == [
        world_a.project.public_id
    ]


# --- NUL characters -------------------------------------------------------------------------


def routes_with_parameters(namespaces):
    for route in iter_routes():
        params = [p for p in route.params if p != "rest"]
        if route.name.split(":")[0] in namespaces and params:
            yield route.name, params


@pytest.mark.django_db
def test_nul_in_any_path_parameter_is_400_naming_it(world_a):
    """Generated from the URL conf: every id in every API route (and the OpenAI-compatible ones),
    refused by name before any lookup (so the other ids need not exist)."""
    client, checked = world_a.client(), 0
    for name, params in routes_with_parameters({"api", "openai"}):
        for bad in params:
            path = reverse(
                name, kwargs={p: BOGUS[p] + ("\x00" if p == bad else "") for p in params}
            )
            answer = client.get(path)
            if name.startswith("openai:"):
                assert_openai_names(answer, bad)
            else:
                assert_names(answer, bad)
            checked += 1
    assert checked >= 40


@pytest.mark.django_db
def test_nul_in_a_portal_path_is_400_not_a_server_error(world_a):
    client, checked = world_a.session(), 0
    for name, params in routes_with_parameters({"portal"}):
        path = reverse(
            name, kwargs={p: BOGUS.get(p, "x" * 20) + "\x00" for p in params}
        )  # tokens: any text
        answer = client.get(path)
        assert answer.status_code == 400, (path, answer.status_code)
        checked += 1
    assert checked >= 20


@pytest.mark.django_db
def test_nul_in_query_parameters_and_cookies_is_400_naming_them(world_a):
    client = world_a.client()
    assert_names(client.get("/api/v1/usage/", {"project": "prj_\x00"}), "project")
    assert_names(client.get("/api/v1/audit-events/", {"target_id": "x\x00"}), "target_id")
    assert_names(client.get("/api/v1/projects/", {"ordering": "name\x00"}), "ordering")
    assert_names(client.get("/api/v1/projects/", {"na\x00me": "x"}), "na\\u0000me")
    assert_openai_names(client.get("/v1/models", {"after": "\x00"}), "after")
    # A cookie is read before any view (the session): a NUL in one is refused by name too.
    client.cookies["sessionid"] = "abcdefgh\x00ijkl"
    assert_names(client.get("/api/v1/projects/"), "cookie sessionid")
    portal = world_a.session()
    portal.cookies["sessionid"] = "abcdefgh\x00ijkl"
    assert portal.get("/projects/").status_code == 400


@pytest.mark.django_db
def test_nul_in_a_body_is_400_naming_the_field_and_writes_nothing(world_a):
    client = world_a.client()
    jobs = f"/api/v1/projects/{world_a.project.public_id}/jobs/"
    answer = client.post(
        jobs,
        {"kind": "evaluate", "params": {"model": "mdl_\x00", "dataset": "ds_x"}},
        format="json",
    )
    assert_names(answer, "params.model")
    answer = client.post(
        jobs, {"kind": "test.noop", "params": {"steps": [1, {"note": "a\x00"}]}}, format="json"
    )
    assert_names(answer, "params.steps[1].note")
    before = Project.dangerously_unscoped.count()  # every tenant's: nothing is made anywhere
    assert_names(
        client.post("/api/v1/projects/", {"name": "ok", "descrip\x00tion": "x"}, format="json"),
        "descrip\\u0000tion",
    )
    datasets = f"/api/v1/projects/{world_a.project.public_id}/datasets/"  # a multipart upload route
    assert_names(
        client.post(datasets, {"task": "sentiment", "name": "a\x00b"}, format="multipart"), "name"
    )
    assert_names(
        client.post(datasets, {"task": "sentiment", "fi\x00le": "x"}, format="multipart"),
        "fi\\u0000le",
    )
    assert Project.dangerously_unscoped.count() == before
    # JSON's \ud800 escape decodes to a lone surrogate, which neither database can encode.
    answer = client.post(
        "/api/v1/projects/", data='{"name": "a\\ud800b"}', content_type="application/json"
    )
    assert_names(answer, "name")
    assert (
        answer.json()["error"]["message"] == "name: Surrogate characters are not allowed: U+D800."
    )
    answer = client.post(
        jobs,
        data='{"kind": "test.noop", "params": {"\\udfff": 1}}',
        content_type="application/json",
    )
    assert_names(answer, "params.\\udfff")
    # JSON's 1e400 reads as infinity, which jsonb has no way to store.
    answer = client.post(
        jobs,
        data='{"kind": "test.noop", "params": {"rate": [1, 1e400]}}',
        content_type="application/json",
    )
    assert_names(answer, "params.rate[1]")
    assert Project.dangerously_unscoped.count() == before
    # Not a key/value body at all: the body itself is named.
    answer = client.post(
        "/api/v1/projects/", data=json.dumps("\x00"), content_type="application/json"
    )
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid"


@pytest.mark.django_db
def test_nul_in_an_openai_body_is_400_in_openais_shape(world_a):
    client = world_a.client()
    answer = client.post(
        "/v1/chat/completions",
        {"model": "mdl_\x00x", "messages": [{"role": "user", "content": "hi"}]},
        format="json",
    )
    assert_openai_names(answer, "model")
    # Refused as the body is read, before the model is looked up (so it need not exist).
    answer = client.post(
        "/v1/chat/completions",
        {"model": BOGUS["model"], "messages": [{"role": "user", "content": "h\x00i"}]},
        format="json",
    )
    assert_openai_names(answer, "messages[0].content")
    assert_openai_names(
        client.post("/v1/completions", {"model": "x", "prompt": "\x00"}, format="json"), "prompt"
    )


# --- sizes and numbers ----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_body_over_the_limit_is_413_and_nothing_is_made(world_a, settings):
    client, before = world_a.client(), Project.dangerously_unscoped.count()  # every tenant's
    big = "x" * (
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1024 * 1024
    )  # 6 MB with the default 5 MB limit
    datasets = f"/api/v1/projects/{world_a.project.public_id}/datasets/"
    for answer in (
        client.post("/api/v1/projects/", {"name": "big", "description": big}, format="json"),
        world_a.session().post(
            "/api/v1/projects/", {"name": "big", "description": big}, format="json"
        ),
        # The fields of a multipart upload (its files have their own limit).
        client.post(datasets, {"task": "sentiment", "description": big}, format="multipart"),
    ):
        assert answer.status_code == 413, answer.content[:300]
        error = answer.json()["error"]
        assert (
            error["code"] == "request_too_large"
            and str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE) in error["message"]
        )
    answer = client.post(
        "/v1/chat/completions",
        {"model": "x", "messages": [{"role": "user", "content": big}]},
        format="json",
    )
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "request_too_large"
    assert set(answer.json()["error"]) == {"message", "type", "param", "code"}
    assert Project.dangerously_unscoped.count() == before


@pytest.mark.django_db
def test_json_nested_past_the_parsers_depth_is_400(world_a):
    body = "[" * 100_000 + "]" * 100_000
    answer = world_a.client().post("/api/v1/projects/", data=body, content_type="application/json")
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "parse_error"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    [
        "page_size=null",
        "page_size=0",
        "page_size=201",
        "page_size=-1",
        "page_size=²",
        "page=0",
        "page=x",
        "page=" + "9" * 5000,
        "page_size=" + "1" * 5000,
    ],
)
def test_page_and_page_size_out_of_range_are_400_naming_them(world_a, query):
    name = query.split("=")[0]
    assert_names(world_a.client().get(f"/api/v1/projects/?{query}"), name)


@pytest.mark.django_db
def test_a_repeated_query_parameter_is_400_naming_it(world_a):
    assert_names(world_a.client().get("/api/v1/audit-events/?target_id=a&target_id=b"), "target_id")
    assert_openai_names(world_a.client().get("/v1/models?x=1&x=2"), "x")


@pytest.mark.django_db
def test_empty_page_parameters_are_the_defaults(world_a):
    answer = world_a.client().get("/api/v1/projects/?page=&page_size=")
    assert answer.status_code == 200 and answer.json()["count"] == 1
    assert world_a.client().get("/api/v1/projects/?page=2").status_code == 404  # past the last page


@pytest.mark.django_db
def test_numbers_no_column_holds_are_400_naming_them(world_a):
    dataset = world_a.dataset_version.dataset.public_id
    download = f"/api/v1/projects/{world_a.project.public_id}/datasets/{dataset}/download/"
    assert_names(world_a.client().get(download, {"version": "9" * 30}), "version")
    assert_names(world_a.client().get(download, {"version": "9" * 5000}), "version")
    assert_names(
        world_a.partner_session().get("/api/v1/partner/growth/", {"months": "9" * 5000}), "months"
    )


@pytest.mark.django_db
def test_a_brand_change_that_changes_nothing_is_400(world_a):
    """An array, an empty object, or a multipart body whose one part has no name: nothing to do."""
    client = world_a.partner_session()
    for answer in (
        client.patch("/api/v1/partner/brand/", [], format="json"),
        client.patch("/api/v1/partner/brand/", {}, format="json"),
        client.patch(
            "/api/v1/partner/brand/",
            data=b"--b\r\n\r\n[]\r\n--b--\r\n",
            content_type="multipart/form-data; boundary=b",
        ),
    ):
        assert answer.status_code == 400, answer.content[:200]
        assert "brand_colour" in answer.json()["error"]["message"]
    assert (
        client.patch("/api/v1/partner/brand/", {"brand_name": "New"}, format="json").json()[
            "brand_name"
        ]
        == "New"
    )
