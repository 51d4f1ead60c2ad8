"""Archiving recordings from Twilio to the customer's bucket (``recordings.lifecycle.archive``),
against the fake Twilio and moto's S3 over real HTTP: the copy and its verification, every crash
boundary, the faults, the task, the sync's hook, the bulk command and the admin."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from recordings import jobs, tasks
from recordings.ingest import sync
from recordings.integrations import storage, twilio_api
from recordings.lifecycle import archive
from recordings.models import (
    ArchivePolicy,
    ArchiveState,
    IntegrityState,
    MediaLocation,
    Recording,
)
from recordings.tests.callbacks import new_sid

pytestmark = pytest.mark.django_db

START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
BUCKET = "portal-test-recordings"


def wav(size: int, seed: bytes = b"") -> bytes:
    """``size`` bytes that start like a WAV file and differ from one seed to another."""
    block = hashlib.sha256(seed or new_sid("RE").encode()).digest() * 2048
    body = (block * (size // len(block) + 1))[: max(size - 12, 0)]
    return (b"RIFF\x00\x00\x00\x00WAVE" + body)[:size]


def synced(fake, *, media: bytes | None = None, status: str = "completed", **fields) -> Recording:
    """A recording at the fake Twilio, synced into the portal (media at Twilio)."""
    sid = new_sid("RE")
    fields.setdefault("channels", 2)
    fields.setdefault("start_time", START)
    fake.add_recording(sid, media=wav(2048) if media is None else media, status=status, **fields)
    return sync.recording_sync(sid=sid)


@pytest.fixture
def policy(s3, fake_twilio) -> ArchivePolicy:
    """The default policy: archive every account to the test bucket, keep Twilio's copy."""
    return ArchivePolicy.objects.create(account_sid="", key_prefix="archive")


def keys_passed_to(monkeypatch, name: str) -> list[str]:
    """The keys ``storage.<name>`` is called with from now on, in order (the call still runs)."""
    seen: list[str] = []
    real = getattr(storage, name)

    def counting(**kwargs):
        seen.append(kwargs["key"])
        return real(**kwargs)

    monkeypatch.setattr(storage, name, counting)
    return seen


@pytest.fixture
def uploads(monkeypatch) -> list[str]:
    """Keys uploaded through ``storage.object_write_stream``, in order."""
    return keys_passed_to(monkeypatch, "object_write_stream")


def stored_bytes(s3, key: str, bucket: str = BUCKET) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def deletes(fake, sid: str) -> int:
    return fake.count("DELETE", f"/Recordings/{sid}")


# --- the copy -----------------------------------------------------------------------------------


def test_copies_dual_channel_media_verifies_and_records_it(s3, fake_twilio, policy, uploads):
    media = wav(50_000)
    recording = synced(fake_twilio, media=media)

    outcome = archive.recording_archive(recording_id=recording.pk)

    key = f"archive/{recording.account_sid}/2026/11/{recording.sid}.wav"
    assert (outcome.code, outcome.bytes_copied, outcome.uploaded) == ("copied", 50_000, True)
    assert not outcome.deleted_at_twilio
    assert stored_bytes(s3, key) == media
    recording.refresh_from_db()
    assert recording.media_location == MediaLocation.S3
    assert (recording.media_bucket, recording.media_key) == (BUCKET, key)
    assert recording.media_size == len(media)
    assert recording.media_sha256 == hashlib.sha256(media).hexdigest()
    assert recording.media_etag == s3.head_object(Bucket=BUCKET, Key=key)["ETag"]
    assert recording.integrity_state == IntegrityState.VERIFIED
    assert recording.archive_state == ArchiveState.ARCHIVED
    assert recording.archived_at is not None
    assert recording.twilio_media_deleted_at is None
    # Both channels were asked for; Twilio keeps its copy (the policy's default).
    downloads = [r for r in fake_twilio.requests if r.path.endswith(f"{recording.sid}.wav")]
    assert [r.query.get("RequestedChannels") for r in downloads] == ["2"]
    assert fake_twilio.get_media(recording.sid) == media
    # Running again changes nothing and costs no Twilio or S3 write.
    again = archive.recording_archive(recording_id=recording.pk)
    assert again.code == "already_archived"
    assert uploads == [key]
    assert deletes(fake_twilio, recording.sid) == 0


