"""Job webhooks, signed per the Standard Webhooks spec (the `standardwebhooks` package).

A job may name a URL and the events it wants (`start`, `progress`, `completed`). Each
message is a `WebhookDelivery` row written in the same transaction as the change it
reports, then sent by a worker; failures are retried with backoff by a beat task (no long
countdowns ride on the broker), progress messages are throttled per job, and every try is
kept on the row: that is the job's delivery log.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import secrets
import socket
import time
import urllib.error
import urllib.request
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from standardwebhooks import Webhook

from verticals.jobs.models import Job, WebhookDelivery

log = logging.getLogger(__name__)

EVENTS = ("start", "progress", "completed")
SECRET_PREFIX = "whsec_"
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


def url_problem(url, *, resolve: bool = False) -> str | None:
    """Why the platform will not post to `url` (None when it will)."""
    if not isinstance(url, str) or len(url) > 2000:
        return "Give an http(s) URL of at most 2000 characters."
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "Give an absolute http:// or https:// URL."
    if parts.username or parts.password:
        return "Leave credentials out of the URL; verify the signature instead."
    if settings.JOBS_WEBHOOK_ALLOW_PRIVATE:
        return None
    host = parts.hostname
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        if host == "localhost" or host.endswith(".localhost") or host.endswith(".internal"):
            return "Webhooks go to public addresses only."
        if not resolve:
            return None
        try:
            addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in socket.getaddrinfo(host, parts.port or 443)]
        except OSError:
            return f"The host {host} does not resolve."
    if any(not a.is_global for a in addresses):
        return "Webhooks go to public addresses only."
    return None


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
        if not Job.dangerously_unscoped.filter(due, pk=job.pk).update(webhook_progress_sent_at=now):
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
        deliver_webhook.apply_async(args=[delivery_id], queue="default")
    except Exception:  # broker down: the retry sweep sends it
        log.exception("could not enqueue webhook delivery %s", delivery_id)


# --- sending ------------------------------------------------------------------------------

def backoff() -> list[float]:
    return [float(s) for s in settings.JOBS_WEBHOOK_BACKOFF]


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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _post(delivery: WebhookDelivery) -> tuple[int | None, str | None, int]:
    started = time.monotonic()
    problem = url_problem(delivery.job.webhook_url, resolve=True)
    if problem:
        return None, problem, 0
    body, headers = signed_request(delivery)
    request = urllib.request.Request(delivery.job.webhook_url, data=body, headers=headers, method="POST")
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=settings.JOBS_WEBHOOK_TIMEOUT) as response:
            code, error = response.status, None
    except urllib.error.HTTPError as exc:
        code, error = exc.code, f"HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        code, error = None, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
    return code, error, int((time.monotonic() - started) * 1000)


def send_due(limit: int = 200) -> int:
    """Enqueue the deliveries whose next try is due."""
    due = list(_deliveries.filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=timezone.now())
               .order_by("next_attempt_at").values_list("pk", flat=True)[:limit])
    for pk in due:
        _enqueue(pk)
    return len(due)
