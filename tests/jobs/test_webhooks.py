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
        return engine.job_create(
            project=world.project,
            kind="test.steps",
            params={"steps": 3},
            webhook={"url": url, "events": list(events), **extra},
        )


def run(world, job):
    engine.schedule(world.tenant.pk)
    return worker.execute(job.public_id)


def deliver_all(job) -> list[str]:
    return [
        webhooks.deliver(pk)
        for pk in Deliveries.filter(job=job).order_by("pk").values_list("pk", flat=True)
    ]


@pytest.mark.parametrize(
    "hook, field, words",
    [
        ("https://x.example", "webhook", "Give an object"),
        ({"url": "ftp://x.example/h"}, "webhook.url", "http:// or https://"),
        ({"url": "not a url"}, "webhook.url", "http:// or https://"),
        ({"url": "https://user:pw@x.example/h"}, "webhook.url", "Leave credentials out"),
        (
            {"url": "https://x.example/h", "events": ["finish"]},
            "webhook.events",
            "start, progress, completed",
        ),
        ({"url": "https://x.example/h", "events": []}, "webhook.events", "non-empty list"),
        ({"url": "https://x.example/h", "secret": "plain"}, "webhook.secret", "whsec_"),
        ({"url": "https://x.example/h", "secret": "whsec_c2hvcnQ="}, "webhook.secret", "24 to 64"),
        ({"url": "https://x.example/h", "colour": "red"}, "webhook", "Unknown field(s) colour"),
    ],
)
def test_bad_webhooks_are_refused_with_what_to_fix(hook, field, words):
    with pytest.raises(ValidationError) as refused:
        webhooks.clean_webhook(hook)
    assert words in " ".join(refused.value.message_dict[field])


def test_a_secret_is_made_when_none_is_given_and_a_given_one_is_kept():
    made = webhooks.clean_webhook({"url": "https://x.example/h"})
    assert made["secret"].startswith("whsec_") and made["events"] == ["completed"]
    Webhook(made["secret"])  # the library accepts it
    own = webhooks.new_secret()
    assert webhooks.clean_webhook(
        {"url": "https://x.example/h", "secret": own, "events": ["completed", "start"]}
    ) == {"url": "https://x.example/h", "events": ["start", "completed"], "secret": own}


PRIVATE_TARGETS = [
    # IPv4 in every spelling the resolver reads: dotted, shortened, one number, hex, octal.
    "http://127.0.0.1:8000/h",
    "http://127.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://0x7f.1/",
    "http://10.1.2.3/h",
    "http://192.168.0.5/h",
    "http://169.254.169.254/latest",
    "http://100.64.0.1/",
    "http://0.0.0.0/",
    "http://0/",
    "http://224.0.0.1/",
    # IPv6: loopback, unspecified, link-local, unique local, IPv4-mapped, NAT64, 6to4 and IPv4-compatible loopback.
    "http://[::1]/h",
    "http://[::]/",
    "http://[fe80::1]/",
    "http://[fd12:3456::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[2002:7f00:1::1]/",
    "http://[::127.0.0.1]/",
    # Names that are local by convention.
    "http://localhost/h",
    "http://LOCALHOST./h",
    "http://api.localhost/",
    "http://metadata.google.internal/",
]


@pytest.mark.parametrize("url", PRIVATE_TARGETS)
def test_private_targets_are_refused_at_creation_unless_allowed(settings, url):
    settings.JOBS_WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(ValidationError) as refused:
        webhooks.clean_webhook({"url": url})
    assert refused.value.message_dict["webhook.url"][0].startswith(
        "Webhooks go to public addresses only."
    )
    with pytest.raises(webhooks.TargetRefused):
        webhooks.resolve_target(url)
    settings.JOBS_WEBHOOK_ALLOW_PRIVATE = True
    assert webhooks.clean_webhook({"url": url})["url"] == url


def test_the_refusal_names_the_address_a_spelling_stands_for(settings):
    settings.JOBS_WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(webhooks.TargetRefused) as refused:
        webhooks.resolve_target("http://0x7f000001/")
    assert (
        str(refused.value)
        == "Webhooks go to public addresses only. 0x7f000001 is 127.0.0.1, which is not a public address."
    )


