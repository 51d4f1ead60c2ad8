"""The whole ingestion path with real parts: signed callback → PostgreSQL → Redis broker →
a real Celery worker → the fake Twilio over HTTP → the Recording row. Also the broker being down
and coming back, and the retry loop giving up."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.utils import timezone

from portal.celery import app
from recordings import jobs, tasks
from recordings.ingest import events, sync
from recordings.models import EventState, Recording, RecordingEvent, SyncState
from recordings.tests.callbacks import callback_params, new_sid, post_form

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def worker(fake_twilio) -> Iterator[None]:
    """A real Celery worker (solo pool, in a thread) consuming the Redis test broker."""
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        yield


def wait_for(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


@contextlib.contextmanager
def broker_down() -> Iterator[None]:
    """Point the app at a port where no broker listens, then back to the real one."""
    original = app.conf.broker_url

    def point_at(url: str) -> None:
        app.conf.broker_url = url
        app._pool = None
        app.amqp._producer_pool = None

    point_at("redis://127.0.0.1:1/0")
    try:
        yield
    finally:
        point_at(original)


def test_callback_to_synced_row_through_a_real_worker(client, fake_twilio, worker):
    sid = new_sid("RE")
    fake_twilio.add_recording(sid, call_sid="CA" + "1" * 32, duration="42", channels=2)
    assert post_form(client, callback_params(sid)).status_code == 204
    wait_for(lambda: Recording.objects.filter(sid=sid, sync_state=SyncState.SYNCED).exists())
    # The event is marked processed right after the recording's own commit.
    wait_for(
        lambda: RecordingEvent.objects.filter(
            recording_sid=sid, state=EventState.PROCESSED
        ).exists()
    )


def test_broker_down_at_callback_time_loses_nothing(client, fake_twilio):
    sid = new_sid("RE")
    fake_twilio.add_recording(sid, call_sid="CA" + "1" * 32, duration="7", channels=1)
    with broker_down():
        started = time.monotonic()
        response = post_form(client, callback_params(sid))
        assert response.status_code == 204
        assert time.monotonic() - started < 5  # Twilio is answered even with the broker gone
        event = RecordingEvent.objects.get(recording_sid=sid)
        assert event.state == EventState.PENDING
        RecordingEvent.objects.filter(pk=event.pk).update(
            next_attempt_at=timezone.now() - timedelta(minutes=10)  # ten minutes later…
        )
        assert tasks.dispatch_pending_events() == 0  # still down: nothing queued, nothing lost
        assert RecordingEvent.objects.get(pk=event.pk).state == EventState.PENDING
    # The broker is back: the periodic dispatcher queues the event and a worker syncs it.
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        assert tasks.dispatch_pending_events() == 1
        wait_for(lambda: RecordingEvent.objects.get(pk=event.pk).state == EventState.PROCESSED)
    assert Recording.objects.get(sid=sid).sync_state == SyncState.SYNCED


def test_dispatcher_picks_up_overdue_events(client, fake_twilio, worker):
    sid = new_sid("RE")
    fake_twilio.add_recording(sid, call_sid="CA" + "1" * 32, duration="7", channels=1)
    # As if the callback arrived ten minutes ago while the broker was down.
    event_id, _ = events.event_record(
        fields=events.callback_validate(callback_params(sid)), params=callback_params(sid)
    )
    RecordingEvent.objects.filter(pk=event_id).update(
        next_attempt_at=timezone.now() - timedelta(minutes=10)
    )
    assert tasks.dispatch_pending_events() == 1
    wait_for(lambda: Recording.objects.filter(sid=sid, sync_state=SyncState.SYNCED).exists())
    assert tasks.dispatch_pending_events() == 0


def test_worker_retries_while_twilio_is_down_then_succeeds(
    client, fake_twilio, worker, monkeypatch
):
    monkeypatch.setattr(jobs, "RETRY_BASE_SECONDS", 0)  # retry at once in the test
    sid = new_sid("RE")
    fake_twilio.add_recording(sid, call_sid="CA" + "1" * 32, duration="42", channels=2)
    fake_twilio.fail(503, count=2, path_contains=sid)
    assert post_form(client, callback_params(sid)).status_code == 204
    wait_for(lambda: RecordingEvent.objects.get(recording_sid=sid).state == EventState.PROCESSED)
    assert RecordingEvent.objects.get(recording_sid=sid).attempts == 3
    assert Recording.objects.get(sid=sid).sync_state == SyncState.SYNCED


def test_worker_gives_up_after_the_last_retry(client, fake_twilio, worker, monkeypatch):
    monkeypatch.setattr(jobs, "RETRY_BASE_SECONDS", 0)
    monkeypatch.setattr(jobs, "MAX_RETRIES", 2)
    sid = new_sid("RE")
    fake_twilio.add_recording(sid, call_sid="CA" + "1" * 32, duration="42", channels=2)
    fake_twilio.fail(503, path_contains=sid)
    assert post_form(client, callback_params(sid)).status_code == 204
    wait_for(lambda: Recording.objects.filter(sid=sid, sync_state=SyncState.SYNC_FAILED).exists())
    recording = Recording.objects.get(sid=sid)
    assert "gave up after 3 attempts" in recording.sync_error
    assert recording.status == "completed"  # what the callback said is still there
    assert RecordingEvent.objects.get(recording_sid=sid).state == EventState.FAILED


def test_nothing_is_left_in_the_broker_after_the_pipeline(client, fake_twilio, worker):
    sid = new_sid("RE")
    fake_twilio.add_recording(sid, call_sid="CA" + "1" * 32, duration="42", channels=2)
    post_form(client, callback_params(sid))
    wait_for(lambda: Recording.objects.filter(sid=sid, sync_state=SyncState.SYNCED).exists())
    wait_for(lambda: redis.Redis.from_url(settings.REDIS_URL).llen("celery") == 0)


def test_many_recordings_queued_at_once_are_archived_in_batches_by_a_real_worker(
    s3, fake_twilio, worker
):
    from recordings.models import ArchivePolicy, MediaLocation

    ArchivePolicy.objects.create(account_sid="", key_prefix="archive")
    ids = []
    for _ in range(jobs.ARCHIVE_BATCH_SIZE + 2):  # two messages, the second one short
        sid = new_sid("RE")
        fake_twilio.add_recording(sid, media=b"RIFF" + sid.encode() * 100, channels=1)
        ids.append(sync.recording_sync(sid=sid).pk)
    assert jobs.queue_recording_archives(ids) == len(ids)
    archived = Recording.objects.filter(pk__in=ids, media_location=MediaLocation.S3)
    wait_for(lambda: archived.count() == len(ids))
    wait_for(lambda: redis.Redis.from_url(settings.REDIS_URL).llen("celery") == 0)
