"""Celery tasks for recordings: thin, they take ids and call the features.

The database is the source of truth for what still needs doing (an event row stays ``pending``
until it is processed or given up; a recording stays at Twilio until archived); the broker only
makes it happen soon. Work is queued through ``recordings.jobs``, by task name; nothing imports
this module but Celery's autodiscovery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from celery import Task, shared_task
from celery.signals import worker_process_init
from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from recordings import jobs
from recordings.analysis import service as analysis_service
from recordings.custody import subaccounts
from recordings.flex import attach as flex_attach
from recordings.flex import directory, linking
from recordings.flex import events as flex_events
from recordings.ingest import events, reconcile
from recordings.integrations import storage, twilio_api
from recordings.lifecycle import (
    archive,
    evidence_package,
    evidence_sweep,
    hold_locks,
    restriction_rules,
    retention,
)
from recordings.media import encrypted
from recordings.media.body import MediaError, MediaNotFound, MediaUnavailable
from recordings.models import (
    IntegrityState,
    MediaLocation,
    Recording,
    RecordingEvent,
    TaskRouterEvent,
)
from recordings.playback import links

logger = logging.getLogger(__name__)


def _sync_once(event_id: int) -> int | None:
    """Process one event; the countdown in seconds before the next attempt when Twilio is
    unavailable, None when there is nothing more to do (processed, refused or given up)."""
    try:
        events.event_process(event_id=event_id)
    except twilio_api.TwilioUnavailable as exc:
        # The attempt count lives on the event row, not in the message, so an event that the
        # dispatcher re-queues still gives up after jobs.MAX_RETRIES (about 3.5 hours).
        attempts = RecordingEvent.objects.values_list("attempts", flat=True).get(pk=event_id)
        if attempts > jobs.MAX_RETRIES:
            events.event_give_up(
                event_id=event_id, error=f"{exc} (gave up after {attempts} attempts)"
            )
            return None
        return jobs.retry_delay(attempts)
    return None


@shared_task(bind=True, acks_late=True, max_retries=None)
def sync_event(self: Task, event_id: int) -> None:
    """Sync one event's recording; retry with backoff while Twilio is unavailable."""
    countdown = _sync_once(event_id)
    if countdown is None:
        return
    if self.request.is_eager:
        # Embedded mode has no broker to hold a delayed retry: the event stays pending for
        # `dispatch_pending_events` or `sync_recording`.
        return
    raise self.retry(countdown=countdown)


@shared_task(bind=True, acks_late=True)
def sync_events(self: Task, event_ids: list[int]) -> None:
    """Sync a batch of events; each one Twilio could not answer gets its own delayed retry
    (none in embedded mode: the event stays pending for ``dispatch_pending_events``)."""
    for event_id in event_ids:
        countdown = _sync_once(event_id)
        if countdown is not None and not self.request.is_eager:
            jobs.queue_event_sync_later(event_id, countdown=countdown)


@shared_task
def dispatch_pending_events() -> int:
    """Queue pending events whose message was never sent or was lost (e.g. the broker was down
    when the callback came); returns how many were queued."""
    queued = _dispatch(events.events_due(), jobs.queue_event_syncs)
    if queued:
        logger.info("dispatched %s pending recording events", queued)
    return queued


def _dispatch(
    due: QuerySet[RecordingEvent] | QuerySet[TaskRouterEvent],
    queue: Callable[[list[int]], bool],
) -> int:
    """Queue the first thousand ``due`` events in batches, moving each queued one's next
    attempt to now (so the next dispatch leaves it to its message); stops at the first batch
    the broker does not take. Answers how many were queued."""
    ids = list(due.values_list("pk", flat=True)[:1000])
    queued = 0
    for start in range(0, len(ids), jobs.EVENT_BATCH_SIZE):
        batch = ids[start : start + jobs.EVENT_BATCH_SIZE]
        if not queue(batch):
            break
        due.model.objects.filter(pk__in=batch).update(next_attempt_at=timezone.now())
        queued += len(batch)
    return queued


@shared_task
def summarize_media_links() -> int:
    """Write the playback summary rows of expired media links (see ``links``)."""
    return links.media_links_summarize()


@shared_task
def reconcile_recent(days: int = 2) -> dict[str, int]:
    """Sync recordings of the last ``days`` days that no callback announced."""
    since = (timezone.now() - timedelta(days=days)).date()
    summary = reconcile.recordings_reconcile(since=since)
    return {"seen": summary.seen, "synced": summary.synced, "failed": summary.failed}


@shared_task
def refresh_subaccounts() -> int:
    """Refresh the list of subaccounts whose callbacks are accepted."""
    return subaccounts.subaccounts_refresh()


VERIFY_MAX_RETRIES = 6


