"""The fake Twilio answers like Twilio, as seen by the official ``twilio`` client and ``requests``.

These tests pin the contract the portal's tests, benchmarks and demo rely on: paths, auth,
JSON fields and formats, pagination, media download with ranges, token validation, Video
settings, credentials, the injected faults and the ``/_fake/`` control API. They use their own
server instance (not the suite's shared one) so they can take it down and up.
"""

from __future__ import annotations

import base64
import concurrent.futures
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from faketwilio import FakeTwilio, make_wav, new_sid

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "fake-auth-token-0123456789abcdef"
SUB_SID = "AC" + "2" * 32
SUB_TOKEN = "sub-auth-token"
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def _rsa_public_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


PUBLIC_PEM = _rsa_public_pem()


class RewritingHttpClient(TwilioHttpClient):
    """twilio's HTTP client, sending ``https://{product}.twilio.com{path}`` to the fake."""

    def __init__(self, base_url: str):
        super().__init__(timeout=5)
        self.base_url = base_url

    def request(self, method, url, *args, **kwargs):
        """Rewrite the URL as ``TWILIO_API_OVERRIDE`` does, then send it."""
        parts = urlsplit(url)
        if (parts.hostname or "").endswith(".twilio.com"):
            product = parts.hostname.split(".", 1)[0]
            base = urlsplit(self.base_url)
            url = urlunsplit((base.scheme, base.netloc, f"/{product}{parts.path}", parts.query, ""))
        return super().request(method, url, *args, **kwargs)


