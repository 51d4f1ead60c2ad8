"""Syncing recordings from Twilio's REST API (the fake Twilio over real HTTP): fields, order,
failures, retries, reconciliation and subaccounts."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from portal.sealing import unseal
from recordings import jobs
from recordings.custody import subaccounts
from recordings.ingest import events, reconcile, sync
from recordings.integrations import twilio_api
from recordings.models import (
    EventState,
    MediaLocation,
    Recording,
    RecordingEvent,
    SyncState,
    TwilioSubaccount,
)
from recordings.tests.callbacks import callback_params, new_sid, post_form

pytestmark = pytest.mark.django_db

START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def add(fake, sid=None, **fields):
    sid = sid or new_sid("RE")
    fields.setdefault("call_sid", "CA" + "1" * 32)
    fields.setdefault("start_time", START)
    fields.setdefault("duration", "42")
    fields.setdefault("channels", 2)
    fields.setdefault("media", b"RIFF....WAVE")
    fake.add_recording(sid, **fields)
    return sid


def deliver(client, sid, status="completed", **overrides) -> RecordingEvent:
    assert post_form(client, callback_params(sid, status, **overrides)).status_code == 204
    return RecordingEvent.objects.get(recording_sid=sid, recording_status=status)


def test_sync_stores_every_field_that_matters(client, fake_twilio):
    sid = add(fake_twilio, price="-0.00250", price_unit="USD", source="StartCallRecordingAPI")
    event = deliver(client, sid)
    events.event_process(event_id=event.pk)

    recording = Recording.objects.get(sid=sid)
    assert recording.status == "completed"
    assert recording.sync_state == SyncState.SYNCED
    assert recording.account_sid == fake_twilio.account_sid
    assert recording.call_sid == "CA" + "1" * 32
    assert recording.source == "StartCallRecordingAPI"
    assert recording.channels == 2
    assert recording.track == "both"  # only the callback carries it
    assert recording.duration_seconds == 42
    assert recording.start_time == START
    assert recording.price == Decimal("-0.00250")
    assert recording.price_unit == "USD"
    assert recording.error_code is None
    assert recording.media_location == MediaLocation.TWILIO
    assert recording.media_url.endswith(f"/Recordings/{sid}")
    assert recording.twilio_uri.endswith(f"/Recordings/{sid}.json")
    assert not recording.is_encrypted
    event.refresh_from_db()
    assert event.state == EventState.PROCESSED
    assert fake_twilio.count("GET", f"/Recordings/{sid}.json") == 1


@pytest.mark.parametrize(
    "details",
    [
        {
            "type": "rsa-aes",
            "public_key_sid": "CR" + "2" * 32,
            "encrypted_cek": "Q0VL",
            "iv": "SVY=",
        },
        {
            "type": "rsa-aes",
            "encryption_public_key_sid": "CR" + "2" * 32,
            "encryption_cek": "Q0VL",
            "iv": "SVY=",
        },
    ],
    ids=["callback-spelling", "rest-spelling"],
)
def test_encryption_details_in_either_spelling(client, fake_twilio, details):
    sid = add(fake_twilio, encryption_details=details)
    events.event_process(event_id=deliver(client, sid).pk)
    recording = Recording.objects.get(sid=sid)
    assert recording.is_encrypted
    assert recording.encryption_type == "rsa-aes"
    assert recording.encryption_public_key_sid == "CR" + "2" * 32
    assert recording.encryption_cek == "Q0VL"
    assert recording.encryption_iv == "SVY="


def test_encryption_details_from_the_callback_json_string(client, fake_twilio):
    sid = new_sid("RE")
    details = json.dumps(
        {
            "type": "rsa-aes",
            "public_key_sid": "CR" + "3" * 32,
            "encrypted_cek": "QQ==",
            "iv": "Qg==",
        }
    )
    event = deliver(client, sid, "completed", EncryptionDetails=details)
    sync.recording_apply_callback(event=event)
    recording = Recording.objects.get(sid=sid)
    assert recording.encryption_public_key_sid == "CR" + "3" * 32


@pytest.mark.parametrize(
    ("media_url", "bucket", "key"),
    [
        ("https://acme-rec.s3.amazonaws.com/calls/AC1/RE1.wav", "acme-rec", "calls/AC1/RE1.wav"),
        ("https://acme-rec.s3.eu-west-1.amazonaws.com/a/RE1.wav", "acme-rec", "a/RE1.wav"),
        ("https://acme-rec.s3-eu-west-1.amazonaws.com/a/RE1.wav", "acme-rec", "a/RE1.wav"),
        ("https://s3.eu-west-1.amazonaws.com/acme-rec/a/RE1.wav", "acme-rec", "a/RE1.wav"),
        ("https://s3.amazonaws.com/acme.rec/a/b%20c.wav", "acme.rec", "a/b c.wav"),
    ],
)
def test_externally_stored_media_is_located_by_bucket_and_key(
    client, fake_twilio, media_url, bucket, key
):
    sid = add(fake_twilio, media_url=media_url, media=None)
    events.event_process(event_id=deliver(client, sid).pk)
    recording = Recording.objects.get(sid=sid)
    assert (recording.media_location, recording.media_bucket, recording.media_key) == (
        MediaLocation.S3,
        bucket,
        key,
    )


def test_completed_before_in_progress_never_moves_back(client, fake_twilio):
    sid = add(fake_twilio, status="completed")
    completed = deliver(client, sid, "completed")
    in_progress = deliver(client, sid, "in-progress")
    events.event_process(event_id=completed.pk)
    fake_twilio.update_recording(sid, status="processing")  # a stale answer from the API
    events.event_process(event_id=in_progress.pk)
    recording = Recording.objects.get(sid=sid)
    assert recording.status == "completed"
    assert recording.duration_seconds == 42


@pytest.mark.parametrize("status", ["absent", "failed"])
def test_absent_and_failed_are_kept_with_their_error_code(client, fake_twilio, status):
    sid = new_sid("RE")  # Twilio no longer has it: the REST fetch answers 404
    event = deliver(client, sid, status, ErrorCode="16105")
    events.event_process(event_id=event.pk)
    recording = Recording.objects.get(sid=sid)
    assert recording.status == status
    assert recording.error_code == 16105
    assert recording.sync_state == SyncState.SYNC_FAILED
    assert "404" in recording.sync_error
    event.refresh_from_db()
    assert event.state == EventState.FAILED


def test_twilio_down_keeps_the_event_pending_then_syncs_when_back(client, fake_twilio):
    sid = add(fake_twilio)
    event = deliver(client, sid)
    fake_twilio.fail(503)
    with pytest.raises(twilio_api.TwilioUnavailable):
        events.event_process(event_id=event.pk)
    event.refresh_from_db()
    assert event.state == EventState.PENDING
    assert event.attempts == 1
    assert "503" in event.last_error
    assert event.next_attempt_at > timezone.now()
    recording = Recording.objects.get(sid=sid)  # what the callback said is kept meanwhile
    assert recording.status == "completed"
    assert recording.sync_state == SyncState.PENDING

    fake_twilio.reset_faults()
    events.event_process(event_id=event.pk)
    event.refresh_from_db()
    assert event.state == EventState.PROCESSED
    assert Recording.objects.get(sid=sid).sync_state == SyncState.SYNCED


def test_twilio_unreachable_is_transient(client, fake_twilio, settings):
    sid = add(fake_twilio)
    event = deliver(client, sid)
    fake_twilio.drop()
    with pytest.raises(twilio_api.TwilioUnavailable):
        events.event_process(event_id=event.pk)
    assert RecordingEvent.objects.get(pk=event.pk).state == EventState.PENDING


def test_a_final_refusal_stops_at_once(client, fake_twilio):
    sid = add(fake_twilio)
    event = deliver(client, sid)
    fake_twilio.fail(401)
    events.event_process(event_id=event.pk)
    event.refresh_from_db()
    assert event.state == EventState.FAILED
    assert event.attempts == 0
    recording = Recording.objects.get(sid=sid)
    assert recording.sync_state == SyncState.SYNC_FAILED
    assert "401" in recording.sync_error


def test_retry_schedule_lasts_more_than_two_hours():
    delays = [jobs.retry_delay(n) for n in range(1, jobs.MAX_RETRIES + 1)]
    assert delays == sorted(delays)
    assert delays[0] == 30
    assert sum(delays) >= 2 * 3600
    # Every delay stays under the broker's visibility timeout, so no retry is delivered twice.
    from django.conf import settings

    assert max(delays) < settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]


def test_five_hundred_shuffled_callbacks_with_duplicates_end_in_the_right_rows(client, fake_twilio):
    rng = random.Random(20261123)
    sids = [add(fake_twilio, duration=str(10 + n)) for n in range(120)]
    absent = [new_sid("RE") for _ in range(20)]
    deliveries = []
    for sid in sids:
        deliveries += [(sid, "in-progress"), (sid, "completed")]
    deliveries += [(sid, "absent") for sid in absent]
    unique = len(deliveries)
    while len(deliveries) < 500:
        deliveries.append(rng.choice(deliveries[:unique]))  # Twilio's retries
    rng.shuffle(deliveries)

    for sid, status in deliveries:
        assert post_form(client, callback_params(sid, status)).status_code == 204

    assert RecordingEvent.objects.count() == unique
    assert sum(RecordingEvent.objects.values_list("deliveries", flat=True)) == 500
    pending = list(RecordingEvent.objects.values_list("pk", flat=True))
    rng.shuffle(pending)
    for event_id in pending:
        events.event_process(event_id=event_id)

    assert Recording.objects.count() == len(sids) + len(absent)
    for n, sid in enumerate(sids):
        recording = Recording.objects.get(sid=sid)
        assert (recording.status, recording.sync_state, recording.duration_seconds) == (
            "completed",
            SyncState.SYNCED,
            10 + n,
        )
    assert set(Recording.objects.filter(sid__in=absent).values_list("status", flat=True)) == {
        "absent"
    }
    assert not RecordingEvent.objects.filter(state=EventState.PENDING).exists()


def test_reconcile_finds_what_callbacks_missed(fake_twilio):
    fresh = [add(fake_twilio, date_created=START) for _ in range(2)]
    for sid in fresh:
        sync.recording_sync(sid=sid)
    stale = add(fake_twilio, date_created=START, status="processing")
    sync.recording_sync(sid=stale)
    fake_twilio.update_recording(stale, status="completed")
    missing = [add(fake_twilio, date_created=START) for _ in range(2)]
    add(fake_twilio, date_created=START - timedelta(days=30))  # before --since

    out, err = StringIO(), StringIO()
    call_command("reconcile_recordings", "--since", "2026-11-20", stdout=out, stderr=err)
    assert "seen 5, synced 3, up to date 2, failed 0" in out.getvalue()
    assert "rec" in err.getvalue()  # the progress bar
    assert Recording.objects.get(sid=stale).status == "completed"
    assert Recording.objects.filter(sid__in=missing, sync_state=SyncState.SYNCED).count() == 2


def test_reconcile_rejects_a_bad_date():
    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        call_command("reconcile_recordings", "--since", "23/11/2026")


def test_reconcile_with_twilio_down_says_so(fake_twilio):
    fake_twilio.fail(503)
    with pytest.raises(CommandError, match="503"):
        call_command("reconcile_recordings", "--since", "2026-11-20", "--no-progress")


def test_subaccounts_are_refreshed_with_sealed_tokens_and_reconciled(fake_twilio):
    sub, token = new_sid("AC"), "5" * 32
    fake_twilio.add_subaccount(sub, token, friendly_name="EMEA")
    assert subaccounts.subaccounts_refresh() == 1
    stored = TwilioSubaccount.objects.get()
    assert stored.sid == sub
    assert stored.friendly_name == "EMEA"
    assert token not in stored.sealed_auth_token
    assert unseal(stored.sealed_auth_token, purpose=f"subaccount-token:{sub}") == token.encode()

    sid = add(fake_twilio, account_sid=sub, date_created=START)
    summary = reconcile.recordings_reconcile(since=START.date())
    assert summary.synced == 1
    assert Recording.objects.get(sid=sid).account_sid == sub

    fake_twilio.reset()
    assert subaccounts.subaccounts_refresh() == 0
    assert not TwilioSubaccount.objects.exists()


def test_sync_recording_command(fake_twilio):
    sid = add(fake_twilio)
    out = StringIO()
    call_command("sync_recording", sid, stdout=out)
    assert f"{sid}: completed, 42 s, media at twilio" in out.getvalue()
    with pytest.raises(CommandError, match="not a recording SID"):
        call_command("sync_recording", "RE123")
    with pytest.raises(CommandError, match="404"):
        call_command("sync_recording", new_sid("RE"))