@pytest.mark.parametrize(
    "url, address",
    [
        ("https://93.184.216.34/h", "93.184.216.34"),
        ("http://1572395042/", "93.184.216.34"),
        ("http://[2001:4860:4860::8888]/", "2001:4860:4860::8888"),
        ("http://[::ffff:8.8.8.8]/", "::ffff:808:808"),
        ("http://[64:ff9b::808:808]/", "64:ff9b::808:808"),
    ],
)
def test_public_addresses_are_accepted_when_private_ones_are_not(settings, url, address):
    settings.JOBS_WEBHOOK_ALLOW_PRIVATE = False
    assert webhooks.clean_webhook({"url": url})["url"] == url
    assert webhooks.resolve_target(url) == address


def _resolver(answers: dict):
    """getaddrinfo for names of the test's own (each to its list of addresses); others as they are."""
    import socket

    real = socket.getaddrinfo

    def resolve(host, port, *args, **kwargs):
        if host in answers:
            if not answers[host]:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return [
                info for address in answers[host] for info in real(address, port, *args, **kwargs)
            ]
        return real(host, port, *args, **kwargs)

    return mock.patch("verticals.jobs.webhooks.socket.getaddrinfo", side_effect=resolve)


def test_a_name_is_checked_by_every_address_it_resolves_to_at_creation(settings):
    settings.JOBS_WEBHOOK_ALLOW_PRIVATE = False
    with _resolver(
        {
            "hooks.customer.test": ["93.184.216.34", "10.0.0.7"],
            "public.customer.test": ["93.184.216.34"],
            "gone.customer.test": [],
        }
    ):
        with pytest.raises(ValidationError) as refused:
            webhooks.clean_webhook({"url": "https://hooks.customer.test/in"})
        assert refused.value.message_dict["webhook.url"] == [
            "Webhooks go to public addresses only. hooks.customer.test is 10.0.0.7, which is not a public address."
        ]
        with pytest.raises(ValidationError) as missing:
            webhooks.clean_webhook({"url": "https://gone.customer.test/in"})
        assert missing.value.message_dict["webhook.url"] == [
            "The host gone.customer.test does not resolve: check the name."
        ]
        assert (
            webhooks.clean_webhook({"url": "https://public.customer.test/in"})["url"]
            == "https://public.customer.test/in"
        )


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["http://127.1/", "http://2130706433/", "http://0x7f000001/"])
def test_jobs_with_private_webhook_targets_are_refused_with_400(world_a, settings, url):
    settings.JOBS_WEBHOOK_ALLOW_PRIVATE = False
    answer = world_a.client().post(
        f"/api/v1/projects/{world_a.project.public_id}/jobs/",
        {"kind": "test.noop", "webhook": {"url": url}},
        format="json",
    )
    assert answer.status_code == 400, answer.content
    error = answer.json()["error"]
    assert error["message"].startswith("webhook.url: Webhooks go to public addresses only.")
    assert not Job.dangerously_unscoped.filter(tenant=world_a.tenant).exists()


def _delivery_to_a_public_name(world, settings) -> WebhookDelivery:
    """A finished job's delivery to a name that resolved to a public address when the job was made."""
    settings.JOBS_WEBHOOK_ALLOW_PRIVATE = False
    with _resolver({"hooks.customer.test": ["93.184.216.34"]}):
        job = hooked_job(world, "http://hooks.customer.test/in", events=("completed",))
    run(world, job)
    return Deliveries.get(job=job)


@pytest.mark.django_db
def test_a_target_refused_at_delivery_fails_it_at_once_and_is_not_retried(
    world_a, in_process, settings
):
    """A name that pointed somewhere public at creation and at a private address later (DNS rebinding)."""
    delivery = _delivery_to_a_public_name(world_a, settings)
    with (
        _resolver({"hooks.customer.test": ["127.0.0.1"]}),
        mock.patch("verticals.jobs.webhooks.socket.create_connection") as connect,
    ):
        assert webhooks.deliver(delivery.pk) == "failed"
    connect.assert_not_called()
    delivery.refresh_from_db()
    assert (
        delivery.attempts == 1
        and delivery.next_attempt_at is None
        and delivery.response_status is None
    )
    assert (
        delivery.last_error
        == "Webhooks go to public addresses only. hooks.customer.test is 127.0.0.1, which is not a public address."
    )
    assert webhooks.send_due() == 0


@pytest.mark.django_db
def test_a_name_that_does_not_resolve_at_delivery_is_tried_again(world_a, in_process, settings):
    delivery = _delivery_to_a_public_name(world_a, settings)
    with _resolver({"hooks.customer.test": []}):
        assert webhooks.deliver(delivery.pk) == "pending"
    delivery.refresh_from_db()
    assert delivery.last_error == "The host hooks.customer.test does not resolve: check the name."
    assert delivery.next_attempt_at is not None


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
        assert (
            headers["webhook-id"].startswith("msg_")
            and headers["content-type"] == "application/json"
        )
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
    assert list(Deliveries.filter(job=quiet).values_list("event_type", flat=True)) == [
        "job.succeeded"
    ]


