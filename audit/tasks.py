"""Celery tasks of the audit app (scheduled by the lead in ``CELERY_BEAT_SCHEDULE``)."""

from __future__ import annotations

from celery import shared_task

from audit.services import audit_digest_create


@shared_task(name="audit.tasks.sign_audit_head", ignore_result=True)
def sign_audit_head() -> int:
    """Sign the access log's current head into a digest; answer the digest's id.

    Run it periodically (hourly, say): deletions or rewrites of rows a digest covers are then
    caught by ``verify_audit_log`` even if the whole chain was recomputed.
    """
    return audit_digest_create().id
