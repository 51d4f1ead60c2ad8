"""``POST /twilio/recording-status``: signatures, validation, idempotency, queueing."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlencode

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.http import QueryDict
from django.test import TestCase
from twilio.request_validator import RequestValidator

from portal.sealing import seal
from portal.tests.database import server_ends_session
from recordings.ingest.signatures import form_fields
from recordings.models import EventState, Recording, RecordingEvent, TwilioSubaccount
from recordings.tests.callbacks import (
    WEBHOOK_PATH,
    callback_params,
    new_sid,
    post_form,
    post_json,
    sign,
)

pytestmark = pytest.mark.django_db


def queued_event_ids() -> list[int]:
    """Ids of the events whose sync waits in the Celery default queue on the real Redis broker."""
    ids: list[int] = []
    for raw in redis.Redis.from_url(settings.REDIS_URL).lrange("celery", 0, -1):
        message = json.loads(raw)
        assert message["headers"]["task"] == "recordings.tasks.sync_events"
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        ids.extend(args[0])
    return ids


def test_signed_callback_is_stored_and_queued(client):
    params = callback_params()
    response = post_form(client, params)
    assert response.status_code == 204
    event = RecordingEvent.objects.get()
    assert event.recording_sid == params["RecordingSid"]
    assert event.recording_status == "completed"
    assert event.state == EventState.PENDING
    assert event.payload == params
    assert queued_event_ids() == [event.pk]
    # The request made no Twilio call: the recording row only appears when the task runs.
    assert not Recording.objects.exists()


def test_missing_signature_is_refused_and_nothing_stored(client):
    response = post_form(client, callback_params(), signature="")
    assert response.status_code == 403
    assert response.json()["error"] == "invalid_signature"
    assert not RecordingEvent.objects.exists()
    assert queued_event_ids() == []


def test_tampered_body_is_refused(client):
    params = callback_params()
    signature = sign("http://testserver" + WEBHOOK_PATH, params)
    params["RecordingStatus"] = "absent"
    response = post_form(client, params, signature=signature)
    assert response.status_code == 403
    assert not RecordingEvent.objects.exists()


def test_signature_with_another_token_is_refused(client):
    response = post_form(client, callback_params(), token="f" * 32)
    assert response.status_code == 403
    assert not RecordingEvent.objects.exists()


def test_signature_for_another_url_is_refused(client):
    params = callback_params()
    response = post_form(client, params, base="https://attacker.example")
    assert response.status_code == 403


def test_public_base_url_is_what_the_signature_covers(client, settings):
    settings.PUBLIC_BASE_URL = "https://portal.example.com"
    params = callback_params()
    assert post_form(client, params).status_code == 403  # signed for the internal URL
    response = post_form(client, params, base="https://portal.example.com")
    assert response.status_code == 204


def test_json_body_signed_with_body_sha256(client):
    params = callback_params()
    response = post_json(client, params)
    assert response.status_code == 204
    assert RecordingEvent.objects.get().payload["RecordingSid"] == params["RecordingSid"]


def test_json_body_changed_after_signing_is_refused(client):
    params = callback_params()
    tampered = json.dumps({**params, "RecordingStatus": "absent"})
    response = post_json(client, params, body=tampered)
    assert response.status_code == 403
    assert not RecordingEvent.objects.exists()


def test_json_body_without_body_hash_is_refused(client):
    params = callback_params()
    signature = RequestValidator(settings.TWILIO_AUTH_TOKEN).compute_signature(
        "http://testserver" + WEBHOOK_PATH, {}
    )
    response = client.post(
        WEBHOOK_PATH,
        data=json.dumps(params),
        content_type="application/json",
        HTTP_X_TWILIO_SIGNATURE=signature,
    )
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("RecordingSid", ""),
        ("RecordingSid", "RE123"),
        ("RecordingSid", "XX" + "0" * 32),
        ("AccountSid", ""),
        ("AccountSid", "AC" + "z" * 32),
        # A trailing newline: `re.match(...$)` would take it for the SID it follows.
        ("RecordingSid", "RE" + "0" * 32 + "\n"),
        ("AccountSid", settings.TWILIO_ACCOUNT_SID + "\n"),
    ],
)
def test_malformed_sids_are_400_when_signed(client, field, value):
    params = callback_params()
    params[field] = value
    response = post_form(client, params)
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_callback"
    assert field in response.json()["detail"]
    assert not RecordingEvent.objects.exists()


def test_malformed_sids_without_signature_are_403(client):
    params = callback_params()
    params["RecordingSid"] = ""
    response = post_form(client, params, signature="bogus")
    assert response.status_code == 403


def test_unknown_account_is_refused(client):
    stranger = new_sid("AC")
    stranger_token = "e" * 32
    params = callback_params(AccountSid=stranger)
    response = post_form(client, params, token=stranger_token)
    assert response.status_code == 403
    assert response.json()["error"] == "unknown_account"
    assert not RecordingEvent.objects.exists()


def test_known_subaccount_signed_with_its_own_token_is_accepted(client):
    sub_sid, sub_token = new_sid("AC"), "c" * 32
    TwilioSubaccount.objects.create(
        sid=sub_sid,
        sealed_auth_token=seal(sub_token.encode(), purpose=f"subaccount-token:{sub_sid}"),
    )
    params = callback_params(AccountSid=sub_sid)
    assert post_form(client, params, token=sub_token).status_code == 204
    assert post_form(client, params, token="d" * 32).status_code == 403  # nobody's token
    assert RecordingEvent.objects.get().account_sid == sub_sid


@pytest.mark.parametrize(
    "in_autocommit",
    [
        pytest.param(True, marks=pytest.mark.django_db(transaction=True), id="autocommit"),
        pytest.param(False, id="inside-a-transaction"),
    ],
)
def test_replayed_callback_gives_one_event_and_one_sync(client, in_autocommit):
    """As the webhook runs in production (each statement commits itself) and inside a test's
    transaction (a duplicate's savepoint spares the rest of it)."""
    params = callback_params()
    headers = {"I-Twilio-Idempotency-Token": "idem-123"}
    for _ in range(3):
        assert post_form(client, params, headers=headers).status_code == 204
    event = RecordingEvent.objects.get()
    assert event.deliveries == 3
    assert event.idempotency_token == "idem-123"
    assert queued_event_ids() == [event.pk]


def test_each_status_of_a_recording_is_its_own_event(client):
    sid = new_sid("RE")
    for status in ("in-progress", "completed"):
        assert post_form(client, callback_params(sid, status)).status_code == 204
    events = RecordingEvent.objects.filter(recording_sid=sid)
    assert sorted(queued_event_ids()) == sorted(event.pk for event in events)
    assert len(events) == 2


def test_get_is_not_allowed(client):
    assert client.get(WEBHOOK_PATH).status_code == 405


def post_raw_form(client, body: bytes, signature: str, headers: dict[str, str] | None = None):
    """POST an already encoded form body with the given signature."""
    extra = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in (headers or {}).items()}
    with TestCase.captureOnCommitCallbacks(execute=True):
        return client.post(
            WEBHOOK_PATH,
            data=body,
            content_type="application/x-www-form-urlencoded",
            HTTP_X_TWILIO_SIGNATURE=signature,
            **extra,
        )


