"""Throttling of failed sign-ins and failed API key lookups, per account and per address.

Failures are counted in the database (`AuthFailureWindow`: one row per subject and fixed window,
raised by one conditional UPDATE), so that every web process sees the same counts on SQLite and
PostgreSQL alike with no other service: Django's default cache is per process, and a cache's
increment is not atomic on every backend. A subject whose window holds its limit of failures is
refused until the window ends, with the time to wait (the form says when; the API answers 429
with Retry-After). Subjects are stored hashed: no typed account name or address is kept.

* sign-in (portal and admin, anything that calls `django.contrib.auth.authenticate`): counted per
  account name typed and per address; while either is over its limit, even the right password
  is refused. `LoginThrottleBackend` takes each attempt's place in the windows before any password
  is checked (so attempts sent at once cannot all pass a check made before any was counted), a
  sign-in that succeeds gives its place back (`login_succeeded`), and `login_failed` records a
  limit reached.
* API keys: a key that is malformed, unknown or has a wrong secret counts per address (and per
  key, when the key's lookup part names one). A correct key is never counted nor refused.

When a subject reaches its limit it is recorded once: an audit row in each tenant of the account
(`auth.login_throttled`) or of the key (`api_key.throttled`), and a log line (the only record when
the account does not exist, or for an address, which belongs to no tenant).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone

from verticals.tenancy.audit import audit_record
from verticals.tenancy.models import AuthFailureWindow, User
from verticals.tenancy.selectors import user_memberships

log = logging.getLogger("verticals.security")

ACCOUNT, ADDRESS, KEY = "account", "address", "key"
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
REQUEST_LOCKOUT = "auth_lockout"  # the attribute a refused sign-in leaves on its request
REQUEST_TAKEN = (
    "auth_attempt_taken"  # the places a sign-in attempt took: {subject: (reason, count, limit)}
)


@dataclass(frozen=True)
class Lockout:
    """Refused until `until`: `reason` says which subject is over its limit."""

    reason: str
    until: datetime
    now: datetime

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil((self.until - self.now).total_seconds()))

    def _wait(self) -> str:
        minutes = math.ceil(self.retry_after / 60)
        return f"try again in {minutes} minute{'s' if minutes != 1 else ''} (after {self.until:%H:%M} UTC)"

    def login_message(self) -> str:
        who = "for this account" if self.reason == ACCOUNT else "from your network"
        return (
            f"Too many failed sign-in attempts {who}: {self._wait()}, or reset your password if you "
            f"have forgotten it."
        )

    def key_message(self) -> str:
        who = "for this key" if self.reason == KEY else "from your address"
        return (
            f"Too many requests with an invalid API key {who}: {self._wait()}. Check that the "
            f"Authorization header carries a current key (vk_live_… or vk_test_…), copied whole."
        )


def window_seconds() -> int:
    return max(1, int(settings.AUTH_THROTTLE_WINDOW_SECONDS))


def client_address(request: HttpRequest) -> str:
    """The caller's address: REMOTE_ADDR, or, behind AUTH_THROTTLE_PROXIES trusted proxies, the
    address the outermost of them saw (X-Forwarded-For, counted from the right). An IPv6 caller
    counts by its /64 network, which one host usually holds whole."""
    address = request.META.get("REMOTE_ADDR", "") or "unknown"
    proxies = settings.AUTH_THROTTLE_PROXIES
    if proxies > 0:
        forwarded = [
            part.strip()
            for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
            if part.strip()
        ]
        if len(forwarded) >= proxies:
            address = forwarded[-proxies]
    try:
        parsed = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return address[:64]
    if parsed.version == 6:
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def _subject(kind: str, value: str) -> str:
    return f"{kind}:{hashlib.sha256(value.encode()).hexdigest()[:48]}"


def _window(now: datetime) -> tuple[datetime, datetime]:
    size = window_seconds()
    start = _EPOCH + timedelta(seconds=(now - _EPOCH).total_seconds() // size * size)
    return start, start + timedelta(seconds=size)


def _over(checks: list[tuple[str, str, int]], now: datetime) -> Lockout | None:
    """The first of (reason, subject, limit) whose window holds `limit` failures, as a Lockout."""
    start, end = _window(now)
    counts = dict(
        AuthFailureWindow.objects.filter(
            subject__in=[s for _r, s, _l in checks], window_start=start
        ).values_list("subject", "count")
    )
    for reason, subject, limit in checks:
        if counts.get(subject, 0) >= limit:
            return Lockout(reason, end, now)
    return None


def _count(subject: str, limit: int, now: datetime) -> int | None:
    """Count one failure of `subject` in this window while it is under `limit`: the new count, or
    None when the window was already full (nothing counted). One conditional UPDATE: concurrent
    failures in several processes never count past the limit."""
    start, _end = _window(now)
    AuthFailureWindow.objects.bulk_create(
        [AuthFailureWindow(subject=subject, window_start=start)], ignore_conflicts=True
    )
    quote = connection.ops.quote_name
    table, count = quote(AuthFailureWindow._meta.db_table), quote("count")
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {count} = {count} + 1 WHERE {quote('subject')} = %s AND {quote('window_start')} = %s "
            f"AND {count} < %s RETURNING {count}",
            [subject, connection.ops.adapt_datetimefield_value(start), limit],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def _release(subjects: list[str], now: datetime) -> None:
    """Give back one counted place of each subject in this window (a sign-in that succeeded)."""
    if subjects:
        AuthFailureWindow.objects.filter(
            subject__in=subjects, window_start=_window(now)[0], count__gt=0
        ).update(count=F("count") - 1)


def _take(
    checks: list[tuple[str, str, int]], now: datetime
) -> tuple[Lockout | None, dict[str, tuple[str, int, int]]]:
    """Count one attempt against every subject while each is under its limit: (None, the places
    taken), or (the lockout in force, nothing taken) when one of them is full."""
    taken: dict[str, tuple[str, int, int]] = {}
    for reason, subject, limit in checks:
        count = _count(subject, limit, now)
        if count is None:
            _release(list(taken), now)
            return Lockout(reason, _window(now)[1], now), {}
        taken[subject] = (reason, count, limit)
    return None, taken


def _fail(checks: list[tuple[str, str, int]], now: datetime) -> tuple[Lockout | None, list[str]]:
    """Count a failure against every subject: (the lockout now in force, if any; the reasons whose
    subject reached its limit with this very failure)."""
    reached = []
    for reason, subject, limit in checks:
        if _count(subject, limit, now) == limit:
            reached.append(reason)
    return _over(checks, now), reached


# --- sign-in ------------------------------------------------------------------------------------


def _login_checks(request: HttpRequest, username: str | None) -> list[tuple[str, str, int]]:
    checks = [
        (
            ADDRESS,
            _subject("login-address", client_address(request)),
            settings.AUTH_THROTTLE_ADDRESS_FAILURES,
        )
    ]
    if username:
        checks.insert(
            0,
            (
                ACCOUNT,
                _subject("login-account", username.strip().lower()),
                settings.AUTH_THROTTLE_ACCOUNT_FAILURES,
            ),
        )
    return checks


class LoginThrottleBackend:
    """First in AUTHENTICATION_BACKENDS: refuses a sign-in while its account or address is over
    its limit, before any password is checked. Otherwise it steps aside for the next backend.

    It has no `get_user` on purpose: it never signs anyone in, so sessions (and the test client's
    force_login) go by the next backend."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            # not a request (a management command, a test helper): nothing to count by
            return None
        lockout, taken = _take(_login_checks(request, username), timezone.now())
        if lockout is not None:
            setattr(request, REQUEST_LOCKOUT, lockout)
            # authenticate() stops here and reports a failure
            raise PermissionDenied(lockout.login_message())
        setattr(request, REQUEST_TAKEN, taken)
        return None


