"""Flex token validation and the account credentials (:mod:`faketwilio.iam`) answer like
Twilio: validation answers 200 with ``valid`` deciding; public keys and AWS credentials are
created, listed, renamed and deleted, bad input refused.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from faketwilio import FakeTwilio
from faketwilio.tests.helpers import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    PUBLIC_PEM,
    SUB_SID,
    SUB_TOKEN,
    validate,
)

# ---------------------------------------------------------------------- Flex tokens


def test_token_validation_answers_200(fake: FakeTwilio) -> None:
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

    valid = validate(fake, "good")
    unknown = validate(fake, "nope")
    expired = validate(fake, "old")

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


def test_token_validation_defaults_and_bad_requests(fake: FakeTwilio) -> None:
    """Default token claims; missing auth is 401; a body without token is 400."""
    fake.add_token("t")

    answer = validate(fake, "t").json()

    assert answer["roles"] == ["supervisor"]
    assert answer["identity"] == "alice"
    assert answer["worker_sid"].startswith("WK")
    assert len(answer["worker_sid"]) == 34
    assert validate(fake, "t", auth=None).status_code == 401
    assert validate(fake, "t", auth=(ACCOUNT_SID, "bad")).json()["code"] == 20003
    assert validate(fake, None, body={"nothing": 1}).status_code == 400


# ---------------------------------------------------------------------- credentials


def test_public_key_lifecycle(fake: FakeTwilio, client: Client) -> None:
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


def test_public_key_list_envelope_and_pages(fake: FakeTwilio, client: Client) -> None:
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


def test_public_key_rejects_bad_input(fake: FakeTwilio, client: Client) -> None:
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


def test_aws_credentials_lifecycle(fake: FakeTwilio, client: Client) -> None:
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


def test_credentials_attach_to_known_subaccount_only(fake: FakeTwilio, client: Client) -> None:
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
