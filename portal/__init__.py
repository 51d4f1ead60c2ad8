"""The Django project: settings, URLs, the Celery app, logging and health checks."""

from .celery import app as celery_app

__all__ = ("celery_app",)
