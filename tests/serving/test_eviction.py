"""A deleted model version leaves the loaded cache of the inference process: registry deletes,
serving hears it (post_delete, connected in serving's AppConfig.ready) — registry never imports
serving."""

import pytest

from tests.registry.factories import make_model_version
from verticals.registry import services
from verticals.serving import process, service
from verticals.tenancy.services.projects import project_delete

pytestmark = pytest.mark.django_db(transaction=True)


def loaded() -> list[tuple]:
    return process.call(process.loaded_keys)


def test_deleting_a_model_version_evicts_it_from_the_loaded_cache(
    world_a, django_capture_on_commit_callbacks
):
    model, kept = make_model_version(world_a, name="gone"), make_model_version(world_a, name="kept")
    for each in (model, kept):
        service.predict(model_version=each, inputs=["I love it"])
    assert {service.model_key(model), service.model_key(kept)} <= set(loaded())

    with django_capture_on_commit_callbacks(execute=True):
        services.model_delete(model=model, caller=None)
    assert service.model_key(model) not in loaded()
    assert service.model_key(kept) in loaded()


def test_deleting_a_project_evicts_its_models(world_a, django_capture_on_commit_callbacks):
    model = make_model_version(world_a)
    service.predict(model_version=model, inputs=["I love it"])
    assert service.model_key(model) in loaded()

    with django_capture_on_commit_callbacks(execute=True):
        project_delete(project=world_a.project)
    assert service.model_key(model) not in loaded()
