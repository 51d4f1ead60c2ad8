"""Legal holds on locked storage (``recordings.lifecycle.hold_locks``) against moto's S3 server
with a bucket created with Object Lock: placing a hold sets the S3 legal hold on each held
object (read back from S3), S3 then refuses to delete that object version, releasing clears it
unless another hold still covers the object, a bucket without Object Lock and an S3 that is down
are recorded and shown, and the reconcile finishes what was left, including recordings that
arrive after the hold. Each change is a ``legal_hold`` access-log row."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from audit.models import AccessLog
from recordings.lifecycle import hold_locks, retention
from recordings.models import HoldLockState, HoldObjectLock, LegalHold, MediaLocation, Recording

pytestmark = pytest.mark.django_db


@pytest.fixture
def locked_bucket(s3) -> str:
    """A fresh bucket with Object Lock (and so versioning) enabled on the moto server. Its
    objects stay: moto keeps them in memory, and a locked version cannot be deleted."""
    name = f"locked-{secrets.token_hex(6)}"
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


@pytest.fixture
def stored(s3, recording_make) -> Callable[..., Recording]:
    """``stored(bucket, **fields)``: a recording whose media is an object in ``bucket``."""

    def make(bucket: str, **fields: Any) -> Recording:
        recording = recording_make(**fields)
        key = f"recordings/{recording.sid}.wav"
        s3.put_object(Bucket=bucket, Key=key, Body=b"RIFF" + secrets.token_bytes(32))
        recording.media_location = MediaLocation.S3
        recording.media_bucket = bucket
        recording.media_key = key
        recording.save()
        return recording

    return make


def place(**fields: Any) -> LegalHold:
    fields.setdefault("reason", "litigation")
    fields.setdefault("case_reference", "CASE-" + secrets.token_hex(3))
    return retention.legal_hold_place(hold=LegalHold(**fields), created_by="officer")


def s3_status(s3, recording: Recording) -> str:
    answer = s3.get_object_legal_hold(Bucket=recording.media_bucket, Key=recording.media_key)
    return str(answer["LegalHold"].get("Status") or "OFF")


def lock_rows(code: str) -> list[AccessLog]:
    return list(
        AccessLog.objects.filter(action="legal_hold", reason_code=code).order_by("sequence")
    )


def test_placing_a_hold_locks_each_object_and_s3_refuses_to_delete_it(
    s3, locked_bucket, stored, recording_make
):
    first, second = stored(locked_bucket), stored(locked_bucket)
    free = stored(locked_bucket)
    local = recording_make(media_location=MediaLocation.LOCAL, media_key="a.wav")
    hold = place(recording_sids=[first.sid, second.sid, local.sid], matter_name="Smith v. Acme")

    run = hold_locks.hold_locks_apply(hold_id=hold.pk)

    assert (run.locked, run.failed, run.remaining) == (2, 0, 0)
    assert s3_status(s3, first) == "ON"
    assert s3_status(s3, second) == "ON"
    assert s3_status(s3, free) == "OFF"
    row = HoldObjectLock.objects.get(hold=hold, recording=first)
    assert row.state == HoldLockState.LOCKED
    assert row.version_id  # pinned to the version that was held
    audited = lock_rows("lock_on")
    assert {r.recording_sid for r in audited} == {first.sid, second.sid}
    assert audited[0].detail["bucket"] == locked_bucket
    assert audited[0].detail["status"] == "ON"
    assert audited[0].detail["object"] in (first.media_key, second.media_key)

    # S3 itself refuses to destroy the held version, whoever asks.
    with pytest.raises(ClientError) as refused:
        s3.delete_object(Bucket=locked_bucket, Key=first.media_key, VersionId=row.version_id)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"

    views = {
        v.recording.sid: v
        for v in hold_locks.hold_lock_readback(hold=hold, recordings=[first, second, local])
    }
    assert views[first.sid].summary == "locked (read back from S3)"
    assert views[local.sid].summary == "local file: hold enforced by the portal only"
    # Read back, not believed: clearing it behind the portal's back shows at once.
    s3.put_object_legal_hold(
        Bucket=locked_bucket,
        Key=second.media_key,
        VersionId=HoldObjectLock.objects.get(recording=second).version_id,
        LegalHold={"Status": "OFF"},
    )
    again = hold_locks.hold_lock_readback(hold=hold, recordings=[second])[0]
    assert not again.locked
    assert again.summary == "NOT locked: S3 reports OFF"


def test_every_delete_path_still_refuses_a_held_recording(s3, locked_bucket, stored):
    recording = stored(locked_bucket)
    hold = place(recording_sids=[recording.sid])
    hold_locks.hold_locks_apply(hold_id=hold.pk)

    with pytest.raises(retention.RecordingHeld):
        retention.recording_soft_delete(recording_id=recording.pk, policy="admin:officer")
    Recording.objects.filter(pk=recording.pk).update(soft_deleted_at=recording.created_at)
    with pytest.raises(retention.RecordingHeld):
        retention.recording_hard_delete(recording_id=recording.pk)
    recording.refresh_from_db()
    assert recording.media_location == MediaLocation.S3
    assert s3_status(s3, recording) == "ON"
    assert s3.head_object(Bucket=locked_bucket, Key=recording.media_key)["ContentLength"] > 0


def test_release_clears_the_lock_unless_another_hold_still_covers_it(s3, locked_bucket, stored):
    shared, alone = stored(locked_bucket), stored(locked_bucket)
    first = place(recording_sids=[shared.sid, alone.sid])
    second = place(recording_sids=[shared.sid])
    hold_locks.hold_locks_apply(hold_id=first.pk)
    hold_locks.hold_locks_apply(hold_id=second.pk)

    retention.legal_hold_release(hold_id=first.pk, released_by="officer", reason="settled")
    run = hold_locks.hold_locks_apply(hold_id=first.pk)  # a released hold's locks are cleared

    assert (run.released, run.kept) == (1, 1)
    assert s3_status(s3, alone) == "OFF"
    assert s3_status(s3, shared) == "ON"
    kept = HoldObjectLock.objects.get(hold=first, recording=shared)
    assert kept.state == HoldLockState.RELEASED
    assert str(second) in kept.error
    assert [r.recording_sid for r in lock_rows("lock_off")] == [alone.sid]
    assert lock_rows("lock_kept")[0].detail["kept_by"] == second.pk

    retention.legal_hold_release(hold_id=second.pk, released_by="officer", reason="settled")
    hold_locks.hold_locks_reconcile()
    assert s3_status(s3, shared) == "OFF"
    # Nothing is left locked, so the object can now be deleted.
    version = HoldObjectLock.objects.get(hold=second).version_id
    s3.delete_object(Bucket=locked_bucket, Key=shared.media_key, VersionId=version)


def test_a_bucket_without_object_lock_is_said_not_failed(s3, stored, settings):
    plain = settings.AWS_STORAGE_BUCKET_NAME  # the root conftest's bucket: no Object Lock
    with pytest.raises(ClientError):
        s3.get_object_lock_configuration(Bucket=plain)
    recording = stored(plain)
    hold = place(recording_sids=[recording.sid])

    run = hold_locks.hold_locks_apply(hold_id=hold.pk)
    hold_locks.hold_locks_reconcile()  # asked again: said once, not on every pass

    assert (run.locked, run.failed, run.not_enabled) == (0, 0, 1)
    row = HoldObjectLock.objects.get(hold=hold)
    assert row.state == HoldLockState.NOT_ENABLED
    view = hold_locks.hold_lock_readback(hold=hold, recordings=[recording])[0]
    assert view.summary == (
        f"Object Lock not enabled on bucket {plain}: hold is enforced by the portal only"
    )
    assert len(lock_rows("lock_not_enabled")) == 1
    with pytest.raises(retention.RecordingHeld):
        retention.recording_soft_delete(recording_id=recording.pk, policy="admin:officer")


def test_s3_down_is_recorded_and_the_reconcile_finishes(s3, locked_bucket, stored, settings):
    recordings = [stored(locked_bucket) for _ in range(3)]
    hold = place(recording_sids=[r.sid for r in recordings])
    endpoint = settings.AWS_S3_ENDPOINT_URL
    with socket.socket() as closed:  # a port nothing listens on: connections are refused
        closed.bind(("127.0.0.1", 0))
        settings.AWS_S3_ENDPOINT_URL = f"http://127.0.0.1:{closed.getsockname()[1]}"
    settings.STORAGE_CONNECT_TIMEOUT = 0.5

    run = hold_locks.hold_locks_apply(hold_id=hold.pk)

    assert run.stopped  # stopped at the first unreachable answer, not tried 3 times
    assert (run.locked, run.failed, run.remaining) == (0, 1, 2)
    failed = HoldObjectLock.objects.get(hold=hold)
    assert failed.state == HoldLockState.FAILED
    assert "unreachable" in failed.error
    assert lock_rows("lock_failed")[0].outcome == "error"
    counts = hold_locks.hold_lock_counts(hold=hold)
    assert (counts["failed"], counts["owed"], counts["locked"]) == (1, 3, 0)

    settings.AWS_S3_ENDPOINT_URL = endpoint
    totals = hold_locks.hold_locks_reconcile()
    assert totals["locked"] == 3
    assert all(s3_status(s3, r) == "ON" for r in recordings)
    assert hold_locks.hold_lock_counts(hold=hold)["owed"] == 0


def test_a_recording_archived_after_the_hold_is_locked_by_the_reconcile(
    s3, locked_bucket, stored, recording_make
):
    call = "CA" + secrets.token_hex(16)
    early = stored(locked_bucket, call_sid=call)
    hold = place(call_sids=[call])
    hold_locks.hold_locks_apply(hold_id=hold.pk)
    late = recording_make(call_sid=call)  # at Twilio: nothing of ours to lock yet
    assert hold_locks.hold_locks_reconcile()["locked"] == 0

    s3.put_object(Bucket=locked_bucket, Key=f"r/{late.sid}", Body=b"late")
    Recording.objects.filter(pk=late.pk).update(
        media_location=MediaLocation.S3, media_bucket=locked_bucket, media_key=f"r/{late.sid}"
    )
    late.refresh_from_db()
    assert hold_locks.hold_locks_reconcile()["locked"] == 1
    assert s3_status(s3, late) == "ON"
    assert s3_status(s3, early) == "ON"


def test_the_case_page_reads_the_locks_back_a_page_at_a_time(
    s3, locked_bucket, stored, recording_make, settings
):
    settings.ADMIN_REQUIRE_OTP = False
    held = [stored(locked_bucket) for _ in range(3)]
    extra = [recording_make() for _ in range(52)]  # at Twilio: listed, nothing to read back
    hold = place(
        recording_sids=[r.sid for r in held + extra],
        matter_name="Smith v. Acme",
        custodians=["Sam Taylor", "alex@example.com"],
    )
    hold_locks.hold_locks_apply(hold_id=hold.pk)
    client = Client()
    client.force_login(User.objects.create_superuser("officer", password="x" * 20))
    url = reverse("admin:recordings_legalhold_case", args=[hold.pk])

    page = client.get(url)

    assert page.status_code == 200
    text = page.content.decode()
    assert "Smith v. Acme" in text
    assert "alex@example.com" in text
    assert text.count("locked (read back from S3)") == 3
    assert "55 recordings covered; 3 in the portal" in text
    assert "Page 1 of 2" in text
    assert "locked (read back from S3)" not in client.get(url + "?page=2").content.decode()
    assert AccessLog.objects.filter(reason_code="case_view").count() == 2

    found = client.get(reverse("admin:recordings_legalhold_changelist") + "?q=alex@example")
    assert "Smith v. Acme" in found.content.decode()  # found by a custodian

    nobody = Client()
    nobody.force_login(User.objects.create_user("clerk", password="x" * 20, is_staff=True))
    assert nobody.get(url).status_code == 403
    denied = AccessLog.objects.get(reason_code="permission", identity__contains="clerk")
    assert denied.detail["page"] == "case"


def test_a_hold_from_a_selection_locks_its_objects_once_committed(
    s3, locked_bucket, stored, settings, django_capture_on_commit_callbacks
):
    settings.ADMIN_REQUIRE_OTP = False
    chosen = stored(locked_bucket)
    client = Client()
    client.force_login(User.objects.create_superuser("officer", password="x" * 20))

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        answer = client.post(
            reverse("admin:recordings_recording_hold"),
            {
                "mode": "selection",
                "sids": chosen.sid,
                "confirm": "1",
                "reason": "regulator",
                "matter_name": "FCA review",
                "custodians": "Sam Taylor\n\nSam Taylor\nalex@example.com",
            },
        )

    assert answer.status_code == 302
    assert len(callbacks) == 1
    hold = LegalHold.objects.get()
    assert (hold.matter_name, hold.custodians) == ("FCA review", ["Sam Taylor", "alex@example.com"])
    assert s3_status(s3, chosen) == "ON"
    assert lock_rows("lock_on")[0].identity.endswith("officer")
