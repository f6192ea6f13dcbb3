"""ASGI entry point (`gunicorn -k uvicorn_worker.UvicornWorker verticals.config.asgi:application`)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "verticals.config.settings")
application = get_asgi_application()
