"""``GET /api/v1/url-provider`` as docs/contract.md fixes it, against the fake Twilio IAM over HTTP,
real Redis (token cache), PostgreSQL (rules, audit rows) and moto S3."""

from __future__ import annotations

import base64
import json
import signal
import socket
from datetime import timedelta

import pytest
import redis
import requests
from corsheaders.middleware import CorsMiddleware
from django.conf import settings
from django.http import HttpResponse
from django.utils import timezone

from audit.chain import chain_verify
from audit.models import AccessLog, AccessRule
from conftest import TEST_BUCKET
from recordings.models import MediaLink, RecordingStatus
from recordings.tests.callbacks import new_sid
from recordings.tests.playback_fixtures import (
    FLEX_ORIGIN,
    URL_PROVIDER,
    allow_supervisors,
    ask,
    flex_token,
    local_recording,
    s3_recording,
)

pytestmark = pytest.mark.django_db

VALIDATE = "/Tokens/validate"


@pytest.fixture
def rule():
    return allow_supervisors()


def only_row() -> AccessLog:
    rows = list(AccessLog.objects.all())
    assert len(rows) == 1, [(r.action, r.outcome, r.reason_code) for r in rows]
    return rows[0]


def test_allowed_caller_gets_a_portal_link_and_one_audit_row(client, fake_twilio, rule):
    recording, _ = local_recording()
    token = flex_token(fake_twilio)
    response = ask(client, recording.sid, token, HTTP_USER_AGENT="FlexInsights/1.0")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    assert response["Referrer-Policy"] == "no-referrer"
    media_url = response.json()["media_url"]
    link = MediaLink.objects.get()
    assert media_url.startswith(f"http://testserver/media/{link.link_id}?token=")
    token_in_url = media_url.split("token=", 1)[1]
    assert token_in_url not in link.token_hash
    assert link.expires_at - timezone.now() <= timedelta(seconds=settings.MEDIA_LINK_TTL_SECONDS)

    row = only_row()
    assert (row.action, row.outcome, row.reason_code) == (
        "url_provider",
        "allowed",
        "allowed_by_rule",
    )
    assert row.rule_name == "supervisors"
    assert (row.identity, row.realm_user_id) == ("alice", "alice@example.com")
    assert row.worker_sid == "WK" + "1" * 32
    assert row.roles == ["supervisor"]
    assert row.recording_sid == recording.sid
    assert row.link_id == str(link.link_id)
    assert link.access_log_sequence == row.sequence
    assert row.client_ip == "127.0.0.1"
    assert row.user_agent == "FlexInsights/1.0"
    assert row.request_id == response["X-Request-ID"]
    serialized = json.dumps([getattr(row, f.name) for f in AccessLog._meta.fields], default=str)
    assert token not in serialized
    assert token_in_url not in serialized
    assert chain_verify().ok


def test_unencrypted_s3_recording_gets_a_presigned_url_that_works(client, fake_twilio, rule, s3):
    recording, data = s3_recording(s3, TEST_BUCKET)
    response = ask(client, recording.sid, flex_token(fake_twilio))
    assert response.status_code == 200
    url = response.json()["media_url"]
    assert "X-Amz-Signature=" in url
    assert f"X-Amz-Expires={settings.MEDIA_LINK_TTL_SECONDS}" in url
    assert requests.get(url, timeout=10).content == data
    assert not MediaLink.objects.exists()
    assert only_row().link_id  # the presigned link is still named in the log


def test_policy_can_send_s3_recordings_through_the_portal(client, fake_twilio, rule, s3, settings):
    settings.MEDIA_LINKS_VIA_PORTAL = True
    recording, _ = s3_recording(s3, TEST_BUCKET)
    response = ask(client, recording.sid, flex_token(fake_twilio))
    assert "/media/" in response.json()["media_url"]


def test_recording_alias_and_bearer_are_accepted(client, fake_twilio, rule):
    recording, _ = local_recording()
    token = flex_token(fake_twilio)
    response = client.get(
        URL_PROVIDER, {"recording": recording.sid}, HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("params", "code"),
    [({}, "missing_recording_sid"), ({"recording_sid": "RE123"}, "malformed_recording_sid")],
)
def test_bad_recording_parameter_is_400_and_audited(client, fake_twilio, params, code):
    response = client.get(URL_PROVIDER, params, HTTP_AUTHORIZATION="Bearer x")
    assert response.status_code == 400
    assert response.json()["error"] == code
    assert response["Cache-Control"] == "no-store"
    assert (only_row().outcome, only_row().reason_code) == ("error", code)
    assert fake_twilio.count("POST", VALIDATE) == 0