def test_mono_recording_is_fetched_without_requested_channels(s3, fake_twilio, policy):
    recording = synced(fake_twilio, channels=1)
    assert archive.recording_archive(recording_id=recording.pk).code == "copied"
    (download,) = [r for r in fake_twilio.requests if r.path.endswith(f"{recording.sid}.wav")]
    assert "RequestedChannels" not in download.query


def test_large_recording_goes_up_in_parts_verified_by_etag_without_reading_back(
    s3, fake_twilio, policy, monkeypatch
):
    media = wav(storage.UPLOAD_PART_SIZE + 300_000)
    recording = synced(fake_twilio, media=media)

    def no_read_back(**kwargs):
        raise AssertionError("the multipart ETag should have proven the copy")

    monkeypatch.setattr(storage, "object_sha256", no_read_back)
    assert archive.recording_archive(recording_id=recording.pk).code == "copied"

    recording.refresh_from_db()
    assert recording.media_etag.endswith('-2"')  # two parts
    assert recording.media_sha256 == hashlib.sha256(media).hexdigest()
    assert stored_bytes(s3, recording.media_key) == media
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_etag_that_is_not_an_md5_is_checked_by_reading_the_object_back(
    s3, fake_twilio, policy, monkeypatch
):
    """SSE-KMS buckets answer ETags that are not MD5s (to the upload and to a HEAD alike): the
    copy is then hashed from S3."""
    recording = synced(fake_twilio)
    real_stat, real_write = storage.object_stat, storage.object_write_stream
    read_back: list[str] = []

    def kms_like_stat(**kwargs):
        found = real_stat(**kwargs)
        return storage.StoredObject(found.size, '"kms-etag"', found.content_type, found.metadata)

    def kms_like_write(**kwargs):
        return dataclasses.replace(real_write(**kwargs), etag='"kms-etag"')

    def sha(*, bucket: str, key: str, if_match: str = ""):
        read_back.append(key)
        size = real_stat(local=False, bucket=bucket, key=key).size
        data = b"".join(storage.object_read(local=False, bucket=bucket, key=key, start=0, end=size))
        return len(data), hashlib.sha256(data).hexdigest()

    monkeypatch.setattr(storage, "object_stat", kms_like_stat)
    monkeypatch.setattr(storage, "object_write_stream", kms_like_write)
    monkeypatch.setattr(storage, "object_sha256", sha)
    assert archive.recording_archive(recording_id=recording.pk).code == "copied"
    recording.refresh_from_db()
    assert read_back == [recording.media_key]
    assert recording.media_etag == '"kms-etag"'


def test_encrypted_recording_is_copied_byte_for_byte_and_keeps_its_details(
    s3, fake_twilio, policy, monkeypatch, django_capture_on_commit_callbacks
):
    details = {
        "type": "rsa-aes",
        "public_key_sid": "CR" + "b" * 32,
        "encrypted_cek": "Y2VrLWJ5dGVz",
        "iv": "aXYtYnl0ZXM=",
    }
    media = wav(4096)
    recording = synced(fake_twilio, media=media, encryption_details=details)
    verifications: list[int] = []
    monkeypatch.setattr(jobs, "queue_media_verification", verifications.append)

    with django_capture_on_commit_callbacks(execute=True):
        assert archive.recording_archive(recording_id=recording.pk).code == "copied"

    recording.refresh_from_db()
    assert stored_bytes(s3, recording.media_key) == media
    assert (recording.encryption_type, recording.encryption_public_key_sid) == (
        "rsa-aes",
        "CR" + "b" * 32,
    )
    assert (recording.encryption_cek, recording.encryption_iv) == ("Y2VrLWJ5dGVz", "aXYtYnl0ZXM=")
    # Its GCM tag is checked by the usual task before it counts as verified.
    assert recording.integrity_state == IntegrityState.UNVERIFIED
    assert verifications == [recording.pk]


