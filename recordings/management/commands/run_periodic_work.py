"""``run_periodic_work``: embedded mode's ``celery beat`` and worker in one (``portal.periodic``).

``make run`` starts it beside the development server, so the demo seals and signs the log,
runs the nightly check, summarizes playbacks and sweeps what is due, as production's beat and
worker do. With a broker (``REDIS_URL``) it refuses: run ``celery -A portal beat`` and a worker.
"""

from __future__ import annotations

import time
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections, connection
from django.utils import timezone

from portal.periodic import periodic_entries, periodic_tick

# Sleep at most this long, so a stopped clock (a suspended laptop) is noticed soon after.
MAX_SLEEP_SECONDS = 30.0


def _fresh_connection() -> None:
    # Like a worker between tasks: drop a broken or expired connection (never one inside a
    # transaction, which only a caller's test holds).
    if not connection.in_atomic_block:
        close_old_connections()


def _run_task(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Run the task named ``name`` here and now (no broker); raise when it failed."""
    if name not in current_app.tasks:
        current_app.loader.import_default_modules()
    _fresh_connection()
    try:
        result = current_app.tasks[name].apply(args=args, kwargs=kwargs)
    finally:
        _fresh_connection()
    if result.failed():
        raise RuntimeError(f"{name} failed: {type(result.result).__name__}")


class Command(BaseCommand):
    help = "Run CELERY_BEAT_SCHEDULE's tasks in this process when due (embedded mode only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--run-first",
            action="store_true",
            help="run every periodic task once at start (beat waits one interval)",
        )
        parser.add_argument(
            "--once", action="store_true", help="one round of what is due, then exit"
        )

    def handle(self, *args: Any, run_first: bool, once: bool, **options: Any) -> None:
        if not current_app.conf.task_always_eager:
            raise CommandError(
                "a broker is configured (REDIS_URL): run `celery -A portal beat` and a worker"
            )
        entries = periodic_entries(
            beat_schedule=settings.CELERY_BEAT_SCHEDULE, clock=timezone.now, run_first=run_first
        )
        self.stdout.write(f"running {len(entries)} periodic tasks when due (Ctrl-C stops)")
        while True:
            wait = periodic_tick(entries=entries, clock=timezone.now, run=_run_task)
            if once:
                return
            time.sleep(max(0.5, min(wait, MAX_SLEEP_SECONDS)))
