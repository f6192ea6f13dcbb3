"""The chat playground in a real Chromium: send a message on a text-generation model's page and
watch the answer stream in, see the snippets follow the conversation (the page writes them as
verticals.portal.chat.snippets does), read a refusal, go on with a garden model, then stop a long
answer midway."""

import os
import re
import time
from unittest import mock

import pytest
from django.core.management import call_command

from tests.conftest import PASSWORD, build_world, ledger
from tests.e2e.test_portal_browser import chromium  # noqa: F401  (the fixture)
from tests.registry.factories import make_model_version, tiny_model_dir
from verticals.portal import chat
from verticals.serving import service as serving
from verticals.tenancy.caller import Caller
from verticals.tenancy.roles import Role
from verticals.tenancy.scoping import tenant_context

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENSHOT_DIR = os.environ.get("VERTICALS_SCREENSHOT_DIR", "/tmp")
QUESTION = "What colour is snow?"
LONG = {"max_tokens": 200, "temperature": 2.0}


def paced(events, pause=0.03):
    """The portal's events, one every `pause` seconds: the tiny model writes its tokens faster than a
    busy machine's browser shows them one by one, or than it can press Stop; a real model is slower."""

    def pace(generation):
        for chunk in events(generation):
            time.sleep(pause)
            yield chunk

    return pace


def long_seed(world, model) -> int:
    """A seed with which the tiny model writes long (sampling with a seed repeats), to have time to stop it."""
    with tenant_context(world.tenant):
        caller = Caller(user=world.owner, tenant=world.tenant, role=Role.OWNER)
        for seed in range(40):
            out = serving.complete(
                model=model,
                caller=caller,
                raw_inputs=[{"messages": [{"role": "user", "content": QUESTION}]}],
                options={**LONG, "seed": seed},
            )
            if out[0]["usage"]["completion_tokens"] >= 150:
                return seed
    pytest.skip("no seed makes the tiny model write 150 tokens")


