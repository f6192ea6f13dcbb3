"""The OpenAI client against the production server shape (gunicorn + uvicorn, ASGI): a garden
model generates, streams arrive as they are written, and a client that hangs up mid-stream
stops the generation (its usage says so)."""

import json
import sqlite3
import time

import openai
import pytest

from tests.processes import fresh_env, manage, production_server
from tests.registry.factories import tiny_model_dir


def usage_rows(tmp_path) -> list[tuple]:
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        return db.execute(
            "SELECT route, json_extract(details, '$.finish_reason'), json_extract(details, '$.completion_tokens') "
            "FROM billing_usageevent ORDER BY id"
        ).fetchall()


@pytest.mark.slow
def test_openai_client_against_the_asgi_server(tmp_path, db):
    model_dir = tiny_model_dir("text-generation")
    env = fresh_env(tmp_path)
    manage(env, "migrate", "--noinput")
    world = json.loads(
        manage(env, "bootstrap", "--partner", "P", "--tenant", "T", "--email", "o@example.com")
    )
    manage(env, "import_base_model", str(model_dir), "--name", "tiny-chat", "--title", "Tiny chat")
    with production_server(env) as base:
        client = openai.OpenAI(
            base_url=f"{base}/v1", api_key=world["api_key"], max_retries=0, timeout=60
        )
        assert "tiny-chat" in {m.id for m in client.models.list()}

        chat = [{"role": "user", "content": "What colour is snow?"}]
        whole = client.chat.completions.create(
            model="tiny-chat", messages=chat, max_tokens=20, temperature=0
        )
        pieces = [
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(
                model="tiny-chat", messages=chat, max_tokens=20, temperature=0, stream=True
            )
            if c.choices
        ]
        assert "".join(pieces) == whole.choices[0].message.content

        # A long answer, abandoned after its first pieces: the server stops generating.
        options = {"max_tokens": 200, "temperature": 2.0}
        seed = next(
            s
            for s in range(40)
            if client.completions.create(
                model="tiny-chat", prompt="English: bread\nFrench:", seed=s, **options
            ).usage.completion_tokens
            >= 100
        )
        stream = client.completions.create(
            model="tiny-chat", prompt="English: bread\nFrench:", seed=seed, stream=True, **options
        )
        next(iter(stream))
        stream.close()
        deadline = time.monotonic() + 20
        while len(usage_rows(tmp_path)) < 4 + seed and time.monotonic() < deadline:
            time.sleep(0.1)
    rows = usage_rows(tmp_path)
    route, finish_reason, completion_tokens = rows[-1]
    assert route == "openai.completions" and finish_reason == "cancelled", rows[-3:]
    assert completion_tokens < 100
