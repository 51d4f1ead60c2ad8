"""Playing encrypted voice recordings that Twilio still holds: verified once from Twilio, then
decrypted range by range from Twilio.

Accounts can have Twilio encrypt recordings with their public key without external storage:
the media stays at Twilio (``media_location=twilio``) as AES-256-GCM ``ciphertext || tag``,
served only as ``.wav``. The portal plays them the way it plays stored ones
(``recordings.media.encrypted``): one full GCM tag check, recorded on the recording (state,
time, size and SHA-256 of Twilio's file; ``media_etag`` stays empty), then each range the player
asks for is fetched from Twilio with ``Range`` and decrypted with AES-CTR from its offset (GCM's
keystream), in constant memory. Twilio is asked only for plaintext bytes, never the tag.

**Why ranges from Twilio and no copy kept by the portal.** The archive policy
(``recordings.lifecycle.archive``) already is the way to keep a copy: it copies Twilio's bytes
to the customer's bucket, verifies the copy, moves the recording to ``media_location=s3``, and
from then on it plays from storage, pinned by ETag. An account without an archive policy has
chosen to keep its recordings at Twilio only; a copy made silently by playback would be a second
store of recordings that retention, legal holds and deletions at Twilio would all have to reach,
in a bucket nobody chose. So a recording at Twilio plays from Twilio, and archiving it later
needs nothing from this module.

**What is pinned.** A completed recording's media does not change at Twilio; each range answer
must still say the file is the size that was verified (``Content-Range``'s total, or the
``Content-Length`` of a whole-file answer), or it is refused as changed and the file is checked
again in full before anything more is served. Twilio's ETags are not used: whether its media
answers carry stable ones is unconfirmed, and a pin that misfired would make every such
recording unplayable. As for any CTR range, the bytes of one range are not authenticated on
their own; the trust is the verified file, its size, and TLS to Twilio.

**Before a link is handed out** url_provider calls :func:`twilio_voice_check`, so it never
answers a link that cannot work: the private key must be held and open the content key, the
file must have passed its tag check (checked now the first time, which downloads it once), and
Twilio must still have it (a one-byte range request, which also checks its size). Each failure
is a :class:`~recordings.media.body.MediaError` naming its cause.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator

from django.db.models import Q
from django.utils import timezone

from recordings.integrations import twilio_api
from recordings.media import crypto
from recordings.media.body import (
    MediaBody,
    MediaError,
    MediaIntegrityFailed,
    MediaNotFound,
    MediaUnavailable,
    parse_range,
)
from recordings.media.encrypted import (
    CHUNK_SIZE,
    MediaChanged,
    integrity_record,
    integrity_reset,
    media_verify_failed,
    primed,
    voice_content_key,
    voice_details,
)
from recordings.models import IntegrityState, Recording

logger = logging.getLogger(__name__)

CONTENT_TYPE = "audio/wav"
"""Encrypted voice recordings are only served by Twilio as ``.wav`` (Twilio error 16109)."""

# What the check and the reader need beyond the fields url_provider loads.
_MEDIA_FIELDS = (
    "channels",
    "encryption_type",
    "encryption_public_key_sid",
    "encryption_cek",
    "encryption_iv",
    "integrity_state",
    "media_size",
    "media_sha256",
)


def _twilio_errors_as_media_errors(exc: twilio_api.TwilioError) -> MediaError:
    """The media error to answer for a failed request for a recording's media at Twilio."""
    if isinstance(exc, twilio_api.TwilioRejected) and exc.status in (404, 410):
        return MediaNotFound(
            "Twilio has no media for this recording (deleted at Twilio, or it never had any)"
        )
    if isinstance(exc, twilio_api.TwilioRejected):
        return MediaUnavailable(f"Twilio refused the recording's media: {exc}")
    return MediaUnavailable(f"Twilio did not serve the recording's media: {exc}")


