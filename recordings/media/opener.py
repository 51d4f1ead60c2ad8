"""Opening a recording's media for the player: picks the reader that fits how the recording
is stored (plain, Twilio's encrypted voice in storage or still at Twilio, the S3 encryption
client's envelope, or Twilio itself). The media endpoint and the media check need only
:func:`media_open`; url_provider asks :func:`media_playable_check` before it issues a link.
"""

from __future__ import annotations

from recordings.integrations import storage
from recordings.media import encrypted, encrypted_twilio, plain
from recordings.media.body import (
    MediaBody,
    MediaIntegrityFailed,
    MediaNotFound,
    storage_errors_as_media_errors,
    stored_object,
)
from recordings.models import IntegrityState, MediaLocation, Recording


def _is_voice_encrypted_at_twilio(recording: Recording) -> bool:
    return (
        recording.is_encrypted
        and recording.media_location == MediaLocation.TWILIO
        and recording.encryption_type != encrypted.ENVELOPE_ENCRYPTION_TYPE
    )


def media_playable_check(*, recording: Recording) -> None:
    """Raise the ``MediaError`` that would stop a recording from playing, where it can be known
    before a link is issued; today for encrypted voice recordings Twilio holds (missing key,
    failed tag check, media gone at Twilio, Twilio down: see ``encrypted_twilio``). Other
    recordings report their problems when the link is fetched."""
    if _is_voice_encrypted_at_twilio(recording):
        encrypted_twilio.twilio_voice_check(recording=recording)


def media_open(*, recording: Recording, range_header: str | None = None) -> MediaBody:
    """Open a recording's media for playback, whole or the range ``range_header`` asks for."""
    if recording.integrity_state == IntegrityState.FAILED:
        raise MediaIntegrityFailed("this recording's file failed verification and is not served")
    if _is_voice_encrypted_at_twilio(recording):
        return encrypted_twilio.twilio_voice_open(recording=recording, range_header=range_header)
    if recording.is_encrypted:
        return encrypted.encrypted_media_open(recording=recording, range_header=range_header)
    if recording.media_location == MediaLocation.TWILIO:
        return plain.twilio_media_open(recording=recording, range_header=range_header)
    if recording.media_location not in (MediaLocation.S3, MediaLocation.LOCAL):
        raise MediaNotFound("no stored media is known for this recording")
    local, bucket, key = stored_object(recording)
    try:
        stat = storage.object_stat(local=local, bucket=bucket, key=key)
    except storage.StorageError as exc:
        raise storage_errors_as_media_errors(exc) from None
    if "x-amz-key" in stat.metadata or "x-amz-key-v2" in stat.metadata:
        # Written by the S3 encryption client (Twilio Video): never served as it is stored.
        return encrypted.envelope_media_open(
            recording=recording, stat=stat, range_header=range_header
        )
    return plain.stored_media_open(recording=recording, stat=stat, range_header=range_header)
