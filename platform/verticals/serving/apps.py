from django.apps import AppConfig

from verticals.serving import memory


class ServingConfig(AppConfig):
    name = "verticals.serving"
    label = "serving"
    verbose_name = "Serving"

    def ready(self) -> None:
        from django.core.signals import request_finished
        from django.db.models.signals import post_delete

        request_finished.connect(_release_memory, dispatch_uid="serving.release_memory")
        # Registry deletes model versions (one, or a project's with it) and knows nothing of
        # serving, which sits above it: serving listens.
        post_delete.connect(
            _forget_deleted, sender="registry.ModelVersion", dispatch_uid="serving.forget_deleted"
        )


def _release_memory(sender, **kwargs) -> None:
    """After each request: what it freed goes back to the system (verticals.serving.memory)."""

    memory.release_soon()


def _forget_deleted(sender, instance, using=None, **kwargs) -> None:
    """A deleted model version leaves this web process's inference process once the deletion
    commits (a failure to reach it is logged, not raised: the deletion stands)."""
    from django.db import transaction

    from verticals.serving import service  # (apps.py loads before the models it imports)

    transaction.on_commit(lambda: service.forget(instance), using=using, robust=True)
