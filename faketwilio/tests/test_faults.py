"""Injected faults (:mod:`faketwilio.faults`): failures, delays and dropped connections hit only
the requests they match, for as long as they were asked to; ``down()`` refuses connections until
``up()``.
"""

from __future__ import annotations

import time

import pytest
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from faketwilio import FakeTwilio
from faketwilio.tests.helpers import ACCOUNT_SID, AUTH_TOKEN, rec_sid, validate


def test_fail_for_count_then_recover(fake: FakeTwilio, client: Client) -> None:
    """fail(count=…, path_contains=…) hits only matching requests, then stops."""
    fake.add_recording(rec_sid(1), media=b"x")
    fake.fail(503, count=2, path_contains="/Recordings/")

    errors = []
    for _ in range(2):
        with pytest.raises(TwilioRestException) as failed:
            client.recordings(rec_sid(1)).fetch()
        errors.append((failed.value.status, failed.value.code))
    other = validate(fake, "x")  # does not match path_contains

    assert errors == [(503, 20503), (503, 20503)]
    assert other.status_code == 200
    assert client.recordings(rec_sid(1)).fetch().sid == rec_sid(1)


def test_fail_until_reset_faults(fake: FakeTwilio) -> None:
    """fail() without count lasts until reset_faults(), with a Twilio error body."""
    fake.fail(429)
    statuses = [validate(fake, "x").status_code for _ in range(3)]
    body = validate(fake, "x").json()
    fake.reset_faults()

    assert statuses == [429, 429, 429]
    assert body == {
        "code": 20429,
        "message": "Too Many Requests",
        "more_info": "https://www.twilio.com/docs/errors/20429",
        "status": 429,
    }
    assert validate(fake, "x").status_code == 200


def test_slow_delays_matching_requests(fake: FakeTwilio) -> None:
    """slow() delays matching requests (a short client timeout then times out)."""
    fake.slow(0.3, count=1, path_contains="/iam/")
    started = time.monotonic()
    assert validate(fake, "x").status_code == 200
    elapsed = time.monotonic() - started

    fake.slow(0.5, count=1)
    with pytest.raises(requests.Timeout):
        requests.get(
            f"{fake.url}/video/v1/RecordingSettings/Default",
            auth=(ACCOUNT_SID, AUTH_TOKEN),
            timeout=0.1,
        )
    fast_start = time.monotonic()
    assert validate(fake, "x").status_code == 200

    assert elapsed >= 0.3
    assert time.monotonic() - fast_start < 0.25


def test_drop_closes_without_answer(fake: FakeTwilio) -> None:
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


def test_down_refuses_then_up_on_same_port(fake: FakeTwilio) -> None:
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
