"""Retention policies and legal holds (``recordings.lifecycle.retention``), against moto's S3 and
the fake Twilio over real HTTP: the plan, soft then hard deletion, holds, the faults and crash
recovery, playback of deleted recordings, the command, the task and the admin."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from audit.models import AccessLog
from conftest import TEST_BUCKET
from recordings import tasks
from recordings.ingest import sync
from recordings.integrations import storage, twilio_api
from recordings.lifecycle import retention
from recordings.models import LegalHold, MediaLocation, Recording, RecordingStatus, RetentionPolicy
from recordings.tests.callbacks import new_sid
from recordings.tests.playback_fixtures import (
    allow_supervisors,
    ask,
    flex_token,
    local_recording,
)

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=40)
ACCOUNT = "AC" + "a" * 32


def stored(s3, fake, *, start: datetime = OLD, at_twilio: bool = True, **fields) -> Recording:
    """A completed recording whose media is in the test bucket (and, when ``at_twilio``, still
    at the fake Twilio too)."""
    sid = new_sid("RE")
    key = f"archive/{sid}.wav"
    s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=b"RIFF-test-media")
    if at_twilio:
        fake.add_recording(sid, media=b"RIFF-test-media", start_time=start)
    values = {
        "account_sid": ACCOUNT,
        "call_sid": new_sid("CA"),
        "status": RecordingStatus.COMPLETED,
        "source": "DialVerb",
        "start_time": start,
        "media_location": MediaLocation.S3,
        "media_bucket": TEST_BUCKET,
        "media_key": key,
    }
    values.update(fields)
    return Recording.objects.create(sid=sid, **values)


def object_exists(s3, recording: Recording) -> bool:
    listing = s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix=recording.media_key)
    return listing.get("KeyCount", 0) > 0


def deletes(fake, sid: str) -> int:
    return fake.count("DELETE", f"/Recordings/{sid}")


def rows(action: str = retention.ACTION, **filters) -> list[AccessLog]:
    return list(AccessLog.objects.filter(action=action, **filters).order_by("sequence"))


@pytest.fixture
def policy() -> RetentionPolicy:
    return RetentionPolicy.objects.create(name="keep-30", keep_days=30, hard_delete_grace_days=7)


def soft_then_hard(recording: Recording) -> None:
    """Run the policies at NOW (soft) and after the grace period (hard)."""
    retention.retention_apply(now=NOW)
    recording.refresh_from_db()
    assert recording.soft_deleted_at == NOW
    retention.retention_apply(now=NOW + timedelta(days=8))


# --- the plan -----------------------------------------------------------------------------------


def test_plan_takes_recordings_past_keep_in_scope_never_held_or_deleted(s3, fake_twilio):
    RetentionPolicy.objects.create(name="conf-10", keep_days=10, sources=["Conference"])
    RetentionPolicy.objects.create(name="acct-30", keep_days=30, account_sids=[ACCOUNT])
    RetentionPolicy.objects.create(name="off", keep_days=1, enabled=False)
    due = stored(s3, fake_twilio, start=NOW - timedelta(days=31))
    young = stored(s3, fake_twilio, start=NOW - timedelta(days=29))
    other_account = stored(s3, fake_twilio, account_sid="AC" + "b" * 32)
    conference_young = stored(
        s3, fake_twilio, source="Conference", account_sid="AC" + "c" * 32, start=NOW - timedelta(11)
    )
    # Both policies cover it: the longest keep (30 days) wins over the conference's 10.
    conference_both = stored(s3, fake_twilio, source="Conference", start=NOW - timedelta(days=11))
    held = stored(s3, fake_twilio)
    LegalHold.objects.create(reason="litigation", recording_sids=[held.sid])
    stored(s3, fake_twilio, status=RecordingStatus.DELETED)

    plan = retention.retention_plan(now=NOW)

    assert {(step.recording_sid, step.kind, step.policy) for step in plan} == {
        (due.sid, "soft", "acct-30"),
        (conference_young.sid, "soft", "conf-10"),
    }
    assert young.sid not in {s.recording_sid for s in plan}
    assert other_account.sid not in {s.recording_sid for s in plan}
    assert conference_both.sid not in {s.recording_sid for s in plan}
    assert not AccessLog.objects.exists()  # planning writes nothing


# --- soft, then hard ----------------------------------------------------------------------------


def test_soft_delete_hides_at_once_then_hard_delete_after_grace(client, s3, fake_twilio, policy):
    allow_supervisors()
    token = flex_token(fake_twilio)
    recording, _ = local_recording(start_time=OLD)
    fake_twilio.add_recording(recording.sid, media=b"RIFF", start_time=OLD)
    # A media link issued before the deletion.
    media_url = ask(client, recording.sid, token).json()["media_url"]
    assert client.get(media_url).status_code == 200

    summary = retention.retention_apply(now=NOW)

    assert summary.soft_deleted == [recording.sid]
    recording.refresh_from_db()
    assert (recording.soft_deleted_at, recording.deleted_by_policy) == (NOW, "keep-30")
    assert recording.status == RecordingStatus.COMPLETED  # only hidden so far
    answer = ask(client, recording.sid, token)
    assert (answer.status_code, answer.json()["error"]) == (404, "recording_deleted")
    fetched = client.get(media_url)
    assert (fetched.status_code, fetched.json()["error"]) == (404, "recording_deleted")
    assert rows("url_provider")[-1].reason_code == "recording_deleted"
    assert rows("media_fetch")[-1].reason_code == "recording_deleted"
    (soft,) = rows()
    assert (soft.outcome, soft.reason_code, soft.recording_sid) == (
        "allowed",
        "soft",
        recording.sid,
    )
    assert soft.detail == {"policy": "keep-30"}
    path = storage.local_root() / recording.media_key
    assert path.exists()
    assert deletes(fake_twilio, recording.sid) == 0

    # Within the grace period nothing more happens.
    assert retention.retention_plan(now=NOW + timedelta(days=6)) == []
    summary = retention.retention_apply(now=NOW + timedelta(days=7, seconds=1))

    assert summary.hard_deleted == [recording.sid]
    recording.refresh_from_db()
    assert recording.status == RecordingStatus.DELETED
    assert recording.hard_deleted_at is not None
    assert recording.twilio_media_deleted_at is not None
    assert recording.media_location == MediaLocation.UNKNOWN
    assert not path.exists()
    assert deletes(fake_twilio, recording.sid) == 1
    assert fake_twilio.get_media(recording.sid) is None
    assert [(r.reason_code, r.detail) for r in rows()] == [
        ("soft", {"policy": "keep-30"}),
        ("hard", {"policy": "keep-30"}),
    ]
    # Idempotent: nothing left to do, nothing repeated.
    again = retention.retention_apply(now=NOW + timedelta(days=30))
    assert again.as_dict()["planned"] == 0
    assert deletes(fake_twilio, recording.sid) == 1
    assert len(rows()) == 2


def test_hard_delete_removes_the_s3_object_and_keeps_the_row(s3, fake_twilio, policy):
    recording = stored(s3, fake_twilio)
    soft_then_hard(recording)
    recording.refresh_from_db()
    assert recording.status == RecordingStatus.DELETED
    assert not object_exists(s3, recording)
    assert recording.media_key  # where it was stays on record
    assert deletes(fake_twilio, recording.sid) == 1


# --- legal holds ----------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["recording", "call", "range"])
def test_a_held_recording_is_never_deleted_and_the_attempt_is_audited(
    s3, fake_twilio, policy, admin_user, scope
):
    recording = stored(s3, fake_twilio)
    hold_scope = {
        "recording": {"recording_sids": [recording.sid]},
        "call": {"call_sids": [recording.call_sid]},
        "range": {"started_from": OLD - timedelta(days=1), "started_until": OLD + timedelta(1)},
    }[scope]
    hold = LegalHold.objects.create(reason="subpoena", case_reference="CASE-7", **hold_scope)
    assert retention.recording_is_held(recording) == hold

    summary = retention.retention_apply(now=NOW)

    assert (summary.held, summary.soft_deleted) == ([recording.sid], [])
    recording.refresh_from_db()
    assert recording.soft_deleted_at is None
    (denied,) = rows()
    assert (denied.outcome, denied.reason_code) == ("denied", "legal_hold")
    assert denied.detail["case"] == "CASE-7"
    # Nor by any direct call of the services.
    with pytest.raises(retention.RecordingHeld):
        retention.recording_soft_delete(recording_id=recording.pk, policy="manual")
    assert len(rows(outcome="denied")) == 2

    retention.legal_hold_release(
        hold_id=hold.pk, released_by="officer", reason="case closed", context={"identity": "x"}
    )
    (released,) = rows("legal_hold")
    assert (released.reason_code, released.detail["reason"]) == ("released", "case closed")
    assert retention.recording_is_held(recording) is None
    assert retention.retention_apply(now=NOW).soft_deleted == [recording.sid]


def test_a_hold_placed_during_the_grace_period_stops_the_hard_delete(s3, fake_twilio, policy):
    recording = stored(s3, fake_twilio)
    retention.retention_apply(now=NOW)
    LegalHold.objects.create(reason="late subpoena", call_sids=[recording.call_sid])

    summary = retention.retention_apply(now=NOW + timedelta(days=8))

    assert summary.held == [recording.sid]
    recording.refresh_from_db()
    assert recording.hard_deleted_at is None
    assert object_exists(s3, recording)
    assert deletes(fake_twilio, recording.sid) == 0
    with pytest.raises(retention.RecordingHeld):
        retention.recording_hard_delete(recording_id=recording.pk)
    assert [r.detail["attempted"] for r in rows(outcome="denied")] == ["hard", "hard"]


def test_a_released_hold_no_longer_holds_and_a_hold_needs_a_scope():
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        LegalHold(reason="nothing named").full_clean()
    with pytest.raises(ValidationError):
        LegalHold(reason="bad", recording_sids="RE1").full_clean()
    hold = LegalHold.objects.create(reason="r", recording_sids=["RE" + "1" * 32])
    with pytest.raises(ValueError, match="release reason"):
        retention.legal_hold_release(hold_id=hold.pk, released_by="x", reason=" ")


# --- faults and crashes ---------------------------------------------------------------------------


@pytest.fixture
def refusing_deletes(s3, settings) -> Iterator[None]:
    """An S3 endpoint on loopback that refuses every DELETE with 403 AccessDenied (a bucket
    policy without ``s3:DeleteObject``)."""

    class Handler(BaseHTTPRequestHandler):
        def do_DELETE(self) -> None:
            body = b"<Error><Code>AccessDenied</Code><Message>Refused</Message></Error>"
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    real = settings.AWS_S3_ENDPOINT_URL
    settings.AWS_S3_ENDPOINT_URL = f"http://127.0.0.1:{server.server_address[1]}"
    yield
    settings.AWS_S3_ENDPOINT_URL = real
    server.shutdown()
    server.server_close()


def test_s3_refusing_the_delete_leaves_it_hidden_and_retryable(
    s3, fake_twilio, policy, refusing_deletes
):
    recording = stored(s3, fake_twilio)
    retention.retention_apply(now=NOW)
    summary = retention.retention_apply(now=NOW + timedelta(days=8))

    assert "AccessDenied" in summary.failed[recording.sid]
    recording.refresh_from_db()
    assert recording.soft_deleted_at is not None
    assert recording.status == RecordingStatus.COMPLETED
    assert recording.media_location == MediaLocation.S3
    assert "AccessDenied" in recording.retention_error
    assert deletes(fake_twilio, recording.sid) == 0  # Twilio's copy stays until S3's is gone
    assert [r.reason_code for r in rows()] == ["soft"]

    settings.AWS_S3_ENDPOINT_URL = s3.meta.endpoint_url  # the bucket accepts deletes again
    assert retention.retention_apply(now=NOW + timedelta(days=9)).hard_deleted == [recording.sid]
    recording.refresh_from_db()
    assert (recording.status, recording.retention_error) == (RecordingStatus.DELETED, "")
    assert not object_exists(s3, recording)


def test_twilio_404_means_already_deleted(s3, fake_twilio, policy):
    recording = stored(s3, fake_twilio, at_twilio=False)
    soft_then_hard(recording)
    recording.refresh_from_db()
    assert recording.status == RecordingStatus.DELETED
    assert recording.twilio_media_deleted_at is not None
    assert deletes(fake_twilio, recording.sid) == 1


def test_twilio_down_keeps_it_soft_deleted_and_the_next_run_finishes(s3, fake_twilio, policy):
    recording = stored(s3, fake_twilio)
    retention.retention_apply(now=NOW)
    fake_twilio.fail(503, path_contains=recording.sid)

    summary = retention.retention_apply(now=NOW + timedelta(days=8))

    assert recording.sid in summary.failed
    recording.refresh_from_db()
    assert recording.status == RecordingStatus.COMPLETED
    assert recording.hard_deleted_at is None
    assert recording.twilio_media_deleted_at is None
    assert recording.media_location == MediaLocation.UNKNOWN  # the stored copy is gone already
    assert not object_exists(s3, recording)
    assert "delete at Twilio" in recording.retention_error

    fake_twilio.reset_faults()
    assert retention.retention_apply(now=NOW + timedelta(days=9)).hard_deleted == [recording.sid]
    recording.refresh_from_db()
    assert recording.status == RecordingStatus.DELETED
    assert fake_twilio.get_media(recording.sid) is None
    assert [r.reason_code for r in rows()] == ["soft", "hard"]


def test_a_crash_between_the_storage_and_twilio_deletes_is_finished_by_the_rerun(
    s3, fake_twilio, policy, monkeypatch
):
    recording = stored(s3, fake_twilio)
    retention.retention_apply(now=NOW)

    def crash(**kwargs):
        raise SystemExit("worker killed")

    monkeypatch.setattr(twilio_api, "recording_delete", crash)
    with pytest.raises(SystemExit):
        retention.retention_apply(now=NOW + timedelta(days=8))
    recording.refresh_from_db()
    assert recording.media_location == MediaLocation.UNKNOWN
    assert recording.status == RecordingStatus.COMPLETED
    monkeypatch.undo()

    assert retention.retention_apply(now=NOW + timedelta(days=8)).hard_deleted == [recording.sid]
    recording.refresh_from_db()
    assert recording.status == RecordingStatus.DELETED
    assert deletes(fake_twilio, recording.sid) == 1
    assert [r.reason_code for r in rows()] == ["soft", "hard"]


# --- command, task, admin -------------------------------------------------------------------------


def test_command_dry_run_changes_nothing_then_applies(s3, fake_twilio, policy):
    due = stored(s3, fake_twilio, start=datetime(2020, 1, 1, tzinfo=UTC))
    held = stored(s3, fake_twilio, start=datetime(2020, 1, 1, tzinfo=UTC))
    LegalHold.objects.create(reason="r", recording_sids=[held.sid])

    out = StringIO()
    call_command("apply_retention", "--dry-run", stdout=out)
    assert f"{due.sid}  soft  keep-30  would delete" in out.getvalue()
    assert f"{held.sid}  held" in out.getvalue()
    assert "dry run: 1 due, 0 soft-deleted, 0 hard-deleted, 1 held, 0 failed" in out.getvalue()
    assert not Recording.objects.filter(soft_deleted_at__isnull=False).exists()
    assert not AccessLog.objects.exists()

    out = StringIO()
    call_command("apply_retention", stdout=out)
    assert f"{due.sid}  soft  keep-30  deleted" in out.getvalue()
    assert "1 due, 1 soft-deleted, 0 hard-deleted, 1 held, 0 failed" in out.getvalue()


def test_daily_task_is_scheduled_and_applies(s3, fake_twilio, policy):
    entry = settings.CELERY_BEAT_SCHEDULE["apply-retention-policies"]
    assert entry["task"] == "recordings.tasks.apply_retention"
    stored(s3, fake_twilio, start=datetime(2020, 1, 1, tzinfo=UTC))
    assert tasks.apply_retention()["soft_deleted"] == 1


def test_admin_delete_refuses_held_recordings_with_a_message_and_an_audit_row(
    admin_client, s3, fake_twilio
):
    free = stored(s3, fake_twilio)
    held = stored(s3, fake_twilio)
    LegalHold.objects.create(reason="r", case_reference="C-1", recording_sids=[held.sid])

    confirmation = admin_client.post(
        reverse("admin:recordings_recording_changelist"),
        {"action": "delete_now", "_selected_action": [free.pk, held.pk]},
    )
    assert "1 recording on legal hold will be refused" in confirmation.content.decode()
    assert not rows()  # nothing is deleted before the confirmation
    response = admin_client.post(
        reverse("admin:recordings_recording_delete_confirm"),
        {"ids": f"{free.pk} {held.pk}", "reason": "duplicate upload", "confirm": "Delete"},
        follow=True,
    )

    text = response.content.decode()
    assert f"{held.sid} is under legal hold C-1 and was not deleted" in text
    free.refresh_from_db()
    held.refresh_from_db()
    assert free.soft_deleted_at is not None
    assert held.soft_deleted_at is None
    assert free.deleted_by_policy == "admin:admin"
    assert {(r.recording_sid, r.outcome, r.identity) for r in rows()} == {
        (free.sid, "allowed", "admin:admin"),
        (held.sid, "denied", "admin:admin"),
    }


def test_admin_places_and_releases_holds_audited_never_deletes_them(admin_client):
    response = admin_client.post(
        reverse("admin:recordings_legalhold_add"),
        {
            "reason": "litigation",
            "case_reference": "CASE-9",
            "recording_sids": '["RE' + "2" * 32 + '"]',
            "call_sids": "[]",
        },
    )
    assert response.status_code == 302
    hold = LegalHold.objects.get()
    assert hold.created_by == "admin"
    (created,) = rows("legal_hold")
    assert (created.reason_code, created.detail["case"]) == ("created", "CASE-9")
    url = reverse("admin:recordings_legalhold_changelist")

    admin_client.post(url, {"action": "release", "_selected_action": [hold.pk]})
    hold.refresh_from_db()
    assert hold.released_at is None  # no reason, no release

    admin_client.post(
        url, {"action": "release", "_selected_action": [hold.pk], "release_reason": "settled"}
    )
    hold.refresh_from_db()
    assert (hold.released_by, hold.release_reason) == ("admin", "settled")
    assert [r.reason_code for r in rows("legal_hold")] == ["created", "released"]
    delete = admin_client.post(reverse("admin:recordings_legalhold_delete", args=[hold.pk]))
    assert delete.status_code == 403
    assert LegalHold.objects.exists()


def test_retention_policies_superusers_change_viewers_read(admin_client, django_user_model):
    response = admin_client.post(
        reverse("admin:recordings_retentionpolicy_add"),
        {
            "name": "one-year",
            "enabled": "on",
            "account_sids": "[]",
            "sources": "[]",
            "keep_days": "365",
            "hard_delete_grace_days": "7",
        },
    )
    assert response.status_code == 302
    policy = RetentionPolicy.objects.get()
    (row,) = rows("retention_policy")
    assert (row.reason_code, row.detail["changes"]["keep_days"]["new"]) == ("created", 365)

    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.groups.add(Group.objects.get(name="compliance viewer"))
    client = Client()
    client.force_login(viewer)
    change = reverse("admin:recordings_retentionpolicy_change", args=[policy.pk])
    assert client.get(change).status_code == 200
    client.post(change, {"name": "x", "keep_days": "1", "hard_delete_grace_days": "0"})
    policy.refresh_from_db()
    assert policy.keep_days == 365
    assert client.get(reverse("admin:recordings_retentionpolicy_add")).status_code == 403


def test_a_soft_deleted_recording_is_not_archived_again(s3, fake_twilio, policy):
    from recordings.lifecycle import archive
    from recordings.models import ArchivePolicy

    ArchivePolicy.objects.create(account_sid="", key_prefix="archive")
    recording = stored(s3, fake_twilio, media_location=MediaLocation.TWILIO, media_key="")
    retention.retention_apply(now=NOW)
    outcome = archive.recording_archive(recording_id=recording.pk)
    assert (outcome.code, outcome.detail) == ("skipped", "deleted by retention")


def test_a_sync_after_deletion_never_points_the_recording_back_at_twilio(fake_twilio):
    sid = new_sid("RE")
    fake_twilio.add_recording(sid, call_sid="CA" + "1" * 32, duration="5", channels=1)
    Recording.objects.create(
        sid=sid,
        account_sid=fake_twilio.account_sid,
        status=RecordingStatus.DELETED,
        media_location=MediaLocation.UNKNOWN,
        soft_deleted_at=NOW,
        hard_deleted_at=NOW,
    )
    sync.recording_sync(sid=sid)
    recording = Recording.objects.get(sid=sid)
    assert recording.media_location == MediaLocation.UNKNOWN
    assert recording.status == RecordingStatus.DELETED


def test_hard_delete_takes_the_waveform_with_the_media(settings, tmp_path):
    """The analysis is derived from the audio: when the media goes for good, so do the
    analysis row and its stored files."""
    from django.utils import timezone

    from recordings.analysis import store
    from recordings.models import AnalysisState, RecordingAnalysis

    settings.MEDIA_ROOT = str(tmp_path)
    recording = Recording.objects.create(
        sid=new_sid("RE"),
        account_sid=new_sid("AC"),
        status=RecordingStatus.COMPLETED,
        soft_deleted_at=timezone.now(),
        twilio_media_deleted_at=timezone.now(),
    )
    sha = "ab" * 32
    analysis = RecordingAnalysis.objects.create(
        recording=recording, media_sha256=sha, state=AnalysisState.DONE, algorithm=1
    )
    store.analysis_files_write(
        media_sha256=sha, algorithm=analysis.algorithm, peaks={"version": 2}, speech={}
    )
    assert store.analysis_files_read(media_sha256=sha, algorithm=analysis.algorithm)

    retention.recording_hard_delete(recording_id=recording.pk)

    assert not RecordingAnalysis.objects.filter(recording=recording).exists()
    with pytest.raises(storage.StorageNotFound):
        store.analysis_files_read(media_sha256=sha, algorithm=analysis.algorithm)
