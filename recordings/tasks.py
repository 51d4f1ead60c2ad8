"""Celery tasks for recordings, and the relay that hands stored callbacks to the broker.

Tasks are thin: they take ids and call ``recordings.services``. The database is the source of
truth for what still needs doing (an event row stays ``pending`` until it is processed or given
up); the broker only makes it happen soon.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Sequence
from datetime import timedelta

from celery import current_app, shared_task
from celery.signals import worker_process_init
from django.utils import timezone

from recordings import links, services, twilio_client
from recordings.models import RecordingEvent

logger = logging.getLogger(__name__)

RELAY_BATCH_SIZE = 100


def publish_event_batch(event_ids: Sequence[int]) -> bool:
    """Queue one message that syncs these events; False when the broker cannot be reached (the
    events stay ``pending`` and the periodic dispatcher queues them later)."""
    if not event_ids:
        return True
    try:
        with current_app.producer_or_acquire() as producer:
            sync_events.apply_async((list(event_ids),), producer=producer)
    except Exception as exc:  # kombu raises many kinds; any of them means "not queued"
        logger.warning(
            "broker unavailable (%s): %s events stay pending", type(exc).__name__, len(event_ids)
        )
        return False
    return True


class EventRelay:
    """Hands the ids of freshly stored callbacks to the broker in batches, from a background
    thread, so a webhook answers without paying for a broker publish.

    A publish costs 1.4 ms of CPU in kombu in a tight loop and about 2.7 ms in a busy web
    worker, more than the rest of the webhook; under load one publish carries up to
    ``RELAY_BATCH_SIZE`` ids, and at low load an id leaves within ``window`` seconds. Ids still
    in memory when the process dies are not lost: their events are ``pending`` rows, which the
    periodic dispatcher queues. One second is short beside the sync itself (a Twilio REST call)
    and lets a busy worker process (a hundred callbacks a second) send one message for a hundred
    of them: 0.02 ms per callback measured, against 0.13 ms at a quarter of a second.
    """

    def __init__(self, *, window: float = 1.0) -> None:
        self.window = window
        self._ids: list[int] = []
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def submit(self, event_id: int) -> None:
        """Queue an event's sync soon; returns at once."""
        with self._lock:
            self._ids.append(event_id)
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                # First use in this process (gunicorn forks workers after import).
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="event-relay", daemon=True)
                self._thread.start()
        self._wake.set()

    def flush(self) -> int:
        """Publish everything waiting now; returns how many ids were handed to the broker.

        Flushes run one at a time, so when this returns no batch taken earlier by the
        background thread is still on its way.
        """
        sent = 0
        with self._flushing:
            while True:
                with self._lock:
                    batch = self._ids[:RELAY_BATCH_SIZE]
                    del self._ids[:RELAY_BATCH_SIZE]
                if not batch:
                    return sent
                if publish_event_batch(batch):
                    sent += len(batch)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(self.window)  # let a burst gather into one message
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the relay must outlive any single failure
                logger.exception("event relay failed; the events stay pending")


event_relay = EventRelay()
atexit.register(event_relay.flush)


def queue_event_sync(event_id: int) -> None:
    """Have a stored callback's recording synced: at once in embedded mode (no broker), else
    through the relay."""
    if current_app.conf.task_always_eager:
        sync_event.apply((event_id,))
    else:
        event_relay.submit(event_id)


def _sync_once(event_id: int) -> int | None:
    """Process one event; the countdown in seconds before the next attempt when Twilio is
    unavailable, None when there is nothing more to do (processed, refused or given up)."""
    try:
        services.event_process(event_id=event_id)
    except twilio_client.TwilioUnavailable as exc:
        # The attempt count lives on the event row, not in the message, so an event that the
        # dispatcher re-queues still gives up after SYNC_MAX_RETRIES (about 3.5 hours).
        attempts = RecordingEvent.objects.values_list("attempts", flat=True).get(pk=event_id)
        if attempts > services.SYNC_MAX_RETRIES:
            services.event_give_up(
                event_id=event_id, error=f"{exc} (gave up after {attempts} attempts)"
            )
            return None
        return services.sync_retry_delay(attempts)
    return None


