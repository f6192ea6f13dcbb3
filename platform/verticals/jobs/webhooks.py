"""Job webhooks, signed per the Standard Webhooks spec (the `standardwebhooks` package).

A job may name a URL and the events it wants (`start`, `progress`, `completed`). Each
message is a `WebhookDelivery` row written in the same transaction as the change it
reports, then sent by a worker; failures are retried with backoff by a beat task (no long
countdowns ride on the broker), progress messages are throttled per job, and every try is
kept on the row: that is the job's delivery log.
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
        raise ValidationError({"webhook": "Give an object: {\"url\": \"https://…\", \"events\": [\"completed\"]}."})
    unknown = set(hook) - {"url", "events", "secret"}
    if unknown:
        raise ValidationError({"webhook": f"Unknown field(s) {', '.join(sorted(unknown))}; use url, events and secret."})
    url = hook.get("url")
    if url is None:
        raise ValidationError({"webhook.url": "Give the URL to post to: {\"url\": \"https://…\"}, or leave webhook out."})
    problem = url_problem(url)
    if problem:
        raise ValidationError({"webhook.url": problem})
    events = hook.get("events", ["completed"])
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events) or set(events) - set(EVENTS):
        raise ValidationError({"webhook.events": f"Give a non-empty list drawn from {', '.join(EVENTS)}."})
    secret = hook.get("secret") or new_secret()
    if not isinstance(secret, str) or not _secret_ok(secret):
        raise ValidationError({"webhook.secret": "Give a Standard Webhooks secret: 'whsec_' followed by 24 to 64 "
                                                 "base64-encoded random bytes, or leave it out to get one."})
    return {"url": url, "events": [e for e in EVENTS if e in events], "secret": secret}


def _secret_ok(secret: str) -> bool:
    if not secret.startswith(SECRET_PREFIX):
        return False
    try:
        raw = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except ValueError:
        return False
    return 24 <= len(raw) <= 64


def url_problem(url) -> str | None:
    """Why the platform will not post to `url`, as far as the URL alone tells (None when it will).

    The name is resolved only when sending (`resolve_target`), and the connection goes to the
    address that was checked.
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
    if settings.JOBS_WEBHOOK_ALLOW_PRIVATE:
        return None
    host = parts.hostname
    if host == "localhost" or host.endswith((".localhost", ".internal")):
        return PRIVATE
    try:
        if not ipaddress.ip_address(host).is_global:
            return PRIVATE
    except ValueError:
        pass  # a name: checked when it is resolved
    return None


def resolve_target(url: str) -> tuple[str | None, str | None]:
    """(problem, address to connect to): the name resolved once, every address checked."""
    problem = url_problem(url)
    if problem:
        return problem, None
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except OSError:
        return f"The host {parts.hostname} does not resolve.", None
    addresses = [info[4][0].split("%")[0] for info in infos]
    if not settings.JOBS_WEBHOOK_ALLOW_PRIVATE and any(not ipaddress.ip_address(a).is_global for a in addresses):
        return PRIVATE, None
    return None, addresses[0]


# --- writing deliveries -------------------------------------------------------------------

def job_payload(job: Job) -> dict:
    return {
        "id": job.public_id, "project": job.project.public_id, "kind": job.kind, "task": job.task,
        "status": job.status, "attempt": job.attempt,
        "progress": {"current": job.progress_current, "total": job.progress_total, "eta_seconds": job.eta_seconds},
        "result": job.result if job.status == Job.Status.SUCCEEDED else None,
        "error": {"code": job.error_code, "message": job.error_message} if job.error_message else None,
    }


def emit(job: Job, event: str, data: dict | None = None) -> WebhookDelivery | None:
    """Write a delivery for `event` if the job asked for it (call inside the transaction of the change)."""
    if not job.webhook_url or event not in job.webhook_events:
        return None
    now = timezone.now()
    if event == "progress":
        interval = timedelta(seconds=settings.JOBS_WEBHOOK_PROGRESS_SECONDS)
        due = Q(webhook_progress_sent_at__isnull=True) | Q(webhook_progress_sent_at__lte=now - interval)
        if not Job.dangerously_unscoped.filter(due, pk=job.pk).update(webhook_progress_sent_at=now):  # this job, by id
            return None
        job.refresh_from_db()
    type_ = {"start": "job.started", "progress": "job.progress"}.get(event) or f"job.{job.status}"
    body = job_payload(job)
    body.update(data or {})
    delivery = _deliveries.create(
        tenant_id=job.tenant_id, job=job, message_id=f"msg_{secrets.token_urlsafe(18)}", event_type=type_,
        payload={"type": type_, "timestamp": now.isoformat().replace("+00:00", "Z"), "data": body}, next_attempt_at=now,
    )
    transaction.on_commit(lambda: _enqueue(delivery.pk))
    return delivery


def _enqueue(delivery_id: int) -> None:
    from verticals.jobs.tasks import deliver_webhook

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
    if not _deliveries.filter(pk=delivery_id, status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now).update(next_attempt_at=lease):
        return "skipped"
    delivery = _deliveries.select_related("job").get(pk=delivery_id)
    code, error, elapsed = _post(delivery)
    ok = code is not None and 200 <= code < 300
    attempts = delivery.attempts + 1
    waits = backoff()
    changes = {
        "attempts": attempts, "last_attempt_at": now, "response_status": code, "last_error": (error or "")[:500],
        "tries": [*delivery.tries, {"at": now.isoformat(), "status": code, "error": error, "ms": elapsed}][-20:],
    }
    if ok:
        changes.update(status=WebhookDelivery.Status.DELIVERED, delivered_at=timezone.now(), next_attempt_at=None)
    elif attempts > len(waits):
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


def _post(delivery: WebhookDelivery) -> tuple[int | None, str | None, int]:
    """One POST: (HTTP status or None, error or None, milliseconds). Redirects are not followed,
    the answer's body is not read, and the whole try ends by JOBS_WEBHOOK_TIMEOUT."""
    started = time.monotonic()
    url = delivery.job.webhook_url
    problem, address = resolve_target(url)
    if problem:
        return None, problem, 0
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
        conn.request("POST", urlunsplit(("", "", parts.path or "/", parts.query, "")), body=body, headers=headers)
        response = conn.getresponse()
        code = response.status
        error = None if 200 <= code < 300 else f"HTTP {code} {response.reason}"
    except (OSError, http.client.HTTPException, ValueError) as exc:
        code = None
        error = f"No answer within {timeout:g} s." if expired.is_set() else f"{type(exc).__name__}: {exc}"
    finally:
        watchdog.cancel()
        conn.close()
    return code, error, int((time.monotonic() - started) * 1000)


@platform_scope("webhook retries of every tenant")
def send_due(limit: int = 200) -> int:
    """Enqueue the deliveries whose next try is due."""
    due = list(_deliveries.filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=timezone.now())
               .order_by("next_attempt_at").values_list("pk", flat=True)[:limit])
    for pk in due:
        _enqueue(pk)
    return len(due)
