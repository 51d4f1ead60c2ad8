"""Shared set-up for playback tests: recordings with stored media, rules, Flex tokens, and the
player's request."""

from __future__ import annotations

import base64
import secrets
from datetime import timedelta

from django.test import Client
from django.utils import timezone

from audit.models import AccessRule
from faketwilio.recording_formats import make_wav
from recordings.integrations import storage
from recordings.models import MediaLocation, Recording, RecordingStatus, SyncState
from recordings.tests.callbacks import new_sid

URL_PROVIDER = "/api/v1/url-provider"
FLEX_ORIGIN = "https://flex.twilio.com"


def local_recording(
    *, seconds: float = 1.0, channels: int = 1, **fields
) -> tuple[Recording, bytes]:
    """A completed recording whose WAV lives in the local media folder."""
    sid = new_sid("RE")
    key = f"AC-test/{sid}.wav"
    data = make_wav(seconds, channels=channels)
    path = storage.local_root() / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    defaults = {
        "account_sid": "AC" + "a" * 32,
        "call_sid": new_sid("CA"),
        "status": RecordingStatus.COMPLETED,
        "source": "DialVerb",
        "channels": channels,
        "start_time": timezone.now() - timedelta(days=1),
        "media_location": MediaLocation.LOCAL,
        "media_key": key,
        "sync_state": SyncState.SYNCED,
    }
    defaults.update(fields)
    return Recording.objects.create(sid=sid, **defaults), data


def s3_recording(s3, bucket: str, *, data: bytes | None = None) -> tuple[Recording, bytes]:
    """A completed, unencrypted recording stored in the (moto) S3 bucket."""
    sid = new_sid("RE")
    key = f"recordings/{sid}.wav"
    data = data if data is not None else make_wav(1)
    s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="audio/wav")
    recording = Recording.objects.create(
        sid=sid,
        account_sid="AC" + "a" * 32,
        status=RecordingStatus.COMPLETED,
        source="DialVerb",
        channels=1,
        start_time=timezone.now() - timedelta(days=1),
        media_location=MediaLocation.S3,
        media_bucket=bucket,
        media_key=key,
        sync_state=SyncState.SYNCED,
    )
    return recording, data


def allow_supervisors(**fields) -> AccessRule:
    """The rule most tests rely on: supervisors may play everything."""
    values = {"name": "supervisors", "effect": "allow", "roles": ["supervisor"], "reason": "test"}
    values.update(fields)
    return AccessRule.objects.create(**values)


def flex_token(fake_twilio, *, identity: str = "alice", roles=("supervisor",), **fields) -> str:
    """A token the fake Twilio IAM accepts (with a colon in it, as JWE tokens may have)."""
    token = "eyJ" + secrets.token_urlsafe(24) + ":part." + secrets.token_urlsafe(16)
    fake_twilio.add_token(
        token,
        identity=identity,
        realm_user_id=f"{identity}@example.com",
        roles=list(roles),
        worker_sid="WK" + "1" * 32,
        **fields,
    )
    return token


def basic(token: str) -> str:
    """The player's Authorization header for a Flex token."""
    return "Basic " + base64.b64encode(f"token:{token}".encode()).decode()


def ask(client: Client, sid: str | None, token: str | None, *, origin: str = FLEX_ORIGIN, **extra):
    """The player's url_provider request."""
    headers = {"HTTP_ORIGIN": origin}
    if token is not None:
        headers["HTTP_AUTHORIZATION"] = basic(token)
    params = {"recording_sid": sid} if sid is not None else {}
    return client.get(URL_PROVIDER, params, **headers, **extra)
