"""The only place that queues Celery work, naming tasks instead of importing them.

Features call these functions to have work done soon; none of them imports ``recordings.tasks``
(the tasks call the features, so importing them back would close a circle). In embedded mode
(no broker, ``CELERY_TASK_ALWAYS_EAGER``) the task runs at once, in this process.

Queueing never raises: the database already says what is owed (an event row stays ``pending``,
a recording stays at Twilio or unverified), and a periodic task or command finds what a broker
outage left behind. Each function's docstring names that safety net.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from celery import current_app
from kombu import Producer

logger = logging.getLogger(__name__)

SYNC_EVENT = "recordings.tasks.sync_event"
SYNC_EVENTS = "recordings.tasks.sync_events"
VERIFY_RECORDING_MEDIA = "recordings.tasks.verify_recording_media"
ARCHIVE_RECORDING = "recordings.tasks.archive_recording"
ARCHIVE_RECORDING_BATCH = "recordings.tasks.archive_recording_batch"
PROCESS_TASKROUTER_EVENTS = "recordings.tasks.process_taskrouter_events"
ATTACH_FLEX_MEDIA = "recordings.tasks.attach_flex_media"
LINK_RECORDING_TASKS = "recordings.tasks.link_recording_tasks"
ANALYSE_RECORDING = "recordings.tasks.analyse_recording"
APPLY_HOLD_LOCKS = "recordings.tasks.apply_hold_locks"
WRITE_EVIDENCE_PACKAGE = "recordings.tasks.write_evidence_package"
APPLY_RESTRICTION_RULE = "recordings.tasks.apply_restriction_rule"

# Exponential backoff for work that waits on Twilio or storage: 30 s doubling up to 30 min,
# 12 retries, about 3.5 h in all (Twilio itself retries uploads for a couple of hours).
RETRY_BASE_SECONDS = 30
RETRY_MAX_SECONDS = 30 * 60
MAX_RETRIES = 12

EVENT_BATCH_SIZE = 100
"""Events per message when the dispatcher re-queues a backlog."""

ARCHIVE_BATCH_SIZE = 10
"""Recordings per message when many are archived at once: the broker round trips and the
worker's bookkeeping for a message cost about as much CPU as a small recording's database
work, and a batch this small still spreads over the worker's processes."""


def retry_delay(attempt: int) -> int:
    """Seconds to wait before retry number ``attempt`` (1-based) of work that Twilio or storage
    could not serve yet."""
    return min(RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0), RETRY_MAX_SECONDS)


def _eager() -> bool:
    return bool(current_app.conf.task_always_eager)


def _run_here(name: str, args: tuple[Any, ...]) -> None:
    """Run a task in this process (embedded mode). The task modules are imported on first use,
    as a worker imports them at start."""
    if name not in current_app.tasks:
        current_app.loader.import_default_modules()
    current_app.tasks[name].apply(args)


def _send(
    name: str,
    args: tuple[Any, ...],
    *,
    countdown: int | None = None,
    producer: Producer | None = None,
) -> None:
    if _eager():
        _run_here(name, args)
    else:
        current_app.send_task(name, args=args, countdown=countdown, producer=producer)


def _send_quietly(name: str, args: tuple[Any, ...], what: str, **options: Any) -> bool:
    """Queue a task; False (logged) when the broker could not take it."""
    try:
        _send(name, args, **options)
    except Exception as exc:  # kombu raises many kinds; any of them means "not queued"
        logger.warning("%s not queued (%s)", what, type(exc).__name__)
        return False
    return True


def queue_event_syncs(event_ids: Sequence[int]) -> bool:
    """Have stored callbacks' recordings synced, in one message; False when the broker cannot
    be reached (the events stay ``pending`` and ``dispatch_pending_events`` queues them)."""
    if not event_ids:
        return True
    return _send_quietly(SYNC_EVENTS, (list(event_ids),), f"sync of {len(event_ids)} events")


def queue_event_sync(event_id: int) -> bool:
    """Have one stored callback's recording synced soon (see :func:`queue_event_syncs`)."""
    return queue_event_syncs([event_id])


def queue_event_sync_later(event_id: int, *, countdown: int) -> bool:
    """Try an event's sync again in ``countdown`` seconds (Twilio was unavailable); the event
    stays ``pending`` with its next attempt time, for the dispatcher if this is lost."""
    return _send_quietly(SYNC_EVENT, (event_id,), f"retry of event {event_id}", countdown=countdown)