def test_deletes_at_twilio_only_after_the_copy_is_recorded(s3, fake_twilio, policy, uploads):
    policy.delete_at_twilio_after_archive = True
    policy.save()
    media = wav(10_000)
    recording = synced(fake_twilio, media=media)

    outcome = archive.recording_archive(recording_id=recording.pk)

    assert (outcome.code, outcome.deleted_at_twilio) == ("copied", True)
    recording.refresh_from_db()
    assert recording.twilio_media_deleted_at is not None
    assert fake_twilio.get_media(recording.sid) is None
    assert fake_twilio.get_recording(recording.sid)["status"] == "deleted"
    assert stored_bytes(s3, recording.media_key) == media
    assert archive.recording_archive(recording_id=recording.pk).code == "already_archived"
    assert (len(uploads), deletes(fake_twilio, recording.sid)) == (1, 1)


def test_never_deletes_at_twilio_when_the_stored_copy_changed(s3, fake_twilio, policy):
    recording = synced(fake_twilio)
    assert archive.recording_archive(recording_id=recording.pk).code == "copied"
    recording.refresh_from_db()
    s3.put_object(Bucket=BUCKET, Key=recording.media_key, Body=b"something else")
    policy.delete_at_twilio_after_archive = True
    policy.save()

    outcome = archive.recording_archive(recording_id=recording.pk)

    assert outcome.code == "failed"
    assert "changed since it was verified" in outcome.detail
    assert deletes(fake_twilio, recording.sid) == 0
    assert fake_twilio.get_media(recording.sid) is not None


def test_policies_per_account_and_default(s3, fake_twilio, uploads):
    recording = synced(fake_twilio)
    assert archive.recording_archive(recording_id=recording.pk).code == "skipped"  # no policy
    ArchivePolicy.objects.create(account_sid="", enabled=True)
    own = ArchivePolicy.objects.create(account_sid=recording.account_sid, enabled=False)
    assert archive.recording_archive(recording_id=recording.pk).code == "skipped"
    own.enabled, own.key_prefix, own.bucket = True, "/tenant/a/", BUCKET
    own.save()
    assert archive.recording_archive(recording_id=recording.pk).code == "copied"
    assert uploads == [f"tenant/a/{recording.account_sid}/2026/11/{recording.sid}.wav"]


def test_a_later_sync_keeps_the_archived_location(s3, fake_twilio, policy):
    recording = synced(fake_twilio)
    archive.recording_archive(recording_id=recording.pk)
    fake_twilio.update_recording(recording.sid, duration="43")
    sync.recording_sync(sid=recording.sid)
    recording.refresh_from_db()
    assert (recording.media_location, recording.duration_seconds) == (MediaLocation.S3, 43)
    assert recording.media_bucket == BUCKET


# --- crash between any two steps ------------------------------------------------------------------


class Crash(Exception):
    """Stands for the worker dying at this point."""


def crash_after(monkeypatch, module, name: str) -> None:
    """Make ``module.name`` do its work, then 'crash' (once)."""
    real = getattr(module, name)

    def work_then_crash(*args, **kwargs):
        monkeypatch.setattr(module, name, real)
        real(*args, **kwargs)
        raise Crash(name)

    monkeypatch.setattr(module, name, work_then_crash)


def crash_before(monkeypatch, module, name: str) -> None:
    """Make ``module.name`` 'crash' before doing anything (once)."""
    real = getattr(module, name)

    def crash(*args, **kwargs):
        monkeypatch.setattr(module, name, real)
        raise Crash(name)

    monkeypatch.setattr(module, name, crash)


