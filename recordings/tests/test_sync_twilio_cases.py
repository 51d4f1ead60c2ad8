"""Twilio cases the sync has to play (the fake Twilio over real HTTP): the recording statuses
between in-progress and completed, recordings deleted at Twilio (metadata kept 40 days, then
404), encryption for a public key the portal holds no private key for (error 16107), and
encrypted media asked as .mp3 (error 16109)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.urls import reverse
from django.utils import timezone

from audit.admin import selectors
from faketwilio.recording_formats import make_wav
from recordings.custody import keys
from recordings.ingest import events, sync
from recordings.integrations import twilio_api
from recordings.models import (
    EventState,
    MediaLocation,
    Recording,
    RecordingEvent,
    RecordingStatus,
    SyncState,
)
from recordings.tests.callbacks import callback_params, new_sid, post_form

pytestmark = pytest.mark.django_db

START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CALL = "CA" + "1" * 32


def add(fake, sid: str | None = None, **fields) -> str:
    sid = sid or new_sid("RE")
    fields.setdefault("call_sid", CALL)
    fields.setdefault("start_time", START)
    fields.setdefault("media", make_wav(1))
    fake.add_recording(sid, **fields)
    return sid


def deliver(client, sid: str, status: str = "completed", **overrides) -> RecordingEvent:
    assert post_form(client, callback_params(sid, status, **overrides)).status_code == 204
    return RecordingEvent.objects.get(recording_sid=sid, recording_status=status)


# --- statuses between in-progress and completed -----------------------------------------------


def test_paused_stopped_and_processing_are_stored_and_only_move_forward(client, fake_twilio):
    sid = add(fake_twilio, status="in-progress")
    seen = []
    for status in ("in-progress", "paused", "in-progress", "stopped", "processing", "completed"):
        fake_twilio.update_recording(sid, status=status)
        seen.append(sync.recording_sync(sid=sid).status)
    assert seen == ["in-progress", "paused", "in-progress", "stopped", "processing", "completed"]
    # Late answers never move it back: a lagging fetch, a callback processed late.
    fake_twilio.update_recording(sid, status="processing")
    assert sync.recording_sync(sid=sid).status == "completed"
    events.event_process(event_id=deliver(client, sid, "in-progress").pk)
    assert Recording.objects.get(sid=sid).status == "completed"


def test_a_stopped_recording_is_not_moved_back_by_a_late_in_progress(client, fake_twilio):
    sid = add(fake_twilio, status="stopped")
    assert sync.recording_sync(sid=sid).status == "stopped"
    fake_twilio.update_recording(sid, status="in-progress")
    assert sync.recording_sync(sid=sid).status == "stopped"


def test_a_processing_recording_is_not_archived_until_completed(
    fake_twilio, django_capture_on_commit_callbacks, monkeypatch
):
    queued: list[int] = []
    monkeypatch.setattr(sync.jobs, "queue_recording_archive", queued.append)
    monkeypatch.setattr(sync, "archive_enabled_for", lambda **_: True)
    sid = add(fake_twilio, status="processing")
    with django_capture_on_commit_callbacks(execute=True):
        recording = sync.recording_sync(sid=sid)
    # Twilio says -1 while it processes: no duration yet rather than a wrong one.
    assert (recording.status, recording.duration_seconds) == ("processing", None)
    assert queued == []
    fake_twilio.update_recording(sid, status="completed", duration=1)
    with django_capture_on_commit_callbacks(execute=True):
        recording = sync.recording_sync(sid=sid)
    assert (recording.status, recording.duration_seconds) == ("completed", 1)
    assert queued == [recording.pk]


# --- deleted at Twilio --------------------------------------------------------------------------


def test_a_recording_deleted_at_twilio_is_kept_and_marked_deleted(client, fake_twilio):
    sid = add(fake_twilio, price="-0.0025", duration="42", source="StartCallRecordingAPI")
    events.event_process(event_id=deliver(client, sid).pk)
    before = Recording.objects.get(sid=sid)
    assert before.media_location == MediaLocation.TWILIO
    assert twilio_api.recording_delete(sid=sid)  # deleted at Twilio, outside the sync

    # The next callback's sync finds it deleted (Twilio keeps the metadata for 40 days).
    event = deliver(client, sid, "absent")
    events.event_process(event_id=event.pk)
    assert RecordingEvent.objects.get(pk=event.pk).state == EventState.PROCESSED
    after = Recording.objects.get(sid=sid)
    assert after.status == RecordingStatus.DELETED
    assert after.sync_state == SyncState.SYNCED
    assert after.twilio_media_deleted_at is not None
    assert (after.call_sid, after.duration_seconds, after.start_time, after.source) == (
        before.call_sid,
        42,
        START,
        "StartCallRecordingAPI",
    )
    assert after.price == before.price
    assert fake_twilio.requests[-1].query.get("IncludeSoftDeleted") == "true"


def test_an_archived_recording_deleted_at_twilio_keeps_playing_from_the_bucket(fake_twilio):
    sid = add(fake_twilio)
    sync.recording_sync(sid=sid)
    archived_at = timezone.now() - timedelta(hours=1)
    Recording.objects.filter(sid=sid).update(
        media_location=MediaLocation.S3,
        media_bucket="archive",
        media_key=f"recordings/{sid}.wav",
        archived_at=archived_at,
    )
    twilio_api.recording_delete(sid=sid)
    recording = sync.recording_sync(sid=sid)
    assert recording.status == RecordingStatus.COMPLETED  # the bucket's copy still plays
    assert recording.twilio_media_deleted_at is not None
    assert (recording.media_location, recording.media_key) == (
        MediaLocation.S3,
        f"recordings/{sid}.wav",
    )


def test_a_recording_gone_for_good_keeps_what_the_portal_knew(client, fake_twilio, caplog):
    sid = add(fake_twilio, duration="42")
    events.event_process(event_id=deliver(client, sid).pk)
    fake_twilio.remove_recording(sid)  # past Twilio's 40 days: 404 even for deleted ones

    event = deliver(client, sid, "absent")
    with caplog.at_level(logging.WARNING, logger="recordings.ingest.sync"):
        events.event_process(event_id=event.pk)
    assert RecordingEvent.objects.get(pk=event.pk).state == EventState.PROCESSED
    recording = Recording.objects.get(sid=sid)
    assert recording.status == RecordingStatus.DELETED
    assert recording.sync_state == SyncState.SYNCED  # not stuck in sync_failed
    assert "no longer has this recording" in recording.sync_error
    assert "404" in recording.sync_error
    assert (recording.call_sid, recording.duration_seconds, recording.start_time) == (
        CALL,
        42,
        START,
    )
    assert recording.twilio_media_deleted_at is not None
    assert "gone at Twilio" in caplog.text

    # Once the deletion is known, a 404 is what is expected: no error to show.
    again = sync.recording_sync(sid=sid)
    assert (again.status, again.sync_error) == (RecordingStatus.DELETED, "")


def test_a_404_for_a_recording_the_portal_never_saw_is_still_an_error(fake_twilio):
    with pytest.raises(twilio_api.TwilioRejected) as refused:
        sync.recording_sync(sid=new_sid("RE"))
    assert refused.value.status == 404
    assert not Recording.objects.exists()


# --- error 16107: encrypted for a key the portal does not hold ---------------------------------


def public_pem_and_key() -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return private, keys.public_key_pem(key.public_key())


def details(public_key_sid: str) -> dict[str, str]:
    return {
        "type": "rsa-aes",
        "public_key_sid": public_key_sid,
        "encrypted_cek": "Q0VL",
        "iv": "SVY=",
    }


def test_error_16107_with_no_private_key_is_an_alert_an_officer_sees(
    client, admin_client, fake_twilio, caplog
):
    alternate = new_sid("CR")
    sid = add(fake_twilio, error_code=16107, encryption_details=details(alternate))
    event = deliver(client, sid, ErrorCode="16107", EncryptionDetails=details(alternate))
    with caplog.at_level(logging.ERROR, logger="recordings.ingest.sync"):
        events.event_process(event_id=event.pk)

    recording = Recording.objects.get(sid=sid)
    assert recording.sync_state == SyncState.SYNCED  # the metadata itself synced fine
    assert recording.error_code == 16107
    assert recording.encryption_public_key_sid == alternate
    assert "does not hold" in recording.sync_error
    assert "16107" in recording.sync_error
    assert f"import_private_key --public-key-sid {alternate}" in recording.sync_error
    assert sid in caplog.text
    assert "does not hold" in caplog.text

    alerts = {alert.title: alert for alert in selectors.dashboard(now=timezone.now()).alerts}
    alert = alerts["1 encrypted recording the portal cannot open"]
    assert alert.level == "error"
    assert alert.link.endswith("?private_key=missing")
    listed = admin_client.get(
        reverse("admin:recordings_recording_changelist") + "?private_key=missing"
    )
    assert listed.status_code == 200
    assert [r.sid for r in listed.context["cl"].result_list] == [sid]

    # Importing the private key clears it everywhere.
    private, _ = public_pem_and_key()
    keys.private_key_import(pem=private, public_key_sid=alternate)
    assert Recording.objects.get(sid=sid).sync_error == ""
    titles = {alert.title for alert in selectors.dashboard(now=timezone.now()).alerts}
    assert not any("cannot open" in title for title in titles)
    listed = admin_client.get(
        reverse("admin:recordings_recording_changelist") + "?private_key=missing"
    )
    assert list(listed.context["cl"].result_list) == []
    assert sync.recording_sync(sid=sid).sync_error == ""


def test_error_16107_with_the_private_key_held_is_stored_without_alert(admin_client, fake_twilio):
    private, _ = public_pem_and_key()
    alternate = new_sid("CR")
    keys.private_key_import(pem=private, public_key_sid=alternate)
    sid = add(fake_twilio, error_code=16107, encryption_details=details(alternate))
    recording = sync.recording_sync(sid=sid)
    assert (recording.error_code, recording.sync_error) == (16107, "")
    assert not Recording.objects.filter(sync_error__contains="does not hold").exists()
    listed = admin_client.get(
        reverse("admin:recordings_recording_changelist") + "?private_key=held"
    )
    assert [r.sid for r in listed.context["cl"].result_list] == [sid]
    titles = {alert.title for alert in selectors.dashboard(now=timezone.now()).alerts}
    assert not any("cannot open" in title for title in titles)


def test_a_recording_encrypted_for_a_missing_key_without_16107_is_flagged_too(fake_twilio):
    sid = add(fake_twilio, encryption_details=details(new_sid("CR")))
    recording = sync.recording_sync(sid=sid)
    assert "does not hold" in recording.sync_error
    assert "16107" not in recording.sync_error


# --- error 16109: encrypted media only as .wav --------------------------------------------------


def test_encrypted_media_asked_as_mp3_names_error_16109(fake_twilio):
    sid = add(fake_twilio, encryption_details=details(new_sid("CR")))
    with pytest.raises(twilio_api.TwilioRejected) as refused:
        twilio_api.recording_media_fetch(sid=sid, fmt="mp3")
    assert refused.value.code == 16109
    assert "only as .wav" in str(refused.value)
    media = twilio_api.recording_media_fetch(sid=sid)  # the portal's default: .wav
    assert b"".join(media.chunks)[:4] == b"RIFF"


def test_an_absent_recording_twilio_never_showed_keeps_its_status(client, fake_twilio):
    """A 404 for a recording only a callback announced (absent: no media ever) is no deletion:
    it stays ``absent`` with its error code, the failed sync shown as before."""
    sid = new_sid("RE")
    events.event_process(event_id=deliver(client, sid, "absent", ErrorCode="16105").pk)
    recording = Recording.objects.get(sid=sid)
    assert (recording.status, recording.error_code) == ("absent", 16105)
    assert recording.twilio_media_deleted_at is None
    assert recording.sync_state == SyncState.SYNC_FAILED
