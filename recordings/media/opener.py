"""Opening a recording's media for the player: picks the reader that fits how the recording
is stored (plain, Twilio's encrypted voice, the S3 encryption client's envelope, or Twilio
itself). The media endpoint and the media check need only :func:`media_open`.
"""

from __future__ import annotations

from recordings.integrations import storage
from recordings.media import encrypted, plain
from recordings.media.body import (
    MediaBody,
    MediaIntegrityFailed,
    MediaNotFound,
    storage_errors_as_media_errors,
    stored_object,
)
from recordings.models import IntegrityState, MediaLocation, Recording


def media_open(*, recording: Recording, range_header: str | None = None) -> MediaBody:
    """Open a recording's media for playback, whole or the range ``range_header`` asks for."""
    if recording.integrity_state == IntegrityState.FAILED:
        raise MediaIntegrityFailed("this recording's file failed verification and is not served")
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