@pytest.mark.parametrize(
    ("inject", "module", "name", "uploads_after_rerun"),
    [
        # uploaded, not verified nor recorded: the rerun adopts the object, uploads nothing
        (crash_after, storage, "object_write_stream", 1),
        # verified (the HEAD done), not recorded
        (crash_before, archive, "_record_copy", 1),
        # recorded, Twilio not asked to delete
        (crash_before, twilio_api, "recording_delete", 1),
        # deleted at Twilio, not recorded: the rerun's DELETE answers 404, which counts as done
        (crash_after, twilio_api, "recording_delete", 1),
    ],
    ids=["after-upload", "after-verify", "after-record", "after-twilio-delete"],
)
def test_a_crash_between_steps_loses_nothing_and_repeats_nothing_harmful(
    s3, fake_twilio, policy, monkeypatch, inject, module, name, uploads_after_rerun
):
    policy.delete_at_twilio_after_archive = True
    policy.save()
    media = wav(30_000)
    recording = synced(fake_twilio, media=media)
    inject(monkeypatch, module, name)
    with pytest.raises(Crash):
        archive.recording_archive(recording_id=recording.pk)
    writes = keys_passed_to(monkeypatch, "object_write_stream")
    deletes_before = deletes(fake_twilio, recording.sid)

    outcome = archive.recording_archive(recording_id=recording.pk)

    recording.refresh_from_db()
    assert outcome.code in ("copied", "already_archived")
    assert writes == []  # never a second upload
    assert recording.media_location == MediaLocation.S3
    assert recording.media_sha256 == hashlib.sha256(media).hexdigest()
    assert stored_bytes(s3, recording.media_key) == media
    assert recording.twilio_media_deleted_at is not None
    assert fake_twilio.get_media(recording.sid) is None
    # At most the one DELETE the crash may have hidden from the portal, then none.
    assert deletes(fake_twilio, recording.sid) - deletes_before <= 1
    assert archive.recording_archive(recording_id=recording.pk).code == "already_archived"
    assert writes == []
    assert uploads_after_rerun == len(s3.list_objects_v2(Bucket=BUCKET)["Contents"])


def test_one_worker_at_a_time_and_the_lease_is_released(s3, fake_twilio, policy, monkeypatch):
    from django.core.cache import cache

    recording = synced(fake_twilio)
    lease = f"recordings:archive-lease:{recording.pk}"
    cache.add(lease, "another worker", timeout=60)
    outcome = archive.recording_archive(recording_id=recording.pk)
    assert (outcome.code, outcome.should_retry) == ("busy", False)
    assert fake_twilio.count("GET", f"{recording.sid}.wav") == 0
    cache.delete(lease)

    crash_before(monkeypatch, archive, "_record_copy")
    with pytest.raises(Crash):
        archive.recording_archive(recording_id=recording.pk)
    assert cache.get(lease) is None  # released even when the run dies with an exception
    assert archive.recording_archive(recording_id=recording.pk).code == "copied"
    assert cache.get(lease) is None


def test_a_different_object_at_the_key_is_replaced_not_adopted(s3, fake_twilio, policy):
    media = wav(20_000)
    recording = synced(fake_twilio, media=media)
    key = archive.archive_key(recording=recording, prefix="archive")
    s3.put_object(Bucket=BUCKET, Key=key, Body=media[:-1] + b"X")  # same size, other bytes
    outcome = archive.recording_archive(recording_id=recording.pk)
    assert (outcome.code, outcome.uploaded) == ("copied", True)
    assert stored_bytes(s3, key) == media


def test_a_first_run_proves_the_copy_by_the_upload_answer_without_asking_s3_again(
    s3, fake_twilio, policy, monkeypatch
):
    """Nobody uploaded for it before (the run marks it pending before its upload): no HEAD
    before, none after; S3's ETag for the object it stored is the proof."""
    media = wav(40_000)
    recording = synced(fake_twilio, media=media)
    asked = keys_passed_to(monkeypatch, "object_stat")
    assert archive.recording_archive(recording_id=recording.pk).code == "copied"
    assert asked == []
    recording.refresh_from_db()
    assert recording.media_etag == s3.head_object(Bucket=BUCKET, Key=recording.media_key)["ETag"]
    md5 = hashlib.md5(media, usedforsecurity=False).hexdigest()
    assert recording.media_etag == f'"{md5}"'


