"""Celery tasks for recordings: thin wrappers that take ids and call ``recordings.services``."""

from __future__ import annotations

import contextlib
import logging
import threading
from datetime import timedelta

from celery import current_app, shared_task
from django.utils import timezone

from recordings import services, twilio_client
from recordings.models import RecordingEvent

logger = logging.getLogger(__name__)


_publisher = threading.local()


def publisher_reset() -> None:
    """Forget this thread's broker producer (after the broker URL changed or it failed)."""
    producer = getattr(_publisher, "producer", None)
    _publisher.producer = None
    if producer is not None:
        with contextlib.suppress(Exception):
            producer.release()


def _producer():
    # Acquiring a producer from kombu's pool for each message costs about as much as the
    # publish itself; each thread keeps one instead (producers are not thread-safe).
    producer = getattr(_publisher, "producer", None)
    if producer is None:
        producer = current_app.producer_pool.acquire(block=True, timeout=2)
        _publisher.producer = producer
    return producer


def enqueue_event(event_id: int) -> bool:
    """Queue the sync of a stored callback; False (and the event stays ``pending`` for the
    periodic dispatcher) when the broker cannot be reached."""
    try:
        if current_app.conf.task_always_eager:
            sync_event.apply_async((event_id,))
        else:
            sync_event.apply_async((event_id,), producer=_producer())
    except Exception as exc:  # kombu raises many kinds; any of them means "not queued"
        publisher_reset()
        logger.warning(
            "broker unavailable (%s): event %s stays pending", type(exc).__name__, event_id
        )
        return False
    return True


@shared_task(bind=True, acks_late=True, max_retries=None)
def sync_event(self, event_id: int) -> None:
    """Apply a stored callback and sync its recording; retry while Twilio is unavailable.

    The attempt count lives on the event row, not in the message, so a retry that the
    dispatcher re-queues still gives up after ``SYNC_MAX_RETRIES`` (about 3.5 hours).
    """
    try:
        services.event_process(event_id=event_id)
    except twilio_client.TwilioUnavailable as exc:
        attempts = RecordingEvent.objects.values_list("attempts", flat=True).get(pk=event_id)
        if attempts > services.SYNC_MAX_RETRIES:
            services.event_give_up(
                event_id=event_id, error=f"{exc} (gave up after {attempts} attempts)"
            )
            return
        if self.request.is_eager:
            # Embedded mode has no broker to hold a delayed retry: the event stays pending and
            # `dispatch_pending_events` or `sync_recording` picks it up.
            return
        raise self.retry(countdown=services.sync_retry_delay(attempts), exc=exc) from None


@shared_task
def dispatch_pending_events() -> int:
    """Queue pending events whose task was never queued or was lost (e.g. broker down when
    the callback came); returns how many were queued."""
    queued = 0
    for event_id in services.events_due().values_list("pk", flat=True)[:1000]:
        if not enqueue_event(event_id):
            break
        RecordingEvent.objects.filter(pk=event_id).update(next_attempt_at=timezone.now())
        queued += 1
    if queued:
        logger.info("dispatched %s pending recording events", queued)
    return queued


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