class ThrottledLoginForm:
    """Mixin for an AuthenticationForm: a sign-in refused by the throttle says why and until when,
    instead of "wrong email or password"."""

    def get_invalid_login_error(self):
        from django.core.exceptions import ValidationError

        lockout = getattr(self.request, REQUEST_LOCKOUT, None)
        if lockout is not None:
            return ValidationError(lockout.login_message(), code="throttled")
        return super().get_invalid_login_error()


def login_failed(sender, credentials: dict, request: HttpRequest | None = None, **kwargs) -> None:
    """Receiver of `user_login_failed`: the attempt was counted when it began; a limit it reached is
    recorded, and the form says until when (nothing for a refusal by the throttle itself)."""
    if request is None or getattr(request, REQUEST_LOCKOUT, None) is not None:
        return
    username = credentials.get("username") or ""
    now = timezone.now()
    taken = getattr(request, REQUEST_TAKEN, None)
    if taken is None:  # the throttle's backend did not see this attempt: count it now
        lockout, reached = _fail(_login_checks(request, username), now)
    else:
        reached = [reason for reason, count, limit in taken.values() if count >= limit]
        lockout = Lockout(reached[0], _window(now)[1], now) if reached else None
    if lockout is not None:
        setattr(
            request, REQUEST_LOCKOUT, lockout
        )  # this failure reached a limit: the form says until when
    address = client_address(request)
    for reason in reached:
        _record_login_lockout(reason, username, address, Lockout(reason, _window(now)[1], now))