@shared_task(bind=True, acks_late=True, max_retries=None)
def sync_event(self, event_id: int) -> None:
    """Sync one event's recording; retry with backoff while Twilio is unavailable."""
    countdown = _sync_once(event_id)
    if countdown is None:
        return
    if self.request.is_eager:
        # Embedded mode has no broker to hold a delayed retry: the event stays pending for
        # `dispatch_pending_events` or `sync_recording`.
        return
    raise self.retry(countdown=countdown)


@shared_task(acks_late=True)
def sync_events(event_ids: list[int]) -> None:
    """Sync a batch of events; each one Twilio could not answer gets its own delayed retry."""
    for event_id in event_ids:
        countdown = _sync_once(event_id)
        if countdown is not None:
            sync_event.apply_async((event_id,), countdown=countdown)


@shared_task
def dispatch_pending_events() -> int:
    """Queue pending events whose message was never sent or was lost (e.g. the broker was down
    when the callback came); returns how many were queued."""
    due = list(services.events_due().values_list("pk", flat=True)[:1000])
    queued = 0
    for start in range(0, len(due), RELAY_BATCH_SIZE):
        batch = due[start : start + RELAY_BATCH_SIZE]
        if not publish_event_batch(batch):
            break
        RecordingEvent.objects.filter(pk__in=batch).update(next_attempt_at=timezone.now())
        queued += len(batch)
    if queued:
        logger.info("dispatched %s pending recording events", queued)
    return queued


@shared_task
def summarize_media_links() -> int:
    """Write the playback summary rows of expired media links (see ``links``)."""
    return links.media_links_summarize()


@shared_task
def reconcile_recent(days: int = 2) -> dict[str, int]:
    """Sync recordings of the last ``days`` days that no callback announced."""
    since = (timezone.now() - timedelta(days=days)).date()
    summary = services.recordings_reconcile(since=since)
    return {"seen": summary.seen, "synced": summary.synced, "failed": summary.failed}


@shared_task
def refresh_subaccounts() -> int:
    """Refresh the list of subaccounts whose callbacks are accepted."""
    return services.subaccounts_refresh()


VERIFY_MAX_RETRIES = 6


@shared_task(bind=True, acks_late=True, max_retries=VERIFY_MAX_RETRIES)
def verify_recording_media(self, recording_id: int, force: bool = False) -> str:
    """Check an encrypted voice recording's stored file against its GCM tag ahead of playback
    (``encrypted_media.media_verify``); answers what happened, as a short code.

    Already verified or failed recordings are skipped unless ``force``. A file not in storage
    yet, or storage down, is retried with backoff (1 min doubling, about an hour in all); a
    missing key or unusable details are left for the first playback to report.
    """
    from recordings import encrypted_media, media
    from recordings.models import IntegrityState, MediaLocation, Recording

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
        encrypted_media.media_verify(recording=recording)
    except (media.MediaNotFound, media.MediaUnavailable) as exc:
        if self.request.is_eager or self.request.retries >= VERIFY_MAX_RETRIES:
            logger.warning("could not verify recording %s: %s", recording.sid, exc)
            return exc.code
        raise self.retry(countdown=60 * 2**self.request.retries) from None
    except media.MediaError as exc:
        # Tag failures are recorded and audited by media_verify itself.
        logger.warning("could not verify recording %s: %s", recording.sid, exc)
        return exc.code
    return "verified"


@worker_process_init.connect
def _build_clients(**kwargs: object) -> None:
    """Build the process-wide S3 client as each worker process starts, not in its first task:
    the first boto3 client of a process costs about 180 ms of CPU (the service model is loaded),
    which would otherwise fall on whichever archive or media check comes first."""
    from recordings import storage

    try:
        if storage.uses_s3():
            storage.s3_client()
    except Exception:  # a bad setting must not kill the process: the first task reports it
        logger.exception("could not build the S3 client; tasks will try again")


def _run_soon(task, recording_id: int, what: str) -> None:
    """Run ``task`` for a recording at once in embedded mode (no broker), else queue it; never
    raises: the work is also found again later (see the callers)."""
    try:
        if current_app.conf.task_always_eager:
            task.apply((recording_id,))
        else:
            task.apply_async((recording_id,))
    except Exception as exc:  # kombu raises many kinds; any of them means "not queued"
        logger.warning("%s of recording %s not queued (%s)", what, recording_id, exc)


