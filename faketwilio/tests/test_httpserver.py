"""The HTTP plumbing (:mod:`faketwilio.httpserver`): the server answers many connections at once."""

from __future__ import annotations

import concurrent.futures

import requests
from twilio.rest import Client

from faketwilio import FakeTwilio, make_wav
from faketwilio.tests.helpers import ACCOUNT_SID, AUTH_TOKEN, media_url, rec_sid


def test_concurrent_requests(fake: FakeTwilio, client: Client) -> None:
    """Parallel downloads are all answered correctly (the server is threaded)."""
    for n in range(10):
        fake.add_recording(rec_sid(n), media=make_wav(0.1))

    def fetch(n: int) -> bytes:
        return requests.get(
            media_url(fake, rec_sid(n)), auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5
        ).content

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        bodies = list(pool.map(fetch, range(10)))

    assert all(body == make_wav(0.1) for body in bodies)
    assert fake.count(path_contains="/Recordings/") == 10