def queue_media_verification(recording_id: int) -> bool:
    """Have an encrypted recording's file verified soon; playback verifies anything still
    unverified anyway."""
    return _send_quietly(
        VERIFY_RECORDING_MEDIA, (recording_id,), f"media verification of recording {recording_id}"
    )


def queue_recording_archive(recording_id: int, *, countdown: int | None = None) -> bool:
    """Have a recording archived soon (or in ``countdown`` seconds); a recording left at Twilio
    is found again by ``archive_recordings``."""
    return _send_quietly(
        ARCHIVE_RECORDING,
        (recording_id,),
        f"archive of recording {recording_id}",
        countdown=countdown,
    )


def queue_recording_archives(recording_ids: Iterable[int]) -> int:
    """Have many recordings archived soon, ``ARCHIVE_BATCH_SIZE`` to a message (at once in
    embedded mode); answers how many were queued. Those not queued (broker down) stay at
    Twilio, where ``archive_recordings`` finds them again."""
    ids = list(recording_ids)
    batches = [ids[i : i + ARCHIVE_BATCH_SIZE] for i in range(0, len(ids), ARCHIVE_BATCH_SIZE)]
    queued = 0
    try:
        if _eager():
            for batch in batches:
                _run_here(ARCHIVE_RECORDING_BATCH, (batch,))
                queued += len(batch)
            return queued
        # One connection for all the messages, not one per message.
        with current_app.producer_or_acquire() as producer:
            for batch in batches:
                _send(ARCHIVE_RECORDING_BATCH, (batch,), producer=producer)
                queued += len(batch)
    except Exception as exc:  # kombu raises many kinds; any of them means "not queued"
        logger.warning("archive of %s recordings not queued (%s)", len(ids) - queued, exc)
    return queued


def queue_taskrouter_events(event_ids: Sequence[int], *, countdown: int | None = None) -> bool:
    """Have stored TaskRouter events processed, in one message (or in ``countdown`` seconds);
    False when the broker cannot be reached (the events stay ``pending`` and the periodic
    dispatcher queues them)."""
    if not event_ids:
        return True
    return _send_quietly(
        PROCESS_TASKROUTER_EVENTS,
        (list(event_ids),),
        f"{len(event_ids)} TaskRouter events",
        countdown=countdown,
    )


def queue_recording_task_link(recording_id: int) -> bool:
    """Have a synced recording linked to its Flex task(s) soon; a recording whose message is
    lost is linked by the periodic ``link_flex_recordings`` sweep (or when its task's events
    come)."""
    return _send_quietly(
        LINK_RECORDING_TASKS, (recording_id,), f"Flex linking of recording {recording_id}"
    )


def queue_flex_media_attach(link_ids: Sequence[int], *, countdown: int | None = None) -> bool:
    """Have recordings written into their Flex tasks' ``conversations.media`` soon (or in
    ``countdown`` seconds); links left ``pending`` are found again by the periodic sweep."""
    if not link_ids:
        return True
    return _send_quietly(
        ATTACH_FLEX_MEDIA,
        (list(link_ids),),
        f"Flex media attachment of {len(link_ids)} links",
        countdown=countdown,
    )


def queue_recording_analysis(recording_id: int) -> bool:
    """Have a recording's waveform and speech activity computed soon; recordings without an
    analysis are found again by ``analyse_recordings``."""
    return _send_quietly(
        ANALYSE_RECORDING, (recording_id,), f"analysis of recording {recording_id}"
    )


def queue_hold_locks(hold_id: int) -> bool:
    """Have the S3 Object Lock legal holds a legal hold owes set (or, once released, cleared)
    soon; ``reconcile_hold_locks`` finds what a lost message left owed."""
    return _send_quietly(APPLY_HOLD_LOCKS, (hold_id,), f"object locks of legal hold {hold_id}")


def queue_evidence_package(package_id: int) -> bool:
    """Have an evidence package written soon; a package left ``queued`` (broker down) shows so
    on the packages page, where the officer asks for it again."""
    return _send_quietly(
        WRITE_EVIDENCE_PACKAGE, (package_id,), f"evidence package {package_id}"
    )


def queue_restriction_rule_apply(rule_id: int, actor: str) -> bool:
    """Have a restriction rule applied to the existing recordings it still matches, in the
    officer's name; a lost message leaves them unrestricted, and the rule's preview counts
    them for the officer to apply again."""
    return _send_quietly(
        APPLY_RESTRICTION_RULE, (rule_id, actor), f"restriction rule {rule_id} applied"
    )
