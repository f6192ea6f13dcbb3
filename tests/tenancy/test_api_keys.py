"""API keys: recognisable format, hashed storage, revocation, expiry, scopes, last use."""

from datetime import timedelta

import pytest
from django.apps import apps
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from verticals.tenancy import keys
from verticals.tenancy.models import ApiKey


def bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_secret_format_has_prefix_and_valid_checksum():
    parsed = keys.generate_secret("live")
    assert parsed.secret.startswith("vk_live_") and len(parsed.secret) == len("vk_live_") + 46
    assert keys.parse_secret(parsed.secret) == parsed
    assert keys.generate_secret("test").secret.startswith("vk_test_")
    typo = parsed.secret[:-7] + ("A" if parsed.secret[-7] != "A" else "B") + parsed.secret[-6:]
    assert keys.parse_secret(typo) is None


@pytest.mark.django_db
def test_secret_is_shown_once_and_stored_nowhere(world_a):
    created = world_a.session().post(
        "/api/v1/api-keys/", {"name": "ci", "scopes": ["read"]}, format="json"
    )
    assert created.status_code == 201
    secret = created.json()["secret"]
    listed = world_a.session().get("/api/v1/api-keys/").content.decode()
    detail = world_a.session().get(f"/api/v1/api-keys/{created.json()['id']}/").content.decode()
    assert secret not in listed and secret not in detail and "secret" not in detail
    # Search every text column of every table for the secret and its random part.
    random_part = secret[len("vk_live_") :]
    hits = []
    with connection.cursor() as cursor:
        for model in apps.get_models():
            table = model._meta.db_table
            for field in model._meta.concrete_fields:
                if field.get_internal_type() not in (
                    "CharField",
                    "TextField",
                    "JSONField",
                    "EmailField",
                    "SlugField",
                ):
                    continue
                column = connection.ops.quote_name(field.column)
                cast = f"CAST({column} AS TEXT)"
                cursor.execute(
                    f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)} WHERE {cast} LIKE %s OR {cast} LIKE %s",
                    [f"%{secret}%", f"%{random_part}%"],
                )
                if cursor.fetchone()[0]:
                    hits.append(f"{table}.{field.column}")
    assert hits == []


@pytest.mark.django_db
def test_key_authenticates_and_records_last_use(world_a):
    assert ApiKey.dangerously_unscoped.get(pk=world_a.key.pk).last_used_at is None
    answer = world_a.client().get("/api/v1/me")
    assert answer.status_code == 200
    assert (
        answer.json()["type"] == "api_key"
        and answer.json()["tenant"]["id"] == world_a.tenant.public_id
    )
    assert ApiKey.dangerously_unscoped.get(pk=world_a.key.pk).last_used_at is not None


@pytest.mark.django_db
def test_revoked_key_gets_401_at_once(world_a):
    client = world_a.client()
    assert client.get("/api/v1/projects/").status_code == 200
    revoked = world_a.session().post(f"/api/v1/api-keys/{world_a.key.public_id}/revoke/")
    assert (
        revoked.status_code == 200
        and revoked.json()["revoked_at"]
        and revoked.json()["active"] is False
    )
    answer = client.get("/api/v1/projects/")
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "api_key_revoked"
    assert answer["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
def test_expired_key_gets_401(world_a):
    ApiKey.dangerously_unscoped.filter(pk=world_a.key.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    answer = world_a.client().get("/api/v1/projects/")
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "api_key_expired"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header",
    [
        "Bearer vk_live_nope",
        "Bearer " + keys.generate_secret("live").secret,
        "Bearer ",
        "Token abc",
    ],
    ids=["unknown-prefix", "well-formed-unknown-key", "empty", "other-scheme"],
)
def test_bad_credentials_get_401_in_the_error_shape(db, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    answer = client.get("/api/v1/projects/")
    assert answer.status_code == 401
    assert set(answer.json()["error"]) == {"code", "message", "details"}


@pytest.mark.django_db
def test_key_cannot_mint_a_key_with_more_scopes_or_role(world_a):
    from tests.conftest import make_key

    _key, secret = make_key(
        world_a.tenant, role="developer", scopes=["read", "write"], user=world_a.owner
    )
    client = bearer(secret)
    more_scopes = client.post(
        "/api/v1/api-keys/", {"name": "x", "scopes": ["read", "train"]}, format="json"
    )
    assert more_scopes.status_code == 400 and "scopes:" in more_scopes.json()["error"]["message"]
    more_role = client.post(
        "/api/v1/api-keys/", {"name": "x", "scopes": ["read"], "role": "admin"}, format="json"
    )
    assert more_role.status_code == 400 and "role:" in more_role.json()["error"]["message"]
    ok = client.post(
        "/api/v1/api-keys/", {"name": "x", "scopes": ["read"], "role": "viewer"}, format="json"
    )
    assert ok.status_code == 201 and ok.json()["role"] == "viewer"


@pytest.mark.django_db
def test_key_expiry_in_the_future_only_and_filters(world_a):
    past = (timezone.now() - timedelta(days=1)).isoformat()
    answer = world_a.session().post(
        "/api/v1/api-keys/", {"name": "x", "scopes": ["read"], "expires_at": past}, format="json"
    )
    assert answer.status_code == 400 and answer.json()["error"]["message"].startswith("expires_at:")
    world_a.session().post(f"/api/v1/api-keys/{world_a.key.public_id}/revoke/")
    active = world_a.session().get("/api/v1/api-keys/?active=true").json()["results"]
    inactive = world_a.session().get("/api/v1/api-keys/?active=false").json()["results"]
    assert world_a.key.public_id not in [k["id"] for k in active]
    assert world_a.key.public_id in [k["id"] for k in inactive]
