"""Playing Twilio's encrypted recordings: verified once, then decrypted range by range.

**Voice** (``encryption_details.type == "rsa-aes"``, AES-256-GCM): authenticity comes from one
full GCM tag check of the stored object (:func:`media_verify`), made when the recording is synced
(task ``verify_recording_media``) or first played, and recorded on the recording with the
object's ETag, size and SHA-256. Every later read, whole or ranged, asks storage for that same
object (``If-Match``), so a changed object is refused rather than played: the recording goes
back to *unverified* and the next request checks the new object's tag before serving anything.
A tag that fails marks the recording *failed* (never served again), with an audit row.

**Video recordings and compositions** (the S3 encryption client's v1 envelope, AES-256-CBC):
objects whose metadata carries ``x-amz-key``. The envelope does not name the key, so the held
private keys are tried newest first; a key is accepted only when the unwrapped content key is 32
bytes, the final block's PKCS#7 padding is valid and agrees with
``x-amz-unencrypted-content-length``, and, for ``.mkv``/``.mka``/``.webm``/``.mp4``, the first
bytes are that container's signature. Which key opened which object is remembered in memory.
CBC carries no authentication: reads are pinned to the ETag seen in the same request, but a
modified object cannot be told from the original.

Memory stays flat: storage is read in 256 KiB pieces and plaintext leaves in pieces of the same
size, whatever the object's size. Content keys are cached in this process only, five minutes at
most (``keys.SecretCache``), so seeking costs no RSA unwrap per range. Errors are
:class:`~recordings.media.body.MediaError` subclasses with their own status and code; the media
endpoint answers and audits them. None of them carries key material.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import PurePosixPath

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from audit.services import access_log_append
from portal.logging import request_id_var
from recordings.custody import keys
from recordings.integrations import storage
from recordings.media import crypto
from recordings.media.body import (
    MediaBody,
    MediaError,
    MediaIntegrityFailed,
    MediaNotFound,
    MediaUnavailable,
    content_type_for,
    parse_range,
    storage_errors_as_media_errors,
    stored_object,
)
from recordings.models import IntegrityState, MediaLocation, Recording

logger = logging.getLogger(__name__)

CHUNK_SIZE = storage.READ_CHUNK
"""Pieces of plaintext handed to the response (the same size storage reads in)."""

VERIFY_ACTION = "media_verify"

ENVELOPE_ENCRYPTION_TYPE = "s3-envelope"
"""``Recording.encryption_type`` for media the S3 encryption client wrote (Twilio Video).
Marking such a recording encrypted sends its links through the portal (never a presigned URL
to ciphertext); objects with envelope metadata are decrypted even when unmarked."""


class MediaKeyUnavailable(MediaError):
    """The private key for this recording cannot be used: the portal holds none for the public
    key SID Twilio names, or the master key that sealed it is not configured.

    503, like storage being down: the recording itself is intact and becomes playable as soon
    as an operator imports the key (or configures the master key), so a later retry can succeed;
    and a 5xx is what monitoring should page on. Fails closed.
    """

    status = 503
    code = "decryption_key_unavailable"


class MediaKeyMismatch(MediaKeyUnavailable):
    """The private key held under the SID Twilio names does not open this recording's content
    key: it is not the key Twilio used (an operator imported the wrong file for that SID)."""

    code = "decryption_key_mismatch"


class MediaUndecryptable(MediaError):
    """The recording's encryption details are unusable (missing field, bad base64, an IV of the
    wrong size): 500 with its own code, since no retry or caller can fix stored data."""

    status = 500
    code = "encryption_details_invalid"


class MediaEncryptionUnsupported(MediaUndecryptable):
    """The recording uses an encryption ``type`` (or envelope) the portal does not know."""

    code = "encryption_unsupported"


class MediaChanged(MediaIntegrityFailed):
    """The stored object is not the one that was verified (its ETag changed): refused, and
    checked again on the next request."""

    code = "media_changed"


# (recording sid, SHA-256 of the wrapped key and IV) -> content key.
_voice_keys: keys.SecretCache[tuple[str, str], bytes] = keys.SecretCache(max_entries=512, ttl=300)
# (bucket, key, etag, SHA-256 of the wrapped key) -> (content key, plaintext length).
_video_keys: keys.SecretCache[tuple[str, str, str, str], tuple[bytes, int]] = keys.SecretCache(
    max_entries=512, ttl=300
)
# The same object identity -> id of the PrivateKey row that opened it (not a secret; kept
# longer so a cold content-key cache costs one unwrap, not one per held key).
_video_key_owner: keys.SecretCache[tuple[str, str, str, str], int] = keys.SecretCache(
    max_entries=4096, ttl=24 * 3600
)


def content_key_caches_clear() -> None:
    """Forget every cached content key in this process (e.g. after a private key was deleted)."""
    _voice_keys.clear()
    _video_keys.clear()
    _video_key_owner.clear()


# ---------------------------------------------------------------------------------------------
# Voice
# ---------------------------------------------------------------------------------------------


def voice_details(recording: Recording) -> crypto.VoiceEncryption:
    """A voice recording's parsed encryption details, or the ``MediaError`` that says why they
    cannot be used (unsupported type, missing or malformed field)."""
    if recording.encryption_type == "invalid":  # what the sync stores for non-JSON details
        raise MediaUndecryptable("the EncryptionDetails Twilio sent for it were not valid JSON")
    details = {
        "type": recording.encryption_type,
        "public_key_sid": recording.encryption_public_key_sid,
        "encrypted_cek": recording.encryption_cek,
        "iv": recording.encryption_iv,
    }
    try:
        return crypto.parse_voice_encryption_details(details)
    except crypto.UnsupportedEncryption as exc:
        raise MediaEncryptionUnsupported(str(exc)) from None
    except crypto.MalformedEncryptionDetails as exc:
        raise MediaUndecryptable(f"its encryption details are unusable: {exc}") from None


def _stored_location(recording: Recording) -> tuple[bool, str, str]:
    if recording.media_location not in (MediaLocation.S3, MediaLocation.LOCAL):
        raise MediaNotFound(
            "no stored file (S3 or the local folder) is known for this encrypted recording"
        )
    return stored_object(recording)


def voice_content_key(recording: Recording, details: crypto.VoiceEncryption) -> bytes:
    """A voice recording's content key, unwrapped with the private key held for the public key
    SID Twilio names (cached in this process, so seeking costs no RSA unwrap per range).
    Raises :class:`MediaKeyUnavailable` or :class:`MediaKeyMismatch`."""
    cache_key = (recording.sid, hashlib.sha256(details.wrapped_cek + details.iv).hexdigest())
    cek = _voice_keys.get(cache_key)
    if cek is not None:
        return cek
    try:
        private_key = keys.private_key_for(details.public_key_sid)
    except (keys.KeyNotFound, keys.KeyUnavailable) as exc:
        raise MediaKeyUnavailable(str(exc)) from None
    try:
        cek = crypto.unwrap_voice_cek(private_key, details.wrapped_cek)
    except crypto.WrongKey:
        raise MediaKeyMismatch(
            f"the private key held for {details.public_key_sid} does not open this recording: "
            "it is not the key Twilio encrypted it for"
        ) from None
    _voice_keys.put(cache_key, cek)
    return cek


def _pinned_reader(local: bool, bucket: str, key: str, etag: str) -> crypto.RangeReader:
    """A range reader over exactly the object with ``etag`` (storage refuses any other)."""

    def read_range(start: int, end: int) -> Iterator[bytes]:
        return storage.object_read(
            local=local, bucket=bucket, key=key, start=start, end=end, if_match=etag
        )

    return read_range


def integrity_record(recording: Recording, **fields: object) -> None:
    """Write integrity fields with one UPDATE (never a full save that could undo a concurrent
    sync) and mirror them on the instance."""
    fields["updated_at"] = timezone.now()
    Recording.objects.filter(pk=recording.pk).update(**fields)
    for name, value in fields.items():
        setattr(recording, name, value)


def _is_verified(recording: Recording) -> bool:
    return (
        recording.integrity_state == IntegrityState.VERIFIED
        and bool(recording.media_etag)
        and recording.media_size is not None
    )


def media_verify(*, recording: Recording) -> Recording:
    """Check an encrypted voice recording's whole stored object against its GCM tag, and record
    the result on the recording.

    Streams the object once (constant memory) from storage, pinned to the ETag that ``HEAD``
    reported, through AES-GCM to the tag. On success the recording is ``verified`` with that
    ETag, the stored size, the object's SHA-256 and the time. On a tag mismatch (tampered,
    truncated or extended object) it is ``failed`` with the reason, never served again, an
    audit row (``media_verify``, ``error``) is written, and :class:`MediaIntegrityFailed` is
    raised. Key, details and storage problems raise their own ``MediaError`` and record nothing.
    """
    details = voice_details(recording)
    local, bucket, key = _stored_location(recording)
    cek = voice_content_key(recording, details)
    try:
        stat = storage.object_stat(local=local, bucket=bucket, key=key)
    except storage.StorageError as exc:
        raise storage_errors_as_media_errors(exc) from None
    read = _pinned_reader(local, bucket, key, stat.etag)
    digest = hashlib.sha256()

    def hashing_reader(start: int, end: int) -> Iterator[bytes]:
        for chunk in read(start, end):
            digest.update(chunk)
            yield chunk

    try:
        crypto.verify_gcm_tag(cek, details.iv, hashing_reader, stat.size, chunk_size=CHUNK_SIZE)
    except crypto.TamperedMedia as exc:
        media_verify_failed(recording, size=stat.size, etag=stat.etag, error=str(exc))
        raise MediaIntegrityFailed(
            "the stored file is not what Twilio encrypted (GCM tag check failed); it is not "
            "served and the recording is flagged"
        ) from None
    except storage.StorageChanged:
        raise MediaChanged("the stored file changed while it was being verified") from None
    except storage.StorageError as exc:
        raise storage_errors_as_media_errors(exc) from None
    integrity_record(
        recording,
        integrity_state=IntegrityState.VERIFIED,
        integrity_checked_at=timezone.now(),
        integrity_error="",
        media_etag=stat.etag,
        media_size=stat.size,
        media_sha256=digest.hexdigest(),
    )
    return recording


def media_verify_failed(recording: Recording, *, size: int, etag: str, error: str) -> None:
    """Flag a voice recording whose file of ``size`` bytes (ETag ``etag``, when its store gives
    one) failed the GCM tag check: ``failed`` on the recording, never served again, with a
    ``media_verify`` audit row and an error log line."""
    integrity_record(
        recording,
        integrity_state=IntegrityState.FAILED,
        integrity_checked_at=timezone.now(),
        integrity_error=error[:2000],
        media_etag=etag,
        media_size=size,
        media_sha256="",
    )
    request_id = request_id_var.get()
    access_log_append(
        action=VERIFY_ACTION,
        outcome="error",
        reason_code="media_tampered",
        recording_sid=recording.sid,
        request_id="" if request_id == "-" else request_id,
        detail={"error": error[:300], "stored_size": size, "etag": etag[:128]},
    )
    logger.error("recording %s failed verification: %s", recording.sid, error)


def integrity_reset(
    recording: Recording, *, pinned: Q, pin_field: str, error: str, where: str
) -> None:
    """The verified file was replaced: back to unverified, so the next request verifies the
    file now there before serving any of it (an unchanged tag means the same recording; a
    tampered one fails and is flagged). Only a recording still verified and still ``pinned``
    to the file that changed is reset (a concurrent request may have done it already);
    ``pin_field`` (the ETag, or the SHA-256) is forgotten with it."""
    updated = Recording.objects.filter(
        pinned, pk=recording.pk, integrity_state=IntegrityState.VERIFIED
    ).update(
        integrity_state=IntegrityState.UNVERIFIED,
        integrity_error=error,
        updated_at=timezone.now(),
        **{pin_field: ""},
    )
    if updated:
        recording.integrity_state = IntegrityState.UNVERIFIED
        setattr(recording, pin_field, "")
    logger.warning("recording %s: %s changed after verification", recording.sid, where)


def _mark_changed(recording: Recording, etag: str) -> None:
    integrity_reset(
        recording,
        pinned=Q(media_etag=etag),
        pin_field="media_etag",
        error=f"the stored file changed after verification (was ETag {etag[:80]})",
        where="stored file",
    )


def _voice_guard(chunks: Iterator[bytes], recording: Recording, etag: str) -> Iterator[bytes]:
    try:
        yield from chunks
    except storage.StorageChanged:
        _mark_changed(recording, etag)
        raise MediaChanged(
            "the stored file changed since it was verified; it is not served until checked again"
        ) from None
    except storage.StorageError as exc:
        raise storage_errors_as_media_errors(exc) from None
    except crypto.TamperedMedia as exc:
        # With If-Match, storage returning fewer bytes than asked means the read broke off.
        raise MediaUnavailable(f"reading the stored file broke off: {exc}") from None


def _voice_content_type(key: str) -> str:
    known = content_type_for(key)
    return "audio/wav" if known == "application/octet-stream" else known


def encrypted_media_open(*, recording: Recording, range_header: str | None) -> MediaBody:
    """Open an encrypted voice recording for playback, whole or the range asked for.

    Verifies the stored object first if that was never done (or it changed since), then
    decrypts just the requested range of the verified object, read under ``If-Match``. Sizes
    and ranges are of the plaintext (the stored size minus the 16-byte tag), so a range that
    starts in the tag or past the end is 416. The first piece is read before returning, so a
    missing, changed or unreachable object is an error answer, not a broken stream.
    """
    if recording.integrity_state == IntegrityState.FAILED:
        raise MediaIntegrityFailed("this recording's file failed verification and is not served")
    if recording.encryption_type == ENVELOPE_ENCRYPTION_TYPE:
        return _envelope_recording_open(recording, range_header)
    details = voice_details(recording)
    local, bucket, key = _stored_location(recording)
    if not _is_verified(recording):
        media_verify(recording=recording)
    cek = voice_content_key(recording, details)
    size = recording.media_size or 0
    try:
        plaintext_len = crypto.voice_plaintext_length(size)
    except crypto.TamperedMedia as exc:  # pragma: no cover - a verified object has a tag
        raise MediaIntegrityFailed(str(exc)) from None
    wanted = parse_range(range_header, plaintext_len)
    start, end = wanted or (0, plaintext_len)
    etag = recording.media_etag
    chunks = crypto.voice_decrypt_range(
        cek,
        details.iv,
        _pinned_reader(local, bucket, key, etag),
        start,
        end,
        plaintext_len,
        chunk_size=CHUNK_SIZE,
    )
    return MediaBody(
        size=plaintext_len,
        start=start,
        end=end,
        content_type=_voice_content_type(key),
        chunks=primed(_voice_guard(chunks, recording, etag)),
        partial=wanted is not None,
    )


# ---------------------------------------------------------------------------------------------
# Video recordings and compositions (S3 encryption client v1 envelope)
# ---------------------------------------------------------------------------------------------

_EBML = b"\x1a\x45\xdf\xa3"
# Extension -> (offset, signature) of the container's first bytes.
_CONTAINER_SIGNATURES: dict[str, tuple[int, bytes]] = {
    ".mkv": (0, _EBML),
    ".mka": (0, _EBML),
    ".webm": (0, _EBML),
    ".mp4": (4, b"ftyp"),
}


def _container_matches(
    key: str, cek: bytes, iv: bytes, read: crypto.RangeReader, size: int, plaintext_len: int
) -> bool:
    signature = _CONTAINER_SIGNATURES.get(PurePosixPath(key).suffix.lower())
    if signature is None:
        return True
    offset, magic = signature
    stop = offset + len(magic)
    if plaintext_len < stop:
        return False
    try:
        head = b"".join(crypto.video_decrypt_range(cek, iv, read, 0, stop, plaintext_len, size))
    except crypto.TamperedMedia:
        return False
    return head[offset:] == magic


def _video_content_key(
    envelope: crypto.VideoEnvelope,
    stat: storage.StoredObject,
    location: tuple[bool, str, str],
    read: crypto.RangeReader,
) -> tuple[bytes, int]:
    """The content key and plaintext length of an envelope-encrypted object: from the cache, or
    by trying the held private keys (the one that opened it before first)."""
    _, bucket, key = location
    identity = (
        bucket or settings.AWS_STORAGE_BUCKET_NAME or "",
        key,
        stat.etag,
        hashlib.sha256(envelope.wrapped_cek).hexdigest(),
    )
    cached = _video_keys.get(identity)
    if cached is not None:
        return cached
    held = keys.private_keys_held()
    if not held:
        raise MediaKeyUnavailable("the portal holds no private key to open this recording")
    owner = _video_key_owner.get(identity)
    held.sort(key=lambda item: item[0] != owner)  # stable: the known owner first
    for row_id, private_key in held:
        try:
            cek = crypto.unwrap_video_cek(private_key, envelope.wrapped_cek)
            plaintext_len = crypto.video_plaintext_length(cek, envelope.iv, read, stat.size)
            expected = envelope.unencrypted_content_length
            if expected is not None and expected != plaintext_len:
                continue
            if not _container_matches(key, cek, envelope.iv, read, stat.size, plaintext_len):
                continue
        except (crypto.WrongKey, crypto.TamperedMedia):
            continue
        except storage.StorageChanged:
            raise MediaChanged("the stored file changed while it was being opened") from None
        except storage.StorageError as exc:
            raise storage_errors_as_media_errors(exc) from None
        _video_keys.put(identity, (cek, plaintext_len))
        _video_key_owner.put(identity, row_id)
        keys.private_key_mark_used(private_key_id=row_id)
        return cek, plaintext_len
    raise MediaKeyUnavailable(
        f"none of the {len(held)} private keys the portal holds opens this recording "
        "(or its file is damaged)"
    )


def _envelope_recording_open(recording: Recording, range_header: str | None) -> MediaBody:
    local, bucket, key = _stored_location(recording)
    try:
        stat = storage.object_stat(local=local, bucket=bucket, key=key)
    except storage.StorageError as exc:
        raise storage_errors_as_media_errors(exc) from None
    return envelope_media_open(recording=recording, stat=stat, range_header=range_header)


def _video_guard(chunks: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield from chunks
    except storage.StorageChanged:
        raise MediaChanged("the stored file changed while it was being read") from None
    except storage.StorageError as exc:
        raise storage_errors_as_media_errors(exc) from None
    except crypto.TamperedMedia as exc:
        raise MediaIntegrityFailed(f"the stored file does not decrypt cleanly: {exc}") from None


def envelope_media_open(
    *, recording: Recording, stat: storage.StoredObject, range_header: str | None
) -> MediaBody:
    """Open an object the S3 encryption client wrote (Twilio Video recordings and
    compositions), whole or the range asked for, decrypted.

    ``stat`` is the object's ``HEAD`` (its metadata holds the envelope); every read is pinned
    to its ETag. Sizes and ranges are of the plaintext. The content type comes from the
    extension (``.mka``, ``.mkv``, ``.mp4``, ``.webm``).
    """
    try:
        envelope = crypto.parse_video_envelope(stat.metadata)
    except crypto.UnsupportedEncryption as exc:
        raise MediaEncryptionUnsupported(str(exc)) from None
    except crypto.MalformedEncryptionDetails as exc:
        raise MediaUndecryptable(f"its encryption envelope is unusable: {exc}") from None
    location = stored_object(recording)
    local, bucket, key = location
    if stat.size < 16 or stat.size % 16:
        raise MediaIntegrityFailed(
            f"the stored file is {stat.size} bytes, not whole AES blocks: truncated or damaged"
        )
    read = _pinned_reader(local, bucket, key, stat.etag)
    cek, plaintext_len = _video_content_key(envelope, stat, location, read)
    wanted = parse_range(range_header, plaintext_len)
    start, end = wanted or (0, plaintext_len)
    try:
        chunks = crypto.video_decrypt_range(
            cek,
            envelope.iv,
            read,
            start,
            end,
            plaintext_len,
            stat.size,
            chunk_size=CHUNK_SIZE,
        )
    except crypto.MalformedEncryptionDetails as exc:
        raise MediaUndecryptable(f"its encryption envelope is unusable: {exc}") from None
    return MediaBody(
        size=plaintext_len,
        start=start,
        end=end,
        content_type=content_type_for(key),
        chunks=primed(_video_guard(chunks)),
        partial=wanted is not None,
    )


# ---------------------------------------------------------------------------------------------
# Shared
# ---------------------------------------------------------------------------------------------


def primed(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Read the first piece now, so that failures before any byte (changed or missing object,
    storage down) raise here and become a proper error answer instead of a cut-off 200."""
    try:
        first = next(chunks)
    except StopIteration:
        return iter(())
    return _prepend(first, chunks)


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield first
        yield from rest
    finally:
        close = getattr(rest, "close", None)
        if close is not None:
            close()
