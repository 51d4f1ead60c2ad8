"""Embedded mode's stand-in for ``celery beat``: the same ``CELERY_BEAT_SCHEDULE``, run in one
process of its own (``manage.py run_periodic_work``), each task run in that process when due.

Why not ``celery beat`` itself: beat only *sends* messages, and embedded mode has no broker
(``memory://`` is private to each process, so nothing would ever receive them) and no worker.
What is reused from Celery is the part that matters for correctness, its schedule objects
(``schedule``/``crontab`` and their ``is_due``), so an entry is due in the demo exactly when beat
would send it. Like beat, an entry first runs one interval after the start, unless
``run_first`` asks for every entry at once (the demo does, so seals, the nightly check and
playback summaries show without waiting for 03:17 UTC).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from celery.schedules import BaseSchedule, maybe_schedule

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Runner = Callable[[str, tuple[Any, ...], dict[str, Any]], None]


@dataclass
class PeriodicEntry:
    """One entry of the beat schedule and when it last ran (``None``: not yet)."""

    name: str
    task: str
    schedule: BaseSchedule
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    last_run_at: datetime | None = None


def periodic_entries(
    *, beat_schedule: Mapping[str, Mapping[str, Any]], clock: Clock, run_first: bool
) -> list[PeriodicEntry]:
    """The entries of ``beat_schedule`` (``CELERY_BEAT_SCHEDULE``'s shape), each schedule
    reading the time from ``clock``; with ``run_first`` every entry is due at once."""
    entries = []
    for name, spec in beat_schedule.items():
        # A copy: the settings' own crontab objects must not take this clock.
        schedule = copy.copy(maybe_schedule(spec["schedule"]))
        schedule.nowfun = clock
        entries.append(
            PeriodicEntry(
                name=name,
                task=spec["task"],
                schedule=schedule,
                args=tuple(spec.get("args", ())),
                kwargs=dict(spec.get("kwargs", {})),
                last_run_at=None if run_first else clock(),
            )
        )
    return entries


def periodic_tick(*, entries: list[PeriodicEntry], clock: Clock, run: Runner) -> float:
    """Run every entry that is due now (``run(task, args, kwargs)``; a failure is logged and
    the entry waits for its next turn, as beat does) and answer the seconds until the next one
    is due."""
    wait = math.inf
    for entry in entries:
        if entry.last_run_at is None:
            due, _ = True, 0.0
        else:
            due, _ = entry.schedule.is_due(entry.last_run_at)
        if due:
            try:
                run(entry.task, entry.args, entry.kwargs)
            except Exception:  # one failing task must not stop the others
                logger.exception("periodic task %s failed", entry.name)
            entry.last_run_at = clock()
        # Asked after running, so the answer counts from this run.
        _, next_in = entry.schedule.is_due(entry.last_run_at)
        wait = min(wait, next_in)
    return wait