@pytest.mark.django_db
def test_failed_tries_back_off_then_give_up_and_the_log_keeps_every_try(
    world_a, in_process, settings
):
    settings.JOBS_WEBHOOK_BACKOFF = ["30", "60"]
    with WebhookReceiver(codes=[500, 503, 500]) as receiver:
        job = hooked_job(world_a, receiver.url(), events=("completed",))
        run(world_a, job)
        delivery = Deliveries.get(job=job)
        before = timezone.now()
        assert webhooks.deliver(delivery.pk) == "pending"
        delivery.refresh_from_db()
        assert (
            delivery.attempts == 1
            and delivery.response_status == 500
            and "HTTP 500" in delivery.last_error
        )
        assert (
            before + timedelta(seconds=29)
            < delivery.next_attempt_at
            < before + timedelta(seconds=32)
        )
        assert webhooks.deliver(delivery.pk) == "skipped"  # not due yet: nothing is sent
        for status in ("pending", "failed"):
            Deliveries.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
            assert webhooks.deliver(delivery.pk) == status
        delivery.refresh_from_db()
        assert [t["status"] for t in delivery.tries] == [
            500,
            503,
            500,
        ] and delivery.next_attempt_at is None
        assert (
            len({m["headers"]["webhook-id"] for m in receiver.messages()}) == 1
        )  # one message id across tries
        assert webhooks.send_due() == 0


@pytest.mark.django_db
def test_a_failed_try_is_retried_by_the_sweep_and_redirects_are_not_followed(world_a, in_process):
    with WebhookReceiver(codes=[302]) as receiver:
        job = hooked_job(world_a, receiver.url(), events=("completed",))
        run(world_a, job)
        delivery = Deliveries.get(job=job)
        assert webhooks.deliver(delivery.pk) == "pending"
        Deliveries.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        with mock.patch(
            "verticals.jobs.webhooks._enqueue", side_effect=webhooks.deliver
        ) as enqueue:
            assert webhooks.send_due() == 1
        enqueue.assert_called_once_with(delivery.pk)
        delivery.refresh_from_db()
        assert delivery.status == "delivered" and [t["status"] for t in delivery.tries] == [
            302,
            200,
        ]
        assert len(receiver.messages()) == 2  # the redirect target was never called


@pytest.mark.django_db
def test_an_unreachable_target_is_a_failed_try_not_a_crash(world_a, in_process, settings):
    job = hooked_job(world_a, "http://127.0.0.1:9/nothing-listens", events=("completed",))
    run(world_a, job)
    delivery = Deliveries.get(job=job)
    assert webhooks.deliver(delivery.pk) == "pending"
    delivery.refresh_from_db()
    assert delivery.response_status is None and "Connection refused" in delivery.last_error
    settings.JOBS_WEBHOOK_ALLOW_PRIVATE = (
        False  # a target that became private is refused at send time
    )
    Deliveries.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert webhooks.deliver(delivery.pk) == "failed"
    delivery.refresh_from_db()
    assert (
        delivery.last_error
        == "Webhooks go to public addresses only. 127.0.0.1 is not a public address."
    )


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
        job = hooked_job(
            world_a, f"http://127.0.0.1:{listener.getsockname()[1]}/slow", events=("completed",)
        )
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

        def resolve(
            host, *args, **kwargs
        ):  # the customer's name points here; addresses resolve as they are
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
        assert names == [
            "hooks.customer.test"
        ]  # resolved once, by the check; the connection used its answer
        message = receiver.messages("/in")[0]
        assert message["headers"]["host"] == f"hooks.customer.test:{port}"
        # A name that resolves to a private address is refused when private targets are not allowed.
        settings.JOBS_WEBHOOK_ALLOW_PRIVATE = False
        assert webhooks.url_problem(named) is None  # the URL alone looks fine …
        with (
            mock.patch("verticals.jobs.webhooks.socket.getaddrinfo", side_effect=resolve),
            pytest.raises(webhooks.TargetRefused, match="hooks.customer.test is 127.0.0.1"),
        ):
            webhooks.resolve_target(named)  # … its address is not
        assert len(receiver.messages()) == 1
