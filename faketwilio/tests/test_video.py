"""Video ``RecordingSettings`` and ``CompositionSettings`` (:mod:`faketwilio.video`) answer like
Twilio, as seen by the official ``twilio`` client and ``requests``.
"""

from __future__ import annotations

import requests
from twilio.rest import Client

from faketwilio import FakeTwilio
from faketwilio.tests.helpers import ACCOUNT_SID, AUTH_TOKEN


def test_video_recording_settings(fake: FakeTwilio, client: Client) -> None:
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


def test_video_settings_post_status_and_validation(fake: FakeTwilio) -> None:
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
