"""What every way of reading a recording shares: the :class:`MediaBody` a player receives
(the whole file or one byte range), the errors that say how to answer when it cannot be
served, ``Range`` header parsing and content types.

The readers are ``recordings.media.plain`` and ``recordings.media.encrypted``;
``recordings.media.opener`` picks one for a recording.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from recordings.integrations import storage
from recordings.models import MediaLocation, Recording

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


_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")


def _digits(number: str) -> tuple[int, str]:
    """A decimal number's digits without leading zeros, with their count first: such tuples
    compare as the numbers do, however many digits they have."""
    digits = number.lstrip("0") or "0"
    return len(digits), digits


def _position(number: str, limit: int) -> int:
    """The byte position ``number`` names, or ``limit`` when it is larger (no file is that
    large). Python refuses to convert strings of thousands of digits, which a ``Range`` header
    may hold: a number longer than ``limit`` is never converted."""
    count, digits = _digits(number)
    if count > len(str(limit)):
        return limit
    return min(int(digits), limit)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The single byte range ``[start, end)`` a ``Range`` header asks for, or None for the whole
    file (no header, a malformed one, or several ranges, which RFC 9110 lets a server ignore).
    Positions past the end are cut to the end, however many digits they have.

    Raises :class:`MediaRangeNotSatisfiable` when the range starts past the end.
    """
    match = _RANGE.fullmatch((header or "").replace(" ", ""))
    if not match or match.group(1) == match.group(2) == "":
        return None
    first, last = match.groups()
    if first == "":  # the last N bytes
        suffix = _position(last, size)
        if suffix == 0:
            raise MediaRangeNotSatisfiable("an empty suffix range", size=size)
        return size - suffix, size
    if last != "" and _digits(last) < _digits(first):
        return None  # syntactically invalid: ignored
    start = _position(first, size)
    if start >= size:
        raise MediaRangeNotSatisfiable(f"the range starts past the end ({size})", size=size)
    end = size if last == "" else _position(last, size - 1) + 1
    return start, end


def content_type_for(key: str) -> str:
    """The media type a player needs, from the stored file's extension."""
    return CONTENT_TYPES.get(PurePosixPath(key).suffix.lower(), "application/octet-stream")


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
