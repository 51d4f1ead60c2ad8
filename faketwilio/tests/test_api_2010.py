"""API 2010-04-01 (:mod:`faketwilio.api_2010`) answers like Twilio, as seen by the official
``twilio`` client and ``requests``: accounts and subaccounts, recordings (fields and formats,
list filters and pagination, soft delete) and media download with ranges.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from faketwilio import FakeTwilio, make_wav
from faketwilio.tests.helpers import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    SUB_SID,
    SUB_TOKEN,
    T0,
    RewritingHttpClient,
    media_url,
    rec_sid,
)

# ---------------------------------------------------------------------- recordings


def test_fetch_returns_every_field_the_client_reads(fake: FakeTwilio, client: Client) -> None:
    """twilio-python's RecordingInstance gets every field the portal reads, parsed."""
    media = make_wav(3)
    fake.add_recording(
        rec_sid(1),
        call_sid="CA" + "3" * 32,
        media=media,
        start_time=T0,
        encryption_details={"type": "rsa-aes", "public_key_sid": "CR" + "4" * 32},
    )

    recording = client.recordings(rec_sid(1)).fetch()

    assert recording.sid == rec_sid(1)
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
    assert recording.uri == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{rec_sid(1)}.json"
    assert recording.media_url == (
        f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{rec_sid(1)}"
    )
    assert set(recording.subresource_uris) == {"add_on_results", "transcriptions"}


def test_raw_json_uses_twilio_formats(fake: FakeTwilio) -> None:
    """API 2010-04-01 JSON: RFC 2822 dates, duration as a string, channels as an int."""
    fake.add_recording(rec_sid(1), media=b"x", start_time=T0, duration=7, channels=2)

    body = requests.get(
        f"{fake.url}/api/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{rec_sid(1)}.json",
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=5,
    ).json()

    assert body["date_created"] == "Fri, 01 Mar 2024 12:00:00 +0000"
    assert body["duration"] == "7"
    assert body["channels"] == 2
    assert body["track"] == "both"  # RecordingInstance does not read it; raw JSON has it


def test_unknown_recording_or_other_account_is_404(fake: FakeTwilio, client: Client) -> None:
    """Unknown sid, or a recording of another account than the path's, is 404 code 20404."""
    fake.add_subaccount(SUB_SID, SUB_TOKEN)
    fake.add_recording(rec_sid(1), account_sid=SUB_SID, media=b"x")

    with pytest.raises(TwilioRestException) as unknown:
        client.recordings(rec_sid(2)).fetch()
    with pytest.raises(TwilioRestException) as other_account:
        client.recordings(rec_sid(1)).fetch()  # main account's path, subaccount's recording

    assert unknown.value.status == 404
    assert unknown.value.code == 20404
    assert other_account.value.status == 404
    assert client.api.v2010.accounts(SUB_SID).recordings(rec_sid(1)).fetch().sid == rec_sid(1)


def test_list_walks_several_pages(fake: FakeTwilio, client: Client) -> None:
    """stream() follows next_page_uri (PageToken) across pages, newest first."""
    for n in range(5):
        fake.add_recording(rec_sid(n), media=b"x", start_time=T0 + timedelta(minutes=n))

    sids = [r.sid for r in client.recordings.stream(page_size=2)]

    assert sids == [rec_sid(n) for n in (4, 3, 2, 1, 0)]  # newest first, like Twilio
    pages = [r for r in fake.requests if r.path.endswith("/Recordings.json")]
    assert len(pages) == 3
    assert pages[0].query == {"PageSize": "2"}
    assert "PageToken" in pages[1].query
    assert pages[2].query["Page"] == "2"