def test_sid_with_a_trailing_newline_is_malformed_and_audits_no_sid(client, fake_twilio, rule):
    recording, _ = local_recording()
    token = flex_token(fake_twilio)
    response = client.get(
        f"{URL_PROVIDER}?recording_sid={recording.sid}%0A",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_recording_sid"
    row = only_row()
    assert (row.outcome, row.reason_code) == ("error", "malformed_recording_sid")
    assert row.recording_sid == ""  # never the real SID the lookup did not use
    assert fake_twilio.count("POST", VALIDATE) == 0


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "trace"])
def test_other_methods_are_405_and_audited(client, fake_twilio, rule, method):
    recording, _ = local_recording()
    token = flex_token(fake_twilio)
    response = getattr(client, method)(
        f"{URL_PROVIDER}?recording_sid={recording.sid}", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert set(response["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "OPTIONS"}
    assert response["Cache-Control"] == "no-store"
    row = only_row()
    assert (row.action, row.outcome, row.reason_code) == (
        "url_provider",
        "error",
        "method_not_allowed",
    )
    assert row.recording_sid == recording.sid
    assert fake_twilio.count("POST", VALIDATE) == 0
    assert not MediaLink.objects.exists()


def test_options_that_is_not_a_preflight_is_audited(client):
    response = client.options(URL_PROVIDER)
    assert response.status_code == 204
    assert set(response["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "OPTIONS"}
    assert (only_row().outcome, only_row().reason_code) == ("error", "not_a_preflight")


def test_head_answers_like_get_without_issuing_a_link(client, fake_twilio, rule):
    recording, _ = local_recording()
    token = flex_token(fake_twilio)
    response = client.head(
        URL_PROVIDER, {"recording_sid": recording.sid}, HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 200
    assert response.content == b""
    assert response["Cache-Control"] == "no-store"
    assert not MediaLink.objects.exists()
    row = only_row()
    assert (row.outcome, row.link_id, row.detail) == ("allowed", "", {"method": "HEAD"})
    denied = client.head(URL_PROVIDER, {"recording_sid": recording.sid})
    assert denied.status_code == 401
    assert AccessLog.objects.count() == 2


def test_any_accept_header_is_answered_and_audited(client, fake_twilio, rule):
    recording, _ = local_recording()
    response = ask(client, recording.sid, flex_token(fake_twilio), HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert only_row().outcome == "allowed"


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "missing_token"),
        ("Basic !!!not-base64", "malformed_authorization"),
        ("Basic " + base64.b64encode(b"no-colon-here").decode(), "malformed_authorization"),
        ("Digest abc", "malformed_authorization"),
        ("Bearer ", "malformed_authorization"),
    ],
)
def test_missing_or_malformed_authorization_is_401(client, fake_twilio, authorization, code):
    recording, _ = local_recording()
    extra = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = client.get(URL_PROVIDER, {"recording_sid": recording.sid}, **extra)
    assert response.status_code == 401
    assert response.json()["error"] == code
    assert (only_row().outcome, only_row().reason_code) == ("denied", code)


def test_invalid_token_is_401_and_twilio_is_asked_once(client, fake_twilio, rule):
    recording, _ = local_recording()
    for _ in range(3):
        response = ask(client, recording.sid, "eyJnot.a.known.token")
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_token"
    assert fake_twilio.count("POST", VALIDATE) == 1  # cached briefly
    assert AccessLog.objects.filter(outcome="denied", reason_code="invalid_token").count() == 3


def test_expired_token_is_401(client, fake_twilio, rule):
    recording, _ = local_recording()
    token = flex_token(fake_twilio, expiration=timezone.now() - timedelta(minutes=1))
    response = ask(client, recording.sid, token)
    assert response.status_code == 401
    assert response.json()["error"] == "expired_token"


def test_valid_token_is_validated_once_and_cached_by_hash(client, fake_twilio, rule):
    recording, _ = local_recording()
    token = flex_token(fake_twilio)
    for _ in range(5):
        assert ask(client, recording.sid, token).status_code == 200
    assert fake_twilio.count("POST", VALIDATE) == 1
    sent = next(r for r in fake_twilio.requests if VALIDATE in r.path)
    assert sent.json() == {"token": token}
    assert sent.header("Authorization").startswith("Basic ")  # the account's credentials
    keys = redis.Redis.from_url(settings.REDIS_URL).keys("*")
    assert keys
    assert all(token.encode() not in key for key in keys)


def test_redis_down_means_asking_twilio_every_time_not_failing(client, fake_twilio, rule, settings):
    # Django rebuilds its cache handlers when CACHES changes (test signal).
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
        }
    }
    recording, _ = local_recording()
    token = flex_token(fake_twilio)
    for _ in range(2):
        assert ask(client, recording.sid, token).status_code == 200
    assert fake_twilio.count("POST", VALIDATE) == 2
    assert AccessLog.objects.filter(outcome="allowed").count() == 2


def test_a_hung_redis_is_waited_for_briefly_then_twilio_is_asked(
    client, fake_twilio, rule, settings
):
    # The cache waits on Redis at most REDIS_CACHE_TIMEOUT_SECONDS per connection or answer
    # (redis-py's own default is 5 s each: a get and a set cost a player 10 s).
    options = settings.CACHES["default"]["OPTIONS"]
    assert options["socket_timeout"] == settings.REDIS_CACHE_TIMEOUT_SECONDS
    assert options["socket_connect_timeout"] == settings.REDIS_CACHE_TIMEOUT_SECONDS
    # A server that takes connections and never answers: Redis hung. The cache keeps its
    # production options; only the address changes.
    with socket.create_server(("127.0.0.1", 0)) as hung:
        settings.CACHES = {
            "default": {
                **settings.CACHES["default"],
                "LOCATION": f"redis://127.0.0.1:{hung.getsockname()[1]}/0",
            }
        }
        recording, _ = local_recording()
        token = flex_token(fake_twilio)

        def hanging(signum, frame):
            raise AssertionError("the request is still waiting on the hung Redis")

        previous = signal.signal(signal.SIGALRM, hanging)
        signal.alarm(20)  # turns a hang into a failure
        try:
            answer = ask(client, recording.sid, token)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
    assert answer.status_code == 200
    assert fake_twilio.count("POST", VALIDATE) == 1
    assert AccessLog.objects.filter(outcome="allowed", recording_sid=recording.sid).count() == 1


def test_colon_in_token_survives_basic_auth(client, fake_twilio, rule):
    recording, _ = local_recording()
    token = flex_token(fake_twilio)
    assert ":" in token
    assert ask(client, recording.sid, token).status_code == 200


@pytest.mark.parametrize("fault", ["fail", "drop"])
def test_twilio_down_fails_closed_with_503(client, fake_twilio, rule, fault):
    recording, _ = local_recording()
    token = flex_token(fake_twilio)
    getattr(fake_twilio, fault)(**({"status": 503} if fault == "fail" else {}))
    response = ask(client, recording.sid, token)
    assert response.status_code == 503
    assert response.json()["error"] == "token_validation_unavailable"
    assert (only_row().outcome, only_row().reason_code) == ("error", "token_validation_unavailable")
    assert not MediaLink.objects.exists()


def test_twilio_too_slow_fails_closed(client, fake_twilio, rule):
    recording, _ = local_recording()
    token = flex_token(fake_twilio)
    fake_twilio.slow(5, path_contains=VALIDATE)  # longer than the 3 s timeout
    assert ask(client, recording.sid, token).status_code == 503


def test_unknown_and_deleted_recordings_are_404(client, fake_twilio, rule):
    token = flex_token(fake_twilio)
    assert ask(client, new_sid("RE"), token).json()["error"] == "recording_not_found"
    recording, _ = local_recording(status=RecordingStatus.DELETED)
    response = ask(client, recording.sid, token)
    assert response.status_code == 404
    assert response.json()["error"] == "recording_deleted"
    assert AccessLog.objects.filter(outcome="denied").count() == 2


def test_no_rule_is_default_deny(client, fake_twilio):
    recording, _ = local_recording()
    response = ask(client, recording.sid, flex_token(fake_twilio))
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    row = only_row()
    assert (row.outcome, row.reason_code, row.rule_name) == ("denied", "no_matching_rule", "")
    assert not MediaLink.objects.exists()


def test_deny_wins_and_is_named(client, fake_twilio, rule):
    AccessRule.objects.create(name="no-bob", effect="deny", identities=["bob"], reason="test")
    recording, _ = local_recording()
    response = ask(client, recording.sid, flex_token(fake_twilio, identity="bob"))
    assert response.status_code == 403
    assert (only_row().reason_code, only_row().rule_name) == ("denied_by_rule", "no-bob")


def test_agents_without_a_rule_are_denied(client, fake_twilio, rule):
    recording, _ = local_recording()
    response = ask(client, recording.sid, flex_token(fake_twilio, roles=("agent",)))
    assert response.status_code == 403


def test_preflight_answers_only_allowed_origins_and_is_not_audited(client):
    response = client.options(
        URL_PROVIDER,
        HTTP_ORIGIN=FLEX_ORIGIN,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization,cache-control,pragma",
    )
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == FLEX_ORIGIN
    allowed = {h.strip().lower() for h in response["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "cache-control", "pragma"} <= allowed
    assert "GET" in response["Access-Control-Allow-Methods"]
    assert int(response["Access-Control-Max-Age"]) > 0
    assert "origin" in response["Vary"].lower()

    other = client.options(
        URL_PROVIDER, HTTP_ORIGIN="https://evil.example", HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET"
    )
    assert "Access-Control-Allow-Origin" not in other
    assert "Access-Control-Allow-Headers" not in other
    assert not AccessLog.objects.exists()


def test_vary_is_appended_to_never_overwritten(rf):
    """A view's own ``Vary`` survives the CORS headers (``Origin`` is added beside it)."""

    def view_with_its_own_vary(request):
        response = HttpResponse()
        response["Vary"] = "Accept-Encoding"
        return response

    request = rf.get(URL_PROVIDER, HTTP_ORIGIN=FLEX_ORIGIN)
    response = CorsMiddleware(view_with_its_own_vary)(request)
    vary = {part.strip().lower() for part in response["Vary"].split(",")}
    assert vary == {"accept-encoding", "origin"}
    assert response["Access-Control-Allow-Origin"] == FLEX_ORIGIN


def test_cors_stays_off_every_other_path(client):
    response = client.options(
        "/twilio/recording-status",
        HTTP_ORIGIN=FLEX_ORIGIN,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
    )
    assert "Access-Control-Allow-Origin" not in response


def test_answers_carry_cors_for_allowed_origins_only(client, fake_twilio, rule):
    recording, _ = local_recording()
    token = flex_token(fake_twilio)
    assert ask(client, recording.sid, token)["Access-Control-Allow-Origin"] == FLEX_ORIGIN
    assert "Access-Control-Allow-Origin" not in ask(
        client, recording.sid, token, origin="https://evil.example"
    )
    denied = ask(client, new_sid("RE"), token)
    assert denied["Access-Control-Allow-Origin"] == FLEX_ORIGIN  # so the player can read errors


def test_forwarded_for_is_believed_only_behind_trusted_proxies(client, fake_twilio, rule, settings):
    recording, _ = local_recording()
    token = flex_token(fake_twilio)
    ask(client, recording.sid, token, HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert AccessLog.objects.latest("sequence").client_ip == "127.0.0.1"
    settings.TRUSTED_PROXIES = ["127.0.0.1", "10.0.0.0/8"]
    ask(client, recording.sid, token, HTTP_X_FORWARDED_FOR="198.51.100.7, 203.0.113.9, 10.1.2.3")
    assert AccessLog.objects.latest("sequence").client_ip == "203.0.113.9"


def test_every_answer_writes_exactly_one_row(client, fake_twilio, rule):
    recording, _ = local_recording()
    token = flex_token(fake_twilio)
    answers = [
        ask(client, recording.sid, token),
        ask(client, recording.sid, None),
        ask(client, "RE1", token),
        ask(client, new_sid("RE"), token),
        ask(client, recording.sid, "eyJunknown"),
    ]
    assert [a.status_code for a in answers] == [200, 401, 400, 404, 401]
    assert AccessLog.objects.count() == len(answers)
    assert chain_verify().ok


def test_schema_documents_the_url_provider(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"]["/api/v1/url-provider"]["get"]
    assert {"200", "400", "401", "403", "404", "503"} <= set(operation["responses"])
    parameters = {parameter["name"]: parameter for parameter in operation["parameters"]}
    sid = parameters["recording_sid"]
    assert sid["required"] is True
    assert sid["schema"]["pattern"] == "^RE[0-9a-fA-F]{32}$"
    assert parameters["Authorization"]["required"] is True