def test_an_identical_object_put_there_by_hand_is_adopted_not_stored_again(s3, fake_twilio, policy):
    media = wav(20_000)
    recording = synced(fake_twilio, media=media)
    key = archive.archive_key(recording=recording, prefix="archive")
    s3.put_object(Bucket=BUCKET, Key=key, Body=media, Metadata={"put-by": "hand"})

    outcome = archive.recording_archive(recording_id=recording.pk)

    assert (outcome.code, outcome.uploaded) == ("copied", False)
    assert s3.head_object(Bucket=BUCKET, Key=key)["Metadata"] == {"put-by": "hand"}
    recording.refresh_from_db()
    assert (recording.media_key, recording.media_sha256) == (key, hashlib.sha256(media).hexdigest())


@pytest.mark.parametrize("size", [1000, storage.UPLOAD_PART_SIZE + 1000], ids=["put", "multipart"])
def test_a_write_only_if_absent_never_replaces_an_object(s3, size):
    key = f"only-if-absent/{size}.wav"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"already here")
    with pytest.raises(storage.StorageObjectExists):
        storage.object_write_stream(
            bucket=BUCKET, key=key, chunks=iter([wav(size)]), only_if_absent=True
        )
    assert stored_bytes(s3, key) == b"already here"
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    fresh = storage.object_write_stream(
        bucket=BUCKET, key=f"{key}.new", chunks=iter([wav(size)]), only_if_absent=True
    )
    assert fresh.proven
    assert fresh.etag == s3.head_object(Bucket=BUCKET, Key=f"{key}.new")["ETag"]


def test_a_download_cut_short_leaves_nothing_stored(s3, fake_twilio, policy, monkeypatch):
    recording = synced(fake_twilio, media=wav(storage.UPLOAD_PART_SIZE + 1000))
    real = twilio_api.recording_media_fetch

    def truncated(**kwargs):
        media = real(**kwargs)
        media.chunks = iter([next(media.chunks)])  # the connection ends after one chunk
        return media

    monkeypatch.setattr(twilio_api, "recording_media_fetch", truncated)
    outcome = archive.recording_archive(recording_id=recording.pk)
    assert outcome.code == "retry"
    assert "before the connection ended" in outcome.detail
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0
    recording.refresh_from_db()
    assert recording.media_location == MediaLocation.TWILIO


# --- faults -----------------------------------------------------------------------------------


@pytest.fixture
def refusing_s3(settings, request) -> Iterator[str]:
    """An S3 endpoint on loopback that answers every write ``403`` with the error code given
    by the test's parameter (``AccessDenied`` by default) and every ``HEAD`` 404, as a bucket
    whose policy denies the portal ``s3:PutObject`` does."""
    code = getattr(request, "param", "AccessDenied").encode()

    class Handler(BaseHTTPRequestHandler):
        def _deny(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = (
                b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>' + code + b"</Code>"
                b"<Message>Refused</Message></Error>"
            )
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_HEAD(self) -> None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_PUT = do_POST = do_GET = _deny

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.AWS_S3_ENDPOINT_URL = f"http://127.0.0.1:{server.server_address[1]}"
    yield settings.AWS_S3_ENDPOINT_URL
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("refusing_s3", "shown"),
    [
        ("AccessDenied", "S3 refused the write (AccessDenied)"),
        ("RequestTimeTooSkewed", "clock is more than 15 minutes off"),
    ],
    indirect=["refusing_s3"],
    ids=["access-denied", "clock-skew"],
)
def test_s3_refusing_writes_leaves_the_recording_at_twilio_and_retryable(
    s3, fake_twilio, policy, refusing_s3, shown
):
    recording = synced(fake_twilio)
    outcome = archive.recording_archive(recording_id=recording.pk)
    assert (outcome.code, outcome.should_retry, outcome.attempts) == ("retry", True, 1)
    recording.refresh_from_db()
    assert recording.media_location == MediaLocation.TWILIO
    assert recording.archive_state == ArchiveState.PENDING
    assert shown in recording.archive_error
    assert deletes(fake_twilio, recording.sid) == 0


