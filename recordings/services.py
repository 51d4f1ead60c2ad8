"""Writes for recordings: store Twilio's callbacks, sync recordings from Twilio's REST API,
reconcile what callbacks missed, and keep the list of subaccounts.

Every write here is idempotent and order-proof: a callback or a sync may run twice or arrive
late, and the recording ends in the same state (see ``STATUS_RANK``).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Field
from django.utils import timezone

from portal.logging import register_secret
from portal.sealing import seal
from portal.sql import fetch_one, insert_parameters, insert_statement
from recordings import storage, twilio_client
from recordings.models import (
    STATUS_RANK,
    EventState,
    IntegrityState,
    MediaLocation,
    Recording,
    RecordingEvent,
    RecordingStatus,
    SyncState,
    TwilioSubaccount,
)

logger = logging.getLogger(__name__)

RECORDING_SID = re.compile(r"^RE[0-9a-fA-F]{32}$")
ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_CALL_SID = re.compile(r"^CA[0-9a-fA-F]{32}$")
_CONFERENCE_SID = re.compile(r"^CF[0-9a-fA-F]{32}$")

# Exponential backoff for syncs that fail because Twilio is down: 30 s doubling up to 30 min,
# 12 retries, about 3.5 h in all (Twilio itself retries uploads for a couple of hours).
SYNC_RETRY_BASE_SECONDS = 30
SYNC_RETRY_MAX_SECONDS = 30 * 60
SYNC_MAX_RETRIES = 12


class CallbackRejected(ValueError):
    """A callback is malformed; the message says which field and why."""


def sync_retry_delay(attempt: int) -> int:
    """Seconds to wait before retry number ``attempt`` (1-based) of a failed sync."""
    return min(SYNC_RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0), SYNC_RETRY_MAX_SECONDS)


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
    if not RECORDING_SID.match(recording_sid):
        raise CallbackRejected("RecordingSid is missing or is not RE followed by 32 hex digits")
    if not ACCOUNT_SID.match(account_sid):
        raise CallbackRejected("AccountSid is missing or is not AC followed by 32 hex digits")
    status = str(params.get("RecordingStatus") or "").strip().lower()
    if len(status) > 16:
        raise CallbackRejected("RecordingStatus is not a recording status")
    return CallbackFields(recording_sid, account_sid, status)


@functools.cache
def _event_upsert(names: tuple[str, ...], vendor: str) -> tuple[str, tuple[Field, ...]]:
    """The event row's ``INSERT … ON CONFLICT … RETURNING`` for columns ``names``, built once."""
    quote = connection.ops.quote_name
    table = quote(RecordingEvent._meta.db_table)
    return insert_statement(
        RecordingEvent,
        names,
        vendor,
        f"ON CONFLICT ({quote('recording_sid')}, {quote('recording_status')}) "
        f"DO UPDATE SET {quote('deliveries')} = {table}.{quote('deliveries')} + 1 "
        f"RETURNING {quote('id')}, {quote('deliveries')}",
    )


def event_record(
    *, fields: CallbackFields, params: Mapping[str, Any], idempotency_token: str = ""
) -> tuple[int, bool]:
    """Store an accepted callback; returns ``(event id, created)``.

    Twilio's retries and replays of the same callback (same recording and status) land on the
    existing row, counted in ``deliveries``, so they cause no second sync. One statement
    (``INSERT … ON CONFLICT … RETURNING``, a prepared statement on PostgreSQL) in autocommit:
    the row is durable before Twilio gets its answer, at the cost of a single round trip.
    """
    now = timezone.now()
    values: dict[str, Any] = {
        "recording_sid": fields.recording_sid,
        "account_sid": fields.account_sid,
        "recording_status": fields.status,
        "idempotency_token": idempotency_token[:128],
        "payload": {key: str(value) for key, value in params.items()},
        "received_at": now,
        "deliveries": 1,
        "state": EventState.PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "last_error": "",
    }
    sql, columns = _event_upsert(tuple(values), connection.vendor)
    event_id, deliveries = fetch_one(sql, insert_parameters(columns, values))
    return event_id, deliveries == 1


