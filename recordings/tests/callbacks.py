"""Helpers for tests that play Twilio: build recording status callbacks and sign them with
twilio's own ``RequestValidator`` algorithm."""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.test import Client, TestCase
from twilio.request_validator import RequestValidator

WEBHOOK_PATH = "/twilio/recording-status"


def new_sid(prefix: str) -> str:
    """A random Twilio-style SID: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


def callback_params(
    recording_sid: str | None = None, status: str = "completed", **overrides: Any
) -> dict[str, str]:
    """The parameters Twilio posts to ``recordingStatusCallback`` for one recording."""
    sid = recording_sid or new_sid("RE")
    params = {
        "AccountSid": settings.TWILIO_ACCOUNT_SID,
        "CallSid": "CA" + "1" * 32,
        "RecordingSid": sid,
        "RecordingUrl": (
            f"https://api.twilio.com/2010-04-01/Accounts/{settings.TWILIO_ACCOUNT_SID}"
            f"/Recordings/{sid}"
        ),
        "RecordingStatus": status,
        "RecordingChannels": "2",
        "RecordingSource": "DialVerb",
        "RecordingStartTime": "Mon, 23 Nov 2026 10:00:00 +0000",
        "RecordingTrack": "both",
        "ErrorCode": "0",
    }
    if status == "completed":
        params["RecordingDuration"] = "42"
    params.update({key: str(value) for key, value in overrides.items()})
    return params


def sign(url: str, params: dict[str, str] | str, token: str | None = None) -> str:
    """``X-Twilio-Signature`` for a form body (dict) or a JSON body's URL (str ignored)."""
    validator = RequestValidator(token or settings.TWILIO_AUTH_TOKEN)
    return validator.compute_signature(url, params if isinstance(params, dict) else {})


def post_form(
    client: Client,
    params: dict[str, str],
    *,
    token: str | None = None,
    signature: str | None = None,
    base: str = "http://testserver",
    headers: dict[str, str] | None = None,
):
    """POST a form-encoded callback, signed for ``base + WEBHOOK_PATH`` unless told otherwise."""
    sig = signature if signature is not None else sign(base + WEBHOOK_PATH, params, token)
    extra = {"HTTP_X_TWILIO_SIGNATURE": sig} if sig else {}
    for name, value in (headers or {}).items():
        extra["HTTP_" + name.upper().replace("-", "_")] = value
    # The view queues work on commit; run those callbacks as a committed request would.
    with TestCase.captureOnCommitCallbacks(execute=True):
        return client.post(
            WEBHOOK_PATH,
            data=urlencode(params),
            content_type="application/x-www-form-urlencoded",
            **extra,
        )


def post_json(client: Client, params: dict[str, str], *, body: str | None = None, token=None):
    """POST a JSON callback the way Twilio signs one: ``bodySHA256`` in the query string and the
    signature over the URL alone. ``body`` replaces the signed body (to test tampering)."""
    signed_body = json.dumps(params)
    digest = hashlib.sha256(signed_body.encode()).hexdigest()
    path = f"{WEBHOOK_PATH}?{urlencode({'bodySHA256': digest})}"
    sig = sign("http://testserver" + path, {}, token)
    with TestCase.captureOnCommitCallbacks(execute=True):
        return client.post(
            path,
            data=body if body is not None else signed_body,
            content_type="application/json",
            HTTP_X_TWILIO_SIGNATURE=sig,
        )