def test_missing_bucket_is_named_and_the_archive_succeeds_once_it_exists(s3, fake_twilio, policy):
    policy.bucket = "portal-test-archive-missing"
    policy.delete_at_twilio_after_archive = True
    policy.save()
    recording = synced(fake_twilio)

    outcome = archive.recording_archive(recording_id=recording.pk)

    assert outcome.code == "retry"
    recording.refresh_from_db()
    assert "the bucket does not exist" in recording.archive_error
    assert recording.media_location == MediaLocation.TWILIO
    assert fake_twilio.get_media(recording.sid) is not None
    s3.create_bucket(Bucket=policy.bucket)
    try:
        assert archive.recording_archive(recording_id=recording.pk).code == "copied"
        recording.refresh_from_db()
        assert (recording.media_bucket, recording.archive_error) == (policy.bucket, "")
        assert (recording.archive_state, recording.archive_attempts) == ("archived", 0)
    finally:
        s3.delete_object(Bucket=policy.bucket, Key=recording.media_key)
        s3.delete_bucket(Bucket=policy.bucket)


def test_media_already_deleted_at_twilio_is_recorded_clearly(s3, fake_twilio, policy):
    recording = synced(fake_twilio)
    fake_twilio.update_recording(recording.sid, media=None)  # deleted elsewhere

    outcome = archive.recording_archive(recording_id=recording.pk)

    assert (outcome.code, outcome.should_retry) == ("failed", False)
    recording.refresh_from_db()
    assert recording.archive_state == ArchiveState.FAILED
    assert "Twilio has no media for this recording (404)" in recording.archive_error
    assert recording.media_location == MediaLocation.TWILIO
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


@pytest.mark.parametrize("status", [401, 403])
def test_twilio_refusing_stops_at_once(s3, fake_twilio, policy, status):
    recording = synced(fake_twilio)
    fake_twilio.fail(status, path_contains=f"{recording.sid}.wav")
    assert tasks.archive_recording.apply((recording.pk,)).get() == "failed"
    recording.refresh_from_db()
    assert f"Twilio refused ({status})" in recording.archive_error
    assert fake_twilio.count("GET", f"{recording.sid}.wav") == 1


def test_recording_still_processing_is_skipped_then_archived_once_completed(
    s3, fake_twilio, policy
):
    recording = synced(fake_twilio, status="processing")
    outcome = archive.recording_archive(recording_id=recording.pk)
    assert (outcome.code, outcome.should_retry) == ("not_ready", True)
    recording.refresh_from_db()
    assert recording.archive_state == ArchiveState.PENDING
    assert "processing" in recording.archive_error
    assert fake_twilio.count("GET", f"{recording.sid}.wav") == 0

    fake_twilio.update_recording(recording.sid, status="completed")
    sync.recording_sync(sid=recording.sid)
    assert archive.recording_archive(recording_id=recording.pk).code == "copied"


