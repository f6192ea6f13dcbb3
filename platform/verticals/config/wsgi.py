"""WSGI entry point (`gunicorn verticals.config.wsgi`)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "verticals.config.settings")
application = get_wsgi_application()
