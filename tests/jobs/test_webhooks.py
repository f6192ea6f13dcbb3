"""Job webhooks, in-process: validation, signing (checked with the standardwebhooks library),
retries with backoff, the delivery log, progress throttling, and refusal of private targets."""

import json
from datetime import timedelta
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.jobs.receiver import WebhookReceiver
from verticals.jobs import engine, webhooks, worker
from verticals.jobs.models import Job, WebhookDelivery
from verticals.tenancy.scoping import tenant_context

Deliveries = WebhookDelivery.dangerously_unscoped


@pytest.fixture(autouse=True)
def quiet_queue():
    """Deliveries are sent by calling `deliver` here, not through a broker."""
    with mock.patch("verticals.jobs.engine.send"), mock.patch("verticals.jobs.webhooks._enqueue"):
        yield


def hooked_job(world, url, events=("start", "progress", "completed"), **extra) -> Job:
    with tenant_context(world.tenant):
        return engine.job_create(project=world.project, kind="test.steps", params={"steps": 3},
                                 webhook={"url": url, "events": list(events), **extra})


def run(world, job):
    engine.schedule(world.tenant.pk)
    return worker.execute(job.public_id)


def deliver_all(job) -> list[str]:
    return [webhooks.deliver(pk) for pk in Deliveries.filter(job=job).order_by("pk").values_list("pk", flat=True)]


@pytest.mark.parametrize("hook, field, words", [
    ("https://x.example", "webhook", "Give an object"),
    ({"url": "ftp://x.example/h"}, "webhook.url", "http:// or https://"),
    ({"url": "not a url"}, "webhook.url", "http:// or https://"),
    ({"url": "https://user:pw@x.example/h"}, "webhook.url", "Leave credentials out"),
    ({"url": "https://x.example/h", "events": ["finish"]}, "webhook.events", "start, progress, completed"),
    ({"url": "https://x.example/h", "events": []}, "webhook.events", "non-empty list"),
    ({"url": "https://x.example/h", "secret": "plain"}, "webhook.secret", "whsec_"),
    ({"url": "https://x.example/h", "secret": "whsec_c2hvcnQ="}, "webhook.secret", "24 to 64"),
    ({"url": "https://x.example/h", "colour": "red"}, "webhook", "Unknown field(s) colour"),
])
def test_bad_webhooks_are_refused_with_what_to_fix(hook, field, words):
    with pytest.raises(ValidationError) as refused:
        webhooks.clean_webhook(hook)
    assert words in " ".join(refused.value.message_dict[field])


def test_a_secret_is_made_when_none_is_given_and_a_given_one_is_kept():
    made = webhooks.clean_webhook({"url": "https://x.example/h"})
    assert made["secret"].startswith("whsec_") and made["events"] == ["completed"]
    Webhook(made["secret"])  # the library accepts it
    own = webhooks.new_secret()
    assert webhooks.clean_webhook({"url": "https://x.example/h", "secret": own, "events": ["completed", "start"]}) == {
        "url": "https://x.example/h", "events": ["start", "completed"], "secret": own}


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/h", "http://localhost/h", "http://10.1.2.3/h",
                                 "http://169.254.169.254/latest", "http://[::1]/h", "http://192.168.0.5/h"])
def test_private_targets_are_refused_unless_allowed(settings, url):
    settings.JOBS_WEBHOOK_ALLOW_PRIVATE = False
    assert webhooks.url_problem(url) == "Webhooks go to public addresses only."
    settings.JOBS_WEBHOOK_ALLOW_PRIVATE = True
    assert webhooks.url_problem(url) is None


def test_a_public_address_is_accepted_when_private_ones_are_not(settings):
    settings.JOBS_WEBHOOK_ALLOW_PRIVATE = False
    assert webhooks.url_problem("https://93.184.216.34/h") is None