def test_twilio_down_is_retried_with_the_sync_backoff_then_given_up(
    s3, fake_twilio, policy, monkeypatch
):
    recording = synced(fake_twilio)
    fake_twilio.fail(503, path_contains=f"{recording.sid}.wav")
    countdowns: list[int] = []

    def retry(*args, countdown: int, **kwargs):
        countdowns.append(countdown)
        return RuntimeError("retry")  # what Task.retry raises, stood in for

    monkeypatch.setattr(tasks.archive_recording, "retry", retry)
    # Run as a worker would (not eagerly), so a transient failure asks for a delayed retry.
    for _ in range(2):
        with pytest.raises(RuntimeError, match="retry"):
            tasks.archive_recording.run(recording.pk)
    assert countdowns == [jobs.retry_delay(1), jobs.retry_delay(2)]
    recording.refresh_from_db()
    assert recording.archive_state == ArchiveState.PENDING
    assert "Twilio unavailable" in recording.archive_error
    assert recording.media_location == MediaLocation.TWILIO

    Recording.objects.filter(pk=recording.pk).update(archive_attempts=jobs.MAX_RETRIES)
    assert tasks.archive_recording.run(recording.pk) == "failed"
    recording.refresh_from_db()
    assert recording.archive_state == ArchiveState.FAILED
    assert "gave up after" in recording.archive_error
    assert recording.archive_attempts == 0  # a run by hand starts with a fresh retry budget

    fake_twilio.reset_faults()  # Twilio is back: a run by hand finishes the job
    assert tasks.archive_recording.apply((recording.pk,)).get() == "copied"


def test_a_batch_archives_each_recording_and_retries_only_the_one_twilio_cannot_serve(
    s3, fake_twilio, policy, monkeypatch
):
    served, unavailable = synced(fake_twilio), synced(fake_twilio)
    fake_twilio.fail(503, path_contains=f"{unavailable.sid}.wav")
    retries: list[tuple[tuple, int]] = []
    monkeypatch.setattr(
        jobs,
        "queue_recording_archive",
        lambda recording_id, countdown: retries.append(((recording_id,), countdown)),
    )
    # Run as a worker would (not eagerly), so the transient failure gets a delayed retry.
    codes = tasks.archive_recording_batch.run([served.pk, unavailable.pk])
    assert codes == {"copied": 1, "retry": 1}
    assert retries == [((unavailable.pk,), jobs.retry_delay(1))]
    served.refresh_from_db()
    unavailable.refresh_from_db()
    assert (served.archive_state, unavailable.archive_state) == ("archived", "pending")


# --- queued by the sync -------------------------------------------------------------------------


def test_sync_of_a_completed_recording_queues_its_archive_when_a_policy_is_enabled(
    s3, fake_twilio, monkeypatch, django_capture_on_commit_callbacks
):
    queued: list[int] = []
    monkeypatch.setattr(jobs, "queue_recording_archive", queued.append)
    with django_capture_on_commit_callbacks(execute=True):
        no_policy = synced(fake_twilio)
    assert queued == []

    ArchivePolicy.objects.create(account_sid="")
    with django_capture_on_commit_callbacks(execute=True):
        completed = synced(fake_twilio)
        synced(fake_twilio, status="processing")
        sync.recording_sync(sid=no_policy.sid)
    assert queued == [completed.pk, no_policy.pk]

    archive.recording_archive(recording_id=completed.pk)
    with django_capture_on_commit_callbacks(execute=True):
        sync.recording_sync(sid=completed.sid)  # archived: nothing more to queue
    assert queued == [completed.pk, no_policy.pk]