@shared_task(bind=True, acks_late=True, max_retries=VERIFY_MAX_RETRIES)
def verify_recording_media(self: Task, recording_id: int, force: bool = False) -> str:
    """Check an encrypted voice recording's stored file against its GCM tag ahead of playback
    (``encrypted.media_verify``); answers what happened, as a short code.

    Already verified or failed recordings are skipped unless ``force``. A file not in storage
    yet, or storage down, is retried with backoff (1 min doubling, about an hour in all); a
    missing key or unusable details are left for the first playback to report.
    """
    recording = Recording.objects.filter(pk=recording_id).first()
    if recording is None:
        return "missing"
    if (
        recording.encryption_type != "rsa-aes"
        or recording.media_location not in (MediaLocation.S3, MediaLocation.LOCAL)
        or (not force and recording.integrity_state != IntegrityState.UNVERIFIED)
    ):
        return "skipped"
    try:
        encrypted.media_verify(recording=recording)
    except (MediaNotFound, MediaUnavailable) as exc:
        if self.request.is_eager or self.request.retries >= VERIFY_MAX_RETRIES:
            logger.warning("could not verify recording %s: %s", recording.sid, exc)
            return exc.code
        raise self.retry(countdown=60 * 2**self.request.retries) from None
    except MediaError as exc:
        # Tag failures are recorded and audited by media_verify itself.
        logger.warning("could not verify recording %s: %s", recording.sid, exc)
        return exc.code
    jobs.queue_recording_analysis(recording.pk)
    return "verified"


@worker_process_init.connect
def _build_clients(**kwargs: object) -> None:
    """Build the process-wide S3 client as each worker process starts, not in its first task:
    the first boto3 client of a process loads the service model, a cost that would otherwise
    fall on whichever archive or media check comes first."""
    try:
        if storage.uses_s3():
            storage.s3_client()
    except Exception:  # a bad setting must not kill the process: the first task reports it
        logger.exception("could not build the S3 client; tasks will try again")


def _archive_once(recording_id: int, *, eager: bool) -> tuple[str, int | None]:
    """Archive one recording: its outcome's code, and the countdown in seconds before the next
    attempt when it should be tried again (None: done, refused, or given up).

    Twilio or storage unavailable, or a recording not completed yet, is retried with the sync's
    backoff; after ``jobs.MAX_RETRIES`` attempts (counted on the recording, so a re-queued
    message still stops) the recording is marked ``failed`` with the last error.
    """
    outcome = archive.recording_archive(recording_id=recording_id)
    if not outcome.should_retry:
        return outcome.code, None
    if outcome.attempts > jobs.MAX_RETRIES:
        archive.archive_give_up(
            recording_id=recording_id,
            error=f"{outcome.detail} (gave up after {outcome.attempts} attempts)",
        )
        return archive.ArchiveCode.FAILED, None
    if eager:
        # No broker to hold a delayed retry: `archive_recordings` or the admin picks it up.
        return outcome.code, None
    return outcome.code, jobs.retry_delay(outcome.attempts)


@shared_task(bind=True, acks_late=True, max_retries=None)
def archive_recording(self: Task, recording_id: int) -> str:
    """Copy a recording's media from Twilio to its archive bucket
    (``recordings.lifecycle.archive``); answers the outcome's code. Retried as :func:`_archive_once`
    says."""
    code, countdown = _archive_once(recording_id, eager=self.request.is_eager)
    if countdown is None:
        return code
    raise self.retry(countdown=countdown)


@shared_task(bind=True, acks_late=True)
def archive_recording_batch(self: Task, recording_ids: list[int]) -> dict[str, int]:
    """Archive several recordings from one message, one after the other; each one to be tried
    again later gets its own delayed :func:`archive_recording`. Answers how many ended with
    each outcome code."""
    codes: dict[str, int] = {}
    for recording_id in recording_ids:
        code, countdown = _archive_once(recording_id, eager=self.request.is_eager)
        if countdown is not None:
            jobs.queue_recording_archive(recording_id, countdown=countdown)
        codes[code] = codes.get(code, 0) + 1
    return codes


@shared_task
def apply_retention() -> dict[str, int]:
    """Apply the retention policies (daily, from beat): soft-delete what is past its keep,
    hard-delete what is past its grace; failures stay on the recordings for the next run."""
    return retention.retention_apply(now=timezone.now()).as_dict()


@shared_task(bind=True, acks_late=True)
def attach_flex_media(self: Task, link_ids: list[int]) -> dict[str, int]:
    """Write recordings into their Flex tasks' ``conversations.media``
    (``recordings.flex.attach``); links Twilio could not take now are queued again after their
    backoff (embedded mode has no broker to hold a delayed message: they wait for the sweep or
    the admin's "Attach to Flex again"). Answers how many ended in each state."""
    summary = flex_attach.flex_media_attach(link_ids=link_ids)
    if summary.pending and summary.retry_in is not None and not self.request.is_eager:
        jobs.queue_flex_media_attach(summary.pending, countdown=summary.retry_in)
    return {
        "attached": len(summary.attached),
        "pending": len(summary.pending),
        "task_gone": len(summary.task_gone),
        "failed": len(summary.failed),
        "off": len(summary.off),
    }


