"""Archive: copy a recording whose media Twilio holds into the customer's bucket, verify the copy,
and only then (when the account's :class:`~recordings.models.ArchivePolicy` says so) delete the
recording at Twilio.

The steps, each safe to repeat after a crash between any two of them:

1. **copy**: stream Twilio's media (both channels of a dual-channel recording, encrypted ones
   byte for byte) to ``{prefix}/{AccountSid}/{YYYY}/{MM}/{RecordingSid}.wav`` in constant
   memory, computing size and SHA-256 on the way. An object already at that key (a run that
   stopped after uploading) is adopted only when it holds exactly what Twilio serves; it is
   never uploaded a second time. A run marks the recording ``pending`` before its first
   upload, so a later run knows to look at the key first; a first run instead uploads on the
   condition that the key is empty (S3 checks it atomically), and an object put there by hand
   is looked at then.
2. **verify**: the ETag S3 answers for the stored object must be the MD5-based ETag computed
   while uploading. S3 computes that ETag over the bytes it received, so a match proves the
   stored object is the bytes (hence the size) whose SHA-256 we computed, without reading it
   back. When the bucket's ETags are not MD5-based (SSE-KMS), the object is read back and
   hashed, and its size and SHA-256 must be the ones computed.
3. **record** size, SHA-256, ETag, bucket and key on the recording and move it to
   ``media_location=s3``: from then on the portal plays the copy.
4. **delete at Twilio**, only for a recorded copy that a fresh ``HEAD`` still shows with the
   recorded size and ETag; Twilio's 404 means someone already did: done.

Twilio's failures follow the sync's rules: unavailable (5xx, 429, unreachable) is retried,
401/403/404 stop at once; the error is kept on the recording for the admin.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from recordings import jobs
from recordings.integrations import storage, twilio_api
from recordings.models import (
    ArchivePolicy,
    ArchiveState,
    IntegrityState,
    MediaLocation,
    Recording,
    RecordingStatus,
)

logger = logging.getLogger(__name__)

# Long enough for a large recording's transfer; a dead holder delays the next run this long.
ARCHIVE_LEASE_SECONDS = 30 * 60

# Statuses after which Twilio may still produce the media: worth asking again later.
_NOT_READY_STATUSES = {
    RecordingStatus.IN_PROGRESS,
    RecordingStatus.PAUSED,
    RecordingStatus.STOPPED,
    RecordingStatus.PROCESSING,
    "",
}


class ArchiveCode:
    """What :func:`recording_archive` did, as a short code."""

    COPIED = "copied"  # this run stored (uploaded, or adopted an identical object) the copy
    ALREADY_ARCHIVED = "already_archived"  # nothing to copy (a pending Twilio delete may be done)
    SKIPPED = "skipped"  # not for the archive: no policy, media not at Twilio, no media
    NOT_READY = "not_ready"  # Twilio has not finished the recording: try again later
    RETRY = "retry"  # Twilio or the storage is unavailable or refused: try again later
    FAILED = "failed"  # a final refusal (401/403/404) or a copy that must not be trusted
    BUSY = "busy"  # another worker holds the recording's archive lease and will finish it


@dataclass(frozen=True)
class ArchiveOutcome:
    """The result of one archive run for one recording."""

    code: str
    detail: str = ""
    bytes_copied: int = 0
    uploaded: bool = False
    deleted_at_twilio: bool = False
    attempts: int = 0

    @property
    def should_retry(self) -> bool:
        """True when running again later may succeed (Twilio down, storage refusing, not ready)."""
        return self.code in (ArchiveCode.RETRY, ArchiveCode.NOT_READY)


@dataclass(frozen=True)
class _StoredCopy:
    """A verified copy: its size and SHA-256 (of the bytes Twilio sent) and the ETag S3 gave it."""

    size: int
    sha256: str
    etag: str


class ArchiveMismatch(storage.StorageError):
    """The stored object is not the bytes read from Twilio (truncated or replaced)."""


def archive_policy_for(*, account_sid: str) -> ArchivePolicy | None:
    """The policy that governs an account: its own row, else the default (blank account)."""
    policies = {
        policy.account_sid: policy
        for policy in ArchivePolicy.objects.filter(account_sid__in=[account_sid, ""])
    }
    return policies.get(account_sid) or policies.get("")


def archive_enabled_for(*, account_sid: str) -> bool:
    """True when recordings of this account are archived (the sync asks before queueing)."""
    policy = archive_policy_for(account_sid=account_sid)
    return bool(policy and policy.enabled)


def archive_key(*, recording: Recording, prefix: str) -> str:
    """``{prefix}/{AccountSid}/{YYYY}/{MM}/{RecordingSid}.wav``; the month is the recording's
    start (else its creation at Twilio, else its arrival here) in UTC."""
    when = (recording.start_time or recording.date_created or recording.created_at).astimezone(UTC)
    parts = [part for part in prefix.strip("/").split("/") if part]
    parts += [recording.account_sid, f"{when:%Y}", f"{when:%m}", f"{recording.sid}.wav"]
    return "/".join(parts)


def recording_archive(*, recording_id: int) -> ArchiveOutcome:
    """Copy one recording's media from Twilio to its account's archive bucket, verify it,
    record it, and delete it at Twilio when the policy says so; idempotent.

    Never raises for Twilio or storage failures: they are recorded on the recording
    (``archive_state``, ``archive_error``, ``archive_attempts``) and answered as an outcome
    whose ``should_retry`` tells the caller whether to try again later.
    """
    with _lease(recording_id) as held:
        if not held:
            return ArchiveOutcome(ArchiveCode.BUSY, "another worker is archiving it right now")
        # Read under the lease, so it includes what a previous holder did.
        recording = Recording.objects.filter(pk=recording_id).first()
        if recording is None:
            return ArchiveOutcome(ArchiveCode.SKIPPED, "no such recording")
        if recording.soft_deleted_at is not None:
            # Retention is deleting it (recordings.lifecycle.retention): a copy would outlive that.
            return ArchiveOutcome(ArchiveCode.SKIPPED, "deleted by retention")
        policy = archive_policy_for(account_sid=recording.account_sid)
        if policy is None or not policy.enabled:
            return ArchiveOutcome(ArchiveCode.SKIPPED, "no enabled archive policy for the account")
        return _archive_steps(recording, policy)


@contextmanager
def _lease(recording_id: int) -> Iterator[bool]:
    """Whether this worker holds the recording's archive lease (one copier at a time).

    Without it, the task queued by a sync and ``archive_recordings`` (or the admin action)
    would both download and upload the same media. Duplicates would still be harmless (same
    key, same bytes; a second Twilio DELETE answers 404, which counts as done), so when the
    cache is down the work goes on without a lease. A worker that dies holding it delays the
    next run by at most ``ARCHIVE_LEASE_SECONDS``.
    """
    key = f"recordings:archive-lease:{recording_id}"
    token = uuid.uuid4().hex
    try:
        taken: bool | None = cache.add(key, token, timeout=ARCHIVE_LEASE_SECONDS)
    except Exception as exc:  # any cache failure means "no lease available", not "stop"
        logger.warning("archive lease unavailable (%s); going on without", type(exc).__name__)
        taken = None
    if taken is False:
        yield False
        return
    try:
        yield True
    finally:
        if taken:
            with contextlib.suppress(Exception):
                if cache.get(key) == token:
                    cache.delete(key)


def _archive_steps(recording: Recording, policy: ArchivePolicy) -> ArchiveOutcome:
    """The four steps, each skipped when a previous run already did it."""
    code, uploaded, size = ArchiveCode.ALREADY_ARCHIVED, False, 0
    if recording.archived_at is None:
        if recording.media_location != MediaLocation.TWILIO:
            return ArchiveOutcome(ArchiveCode.SKIPPED, "the media is not kept at Twilio")
        if recording.status in _NOT_READY_STATUSES:
            return _set_back(
                recording,
                ArchiveCode.NOT_READY,
                f"recording is {recording.status or 'not synced'} at Twilio; archived once "
                "completed",
            )
        if recording.status != RecordingStatus.COMPLETED:
            return ArchiveOutcome(ArchiveCode.SKIPPED, f"recording is {recording.status}")
        bucket = policy.bucket or settings.AWS_STORAGE_BUCKET_NAME
        key = archive_key(recording=recording, prefix=policy.key_prefix)
        try:
            if not bucket:
                raise storage.StorageNotFound(
                    "no bucket: set the archive policy's bucket or AWS_STORAGE_BUCKET_NAME"
                )
            stored, uploaded = _copy_and_verify(recording, bucket, key)
        except twilio_api.TwilioUnavailable as exc:
            return _set_back(recording, ArchiveCode.RETRY, f"Twilio unavailable: {exc}")
        except twilio_api.TwilioError as exc:
            return _fail(recording, _rejection_detail(exc))
        except storage.StorageError as exc:
            return _set_back(recording, ArchiveCode.RETRY, f"storage: {exc}")
        deleting = policy.delete_at_twilio_after_archive
        _record_copy(recording, bucket, key, stored, done=not deleting)
        code, size = ArchiveCode.COPIED, stored.size

    deleted = False
    if policy.delete_at_twilio_after_archive and recording.twilio_media_deleted_at is None:
        try:
            _delete_at_twilio(recording)
        except twilio_api.TwilioUnavailable as exc:
            return _set_back(recording, ArchiveCode.RETRY, f"delete at Twilio: {exc}")
        except twilio_api.TwilioError as exc:
            return _fail(recording, f"delete at Twilio refused: {exc}")
        except ArchiveMismatch as exc:
            return _fail(recording, f"not deleted at Twilio: {exc}")
        except storage.StorageError as exc:
            return _set_back(recording, ArchiveCode.RETRY, f"delete at Twilio postponed: {exc}")
        deleted = True
    finished = recording.archive_state == ArchiveState.ARCHIVED
    if not finished or recording.archive_error or recording.archive_attempts:
        _update(
            recording, archive_state=ArchiveState.ARCHIVED, archive_error="", archive_attempts=0
        )
    return ArchiveOutcome(code, bytes_copied=size, uploaded=uploaded, deleted_at_twilio=deleted)


def archive_give_up(*, recording_id: int, error: str) -> None:
    """Stop retrying a recording's archive: ``failed`` with the reason, shown in the admin (the
    admin action or ``archive_recordings`` tries again by hand, with a fresh retry budget)."""
    Recording.objects.filter(pk=recording_id).update(
        archive_state=ArchiveState.FAILED,
        archive_error=error[:2000],
        archive_attempts=0,
        updated_at=timezone.now(),
    )
    logger.error("gave up archiving recording %s: %s", recording_id, error)


def _media_chunks(recording: Recording) -> Iterator[bytes]:
    """Twilio's media for the recording, checked to end at the length Twilio announced."""
    media = twilio_api.recording_media_fetch(
        sid=recording.sid, account_sid=recording.account_sid, channels=recording.channels
    )
    read = 0
    for chunk in media.chunks:
        read += len(chunk)
        yield chunk
    if media.size and read != media.size:
        raise twilio_api.TwilioUnavailable(
            f"download {recording.sid}: {read} of {media.size} bytes before the connection ended"
        )