# --- the bulk command -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_archive_recordings_command_in_bulk(s3, fake_twilio, monkeypatch):
    monkeypatch.setattr(jobs, "queue_recording_archive", lambda recording_id: None)
    media = {new_sid("RE"): wav(5000 + n) for n in range(4)}
    for sid, body in media.items():
        fake_twilio.add_recording(sid, media=body, channels=2, start_time=START)
    old = new_sid("RE")
    fake_twilio.add_recording(old, media=wav(100), start_time=datetime(2025, 1, 5, tzinfo=UTC))
    busy = new_sid("RE")
    fake_twilio.add_recording(busy, media=None, status="processing", start_time=START)
    ArchivePolicy.objects.create(account_sid="", key_prefix="bulk")
    # Two (and the old one) are known already; the others exist only at Twilio.
    for sid in [*list(media)[:2], old]:
        sync.recording_sync(sid=sid)

    dry = StringIO()
    call_command("archive_recordings", "--since", "2026-11-01", "--dry-run", stdout=dry)
    assert "would archive 2, skip 0; nothing changed" in dry.getvalue()
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0

    out, err = StringIO(), StringIO()
    call_command(
        "archive_recordings", "--since", "2026-11-01", "--workers", "3", stdout=out, stderr=err
    )

    total = sum(len(body) for body in media.values())
    assert f"copied 4, skipped 1, failed 0, bytes {total}" in out.getvalue()
    assert "archive" in err.getvalue()  # the progress bar
    for sid, body in media.items():
        recording = Recording.objects.get(sid=sid)
        assert recording.media_location == MediaLocation.S3
        assert stored_bytes(s3, recording.media_key) == body
    assert Recording.objects.get(sid=old).media_location == MediaLocation.TWILIO
    assert Recording.objects.get(sid=busy).archive_state == ArchiveState.PENDING

    again = StringIO()
    call_command(
        "archive_recordings",
        "--since",
        "2026-11-01",
        "--no-progress",
        "--no-reconcile",
        stdout=again,
    )
    assert "copied 0, skipped 1, failed 0, bytes 0" in again.getvalue()  # the busy one

    # A policy that deletes at Twilio makes the archived ones due for that last step.
    ArchivePolicy.objects.filter(account_sid="").update(delete_at_twilio_after_archive=True)
    last = StringIO()
    call_command(
        "archive_recordings",
        "--since",
        "2026-11-01",
        "--no-progress",
        "--no-reconcile",
        stdout=last,
    )
    assert "copied 0, skipped 5, failed 0, bytes 0, deleted at Twilio 4" in last.getvalue()
    assert all(fake_twilio.get_media(sid) is None for sid in media)
    assert fake_twilio.get_media(old) is not None


@pytest.mark.django_db(transaction=True)
def test_archive_recordings_command_reports_failures(s3, fake_twilio, monkeypatch):
    monkeypatch.setattr(jobs, "queue_recording_archive", lambda recording_id: None)
    ArchivePolicy.objects.create(account_sid="")
    good = synced(fake_twilio)
    gone = synced(fake_twilio)
    fake_twilio.update_recording(gone.sid, media=None)
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="1 recordings were not archived"):
        call_command(
            "archive_recordings",
            "--since",
            "2026-11-01",
            "--no-reconcile",
            "--no-progress",
            stdout=out,
            stderr=err,
        )
    assert f"copied 1, skipped 0, failed 1, bytes {good.media_size or 2048}" in out.getvalue()
    assert "404" in err.getvalue()
    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        call_command("archive_recordings", "--since", "yesterday")


# --- admin ------------------------------------------------------------------------------------


def test_admin_edits_policies_audited_and_queues_archives(
    admin_client, s3, fake_twilio, monkeypatch
):
    from audit.models import AccessLog

    response = admin_client.post(
        reverse("admin:recordings_archivepolicy_add"),
        {
            "account_sid": "",
            "enabled": "on",
            "bucket": "",
            "key_prefix": "recordings",
            "delete_at_twilio_after_archive": "on",
        },
    )
    assert response.status_code == 302
    policy = ArchivePolicy.objects.get()
    assert policy.delete_at_twilio_after_archive
    row = AccessLog.objects.filter(reason_code="archive_policy").get()
    assert row.detail["changes"]["delete_at_twilio_after_archive"]["new"] is True

    recording = synced(fake_twilio)
    queued: list[int] = []

    def queue(ids: Iterable[int]) -> int:
        before = len(queued)
        queued.extend(ids)
        return len(queued) - before

    monkeypatch.setattr(jobs, "queue_recording_archives", queue)
    response = admin_client.post(
        reverse("admin:recordings_recording_changelist"),
        {"action": "archive_now", "_selected_action": [recording.pk]},
    )
    assert response.status_code == 302
    assert queued == [recording.pk]
