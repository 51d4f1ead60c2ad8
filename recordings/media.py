"""A recording's media as the player receives it: the whole file or one byte range, from the
local folder, S3 or Twilio, decrypted when Twilio encrypted it.

The media endpoint needs only :func:`media_open`; every way of reading a recording (plain,
encrypted voice, encrypted video) answers the same :class:`MediaBody`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from recordings import storage, twilio_client
from recordings.models import IntegrityState, MediaLocation, Recording

CONTENT_TYPES = {
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".mka": "audio/x-matroska",
    ".mkv": "video/x-matroska",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
}


class MediaError(Exception):
    """The media cannot be served; ``status`` and ``code`` say how to answer."""

    status = 500
    code = "media_error"


class MediaNotFound(MediaError):
    """No media is stored for this recording (deleted, never archived, missing object)."""

    status = 404
    code = "media_not_found"


class MediaUnavailable(MediaError):
    """Storage or Twilio cannot be reached now."""

    status = 503
    code = "storage_unavailable"


class MediaIntegrityFailed(MediaError):
    """The stored file is not what Twilio wrote (failed tag, changed object): never served."""

    status = 409
    code = "media_integrity_failed"


class MediaRangeNotSatisfiable(MediaError):
    """The requested byte range lies outside the media."""

    status = 416
    code = "range_not_satisfiable"

    def __init__(self, message: str, *, size: int) -> None:
        super().__init__(message)
        self.size = size


@dataclass
class MediaBody:
    """What to send: bytes ``[start, end)`` of a ``size``-byte media file."""

    size: int
    start: int
    end: int
    content_type: str
    chunks: Iterator[bytes]
    partial: bool

    @property
    def length(self) -> int:
        """Bytes in this answer."""
        return self.end - self.start

    @property
    def content_range(self) -> str:
        """The ``Content-Range`` header value of a partial answer."""
        return f"bytes {self.start}-{self.end - 1}/{self.size}"


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The single byte range ``[start, end)`` a ``Range`` header asks for, or None for the whole
    file (no header, a malformed one, or several ranges, which RFC 9110 lets a server ignore).

    Raises :class:`MediaRangeNotSatisfiable` when the range starts past the end.
    """
    match = _RANGE.match((header or "").replace(" ", ""))
    if not match or match.group(1) == match.group(2) == "":
        return None
    first, last = match.groups()
    if first == "":  # the last N bytes
        suffix = int(last)
        if suffix == 0:
            raise MediaRangeNotSatisfiable("an empty suffix range", size=size)
        return max(size - suffix, 0), size
    start = int(first)
    end = size if last == "" else min(int(last) + 1, size)
    if last != "" and int(last) < start:
        return None  # syntactically invalid: ignored
    if start >= size:
        raise MediaRangeNotSatisfiable(f"byte {start} is past the end ({size})", size=size)
    return start, end


def content_type_for(key: str) -> str:
    """The media type a player needs, from the stored file's extension."""
    return CONTENT_TYPES.get(PurePosixPath(key).suffix.lower(), "application/octet-stream")


def media_open(*, recording: Recording, range_header: str | None = None) -> MediaBody:
    """Open a recording's media for playback, whole or the range ``range_header`` asks for."""
    if recording.integrity_state == IntegrityState.FAILED:
        raise MediaIntegrityFailed("this recording's file failed verification and is not served")
    if recording.is_encrypted:
        from recordings import encrypted_media

        return encrypted_media.encrypted_media_open(recording=recording, range_header=range_header)
    if recording.media_location == MediaLocation.TWILIO:
        return _twilio_media_open(recording, range_header)
    if recording.media_location not in (MediaLocation.S3, MediaLocation.LOCAL):
        raise MediaNotFound("no stored media is known for this recording")
    return _stored_media_open(recording, range_header)


def stored_object(recording: Recording) -> tuple[bool, str, str]:
    """``(local, bucket, key)`` of a recording's stored file, for ``storage`` calls."""
    if not recording.media_key:
        raise MediaNotFound("no stored media is known for this recording")
    return (
        recording.media_location == MediaLocation.LOCAL,
        recording.media_bucket,
        recording.media_key,
    )


def storage_errors_as_media_errors(exc: storage.StorageError) -> MediaError:
    """The media error to answer for a storage failure."""
    if isinstance(exc, storage.StorageNotFound):
        return MediaNotFound(str(exc))
    if isinstance(exc, storage.StorageChanged):
        return MediaIntegrityFailed(str(exc))
    return MediaUnavailable(str(exc))


def _stored_media_open(recording: Recording, range_header: str | None) -> MediaBody:
    local, bucket, key = stored_object(recording)
    try:
        stat = storage.object_stat(local=local, bucket=bucket, key=key)
    except storage.StorageError as exc:
        raise storage_errors_as_media_errors(exc) from None
    if "x-amz-key" in stat.metadata or "x-amz-key-v2" in stat.metadata:
        # Written by the S3 encryption client (Twilio Video): never served as it is stored.
        from recordings import encrypted_media

        return encrypted_media.envelope_media_open(
            recording=recording, stat=stat, range_header=range_header
        )
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


def _twilio_media_open(recording: Recording, range_header: str | None) -> MediaBody:
    """Proxy media still held by Twilio (not archived yet), passing the range through."""
    try:
        response = twilio_client.recording_media_fetch(
            sid=recording.sid,
            account_sid=recording.account_sid,
            channels=recording.channels,
            range_header=range_header,
        )
    except twilio_client.TwilioRejected as exc:
        if exc.status == 416:
            raise MediaRangeNotSatisfiable(str(exc), size=recording.media_size or 0) from None
        raise MediaNotFound(str(exc)) from None
    except twilio_client.TwilioError as exc:
        raise MediaUnavailable(str(exc)) from None
    return MediaBody(
        size=response.size,
        start=response.start,
        end=response.end,
        content_type="audio/wav",
        chunks=response.chunks,
        partial=response.partial,
    )
