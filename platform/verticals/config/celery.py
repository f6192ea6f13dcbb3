"""The Celery app: `celery -A verticals worker` and `celery -A verticals beat` find it."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "verticals.config.settings")

app = Celery("verticals")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="verticals.health.ping")
def ping() -> dict:
    """Answer a liveness probe with facts about the worker process."""
    import platform
    import socket
    import sys

    return {
        "hostname": socket.gethostname(),
        "python": sys.version.split()[0],
        "platform_module": getattr(platform, "__file__", None),
        "platform_system": platform.system(),
    }