def _copy_and_verify(recording: Recording, bucket: str, key: str) -> tuple[_StoredCopy, bool]:
    """Steps 1 and 2: the verified stored copy, and whether this run uploaded it."""
    if recording.archive_state == ArchiveState.NONE:
        # No run has uploaded anything for it (each marks it pending first, durably): upload
        # without looking, on the condition that the key is empty.
        _update(recording, archive_state=ArchiveState.PENDING)
        try:
            return _upload_and_verify(recording, bucket, key, only_if_absent=True), True
        except storage.StorageObjectExists:
            # Nobody recorded this object (put there by hand): look at it, as a rerun does.
            pass
    adopted = _adopt_existing(recording, bucket, key)
    if adopted is not None:
        return adopted, False
    return _upload_and_verify(recording, bucket, key, only_if_absent=False), True


def _adopt_existing(recording: Recording, bucket: str, key: str) -> _StoredCopy | None:
    """The object already at ``key`` when it is exactly what Twilio serves (one more download,
    no second upload); None when there is none, or a different one (to be replaced)."""
    try:
        existing = storage.object_stat(local=False, bucket=bucket, key=key)
    except storage.StorageNotFound:
        return None
    wanted = storage.stream_digest(_media_chunks(recording))
    if existing.size == wanted.size and (
        existing.etag == wanted.expected_etag
        or storage.object_sha256(bucket=bucket, key=key, if_match=existing.etag)[1] == wanted.sha256
    ):
        logger.info("recording %s: identical copy already at %s, adopted", recording.sid, key)
        return _StoredCopy(wanted.size, wanted.sha256, existing.etag)
    logger.warning("recording %s: replacing a different object at %s", recording.sid, key)
    return None