def _fetch(recording: Recording, range_header: str | None) -> twilio_api.TwilioMedia:
    """Ask Twilio for the recording's ``.wav`` (both channels of a dual-channel recording, as the
    archive copies it), whole or one range."""
    try:
        return twilio_api.recording_media_fetch(
            sid=recording.sid,
            account_sid=recording.account_sid,
            channels=recording.channels,
            range_header=range_header,
            fmt="wav",
        )
    except twilio_api.TwilioError as exc:
        raise _twilio_errors_as_media_errors(exc) from None


def _close(chunks: Iterator[bytes]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


def _abandon(media: twilio_api.TwilioMedia) -> None:
    """Let go of a Twilio answer that will not be read (or not to its end). Its stream closes
    the connection only once started, so at most one piece of it is read first."""
    with contextlib.suppress(twilio_api.TwilioError):
        next(media.chunks, None)
    _close(media.chunks)


def _is_verified(recording: Recording) -> bool:
    return (
        recording.integrity_state == IntegrityState.VERIFIED
        and recording.media_size is not None
        and bool(recording.media_sha256)
    )


def twilio_voice_verify(*, recording: Recording) -> Recording:
    """Download an encrypted voice recording from Twilio once, check it against its GCM tag,
    and record the result on the recording.

    Streams the file (constant memory), hashing it on the way. On success the recording is
    ``verified`` with Twilio's size, the file's SHA-256 and the time. A tag mismatch marks it
    ``failed`` (never served again) with a ``media_verify`` audit row, and raises
    :class:`MediaIntegrityFailed`. A download that breaks off, or Twilio down, raises
    :class:`MediaUnavailable` and records nothing; no media at Twilio raises
    :class:`MediaNotFound`; key and details problems raise their own ``MediaError``.
    """
    details = voice_details(recording)
    cek = voice_content_key(recording, details)
    media = _fetch(recording, None)
    size = media.size
    if size <= 0:
        _abandon(media)
        raise MediaUnavailable("Twilio did not say how large the recording's file is")
    digest = hashlib.sha256()

    def whole_file(start: int, end: int) -> Iterator[bytes]:
        # verify_gcm_tag asks once, for [0, size): the answer already streaming.
        read = 0
        for chunk in media.chunks:
            read += len(chunk)
            digest.update(chunk)
            yield chunk
        if read < size:
            raise twilio_api.TwilioUnavailable(
                f"download {recording.sid}: {read} of {size} bytes before the connection ended"
            )

    try:
        crypto.verify_gcm_tag(cek, details.iv, whole_file, size, chunk_size=CHUNK_SIZE)
    except crypto.TamperedMedia as exc:
        media_verify_failed(recording, size=size, etag="", error=str(exc))
        raise MediaIntegrityFailed(
            "the recording's file at Twilio is not what Twilio encrypted (GCM tag check "
            "failed); it is not served and the recording is flagged"
        ) from None
    except twilio_api.TwilioError as exc:
        raise _twilio_errors_as_media_errors(exc) from None
    integrity_record(
        recording,
        integrity_state=IntegrityState.VERIFIED,
        integrity_checked_at=timezone.now(),
        integrity_error="",
        media_etag="",
        media_size=size,
        media_sha256=digest.hexdigest(),
    )
    return recording


def _mark_changed(recording: Recording, size: int | None, seen: str) -> MediaChanged:
    """Twilio answered for a file that is not the one verified: back to unverified (so the next
    request checks it in full before serving any of it); answers the error to raise."""
    integrity_reset(
        recording,
        pinned=Q(media_size=size) if size is not None else Q(media_size__isnull=True),
        pin_field="media_sha256",
        error=f"Twilio's file changed after verification ({seen}; was {size} bytes)",
        where="Twilio's file",
    )
    return MediaChanged(
        "the recording's file at Twilio is not the one that was verified; it is not served "
        "until checked again"
    )


def _pinned_twilio_reader(recording: Recording) -> crypto.RangeReader:
    """A range reader over Twilio's file for the recording, refusing any answer whose file is
    not the verified size. A Twilio that ignores ``Range`` (a whole-file 200) is read and cut
    to the range."""
    size = recording.media_size

    def read_range(start: int, end: int) -> Iterator[bytes]:
        media = _fetch(recording, f"bytes={start}-{end - 1}")
        if media.partial and (media.start, media.end, media.size) == (start, end, size):
            return media.chunks
        if not media.partial and media.size == size:
            return _cut(media.chunks, start, end)
        _abandon(media)
        seen = f"asked for bytes {start}-{end - 1}, got {media.start}-{media.end - 1}/{media.size}"
        raise _mark_changed(recording, size, seen)

    return read_range


def _cut(chunks: Iterator[bytes], start: int, end: int) -> Iterator[bytes]:
    """Bytes ``[start, end)`` of a whole file streamed in ``chunks``; stops reading at ``end``."""
    position = 0
    try:
        for chunk in chunks:
            low, high = max(start - position, 0), min(end - position, len(chunk))
            position += len(chunk)
            if low < high:
                yield chunk[low:high]
            if position >= end:
                return
    finally:
        _close(chunks)


def _guarded(chunks: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield from chunks
    except twilio_api.TwilioError as exc:
        raise _twilio_errors_as_media_errors(exc) from None
    except crypto.TamperedMedia as exc:
        # Twilio sent fewer bytes than the range it announced: the read broke off.
        raise MediaUnavailable(f"reading the recording from Twilio broke off: {exc}") from None


def twilio_voice_open(*, recording: Recording, range_header: str | None) -> MediaBody:
    """Open an encrypted voice recording held by Twilio, whole or the range asked for.

    Verifies Twilio's file first if that was never done (or it changed since), then fetches
    just the requested range from Twilio and decrypts it. Sizes and ranges are of the
    plaintext (Twilio's size minus the 16-byte tag), so a range that starts past the end is 416.
    The first piece is read before returning, so Twilio down or the media gone is an error
    answer, not a broken stream.
    """
    if recording.integrity_state == IntegrityState.FAILED:
        raise MediaIntegrityFailed("this recording's file failed verification and is not served")
    details = voice_details(recording)
    if not _is_verified(recording):
        twilio_voice_verify(recording=recording)
    cek = voice_content_key(recording, details)
    try:
        plaintext_len = crypto.voice_plaintext_length(recording.media_size or 0)
    except crypto.TamperedMedia as exc:  # pragma: no cover - a verified file has a tag
        raise MediaIntegrityFailed(str(exc)) from None
    wanted = parse_range(range_header, plaintext_len)
    start, end = wanted or (0, plaintext_len)
    chunks = crypto.voice_decrypt_range(
        cek,
        details.iv,
        _pinned_twilio_reader(recording),
        start,
        end,
        plaintext_len,
        chunk_size=CHUNK_SIZE,
    )
    return MediaBody(
        size=plaintext_len,
        start=start,
        end=end,
        content_type=CONTENT_TYPE,
        chunks=primed(_guarded(chunks)),
        partial=wanted is not None,
    )


def twilio_voice_check(*, recording: Recording) -> None:
    """Raise the ``MediaError`` that would stop an encrypted voice recording held by Twilio from
    playing, so that url_provider answers it instead of a link that cannot work.

    In this order, so that nothing is downloaded for a recording that could not be decrypted:
    a file that failed verification; unusable encryption details; no private key for its
    public key SID, or not the key Twilio used; then, the first time, the full tag check
    (:func:`twilio_voice_verify`, one download); later, a one-byte range request showing that
    Twilio still has the file at the verified size (a different size is checked again in full).
    """
    recording.refresh_from_db(fields=list(_MEDIA_FIELDS))
    if recording.integrity_state == IntegrityState.FAILED:
        raise MediaIntegrityFailed(
            "this recording's file failed its GCM tag check at Twilio and is never served"
        )
    voice_content_key(recording, voice_details(recording))
    if _is_verified(recording):
        probe = _fetch(recording, "bytes=0-0")
        _abandon(probe)
        if probe.size == recording.media_size:
            return
        _mark_changed(recording, recording.media_size, f"Twilio now says {probe.size} bytes")
    twilio_voice_verify(recording=recording)