@shared_task
def sweep_flex_media() -> int:
    """Queue recording-task links still waiting to be written into Flex whose time has come
    (from beat): lost messages, a broker outage, retries after Twilio was unavailable."""
    return flex_attach.flex_media_sweep()


ANALYSIS_MAX_RETRIES = 6


@shared_task(bind=True, acks_late=True)
def analyse_recording(self: Task, recording_id: int, force: bool = False) -> str:
    """Compute a recording's waveform and speech activity (``recordings.analysis.service``);
    answers what happened. Storage or Twilio down: retried with backoff (none in embedded mode,
    where ``analyse_recordings`` finds the recording again)."""
    try:
        return analysis_service.recording_analyse(recording_id=recording_id, force=force).code
    except analysis_service.AnalysisUnavailable as exc:
        if self.request.is_eager or self.request.retries >= ANALYSIS_MAX_RETRIES:
            logger.warning("could not analyse recording %s now: %s", recording_id, exc)
            return "unavailable"
        raise self.retry(countdown=jobs.retry_delay(self.request.retries + 1)) from None


@shared_task(bind=True, acks_late=True)
def process_taskrouter_events(self: Task, event_ids: list[int]) -> None:
    """Apply stored TaskRouter events (``recordings.flex.events``); each one the database
    failed gets its own delayed retry (none in embedded mode: it stays pending for
    ``dispatch_pending_taskrouter_events``)."""
    retries = flex_events.taskrouter_events_process(event_ids=event_ids)
    if self.request.is_eager:
        return
    for event_id, countdown in retries.items():
        if countdown is not None:
            jobs.queue_taskrouter_events([event_id], countdown=countdown)


@shared_task
def dispatch_pending_taskrouter_events() -> int:
    """Queue pending TaskRouter events whose message was never sent or was lost (the broker
    was down when TaskRouter posted them); returns how many were queued."""
    queued = _dispatch(flex_events.taskrouter_events_due(), jobs.queue_taskrouter_events)
    if queued:
        logger.info("dispatched %s pending TaskRouter events", queued)
    return queued


@shared_task(acks_late=True)
def link_recording_tasks(recording_id: int) -> list[int]:
    """Link a synced recording to its Flex task(s) (``recordings.flex.linking``); answers the
    ids of the links queued for media attachment."""
    return linking.recording_link(recording_id=recording_id)


@shared_task
def link_flex_recordings(hours: int = 6) -> int:
    """Link recordings of the last ``hours`` that belong to a known task but have no link (a
    link message lost with the broker); returns how many were linked."""
    return linking.recordings_link_missing(since=timezone.now() - timedelta(hours=hours))


@shared_task
def sync_flex_directory() -> dict[str, int]:
    """Read TaskRouter's workers and task queues into the portal's directory (hourly); does
    nothing without a workspace configured."""
    if not flex_events.linkage_configured():
        return {}
    return directory.flex_directory_sync(actor="system:schedule").as_dict()


@shared_task(acks_late=True)
def apply_hold_locks(hold_id: int) -> dict[str, object]:
    """Set (or, for a released hold, clear) a legal hold's S3 Object Lock legal holds
    (``recordings.lifecycle.hold_locks``); a big hold requeues itself until none is owed."""
    run = hold_locks.hold_locks_apply(hold_id=hold_id)
    if run.remaining and not run.stopped:
        jobs.queue_hold_locks(hold_id)
    return run.as_dict()


@shared_task
def reconcile_hold_locks() -> dict[str, int]:
    """Apply the Object Lock legal holds every active hold owes (recordings that arrived since,
    earlier failures) and clear a released hold's (every 15 minutes)."""
    return hold_locks.hold_locks_reconcile()


@shared_task(acks_late=True, time_limit=settings.EVIDENCE_PACKAGE_TIME_LIMIT_MINUTES * 60)
def write_evidence_package(package_id: int) -> str:
    """Write a queued evidence package to the exports storage
    (``recordings.lifecycle.evidence_package``); answers its state."""
    return evidence_package.evidence_package_run(package_id=package_id).state


@shared_task
def apply_restriction_rule(rule_id: int, actor: str) -> int:
    """Restrict the existing recordings a restriction rule still matches, in the officer's
    name (``recordings.lifecycle.restriction_rules``); answers how many."""
    return restriction_rules.restriction_rule_apply_job(rule_id=rule_id, actor=actor)


@shared_task
def sweep_evidence_packages() -> int:
    """Mark failed the evidence packages still running past the job's time limit: their
    worker died (``recordings.lifecycle.evidence_sweep``; every five minutes)."""
    return len(evidence_sweep.evidence_packages_sweep())


@shared_task
def expire_evidence_packages() -> int:
    """Delete evidence package files past ``AUDIT_EXPORT_RETENTION_HOURS`` (hourly)."""
    return evidence_package.evidence_packages_expire()
