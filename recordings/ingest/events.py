"""Twilio's recording status callbacks as stored events: validated, stored first, processed
later by Celery, once each.

Every step is idempotent and order-proof: the same callback twice lands on one row (counted in
``deliveries``), and an event processed late never moves its recording back (``STATUS_RANK``).
The row is the source of truth for what still needs doing; the broker only makes it happen soon.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from portal.sids import ACCOUNT_SID, RECORDING_SID
from recordings import jobs
from recordings.ingest.sync import (
    recording_apply_callback,
    recording_mark_sync_failed,
    recording_sync,
)
from recordings.integrations import twilio_api
from recordings.models import EventState, RecordingEvent

logger = logging.getLogger(__name__)


class CallbackRejected(ValueError):
    """A callback is malformed; the message says which field and why."""


@dataclass(frozen=True)
class CallbackFields:
    """The identifying fields of a ``recordingStatusCallback``, validated."""

    recording_sid: str
    account_sid: str
    status: str


def callback_validate(params: Mapping[str, Any]) -> CallbackFields:
    """Check the fields every recording status callback must carry; raise CallbackRejected."""
    recording_sid = str(params.get("RecordingSid") or "")
    account_sid = str(params.get("AccountSid") or "")
    if not RECORDING_SID.fullmatch(recording_sid):
        raise CallbackRejected("RecordingSid is missing or is not RE followed by 32 hex digits")
    if not ACCOUNT_SID.fullmatch(account_sid):
        raise CallbackRejected("AccountSid is missing or is not AC followed by 32 hex digits")
    status = str(params.get("RecordingStatus") or "").strip().lower()
    if len(status) > 16:
        raise CallbackRejected("RecordingStatus is not a recording status")
    return CallbackFields(recording_sid, account_sid, status)


def event_record(
    *, fields: CallbackFields, params: Mapping[str, Any], idempotency_token: str = ""
) -> tuple[int, bool]:
    """Store an accepted callback; returns ``(event id, created)``.

    Twilio's retries and replays of the same callback (same recording and status) land on the
    existing row, counted in ``deliveries``, so they cause no second sync. The row is committed
    before Twilio gets its answer: a callback that was answered 204 is never lost.
    """
    now = timezone.now()
    values = {
        "recording_sid": fields.recording_sid,
        "account_sid": fields.account_sid,
        "recording_status": fields.status,
        "idempotency_token": idempotency_token[:128],
        "payload": {key: str(value) for key, value in params.items()},
        "received_at": now,
        "next_attempt_at": now,
    }
    try:
        if transaction.get_autocommit():
            # One INSERT that commits itself: a duplicate's IntegrityError leaves nothing to
            # roll back.
            event = RecordingEvent.objects.create(**values)
        else:
            with transaction.atomic():  # a savepoint, so a duplicate spares the caller's work
                event = RecordingEvent.objects.create(**values)
    except IntegrityError:
        # The same recording and status were stored before: count the delivery on that row.
        same = RecordingEvent.objects.filter(
            recording_sid=fields.recording_sid, recording_status=fields.status
        )
        same.update(deliveries=F("deliveries") + 1)
        return same.values_list("pk", flat=True).get(), False
    return event.pk, True


def event_process(*, event_id: int) -> RecordingEvent:
    """Apply a stored callback and sync its recording from Twilio; idempotent.

    On a transient Twilio failure the event stays ``pending`` with the attempt counted and the
    error re-raised for the caller (the Celery task) to schedule a retry. A final refusal marks
    the event ``failed`` and the recording ``sync_failed``.
    """
    event = RecordingEvent.objects.get(pk=event_id)
    if event.state != EventState.PENDING:
        return event
    recording_apply_callback(event=event)
    try:
        recording_sync(sid=event.recording_sid, account_sid=event.account_sid)
    except twilio_api.TwilioUnavailable as exc:
        attempts = event.attempts + 1
        RecordingEvent.objects.filter(pk=event.pk).update(
            attempts=attempts,
            last_error=str(exc)[:2000],
            next_attempt_at=timezone.now() + timedelta(seconds=jobs.retry_delay(attempts)),
        )
        raise
    except twilio_api.TwilioError as exc:
        event_give_up(event_id=event.pk, error=str(exc))
        return RecordingEvent.objects.get(pk=event.pk)
    RecordingEvent.objects.filter(pk=event.pk).update(
        state=EventState.PROCESSED,
        attempts=F("attempts") + 1,
        last_error="",
        processed_at=timezone.now(),
    )
    return RecordingEvent.objects.get(pk=event.pk)


def event_give_up(*, event_id: int, error: str) -> None:
    """Stop trying to sync an event's recording: the event is ``failed``, the recording
    ``sync_failed`` with the error, both visible in the admin."""
    event = RecordingEvent.objects.get(pk=event_id)
    with transaction.atomic():
        RecordingEvent.objects.filter(pk=event.pk).update(
            state=EventState.FAILED, last_error=error[:2000], processed_at=timezone.now()
        )
        recording_mark_sync_failed(
            sid=event.recording_sid, account_sid=event.account_sid, error=error
        )
    logger.error("gave up syncing recording %s: %s", event.recording_sid, error)


def events_due(
    *, now: datetime | None = None, grace: timedelta = timedelta(minutes=5)
) -> QuerySet[RecordingEvent]:
    """Pending events whose next attempt is overdue by more than ``grace``: their task was never
    queued (broker down) or was lost. The grace keeps normal, already queued work out."""
    now = now or timezone.now()
    return RecordingEvent.objects.filter(
        state=EventState.PENDING, next_attempt_at__lte=now - grace
    ).order_by("next_attempt_at", "id")


