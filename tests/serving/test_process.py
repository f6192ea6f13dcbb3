"""Models run in the web process's companion inference process: what an integrator notices when
that process dies, when a model cannot load, and when a model is deleted."""

import os
import signal
import threading
import time

import pytest

from tests.registry.factories import make_model_version
from verticals.serving import process, service

pytestmark = pytest.mark.django_db(transaction=True)


def predict_url(world, model):
    return f"/api/v1/projects/{world.project.public_id}/models/{model.public_id}/predict"


def inference_pid() -> int:
    return process.call(process.pid)


def test_predictions_run_in_another_process_and_a_dead_one_is_started_again(world_a):
    model = make_model_version(world_a)
    client = world_a.client()
    assert (
        client.post(predict_url(world_a, model), {"inputs": "I love it"}, format="json").status_code
        == 200
    )
    first = inference_pid()
    assert first != os.getpid()

    os.kill(first, signal.SIGKILL)  # between calls (e.g. the kernel's OOM killer)
    deadline = time.monotonic() + 10
    while process._child.process.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    again = client.post(predict_url(world_a, model), {"inputs": "I love it"}, format="json")
    assert again.status_code == 200, again.json()
    assert inference_pid() not in (first, os.getpid())


def test_a_process_that_dies_during_the_call_answers_503_and_the_next_call_works(world_a):
    model = make_model_version(world_a)
    client = world_a.client()
    assert (
        client.post(predict_url(world_a, model), {"inputs": "warm"}, format="json").status_code
        == 200
    )
    victim = inference_pid()
    os.kill(victim, signal.SIGSTOP)  # it will receive the call and never answer it
    answers = []
    caller = threading.Thread(
        target=lambda: answers.append(
            client.post(predict_url(world_a, model), {"inputs": "I love it"}, format="json")
        )
    )
    caller.start()
    deadline = time.monotonic() + 10
    while not process._lock.locked() and time.monotonic() < deadline:  # the call is on its way
        time.sleep(0.01)
    time.sleep(0.2)
    os.kill(victim, signal.SIGKILL)
    caller.join(timeout=30)
    assert answers and answers[0].status_code == 503
    body = answers[0].json()
    assert body["error"]["code"] == "inference_restarted"
    assert "Retry" in body["error"]["message"]

    retried = client.post(predict_url(world_a, model), {"inputs": "I love it"}, format="json")
    assert retried.status_code == 200, retried.json()
    assert inference_pid() != victim


def test_a_model_that_cannot_load_fails_its_calls_and_others_still_serve(world_a, artifacts_dir):
    broken = make_model_version(world_a, name="broken")
    fine = make_model_version(world_a, name="fine")
    weights = artifacts_dir / broken.storage_prefix / "model.safetensors"
    weights.write_bytes(b"not safetensors")
    with pytest.raises(service.ModelNotLoadable):
        service.predict(model_version=broken, inputs=["I love it"])
    assert len(service.predict(model_version=fine, inputs=["I love it", "awful"])) == 2

    answer = world_a.client().post(predict_url(world_a, broken), {"inputs": "x"}, format="json")
    error = answer.json()["error"]
    assert answer.status_code == 503 and error["code"] == "model_not_loadable"
    assert "safetensors" not in error["message"], "the cause is logged, not shown"


def test_a_deleted_model_leaves_the_inference_process(world_a, django_capture_on_commit_callbacks):
    model = make_model_version(world_a)
    client = world_a.client()
    assert (
        client.post(predict_url(world_a, model), {"inputs": "I love it"}, format="json").status_code
        == 200
    )
    key = service.model_key(model)
    assert key in process.call(process.loaded_keys)
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            client.delete(
                f"/api/v1/projects/{world_a.project.public_id}/models/{model.public_id}/"
            ).status_code
            == 204
        )
    assert key not in process.call(process.loaded_keys)


def test_stop_ends_the_process_and_the_next_call_starts_one():
    before = inference_pid()
    process.stop()
    assert process._child is None
    assert inference_pid() != before
