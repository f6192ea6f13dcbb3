"""The registry pages in a real Chromium: upload a dataset from the page (the progress bar
runs to its end, then the statistics appear), and type a text into a model's playground to
see its label bars."""

import os
import re

import pytest

from tests.conftest import PASSWORD, build_world
from tests.e2e.test_portal_browser import chromium  # noqa: F401  (the fixture)
from tests.registry.factories import make_model_version

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENSHOT_DIR = os.environ.get("VERTICALS_SCREENSHOT_DIR", "/tmp")

# A CSV large enough (about 300 kB) for the upload to report progress more than once.
POSITIVE = "I loved this product, it works perfectly and the battery lasts for days"
NEGATIVE = "Terrible, it broke after one day and support never answered my emails"
ROWS = 2000
CSV = (
    "text,label\n"
    + "".join(f'"{POSITIVE} #{i}",positive\n"{NEGATIVE} #{i}",negative\n' for i in range(ROWS // 2))
).encode()


@pytest.mark.django_db(transaction=True)
def test_upload_with_progress_then_the_playground(live_server, chromium):  # noqa: F811
    # ORM work first: Playwright runs an event loop in this thread (see the chromium fixture).
    world = build_world("A")
    model = make_model_version(world, "sentiment", name="tiny")
    project_url = f"{live_server.url}/projects/{world.project.public_id}/"
    problems: list[str] = []

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

        page.goto(live_server.url + "/login/")
        page.fill("#id_username", world.owner.email)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r".*/projects/$"))

        # From the project's page to its datasets.
        page.goto(project_url)
        page.click("[data-testid=project-datasets]")
        page.wait_for_url(project_url + "datasets/")
        assert page.is_hidden("[data-testid=upload-progress]"), (
            "the bar shows once an upload starts"
        )

        # Record every value the bar takes, to see it move and end full.
        page.evaluate("""() => {
            window.barValues = [];
            const bar = document.querySelector('[data-upload-bar]');
            new MutationObserver(() => window.barValues.push(bar.value)).observe(bar, {attributes: true});
        }""")
        page.select_option("#id_task", "sentiment")
        page.fill("#id_name", "browser-reviews")
        page.set_input_files(
            "#id_file", files=[{"name": "reviews.csv", "mimeType": "text/csv", "buffer": CSV}]
        )
        page.click("[data-testid=upload-submit]")
        page.wait_for_selector("form[data-upload][data-state=done]", timeout=30000)

        assert page.is_visible("[data-testid=upload-progress]")
        assert page.eval_on_selector("[data-upload-bar]", "bar => [bar.value, bar.max]") == [
            100,
            100,
        ]
        assert page.inner_text("[data-upload-percent]") == "100%"
        values = page.evaluate("window.barValues")
        assert values and values[-1] == 100 and values == sorted(values), values
        assert (
            f"Dataset 'browser-reviews' v1 uploaded: {ROWS} examples, 2 labels."
            in page.inner_text("[data-testid=upload-done]")
        )
        split_rows = page.inner_text("[data-testid=upload-done] [data-testid=split-rows]")
        assert re.search(r"train\s+1600 \(80\.0%\)", split_rows), split_rows
        labels = page.inner_text("[data-testid=upload-done] [data-testid=label-distribution]")
        assert "negative" in labels and "positive" in labels and "800" in labels
        assert "browser-reviews" in page.inner_text("[data-testid=datasets]"), (
            "the list now holds it"
        )
        page.screenshot(path=os.path.join(SCREENSHOT_DIR, "dataset-uploaded.png"), full_page=True)

        page.click("[data-testid=open-dataset]")
        page.wait_for_selector("[data-testid=preview]")
        assert POSITIVE in page.inner_text("[data-testid=preview]") or NEGATIVE in page.inner_text(
            "[data-testid=preview]"
        )

        # The model's playground: type, predict, see a bar per label.
        page.click("nav >> text=Models")
        page.click(f"text={model.name} v{model.version}")
        page.wait_for_selector("[data-testid=playground]")
        page.fill("#playground-text", "Absolutely wonderful, would buy again")
        page.click("#playground-submit")
        page.wait_for_selector("[data-testid=label-bars] li")
        bars = page.eval_on_selector_all(
            "[data-testid=label-bars] li",
            "items => items.map(li => [li.dataset.label, li.querySelector('.score').textContent, "
            "li.querySelector('.bar span').getBoundingClientRect().width / li.querySelector('.bar').getBoundingClientRect().width])",
        )
        assert sorted(label for label, _, _ in bars) == sorted(model.labels)
        for _label, score, width in bars:
            assert score.endswith("%") and abs(float(score[:-1]) / 100 - width) < 0.02, bars
        page.screenshot(path=os.path.join(SCREENSHOT_DIR, "model-playground.png"), full_page=True)

        # A refused input shows its message in place.
        page.fill("#playground-text", "   ")
        page.click("#playground-submit")
        page.wait_for_selector("[data-testid=playground-error]")
        assert "An input is empty" in page.inner_text("[data-testid=playground-error]")
    assert not problems, problems
