"""A held recording's waveform files (``recordings.lifecycle.hold_derived_locks``) against moto's
S3 server with Object Lock: placing a hold sets the S3 legal hold on the recording's
``peaks.json`` and ``segments.json`` beside its media, S3 then refuses to delete them, a file
shared by two recordings stays locked while another hold covers either, releasing clears it,
an analysis finished after the hold is locked by the reconcile, and a bucket without Object
Lock is said once. Each change is a ``legal_hold`` access-log row naming the file."""

from __future__ import annotations

import hashlib
import secrets

import pytest
from botocore.exceptions import ClientError

from audit.models import AccessLog
from recordings.analysis import store
from recordings.integrations import storage
from recordings.lifecycle import hold_locks, retention
from recordings.models import (
    AnalysisState,
    HoldDerivedLock,
    HoldLockState,
    HoldObjectLock,
    Recording,
    RecordingAnalysis,
)
from recordings.tests import test_hold_locks
from recordings.tests.test_hold_locks import place

pytestmark = pytest.mark.django_db

# The hold locks tests' fixtures: a bucket with Object Lock, and recordings stored in a bucket.
locked_bucket = test_hold_locks.locked_bucket
stored = test_hold_locks.stored

ALGORITHM = 1


def analysed(recording: Recording, *, audio: bytes | None = None) -> dict[str, str]:
    """Give ``recording`` a finished analysis whose two files are in the derived storage;
    answers their S3 keys by name."""
    sha = hashlib.sha256(audio or secrets.token_bytes(16)).hexdigest()
    store.analysis_files_write(
        media_sha256=sha, algorithm=ALGORITHM, peaks={"version": 2, "data": []}, speech={}
    )
    RecordingAnalysis.objects.create(
        recording=recording, state=AnalysisState.DONE, algorithm=ALGORITHM, media_sha256=sha
    )
    return {
        name: storage.DERIVED_PREFIX + key
        for name, key in store.analysis_file_keys(media_sha256=sha, algorithm=ALGORITHM).items()
    }


def status(s3, bucket: str, key: str) -> str:
    answer = s3.get_object_legal_hold(Bucket=bucket, Key=key)
    return str(answer["LegalHold"].get("Status") or "OFF")


def rows(code: str) -> list[AccessLog]:
    return [
        row
        for row in AccessLog.objects.filter(action="legal_hold", reason_code=code).order_by(
            "sequence"
        )
        if "derived" in row.detail
    ]


def test_a_hold_locks_the_waveform_files_and_s3_refuses_to_delete_them(
    s3,
    locked_bucket,
    stored,
    settings,
):
    settings.AWS_STORAGE_BUCKET_NAME = locked_bucket
    held, free = stored(locked_bucket), stored(locked_bucket)
    held_files, free_files = analysed(held), analysed(free)
    hold = place(recording_sids=[held.sid])

    run = hold_locks.hold_locks_apply(hold_id=hold.pk)

    assert (run.locked, run.failed) == (3, 0)  # the media and its two derived files
    for key in held_files.values():
        assert status(s3, locked_bucket, key) == "ON"
    for key in free_files.values():
        assert status(s3, locked_bucket, key) == "OFF"
    lock = HoldDerivedLock.objects.get(hold=hold, key=held_files["peaks.json"])
    assert (lock.state, lock.recording_id, lock.bucket) == (
        HoldLockState.LOCKED,
        held.pk,
        locked_bucket,
    )
    assert lock.version_id
    with pytest.raises(ClientError):
        s3.delete_object(
            Bucket=locked_bucket, Key=held_files["peaks.json"], VersionId=lock.version_id
        )
    on = rows("lock_on")
    assert sorted(r.detail["derived"] for r in on) == ["peaks.json", "segments.json"]
    assert {r.recording_sid for r in on} == {held.sid}
    # Applied again: nothing twice.
    again = hold_locks.hold_locks_apply(hold_id=hold.pk)
    assert again.locked == 0
    assert len(rows("lock_on")) == 2

    retention.legal_hold_release(hold_id=hold.pk, released_by="officer", reason="settled")
    hold_locks.hold_locks_reconcile()
    for key in held_files.values():
        assert status(s3, locked_bucket, key) == "OFF"
    assert len(rows("lock_off")) == 2
    s3.delete_object(Bucket=locked_bucket, Key=held_files["peaks.json"], VersionId=lock.version_id)


