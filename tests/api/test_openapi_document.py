"""The OpenAPI document says what the API answers: every error status in the one error shape,
nullable fields marked nullable, parameters with their bounds (tests/api/test_openapi_fuzz.py
checks the same against generated calls)."""

import pytest
from django.core.management import call_command

from verticals.tenancy.scoping import tenant_context
from verticals.tenancy.services import project_create

ERROR = {"$ref": "#/components/schemas/Error"}
METHODS = ("get", "put", "post", "patch", "delete")


@pytest.fixture
def document(db, tmp_path):
    import yaml

    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    return yaml.safe_load(out.read_text())


def operations(document):
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield f"{method.upper()} {path}", item[method]


def test_every_operation_documents_its_error_answers_in_the_error_shape(document):
    missing, checked = [], 0
    for label, operation in operations(document):
        wanted = {"400", "401", "403", "404", "429"} | (
            {"413", "415"} if "requestBody" in operation else set()
        )
        responses = operation["responses"]
        missing += [f"{label}: {status}" for status in sorted(wanted - set(responses))]
        for status, response in responses.items():
            if (
                status[0] in "45"
                and response.get("content", {}).get("application/json", {}).get("schema") != ERROR
            ):
                missing.append(f"{label}: {status} is not in the error shape")
        checked += 1
    assert checked >= 70 and not missing, "\n".join(missing)
    error = document["components"]["schemas"]["ErrorDetail"]
    assert set(error["required"]) == {"code", "message", "details"}


def test_optional_query_parameters_may_be_empty_and_pages_are_bounded(document):
    projects = document["paths"]["/api/v1/projects/"]["get"]["parameters"]
    by_name = {p["name"]: p for p in projects}
    assert all(p["allowEmptyValue"] for p in projects if p["in"] == "query")
    assert by_name["page_size"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 200}
    assert by_name["page"]["schema"]["minimum"] == 1


def test_fields_that_can_be_null_are_nullable(document):
    schemas = document["components"]["schemas"]
    for component, field in [
        ("ApiKey", "project"),
        ("ApiKey", "created_by"),
        ("Project", "created_by"),
        ("Job", "created_by"),
        ("Dataset", "created_by"),
    ]:
        assert schemas[component]["properties"][field].get("nullable") is True, (component, field)


@pytest.mark.django_db
def test_answers_with_null_fields_match_the_document(api_schema, world_a):
    """A key for the whole tenant (`project` null) and a project no person made (`created_by` null),
    listed, read and partly updated (DRF leaves out a field with a default in a partial update)."""
    with tenant_context(world_a.tenant):
        made = project_create(tenant=world_a.tenant, name="Made by the platform")
    assert made.created_by is None and world_a.key.project is None
    auth = {"Authorization": f"Bearer {world_a.secret}"}
    cases = [
        api_schema["/api/v1/api-keys/"]["GET"].Case(),
        api_schema["/api/v1/api-keys/{key_id}/"]["GET"].Case(
            path_parameters={"key_id": world_a.key.public_id}
        ),
        api_schema["/api/v1/projects/"]["GET"].Case(),
        api_schema["/api/v1/projects/{project_id}/"]["PATCH"].Case(
            path_parameters={"project_id": made.public_id},
            body={"description": "now described"},
            media_type="application/json",
        ),
    ]
    for case in cases:
        answer = case.call_and_validate(headers=auth)
        assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["created_by"] is None and answer.json()["description"] == "now described"


@pytest.mark.django_db
def test_lengths_are_checked_as_sent_as_the_document_says(world_a):
    """`name` has maxLength 120: 121 characters are refused even when the end is whitespace DRF trims."""
    answer = world_a.client().post("/api/v1/projects/", {"name": "x" + " " * 120}, format="json")
    assert answer.status_code == 400 and answer.json()["error"]["message"].startswith("name:")
    assert (
        world_a.client()
        .post("/api/v1/projects/", {"name": " padded "}, format="json")
        .json()["name"]
        == "padded"
    )


@pytest.mark.django_db
def test_bodies_are_json_except_uploads_as_the_document_says(document, world_a):
    paths = document["paths"]
    assert set(paths["/api/v1/projects/"]["post"]["requestBody"]["content"]) == {"application/json"}
    assert (
        "multipart/form-data"
        in paths["/api/v1/projects/{project_id}/datasets/"]["post"]["requestBody"]["content"]
    )
    answer = world_a.client().post("/api/v1/projects/", {"name": "form"}, format="multipart")
    assert answer.status_code == 415 and answer.json()["error"]["code"] == "unsupported_media_type"
    answer = world_a.client().post(
        "/api/v1/projects/", data="name=form", content_type="application/x-www-form-urlencoded"
    )
    assert answer.status_code == 415
