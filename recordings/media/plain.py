"""Plain recordings: a file read from the local folder or S3 as it is stored, or media still
held by Twilio proxied with the player's ``Range`` passed through.
"""

from __future__ import annotations

from collections.abc import Iterator

from recordings.integrations import storage, twilio_api
from recordings.media.body import (
    MediaBody,
    MediaNotFound,
    MediaRangeNotSatisfiable,
    MediaUnavailable,
    content_type_for,
    parse_range,
    storage_errors_as_media_errors,
    stored_object,
)
from recordings.models import Recording


def stored_media_open(
    *, recording: Recording, stat: storage.StoredObject, range_header: str | None
) -> MediaBody:
    """Serve a file stored as it is played (neither Twilio's voice encryption nor the S3
    encryption client's envelope), pinned to the object ``stat`` describes."""
    local, bucket, key = stored_object(recording)
    wanted = parse_range(range_header, stat.size)
    start, end = wanted or (0, stat.size)
    chunks = storage.object_read(
        local=local, bucket=bucket, key=key, start=start, end=end, if_match=stat.etag
    )
    return MediaBody(
        size=stat.size,
        start=start,
        end=end,
        content_type=content_type_for(key),
        chunks=_translated(chunks),
        partial=wanted is not None,
    )


def _translated(chunks: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield from chunks
    except storage.StorageError as exc:
        raise storage_errors_as_media_errors(exc) from None


def twilio_media_open(*, recording: Recording, range_header: str | None) -> MediaBody:
    """Proxy media still held by Twilio (not archived yet), passing the range through."""
    try:
        response = twilio_api.recording_media_fetch(
            sid=recording.sid,
            account_sid=recording.account_sid,
            channels=recording.channels,
            range_header=range_header,
        )
    except twilio_api.TwilioRejected as exc:
        if exc.status == 416:
            raise MediaRangeNotSatisfiable(str(exc), size=recording.media_size or 0) from None
        raise MediaNotFound(str(exc)) from None
    except twilio_api.TwilioError as exc:
        raise MediaUnavailable(str(exc)) from None
    return MediaBody(
        size=response.size,
        start=response.start,
        end=response.end,
        content_type="audio/wav",
        chunks=response.chunks,
        partial=response.partial,
    )