@pytest.mark.django_db(transaction=True)
def test_chat_streams_then_stops(live_server, chromium):  # noqa: F811
    # ORM work first: Playwright runs an event loop in this thread (see the chromium fixture).
    world = build_world("A")
    model = make_model_version(world, "text-generation", name="tiny-chat")
    seed = long_seed(world, model)
    call_command(
        "import_base_model",
        str(tiny_model_dir("text-generation")),
        "--name",
        "tiny-garden",
        "--title",
        "Tiny garden chat",
    )
    before = len(ledger())  # (long_seed's calls are in it)
    problems: list[str] = []

    with chromium() as page, mock.patch.object(chat, "_events", paced(chat._events)):
        page.set_viewport_size({"width": 1280, "height": 1000})
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on(
            "console",
            lambda message: (
                message.type == "error"
                and "Failed to load resource" not in message.text
                and problems.append(f"console: {message.text}")
            ),
        )
        refusals: list[int] = []  # the stream's 400s, one expected below
        page.on(
            "response",
            lambda response: (
                response.status >= 400
                and not response.url.endswith("/favicon.ico")
                and (refusals if response.url.endswith("/chat/stream") else problems).append(
                    response.status
                )
            ),
        )

        page.goto(live_server.url + "/login/")
        page.fill("#id_username", world.owner.email)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r".*/projects/$"))
        page.goto(f"{live_server.url}/projects/{world.project.public_id}/models/{model.public_id}/")
        page.wait_for_selector("[data-chat][data-state=idle]")

        # Every text the answer's bubble takes, to see it grow piece by piece.
        page.evaluate("""() => {
            window.answerTexts = [];
            const log = document.querySelector('[data-chat-log]');
            new MutationObserver(() => {
                const last = log.querySelector('.chat-assistant:last-child .chat-content');
                if (last) window.answerTexts.push(last.textContent);
            }).observe(log, {childList: true, subtree: true, characterData: true});
        }""")
        page.fill("#chat-max-tokens", "24")
        page.fill("#chat-temperature", "0")
        page.fill("#chat-input", QUESTION)
        page.click("[data-testid=chat-send]")
        page.wait_for_selector("[data-chat][data-state=done]", timeout=30000)

        roles = page.eval_on_selector_all(
            ".chat-message", "items => items.map(li => li.dataset.role)"
        )
        assert roles == ["user", "assistant"]
        answer = page.inner_text(".chat-assistant .chat-content")
        assert answer.strip(), "the assistant answered"
        grown = [t for t in dict.fromkeys(page.evaluate("window.answerTexts")) if t]
        assert (
            len(grown) > 2 and grown[-1] == answer and all(answer.startswith(t) for t in grown)
        ), grown
        status = page.inner_text("[data-testid=chat-status]")
        assert re.search(r"(stop|length).* \d+ prompt \+ \d+ completion tokens", status), status
        assert page.is_hidden("[data-testid=chat-stop]") and page.input_value("#chat-input") == ""

        # The snippets hold the conversation, the parameters and the model, as the server writes them.
        page.click("[data-testid=chat-snippets] summary")
        messages = [
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": answer},
            {"role": "user", "content": "Your next message"},
        ]
        expected = chat.snippets(
            api_base=f"{live_server.url}/v1",
            model=model.public_id,
            messages=messages,
            parameters={"max_tokens": 24, "temperature": 0},
        )
        assert page.text_content("#chat-curl") == expected["curl"]
        assert page.text_content("#chat-python") == expected["python"]
        page.screenshot(path=os.path.join(SCREENSHOT_DIR, "chat-playground.png"), full_page=True)

        # Refused before any answer: the message says why, and the text goes back into the box.
        page.fill("#chat-max-tokens", "100000")
        page.fill("#chat-input", "And grass?")
        page.click("[data-testid=chat-send]")
        page.wait_for_selector("[data-chat][data-state=error]")
        assert "context" in page.inner_text("[data-testid=chat-status]") and refusals == [400]
        assert page.input_value("#chat-input") == "And grass?"
        assert page.eval_on_selector_all(".chat-message", "items => items.length") == 2

        # Another model (from the garden) goes on with the same conversation.
        page.select_option("#chat-model", "tiny-garden")
        assert page.get_attribute("[data-testid=chat-page-link]", "href").endswith(
            "/chat/?model=tiny-garden"
        )
        page.fill("#chat-max-tokens", "8")
        page.click("[data-testid=chat-send]")
        page.wait_for_selector("[data-chat][data-state=done]", timeout=30000)
        roles = page.eval_on_selector_all(
            ".chat-message", "items => items.map(li => li.dataset.role)"
        )
        assert roles == ["user", "assistant", "user", "assistant"]
        assert "Tiny garden chat" in page.inner_text(".chat-assistant:last-child .chat-who")
        assert '"model": "tiny-garden"' in page.text_content("#chat-curl")

        # A long answer, stopped once it has started: the partial answer stays, the server stops.
        page.fill("#chat-max-tokens", str(LONG["max_tokens"]))
        page.fill("#chat-temperature", str(LONG["temperature"]))
        page.fill("#chat-seed", str(seed))
        page.select_option("#chat-model", model.public_id)
        page.click("[data-testid=chat-clear]")
        assert page.eval_on_selector_all(".chat-message", "items => items.length") == 0
        page.fill("#chat-input", QUESTION)
        # Press Stop as soon as the first text shows.
        page.evaluate("""() => {
            const log = document.querySelector('[data-chat-log]');
            const watch = new MutationObserver(() => {
                const c = log.querySelector('.chat-assistant .chat-content');
                if (c && c.textContent.length > 0) { watch.disconnect(); document.querySelector('[data-chat-stop]').click(); }
            });
            watch.observe(log, {childList: true, subtree: true, characterData: true});
        }""")
        page.click("[data-testid=chat-send]")
        page.wait_for_selector("[data-chat][data-state=stopped]")
        assert "Stopped." in page.inner_text("[data-testid=chat-status]")
        assert page.inner_text(".chat-assistant .chat-content").strip()
        assert page.is_visible("[data-testid=chat-send]") and not page.is_disabled(
            "[data-testid=chat-send]"
        )
    assert not problems, problems

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rows = ledger()[before:]
        if len(rows) == 3:
            break
        time.sleep(0.1)
    assert [r.route for r in rows] == ["portal.chat"] * 3, "the refused request records nothing"
    assert [r.model for r in rows] == [model.public_id, "tiny-garden", model.public_id]
    assert rows[0].finish_reason in ("stop", "length")
    assert rows[2].finish_reason == "cancelled" and rows[2].completion_tokens < 150
