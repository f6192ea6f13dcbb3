"""Verticals: a multi-tenant platform for vertical AI solutions.

The Celery app is exposed here so that `celery -A verticals worker` finds it.
"""

from verticals.config.celery import app as celery_app

__all__ = ["celery_app"]
