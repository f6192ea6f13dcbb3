"""The portal's job pages through Django's test client: list, job page, live fragment, cancel.

Jobs run in this process (`worker.execute`), or are moved by hand through the engine's own
transitions (claim, record_progress) to freeze one mid-run.
"""

import json
import re
from html import unescape

import pytest
from django.test import Client

import tests.jobs.runners  # noqa: F401  (registers the test job kinds)
from tests.conftest import make_member
from verticals.jobs import engine, worker
from verticals.jobs.models import Job
from verticals.portal import jobs as portal_jobs
from verticals.tenancy.roles import Role
from verticals.tenancy.scoping import tenant_context
from verticals.tenancy.services import project_create

HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def in_process(settings):
    """Jobs run in the test process: no heartbeat thread, every report written."""
    settings.JOBS_HEARTBEAT_SECONDS = 0
    settings.JOBS_PROGRESS_SECONDS = 0
    return settings


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def make_job(world, project=None, kind="test.steps", **params) -> Job:
    with tenant_context(world.tenant):
        return engine.job_create(
            project=project or world.project,
            kind=kind,
            params=params if kind == "test.steps" else {},
            caller=None,
        )


def run(world, job) -> Job:
    """Dispatch and run the job here, to its end."""
    engine.schedule(world.tenant.pk)
    worker.execute(job.public_id)
    job.refresh_from_db()
    return job


def start(world, job, *, current=3, total=10, eta=125.0, loss=0.5, log="loading rows") -> Job:
    """Leave the job running at `current` of `total`, with one metric point and one log line."""
    engine.schedule(world.tenant.pk)
    job = engine.claim(job.public_id, "test-worker:1")
    engine.append_events(job, [engine.log_event(log, "warning")])
    engine.record_progress(
        job,
        job.attempt,
        current=current,
        total=total,
        description=f"epoch {current}",
        eta=eta,
        metrics={"loss": loss},
        step=current,
        write_progress=True,
    )
    job.refresh_from_db()
    return job


def page_url(world, job, suffix="") -> str:
    return f"/projects/{world.project.public_id}/jobs/{job.public_id}/{suffix}"


def metric_points(html: str) -> dict:
    found = re.search(
        r'<script id="job-metric-points" type="application/json">(.*?)</script>', html, re.S
    )
    assert found, "the fragment carries no metric points"
    return json.loads(found.group(1))


# --- the list -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_list_shows_the_projects_jobs_newest_first_and_filters_by_status(world_a):
    first = run(world_a, make_job(world_a, steps=2))
    second = make_job(world_a, steps=5)
    with tenant_context(world_a.tenant):
        elsewhere = project_create(tenant=world_a.tenant, name="Elsewhere")
    other = make_job(world_a, project=elsewhere, steps=1)
    client = signed_in(world_a.owner)

    page = client.get(f"/projects/{world_a.project.public_id}/jobs/").content.decode()
    assert first.public_id in page and second.public_id in page and other.public_id not in page
    assert page.index(second.public_id) < page.index(first.public_id), "newest first"
    assert "Succeeded" in page and "Queued" in page and "100.0%" in page and "test.steps" in page
    assert 'hx-trigger="every 2s"' in page, "a list with an unfinished job refreshes itself"
    assert "chart-4.5.1" not in page, "Chart.js loads on the job page only"

    only_done = client.get(
        f"/projects/{world_a.project.public_id}/jobs/?status=succeeded"
    ).content.decode()
    assert first.public_id in only_done and second.public_id not in only_done
    assert 'value="succeeded" selected' in only_done and 'hx-trigger="every 2s"' not in only_done
    none_failed = client.get(
        f"/projects/{world_a.project.public_id}/jobs/?status=failed"
    ).content.decode()
    assert "No failed jobs." in none_failed
    # An unknown status is no filter, not an error.
    assert (
        second.public_id
        in client.get(f"/projects/{world_a.project.public_id}/jobs/?status=bogus").content.decode()
    )

    # The tenant-wide list (the nav's "Jobs") shows every project's jobs, with the project.
    everything = client.get("/jobs/").content.decode()
    assert (
        all(j.public_id in everything for j in (first, second, other)) and "Elsewhere" in everything
    )
    assert 'href="/jobs/"' in everything


