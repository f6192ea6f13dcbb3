"""Job webhooks, signed per the Standard Webhooks spec (the `standardwebhooks` package).

A job may name a URL and the events it wants (`start`, `progress`, `completed`). Each
message is a `WebhookDelivery` row written in the same transaction as the change it
reports, then sent by a worker; failures are retried with backoff by a beat task (no long
countdowns ride on the broker), progress messages are throttled per job, and every try is
kept on the row: that is the job's delivery log.

Where a URL points is checked the same way when the job is created and at every try
(`resolve_target`): the host resolved once, every address public, and the connection made to
the address that was checked. A target refused at a try fails its delivery at once.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import logging
import secrets
import socket
import ssl
import threading
import time
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from standardwebhooks import Webhook

from verticals.jobs.models import Job, WebhookDelivery
from verticals.tenancy.scoping import platform_scope

log = logging.getLogger(__name__)

EVENTS = ("start", "progress", "completed")
SECRET_PREFIX = "whsec_"
PRIVATE = "Webhooks go to public addresses only."
# Rows by primary key from a task message or a job the caller already holds.
_deliveries = WebhookDelivery.dangerously_unscoped


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def clean_webhook(hook) -> dict:
    """The webhook part of a job request, checked: {url, events, secret} (secret generated if absent)."""
    if not isinstance(hook, dict):
        raise ValidationError(
            {"webhook": 'Give an object: {"url": "https://…", "events": ["completed"]}.'}
        )
    unknown = set(hook) - {"url", "events", "secret"}
    if unknown:
        raise ValidationError(
            {
                "webhook": f"Unknown field(s) {', '.join(sorted(unknown))}; use url, events and secret."
            }
        )
    url = hook.get("url")
    if url is None:
        raise ValidationError(
            {"webhook.url": 'Give the URL to post to: {"url": "https://…"}, or leave webhook out.'}
        )
    problem = url_problem(url)
    if problem:
        raise ValidationError({"webhook.url": problem})
    events = hook.get("events", ["completed"])
    if (
        not isinstance(events, list)
        or not events
        or not all(isinstance(e, str) for e in events)
        or set(events) - set(EVENTS)
    ):
        raise ValidationError(
            {"webhook.events": f"Give a non-empty list drawn from {', '.join(EVENTS)}."}
        )
    secret = hook.get("secret") or new_secret()
    if not isinstance(secret, str) or not _secret_ok(secret):
        raise ValidationError(
            {
                "webhook.secret": "Give a Standard Webhooks secret: 'whsec_' followed by 24 to 64 "
                "base64-encoded random bytes, or leave it out to get one."
            }
        )
    # Last, once the request is otherwise sound: the target is resolved and checked as a delivery
    # will check it. With private targets allowed every address is, and nothing is resolved here.
    if not settings.JOBS_WEBHOOK_ALLOW_PRIVATE:
        try:
            resolve_target(url)
        except TargetRefused as refused:
            raise ValidationError({"webhook.url": str(refused)}) from None
        except TargetUnresolved as unresolved:
            if unresolved.missing:  # the name does not exist (not a resolver that failed for now)
                raise ValidationError({"webhook.url": str(unresolved)}) from None
    return {"url": url, "events": [e for e in EVENTS if e in events], "secret": secret}


def _secret_ok(secret: str) -> bool:
    if not secret.startswith(SECRET_PREFIX):
        return False
    try:
        raw = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except ValueError:
        return False
    return 24 <= len(raw) <= 64


def url_problem(url) -> str | None:
    """Why the platform will not post to `url`, as far as its form tells (None when it may).

    Where it points is checked by `resolve_target`, at job creation and at each delivery.
    """
    if not isinstance(url, str) or len(url) > 2000:
        return "Give an http(s) URL of at most 2000 characters."
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "Give an absolute http:// or https:// URL."
    if parts.username or parts.password:
        return "Leave credentials out of the URL; verify the signature instead."
    try:
        if parts.port == 0:
            return "Give a port between 1 and 65535."
    except ValueError:
        return "Give a port between 1 and 65535."
    return None


class TargetRefused(Exception):
    """The URL may never be posted to (its form, or an address that is not public): a delivery to
    it fails at once, since trying again would change nothing."""


class TargetUnresolved(Exception):
    """The host has no address now; `missing` when the resolver says the name does not exist."""

    def __init__(self, message: str, *, missing: bool):
        super().__init__(message)
        self.missing = missing


# IPv6 ranges that carry an IPv4 address the packet may end up at: NAT64 (RFC 6052) and the
# deprecated IPv4-compatible addresses; 6to4 and IPv4-mapped ones have their own attributes.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether a webhook may connect to `address`: globally reachable, unicast, and, for an IPv6
    address that embeds an IPv4 one (mapped, 6to4, NAT64), that IPv4 address public too."""
    if address.version == 6:
        if (
            address in _NAT64_LOCAL
            or address in _IPV4_COMPATIBLE
            or address.teredo
            or address.is_site_local
        ):
            return False
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public(embedded)
    return address.is_global and not address.is_multicast


