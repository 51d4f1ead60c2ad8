"""The portal's credentials at Twilio (the fake Twilio over real HTTP): an API key, when one is
configured, authenticates every REST call, token validation and media download; the auth token
then only checks webhook signatures. Missing or refused credentials give clear errors."""

from __future__ import annotations

import base64
import logging

import pytest

from faketwilio.recording_formats import make_wav
from portal.logging import RedactingFilter
from recordings.custody import subaccounts
from recordings.ingest import events, sync
from recordings.integrations import twilio_api
from recordings.models import (
    EventState,
    Recording,
    RecordingEvent,
    SyncState,
    TwilioSubaccount,
)
from recordings.playback import flex_auth
from recordings.tests.callbacks import callback_params, new_sid, post_form

pytestmark = pytest.mark.django_db

KEY_SECRET = "api-key-secret-0123456789abcdefXYZ"


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@pytest.fixture
def api_key(fake_twilio, settings) -> dict:
    """A standard API key of the fake's main account, configured in the portal."""
    key = fake_twilio.add_api_key(secret=KEY_SECRET)
    settings.TWILIO_API_KEY_SID = key["sid"]
    settings.TWILIO_API_KEY_SECRET = key["secret"]
    return key


def authorizations(fake, path_contains: str) -> set[str]:
    return {
        request.headers.get("Authorization", "")
        for request in fake.requests
        if path_contains in request.path
    }


def test_rest_calls_use_the_api_key_not_the_auth_token(fake_twilio, api_key, settings):
    sid = new_sid("RE")
    fake_twilio.add_recording(sid, media=make_wav(1))
    recording = sync.recording_sync(sid=sid)
    assert recording.sync_state == SyncState.SYNCED
    assert recording.status == "completed"
    assert authorizations(fake_twilio, f"/Recordings/{sid}.json") == {
        basic(api_key["sid"], KEY_SECRET)
    }
    auth_token_header = basic(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN)
    assert auth_token_header not in authorizations(fake_twilio, "/")


def test_token_validation_uses_the_api_key(fake_twilio, api_key):
    fake_twilio.add_token("flex-token-for-key", identity="sam", roles=["supervisor"])
    identity = flex_auth.flex_token_validate("flex-token-for-key")
    assert identity.identity == "sam"
    assert authorizations(fake_twilio, "/Tokens/validate") == {basic(api_key["sid"], KEY_SECRET)}


def test_media_downloads_use_the_api_key(fake_twilio, api_key):
    sid = new_sid("RE")
    audio = make_wav(1)
    fake_twilio.add_recording(sid, media=audio)
    media = twilio_api.recording_media_fetch(sid=sid)
    assert b"".join(media.chunks) == audio
    assert authorizations(fake_twilio, f"/Recordings/{sid}.wav") == {
        basic(api_key["sid"], KEY_SECRET)
    }


def test_the_auth_token_may_be_left_for_signatures_only(client, fake_twilio, api_key, settings):
    """With an API key the auth token is not needed to call Twilio; set, it only checks
    webhook signatures (Twilio signs with the auth token, never with an API key)."""
    sid = new_sid("RE")
    fake_twilio.add_recording(sid, media=make_wav(1))
    assert post_form(client, callback_params(sid)).status_code == 204
    event = RecordingEvent.objects.get(recording_sid=sid)
    signed_with = settings.TWILIO_AUTH_TOKEN
    settings.TWILIO_AUTH_TOKEN = ""
    events.event_process(event_id=event.pk)
    assert RecordingEvent.objects.get(pk=event.pk).state == EventState.PROCESSED
    assert Recording.objects.get(sid=sid).sync_state == SyncState.SYNCED
    assert authorizations(fake_twilio, "/") == {basic(api_key["sid"], KEY_SECRET)}
    # Without the auth token no callback can be checked: refused, and the log says why.
    response = post_form(client, callback_params(new_sid("RE")), token=signed_with)
    assert response.status_code == 403


def test_callbacks_without_an_auth_token_are_refused_with_the_reason(
    client, fake_twilio, api_key, settings, caplog
):
    signed_with = settings.TWILIO_AUTH_TOKEN
    settings.TWILIO_AUTH_TOKEN = ""
    with caplog.at_level(logging.ERROR, logger="recordings.webhooks"):
        response = post_form(client, callback_params(new_sid("RE")), token=signed_with)
    assert response.status_code == 403
    assert response.json()["error"] == "invalid_signature"
    assert "TWILIO_AUTH_TOKEN is not set" in caplog.text
    assert not RecordingEvent.objects.exists()