def test_a_shared_file_stays_locked_while_another_hold_covers_its_audio(
    s3,
    locked_bucket,
    stored,
    settings,
):
    settings.AWS_STORAGE_BUCKET_NAME = locked_bucket
    first, copy = stored(locked_bucket), stored(locked_bucket)
    files = analysed(first, audio=b"same audio")
    assert analysed(copy, audio=b"same audio") == files  # named by the audio: one file for both
    one = place(recording_sids=[first.sid])
    other = place(recording_sids=[copy.sid])
    hold_locks.hold_locks_apply(hold_id=one.pk)
    hold_locks.hold_locks_apply(hold_id=other.pk)

    retention.legal_hold_release(hold_id=one.pk, released_by="officer", reason="settled")
    run = hold_locks.hold_locks_apply(hold_id=one.pk)

    # The first recording's media is its own (released); the waveform files are shared with
    # the copy, which the other hold still covers (kept).
    assert (run.released, run.kept) == (1, 2)
    assert status(s3, locked_bucket, files["peaks.json"]) == "ON"
    kept = HoldDerivedLock.objects.get(hold=one, key=files["peaks.json"])
    assert kept.state == HoldLockState.RELEASED
    assert str(other) in kept.error
    assert {r.detail["kept_by"] for r in rows("lock_kept")} == {other.pk}


def test_an_analysis_finished_after_the_hold_is_locked_by_the_reconcile(
    s3,
    locked_bucket,
    stored,
    settings,
):
    settings.AWS_STORAGE_BUCKET_NAME = locked_bucket
    recording = stored(locked_bucket)
    hold = place(recording_sids=[recording.sid])
    hold_locks.hold_locks_apply(hold_id=hold.pk)
    assert not HoldDerivedLock.objects.exists()

    files = analysed(recording)
    hold_locks.hold_locks_reconcile()

    assert all(status(s3, locked_bucket, key) == "ON" for key in files.values())


def test_a_bucket_without_object_lock_is_said_once(s3, stored, settings):
    recording = stored(settings.AWS_STORAGE_BUCKET_NAME)  # the test bucket: no Object Lock
    analysed(recording)
    hold = place(recording_sids=[recording.sid])

    first = hold_locks.hold_locks_apply(hold_id=hold.pk)
    hold_locks.hold_locks_apply(hold_id=hold.pk)

    assert first.not_enabled == 3
    assert set(HoldDerivedLock.objects.values_list("state", flat=True)) == {
        HoldLockState.NOT_ENABLED
    }
    assert len(rows("lock_not_enabled")) == 2  # once per file, not on every pass
    assert HoldObjectLock.objects.get().state == HoldLockState.NOT_ENABLED


def test_the_case_page_reads_the_waveform_locks_back_from_s3(
    s3, locked_bucket, stored, settings, admin_client
):
    """The case page shows each held recording's waveform files as S3 reports them now: ON
    after the hold, and OFF when someone cleared one behind the portal's back."""
    from django.urls import reverse

    settings.AWS_STORAGE_BUCKET_NAME = locked_bucket
    held = stored(locked_bucket)
    files = analysed(held)
    hold = place(recording_sids=[held.sid])
    hold_locks.hold_locks_apply(hold_id=hold.pk)

    [view] = hold_locks.hold_lock_readback(hold=hold, recordings=[held])
    assert view.locked
    assert [(item.name, item.s3_status) for item in view.derived] == [
        ("peaks.json", "ON"),
        ("segments.json", "ON"),
    ]
    lock = HoldDerivedLock.objects.get(hold=hold, key=files["segments.json"])
    s3.put_object_legal_hold(
        Bucket=locked_bucket,
        Key=files["segments.json"],
        VersionId=lock.version_id,
        LegalHold={"Status": "OFF"},
    )
    page = admin_client.get(reverse("admin:recordings_legalhold_case", args=[hold.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "waveform files: peaks.json ON, segments.json OFF" in html