def _parse_datetime(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value if timezone.is_aware(value) else value.replace(tzinfo=UTC)
    text = str(value).strip()
    try:
        parsed = parsedate_to_datetime(text)  # Twilio's RFC 2822 dates
    except (TypeError, ValueError):
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)


def _parse_int(value: Any) -> int | None:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


def _parse_decimal(value: Any) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def encryption_fields(details: Any) -> dict[str, str]:
    """Recording fields from Twilio's ``encryption_details`` in either spelling Twilio uses.

    The REST resource and the callback disagree (``public_key_sid``/``encrypted_cek`` versus
    ``encryption_public_key_sid``/``encryption_cek``); the callback sends it as a JSON string.
    """
    if isinstance(details, str):
        try:
            details = json.loads(details) if details.strip() else None
        except ValueError:
            logger.warning("EncryptionDetails is not valid JSON; kept as unencrypted-unknown")
            return {"encryption_type": "invalid"}
    if not isinstance(details, dict) or not details:
        return {}
    return {
        "encryption_type": str(details.get("type") or "unknown")[:16],
        "encryption_public_key_sid": str(
            details.get("public_key_sid") or details.get("encryption_public_key_sid") or ""
        )[:34],
        "encryption_cek": str(details.get("encrypted_cek") or details.get("encryption_cek") or ""),
        "encryption_iv": str(details.get("iv") or "")[:64],
    }


def media_location_fields(media_url: str, status: str) -> dict[str, str]:
    """Where the media lives, from the URL Twilio reports: a bucket and key for external S3
    storage, Twilio itself for its own ``api.twilio.com`` media URLs."""
    location = storage.parse_s3_url(media_url)
    if location:
        return {
            "media_location": MediaLocation.S3,
            "media_bucket": location.bucket,
            "media_key": location.key,
        }
    if ".twilio.com/" in media_url and status != "deleted":
        return {"media_location": MediaLocation.TWILIO, "media_bucket": "", "media_key": ""}
    return {}


