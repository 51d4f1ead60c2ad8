"""The sweep for evidence packages whose worker died: a job left ``running`` is marked failed.

A package job is claimed (``queued`` → ``running``, with ``started_at``) by exactly one worker
run, and the Celery task has a hard time limit (``EVIDENCE_PACKAGE_TIME_LIMIT_MINUTES``), so
no living worker is still writing a package that started longer ago than that. One still
``running`` past the limit (plus a margin for the worker's own bookkeeping) lost its worker:
killed, out of memory, the machine gone. The sweep (beat, every five minutes) marks it failed
with that reason, which the packages page shows, and writes an ``admin_export`` error row.

Why failed and not queued again: a package is an officer's request with their reason, and the
commonest way to lose a worker on one is the package itself (a case of a thousand recordings,
decrypted, on a small worker). Run again, it would kill the next worker the same way, forever;
failed, the officer sees why at once and asks again (smaller, or when the workers are fixed).
The same holds for a job the broker hands to a second worker after the first died
(``evidence_package_run`` marks it failed rather than running it twice).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from recordings.lifecycle import evidence_package
from recordings.models import EvidencePackage

MARGIN = timedelta(minutes=5)
"""Past the task's time limit before a run counts as lost: Celery's own kill and the worker's
last database writes happen within it."""


def stalled_after() -> timedelta:
    """How long after it started a running package is given up on: the task's hard time limit
    plus :data:`MARGIN`."""
    return timedelta(minutes=settings.EVIDENCE_PACKAGE_TIME_LIMIT_MINUTES) + MARGIN


def evidence_packages_sweep(*, now: datetime | None = None) -> list[int]:
    """Mark failed every package still ``running`` longer than :func:`stalled_after` (its
    worker is gone); answers their ids, oldest first."""
    cutoff = (now or timezone.now()) - stalled_after()
    minutes = settings.EVIDENCE_PACKAGE_TIME_LIMIT_MINUTES
    why = (
        f"still running {minutes} minutes after it started, past the job's time limit: its "
        "worker stopped (killed, out of memory or restarted); ask for the package again"
    )
    stalled = EvidencePackage.objects.filter(state=evidence_package.PackageState.RUNNING).order_by(
        "pk"
    )
    abandoned = []
    for package_id in stalled.values_list("pk", flat=True):
        if evidence_package.evidence_package_abandon(
            package_id=package_id, why=why, started_before=cutoff
        ):
            abandoned.append(package_id)
    return abandoned
