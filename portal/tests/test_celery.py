"""The worker's database connection between tasks (``portal.celery``): kept while good, as
Django keeps it between requests, dropped once past ``CONN_MAX_AGE``."""

from __future__ import annotations

import time

import pytest
from celery.signals import task_postrun, task_prerun
from django.db import connection

from recordings import tasks

# Real commits: the handler must see the connection as a worker holds it, not inside the
# transaction a plain django_db test wraps around everything.
pytestmark = pytest.mark.django_db(transaction=True)


def run_signals(task) -> None:
    """What a worker sends around one task."""
    task_prerun.send(sender=task, task_id="t", task=task, args=(), kwargs={})
    task_postrun.send(sender=task, task_id="t", task=task, args=(), kwargs={}, retval=None)


def test_a_good_connection_is_kept_from_one_task_to_the_next():
    connection.ensure_connection()
    kept = connection.connection
    run_signals(tasks.archive_recording)
    assert connection.connection is kept
    with connection.cursor() as cursor:  # and it still works
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


def test_a_connection_past_its_max_age_is_closed_between_tasks():
    connection.ensure_connection()
    connection.close_at = time.monotonic() - 1
    run_signals(tasks.archive_recording)
    assert connection.connection is None


def test_a_broken_connection_is_closed_between_tasks():
    connection.ensure_connection()
    connection.connection.close()  # the server went away under it
    connection.errors_occurred = True  # as Django notes any database error
    run_signals(tasks.archive_recording)
    assert connection.connection is None
