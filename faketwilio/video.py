"""Programmable Video (``video.twilio.com``): the account's ``RecordingSettings`` and
``CompositionSettings``, where external S3 storage and recording encryption are configured.

Each is fetched (defaults until first set) and set with a ``POST`` that needs
``FriendlyName`` and answers 201; the two are kept separately.
"""

from __future__ import annotations

from typing import Any

from faketwilio.httpserver import Request, Response, bad_request, boolean
from faketwilio.routing import routes
from faketwilio.state import State

VIDEO_BASE = "https://video.twilio.com"
SETTINGS_KINDS = ("RecordingSettings", "CompositionSettings")


def settings_json(state: State, kind: str) -> dict[str, Any]:
    """``RecordingSettings`` or ``CompositionSettings`` as Twilio would answer them now."""
    stored = state.settings.get(kind, {})
    return {
        "account_sid": state.account_sid,
        "friendly_name": stored.get("friendly_name"),
        "aws_credentials_sid": stored.get("aws_credentials_sid"),
        "aws_s3_url": stored.get("aws_s3_url"),
        "aws_storage_enabled": stored.get("aws_storage_enabled", False),
        "encryption_key_sid": stored.get("encryption_key_sid"),
        "encryption_enabled": stored.get("encryption_enabled", False),
        "url": f"{VIDEO_BASE}/v1/{kind}/Default",
    }


def video_settings(state: State, request: Request, match: dict[str, str]) -> Response:
    """``GET`` or ``POST /video/v1/{RecordingSettings|CompositionSettings}/Default``."""
    kind = match["kind"]
    if request.method == "GET":
        with state.lock:
            return Response.json(200, settings_json(state, kind))
    form = request.form()
    if not form.get("FriendlyName"):
        raise bad_request("Missing required parameter FriendlyName in the post body")
    if len(form["FriendlyName"]) > 64:
        raise bad_request("FriendlyName must be at most 64 characters")
    update: dict[str, Any] = {"friendly_name": form["FriendlyName"]}
    for param, name in (
        ("AwsCredentialsSid", "aws_credentials_sid"),
        ("EncryptionKeySid", "encryption_key_sid"),
        ("AwsS3Url", "aws_s3_url"),
    ):
        if param in form:
            update[name] = form[param] or None
    for param, name in (
        ("AwsStorageEnabled", "aws_storage_enabled"),
        ("EncryptionEnabled", "encryption_enabled"),
    ):
        value = boolean(form, param)
        if value is not None:
            update[name] = value
    with state.lock:
        state.update_settings(kind, update)
        return Response.json(201, settings_json(state, kind))


ROUTES = routes(
    (
        "GET POST",
        r"/video/v1/(?P<kind>RecordingSettings|CompositionSettings)/Default",
        video_settings,
    ),
)
