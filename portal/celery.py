"""The Celery app: ``celery -A portal worker`` and ``celery -A portal beat`` start from here."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import task_postrun, task_prerun
from django.db import close_old_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(sender: Any = None, **kwargs: Any) -> None:
    """Treat each task like a Django request: drop a database connection that failed or is
    past ``CONN_MAX_AGE`` and keep a good one (checked again on first use, per
    ``CONN_HEALTH_CHECKS``).

    Celery's own Django fixup would otherwise close the connection around every task
    (``CELERY_DB_REUSE_MAX`` unset), and a new PostgreSQL connection (a new server backend)
    costs more CPU than the database work of most tasks (``bench/archive.py`` prints it).
    Eager tasks (embedded mode, tests) run inside the caller's connection and transaction:
    leave those alone, as Celery does.
    """
    request = getattr(sender, "request", None)
    if getattr(request, "is_eager", False):
        return
    close_old_connections()
