"""A job page in a real Chromium while the job runs: the bar advances, log lines and chart
points arrive, Cancel stops the job, and the page stops polling once the job has ended."""

import os
import re
import threading
import time

import pytest
from django.db import connection

import tests.jobs.runners  # noqa: F401  (registers the test job kinds)
from tests.conftest import PASSWORD, build_world
from tests.e2e.test_portal_browser import chromium  # noqa: F401  (the fixture)
from verticals.jobs import engine, worker
from verticals.tenancy.scoping import tenant_context

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENSHOT_DIR = os.environ.get("VERTICALS_SCREENSHOT_DIR", "/tmp")
STEPS, DELAY = 100, 0.2  # 20 s if nobody cancels it


def run_in_thread(public_id: str) -> tuple[threading.Thread, dict]:
    """Run the job as a worker would, in a thread of this process (it has its own connection)."""
    outcome: dict = {}

    def work():
        try:
            outcome["status"] = worker.execute(public_id)
        except BaseException as error:  # reported by the test
            outcome["error"] = error
        finally:
            connection.close()

    return threading.Thread(target=work, name=f"job-{public_id}", daemon=True), outcome


def percent(page) -> float:
    return float(page.get_attribute("[data-testid=progress]", "aria-valuenow") or 0)


@pytest.mark.django_db(transaction=True)
def test_job_page_is_live_and_cancel_stops_the_job(live_server, chromium, monkeypatch):  # noqa: F811
    # No broker here: the test runs the job itself, so the "run job X" message goes nowhere.
    monkeypatch.setattr(engine, "send", lambda public_id, queue: None)
    world = build_world("A")
    with tenant_context(world.tenant):
        job = engine.job_create(
            project=world.project,
            kind="test.steps",
            params={"steps": STEPS, "delay": DELAY},
            caller=None,
        )
    job_url = f"{live_server.url}/projects/{world.project.public_id}/jobs/{job.public_id}/"
    runner, outcome = run_in_thread(job.public_id)
    problems: list[str] = []
    live_calls: list[float] = []

    try:
        with chromium() as page:
            page.set_viewport_size({"width": 1280, "height": 900})
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on(
                "console",
                lambda message: (
                    message.type == "error"
                    and "Failed to load resource" not in message.text
                    and problems.append(f"console: {message.text}")
                ),
            )
            page.on(
                "response",
                lambda response: (
                    response.status >= 400
                    and not response.url.endswith("/favicon.ico")
                    and problems.append(f"{response.status} for {response.url}")
                ),
            )
            page.on(
                "request",
                lambda request: "/live" in request.url and live_calls.append(time.monotonic()),
            )

            page.goto(live_server.url + "/login/")
            page.fill("#id_username", world.owner.email)
            page.fill("#id_password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(re.compile(r".*/projects/$"))

            # From the nav to the list to the job, which waits in the queue.
            page.click("nav >> text=Jobs")
            page.click(f"text={job.public_id}")
            page.wait_for_url(job_url)
            assert page.inner_text("[data-testid=job-status]") == "Queued"
            assert page.evaluate("typeof window.Chart") == "function", (
                "Chart.js loads from the vendored file"
            )

            runner.start()
            page.wait_for_selector("#job-live[data-status=running]")
            page.wait_for_function(
                "+document.querySelector('[data-testid=progress]').getAttribute('aria-valuenow') >= 5"
            )
            first = percent(page)
            page.wait_for_function(
                f"+document.querySelector('[data-testid=progress]').getAttribute('aria-valuenow') > {first}"
            )
            assert percent(page) > first, "the bar advances"
            assert re.search(r"\d+ / 100", page.inner_text("[data-testid=steps]"))
            assert re.search(r"(seconds|s|min) left", page.inner_text("[data-testid=eta]"))
            page.wait_for_function(
                "document.querySelectorAll('#job-log-lines li.log-info').length >= 5"
            )
            assert "step 1 of 100" in page.inner_text("[data-testid=log]")
            page.wait_for_function("+document.getElementById('job-chart').dataset.points >= 5")
            points = int(page.get_attribute("#job-chart", "data-points"))
            page.wait_for_function(
                f"+document.getElementById('job-chart').dataset.points > {points}"
            )
            page.screenshot(
                path=os.path.join(SCREENSHOT_DIR, "job-page-running.png"), full_page=True
            )

            page.on("dialog", lambda dialog: dialog.accept())
            clicked = time.monotonic()
            page.click("[data-testid=cancel]")
            page.wait_for_selector("#job-live[data-status=cancelled]", timeout=5000)
            took = time.monotonic() - clicked
            assert took < 5, f"cancelled after {took:.1f} s"
            stopped_at = percent(page)
            assert 0 < stopped_at < 100
            assert "Cancelled while running." in page.inner_text("#job-live")
            assert "Cancellation requested by" in page.inner_text("[data-testid=log]")
            assert not page.query_selector("[data-testid=cancel]"), (
                "no Cancel button on a finished job"
            )

            # The polling has stopped: no request for the fragment in the next 2.5 s.
            calls = len(live_calls)
            page.wait_for_timeout(2500)
            assert len(live_calls) == calls, "the page still polls a finished job"
            assert percent(page) == stopped_at
            page.screenshot(
                path=os.path.join(SCREENSHOT_DIR, "job-page-cancelled.png"), full_page=True
            )

            # The project's list shows where it stopped.
            page.click(".crumbs >> text=Jobs")
            row = page.locator("[data-testid=jobs] tr", has_text=job.public_id)
            assert "Cancelled" in row.inner_text() and f"{stopped_at}%" in row.inner_text()
            page.screenshot(path=os.path.join(SCREENSHOT_DIR, "job-list.png"), full_page=True)
    finally:
        if runner.ident is not None:  # started: let it end before the test database goes
            runner.join(timeout=STEPS * DELAY + 10)
    assert not runner.is_alive()
    assert outcome.get("error") is None, outcome.get("error")
    assert outcome["status"] == "cancelled"
    assert not problems, problems
