"""The portal in a real Chromium: log in, create a project, create an API key, see the brand."""

import json
import os
import re
import shutil
import urllib.error
import urllib.request
from contextlib import contextmanager
from io import StringIO

import pytest
from django.core.management import call_command

from verticals.tenancy.models import Partner

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def chromium():
    """Opens a page in Chromium. Start it after the test's own ORM work: Playwright runs an
    event loop in this thread, and Django refuses ORM calls from a thread with a running loop."""
    if not os.path.exists(CHROMIUM):
        message = (
            f"Chromium not found at {CHROMIUM}: `apt-get install chromium` to run the browser test."
        )
        if os.environ.get("VERTICALS_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    @contextmanager
    def open_page():
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_context().new_page()
            page.set_default_timeout(15000)
            try:
                yield page
            finally:
                browser.close()

    return open_page


@pytest.mark.django_db(transaction=True)
def test_portal_in_chromium(live_server, chromium):
    out = StringIO()
    call_command(
        "bootstrap",
        partner="Acme Resellers",
        tenant="Globex",
        email="owner@globex.example",
        password="Browser-pass-2026",
        stdout=out,
    )
    boot = json.loads(out.getvalue())
    Partner.objects.filter(name="Acme Resellers").update(
        brand_name="Acme Cloud", brand_colour="#d1242f"
    )
    with chromium() as page:
        drive_portal(page, live_server.url, boot)


def drive_portal(page, base_url: str, boot: dict) -> None:
    page.goto(base_url + "/login/")
    page.fill("#id_username", boot["user"]["email"])
    page.fill("#id_password", "Browser-pass-2026")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/projects/$"))

    # The partner's brand: its name in the header and its colour on the bar.
    assert page.inner_text("[data-testid=brand]").strip() == "Acme Cloud"
    bar_colour = page.eval_on_selector(".topbar", "el => getComputedStyle(el).backgroundColor")
    assert bar_colour == "rgb(209, 36, 47)"
    assert "Default project" in page.inner_text("[data-testid=projects]")

    # Create a project.
    page.fill("#id_name", "Churn prediction")
    page.fill("#id_description", "Made in a browser")
    page.click("text=Create project")
    page.wait_for_url(re.compile(r".*/projects/$"))
    assert "Churn prediction" in page.inner_text("[data-testid=projects]")

    # Create an API key: the secret is shown once, with a copy button.
    page.click("nav >> text=API keys")
    page.fill("#id_name", "from the browser")
    page.click("text=Create key")
    secret = page.inner_text("[data-testid=secret]").strip()
    assert re.fullmatch(r"vk_live_[0-9A-Za-z]{46}", secret)
    page.click("[data-copy]")
    page.wait_for_function("document.querySelector('[data-copy]').textContent !== 'Copy'")
    assert "from the browser" in page.inner_text("[data-testid=keys]")

    # The secret works against the API ...
    request = urllib.request.Request(
        base_url + "/api/v1/projects/", headers={"Authorization": f"Bearer {secret}"}
    )
    with urllib.request.urlopen(request) as response:
        names = {p["name"] for p in json.load(response)["results"]}
    assert "Churn prediction" in names

    # ... and is never shown again.
    page.goto(base_url + "/api-keys/")
    assert secret not in page.content()
    assert "from the browser" in page.inner_text("[data-testid=keys]")

    # Revoking swaps the key's row in place (HTMX), after a confirmation; the key stops working.
    page.on("dialog", lambda dialog: dialog.accept())
    row = page.locator("tr", has_text="from the browser")
    row.locator("text=Revoke").click()
    page.wait_for_function(
        "[...document.querySelectorAll('tr')].some(r => r.innerText.includes('from the browser') && r.innerText.includes('revoked'))"
    )
    assert page.url.endswith("/api-keys/")
    try:
        urllib.request.urlopen(request)
        raise AssertionError("a revoked key still works")
    except urllib.error.HTTPError as error:
        assert error.code == 401

    # The audit log filters in place (HTMX) and shows who revoked the key.
    page.click("nav >> text=Audit log")
    assert "project.create" in page.inner_text("[data-testid=audit]")
    page.select_option("#audit-action", "api_key.revoke")
    page.wait_for_function(
        "!document.querySelector('[data-testid=audit]').innerText.includes('project.create')"
    )
    log = page.inner_text("[data-testid=audit]")
    assert "api_key.revoke" in log and boot["user"]["email"] in log
    assert page.url.endswith("/audit/?action=api_key.revoke")