def _upload_and_verify(
    recording: Recording, bucket: str, key: str, *, only_if_absent: bool
) -> _StoredCopy:
    """Upload Twilio's media to ``key`` and prove the stored object is the bytes read."""
    written = storage.object_write_stream(
        bucket=bucket,
        key=key,
        chunks=_media_chunks(recording),
        content_type="audio/x-wav",
        metadata={
            "twilio-recording-sid": recording.sid,
            "twilio-account-sid": recording.account_sid,
        },
        only_if_absent=only_if_absent,
    )
    if written.proven:
        # S3's ETag for what it stored is the MD5-based one computed over what was read from
        # Twilio: the same proof a HEAD would give, without asking S3 again.
        return _StoredCopy(written.size, written.sha256, written.etag)
    # Not an MD5-based ETag (SSE-KMS, a proxy): read the object back and hash it, pinned to
    # the object S3 just answered for (when it named one).
    etag = written.etag or storage.object_stat(local=False, bucket=bucket, key=key).etag
    size, sha256 = storage.object_sha256(bucket=bucket, key=key, if_match=etag)
    if (size, sha256) != (written.size, written.sha256):
        raise ArchiveMismatch(
            f"the stored object ({size} bytes) is not the {written.size} bytes Twilio sent"
        )
    return _StoredCopy(written.size, written.sha256, etag)


