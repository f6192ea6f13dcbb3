"""Plan limits through the real API: what an integrator notices when a plan says no.

Concurrent predict calls against a rate limit and against a hard cap let exactly the plan's
number through (429 with Retry-After, 402 naming the meter and the plan for the others); a task
outside the plan is 403; a tenant without a plan is not limited; a failed call records nothing
and gives back what it reserved; jobs obey the plan's tasks and concurrent-jobs limit.
"""

from __future__ import annotations

import re
import threading
import time
from decimal import Decimal
from unittest import mock

import pytest
from django.db import connection
from django.utils import timezone

from tests.conftest import ledger
from verticals.billing import services
from verticals.billing.models import Plan, PlanPrice, RateWindow, UsageCounter
from verticals.billing.quotas import Refused
from verticals.jobs import engine
from verticals.serving import service as serving
from verticals.tenancy.caller import Caller
from verticals.tenancy.roles import Role

pytestmark = pytest.mark.django_db(transaction=True)

LIMIT = 5
CALLS = 16
METER = "inference.requests"


def predict_url(world, model) -> str:
    return f"/api/v1/projects/{world.project.public_id}/models/{model.public_id}/predict"


def plan(code: str, *, name: str | None = None, included: int | None = None, **fields) -> Plan:
    made = Plan.objects.create(code=code, name=name or code.replace("-", " ").title(), **fields)
    if included is not None:
        PlanPrice.objects.create(
            plan=made, meter_id=METER, included=Decimal(included), unit_price=Decimal("0.001")
        )
    return made


def warm(world) -> object:
    """The world's tiny model, loaded in the inference process by an unmetered call (no caller: no
    usage event, so a hard cap's counter starts from an empty ledger)."""
    model = world.model
    assert len(serving.predict(model_version=model, inputs=["warm up"])) == 1
    return model


def usage_events(world) -> int:
    return len(ledger(world.tenant))


def clear_of_minute_boundary(margin: float = 5.0) -> None:
    """A rate limit counts per wall-clock minute: start the burst with `margin` seconds left in it."""
    left = 60 - (timezone.now().second + timezone.now().microsecond / 1e6)
    if left < margin:
        time.sleep(left + 0.05)