def test_list_filters(fake: FakeTwilio, client: Client) -> None:
    """DateCreated>, DateCreated<, DateCreated and CallSid filter like Twilio."""
    for n in range(5):
        fake.add_recording(
            rec_sid(n),
            call_sid=f"CA{n % 2:032x}",
            media=b"x",
            start_time=T0 + timedelta(minutes=n),
        )

    after = client.recordings.list(date_created_after=T0 + timedelta(minutes=2), page_size=2)
    before = client.recordings.list(date_created_before=T0 + timedelta(minutes=1))
    by_call = client.recordings.list(call_sid=f"CA{1:032x}")
    same_day = client.recordings.list(date_created=T0.date())

    assert [r.sid for r in after] == [rec_sid(4), rec_sid(3), rec_sid(2)]  # inclusive
    assert [r.sid for r in before] == [rec_sid(1), rec_sid(0)]
    assert [r.sid for r in by_call] == [rec_sid(3), rec_sid(1)]
    assert len(same_day) == 5
    assert fake.requests[0].query["DateCreated>"] == "2024-03-01T12:02:00Z"


def test_list_page_tokens_survive_inserts_and_go_back(fake: FakeTwilio, client: Client) -> None:
    """Page tokens stay stable when records are added, and previous pages work."""
    for n in range(4):
        fake.add_recording(rec_sid(n), media=b"x", start_time=T0 + timedelta(minutes=n))

    first = client.recordings.page(page_size=2)
    fake.add_recording(rec_sid(9), media=b"x", start_time=T0 + timedelta(hours=1))
    second = first.next_page()
    back = second.previous_page()

    assert [r.sid for r in first] == [rec_sid(3), rec_sid(2)]
    assert [r.sid for r in second] == [rec_sid(1), rec_sid(0)]
    assert second.next_page() is None
    assert [r.sid for r in back] == [rec_sid(3), rec_sid(2)]


def test_delete_is_soft(fake: FakeTwilio, client: Client) -> None:
    """DELETE answers 204; afterwards 404 unless IncludeSoftDeleted, media gone."""
    fake.add_recording(rec_sid(1), media=b"audio")
    fake.add_recording(rec_sid(2), media=b"audio")

    assert client.recordings(rec_sid(1)).delete() is True

    with pytest.raises(TwilioRestException) as gone:
        client.recordings(rec_sid(1)).fetch()
    assert gone.value.status == 404
    kept = client.recordings(rec_sid(1)).fetch(include_soft_deleted=True)
    assert kept.status == "deleted"
    assert [r.sid for r in client.recordings.list()] == [rec_sid(2)]
    assert len(client.recordings.list(include_soft_deleted=True)) == 2
    media = requests.get(media_url(fake, rec_sid(1)), auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5)
    assert media.status_code == 404
    assert fake.get_media(rec_sid(1)) is None
    with pytest.raises(TwilioRestException):
        client.recordings(rec_sid(1)).delete()  # already deleted
    assert fake.count(method="DELETE", path_contains=rec_sid(1)) == 2


def test_subaccount_paths_and_credentials(fake: FakeTwilio, client: Client) -> None:
    """Subaccounts are listed, reachable with the main credentials, and their own."""
    fake.add_subaccount(SUB_SID, SUB_TOKEN, friendly_name="Branch")
    fake.add_recording(rec_sid(1), account_sid=SUB_SID, media=b"x")
    fake.add_recording(rec_sid(2), media=b"x")
    sub_client = Client(SUB_SID, SUB_TOKEN, http_client=RewritingHttpClient(fake.url))

    accounts = {a.sid: a for a in client.api.v2010.accounts.stream(page_size=1000)}
    sub_recordings = client.api.v2010.accounts(SUB_SID).recordings.list()
    assert client.api.v2010.accounts(SUB_SID).recordings(rec_sid(1)).delete() is True

    assert set(accounts) == {ACCOUNT_SID, SUB_SID}
    assert accounts[SUB_SID].auth_token == SUB_TOKEN
    assert accounts[SUB_SID].friendly_name == "Branch"
    assert accounts[SUB_SID].owner_account_sid == ACCOUNT_SID
    assert accounts[SUB_SID].status == "active"
    assert [r.sid for r in sub_recordings] == [rec_sid(1)]
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


