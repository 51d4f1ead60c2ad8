"""Routing (:mod:`faketwilio.routing`): an unknown path is Twilio's 404, a known path with
another method its 405; requests authenticate with an account's auth token or an API key.
"""

from __future__ import annotations

import base64

import pytest
import requests
from twilio.rest import Client

from faketwilio import FakeTwilio
from faketwilio.tests.helpers import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    SUB_SID,
    SUB_TOKEN,
    RewritingHttpClient,
    validate,
)


def test_unknown_path_and_method(fake: FakeTwilio) -> None:
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


def test_api_keys_authenticate_as_their_account(fake: FakeTwilio) -> None:
    """An API key's SID and secret (twilio-python's ``Client(key, secret, account)``) act as
    its account, on REST, token validation and media; a wrong secret, an unknown or revoked
    key are refused like bad account credentials (401, code 20003)."""
    key = fake.add_api_key(secret="key-secret-0123456789")
    assert key["sid"].startswith("SK")
    assert len(key["sid"]) == 34
    assert key["account_sid"] == ACCOUNT_SID
    sid = "RE" + "a" * 32
    fake.add_recording(sid, media=b"RIFF-media")
    fake.add_token("flex-token")
    keyed = Client(key["sid"], "key-secret-0123456789", ACCOUNT_SID)
    keyed.http_client = RewritingHttpClient(fake.url)

    assert keyed.api.v2010.accounts(ACCOUNT_SID).recordings(sid).fetch().sid == sid
    base = f"{fake.url}/api/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{sid}"
    auth = (key["sid"], "key-secret-0123456789")
    assert requests.get(f"{base}.wav", auth=auth, timeout=5).content == b"RIFF-media"
    assert validate(fake, "flex-token", auth=auth).json()["valid"] is True
    assert (
        fake.requests[0].headers["Authorization"]
        == "Basic " + base64.b64encode(f"{key['sid']}:key-secret-0123456789".encode()).decode()
    )

    wrong = requests.get(f"{base}.json", auth=(key["sid"], "wrong-secret"), timeout=5)
    unknown = requests.get(f"{base}.json", auth=("SK" + "0" * 32, "x"), timeout=5)
    assert (wrong.status_code, wrong.json()["code"]) == (401, 20003)
    assert unknown.status_code == 401
    assert validate(fake, "flex-token", auth=(key["sid"], "wrong-secret")).status_code == 401
    fake.remove_api_key(key["sid"])
    assert requests.get(f"{base}.json", auth=auth, timeout=5).status_code == 401


def test_standard_keys_cannot_read_accounts_main_keys_can(fake: FakeTwilio) -> None:
    """Twilio's standard API keys may not use the Accounts resources (list, fetch); main keys
    may, like the account's own credentials."""
    fake.add_subaccount(SUB_SID, SUB_TOKEN)
    standard = fake.add_api_key()
    main = fake.add_api_key(main=True)
    accounts = f"{fake.url}/api/2010-04-01/Accounts.json"
    one = f"{fake.url}/api/2010-04-01/Accounts/{ACCOUNT_SID}.json"
    recordings = f"{fake.url}/api/2010-04-01/Accounts/{SUB_SID}/Recordings.json"

    for url in (accounts, one):
        refused = requests.get(url, auth=(standard["sid"], standard["secret"]), timeout=5)
        assert (refused.status_code, refused.json()["code"]) == (401, 20003)
    # A standard key of the main account still reads its subaccounts' recordings.
    assert requests.get(recordings, auth=(standard["sid"], standard["secret"]), timeout=5).ok
    listed = requests.get(accounts, auth=(main["sid"], main["secret"]), timeout=5)
    assert [a["sid"] for a in listed.json()["accounts"]] == [ACCOUNT_SID, SUB_SID]


def test_a_subaccounts_key_sees_only_that_subaccount(fake: FakeTwilio) -> None:
    fake.add_subaccount(SUB_SID, SUB_TOKEN)
    key = fake.add_api_key(account_sid=SUB_SID)
    auth = (key["sid"], key["secret"])
    own = f"{fake.url}/api/2010-04-01/Accounts/{SUB_SID}/Recordings.json"
    main = f"{fake.url}/api/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings.json"
    assert requests.get(own, auth=auth, timeout=5).status_code == 200
    assert requests.get(main, auth=auth, timeout=5).status_code == 401


def test_add_api_key_refuses_what_twilio_would_never_issue(fake: FakeTwilio) -> None:
    with pytest.raises(ValueError, match="SK"):
        fake.add_api_key("AC" + "1" * 32)
    with pytest.raises(ValueError, match="unknown account"):
        fake.add_api_key(account_sid="AC" + "9" * 32)


def test_api_keys_through_the_control_api(fake: FakeTwilio) -> None:
    created = requests.post(
        f"{fake.url}/_fake/api_keys", json={"secret": "control-secret-0123"}, timeout=5
    )
    assert created.status_code == 201
    key = created.json()
    url = f"{fake.url}/api/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings.json"
    assert requests.get(url, auth=(key["sid"], "control-secret-0123"), timeout=5).ok
    assert requests.delete(f"{fake.url}/_fake/api_keys/{key['sid']}", timeout=5).status_code == 204
    assert requests.get(url, auth=(key["sid"], "control-secret-0123"), timeout=5).status_code == 401