def resolve_target(url: str) -> str:
    """The address a delivery to `url` connects to: the host resolved once (a name through DNS,
    an address in any spelling the resolver reads, e.g. `127.1` or `0x7f000001`) and, unless
    private targets are allowed, every address it resolves to checked public.

    The connection goes to the address returned, never to the name again (DNS rebinding).
    Raises TargetRefused or TargetUnresolved.
    """
    problem = url_problem(url)
    if problem:
        raise TargetRefused(problem)
    parts = urlsplit(url)
    host = parts.hostname
    name = host.rstrip(".")
    if not settings.JOBS_WEBHOOK_ALLOW_PRIVATE and (
        name == "localhost" or name.endswith((".localhost", ".internal"))
    ):
        raise TargetRefused(f"{PRIVATE} {host} is a local name.")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as failed:
        missing = failed.errno in (
            socket.EAI_NONAME,
            getattr(socket, "EAI_NODATA", socket.EAI_NONAME),
        )
        raise TargetUnresolved(
            f"The host {host} does not resolve: check the name.", missing=missing
        ) from None
    except (OSError, UnicodeError):
        raise TargetUnresolved(
            f"The host {host} does not resolve: check the name.", missing=False
        ) from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not addresses:
        raise TargetUnresolved(f"The host {host} does not resolve: check the name.", missing=True)
    if not settings.JOBS_WEBHOOK_ALLOW_PRIVATE:
        private = next((a for a in addresses if not is_public(a)), None)
        if private is not None:
            shown = host if str(private) == host.strip("[]") else f"{host} is {private}, which"
            raise TargetRefused(f"{PRIVATE} {shown} is not a public address.")
    return str(addresses[0])


# --- writing deliveries -------------------------------------------------------------------


def job_payload(job: Job) -> dict:
    return {
        "id": job.public_id,
        "project": job.project.public_id,
        "kind": job.kind,
        "task": job.task,
        "status": job.status,
        "attempt": job.attempt,
        "progress": {
            "current": job.progress_current,
            "total": job.progress_total,
            "eta_seconds": job.eta_seconds,
        },
        "result": job.result if job.status == Job.Status.SUCCEEDED else None,
        "error": {"code": job.error_code, "message": job.error_message}
        if job.error_message
        else None,
    }


def emit(job: Job, event: str, data: dict | None = None) -> WebhookDelivery | None:
    """Write a delivery for `event` if the job asked for it (call inside the transaction of the change)."""
    if not job.webhook_url or event not in job.webhook_events:
        return None
    now = timezone.now()
    if event == "progress":
        interval = timedelta(seconds=settings.JOBS_WEBHOOK_PROGRESS_SECONDS)
        due = Q(webhook_progress_sent_at__isnull=True) | Q(
            webhook_progress_sent_at__lte=now - interval
        )
        if not Job.dangerously_unscoped.filter(due, pk=job.pk).update(webhook_progress_sent_at=now):
            # this job, by id
            return None
        job.refresh_from_db()
    type_ = {"start": "job.started", "progress": "job.progress"}.get(event) or f"job.{job.status}"
    body = job_payload(job)
    body.update(data or {})
    delivery = _deliveries.create(
        tenant_id=job.tenant_id,
        job=job,
        message_id=f"msg_{secrets.token_urlsafe(18)}",
        event_type=type_,
        payload={"type": type_, "timestamp": now.isoformat().replace("+00:00", "Z"), "data": body},
        next_attempt_at=now,
    )
    transaction.on_commit(lambda: _enqueue(delivery.pk))
    return delivery


def _enqueue(delivery_id: int) -> None:
    from verticals.jobs.tasks import deliver_webhook  # (the Celery tasks module imports this one)

    try:
        deliver_webhook.apply_async(args=[delivery_id])  # routed to the system queue
    except Exception:  # broker down: the retry sweep sends it
        log.exception("could not enqueue webhook delivery %s", delivery_id)


# --- sending ------------------------------------------------------------------------------


def backoff() -> list[float]:
    return [float(s) for s in settings.JOBS_WEBHOOK_BACKOFF]