def test_add_recording_rejects_unknown_account(fake: FakeTwilio) -> None:
    """A recording of an account the fake does not know is a test bug: refuse it."""
    with pytest.raises(ValueError, match="add_subaccount"):
        fake.add_recording(rec_sid(1), account_sid="AC" + "9" * 32)


def test_update_and_remove_recording(fake: FakeTwilio, client: Client) -> None:
    """update_recording changes what is served; remove_recording forgets it entirely."""
    fake.add_recording(rec_sid(1), status="in-progress")
    assert client.recordings(rec_sid(1)).fetch().duration == "-1"

    fake.update_recording(rec_sid(1), status="completed", duration=12, media=b"abc")
    updated = client.recordings(rec_sid(1)).fetch()
    fake.remove_recording(rec_sid(1))

    assert (updated.status, updated.duration) == ("completed", "12")
    with pytest.raises(TwilioRestException):
        client.recordings(rec_sid(1)).fetch(include_soft_deleted=True)
    with pytest.raises(TypeError):
        fake.update_recording(rec_sid(2), colour="red")


# ---------------------------------------------------------------------- media


def test_media_download_needs_auth(fake: FakeTwilio) -> None:
    """Media download needs Basic auth; .wav/.mp3/no extension; RequestedChannels logged."""
    media = make_wav(1, channels=2)
    fake.add_recording(rec_sid(1), media=media, channels=2)

    wav = requests.get(
        media_url(fake, rec_sid(1)),
        params={"RequestedChannels": "2"},
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=5,
    )
    bare = requests.get(
        media_url(fake, rec_sid(1), ext=""), auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5
    )
    mp3 = requests.get(
        media_url(fake, rec_sid(1), ".mp3"), auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5
    )
    anonymous = requests.get(media_url(fake, rec_sid(1)), timeout=5)
    wrong = requests.get(media_url(fake, rec_sid(1)), auth=(ACCOUNT_SID, "nope"), timeout=5)

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
    assert (download.header("authorization") or "").startswith("Basic ")


def test_media_range_requests(fake: FakeTwilio) -> None:
    """A single Range header is answered 206 with Content-Range; out of range is 416."""
    media = bytes(range(200))
    fake.add_recording(rec_sid(1), media=media)
    auth = (ACCOUNT_SID, AUTH_TOKEN)
    url = media_url(fake, rec_sid(1))

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


def test_media_absent_or_external_is_404(fake: FakeTwilio) -> None:
    """No media, or media stored externally (S3 media_url), is a 404."""
    fake.add_recording(rec_sid(1), media=None)
    fake.add_recording(rec_sid(2), media=b"x", media_url="https://bucket.s3.amazonaws.com/RE2.wav")
    auth = (ACCOUNT_SID, AUTH_TOKEN)

    missing = requests.get(media_url(fake, rec_sid(1)), auth=auth, timeout=5)
    external = requests.get(media_url(fake, rec_sid(2)), auth=auth, timeout=5)

    assert missing.status_code == 404
    assert missing.json()["code"] == 20404
    assert external.status_code == 404
    stored = fake.get_recording(rec_sid(2))
    assert stored is not None
    assert stored["media_url"] == "https://bucket.s3.amazonaws.com/RE2.wav"


def test_encrypted_media_is_served_only_as_wav(fake: FakeTwilio) -> None:
    """An encrypted recording's media asked as .mp3 answers Twilio's error 16109."""
    details = {"type": "rsa-aes", "public_key_sid": "CR" + "3" * 32, "encrypted_cek": "x"}
    fake.add_recording(rec_sid(9), media=b"RIFF-encrypted", encryption_details=details)
    auth = (ACCOUNT_SID, AUTH_TOKEN)
    mp3 = requests.get(media_url(fake, rec_sid(9), ".mp3"), auth=auth, timeout=5)
    wav = requests.get(media_url(fake, rec_sid(9)), auth=auth, timeout=5)
    assert (mp3.status_code, mp3.json()["code"]) == (400, 16109)
    assert wav.content == b"RIFF-encrypted"
