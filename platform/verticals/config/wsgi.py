"""WSGI entry point (`gunicorn verticals.config.wsgi`)."""

import os

from django.core.wsgi import get_wsgi_application

from verticals.serving import memory

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "verticals.config.settings")
memory.fix_mmap_threshold()  # a request's large buffers go back to the system when freed (see that module)
application = get_wsgi_application()
