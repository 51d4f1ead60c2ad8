"""The configured log pipeline: JSON lines, request ids, and no secret ever written out."""

from __future__ import annotations

import base64
import io
import json
import logging
import uuid
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings

from audit.models import AccessLog
from portal.logging import RedactingFilter, register_secret

FLEX_TOKEN = (
    "eyJ6aXAiOiJERUYiLCJraWQiOiJTQVNfUzNfX19LTVNfdjEiLCJjdHkiOiJ0d2lsaW8tZnBhO3Y9MSIsImVu"
    "YyI6IkEyNTZHQ00iLCJhbGciOiJkaXIifQ..Zm9vYmFyYmF6cXV4.c2VjcmV0LWNpcGhlcnRleHQtYm9keQ"
    ".dGFnLXRhZy10YWctdGFn"
)
BASIC_HEADER = "Basic " + base64.b64encode(f"token:{FLEX_TOKEN}".encode()).decode()
PRESIGNED = (
    "https://recordings.s3.amazonaws.com/AC1/RE1.wav?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20261123%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20261123T100000Z&X-Amz-Expires=300&X-Amz-SignedHeaders=host"
    "&X-Amz-Security-Token=FQoGZXIvYXdzEJr%2F%2F%2F%2F%2F%2F%2F%2F%2F%2F"
    "&X-Amz-Signature=4d3c9f4c6a1b2e7f8a9b0c1d2e3f405162738495a6b7c8d9e0f1a2b3c4d5e6f7"
)
SIGNATURE = "4d3c9f4c6a1b2e7f8a9b0c1d2e3f405162738495a6b7c8d9e0f1a2b3c4d5e6f7"


@pytest.fixture(scope="module")
def private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Everything the configured console handler writes during the test."""
    handlers = [
        h
        for h in logging.getLogger().handlers
        if any(isinstance(f, RedactingFilter) for f in h.filters)
    ]
    assert handlers, "the console handler with the redacting filter is not configured"
    buffer = io.StringIO()
    previous = [h.setStream(buffer) for h in handlers]
    yield buffer
    for handler, stream in zip(handlers, previous, strict=True):
        handler.setStream(stream)


def lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def secrets_in(text: str, private_key_pem: str) -> list[str]:
    body_of_key = private_key_pem.splitlines()[5]
    candidates = {
        "flex token": FLEX_TOKEN,
        "token middle": FLEX_TOKEN.split(".")[3],
        "basic header": BASIC_HEADER.split()[1],
        "auth token": settings.TWILIO_AUTH_TOKEN,
        "presigned signature": SIGNATURE,
        "aws credential": "AKIAIOSFODNN7EXAMPLE",
        "security token": "FQoGZXIvYXdzEJr",
        "private key": body_of_key,
    }
    return [name for name, value in candidates.items() if value in text]


def test_every_kind_of_secret_is_scrubbed(log_output, private_key_pem):
    log = logging.getLogger("recordings.anything")
    log.info("player sent %s", FLEX_TOKEN)
    log.info("headers: %s", {"Authorization": BASIC_HEADER, "Origin": "https://flex.twilio.com"})
    log.warning("Authorization: %s", BASIC_HEADER)
    log.info("Twilio creds %s:%s", settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN)
    log.info("media link %s", PRESIGNED)
    log.error("loaded key\n%s", private_key_pem)
    log.info("details", extra={"payload": {"token": FLEX_TOKEN, "url": PRESIGNED}})
    # Third-party loggers go through the same handler.
    logging.getLogger("botocore.endpoint").warning("retrying %s", PRESIGNED)
    logging.getLogger("django.request").warning("Forbidden: /api/v1/url-provider?token=abc%s", "")
    output = log_output.getvalue()
    assert secrets_in(output, private_key_pem) == []
    assert "[REDACTED]" in output
    # What is not secret survives, so the log stays useful.
    assert "https://flex.twilio.com" in output
    assert settings.TWILIO_ACCOUNT_SID in output
    assert "recordings.s3.amazonaws.com/AC1/RE1.wav" in output


def test_secrets_in_tracebacks_are_scrubbed(log_output, private_key_pem):
    log = logging.getLogger("recordings.anything")
    try:
        raise ValueError(f"could not validate {FLEX_TOKEN} with {settings.TWILIO_AUTH_TOKEN}")
    except ValueError:
        log.exception("validation failed for %s", BASIC_HEADER)
    record = lines(log_output)[-1]
    assert "ValueError" in record["exc"]
    assert secrets_in(json.dumps(record), private_key_pem) == []


def test_registered_secrets_are_scrubbed_by_value(log_output, private_key_pem):
    register_secret("subaccount-token-0123456789")
    logging.getLogger("x").info("token is subaccount-token-0123456789 ok")
    assert "subaccount-token-0123456789" not in log_output.getvalue()


def test_lines_are_json_with_the_request_id_of_the_response(client, log_output):
    response = client.get("/twilio/recording-status")  # 405, logged by django.request
    request_id = response["X-Request-ID"]
    assert len(request_id) == 32
    records = lines(log_output)
    assert records, "a 405 is logged by django.request"
    assert all({"time", "level", "logger", "message", "request_id"} <= r.keys() for r in records)
    assert records[-1]["request_id"] == request_id


def test_incoming_request_id_is_kept_only_when_well_formed(client, settings):
    settings.TRUSTED_PROXIES = ["127.0.0.1"]  # the test client's address
    kept = client.get("/healthz", HTTP_X_REQUEST_ID="lb-0123456789abcdef")
    assert kept["X-Request-ID"] == "lb-0123456789abcdef"
    replaced = client.get("/healthz", HTTP_X_REQUEST_ID="bad id\nINFO forged line")
    assert replaced["X-Request-ID"] != "bad id\nINFO forged line"
    assert "\n" not in replaced["X-Request-ID"]


def test_outside_a_request_the_request_id_is_a_dash(log_output):
    logging.getLogger("recordings.tasks").info("working")
    assert lines(log_output)[-1]["request_id"] == "-"


@pytest.mark.django_db
def test_request_id_is_taken_only_from_a_trusted_proxy_also_in_audit_rows(client, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    path = f"/media/{uuid.uuid4()}?token=x"  # refused with an access-log row
    forged = client.get(path, HTTP_X_REQUEST_ID="client-chosen-0123456789")
    assert forged.status_code == 403
    assert forged["X-Request-ID"] != "client-chosen-0123456789"
    proxied = client.get(path, HTTP_X_REQUEST_ID="lb-0123456789abcdef", REMOTE_ADDR="10.1.2.3")
    assert proxied["X-Request-ID"] == "lb-0123456789abcdef"
    rows = AccessLog.objects.order_by("sequence")
    assert [row.request_id for row in rows] == [forged["X-Request-ID"], "lb-0123456789abcdef"]


@pytest.mark.django_db
def test_django_request_lines_carry_the_request_id(client, log_output):
    # A view that answers 403 itself is logged by Django's handler after every middleware.
    response = client.get(f"/media/{uuid.uuid4()}?token=x")
    assert response.status_code == 403
    logged = [r for r in lines(log_output) if r["logger"] == "django.request"]
    assert [r["request_id"] for r in logged] == [response["X-Request-ID"]]