def login_succeeded(sender, request: HttpRequest | None = None, user=None, **kwargs) -> None:
    """Receiver of `user_logged_in`: the attempt's places go back (only failures count)."""
    taken = getattr(request, REQUEST_TAKEN, None) if request is not None else None
    if taken:
        _release(list(taken), timezone.now())
        setattr(request, REQUEST_TAKEN, {})


def _record_login_lockout(reason: str, username: str, address: str, lockout: Lockout) -> None:

    limit = (
        settings.AUTH_THROTTLE_ACCOUNT_FAILURES
        if reason == ACCOUNT
        else settings.AUTH_THROTTLE_ADDRESS_FAILURES
    )
    user = (
        User.objects.filter(email__iexact=username.strip()).first()
        if reason == ACCOUNT and username
        else None
    )
    log.warning(
        "sign-in throttled: %s failed attempts %s from %s; refused until %s",
        limit,
        f"for account {user.public_id}"
        if user
        else ("for an unknown account" if reason == ACCOUNT else "in all"),
        address,
        lockout.until.isoformat(),
    )
    if user is None:
        return
    for membership in user_memberships(user):
        # each of the account's tenants is told in its audit log
        audit_record(
            tenant=membership.tenant,
            actor=None,
            action="auth.login_throttled",
            target=user,
            details={"address": address, "failures": limit, "until": lockout.until.isoformat()},
        )


# --- API keys -----------------------------------------------------------------------------------


def key_failed(request: HttpRequest, *, key=None) -> Lockout | None:
    """Count a failed key lookup by the caller's address (and by `key`, a key whose lookup part
    matched but whose secret did not); the lockout in force afterwards, if any."""
    address = client_address(request)
    checks = [(ADDRESS, _subject("key-address", address), settings.AUTH_THROTTLE_KEY_FAILURES)]
    if key is not None:
        checks.insert(
            0, (KEY, _subject("key", key.lookup), settings.AUTH_THROTTLE_ACCOUNT_FAILURES)
        )
    now = timezone.now()
    lockout, reached = _fail(checks, now)
    for reason in reached:
        until = _window(now)[1]
        log.warning(
            "API key lookups throttled: too many invalid keys %s from %s; refused until %s",
            f"for key {key.public_id}" if reason == KEY else "in all",
            address,
            until.isoformat(),
        )
        if reason == KEY:
            audit_record(
                tenant=key.tenant,
                actor=None,
                action="api_key.throttled",
                target=key,
                details={
                    "address": address,
                    "failures": settings.AUTH_THROTTLE_ACCOUNT_FAILURES,
                    "until": until.isoformat(),
                },
            )
    return lockout


def prune(now: datetime | None = None) -> int:
    """Delete the windows that ended (a beat task calls this)."""
    start, _end = _window(now or timezone.now())
    deleted, _ = AuthFailureWindow.objects.filter(window_start__lt=start).delete()
    return deleted