@pytest.mark.django_db
def test_list_pages(world_a, monkeypatch):
    monkeypatch.setattr(portal_jobs, "PAGE_SIZE", 2)
    made = [make_job(world_a, steps=1) for _ in range(3)]
    client = signed_in(world_a.owner)
    first = client.get(f"/projects/{world_a.project.public_id}/jobs/").content.decode()
    assert (
        made[2].public_id in first and made[1].public_id in first and made[0].public_id not in first
    )
    assert "Page 1 of 2" in first and "page=2" in first
    second = client.get(f"/projects/{world_a.project.public_id}/jobs/?page=2").content.decode()
    assert made[0].public_id in second and made[2].public_id not in second


@pytest.mark.django_db
def test_project_page_links_to_its_jobs(world_a):
    page = signed_in(world_a.owner).get(f"/projects/{world_a.project.public_id}/").content.decode()
    assert f'href="/projects/{world_a.project.public_id}/jobs/"' in page


# --- the job page -------------------------------------------------------------------------


@pytest.mark.django_db
def test_job_page_of_a_running_job(world_a):
    job = start(world_a, make_job(world_a, steps=10, delay=0.5))
    page = signed_in(world_a.owner).get(page_url(world_a, job)).content.decode()
    assert "Running" in page and "30.0%" in page and "3 / 10" in page and "epoch 3" in page
    assert "about 2 min left" in page
    assert "loading rows" in page and 'class="log-warning"' in page
    assert metric_points(page) == {"loss": [[3, 0.5]]}
    assert (
        "1 of 3" in page and "test-worker:1" not in page
    )  # attempt x of max; the worker is for staff
    assert '"delay": 0.5,\n  "steps": 10' in unescape(page)  # params, pretty JSON
    assert 'hx-trigger="every 1s"' in page
    assert (
        f'hx-get="/projects/{world_a.project.public_id}/jobs/{job.public_id}/live?after={job.event_seq}"'
        in page
    )
    assert 'data-testid="cancel"' in page
    assert "/static/vendor/chart-4.5.1.umd.min.js" in page and "/static/portal/jobs.js" in page
    assert "cdn" not in page.lower()


@pytest.mark.django_db
def test_job_page_of_a_succeeded_job(world_a):
    job = run(world_a, make_job(world_a, steps=3))
    assert job.status == "succeeded"
    page = signed_in(world_a.owner).get(page_url(world_a, job)).content.decode()
    assert "Succeeded" in page and "100.0%" in page and "3 / 3" in page
    assert (
        '"attempt": 1,\n  "steps": 3' in unescape(page) and 'data-testid="result"' in page
    )  # result JSON
    assert metric_points(page) == {"loss": [[1, 1.0], [2, 0.5], [3, 0.3333]]}
    assert page.count("step 1 of 3") == 1 and page.index("step 1 of 3") < page.index(
        "step 3 of 3"
    ), "log: newest at the bottom"
    assert "hx-trigger" not in page.split('id="job-live"')[1].split(">")[0]
    assert 'data-testid="cancel"' not in page
    assert "left" not in page.split('data-testid="progress"')[1].split("</p>")[0], (
        "no ETA once finished"
    )


@pytest.mark.django_db
def test_failed_job_shows_the_message_and_the_traceback_to_staff_only(world_a):
    job = run(world_a, make_job(world_a, steps=3, crash_at=1))
    assert job.status == "failed"
    page = signed_in(world_a.owner).get(page_url(world_a, job)).content.decode()
    assert "The job stopped on an internal error (ZeroDivisionError)" in page
    assert "Traceback" not in page and "a bug in the runner" not in page

    world_a.owner.is_staff = True
    world_a.owner.save(update_fields=["is_staff"])
    staff_page = signed_in(world_a.owner).get(page_url(world_a, job)).content.decode()
    assert (
        "Traceback (visible to staff only)" in staff_page
        and "ZeroDivisionError: a bug in the runner" in staff_page
    )

    customer_error = run(world_a, make_job(world_a, steps=3, fail_at=2))
    page = signed_in(world_a.owner).get(page_url(world_a, customer_error)).content.decode()
    assert "Step 2 found a bad row in the data." in page and "66.7%" in page