def _fields_from_callback(params: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {
        "call_sid": params.get("CallSid") if _CALL_SID.match(params.get("CallSid") or "") else "",
        "conference_sid": (
            params.get("ConferenceSid")
            if _CONFERENCE_SID.match(params.get("ConferenceSid") or "")
            else ""
        ),
        "source": str(params.get("RecordingSource") or "")[:40],
        "track": str(params.get("RecordingTrack") or "")[:16],
        "channels": _parse_int(params.get("RecordingChannels")),
        "duration_seconds": _parse_int(params.get("RecordingDuration")),
        "start_time": _parse_datetime(params.get("RecordingStartTime")),
        "error_code": _parse_int(params.get("ErrorCode")) or None,
        **encryption_fields(params.get("EncryptionDetails")),
    }
    media_url = str(params.get("RecordingUrl") or "")
    if media_url:
        values["media_url"] = media_url
        values.update(media_location_fields(media_url, str(params.get("RecordingStatus") or "")))
    return values


def _fields_from_resource(resource: twilio_client.TwilioRecording) -> dict[str, Any]:
    values: dict[str, Any] = {
        "call_sid": resource.call_sid,
        "conference_sid": resource.conference_sid,
        "source": resource.source[:40],
        "channels": resource.channels,
        "duration_seconds": _parse_int(resource.duration),
        "start_time": _parse_datetime(resource.start_time),
        "date_created": _parse_datetime(resource.date_created),
        "date_updated": _parse_datetime(resource.date_updated),
        "price": _parse_decimal(resource.price),
        "price_unit": resource.price_unit[:3],
        "error_code": resource.error_code or None,
        "twilio_uri": resource.uri[:255],
        "media_url": resource.media_url,
        **encryption_fields(resource.encryption_details),
        **media_location_fields(resource.media_url, resource.status),
    }
    return values


def _locked_recording(sid: str, account_sid: str) -> Recording:
    """The recording row, locked for this transaction; created when it is new."""
    recording = Recording.objects.select_for_update().filter(sid=sid).first()
    if recording is not None:
        return recording
    try:
        with transaction.atomic():
            return Recording.objects.create(sid=sid, account_sid=account_sid)
    except IntegrityError:  # created by a concurrent sync in the meantime
        return Recording.objects.select_for_update().get(sid=sid)


_MEDIA_LOCATION_FIELDS = frozenset({"media_location", "media_bucket", "media_key"})


def _media_location_is_ours(recording: Recording) -> bool:
    """True once the portal, not Twilio, decides where the media is: after an archive (the
    copy in the bucket) or a retention deletion (gone). Twilio keeps naming its own URL."""
    return (
        recording.archived_at is not None
        or recording.soft_deleted_at is not None
        or recording.hard_deleted_at is not None
    )


def _apply(recording: Recording, status: str, values: Mapping[str, Any]) -> None:
    """Copy known values onto the recording; never blank a field, never move status back."""
    for name, value in values.items():
        if value in (None, ""):
            continue
        if name in _MEDIA_LOCATION_FIELDS and _media_location_is_ours(recording):
            continue
        setattr(recording, name, value)
    if status and STATUS_RANK.get(status, 0) >= STATUS_RANK.get(recording.status, 0):
        recording.status = status


@transaction.atomic
def recording_apply_callback(*, event: RecordingEvent) -> Recording:
    """Update the recording from what the callback itself said, before any REST call.

    This is what keeps ``absent`` and ``failed`` recordings (with their ``ErrorCode``) visible
    even when Twilio's REST API cannot be reached.
    """
    recording = _locked_recording(event.recording_sid, event.account_sid)
    _apply(recording, event.recording_status, _fields_from_callback(event.payload))
    recording.save()
    return recording


@transaction.atomic
def recording_store_resource(*, resource: twilio_client.TwilioRecording) -> Recording:
    """Upsert the recording from a fetched REST resource and mark it synced."""
    recording = _locked_recording(resource.sid, resource.account_sid)
    _apply(recording, resource.status, _fields_from_resource(resource))
    recording.account_sid = resource.account_sid or recording.account_sid
    recording.sync_state = SyncState.SYNCED
    recording.sync_error = ""
    recording.synced_at = timezone.now()
    recording.save()
    if (
        recording.encryption_type == "rsa-aes"
        and recording.status == RecordingStatus.COMPLETED
        and recording.media_location in (MediaLocation.S3, MediaLocation.LOCAL)
        and recording.integrity_state == IntegrityState.UNVERIFIED
    ):
        # Check the encrypted file's GCM tag now, not at its first playback.
        from recordings.tasks import queue_media_verification

        transaction.on_commit(lambda pk=recording.pk: queue_media_verification(pk))
    if (
        recording.status == RecordingStatus.COMPLETED
        and recording.media_location == MediaLocation.TWILIO
        and recording.archived_at is None
    ):
        from recordings.archive import archive_enabled_for

        if archive_enabled_for(account_sid=recording.account_sid):
            # Copy the media to the customer's bucket (recordings.archive).
            from recordings.tasks import queue_recording_archive

            transaction.on_commit(lambda pk=recording.pk: queue_recording_archive(pk))
    return recording


def recording_sync(*, sid: str, account_sid: str | None = None) -> Recording:
    """Fetch one recording from Twilio's REST API and store it.

    Raises ``TwilioUnavailable`` (retry later) or ``TwilioRejected`` (stop).
    """
    if account_sid is None:
        account_sid = (
            Recording.objects.filter(sid=sid).values_list("account_sid", flat=True).first()
        )
    resource = twilio_client.recording_fetch(sid=sid, account_sid=account_sid or None)
    return recording_store_resource(resource=resource)


def recording_mark_sync_failed(*, sid: str, account_sid: str, error: str) -> None:
    """Record that a recording could not be synced, with the reason, for the admin to see."""
    with transaction.atomic():
        recording = _locked_recording(sid, account_sid)
        recording.sync_state = SyncState.SYNC_FAILED
        recording.sync_error = error[:2000]
        recording.save(update_fields=["sync_state", "sync_error", "updated_at"])


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
    except twilio_client.TwilioUnavailable as exc:
        attempts = event.attempts + 1
        RecordingEvent.objects.filter(pk=event.pk).update(
            attempts=attempts,
            last_error=str(exc)[:2000],
            next_attempt_at=timezone.now() + timedelta(seconds=sync_retry_delay(attempts)),
        )
        raise
    except twilio_client.TwilioError as exc:
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


def events_due(*, now: datetime | None = None, grace: timedelta = timedelta(minutes=5)):
    """Pending events whose next attempt is overdue by more than ``grace``: their task was never
    queued (broker down) or was lost. The grace keeps normal, already queued work out."""
    now = now or timezone.now()
    return RecordingEvent.objects.filter(
        state=EventState.PENDING, next_attempt_at__lte=now - grace
    ).order_by("next_attempt_at", "id")


@dataclass
class ReconcileSummary:
    """What a reconciliation found and did."""

    seen: int = 0
    synced: int = 0
    up_to_date: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def _is_stale(recording: Recording | None, resource: twilio_client.TwilioRecording) -> bool:
    if recording is None or recording.sync_state != SyncState.SYNCED:
        return True
    updated = _parse_datetime(resource.date_updated)
    return recording.status != resource.status or (
        updated is not None and recording.date_updated != updated
    )


def recordings_reconcile(
    *,
    since: date,
    on_progress: Callable[[twilio_client.TwilioRecording], None] | None = None,
) -> ReconcileSummary:
    """Find recordings at Twilio created since ``since`` that the portal lacks or holds stale
    (missed callbacks) and store them, for the configured account and its subaccounts."""
    summary = ReconcileSummary()
    account_sids: list[str | None] = [None, *TwilioSubaccount.objects.values_list("sid", flat=True)]
    created_after = datetime(since.year, since.month, since.day, tzinfo=UTC)
    for account_sid in account_sids:
        for resource in twilio_client.recordings_list(
            account_sid=account_sid, created_after=created_after
        ):
            summary.seen += 1
            existing = Recording.objects.filter(sid=resource.sid).first()
            if _is_stale(existing, resource):
                try:
                    recording_store_resource(resource=resource)
                except Exception as exc:  # one bad row must not stop the sweep
                    summary.failed += 1
                    summary.errors.append(f"{resource.sid}: {type(exc).__name__}")
                else:
                    summary.synced += 1
            else:
                summary.up_to_date += 1
            if on_progress:
                on_progress(resource)
    return summary


@transaction.atomic
def subaccounts_refresh() -> int:
    """Replace the stored list of subaccounts with Twilio's; returns how many there are."""
    listed = twilio_client.subaccounts_list()
    keep: list[str] = []
    for info in listed:
        keep.append(info.sid)
        register_secret(info.auth_token)
        TwilioSubaccount.objects.update_or_create(
            sid=info.sid,
            defaults={
                "friendly_name": info.friendly_name[:128],
                "status": info.status[:16],
                "sealed_auth_token": (
                    seal(info.auth_token.encode(), purpose=f"subaccount-token:{info.sid}")
                    if info.auth_token
                    else ""
                ),
                "refreshed_at": timezone.now(),
            },
        )
    TwilioSubaccount.objects.exclude(sid__in=keep).delete()
    return len(keep)
