"""Recordings synced from what Twilio says: a callback's own fields first, then the Recording
resource from Twilio's REST API.

Every write here is idempotent and order-proof: a callback or a sync may run twice or arrive
late, and the recording ends in the same state (see ``STATUS_RANK``). A synced recording whose
media needs work next (an encrypted file to verify, media to archive) has that work queued
once the transaction commits.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from portal.sids import CALL_SID, CONFERENCE_SID
from recordings import jobs
from recordings.custody import keys
from recordings.integrations import storage, twilio_api
from recordings.lifecycle import restriction_rules
from recordings.lifecycle.archive import archive_enabled_for
from recordings.models import (
    STATUS_RANK,
    IntegrityState,
    MediaLocation,
    Recording,
    RecordingEvent,
    RecordingStatus,
    SyncState,
)

logger = logging.getLogger(__name__)

# Twilio's "Encrypted with alternate public key": the configured key was unusable, Twilio fell
# back to another registered one, named in the recording's encryption details.
ERROR_ALTERNATE_PUBLIC_KEY = 16107


def parse_datetime(value: Any) -> datetime | None:
    """An aware datetime from Twilio's RFC 2822 or ISO 8601 text (UTC when it names no zone),
    or None when the value is empty or unreadable."""
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
        "call_sid": (
            params.get("CallSid") if CALL_SID.fullmatch(params.get("CallSid") or "") else ""
        ),
        "conference_sid": (
            params.get("ConferenceSid")
            if CONFERENCE_SID.fullmatch(params.get("ConferenceSid") or "")
            else ""
        ),
        "source": str(params.get("RecordingSource") or "")[:40],
        "track": str(params.get("RecordingTrack") or "")[:16],
        "channels": _parse_int(params.get("RecordingChannels")),
        "duration_seconds": _parse_int(params.get("RecordingDuration")),
        "start_time": parse_datetime(params.get("RecordingStartTime")),
        "error_code": _parse_int(params.get("ErrorCode")) or None,
        **encryption_fields(params.get("EncryptionDetails")),
    }
    media_url = str(params.get("RecordingUrl") or "")
    if media_url:
        values["media_url"] = media_url
        values.update(media_location_fields(media_url, str(params.get("RecordingStatus") or "")))
    return values


def _fields_from_resource(resource: twilio_api.TwilioRecording) -> dict[str, Any]:
    values: dict[str, Any] = {
        "call_sid": resource.call_sid,
        "conference_sid": resource.conference_sid,
        "source": resource.source[:40],
        "channels": resource.channels,
        "duration_seconds": _parse_int(resource.duration),
        "start_time": parse_datetime(resource.start_time),
        "date_created": parse_datetime(resource.date_created),
        "date_updated": parse_datetime(resource.date_updated),
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
    if status == RecordingStatus.DELETED:
        _mark_deleted_at_twilio(recording, when=values.get("date_updated"))
    elif status and STATUS_RANK.get(status, 0) >= STATUS_RANK.get(recording.status, 0):
        recording.status = status


def _mark_deleted_at_twilio(recording: Recording, *, when: datetime | None) -> None:
    """Twilio deleted the recording (its resource says ``deleted``, or it is gone for good):
    remember when, and mark it ``deleted`` unless the portal holds the media itself.

    Twilio's copy of the media is gone; a copy in a bucket (archived by the portal, or
    written there by Twilio's external storage) is not, so such a recording keeps its status
    and still plays. Nothing the portal knew about the recording is blanked.
    """
    if recording.twilio_media_deleted_at is None:
        recording.twilio_media_deleted_at = when or timezone.now()
    if recording.media_location not in (MediaLocation.S3, MediaLocation.LOCAL):
        recording.status = RecordingStatus.DELETED


@transaction.atomic
def recording_apply_callback(*, event: RecordingEvent) -> Recording:
    """Update the recording from what the callback itself said, before any REST call.

    This is what keeps ``absent`` and ``failed`` recordings (with their ``ErrorCode``) visible
    even when Twilio's REST API cannot be reached.
    """
    recording = _locked_recording(event.recording_sid, event.account_sid)
    _apply(recording, event.recording_status, _fields_from_callback(event.payload))
    recording.save()
    restriction_rules.restriction_rules_apply(recording=recording)
    _queue_flex_linking(recording)
    return recording


def _queue_flex_linking(recording: Recording) -> None:
    """Have the recording linked to its Flex conversation once this transaction commits
    (``recordings.flex.linking``, which this room does not import: work goes through jobs).
    Only with a workspace configured, and for a recording with a call or conference."""
    if settings.TWILIO_WORKSPACE_SID and (recording.call_sid or recording.conference_sid):
        recording_id = recording.pk
        transaction.on_commit(lambda: jobs.queue_recording_task_link(recording_id))


def _key_problem(recording: Recording) -> str:
    """Why the portal cannot open an encrypted recording's key, or "" when it can (or the
    recording is not encrypted, or gone)."""
    if recording.encryption_type != "rsa-aes" or recording.status == RecordingStatus.DELETED:
        return ""
    public_key_sid = recording.encryption_public_key_sid
    if public_key_sid and keys.private_key_held(public_key_sid):
        return ""
    problem = keys.missing_key_problem(public_key_sid)
    if recording.error_code == ERROR_ALTERNATE_PUBLIC_KEY:
        problem += (
            f" (Twilio error {ERROR_ALTERNATE_PUBLIC_KEY}: the configured public key was "
            "invalid or deleted, so Twilio used another registered one)"
        )
    return problem


@transaction.atomic
def recording_store_resource(*, resource: twilio_api.TwilioRecording) -> Recording:
    """Upsert the recording from a fetched REST resource and mark it synced.

    An encrypted recording whose public key names no private key the portal holds (Twilio's
    error 16107 is one way to get there) is stored and synced like any other, with the
    problem in ``sync_error`` and logged as an error: it cannot be played until that key is
    imported.
    """
    recording = _locked_recording(resource.sid, resource.account_sid)
    _apply(recording, resource.status, _fields_from_resource(resource))
    recording.account_sid = resource.account_sid or recording.account_sid
    recording.sync_state = SyncState.SYNCED
    recording.sync_error = _key_problem(recording)
    recording.synced_at = timezone.now()
    recording.save()
    if recording.sync_error:
        logger.error("recording %s: %s", recording.sid, recording.sync_error)
    # Its facts are known now: a restriction rule that matches them restricts it at once.
    restriction_rules.restriction_rules_apply(recording=recording)
    _queue_flex_linking(recording)
    recording_id = recording.pk
    if (
        recording.encryption_type == "rsa-aes"
        and recording.status == RecordingStatus.COMPLETED
        and recording.media_location in (MediaLocation.S3, MediaLocation.LOCAL)
        and recording.integrity_state == IntegrityState.UNVERIFIED
    ):
        # Check the encrypted file's GCM tag now, not at its first playback.
        transaction.on_commit(lambda: jobs.queue_media_verification(recording_id))
    if (
        recording.status == RecordingStatus.COMPLETED
        and recording.media_location == MediaLocation.TWILIO
        and recording.archived_at is None
        and archive_enabled_for(account_sid=recording.account_sid)
    ):
        # Copy the media to the customer's bucket (recordings.lifecycle.archive).
        transaction.on_commit(lambda: jobs.queue_recording_archive(recording_id))
    return recording


def recording_sync(*, sid: str, account_sid: str | None = None) -> Recording:
    """Fetch one recording from Twilio's REST API and store it.

    A recording deleted at Twilio is fetched with its metadata while Twilio keeps it (40 days,
    status ``deleted``); once Twilio answers 404 for a recording the portal had fetched before
    (or knew deleted), it is marked gone (:func:`recording_mark_gone_at_twilio`) instead of
    failing. Raises ``TwilioUnavailable`` (retry later) or ``TwilioRejected`` (stop; also a
    404 for a recording Twilio never showed the portal, such as an ``absent`` one).
    """
    if account_sid is None:
        account_sid = (
            Recording.objects.filter(sid=sid).values_list("account_sid", flat=True).first()
        )
    try:
        resource = twilio_api.recording_fetch(sid=sid, account_sid=account_sid or None)
    except twilio_api.TwilioRejected as exc:
        seen_at_twilio = Recording.objects.filter(sid=sid).filter(
            Q(synced_at__isnull=False) | Q(twilio_media_deleted_at__isnull=False)
        )
        if exc.status != 404 or not seen_at_twilio.exists():
            raise
        return recording_mark_gone_at_twilio(sid=sid, error=str(exc))
    return recording_store_resource(resource=resource)


@transaction.atomic
def recording_mark_gone_at_twilio(*, sid: str, error: str) -> Recording:
    """Twilio no longer has a recording the portal knows (404 even for deleted ones: deleted
    more than 40 days ago): keep every field the portal knew, mark it deleted at Twilio
    (``deleted`` unless the portal holds the media) and synced, the answer in ``sync_error``
    unless the deletion was already known."""
    recording = Recording.objects.select_for_update().get(sid=sid)
    known = recording.twilio_media_deleted_at is not None
    _mark_deleted_at_twilio(recording, when=None)
    recording.sync_state = SyncState.SYNCED
    recording.sync_error = (
        _key_problem(recording)
        if known
        else f"Twilio no longer has this recording ({error}); what the portal knew is kept"
    )[:2000]
    recording.synced_at = timezone.now()
    recording.save()
    if not known:
        logger.warning("recording %s is gone at Twilio (404); kept as last known", sid)
    return recording


def recording_mark_sync_failed(*, sid: str, account_sid: str, error: str) -> None:
    """Record that a recording could not be synced, with the reason, for the admin to see."""
    with transaction.atomic():
        recording = _locked_recording(sid, account_sid)
        recording.sync_state = SyncState.SYNC_FAILED
        recording.sync_error = error[:2000]
        recording.save(update_fields=["sync_state", "sync_error", "updated_at"])