# --- live ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_live_fragment_polls_while_running_sends_new_points_and_stops_when_finished(world_a):
    job = start(world_a, make_job(world_a, steps=10))
    client = signed_in(world_a.owner)
    cursor = job.event_seq

    live = client.get(page_url(world_a, job, "live"), {"after": cursor}, **HX)
    html = live.content.decode()
    assert live.status_code == 200 and live["Cache-Control"] == "no-store" and "<html" not in html
    assert html.startswith('<div id="job-live"') and 'hx-trigger="every 1s"' in html
    assert metric_points(html) == {}, "nothing new since the cursor"
    assert 'id="job-log" hx-swap-oob="true"' in html and "loading rows" in html

    engine.record_progress(
        job,
        job.attempt,
        current=4,
        total=10,
        description="epoch 4",
        eta=30.0,
        metrics={"loss": 0.4, "accuracy": 0.7},
        step=4,
        write_progress=True,
    )
    html = client.get(page_url(world_a, job, "live"), {"after": cursor}, **HX).content.decode()
    assert metric_points(html) == {"loss": [[4, 0.4]], "accuracy": [[4, 0.7]]}, (
        "only the new points"
    )
    assert "40.0%" in html and "about 30 s left" in html
    job.refresh_from_db()
    assert f"?after={job.event_seq}" in html, "the next poll asks for what comes after this one"

    # A missing or unreadable cursor gets the whole series (the page drops points it has).
    html = client.get(page_url(world_a, job, "live") + "?after=x", **HX).content.decode()
    assert metric_points(html) == {"loss": [[3, 0.5], [4, 0.4]], "accuracy": [[4, 0.7]]}

    engine.finish(job, job.attempt, Job.Status.SUCCEEDED, result={"accuracy": 0.9})
    html = client.get(page_url(world_a, job, "live"), {"after": cursor}, **HX).content.decode()
    assert "Succeeded" in html and "hx-trigger" not in html and "hx-get" not in html, (
        "a finished job's fragment stops the polling"
    )
    assert '"accuracy": 0.9' in unescape(html)


# --- cancel -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_developer_cancels_a_queued_job_in_place(world_a):
    job = make_job(world_a, steps=3)
    developer = make_member(world_a.tenant, "dev@example.com", Role.DEVELOPER)
    client = signed_in(developer.user)
    assert 'data-testid="cancel"' in client.get(page_url(world_a, job)).content.decode()

    answer = client.post(page_url(world_a, job, "cancel"), **HX)
    html = answer.content.decode()
    assert answer.status_code == 200 and html.startswith('<div id="job-live"')
    assert "Job cancelled." in html and "Cancelled" in html and "hx-trigger" not in html
    assert 'data-testid="cancel"' not in html
    job.refresh_from_db()
    assert job.status == "cancelled" and job.error_message == "Cancelled before it started."
    assert run(world_a, job).status == "cancelled", "a cancelled job never starts"


@pytest.mark.django_db
def test_cancel_of_a_running_job_asks_it_to_stop(world_a):
    job = start(world_a, make_job(world_a, steps=10))
    client = signed_in(world_a.owner)
    answer = client.post(page_url(world_a, job, "cancel"), follow=True)  # a plain form post
    assert answer.redirect_chain[-1][0] == page_url(world_a, job)
    html = answer.content.decode()
    assert "Cancellation requested" in html and "stopping at its next step" in html
    assert 'data-testid="cancel"' not in html, "asked once"
    assert (
        f"Cancellation requested by {world_a.owner.email}." in html
    )  # the log line the engine wrote
    job.refresh_from_db()
    assert job.status == "running" and job.cancel_requested_at is not None


@pytest.mark.django_db
def test_cancel_of_a_finished_job_says_so(world_a):
    job = run(world_a, make_job(world_a, steps=1))
    client = signed_in(world_a.owner)
    answer = client.post(page_url(world_a, job, "cancel"), **HX)
    assert answer.status_code == 200
    assert (
        f"Job {job.public_id} has already succeeded; there is nothing to cancel."
        in answer.content.decode()
    )
    plain = client.post(page_url(world_a, job, "cancel"), follow=True)
    assert plain.status_code == 200 and "there is nothing to cancel" in plain.content.decode()
    job.refresh_from_db()
    assert job.status == "succeeded"


@pytest.mark.django_db
def test_viewer_watches_but_cannot_cancel_and_billing_sees_no_jobs(world_a):
    job = make_job(world_a, steps=3)
    viewer = signed_in(make_member(world_a.tenant, "viewer@example.com", Role.VIEWER).user)
    page = viewer.get(page_url(world_a, job))
    assert page.status_code == 200 and 'data-testid="cancel"' not in page.content.decode()
    assert (
        'data-testid="cancel"'
        not in viewer.get(page_url(world_a, job, "live"), **HX).content.decode()
    )
    refused = viewer.post(page_url(world_a, job, "cancel"), **HX)
    assert refused.status_code == 403 and "does not allow job.cancel" in refused.content.decode()
    job.refresh_from_db()
    assert job.status == "queued"

    billing = signed_in(make_member(world_a.tenant, "billing@example.com", Role.BILLING).user)
    assert billing.get(page_url(world_a, job)).status_code == 403
    assert billing.get("/jobs/").status_code == 403
    assert 'href="/jobs/"' not in billing.get("/projects/").content.decode()


