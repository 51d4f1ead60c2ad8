"""Routing (:mod:`faketwilio.routing`): an unknown path is Twilio's 404, a known path with
another method its 405.
"""

from __future__ import annotations

import requests

from faketwilio import FakeTwilio
from faketwilio.tests.helpers import ACCOUNT_SID, AUTH_TOKEN


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