def test_a_wrong_secret_is_refused_by_twilio_and_says_which_setting(fake_twilio, api_key, settings):
    settings.TWILIO_API_KEY_SECRET = "not-the-secret-0123456789"
    sid = new_sid("RE")
    fake_twilio.add_recording(sid, media=make_wav(1))
    with pytest.raises(twilio_api.TwilioRejected) as refused:
        sync.recording_sync(sid=sid)
    assert refused.value.status == 401
    assert "TWILIO_API_KEY_SECRET" in str(refused.value)
    assert "not-the-secret" not in str(refused.value)
    with pytest.raises(twilio_api.TwilioRejected) as refused_media:
        twilio_api.recording_media_fetch(sid=sid)
    assert refused_media.value.status == 401


def test_token_validation_with_refused_credentials_fails_closed(
    client, fake_twilio, api_key, settings
):
    """Twilio refusing the portal's own key says nothing about the player's token: the
    player gets 503 (not 401, and nothing is cached as an invalid token)."""
    fake_twilio.add_token("good-token")
    settings.TWILIO_API_KEY_SECRET = "not-the-secret-0123456789"
    with pytest.raises(twilio_api.TwilioRejected) as refused:
        twilio_api.iam_validate_token("good-token")
    assert refused.value.status == 401
    assert "TWILIO_API_KEY_SID" in str(refused.value)
    with pytest.raises(twilio_api.TwilioError):
        flex_auth.flex_token_validate("good-token")
    settings.TWILIO_API_KEY_SECRET = KEY_SECRET
    assert flex_auth.flex_token_validate("good-token").identity == "alice"


def test_a_revoked_key_is_refused(fake_twilio, api_key):
    fake_twilio.remove_api_key(api_key["sid"])
    with pytest.raises(twilio_api.TwilioRejected) as refused:
        twilio_api.recording_media_fetch(sid=new_sid("RE"))
    assert refused.value.status == 401


@pytest.mark.parametrize(
    ("key_sid", "key_secret", "auth_token", "complaint"),
    [
        ("SK" + "1" * 32, "", "tok", "TWILIO_API_KEY_SID is set without TWILIO_API_KEY_SECRET"),
        ("", "secret-0123456789", "tok", "TWILIO_API_KEY_SECRET is set without"),
        ("AC" + "1" * 32, "secret-0123456789", "tok", "is not an API key SID"),
        ("", "", "", "set TWILIO_API_KEY_SID and TWILIO_API_KEY_SECRET, or TWILIO_AUTH_TOKEN"),
    ],
)
def test_missing_pieces_are_a_clear_configuration_error(
    fake_twilio, settings, key_sid, key_secret, auth_token, complaint
):
    settings.TWILIO_API_KEY_SID = key_sid
    settings.TWILIO_API_KEY_SECRET = key_secret
    settings.TWILIO_AUTH_TOKEN = auth_token
    for call in (
        lambda: sync.recording_sync(sid=new_sid("RE")),
        lambda: twilio_api.iam_validate_token("any-token"),
        lambda: twilio_api.recording_media_fetch(sid=new_sid("RE")),
    ):
        with pytest.raises(twilio_api.TwilioNotConfigured, match=complaint):
            call()
    assert fake_twilio.requests == []


def test_without_an_api_key_the_auth_token_is_used(fake_twilio, settings):
    sid = new_sid("RE")
    fake_twilio.add_recording(sid, media=make_wav(1))
    sync.recording_sync(sid=sid)
    assert authorizations(fake_twilio, "/") == {
        basic(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN)
    }


def test_the_api_key_secret_never_reaches_the_logs(settings):
    settings.TWILIO_API_KEY_SECRET = KEY_SECRET
    RedactingFilter()  # what the configured log handlers do at start-up
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "key %s", (KEY_SECRET,), None)
    RedactingFilter().filter(record)
    assert KEY_SECRET not in record.getMessage()
    assert "[REDACTED]" in record.getMessage()


def test_subaccounts_need_a_main_api_key(fake_twilio, api_key, settings):
    """Twilio's Standard keys may not read accounts: the refresh says a Main key is needed."""
    fake_twilio.add_subaccount(new_sid("AC"), "6" * 32, friendly_name="EMEA")
    with pytest.raises(twilio_api.TwilioRejected, match="needs a Main API key"):
        subaccounts.subaccounts_refresh()
    assert not TwilioSubaccount.objects.exists()
    main = fake_twilio.add_api_key(main=True)
    settings.TWILIO_API_KEY_SID, settings.TWILIO_API_KEY_SECRET = main["sid"], main["secret"]
    assert subaccounts.subaccounts_refresh() == 1
    assert TwilioSubaccount.objects.get().friendly_name == "EMEA"