@pytest.mark.django_db
def test_only_get_answers_on_pages_and_only_post_on_cancel(world_a):
    job = make_job(world_a, steps=1)
    client = signed_in(world_a.owner)
    assert client.post(page_url(world_a, job)).status_code == 405
    assert client.post(page_url(world_a, job, "live")).status_code == 405
    assert client.get(page_url(world_a, job, "cancel")).status_code == 405


# --- tenancy ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_another_tenants_project_and_job_are_404_like_missing_ones(world_a, world_b):
    job = make_job(world_a, steps=1)
    outsider = signed_in(world_b.owner)
    a_project, a_job = world_a.project.public_id, job.public_id
    for path in (
        f"/projects/{a_project}/jobs/",
        f"/projects/{a_project}/jobs/{a_job}/",
        f"/projects/{a_project}/jobs/{a_job}/live",
        "/projects/prj_doesnotexist000000/jobs/",
        f"/projects/{world_b.project.public_id}/jobs/{a_job}/",
        f"/projects/{world_b.project.public_id}/jobs/job_doesnotexist000000/",
    ):
        answer = outsider.get(path)
        assert answer.status_code == 404, path
        assert (
            a_job not in answer.content.decode()
            and world_a.project.name not in answer.content.decode()
        )
    for path in (
        f"/projects/{a_project}/jobs/{a_job}/cancel",
        f"/projects/{world_b.project.public_id}/jobs/{a_job}/cancel",
    ):
        assert outsider.post(path, **HX).status_code == 404
    job.refresh_from_db()
    assert job.status == "queued"
    assert a_job not in outsider.get("/jobs/").content.decode()

    # Inside one tenant, a job is reached through its own project only.
    with tenant_context(world_a.tenant):
        elsewhere = project_create(tenant=world_a.tenant, name="Elsewhere")
    assert (
        signed_in(world_a.owner).get(f"/projects/{elsewhere.public_id}/jobs/{a_job}/").status_code
        == 404
    )


# --- words ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "seconds, words",
    [
        (None, ""),
        (3, "a few seconds left"),
        (22, "about 20 s left"),
        (55, "about 1 min left"),
        (125, "about 2 min left"),
        (3600, "about 1 h left"),
        (5400, "about 1 h 30 min left"),
    ],
)
def test_eta_in_words(seconds, words):
    assert portal_jobs.eta_words(seconds) == words


@pytest.mark.parametrize(
    "seconds, words", [(None, "—"), (4.7, "4 s"), (65, "1 min 05 s"), (3725, "1 h 02 min")]
)
def test_duration_in_words(seconds, words):
    assert portal_jobs.duration_words(seconds) == words


@pytest.mark.django_db
def test_job_page_shows_the_webhook_delivery_log(world_a, in_process):
    from unittest import mock

    from verticals.jobs import webhooks
    from verticals.jobs.models import WebhookDelivery

    with mock.patch("verticals.jobs.webhooks._enqueue"), tenant_context(world_a.tenant):
        job = engine.job_create(
            project=world_a.project,
            kind="test.steps",
            params={"steps": 1},
            webhook={"url": "http://127.0.0.1:9/hook", "events": ["completed"]},
        )
        engine.request_cancel(job)
    delivery = WebhookDelivery.dangerously_unscoped.get(job=job)
    webhooks.deliver(delivery.pk)  # nothing listens there: a failed try
    page = world_a.session().get(f"/projects/{world_a.project.public_id}/jobs/{job.public_id}/")
    text = page.content.decode()
    assert page.status_code == 200 and 'data-testid="webhook"' in text
    assert (
        "http://127.0.0.1:9/hook" in text
        and "job.cancelled" in text
        and "Connection refused" in text
    )
    assert job.webhook_secret not in text
    plain = world_a.session().get(
        f"/projects/{world_a.project.public_id}/jobs/{world_a.job.public_id}/"
    )
    assert 'data-testid="webhook"' not in plain.content.decode()
