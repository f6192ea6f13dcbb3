"""Failed sign-ins and failed API key lookups are throttled per account and per address, with a
message that says until when, an audit row for the account's tenants, and never for a correct key."""

import logging
from datetime import timedelta
from types import SimpleNamespace
from unittest import mock

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from tests.conftest import PASSWORD, make_user
from verticals.tenancy import keys, throttle
from verticals.tenancy.models import AuditEvent, AuthFailureWindow

pytestmark = pytest.mark.django_db


def _login(client, email, password):
    return client.post("/login/", {"username": email, "password": password})


def _later(minutes: float):
    """The throttle's clock, `minutes` from now (the windows of now have ended by then)."""
    moment = timezone.now() + timedelta(minutes=minutes)
    return mock.patch.object(throttle, "timezone", SimpleNamespace(now=lambda: moment))


def test_thirty_wrong_passwords_then_the_right_one_is_refused_until_the_window_ends(
    world_a, settings
):
    client = Client(REMOTE_ADDR="203.0.113.5")
    answers = [_login(client, world_a.owner.email, f"wrong-{n}") for n in range(30)]
    assert [a.status_code for a in answers[:4]] == [200] * 4  # "enter a correct email and password"
    assert {a.status_code for a in answers[4:]} == {429}
    right = _login(client, world_a.owner.email, PASSWORD)
    assert right.status_code == 429 and "_auth_user_id" not in client.session
    text = right.content.decode()
    assert "Too many failed sign-in attempts for this account: try again in" in text
    retry = int(right["Retry-After"])
    assert 1 <= retry <= settings.AUTH_THROTTLE_WINDOW_SECONDS
    # Another address does not help: the account is what is over its limit.
    assert (
        _login(Client(REMOTE_ADDR="198.51.100.7"), world_a.owner.email, PASSWORD).status_code == 429
    )
    # One audit row in the account's tenant, when the limit was reached (not one per attempt).
    rows = AuditEvent.dangerously_unscoped.filter(
        tenant=world_a.tenant, action="auth.login_throttled"
    )
    assert rows.count() == 1
    row = rows.get()
    assert row.target_id == world_a.owner.public_id and row.details["address"] == "203.0.113.5"
    assert row.details["failures"] == settings.AUTH_THROTTLE_ACCOUNT_FAILURES
    # Once the window has ended the right password signs in.
    with _later(settings.AUTH_THROTTLE_WINDOW_SECONDS / 60 + 1):
        again = _login(client, world_a.owner.email, PASSWORD)
    assert again.status_code == 302 and client.session["_auth_user_id"]


def test_an_address_that_tries_many_accounts_is_refused_for_every_account(world_a, settings):
    settings.AUTH_THROTTLE_ADDRESS_FAILURES = 6
    client = Client(REMOTE_ADDR="203.0.113.9")
    for n in range(5):
        assert _login(client, f"nobody-{n}@example.com", "guess").status_code == 200
    sixth = _login(client, "nobody-5@example.com", "guess")
    assert sixth.status_code == 429 and "from your network" in sixth.content.decode()
    # Even the right password of a real account, from that address; another address signs in.
    assert _login(client, world_a.owner.email, PASSWORD).status_code == 429
    assert (
        _login(Client(REMOTE_ADDR="203.0.113.10"), world_a.owner.email, PASSWORD).status_code == 302
    )
    assert not AuditEvent.dangerously_unscoped.filter(action="auth.login_throttled").exists()


def test_an_unknown_account_is_throttled_like_a_known_one_and_only_logged(world_a, caplog):
    client = Client(REMOTE_ADDR="203.0.113.11")
    with caplog.at_level(logging.WARNING, logger="verticals.security"):
        codes = [_login(client, "ghost@example.com", "guess").status_code for _ in range(6)]
    assert codes == [200] * 4 + [429] * 2  # the same answers as for an account that exists
    assert (
        "sign-in throttled: 5 failed attempts for an unknown account from 203.0.113.11"
        in caplog.text
    )
    assert "ghost@example.com" not in caplog.text
    assert not AuditEvent.dangerously_unscoped.filter(action="auth.login_throttled").exists()
    # What is kept is hashed: no account name or address in the counters.
    subjects = " ".join(AuthFailureWindow.objects.values_list("subject", flat=True))
    assert "ghost" not in subjects and "203.0.113.11" not in subjects


def test_an_account_in_two_tenants_is_audited_in_both(world_a, world_b):
    from verticals.tenancy.models import Membership
    from verticals.tenancy.scoping import tenant_context

    both = make_user("both@example.com")
    for world in (world_a, world_b):
        with tenant_context(world.tenant):
            Membership.objects.create(tenant=world.tenant, user=both, role="viewer")
    client = Client(REMOTE_ADDR="203.0.113.12")
    for _ in range(5):
        _login(client, "Both@Example.com", "wrong")  # the account name counts whatever its case
    tenants = set(
        AuditEvent.dangerously_unscoped.filter(
            action="auth.login_throttled", target_id=both.public_id
        ).values_list("tenant_id", flat=True)
    )
    assert tenants == {world_a.tenant.pk, world_b.tenant.pk}


