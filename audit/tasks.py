"""Celery tasks of the audit app (scheduled in ``CELERY_BEAT_SCHEDULE``): sealing the log,
signing its head and verifying the whole chain."""

from __future__ import annotations

from celery import shared_task

from audit.sealer import seal_and_anchor
from audit.services import audit_digest_create, chain_check_run


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
    re-hashes a million rows. Answers ``ok``."""
    return chain_check_run(trigger=trigger, actor=actor, full=full).ok


@shared_task(name="audit.tasks.seal_audit_log", ignore_result=True)
def seal_audit_log() -> int:
    """Seal the committed access-log rows and anchor the seals (every few seconds, from beat,
    beside or instead of ``run_audit_sealer``: two sealers at once are safe). Answers how many
    seals were written."""
    seals, _anchors = seal_and_anchor()
    return seals
