"""Under the production server (gunicorn + uvicorn workers, ASGI), concurrent requests of two
tenants each see only their own rows: the tenant context does not bleed between requests."""

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.processes import fresh_env, manage, production_server


@pytest.mark.slow
def test_concurrent_tenants_under_asgi(tmp_path):
    env = fresh_env(tmp_path)
    manage(env, "migrate", "--noinput")
    worlds = [
        json.loads(
            manage(
                env,
                "bootstrap",
                "--partner",
                f"P{i}",
                "--tenant",
                f"T{i}",
                "--email",
                f"o{i}@example.com",
            )
        )
        for i in (1, 2)
    ]
    with production_server(env, workers=2) as base:

        def projects(world) -> tuple[str, set[str]]:
            request = urllib.request.Request(
                f"{base}/api/v1/projects/", headers={"Authorization": f"Bearer {world['api_key']}"}
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                return world["tenant"]["id"], {p["id"] for p in json.load(response)["results"]}

        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(projects, [worlds[i % 2] for i in range(120)]))
    expected = {w["tenant"]["id"]: {w["project"]["id"]} for w in worlds}
    wrong = [(tenant, seen) for tenant, seen in answers if seen != expected[tenant]]
    assert not wrong, wrong[:5]