def test_the_admin_sign_in_is_throttled_too(db):
    staff = make_user("staff@example.com")
    staff.is_staff = True
    staff.save()
    client = Client(REMOTE_ADDR="203.0.113.13")
    for _ in range(5):
        client.post("/admin/login/", {"username": "staff@example.com", "password": "wrong"})
    refused = client.post("/admin/login/", {"username": "staff@example.com", "password": PASSWORD})
    assert "Too many failed sign-in attempts for this account" in refused.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_failure_is_counted_once_per_subject_and_never_past_the_limit(db):
    now = timezone.now()
    assert [throttle._count("login-account:x", 3, now) for _ in range(5)] == [1, 2, 3, None, None]
    assert AuthFailureWindow.objects.get(subject="login-account:x").count == 3
    # The ended windows go; the current one stays.
    later = now + timedelta(seconds=throttle.window_seconds() + 1)
    throttle._count("login-account:x", 3, later)
    assert throttle.prune(later) == 1 and AuthFailureWindow.objects.count() == 1


def test_the_address_is_the_one_the_trusted_proxy_saw(settings):
    request = SimpleNamespace(
        META={"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "1.2.3.4, 198.51.100.20"}
    )
    assert (
        throttle.client_address(request) == "10.0.0.2"
    )  # no proxy trusted: the header is the caller's own word
    settings.AUTH_THROTTLE_PROXIES = 1
    assert throttle.client_address(request) == "198.51.100.20"
    ipv6 = SimpleNamespace(META={"REMOTE_ADDR": "2001:db8:1:2:3:4:5:6"})
    assert throttle.client_address(ipv6) == "2001:db8:1:2::/64"


# --- API keys -----------------------------------------------------------------------------------


def _api(address: str, secret: str) -> APIClient:
    client = APIClient(REMOTE_ADDR=address)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def _unknown_key() -> str:
    return keys.generate_secret("live").secret


def test_invalid_keys_from_one_address_get_429_with_retry_after_and_a_correct_key_never_waits(
    world_a, settings
):
    settings.AUTH_THROTTLE_KEY_FAILURES = 5
    address = "203.0.113.20"
    answers = [
        _api(address, secret).get("/api/v1/me")
        for secret in ["vk_live_short", *(_unknown_key() for _ in range(5))]
    ]
    assert [a.status_code for a in answers] == [401] * 4 + [429] * 2
    error = answers[-1].json()["error"]
    assert (
        error["code"] == "too_many_attempts"
        and "from your address: try again in" in error["message"]
    )
    assert 1 <= int(answers[-1]["Retry-After"]) <= settings.AUTH_THROTTLE_WINDOW_SECONDS
    # The correct key from the same address is served, and counts nothing.
    counted = list(AuthFailureWindow.objects.values_list("subject", "count"))
    assert _api(address, world_a.secret).get("/api/v1/me").status_code == 200
    assert list(AuthFailureWindow.objects.values_list("subject", "count")) == counted
    # Another address is not held back.
    assert _api("203.0.113.21", _unknown_key()).get("/api/v1/me").status_code == 401


def test_the_openai_routes_answer_the_throttle_in_openai_s_shape(world_a, settings):
    settings.AUTH_THROTTLE_KEY_FAILURES = 2
    client = _api("203.0.113.22", _unknown_key())
    assert client.get("/v1/models").status_code == 401
    refused = client.get("/v1/models")
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    body = refused.json()["error"]
    assert (
        set(body) == {"message", "type", "param", "code"}
        and "Too many requests with an invalid API key" in body["message"]
    )


def test_wrong_secrets_for_one_key_are_throttled_per_key_and_audited_in_its_tenant(
    world_a, settings
):
    random_part = world_a.key.lookup + "A" * (keys.RANDOM_LENGTH - keys.LOOKUP_LENGTH)
    forged = f"vk_live_{random_part}{keys.checksum(random_part)}"  # well formed, names the key, wrong secret
    codes = [_api(f"203.0.113.{30 + n}", forged).get("/api/v1/me").status_code for n in range(6)]
    assert codes == [401] * 4 + [429] * 2  # five tries for this key from anywhere
    row = AuditEvent.dangerously_unscoped.get(tenant=world_a.tenant, action="api_key.throttled")
    assert row.target_id == world_a.key.public_id and row.details["address"] == "203.0.113.34"
    assert _api("203.0.113.30", world_a.secret).get("/api/v1/me").status_code == 200


def test_attempts_that_begin_together_cannot_all_have_their_password_checked(world_a, settings, rf):
    # Sent at once, no attempt has failed yet when the others begin: each takes its place first.
    from django.core.exceptions import PermissionDenied

    backend, checked = throttle.LoginThrottleBackend(), 0
    for _ in range(12):
        try:
            backend.authenticate(
                rf.post("/login/", REMOTE_ADDR="203.0.113.77"),
                username=world_a.owner.email,
                password="x",
            )
            checked += 1  # the next backend would check this one's password
        except PermissionDenied:
            pass
    assert checked == settings.AUTH_THROTTLE_ACCOUNT_FAILURES


def test_sign_ins_that_succeed_are_not_counted(world_a, settings):
    for _ in range(settings.AUTH_THROTTLE_ACCOUNT_FAILURES * 2):
        client = Client(REMOTE_ADDR="203.0.113.78")
        assert _login(client, world_a.owner.email, PASSWORD).status_code == 302
    assert (
        _login(Client(REMOTE_ADDR="203.0.113.78"), world_a.owner.email, "wrong").status_code == 200
    )
