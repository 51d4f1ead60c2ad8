"""Celery tasks of the audit app (scheduled in ``CELERY_BEAT_SCHEDULE``): signing the log's
head and verifying the whole chain."""

from __future__ import annotations

from celery import shared_task

from audit.services import audit_digest_create, chain_check_run


@shared_task(name="audit.tasks.sign_audit_head", ignore_result=True)
def sign_audit_head() -> int:
    """Sign the access log's current head into a digest; answer the digest's id.

    Run it periodically (hourly, say): deletions or rewrites of rows a digest covers are then
    caught by ``verify_audit_log`` even if the whole chain was recomputed.
    """
    return audit_digest_create().id


@shared_task(name="audit.tasks.verify_audit_chain", ignore_result=True)
def verify_audit_chain() -> bool:
    """Verify the whole access log (nightly): the dashboard's "broken audit chain" alert reads
    the result, so a million-row chain is not re-hashed on every page view. Answers ``ok``."""
    return chain_check_run(trigger="schedule", actor="system:nightly").ok
