"""A hung upstream must cost a media request a bounded time, never the whole portal. With S3
hung (a loopback server that accepts connections and never answers) a play fails with an
audited 503 once the storage timeouts pass, ``/readyz`` still answers within a second or two,
and a signed webhook sent meanwhile answers at once, here under the production serving model
(gunicorn with ``portal.gunicorn``); media proxied from a Twilio that stalls fails the same
way once ``TWILIO_HTTP_TIMEOUT`` passes."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
import requests
from django.conf import settings
from django.db import connection
from django.utils import timezone

from audit.models import AccessLog
from conftest import TEST_BUCKET
from recordings.models import MediaLocation, Recording, RecordingStatus, SyncState
from recordings.tests.callbacks import WEBHOOK_PATH, callback_params, new_sid, sign
from recordings.tests.playback_fixtures import allow_supervisors, ask, flex_token

ROOT = Path(__file__).resolve().parents[2]


def hung_s3_recording() -> Recording:
    """A plain recording said to be in the test bucket (which the hung server never serves)."""
    sid = new_sid("RE")
    return Recording.objects.create(
        sid=sid,
        account_sid="AC" + "a" * 32,
        status=RecordingStatus.COMPLETED,
        source="DialVerb",
        channels=1,
        start_time=timezone.now() - timedelta(days=1),
        media_location=MediaLocation.S3,
        media_bucket=TEST_BUCKET,
        media_key=f"recordings/{sid}.wav",
        sync_state=SyncState.SYNCED,
    )


def media_path(client, fake_twilio) -> str:
    """A portal media link (path and token) for a new recording, issued as the player gets it."""
    return media_path_for(client, fake_twilio, hung_s3_recording())


def media_path_for(client, fake_twilio, recording: Recording) -> str:
    """A portal media link (path and token) for ``recording``, issued as the player gets it."""
    response = ask(client, recording.sid, flex_token(fake_twilio))
    assert response.status_code == 200, response.content
    url = urlsplit(response.json()["media_url"])
    return f"{url.path}?{url.query}"


@pytest.mark.django_db
def test_media_from_a_hung_s3_fails_in_bounded_time_and_is_audited(
    client, fake_twilio, frozen_s3, settings
):
    settings.MEDIA_LINKS_VIA_PORTAL = True
    settings.STORAGE_CONNECT_TIMEOUT = 0.5
    settings.STORAGE_READ_TIMEOUT = 0.5
    allow_supervisors()
    path = media_path(client, fake_twilio)

    started = time.monotonic()
    response = client.get(path)
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert response.json()["error"] == "storage_unavailable"
    # Two attempts of 0.5 s plus botocore's backoff (under 1 s), not botocore's 60 s.
    assert elapsed < 5, elapsed
    assert frozen_s3.accepted >= 1
    row = AccessLog.objects.filter(action="media_fetch").get()
    assert (row.outcome, row.reason_code) == ("error", "storage_unavailable")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def gunicorn_serving(env: dict[str, str], port: int) -> Iterator[str]:
    """The portal under gunicorn as production runs it (``-c python:portal.gunicorn``),
    with one worker, on loopback; yields its base URL."""
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:portal.gunicorn",
        "portal.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "--log-level",
        "warning",
    ]
    server = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail("gunicorn did not start")
            time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def server_env(frozen_url: str, twilio_url: str) -> dict[str, str]:
    """The test settings, pointed at this test's database, Redis, fake Twilio and hung S3."""
    database = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_XDIST_WORKER"}
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings_test",
        DATABASE_URL=(
            f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:"
            f"{database['PORT'] or 5432}/{database['NAME']}"
        ),
        REDIS_URL=settings.REDIS_URL,
        TWILIO_API_OVERRIDE=twilio_url,
        AWS_STORAGE_BUCKET_NAME=TEST_BUCKET,
        AWS_S3_ENDPOINT_URL=frozen_url,
        AWS_S3_REGION_NAME="us-east-1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        MEDIA_LINKS_VIA_PORTAL="1",
        STORAGE_CONNECT_TIMEOUT="1",
        STORAGE_READ_TIMEOUT="2",
        LOG_LEVEL="CRITICAL",
    )
    if database.get("PASSWORD"):
        env["PGPASSWORD"] = str(database["PASSWORD"])
    return env


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_hung_s3_holds_no_worker_from_webhooks_or_readyz(client, fake_twilio, frozen_s3, settings):
    settings.MEDIA_LINKS_VIA_PORTAL = True
    allow_supervisors()
    paths = [media_path(client, fake_twilio) for _ in range(3)]
    port = free_port()
    env = server_env(frozen_s3.url, fake_twilio.url)

    with gunicorn_serving(env, port) as base, ThreadPoolExecutor(3) as pool:

        def play(path: str) -> tuple[int, dict, float]:
            started = time.monotonic()
            response = requests.get(base + path, timeout=60)
            return response.status_code, response.json(), time.monotonic() - started

        plays = [pool.submit(play, path) for path in paths]
        frozen_s3.wait_for_connections(3)  # every play is now waiting on the hung S3

        params = callback_params()
        started = time.monotonic()
        webhook = requests.post(
            base + WEBHOOK_PATH,
            data=urlencode(params),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": sign(base + WEBHOOK_PATH, params),
            },
            timeout=60,
        )
        webhook_seconds = time.monotonic() - started
        started = time.monotonic()
        ready = requests.get(base + "/readyz", timeout=60)
        ready_seconds = time.monotonic() - started
        outcomes = [play.result() for play in plays]

    assert webhook.status_code == 204
    assert webhook_seconds < 2, webhook_seconds  # Twilio gives up after 15 s
    assert ready.status_code == 503
    assert ready.json()["checks"]["storage"].startswith("failed")
    assert ready.json()["checks"]["database"] == "ok"
    assert ready_seconds < 2.5, ready_seconds
    for status, body, seconds in outcomes:
        assert (status, body["error"]) == (503, "storage_unavailable")
        # Two attempts of 1 s connect + 2 s read at most, plus botocore's backoff.
        assert seconds < 10, seconds
    rows = AccessLog.objects.filter(action="media_fetch")
    assert [(row.outcome, row.reason_code) for row in rows] == [
        ("error", "storage_unavailable")
    ] * 3


@pytest.mark.django_db
def test_media_from_a_stalled_twilio_fails_in_bounded_time_and_is_audited(
    client, fake_twilio, settings
):
    settings.TWILIO_HTTP_TIMEOUT = 0.5
    allow_supervisors()
    recording = hung_s3_recording()
    recording.media_location = MediaLocation.TWILIO
    recording.save()
    fake_twilio.add_recording(recording.sid, media=b"RIFF" + b"\0" * 100, channels=1)
    path = media_path_for(client, fake_twilio, recording)
    fake_twilio.slow(3, path_contains=".wav")

    started = time.monotonic()
    response = client.get(path)
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert elapsed < 2.5, elapsed
    row = AccessLog.objects.filter(action="media_fetch").get()
    assert (row.outcome, row.reason_code) == ("error", "storage_unavailable")
