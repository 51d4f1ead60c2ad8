"""Celery tasks of the audit app (scheduled in ``CELERY_BEAT_SCHEDULE``): sealing the log,
signing its head, verifying it (incrementally, or fully as a resumable run) and taking up a
full verification that a killed worker left, building the periodic access review, and
rolling the log up by day for the dashboard."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import shared_task
from celery.signals import worker_ready
from django.db import connections
from django.utils import timezone

from audit.reviews import access_review_build_due
from audit.rollups import access_log_rollup
from audit.sealer import seal_and_anchor
from audit.services import audit_digest_create, chain_check_run
from audit.verification import (
    full_verification_start,
    full_verification_sweep,
    full_verification_work,
)

logger = logging.getLogger(__name__)


@shared_task(name="audit.tasks.sign_audit_head", ignore_result=True)
def sign_audit_head() -> int:
    """Sign the access log's current head into a digest; answer the digest's id.

    Run it periodically (hourly, say): deletions or rewrites of rows a digest covers are then
    caught by ``verify_audit_log`` even if the whole chain was recomputed.
    """
    return audit_digest_create().id


@shared_task(name="audit.tasks.verify_audit_chain", ignore_result=True)
def verify_audit_chain(
    trigger: str = "schedule", actor: str = "system:nightly", full: bool = False
) -> bool:
    """Verify the access log, its seals and anchors (nightly what was sealed since the last
    verified seal, weekly everything, or as an officer asks from the admin): the verification
    page and the dashboard's "broken audit chain" alert read the kept result, so no web request
    re-hashes a million rows. Answers ``ok``; a full verification is a resumable run of its
    own (``audit.verification``), started or taken up here: answers True once it is queued."""
    if full:
        full_verification_start(trigger=trigger, actor=actor)
        return True
    return chain_check_run(trigger=trigger, actor=actor, full=False).ok


@shared_task(name="audit.tasks.verify_audit_log_fully", ignore_result=True)
def verify_audit_log_fully(run_id: int) -> str:
    """Work on a full verification run for a while, then queue the rest (see
    ``audit.verification``); answers the run's state."""
    run = full_verification_work(run_id=run_id)
    return run.state if run is not None else "held elsewhere"


@shared_task(name="audit.tasks.sweep_full_verifications", ignore_result=True)
def sweep_full_verifications() -> int:
    """Queue again a full verification whose worker was killed (from beat); answers how many."""
    return full_verification_sweep()


@worker_ready.connect
def _resume_full_verifications(**_kwargs: Any) -> None:
    """A worker that starts (after a deploy, or a crash) takes up an unfinished full
    verification at once rather than after the sweep's delay; a run another worker is still
    moving is left to it (its batch holds the run's lock)."""
    try:
        full_verification_sweep(stale_after=timedelta(0))
    except Exception:  # the worker starts anyway: the periodic sweep tries again
        logger.exception("could not look for unfinished full verifications")
    finally:
        # The worker's main process forks replacement pool processes later: they must not
        # inherit its database connection.
        connections.close_all()


@shared_task(name="audit.tasks.seal_audit_log", ignore_result=True)
def seal_audit_log() -> int:
    """Seal the committed access-log rows and anchor the seals (every few seconds, from beat,
    beside or instead of ``run_audit_sealer``: two sealers at once are safe). Answers how many
    seals were written."""
    seals, _anchors = seal_and_anchor()
    return seals


@shared_task(name="audit.tasks.build_access_review", ignore_result=True)
def build_access_review() -> int | None:
    """Build the periodic access review of the last completed period if it is missing (daily,
    from beat; ``audit.reviews``); answers the review's id, or ``None`` when reviews are off."""
    review = access_review_build_due(now=timezone.now())
    return review.pk if review is not None else None


@shared_task(name="audit.tasks.rollup_access_log", ignore_result=True)
def rollup_access_log() -> int:
    """Bring the dashboard's daily rollup of the access log up to date (hourly, from beat;
    ``audit.rollups``): completed days not rolled up yet, or with rows that arrived since,
    are rolled up anew. Answers how many days were."""
    return len(access_log_rollup(now=timezone.now()).rolled)
