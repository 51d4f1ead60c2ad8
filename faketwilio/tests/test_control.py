"""The ``/_fake/`` control API (:mod:`faketwilio.control`) drives a separately running fake like
the Python API.
"""

from __future__ import annotations

import base64

import requests

from faketwilio import FakeTwilio, make_wav
from faketwilio.tests.helpers import ACCOUNT_SID, SUB_SID, SUB_TOKEN, media_url, rec_sid, validate


def test_http_control_api(fake: FakeTwilio) -> None:
    """The /_fake/ HTTP API drives a separately running fake like the Python API."""
    media = make_wav(0.5)
    base = f"{fake.url}/_fake"

    sub = requests.post(
        f"{base}/subaccounts", json={"sid": SUB_SID, "auth_token": SUB_TOKEN}, timeout=5
    )
    added = requests.post(
        f"{base}/recordings",
        json={
            "sid": rec_sid(1),
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
        media_url(fake, rec_sid(1), account=SUB_SID), auth=(SUB_SID, SUB_TOKEN), timeout=5
    )
    validated = validate(fake, "ctl").json()
    fault = requests.post(
        f"{base}/faults", json={"kind": "fail", "status": 500, "count": 1}, timeout=5
    )
    failed = validate(fake, "ctl")
    log = requests.get(f"{base}/requests", params={"path_contains": "/Tokens/"}, timeout=5).json()
    bad = requests.post(f"{base}/faults", json={"kind": "explode"}, timeout=5)
    requests.post(f"{base}/faults", json={"kind": "fail"}, timeout=5)
    requests.post(f"{base}/faults", json={"kind": "clear"}, timeout=5)
    cleared = validate(fake, "ctl")

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

    updated = requests.post(f"{base}/recordings/{rec_sid(1)}", json={"status": "absent"}, timeout=5)
    assert updated.json()["status"] == "absent"
    assert requests.delete(f"{base}/requests", timeout=5).status_code == 204
    assert fake.count() == 0
    assert requests.post(f"{base}/reset", timeout=5).json() == {"ok": True}
    assert fake.get_recording(rec_sid(1)) is None
    assert requests.get(f"{base}/health", timeout=5).json()["account_sid"] == ACCOUNT_SID