@pytest.mark.django_db
def test_deliveries_are_signed_per_standard_webhooks(world_a, in_process, settings):
    settings.JOBS_WEBHOOK_PROGRESS_SECONDS = 0
    with WebhookReceiver() as receiver:
        job = hooked_job(world_a, receiver.url())
        secret = job.webhook_secret
        assert run(world_a, job) == "succeeded"
        assert deliver_all(job) == ["delivered"] * 5
    types = []
    for message in receiver.messages():
        body, headers = message["body"], message["headers"]
        payload = Webhook(secret).verify(body, headers)
        types.append(payload["type"])
        assert payload["data"]["id"] == job.public_id
        assert headers["webhook-id"].startswith("msg_") and headers["content-type"] == "application/json"
        tampered = body.replace(job.public_id.encode(), b"job_forged0000000000000")
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(tampered, headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(webhooks.new_secret()).verify(body, headers)
    assert types == ["job.started", "job.progress", "job.progress", "job.progress", "job.succeeded"]
    final = json.loads(receiver.messages()[-1]["body"])["data"]
    assert final["status"] == "succeeded" and final["result"] == {"steps": 3, "attempt": 1}


@pytest.mark.django_db
def test_only_the_chosen_events_are_sent_and_progress_is_throttled(world_a, in_process, settings):
    settings.JOBS_WEBHOOK_PROGRESS_SECONDS = 3600
    job = hooked_job(world_a, "http://127.0.0.1:9/h", events=("progress",))
    run(world_a, job)
    assert list(Deliveries.filter(job=job).values_list("event_type", flat=True)) == ["job.progress"]
    quiet = hooked_job(world_a, "http://127.0.0.1:9/h", events=("completed",))
    run(world_a, quiet)
    assert list(Deliveries.filter(job=quiet).values_list("event_type", flat=True)) == ["job.succeeded"]


@pytest.mark.django_db
def test_failed_tries_back_off_then_give_up_and_the_log_keeps_every_try(world_a, in_process, settings):
    settings.JOBS_WEBHOOK_BACKOFF = ["30", "60"]
    with WebhookReceiver(codes=[500, 503, 500]) as receiver:
        job = hooked_job(world_a, receiver.url(), events=("completed",))
        run(world_a, job)
        delivery = Deliveries.get(job=job)
        before = timezone.now()
        assert webhooks.deliver(delivery.pk) == "pending"
        delivery.refresh_from_db()
        assert delivery.attempts == 1 and delivery.response_status == 500 and "HTTP 500" in delivery.last_error
        assert before + timedelta(seconds=29) < delivery.next_attempt_at < before + timedelta(seconds=32)
        assert webhooks.deliver(delivery.pk) == "skipped"  # not due yet: nothing is sent
        for status in ("pending", "failed"):
            Deliveries.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
            assert webhooks.deliver(delivery.pk) == status
        delivery.refresh_from_db()
        assert [t["status"] for t in delivery.tries] == [500, 503, 500] and delivery.next_attempt_at is None
        assert len({m["headers"]["webhook-id"] for m in receiver.messages()}) == 1  # one message id across tries
        assert webhooks.send_due() == 0


@pytest.mark.django_db
def test_a_failed_try_is_retried_by_the_sweep_and_redirects_are_not_followed(world_a, in_process):
    with WebhookReceiver(codes=[302]) as receiver:
        job = hooked_job(world_a, receiver.url(), events=("completed",))
        run(world_a, job)
        delivery = Deliveries.get(job=job)
        assert webhooks.deliver(delivery.pk) == "pending"
        Deliveries.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        with mock.patch("verticals.jobs.webhooks._enqueue", side_effect=webhooks.deliver) as enqueue:
            assert webhooks.send_due() == 1
        enqueue.assert_called_once_with(delivery.pk)
        delivery.refresh_from_db()
        assert delivery.status == "delivered" and [t["status"] for t in delivery.tries] == [302, 200]
        assert len(receiver.messages()) == 2  # the redirect target was never called


@pytest.mark.django_db
def test_an_unreachable_target_is_a_failed_try_not_a_crash(world_a, in_process, settings):
    job = hooked_job(world_a, "http://127.0.0.1:9/nothing-listens", events=("completed",))
    run(world_a, job)
    delivery = Deliveries.get(job=job)
    assert webhooks.deliver(delivery.pk) == "pending"
    delivery.refresh_from_db()
    assert delivery.response_status is None and "Connection refused" in delivery.last_error
    settings.JOBS_WEBHOOK_ALLOW_PRIVATE = False  # a target that became private is refused at send time
    Deliveries.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    webhooks.deliver(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.last_error == "Webhooks go to public addresses only."


@pytest.mark.django_db
def test_a_peer_that_trickles_its_answer_cannot_hold_the_worker(world_a, in_process, settings):
    import socket
    import threading
    import time

    settings.JOBS_WEBHOOK_TIMEOUT = 1
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle():  # reads the request, then answers one byte every 0.2 s, for ever
        conn, _ = listener.accept()
        conn.recv(65536)
        while not stop.is_set():
            try:
                conn.sendall(b"H")
            except OSError:
                break
            time.sleep(0.2)
        conn.close()

    threading.Thread(target=trickle, daemon=True).start()
    try:
        job = hooked_job(world_a, f"http://127.0.0.1:{listener.getsockname()[1]}/slow", events=("completed",))
        run(world_a, job)
        delivery = Deliveries.get(job=job)
        started = time.monotonic()
        assert webhooks.deliver(delivery.pk) == "pending"
        assert time.monotonic() - started < 3
    finally:
        stop.set()
        listener.close()
    delivery.refresh_from_db()
    assert delivery.last_error == "No answer within 1 s."


@pytest.mark.django_db
def test_the_connection_goes_to_the_address_that_was_checked(world_a, in_process, settings):
    import socket

    real = socket.getaddrinfo
    with WebhookReceiver() as receiver:
        port = receiver.server.server_address[1]
        named = f"http://hooks.customer.test:{port}/in"

        names = []

        def resolve(host, *args, **kwargs):  # the customer's name points here; addresses resolve as they are
            if host == "hooks.customer.test":
                names.append(host)
                return real("127.0.0.1", *args, **kwargs)
            assert host == "127.0.0.1", f"connected by another name: {host}"
            return real(host, *args, **kwargs)

        job = hooked_job(world_a, named, events=("completed",))
        run(world_a, job)
        delivery = Deliveries.get(job=job)
        with mock.patch("verticals.jobs.webhooks.socket.getaddrinfo", side_effect=resolve):
            assert webhooks.deliver(delivery.pk) == "delivered"
        assert names == ["hooks.customer.test"]  # resolved once, by the check; the connection used its answer
        message = receiver.messages("/in")[0]
        assert message["headers"]["host"] == f"hooks.customer.test:{port}"
        # A name that resolves to a private address is refused when private targets are not allowed.
        settings.JOBS_WEBHOOK_ALLOW_PRIVATE = False
        assert webhooks.url_problem(named) is None  # the URL alone looks fine …
        with mock.patch("verticals.jobs.webhooks.socket.getaddrinfo", side_effect=resolve):
            assert webhooks.resolve_target(named) == ("Webhooks go to public addresses only.", None)  # … its address is not
        assert len(receiver.messages()) == 1
