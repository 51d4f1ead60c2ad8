"""Fixtures of the fake Twilio's tests: each test module gets its own server instance (not the
suite's shared one), so that tests can take it down and up.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from twilio.rest import Client

from faketwilio import FakeTwilio
from faketwilio.tests.helpers import ACCOUNT_SID, AUTH_TOKEN, RewritingHttpClient


@pytest.fixture(scope="module")
def server() -> Iterator[FakeTwilio]:
    """One fake for the test module, on a free loopback port."""
    fake = FakeTwilio(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(server: FakeTwilio) -> Iterator[FakeTwilio]:
    """The module's fake, emptied, listening, and without faults."""
    server.up()
    server.reset()
    yield server
    server.up()
    server.reset()


@pytest.fixture
def client(fake: FakeTwilio) -> Client:
    """The official Twilio REST client, pointed at the fake."""
    return Client(ACCOUNT_SID, AUTH_TOKEN, http_client=RewritingHttpClient(fake.url))
