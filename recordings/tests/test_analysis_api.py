"""``GET /api/v1/recordings/RE…/waveform``: the same Flex token, CORS, rules and audit as
url_provider, answering the stored analysis."""

from __future__ import annotations

import pytest

from audit.models import AccessLog
from recordings.analysis import service
from recordings.tests.analysis_fixtures import EXPECTED, conversation_wav
from recordings.tests.callbacks import new_sid
from recordings.tests.playback_fixtures import FLEX_ORIGIN, allow_supervisors, basic, flex_token
from recordings.tests.test_analysis import stored_locally

pytestmark = pytest.mark.django_db


def url(sid: str) -> str:
    return f"/api/v1/recordings/{sid}/waveform"


def ask(client, sid: str, token: str | None, **extra):
    headers = {"HTTP_ORIGIN": FLEX_ORIGIN, **extra}
    if token is not None:
        headers["HTTP_AUTHORIZATION"] = basic(token)
    return client.get(url(sid), **headers)


@pytest.fixture
def analysed():
    recording = stored_locally(conversation_wav())
    assert service.recording_analyse(recording_id=recording.pk).code == "done"
    return recording


def test_an_allowed_caller_gets_peaks_segments_and_summary_and_one_audit_row(
    client, fake_twilio, analysed
):
    allow_supervisors()
    response = ask(client, analysed.sid, flex_token(fake_twilio, identity="qa_alice"))

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert response["Access-Control-Allow-Origin"] == FLEX_ORIGIN
    body = response.json()
    assert set(body) == {"peaks", "segments", "summary"}
    assert body["peaks"]["version"] == 2
    assert [s["kind"] for s in body["segments"]] == [kind for _, _, kind in EXPECTED]
    row = AccessLog.objects.get()
    assert (row.action, row.outcome, row.identity, row.recording_sid, row.rule_name) == (
        "waveform_view",
        "allowed",
        "qa_alice",
        analysed.sid,
        "supervisors",
    )


def test_a_caller_the_rules_deny_gets_403_and_an_audit_row(client, fake_twilio, analysed):
    allow_supervisors()
    response = ask(client, analysed.sid, flex_token(fake_twilio, identity="bob", roles=("agent",)))

    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert "peaks" not in response.json()
    row = AccessLog.objects.get()
    assert (row.action, row.outcome, row.identity, row.reason_code) == (
        "waveform_view",
        "denied",
        "bob",
        "no_matching_rule",
    )


@pytest.mark.parametrize("token", [None, "not-a-token-twilio-knows"])
def test_a_missing_or_bad_token_gets_401_and_an_audit_row(client, fake_twilio, analysed, token):
    allow_supervisors()
    response = ask(client, analysed.sid, token)

    assert response.status_code == 401
    assert response.json()["error"] in ("missing_token", "invalid_token")
    row = AccessLog.objects.get()
    assert (row.action, row.outcome, row.recording_sid) == ("waveform_view", "denied", analysed.sid)


def test_bearer_tokens_are_accepted_too(client, fake_twilio, analysed):
    allow_supervisors()
    token = flex_token(fake_twilio)
    response = client.get(url(analysed.sid), HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200


def test_unknown_recordings_are_404_and_malformed_sids_400(client, fake_twilio):
    allow_supervisors()
    token = flex_token(fake_twilio)
    assert ask(client, new_sid("RE"), token).status_code == 404
    malformed = ask(client, "RE123", token)
    assert malformed.status_code == 400
    assert malformed.json()["error"] == "malformed_recording_sid"
    for odd in ("a/b", "", "RE%0A"):
        answer = ask(client, odd, token)
        assert (answer.status_code, answer.json()["error"]) == (400, "malformed_recording_sid")
    reasons = list(AccessLog.objects.order_by("sequence").values_list("reason_code", flat=True))
    assert reasons == ["recording_not_found"] + ["malformed_recording_sid"] * 4
    malformed = AccessLog.objects.filter(reason_code="malformed_recording_sid")
    assert set(malformed.values_list("recording_sid", flat=True)) == {""}


def test_a_recording_not_analysed_yet_is_404_waveform_not_ready(client, fake_twilio):
    allow_supervisors()
    recording = stored_locally(conversation_wav())
    response = ask(client, recording.sid, flex_token(fake_twilio))
    assert response.status_code == 404
    assert response.json()["error"] == "waveform_not_ready"
    assert AccessLog.objects.get().reason_code == "waveform_not_ready"


def test_a_deleted_recording_is_404(client, fake_twilio, analysed):
    from django.utils import timezone

    allow_supervisors()
    analysed.soft_deleted_at = timezone.now()
    analysed.save()
    response = ask(client, analysed.sid, flex_token(fake_twilio))
    assert response.status_code == 404
    assert response.json()["error"] == "recording_deleted"


def test_preflight_answers_flex_only_and_is_not_audited(client, analysed):
    response = client.options(
        url(analysed.sid),
        HTTP_ORIGIN=FLEX_ORIGIN,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization",
    )
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == FLEX_ORIGIN
    other = client.options(
        url(analysed.sid),
        HTTP_ORIGIN="https://evil.example",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
    )
    assert "Access-Control-Allow-Origin" not in other
    assert not AccessLog.objects.exists()


def test_other_methods_are_405_and_audited(client, analysed):
    response = client.post(url(analysed.sid))
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD, OPTIONS"
    row = AccessLog.objects.get()
    assert (row.action, row.reason_code) == ("waveform_view", "method_not_allowed")


def test_the_openapi_document_describes_it(client):
    document = client.get("/api/schema/?format=json").json()
    operation = document["paths"]["/api/v1/recordings/{recording_sid}/waveform"]["get"]
    assert operation["operationId"] == "recording_waveform"
    assert {"200", "400", "401", "403", "404", "503"} <= set(operation["responses"])
    waveform = document["components"]["schemas"]["Waveform"]
    assert set(waveform["properties"]) == {"peaks", "segments", "summary"}
