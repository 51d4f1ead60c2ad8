"""``/healthz`` and ``/readyz`` against the real database, Redis and storage."""

from __future__ import annotations

import pytest

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