@platform_scope("a webhook delivery is found by its id, whichever tenant it is for")
def deliver(delivery_id: int) -> str:
    """One try of one delivery, if it is due; returns its status afterwards."""
    now = timezone.now()
    lease = now + timedelta(seconds=settings.JOBS_WEBHOOK_TIMEOUT + 30)
    # Claim the try: a duplicate task or the retry sweep cannot send the same try twice at once.
    if not _deliveries.filter(
        pk=delivery_id, status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now
    ).update(next_attempt_at=lease):
        return "skipped"
    delivery = _deliveries.select_related("job").get(pk=delivery_id)
    code, error, elapsed, refused = _post(delivery)
    ok = code is not None and 200 <= code < 300
    attempts = delivery.attempts + 1
    waits = backoff()
    changes = {
        "attempts": attempts,
        "last_attempt_at": now,
        "response_status": code,
        "last_error": (error or "")[:500],
        "tries": [
            *delivery.tries,
            {"at": now.isoformat(), "status": code, "error": error, "ms": elapsed},
        ][-20:],
    }
    if ok:
        changes.update(
            status=WebhookDelivery.Status.DELIVERED,
            delivered_at=timezone.now(),
            next_attempt_at=None,
        )
    elif refused or attempts > len(waits):  # a refused target stays refused: no retry
        changes.update(status=WebhookDelivery.Status.FAILED, next_attempt_at=None)
    else:
        changes.update(next_attempt_at=timezone.now() + timedelta(seconds=waits[attempts - 1]))
    _deliveries.filter(pk=delivery_id).update(**changes)
    return changes.get("status", WebhookDelivery.Status.PENDING)


def signed_request(delivery: WebhookDelivery) -> tuple[bytes, dict]:
    """The exact body and headers of a delivery (the same webhook-id on every try)."""
    body = json.dumps(delivery.payload, cls=DjangoJSONEncoder, separators=(",", ":"))
    sent_at = timezone.now()
    signature = Webhook(delivery.job.webhook_secret).sign(delivery.message_id, sent_at, body)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"{settings.PLATFORM_NAME}-Webhooks/1",
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": signature,
    }
    return body.encode(), headers


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to a checked address; the Host header keeps the name."""

    def __init__(self, host, port, address, **kwargs):
        super().__init__(host, port, **kwargs)
        self.address = address

    def connect(self):
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a checked address; SNI, the certificate check and the Host header keep the name."""

    def __init__(self, host, port, address, **kwargs):
        super().__init__(host, port, context=ssl.create_default_context(), **kwargs)
        self.address = address

    def connect(self):
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _post(delivery: WebhookDelivery) -> tuple[int | None, str | None, int, bool]:
    """One POST: (HTTP status or None, error or None, milliseconds, whether the target was refused).
    Redirects are not followed, the answer's body is not read, and the whole try ends by
    JOBS_WEBHOOK_TIMEOUT."""
    started = time.monotonic()
    url = delivery.job.webhook_url
    try:
        address = resolve_target(url)
    except TargetRefused as refused:
        return None, str(refused), 0, True
    except TargetUnresolved as unresolved:  # perhaps for now: tried again with backoff
        return None, str(unresolved), int((time.monotonic() - started) * 1000), False
    parts = urlsplit(url)
    timeout = settings.JOBS_WEBHOOK_TIMEOUT
    kind = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    conn = kind(parts.hostname, parts.port, address, timeout=timeout)
    body, headers = signed_request(delivery)
    expired = threading.Event()

    def cut_off():  # a peer that trickles its answer cannot hold the worker past the deadline
        expired.set()
        if conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    watchdog = threading.Timer(timeout, cut_off)
    watchdog.start()
    try:
        conn.request(
            "POST",
            urlunsplit(("", "", parts.path or "/", parts.query, "")),
            body=body,
            headers=headers,
        )
        response = conn.getresponse()
        code = response.status
        error = None if 200 <= code < 300 else f"HTTP {code} {response.reason}"
    except (OSError, http.client.HTTPException, ValueError) as exc:
        code = None
        error = (
            f"No answer within {timeout:g} s."
            if expired.is_set()
            else f"{type(exc).__name__}: {exc}"
        )
    finally:
        watchdog.cancel()
        conn.close()
    return code, error, int((time.monotonic() - started) * 1000), False


@platform_scope("webhook retries of every tenant")
def send_due(limit: int = 200) -> int:
    """Enqueue the deliveries whose next try is due."""
    due = list(
        _deliveries.filter(
            status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=timezone.now()
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    for pk in due:
        _enqueue(pk)
    return len(due)