@pytest.mark.parametrize(
    "body",
    [
        b"a=1&b=2",
        b"a=1&a=2&a=",
        b"a&b=&=c",
        b"name=%E2%82%AC+sign&plus=a%2Bb",
        b"bad=%FF%FE&ok=1",  # percent-escapes that are not UTF-8
        "raw=\u00e9t\u00e9".encode("latin-1"),  # a raw byte that is not UTF-8
        b"a=1;b=2",
        b"",
    ],
)
def test_form_fields_parse_like_django_request_post(body):
    assert dict(form_fields(body, "utf-8")) == dict(QueryDict(body).lists())


def test_too_many_form_fields_are_refused_with_400(client, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 5
    params = callback_params()
    response = post_form(client, params)
    assert response.status_code == 400
    assert not RecordingEvent.objects.exists()


def test_every_value_of_a_repeated_field_is_signed(client):
    """Twilio signs each value of a repeated parameter; dropping one breaks the signature."""
    params = callback_params()
    body = urlencode(params) + "&Tag=first&Tag=second"
    signature = sign("http://testserver" + WEBHOOK_PATH, QueryDict(body))
    trimmed = urlencode(params) + "&Tag=second"
    assert post_raw_form(client, trimmed.encode(), signature).status_code == 403
    assert post_raw_form(client, body.encode(), signature).status_code == 204
    assert RecordingEvent.objects.get().payload["Tag"] == "second"


@pytest.mark.parametrize(
    ("public", "signed"),
    [
        ("https://portal.example.com", "https://portal.example.com:443"),
        ("https://portal.example.com:443", "https://portal.example.com"),
        ("http://portal.example.com:8080", "http://portal.example.com:8080"),
    ],
)
def test_signature_with_or_without_the_default_port_is_accepted(client, settings, public, signed):
    settings.PUBLIC_BASE_URL = public
    params = callback_params()
    assert post_form(client, params, base=signed).status_code == 204


def test_signature_for_another_port_is_refused(client, settings):
    settings.PUBLIC_BASE_URL = "https://portal.example.com"
    params = callback_params()
    assert post_form(client, params, base="https://portal.example.com:8443").status_code == 403


def test_hmac_sha256_signature_named_in_the_settings_header_is_accepted(client):
    params = callback_params()
    url = "http://testserver" + WEBHOOK_PATH
    validator = RequestValidator(settings.TWILIO_AUTH_TOKEN)
    sha256 = validator.compute_signature(url, params, "HMAC_SHA256")
    header = {"X-Twilio-Webhooks-Signature-Settings": "algorithm=HMAC_SHA256"}
    body = urlencode(params).encode()
    assert (
        post_raw_form(client, body, validator.compute_signature(url, params), header).status_code
        == 403
    )
    assert post_raw_form(client, body, sha256, header).status_code == 204


def test_unsupported_signature_algorithm_is_refused(client):
    params = callback_params()
    header = {"X-Twilio-Webhooks-Signature-Settings": "algorithm=HMAC_MD5"}
    body = urlencode(params).encode()
    signature = sign("http://testserver" + WEBHOOK_PATH, params)
    assert post_raw_form(client, body, signature, header).status_code == 403
    assert not RecordingEvent.objects.exists()


def test_signature_header_with_non_ascii_characters_is_refused(client):
    params = callback_params()
    body = urlencode(params).encode()
    assert post_raw_form(client, body, "s\u00efgnature").status_code == 403


@pytest.mark.django_db(transaction=True)
def test_callbacks_are_stored_across_a_database_restart(client):
    """A server restart between callbacks: the dead connection is replaced before the event
    row is written, and nothing is lost (this path writes through libpq's prepared statements,
    which the new session prepares again)."""
    first, second = callback_params(), callback_params()
    assert post_form(client, first).status_code == 204
    pid = server_ends_session()
    connection.close_if_unusable_or_obsolete()  # request start (the test client skips it)
    assert post_form(client, second).status_code == 204
    assert connection.connection.info.backend_pid != pid
    stored = set(RecordingEvent.objects.values_list("recording_sid", flat=True))
    assert stored == {first["RecordingSid"], second["RecordingSid"]}


def test_multipart_callback_is_read_like_a_form_and_other_bodies_have_no_fields(client):
    params = callback_params()
    signature = sign("http://testserver" + WEBHOOK_PATH, params)
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = client.post(WEBHOOK_PATH, data=params, HTTP_X_TWILIO_SIGNATURE=signature)
    assert response.status_code == 204
    assert RecordingEvent.objects.get().recording_sid == params["RecordingSid"]
    empty = sign("http://testserver" + WEBHOOK_PATH, {})
    response = client.post(
        WEBHOOK_PATH, data="x", content_type="text/plain", HTTP_X_TWILIO_SIGNATURE=empty
    )
    assert response.status_code == 400  # signed, but no RecordingSid
