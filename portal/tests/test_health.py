"""``/healthz`` and ``/readyz`` against the real database, Redis and storage."""

from __future__ import annotations

import threading
import time

import pytest

from portal import health

pytestmark = pytest.mark.django_db


def test_healthz_answers_while_the_process_runs(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_readyz_checks_database_redis_and_local_storage(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "storage": "ok", "redis": "ok"},
    }


def test_readyz_checks_the_s3_bucket(client, s3):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json()["checks"]["storage"] == "ok"


def test_readyz_names_a_missing_bucket(client, s3, settings):
    settings.AWS_STORAGE_BUCKET_NAME = "no-such-bucket"
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["storage"].startswith("failed")
    assert body["checks"]["database"] == "ok"


def test_readyz_names_redis_when_it_is_down(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"].startswith("failed")
    assert response.json()["checks"]["database"] == "ok"


def test_schema_is_openapi(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert b"openapi" in response.content


def test_schema_documents_every_public_endpoint(client):
    paths = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    assert {
        "/api/v1/url-provider": {"get"},
        "/api/v1/recordings/{recording_sid}/waveform": {"get"},
        "/media/{link_id}": {"get"},
        "/twilio/recording-status": {"post"},
        "/twilio/taskrouter-events": {"post"},
        "/healthz": {"get"},
        "/readyz": {"get"},
    } == {path: set(operations) for path, operations in paths.items()}
    webhook = paths["/twilio/recording-status"]["post"]
    assert {"204", "400", "403"} == set(webhook["responses"])
    assert any(p["name"] == "X-Twilio-Signature" and p["required"] for p in webhook["parameters"])
    taskrouter = paths["/twilio/taskrouter-events"]["post"]
    assert {"204", "400", "403"} == set(taskrouter["responses"])
    (signed,) = [p for p in taskrouter["parameters"] if p["name"] == "X-Twilio-Signature"]
    assert signed["required"]
    media = paths["/media/{link_id}"]["get"]
    assert {"200", "206", "403", "404", "416", "503"} <= set(media["responses"])
    assert set(paths["/readyz"]["get"]["responses"]) == {"200", "503"}


def test_readyz_answers_within_its_deadline_when_s3_hangs(client, frozen_s3):
    started = time.monotonic()
    response = client.get("/readyz")
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["storage"].startswith("failed")
    assert (checks["database"], checks["redis"]) == ("ok", "ok")
    assert elapsed < 2.5, elapsed


def test_a_hanging_check_answers_by_the_deadline_and_does_not_pile_up_threads():
    release = threading.Event()
    checks = {"hangs-forever": release.wait, "answers": lambda: None}
    try:
        started = time.monotonic()
        first = health.checks_run(checks, timeout=0.2)
        second = health.checks_run(checks, timeout=0.2)
        elapsed = time.monotonic() - started
    finally:
        release.set()
    assert first == {"hangs-forever": "failed: no answer within 0.2 s", "answers": "ok"}
    assert second == {
        "hangs-forever": "failed: the previous check has not answered yet",
        "answers": "ok",
    }
    assert elapsed < 2, elapsed