def queue_media_verification(recording_id: int) -> None:
    """Have an encrypted recording's file verified soon; playback verifies anything still
    unverified anyway."""
    _run_soon(verify_recording_media, recording_id, "media verification")


#: Recordings per message when many are queued at once: the broker round trips and the
#: worker's bookkeeping for a message cost about as much CPU as a small recording's database
#: work, and a batch this small still spreads over the worker's processes.
ARCHIVE_BATCH_SIZE = 10


def _archive_once(recording_id: int, *, eager: bool) -> tuple[str, int | None]:
    """Archive one recording: its outcome's code, and the countdown in seconds before the next
    attempt when it should be tried again (None: done, refused, or given up).

    Twilio or storage unavailable, or a recording not completed yet, is retried with the sync's
    backoff; after ``SYNC_MAX_RETRIES`` attempts (counted on the recording, so a re-queued
    message still stops) the recording is marked ``failed`` with the last error.
    """
    from recordings import archive

    outcome = archive.recording_archive(recording_id=recording_id)
    if not outcome.should_retry:
        return outcome.code, None
    if outcome.attempts > services.SYNC_MAX_RETRIES:
        archive.archive_give_up(
            recording_id=recording_id,
            error=f"{outcome.detail} (gave up after {outcome.attempts} attempts)",
        )
        return archive.ArchiveCode.FAILED, None
    if eager:
        # No broker to hold a delayed retry: `archive_recordings` or the admin picks it up.
        return outcome.code, None
    return outcome.code, services.sync_retry_delay(outcome.attempts)


@shared_task(bind=True, acks_late=True, max_retries=None)
def archive_recording(self, recording_id: int) -> str:
    """Copy a recording's media from Twilio to its archive bucket (``recordings.archive``);
    answers the outcome's code. Retried as :func:`_archive_once` says."""
    code, countdown = _archive_once(recording_id, eager=self.request.is_eager)
    if countdown is None:
        return code
    raise self.retry(countdown=countdown)


@shared_task(bind=True, acks_late=True)
def archive_recording_batch(self, recording_ids: list[int]) -> dict[str, int]:
    """Archive several recordings from one message, one after the other; each one to be tried
    again later gets its own delayed :func:`archive_recording`. Answers how many ended with
    each outcome code."""
    codes: dict[str, int] = {}
    for recording_id in recording_ids:
        code, countdown = _archive_once(recording_id, eager=self.request.is_eager)
        if countdown is not None:
            archive_recording.apply_async((recording_id,), countdown=countdown)
        codes[code] = codes.get(code, 0) + 1
    return codes


def queue_recording_archive(recording_id: int) -> None:
    """Have a recording archived soon; a recording left at Twilio is found again by
    ``archive_recordings``."""
    _run_soon(archive_recording, recording_id, "archive")


def queue_recording_archives(recording_ids: Sequence[int]) -> int:
    """Have many recordings archived soon, ``ARCHIVE_BATCH_SIZE`` to a message (at once in
    embedded mode); answers how many were queued. Never raises: those not queued (broker
    down) stay at Twilio, where ``archive_recordings`` finds them again."""
    ids = list(recording_ids)
    batches = [
        ids[start : start + ARCHIVE_BATCH_SIZE] for start in range(0, len(ids), ARCHIVE_BATCH_SIZE)
    ]
    if current_app.conf.task_always_eager:
        for batch in batches:
            archive_recording_batch.apply((batch,))
        return len(ids)
    queued = 0
    try:
        with current_app.producer_or_acquire() as producer:
            for batch in batches:
                archive_recording_batch.apply_async((batch,), producer=producer)
                queued += len(batch)
    except Exception as exc:  # kombu raises many kinds; any of them means "not queued"
        logger.warning("archive of %s recordings not queued (%s)", len(ids) - queued, exc)
    return queued


@shared_task
def apply_retention() -> dict[str, int]:
    """Apply the retention policies (daily, from beat): soft-delete what is past its keep,
    hard-delete what is past its grace; failures stay on the recordings for the next run."""
    from recordings import retention

    return retention.retention_apply(now=timezone.now()).as_dict()
