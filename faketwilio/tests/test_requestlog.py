"""The request log (:mod:`faketwilio.requestlog`) records what the fake received, and
``count()`` filters it.
"""

from __future__ import annotations

import requests

from faketwilio import FakeTwilio
from faketwilio.tests.helpers import ACCOUNT_SID, AUTH_TOKEN, validate


def test_request_log_and_count(fake: FakeTwilio) -> None:
    """The request log records method, path, query, headers, body and status."""
    requests.post(
        f"{fake.url}/video/v1/RecordingSettings/Default?x=1",
        data={"FriendlyName": "n"},
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=5,
    )
    validate(fake, "tok")
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


def test_count_filters(fake: FakeTwilio) -> None:
    """count() filters by method (any case) and path substring."""
    validate(fake, "a")
    validate(fake, "b")
    requests.get(
        f"{fake.url}/video/v1/RecordingSettings/Default", auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5
    )

    assert fake.count() == 3
    assert fake.count(method="post") == 2
    assert fake.count(path_contains="/Tokens/validate") == 2
    assert fake.count(method="GET", path_contains="/iam/") == 0