def _record_copy(
    recording: Recording, bucket: str, key: str, stored: _StoredCopy, *, done: bool
) -> None:
    """Step 3: the recording now plays from the verified copy; ``done`` (nothing to delete
    at Twilio) marks the archive finished in the same write."""
    now = timezone.now()
    finished = {"archive_state": ArchiveState.ARCHIVED} if done else {}
    # An unencrypted copy checked against the bytes Twilio sent is verified; an encrypted one
    # still gets its GCM tag checked (``verify_recording_media``) before it counts as such.
    encrypted = recording.encryption_type == "rsa-aes"
    _update(
        recording,
        media_location=MediaLocation.S3,
        media_bucket=bucket,
        media_key=key,
        media_size=stored.size,
        media_sha256=stored.sha256,
        media_etag=stored.etag,
        integrity_state=IntegrityState.UNVERIFIED if encrypted else IntegrityState.VERIFIED,
        integrity_checked_at=None if encrypted else now,
        integrity_error="",
        archived_at=now,
        archive_error="",
        archive_attempts=0,
        **finished,
    )
    if encrypted:
        # After the caller's commit when there is one (one UPDATE needs no transaction of its
        # own: autocommit makes it atomic, and on_commit then runs at once).
        recording_id = recording.pk
        transaction.on_commit(lambda: jobs.queue_media_verification(recording_id))
    else:
        # Verified now: its waveform can be computed (encrypted ones once their tag is checked).
        analysed_id = recording.pk
        transaction.on_commit(lambda: jobs.queue_recording_analysis(analysed_id))
    logger.info(
        "recording %s archived to s3://%s/%s (%s bytes)", recording.sid, bucket, key, stored.size
    )


def _delete_at_twilio(recording: Recording) -> None:
    """Step 4: delete at Twilio, only while the recorded copy is still in place."""
    stat = storage.object_stat(local=False, bucket=recording.media_bucket, key=recording.media_key)
    if stat.size != recording.media_size or stat.etag != recording.media_etag:
        raise ArchiveMismatch(
            f"the stored copy changed since it was verified (size {stat.size}, ETag {stat.etag})"
        )
    try:
        twilio_api.recording_delete(sid=recording.sid, account_sid=recording.account_sid)
    except twilio_api.TwilioRejected as exc:
        if exc.status != 404:
            raise
        logger.info("recording %s was already deleted at Twilio", recording.sid)
    _update(recording, twilio_media_deleted_at=timezone.now())


def _rejection_detail(exc: twilio_api.TwilioError) -> str:
    if exc.status == 404:
        return (
            f"Twilio has no media for this recording (404): it was deleted at Twilio outside "
            f"the portal, or never had media; nothing was copied ({exc})"
        )
    return f"Twilio refused ({exc.status}): {exc}"


def _set_back(recording: Recording, code: str, error: str) -> ArchiveOutcome:
    """Record a failure worth retrying; counts the attempt."""
    Recording.objects.filter(pk=recording.pk).update(
        archive_state=ArchiveState.PENDING,
        archive_error=error[:2000],
        archive_attempts=F("archive_attempts") + 1,
        updated_at=timezone.now(),
    )
    attempts = Recording.objects.values_list("archive_attempts", flat=True).get(pk=recording.pk)
    logger.warning("recording %s not archived yet (attempt %s): %s", recording.sid, attempts, error)
    return ArchiveOutcome(code, error, attempts=attempts)


def _fail(recording: Recording, error: str) -> ArchiveOutcome:
    """Record a final failure: shown in the admin, not retried by itself."""
    _update(recording, archive_state=ArchiveState.FAILED, archive_error=error[:2000])
    logger.error("recording %s not archived: %s", recording.sid, error)
    return ArchiveOutcome(ArchiveCode.FAILED, error)


def _update(recording: Recording, **fields: object) -> None:
    """One UPDATE of just these fields (never a full save that could undo a concurrent sync),
    mirrored on the instance."""
    fields["updated_at"] = timezone.now()
    Recording.objects.filter(pk=recording.pk).update(**fields)
    for name, value in fields.items():
        setattr(recording, name, value)