def burst(world, model, calls: int = CALLS, body=None) -> list:
    """`calls` predict requests released together by a barrier, each thread with its own client
    and database connection; their responses."""
    start = threading.Barrier(calls)
    answers: list = [None] * calls

    def call(index: int) -> None:
        try:
            client = world.client()
            start.wait(timeout=30)
            answers[index] = client.post(
                predict_url(world, model),
                body or {"inputs": f"I love it, number {index}"},
                format="json",
            )
        except BaseException as exc:  # noqa: B036 - the assertions below show it
            answers[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for answer in answers:
        assert not isinstance(answer, BaseException), repr(answer)
    return answers


def by_status(answers) -> dict[int, list]:
    found: dict[int, list] = {}
    for answer in answers:
        found.setdefault(answer.status_code, []).append(answer)
    return found


# --- rate limit and hard cap under concurrency ----------------------------------------------


def test_concurrent_calls_over_the_rate_limit_get_429_with_retry_after(world_a):
    model = warm(world_a)
    services.subscribe(world_a.tenant, plan("rate-5", requests_per_minute=LIMIT))
    clear_of_minute_boundary()

    answers = by_status(burst(world_a, model))

    assert sorted(answers) == [200, 429], {
        code: [a.json() for a in found][:1] for code, found in answers.items()
    }
    assert len(answers[200]) == LIMIT and len(answers[429]) == CALLS - LIMIT
    for refused in answers[429]:
        retry = refused.headers["Retry-After"]
        assert retry.isdigit() and 1 <= int(retry) <= 60
        error = refused.json()["error"]
        assert error["code"] == "rate_limited"
        assert (
            "'Rate 5'" in error["message"] and f"{LIMIT} metered calls a minute" in error["message"]
        )
        assert re.search(r"retry in (\d+) s", error["message"]).group(1) == retry
    for served in answers[200]:
        assert {"label", "score"} <= set(served.json()[0])
    assert usage_events(world_a) == LIMIT  # the refused calls recorded nothing
    assert RateWindow.objects.get(tenant=world_a.tenant).count == LIMIT


def test_concurrent_calls_past_a_hard_cap_get_402_naming_the_meter_and_the_plan(world_a):
    model = warm(world_a)
    services.subscribe(
        world_a.tenant, plan("capped-5", name="Capped Five", cap=Plan.Cap.HARD, included=LIMIT)
    )

    answers = by_status(burst(world_a, model))

    assert sorted(answers) == [200, 402], {
        code: [a.json() for a in found][:1] for code, found in answers.items()
    }
    assert len(answers[200]) == LIMIT and len(answers[402]) == CALLS - LIMIT
    for refused in answers[402]:
        error = refused.json()["error"]
        assert error["code"] == "quota_exceeded"
        assert METER in error["message"] and "'Capped Five'" in error["message"], error["message"]
        assert "Retry-After" not in refused.headers
    assert usage_events(world_a) == LIMIT
    counter = UsageCounter.dangerously_unscoped.get(
        tenant_id=world_a.tenant.pk, meter=METER
    )  # the world's tenant's
    assert (
        counter.quantity == LIMIT
    )  # every reservation settled: nothing left reserved, nothing counted twice


def test_a_tenant_without_a_plan_is_not_limited(world_a):
    model = warm(world_a)
    answers = burst(world_a, model)
    assert [answer.status_code for answer in answers] == [200] * CALLS
    assert usage_events(world_a) == CALLS  # still metered
    assert not RateWindow.objects.filter(tenant=world_a.tenant).exists()


# --- tasks, failures, jobs ------------------------------------------------------------------


def test_a_task_outside_the_plan_is_403_naming_the_plan(world_a):
    model = warm(world_a)
    services.subscribe(
        world_a.tenant,
        plan("vision-only", name="Vision Only", enabled_tasks=["image-classification"]),
    )
    answer = world_a.client().post(
        predict_url(world_a, model), {"inputs": "I love it"}, format="json"
    )
    assert answer.status_code == 403
    error = answer.json()["error"]
    assert error["code"] == "task_not_in_plan"
    assert "'sentiment'" in error["message"] and "'Vision Only'" in error["message"], error[
        "message"
    ]
    assert usage_events(world_a) == 0


@pytest.mark.parametrize(
    "body,field",
    [
        ({"inputs": ""}, "inputs"),  # refused by the task's decoder
        ({"inputs": ["fine", 3]}, "inputs[1]"),  # one bad input of a list
        ({"inputs": ["x"] * 65}, "inputs"),  # more than the task's max_batch (64)
        (
            {"inputs": "fine", "parameters": {"top_k": 0}},
            "top_k",
        ),  # refused by the API's parameters
        ({"text": "fine"}, "inputs"),  # no inputs at all
    ],
)
def test_a_failed_predict_records_nothing_and_uses_no_hard_cap_units(world_a, body, field):
    model = warm(world_a)
    services.subscribe(world_a.tenant, plan("capped-2", cap=Plan.Cap.HARD, included=2))
    client = world_a.client()
    for _ in range(3):  # more failures than the cap holds
        answer = client.post(predict_url(world_a, model), body, format="json")
        assert answer.status_code == 400, answer.json()
        assert field in answer.json()["error"]["message"]
    assert usage_events(world_a) == 0
    served = [
        client.post(predict_url(world_a, model), {"inputs": "I love it"}, format="json").status_code
        for _ in range(3)
    ]
    assert served == [200, 200, 402]  # the cap's two units were all still there


def test_a_call_that_fails_after_admission_gives_its_units_back(world_a):
    """A bad option found only by the task's predict (in the inference process), after the hard
    cap reserved the call's units: the reservation is released and nothing is recorded."""
    model = warm(world_a)
    services.subscribe(world_a.tenant, plan("capped-1", cap=Plan.Cap.HARD, included=1))
    caller = Caller(user=world_a.owner, api_key=world_a.key, tenant=world_a.tenant, role=Role.OWNER)
    for _ in range(2):
        with pytest.raises(serving.BadInput, match="top_k"):
            serving.predict(
                model_version=model, inputs=["I love it"], options={"top_k": 0}, caller=caller
            )
    assert usage_events(world_a) == 0
    assert (
        UsageCounter.dangerously_unscoped.get(tenant_id=world_a.tenant.pk, meter=METER).quantity
        == 0
    )  # the world's tenant's
    assert len(serving.predict(model_version=model, inputs=["I love it"], caller=caller)) == 1
    with pytest.raises(Refused) as refused:
        serving.predict(model_version=model, inputs=["I love it"], caller=caller)
    assert refused.value.status == 402 and usage_events(world_a) == 1


def jobs_url(world) -> str:
    return f"/api/v1/projects/{world.project.public_id}/jobs/"


def train_body(world) -> dict:
    return {
        "kind": "train",
        "task": "sentiment",
        "params": {"dataset": world.dataset_version.public_id, "epochs": 1},
    }


def test_a_train_job_for_a_task_outside_the_plan_is_403(world_a):
    services.subscribe(
        world_a.tenant,
        plan("vision-jobs", name="Vision Jobs", enabled_tasks=["image-classification"]),
    )
    with mock.patch("verticals.jobs.engine.send") as send:
        answer = world_a.client().post(jobs_url(world_a), train_body(world_a), format="json")
    assert answer.status_code == 403, answer.json()
    error = answer.json()["error"]
    assert error["code"] == "task_not_in_plan" and "'Vision Jobs'" in error["message"]
    assert not send.called


def test_a_train_job_for_a_task_in_the_plan_is_queued(world_a):
    services.subscribe(world_a.tenant, plan("nlp-jobs", enabled_tasks=["sentiment"]))
    with mock.patch("verticals.jobs.engine.send"):
        answer = world_a.client().post(jobs_url(world_a), train_body(world_a), format="json")
    assert answer.status_code == 201, answer.json()


def test_a_train_job_past_the_plans_model_versions_is_402(world_a):
    assert world_a.model  # one model version exists
    services.subscribe(world_a.tenant, plan("one-model", name="One Model", max_model_versions=1))
    with mock.patch("verticals.jobs.engine.send") as send:
        answer = world_a.client().post(jobs_url(world_a), train_body(world_a), format="json")
    assert answer.status_code == 402, answer.json()
    error = answer.json()["error"]
    assert (
        error["code"] == "model_versions_limit"
        and "'One Model'" in error["message"]
        and "1 model versions" in error["message"]
    )
    assert not send.called


def test_the_plans_concurrent_jobs_is_the_running_limit(world_a, settings):
    settings.JOBS_MAX_RUNNING_PER_TENANT = 4
    assert engine.running_limit(world_a.tenant) == 4  # no plan: the platform default
    services.subscribe(world_a.tenant, plan("two-jobs", concurrent_jobs=2))
    assert engine.running_limit(world_a.tenant) == 2
    services.subscribe(world_a.tenant, plan("default-jobs"))  # a plan that sets none
    assert engine.running_limit(world_a.tenant) == 4
    services.subscribe(world_a.tenant, plan("seven-jobs", concurrent_jobs=7))
    assert engine.running_limit(world_a.tenant) == 7


# --- a generation model is not a predict, and model jobs check the model's task --------------


def test_a_metered_predict_on_a_generation_model_is_refused_before_any_work(world_a):
    """serving.predict would bill one unit per input for a whole generation: a metered call is
    ModelUnavailable (the API answers generation models before reaching it; batch_predict jobs
    call the task directly)."""
    model = world_a.generator
    caller = Caller(user=world_a.owner, api_key=world_a.key, tenant=world_a.tenant, role=Role.OWNER)
    services.subscribe(world_a.tenant, plan("gen-capped", cap=Plan.Cap.HARD, requests_per_minute=1))
    with pytest.raises(serving.ModelUnavailable) as refused:
        serving.predict(model_version=model, inputs=["Once upon a time"], caller=caller)
    assert str(refused.value) == (
        "This model generates text; send a prompt to its predict route with the generation "
        "shape, or use /v1/chat/completions."
    )
    assert (
        usage_events(world_a) == 0 and not RateWindow.objects.filter(tenant=world_a.tenant).exists()
    ), "refused before admission"
    # The API's predict route generates (and bills tokens), as before.
    answer = world_a.client().post(
        predict_url(world_a, model),
        {"inputs": "Once", "parameters": {"max_tokens": 2}},
        format="json",
    )
    assert answer.status_code == 200, answer.json()
    assert "generated_text" in answer.json()
    assert [event.meter for event in ledger(world_a.tenant)] == ["textgen.tokens"]


@pytest.mark.parametrize("kind", ["batch_predict", "evaluate"])
def test_a_model_job_without_task_is_checked_against_the_models_task(world_a, kind):
    body = {
        "kind": kind,
        "params": {"model": world_a.model.public_id, "dataset": world_a.dataset_version.public_id},
    }
    services.subscribe(
        world_a.tenant,
        plan("vision-models", name="Vision Models", enabled_tasks=["image-classification"]),
    )
    with mock.patch("verticals.jobs.engine.send") as send:
        answer = world_a.client().post(jobs_url(world_a), body, format="json")
    assert answer.status_code == 403, answer.json()
    error = answer.json()["error"]
    assert (
        error["code"] == "task_not_in_plan"
        and "'sentiment'" in error["message"]
        and "'Vision Models'" in error["message"]
    )
    assert not send.called
    services.subscribe(world_a.tenant, plan("nlp-models", enabled_tasks=["sentiment"]))
    with mock.patch("verticals.jobs.engine.send"):
        queued = world_a.client().post(jobs_url(world_a), body, format="json")
    assert queued.status_code == 201, queued.json()
    assert queued.json()["task"] == "", "the job's own fields are unchanged"