@pytest.fixture(scope="module")
def server():
    """One fake for this module, on a free loopback port."""
    fake = FakeTwilio(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(server):
    """The module's fake, emptied, listening, and without faults."""
    server.up()
    server.reset()
    yield server
    server.up()
    server.reset()


@pytest.fixture
def client(fake):
    """The official Twilio REST client, pointed at the fake."""
    return Client(ACCOUNT_SID, AUTH_TOKEN, http_client=RewritingHttpClient(fake.url))


def _rec_sid(n: int) -> str:
    return f"RE{n:032x}"


def _media_url(fake: FakeTwilio, sid: str, ext: str = ".wav", account: str = ACCOUNT_SID) -> str:
    return f"{fake.url}/api/2010-04-01/Accounts/{account}/Recordings/{sid}{ext}"


# ---------------------------------------------------------------------- recordings


def test_fetch_returns_every_field_the_client_reads(fake, client):
    """twilio-python's RecordingInstance gets every field the portal reads, parsed."""
    media = make_wav(3)
    fake.add_recording(
        _rec_sid(1),
        call_sid="CA" + "3" * 32,
        media=media,
        start_time=T0,
        encryption_details={"type": "rsa-aes", "public_key_sid": "CR" + "4" * 32},
    )

    recording = client.recordings(_rec_sid(1)).fetch()

    assert recording.sid == _rec_sid(1)
    assert recording.account_sid == ACCOUNT_SID
    assert recording.call_sid == "CA" + "3" * 32
    assert recording.api_version == "2010-04-01"
    assert recording.date_created == T0
    assert recording.start_time == T0
    assert recording.duration == "3"
    assert recording.channels == 1
    assert recording.status == "completed"
    assert recording.source == "DialVerb"
    assert recording.price == "-0.0025"
    assert recording.price_unit == "USD"
    assert recording.error_code is None
    assert recording.conference_sid is None
    assert recording.encryption_details["public_key_sid"] == "CR" + "4" * 32
    assert recording.uri == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{_rec_sid(1)}.json"
    assert recording.media_url == (
        f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{_rec_sid(1)}"
    )
    assert set(recording.subresource_uris) == {"add_on_results", "transcriptions"}


def test_raw_json_uses_twilio_formats(fake):
    """API 2010-04-01 JSON: RFC 2822 dates, duration as a string, channels as an int."""
    fake.add_recording(_rec_sid(1), media=b"x", start_time=T0, duration=7, channels=2)

    body = requests.get(
        f"{fake.url}/api/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{_rec_sid(1)}.json",
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=5,
    ).json()

    assert body["date_created"] == "Fri, 01 Mar 2024 12:00:00 +0000"
    assert body["duration"] == "7"
    assert body["channels"] == 2
    assert body["track"] == "both"  # RecordingInstance does not read it; raw JSON has it


def test_unknown_recording_or_other_account_is_404(fake, client):
    """Unknown sid, or a recording of another account than the path's, is 404 code 20404."""
    fake.add_subaccount(SUB_SID, SUB_TOKEN)
    fake.add_recording(_rec_sid(1), account_sid=SUB_SID, media=b"x")

    with pytest.raises(TwilioRestException) as unknown:
        client.recordings(_rec_sid(2)).fetch()
    with pytest.raises(TwilioRestException) as other_account:
        client.recordings(_rec_sid(1)).fetch()  # main account's path, subaccount's recording

    assert unknown.value.status == 404
    assert unknown.value.code == 20404
    assert other_account.value.status == 404
    assert client.api.v2010.accounts(SUB_SID).recordings(_rec_sid(1)).fetch().sid == _rec_sid(1)


def test_list_walks_several_pages(fake, client):
    """stream() follows next_page_uri (PageToken) across pages, newest first."""
    for n in range(5):
        fake.add_recording(_rec_sid(n), media=b"x", start_time=T0 + timedelta(minutes=n))

    sids = [r.sid for r in client.recordings.stream(page_size=2)]

    assert sids == [_rec_sid(n) for n in (4, 3, 2, 1, 0)]  # newest first, like Twilio
    pages = [r for r in fake.requests if r.path.endswith("/Recordings.json")]
    assert len(pages) == 3
    assert pages[0].query == {"PageSize": "2"}
    assert "PageToken" in pages[1].query
    assert pages[2].query["Page"] == "2"


def test_list_filters(fake, client):
    """DateCreated>, DateCreated<, DateCreated and CallSid filter like Twilio."""
    for n in range(5):
        fake.add_recording(
            _rec_sid(n),
            call_sid=f"CA{n % 2:032x}",
            media=b"x",
            start_time=T0 + timedelta(minutes=n),
        )

    after = client.recordings.list(date_created_after=T0 + timedelta(minutes=2), page_size=2)
    before = client.recordings.list(date_created_before=T0 + timedelta(minutes=1))
    by_call = client.recordings.list(call_sid=f"CA{1:032x}")
    same_day = client.recordings.list(date_created=T0.date())

    assert [r.sid for r in after] == [_rec_sid(4), _rec_sid(3), _rec_sid(2)]  # inclusive
    assert [r.sid for r in before] == [_rec_sid(1), _rec_sid(0)]
    assert [r.sid for r in by_call] == [_rec_sid(3), _rec_sid(1)]
    assert len(same_day) == 5
    assert fake.requests[0].query["DateCreated>"] == "2024-03-01T12:02:00Z"


def test_list_page_tokens_survive_inserts_and_go_back(fake, client):
    """Page tokens stay stable when records are added, and previous pages work."""
    for n in range(4):
        fake.add_recording(_rec_sid(n), media=b"x", start_time=T0 + timedelta(minutes=n))

    first = client.recordings.page(page_size=2)
    fake.add_recording(_rec_sid(9), media=b"x", start_time=T0 + timedelta(hours=1))
    second = first.next_page()
    back = second.previous_page()

    assert [r.sid for r in first] == [_rec_sid(3), _rec_sid(2)]
    assert [r.sid for r in second] == [_rec_sid(1), _rec_sid(0)]
    assert second.next_page() is None
    assert [r.sid for r in back] == [_rec_sid(3), _rec_sid(2)]


def test_delete_is_soft(fake, client):
    """DELETE answers 204; afterwards 404 unless IncludeSoftDeleted, media gone."""
    fake.add_recording(_rec_sid(1), media=b"audio")
    fake.add_recording(_rec_sid(2), media=b"audio")

    assert client.recordings(_rec_sid(1)).delete() is True

    with pytest.raises(TwilioRestException) as gone:
        client.recordings(_rec_sid(1)).fetch()
    assert gone.value.status == 404
    kept = client.recordings(_rec_sid(1)).fetch(include_soft_deleted=True)
    assert kept.status == "deleted"
    assert [r.sid for r in client.recordings.list()] == [_rec_sid(2)]
    assert len(client.recordings.list(include_soft_deleted=True)) == 2
    media = requests.get(_media_url(fake, _rec_sid(1)), auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5)
    assert media.status_code == 404
    assert fake.get_media(_rec_sid(1)) is None
    with pytest.raises(TwilioRestException):
        client.recordings(_rec_sid(1)).delete()  # already deleted
    assert fake.count(method="DELETE", path_contains=_rec_sid(1)) == 2


def test_subaccount_paths_and_credentials(fake, client):
    """Subaccounts are listed, reachable with the main credentials, and their own."""
    fake.add_subaccount(SUB_SID, SUB_TOKEN, friendly_name="Branch")
    fake.add_recording(_rec_sid(1), account_sid=SUB_SID, media=b"x")
    fake.add_recording(_rec_sid(2), media=b"x")
    sub_client = Client(SUB_SID, SUB_TOKEN, http_client=RewritingHttpClient(fake.url))

    accounts = {a.sid: a for a in client.api.v2010.accounts.stream(page_size=1000)}
    sub_recordings = client.api.v2010.accounts(SUB_SID).recordings.list()
    assert client.api.v2010.accounts(SUB_SID).recordings(_rec_sid(1)).delete() is True

    assert set(accounts) == {ACCOUNT_SID, SUB_SID}
    assert accounts[SUB_SID].auth_token == SUB_TOKEN
    assert accounts[SUB_SID].friendly_name == "Branch"
    assert accounts[SUB_SID].owner_account_sid == ACCOUNT_SID
    assert accounts[SUB_SID].status == "active"
    assert [r.sid for r in sub_recordings] == [_rec_sid(1)]
    assert [a.sid for a in sub_client.api.v2010.accounts.list()] == [SUB_SID]
    assert sub_client.api.v2010.accounts(SUB_SID).fetch().sid == SUB_SID
    with pytest.raises(TwilioException):  # list pages raise the base class
        sub_client.api.v2010.accounts(ACCOUNT_SID).recordings.list()
    with pytest.raises(TwilioException):
        client.api.v2010.accounts("AC" + "9" * 32).recordings.list()
    main_path = f"{fake.url}/api/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings.json"
    refused = requests.get(main_path, auth=(SUB_SID, SUB_TOKEN), timeout=5)
    assert refused.status_code == 401
    assert refused.json()["code"] == 20003


def test_add_recording_rejects_unknown_account(fake):
    """A recording of an account the fake does not know is a test bug: refuse it."""
    with pytest.raises(ValueError, match="add_subaccount"):
        fake.add_recording(_rec_sid(1), account_sid="AC" + "9" * 32)


def test_update_and_remove_recording(fake, client):
    """update_recording changes what is served; remove_recording forgets it entirely."""
    fake.add_recording(_rec_sid(1), status="in-progress")
    assert client.recordings(_rec_sid(1)).fetch().duration == "-1"

    fake.update_recording(_rec_sid(1), status="completed", duration=12, media=b"abc")
    updated = client.recordings(_rec_sid(1)).fetch()
    fake.remove_recording(_rec_sid(1))

    assert (updated.status, updated.duration) == ("completed", "12")
    with pytest.raises(TwilioRestException):
        client.recordings(_rec_sid(1)).fetch(include_soft_deleted=True)
    with pytest.raises(TypeError):
        fake.update_recording(_rec_sid(2), colour="red")


# ---------------------------------------------------------------------- media


def test_media_download_needs_auth(fake):
    """Media download needs Basic auth; .wav/.mp3/no extension; RequestedChannels logged."""
    media = make_wav(1, channels=2)
    fake.add_recording(_rec_sid(1), media=media, channels=2)

    wav = requests.get(
        _media_url(fake, _rec_sid(1)),
        params={"RequestedChannels": "2"},
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=5,
    )
    bare = requests.get(
        _media_url(fake, _rec_sid(1), ext=""), auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5
    )
    mp3 = requests.get(
        _media_url(fake, _rec_sid(1), ".mp3"), auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5
    )
    anonymous = requests.get(_media_url(fake, _rec_sid(1)), timeout=5)
    wrong = requests.get(_media_url(fake, _rec_sid(1)), auth=(ACCOUNT_SID, "nope"), timeout=5)

    assert wav.status_code == 200
    assert wav.content == media
    assert wav.headers["Content-Type"] == "audio/x-wav"
    assert wav.headers["Content-Length"] == str(len(media))
    assert bare.content == media
    assert mp3.headers["Content-Type"] == "audio/mpeg"
    assert anonymous.status_code == 401
    assert anonymous.json() == {
        "code": 20003,
        "message": "Authentication Error - No credentials provided",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }
    assert wrong.status_code == 401
    download = fake.requests[0]
    assert download.query == {"RequestedChannels": "2"}
    assert download.header("authorization").startswith("Basic ")


def test_media_range_requests(fake):
    """A single Range header is answered 206 with Content-Range; out of range is 416."""
    media = bytes(range(200))
    fake.add_recording(_rec_sid(1), media=media)
    auth = (ACCOUNT_SID, AUTH_TOKEN)
    url = _media_url(fake, _rec_sid(1))

    part = requests.get(url, headers={"Range": "bytes=10-19"}, auth=auth, timeout=5)
    tail = requests.get(url, headers={"Range": "bytes=-5"}, auth=auth, timeout=5)
    open_ended = requests.get(url, headers={"Range": "bytes=190-"}, auth=auth, timeout=5)
    beyond = requests.get(url, headers={"Range": "bytes=500-600"}, auth=auth, timeout=5)

    assert part.status_code == 206
    assert part.content == media[10:20]
    assert part.headers["Content-Range"] == "bytes 10-19/200"
    assert part.headers["Content-Length"] == "10"
    assert tail.content == media[-5:]
    assert open_ended.content == media[190:]
    assert beyond.status_code == 416


def test_media_absent_or_external_is_404(fake):
    """No media, or media stored externally (S3 media_url), is a 404."""
    fake.add_recording(_rec_sid(1), media=None)
    fake.add_recording(_rec_sid(2), media=b"x", media_url="https://bucket.s3.amazonaws.com/RE2.wav")
    auth = (ACCOUNT_SID, AUTH_TOKEN)

    missing = requests.get(_media_url(fake, _rec_sid(1)), auth=auth, timeout=5)
    external = requests.get(_media_url(fake, _rec_sid(2)), auth=auth, timeout=5)

    assert missing.status_code == 404
    assert missing.json()["code"] == 20404
    assert external.status_code == 404
    assert fake.get_recording(_rec_sid(2))["media_url"] == "https://bucket.s3.amazonaws.com/RE2.wav"


# ---------------------------------------------------------------------- Flex tokens


def _validate(fake: FakeTwilio, token, *, auth=(ACCOUNT_SID, AUTH_TOKEN), body=None):
    return requests.post(
        f"{fake.url}/iam/v1/Accounts/{ACCOUNT_SID}/Tokens/validate",
        json={"token": token} if body is None else body,
        headers={"Cache-Control": "no-cache"},
        auth=auth,
        timeout=5,
    )


def test_token_validation_answers_200(fake):
    """Valid, unknown and expired Flex tokens all answer HTTP 200; `valid` decides."""
    expiry = datetime(2099, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    fake.add_token(
        "good",
        identity="bob",
        realm_user_id="bob@example.com",
        roles=["agent"],
        worker_sid="WK" + "5" * 32,
        expiration=expiry,
    )
    fake.add_token("old", expiration=datetime.now(UTC) - timedelta(seconds=1))

    valid = _validate(fake, "good")
    unknown = _validate(fake, "nope")
    expired = _validate(fake, "old")

    assert valid.status_code == 200
    assert valid.json() == {
        "valid": True,
        "code": 0,
        "message": None,
        "expiration": "2099-01-02T03:04:05.678Z",
        "realm_user_id": "bob@example.com",
        "identity": "bob",
        "roles": ["agent"],
        "worker_sid": "WK" + "5" * 32,
    }
    assert unknown.status_code == 200
    assert unknown.json() == {
        "valid": False,
        "code": 20101,
        "message": "Invalid Access Token",
        "expiration": None,
        "realm_user_id": None,
        "identity": None,
        "roles": None,
        "worker_sid": None,
    }
    assert expired.status_code == 200
    assert expired.json()["valid"] is False
    assert expired.json()["code"] == 20104
    assert fake.requests[0].json() == {"token": "good"}


def test_token_validation_defaults_and_bad_requests(fake):
    """Default token claims; missing auth is 401; a body without token is 400."""
    fake.add_token("t")

    answer = _validate(fake, "t").json()

    assert answer["roles"] == ["supervisor"]
    assert answer["identity"] == "alice"
    assert answer["worker_sid"].startswith("WK")
    assert len(answer["worker_sid"]) == 34
    assert _validate(fake, "t", auth=None).status_code == 401
    assert _validate(fake, "t", auth=(ACCOUNT_SID, "bad")).json()["code"] == 20003
    assert _validate(fake, None, body={"nothing": 1}).status_code == 400


# ---------------------------------------------------------------------- Video settings


def test_video_recording_settings(fake, client):
    """RecordingSettings: defaults before any POST, then what was set; not Compositions."""
    defaults = client.video.v1.recording_settings().fetch()
    created = client.video.v1.recording_settings().create(
        friendly_name="encrypted",
        encryption_key_sid="CR" + "6" * 32,
        encryption_enabled=True,
        aws_credentials_sid="CR" + "7" * 32,
        aws_s3_url="https://bucket.s3.eu-west-1.amazonaws.com/video",
        aws_storage_enabled=True,
    )
    fetched = client.video.v1.recording_settings().fetch()
    composition = client.video.v1.composition_settings().fetch()

    assert defaults.friendly_name is None
    assert defaults.encryption_enabled is False
    assert defaults.aws_storage_enabled is False
    assert defaults.account_sid == ACCOUNT_SID
    assert created.encryption_enabled is True
    assert fetched.encryption_key_sid == "CR" + "6" * 32
    assert fetched.aws_credentials_sid == "CR" + "7" * 32
    assert fetched.aws_s3_url == "https://bucket.s3.eu-west-1.amazonaws.com/video"
    assert fetched.aws_storage_enabled is True
    assert fetched.url == "https://video.twilio.com/v1/RecordingSettings/Default"
    assert composition.encryption_enabled is False  # separate settings
    form = fake.requests[1].form()
    assert form["EncryptionEnabled"] == "true"
    assert form["FriendlyName"] == "encrypted"


def test_video_settings_post_status_and_validation(fake):
    """POST answers 201; FriendlyName is required and booleans must be true/false."""
    url = f"{fake.url}/video/v1/CompositionSettings/Default"
    auth = (ACCOUNT_SID, AUTH_TOKEN)

    created = requests.post(
        url, data={"FriendlyName": "c", "EncryptionEnabled": "true"}, auth=auth, timeout=5
    )
    nameless = requests.post(url, data={"EncryptionEnabled": "true"}, auth=auth, timeout=5)
    bad_bool = requests.post(
        url, data={"FriendlyName": "c", "EncryptionEnabled": "yes"}, auth=auth, timeout=5
    )

    assert created.status_code == 201
    assert created.json()["encryption_enabled"] is True
    assert nameless.status_code == 400
    assert nameless.json()["code"] == 20001
    assert bad_bool.status_code == 400
    assert fake.video_settings["CompositionSettings"]["friendly_name"] == "c"


# ---------------------------------------------------------------------- credentials


def test_public_key_lifecycle(fake, client):
    """Public keys: create, fetch, list, rename, delete; the PEM is kept for tests."""
    keys = client.accounts.v1.credentials.public_key
    created = keys.create(public_key=PUBLIC_PEM, friendly_name="portal key")

    assert created.sid.startswith("CR")
    assert len(created.sid) == 34
    assert created.account_sid == ACCOUNT_SID
    assert created.friendly_name == "portal key"
    assert created.date_created.tzinfo is not None  # ISO 8601, parsed by the client
    assert created.url == f"https://accounts.twilio.com/v1/Credentials/PublicKeys/{created.sid}"
    assert fake.public_keys[created.sid] == PUBLIC_PEM
    assert [k.sid for k in keys.list()] == [created.sid]
    assert keys(created.sid).fetch().friendly_name == "portal key"
    assert keys(created.sid).update(friendly_name="renamed").friendly_name == "renamed"
    assert keys(created.sid).delete() is True
    assert keys.list() == []
    with pytest.raises(TwilioRestException) as gone:
        keys(created.sid).fetch()
    assert gone.value.status == 404


def test_public_key_list_envelope_and_pages(fake, client):
    """The v1 list envelope (meta with key 'credentials') and its pagination."""
    for n in range(3):
        client.accounts.v1.credentials.public_key.create(
            public_key=PUBLIC_PEM, friendly_name=f"k{n}"
        )

    body = requests.get(
        f"{fake.url}/accounts/v1/Credentials/PublicKeys", auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5
    ).json()
    paged = client.accounts.v1.credentials.public_key.list(page_size=2)

    assert body["meta"]["key"] == "credentials"
    assert body["meta"]["page"] == 0
    assert body["meta"]["page_size"] == 50
    assert body["meta"]["next_page_url"] is None
    assert body["meta"]["previous_page_url"] is None
    assert body["meta"]["first_page_url"].startswith(
        "https://accounts.twilio.com/v1/Credentials/PublicKeys?"
    )
    assert len(body["credentials"]) == 3
    assert sorted(k.friendly_name for k in paged) == ["k0", "k1", "k2"]


def test_public_key_rejects_bad_input(fake, client):
    """Only RSA SubjectPublicKeyInfo PEMs are accepted (one-line PEMs too); else 400."""
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    one_line = "".join(PUBLIC_PEM.splitlines())  # as Twilio's docs show it: accepted

    for bad in (
        "not a key",
        ec_pem,
        PUBLIC_PEM.replace("PUBLIC KEY", "RSA PUBLIC KEY"),
        PUBLIC_PEM.replace("MII", "xyz"),
    ):
        with pytest.raises(TwilioRestException) as refused:
            client.accounts.v1.credentials.public_key.create(public_key=bad)
        assert refused.value.status == 400
    missing = requests.post(
        f"{fake.url}/accounts/v1/Credentials/PublicKeys",
        data={"FriendlyName": "x"},
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=5,
    )
    assert missing.status_code == 400
    assert client.accounts.v1.credentials.public_key.create(public_key=one_line).sid
    assert len(fake.public_keys) == 1


def test_aws_credentials_lifecycle(fake, client):
    """AWS credentials: ACCESS_KEY_ID:SECRET in, the secret never out; bad input 400."""
    aws = client.accounts.v1.credentials.aws
    created = aws.create(credentials="AKIAEXAMPLE123:s3cr3t/value", friendly_name="bucket")
    raw = requests.get(
        f"{fake.url}/accounts/v1/Credentials/AWS/{created.sid}",
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=5,
    )

    assert created.sid.startswith("CR")
    assert created.url == f"https://accounts.twilio.com/v1/Credentials/AWS/{created.sid}"
    assert "s3cr3t" not in raw.text
    assert fake.aws_credentials[created.sid] == "AKIAEXAMPLE123:s3cr3t/value"
    assert [c.sid for c in aws.list()] == [created.sid]
    assert aws(created.sid).update(friendly_name="b2").friendly_name == "b2"
    assert aws(created.sid).delete() is True
    assert aws.list() == []
    for bad in ("no-colon", ":secret", "AKIA:"):
        with pytest.raises(TwilioRestException) as refused:
            aws.create(credentials=bad)
        assert refused.value.status == 400


def test_credentials_attach_to_known_subaccount_only(fake, client):
    """AccountSid must be the main account or one of its subaccounts."""
    fake.add_subaccount(SUB_SID, SUB_TOKEN)

    attached = client.accounts.v1.credentials.public_key.create(
        public_key=PUBLIC_PEM, account_sid=SUB_SID
    )

    assert attached.account_sid == SUB_SID
    with pytest.raises(TwilioRestException):
        client.accounts.v1.credentials.aws.create(
            credentials="AKIA1:x", account_sid="AC" + "9" * 32
        )


# ---------------------------------------------------------------------- errors and faults


def test_unknown_path_and_method(fake):
    """Unknown paths are a Twilio-style 404; a wrong method on a known path is 405."""
    auth = (ACCOUNT_SID, AUTH_TOKEN)

    unknown = requests.get(f"{fake.url}/api/2010-04-01/Nope.json", auth=auth, timeout=5)
    wrong_method = requests.put(
        f"{fake.url}/video/v1/RecordingSettings/Default", auth=auth, timeout=5
    )

    assert unknown.status_code == 404
    assert unknown.json() == {
        "code": 20404,
        "message": "The requested resource /2010-04-01/Nope.json was not found",
        "more_info": "https://www.twilio.com/docs/errors/20404",
        "status": 404,
    }
    assert wrong_method.status_code == 405


def test_fail_for_count_then_recover(fake, client):
    """fail(count=…, path_contains=…) hits only matching requests, then stops."""
    fake.add_recording(_rec_sid(1), media=b"x")
    fake.fail(503, count=2, path_contains="/Recordings/")

    errors = []
    for _ in range(2):
        with pytest.raises(TwilioRestException) as failed:
            client.recordings(_rec_sid(1)).fetch()
        errors.append((failed.value.status, failed.value.code))
    other = _validate(fake, "x")  # does not match path_contains

    assert errors == [(503, 20503), (503, 20503)]
    assert other.status_code == 200
    assert client.recordings(_rec_sid(1)).fetch().sid == _rec_sid(1)


def test_fail_until_reset_faults(fake):
    """fail() without count lasts until reset_faults(), with a Twilio error body."""
    fake.fail(429)
    statuses = [_validate(fake, "x").status_code for _ in range(3)]
    body = _validate(fake, "x").json()
    fake.reset_faults()

    assert statuses == [429, 429, 429]
    assert body == {
        "code": 20429,
        "message": "Too Many Requests",
        "more_info": "https://www.twilio.com/docs/errors/20429",
        "status": 429,
    }
    assert _validate(fake, "x").status_code == 200


def test_slow_delays_matching_requests(fake):
    """slow() delays matching requests (a short client timeout then times out)."""
    fake.slow(0.3, count=1, path_contains="/iam/")
    started = time.monotonic()
    assert _validate(fake, "x").status_code == 200
    elapsed = time.monotonic() - started

    fake.slow(0.5, count=1)
    with pytest.raises(requests.Timeout):
        requests.get(
            f"{fake.url}/video/v1/RecordingSettings/Default",
            auth=(ACCOUNT_SID, AUTH_TOKEN),
            timeout=0.1,
        )
    fast_start = time.monotonic()
    assert _validate(fake, "x").status_code == 200

    assert elapsed >= 0.3
    assert time.monotonic() - fast_start < 0.25


def test_drop_closes_without_answer(fake):
    """drop() closes the connection unanswered: requests raises ConnectionError."""
    fake.drop(count=1)
    with requests.Session() as session:
        with pytest.raises(requests.ConnectionError):
            session.get(
                f"{fake.url}/video/v1/RecordingSettings/Default",
                auth=(ACCOUNT_SID, AUTH_TOKEN),
                timeout=5,
            )
        after = session.get(
            f"{fake.url}/video/v1/RecordingSettings/Default",
            auth=(ACCOUNT_SID, AUTH_TOKEN),
            timeout=5,
        )

    assert after.status_code == 200
    assert [r.status for r in fake.requests] == [None, 200]


def test_down_refuses_then_up_on_same_port(fake):
    """down() refuses connections (kept-alive ones too); up() listens on the same port."""
    url = f"{fake.url}/video/v1/RecordingSettings/Default"
    before = fake.url
    with requests.Session() as session:
        assert session.get(url, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5).status_code == 200
        fake.down()
        assert not fake.running
        with pytest.raises(requests.ConnectionError):
            session.get(url, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5)  # kept-alive one too
        with pytest.raises(requests.ConnectionError):
            requests.get(url, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5)
        fake.up()
        assert session.get(url, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5).status_code == 200

    assert fake.url == before
    fake.down()
    fake.reset()  # a shared fake left down by a test listens again after reset()
    assert requests.get(url, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5).status_code == 200


def test_request_log_and_count(fake):
    """The request log records method, path, query, headers, body and status."""
    requests.post(
        f"{fake.url}/video/v1/RecordingSettings/Default?x=1",
        data={"FriendlyName": "n"},
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=5,
    )
    _validate(fake, "tok")
    requests.get(f"{fake.url}/_fake/health", timeout=5)  # control calls are not logged

    assert fake.count() == 2
    first = fake.requests[0]
    assert first.method == "POST"
    assert first.path == "/video/v1/RecordingSettings/Default"
    assert first.query == {"x": "1"}
    assert first.body == b"FriendlyName=n"
    assert first.form() == {"FriendlyName": "n"}
    assert first.status == 201
    assert first.header("content-type") == "application/x-www-form-urlencoded"
    fake.clear_requests()
    assert fake.requests == []


def test_count_filters(fake):
    """count() filters by method (any case) and path substring."""
    _validate(fake, "a")
    _validate(fake, "b")
    requests.get(
        f"{fake.url}/video/v1/RecordingSettings/Default", auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5
    )

    assert fake.count() == 3
    assert fake.count(method="post") == 2
    assert fake.count(path_contains="/Tokens/validate") == 2
    assert fake.count(method="GET", path_contains="/iam/") == 0


def test_concurrent_requests(fake, client):
    """Parallel downloads are all answered correctly (the server is threaded)."""
    for n in range(10):
        fake.add_recording(_rec_sid(n), media=make_wav(0.1))

    def fetch(n: int) -> bytes:
        return requests.get(
            _media_url(fake, _rec_sid(n)), auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5
        ).content

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        bodies = list(pool.map(fetch, range(10)))

    assert all(body == make_wav(0.1) for body in bodies)
    assert fake.count(path_contains="/Recordings/") == 10


# ---------------------------------------------------------------------- control API


def test_http_control_api(fake):
    """The /_fake/ HTTP API drives a separately running fake like the Python API."""
    media = make_wav(0.5)
    base = f"{fake.url}/_fake"

    sub = requests.post(
        f"{base}/subaccounts", json={"sid": SUB_SID, "auth_token": SUB_TOKEN}, timeout=5
    )
    added = requests.post(
        f"{base}/recordings",
        json={
            "sid": _rec_sid(1),
            "account_sid": SUB_SID,
            "media_base64": base64.b64encode(media).decode(),
            "start_time": "2024-03-01T12:00:00Z",
            "channels": 2,
        },
        timeout=5,
    )
    token = requests.post(
        f"{base}/tokens", json={"token": "ctl", "roles": ["admin"], "ttl_seconds": 60}, timeout=5
    )
    download = requests.get(
        _media_url(fake, _rec_sid(1), account=SUB_SID), auth=(SUB_SID, SUB_TOKEN), timeout=5
    )
    validated = _validate(fake, "ctl").json()
    fault = requests.post(
        f"{base}/faults", json={"kind": "fail", "status": 500, "count": 1}, timeout=5
    )
    failed = _validate(fake, "ctl")
    log = requests.get(f"{base}/requests", params={"path_contains": "/Tokens/"}, timeout=5).json()
    bad = requests.post(f"{base}/faults", json={"kind": "explode"}, timeout=5)
    requests.post(f"{base}/faults", json={"kind": "fail"}, timeout=5)
    requests.post(f"{base}/faults", json={"kind": "clear"}, timeout=5)
    cleared = _validate(fake, "ctl")

    assert sub.status_code == 201
    assert added.status_code == 201
    assert added.json()["start_time"] == "Fri, 01 Mar 2024 12:00:00 +0000"
    assert added.json()["channels"] == 2
    assert token.status_code == 201
    assert download.content == media
    assert validated["valid"] is True
    assert validated["roles"] == ["admin"]
    assert fault.status_code == 200
    assert failed.status_code == 500
    assert log["count"] == 2
    assert log["requests"][0]["path"] == f"/iam/v1/Accounts/{ACCOUNT_SID}/Tokens/validate"
    assert log["requests"][0]["body"] == '{"token": "ctl"}'
    assert log["requests"][1]["status"] == 500
    assert bad.status_code == 400
    assert cleared.status_code == 200

    updated = requests.post(
        f"{base}/recordings/{_rec_sid(1)}", json={"status": "absent"}, timeout=5
    )
    assert updated.json()["status"] == "absent"
    assert requests.delete(f"{base}/requests", timeout=5).status_code == 204
    assert fake.count() == 0
    assert requests.post(f"{base}/reset", timeout=5).json() == {"ok": True}
    assert fake.get_recording(_rec_sid(1)) is None
    assert requests.get(f"{base}/health", timeout=5).json()["account_sid"] == ACCOUNT_SID


def test_constructor_validates_credentials():
    """A malformed account SID or an empty auth token is refused at once."""
    with pytest.raises(ValueError, match="account_sid"):
        FakeTwilio(account_sid="ACshort", auth_token="x")
    with pytest.raises(ValueError, match="auth_token"):
        FakeTwilio(account_sid=ACCOUNT_SID, auth_token="")
    assert new_sid("RE").startswith("RE")
    assert len(new_sid("RE")) == 34


def test_command_line_demo():
    """`python -m faketwilio --demo` serves seeded recordings and tokens until SIGINT."""
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "faketwilio",
            "--port",
            "0",
            "--demo",
            "--account-sid",
            ACCOUNT_SID,
            "--auth-token",
            AUTH_TOKEN,
        ],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        lines = []
        while not any(line.startswith("Flex token 'demo-agent-token'") for line in lines):
            line = process.stdout.readline()
            assert line, process.stderr.read()
            lines.append(line)
        url = lines[0].rsplit(" ", 1)[1].strip()
        answer = requests.post(
            f"{url}/iam/v1/Accounts/{ACCOUNT_SID}/Tokens/validate",
            json={"token": "demo-supervisor-token"},
            auth=(ACCOUNT_SID, AUTH_TOKEN),
            timeout=5,
        ).json()
        listing = requests.get(
            f"{url}/api/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings.json",
            auth=(ACCOUNT_SID, AUTH_TOKEN),
            timeout=5,
        ).json()
        first = listing["recordings"][0]["sid"]
        media = requests.get(
            f"{url}/api/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{first}.wav",
            auth=(ACCOUNT_SID, AUTH_TOKEN),
            timeout=5,
        )
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)

    assert answer["valid"] is True
    assert "supervisor" in answer["roles"]
    assert len(listing["recordings"]) == 3
    assert media.content[:4] == b"RIFF"
    assert process.returncode == 0
