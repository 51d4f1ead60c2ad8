"""The only place that talks to Twilio.

Builds the ``twilio`` REST client (honouring ``TWILIO_API_OVERRIDE`` for tests and the demo,
authenticated with the API key when one is configured, else the auth token),
turns Twilio's failures into two kinds the rest of the portal can act on (transient: try again
later; fatal: stop and show it), and offers the few calls the REST client does not have
(Flex token validation, streaming media download).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from django.conf import settings
from twilio.base import values
from twilio.base.exceptions import (
    TwilioException,
    TwilioRestException,
    TwilioServiceException,
)
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from portal.sids import API_KEY_SID


class TwilioError(Exception):
    """A call to Twilio did not succeed."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class TwilioUnavailable(TwilioError):
    """Twilio could not be reached, timed out, or answered 5xx/429: worth trying again."""


class TwilioRejected(TwilioError):
    """Twilio answered with a final refusal (401, 403, 404, 400…): retrying will not help."""


class TwilioNotConfigured(TwilioError):
    """The credentials to call Twilio are missing or incomplete; the message names what to set
    (see :func:`rest_credentials`)."""


def rewrite_url(url: str) -> str:
    """Map a twilio.com URL to ``TWILIO_API_OVERRIDE`` when it is set (tests and the demo).

    ``https://{product}[.{edge}][.{region}].twilio.com{path}`` becomes
    ``{TWILIO_API_OVERRIDE}/{product}{path}``; other URLs (S3, already rewritten) pass through.
    """
    override = settings.TWILIO_API_OVERRIDE
    if not override:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host.endswith(".twilio.com"):
        return url
    product = host.split(".", 1)[0]
    base = urlsplit(override)
    path = f"{base.path.rstrip('/')}/{product}{parts.path}"
    return urlunsplit((base.scheme, base.netloc, path, parts.query, parts.fragment))


class _OverridableHttpClient(TwilioHttpClient):
    """twilio's HTTP client, with twilio.com URLs rewritten by :func:`rewrite_url`."""

    def request(self, method: str, url: str, *args: Any, **kwargs: Any):
        return super().request(method, rewrite_url(url), *args, **kwargs)


@dataclass(frozen=True)
class RestCredentials:
    """How the portal authenticates to Twilio (REST API, token validation, media downloads):
    HTTP Basic ``username``/``password`` (an API key's SID and secret, or the account SID and
    auth token), acting for ``account_sid``."""

    username: str
    password: str
    account_sid: str

    def __repr__(self) -> str:
        return f"RestCredentials(username={self.username!r}, account_sid={self.account_sid!r})"


def rest_credentials() -> RestCredentials:
    """The credentials for every call to Twilio: the API key when ``TWILIO_API_KEY_SID`` and
    ``TWILIO_API_KEY_SECRET`` are set (Twilio's recommendation: revocable on its own, and the
    auth token is then needed only for webhook signatures), else the account's auth token.

    Raises :class:`TwilioNotConfigured` naming what is missing or malformed.
    """
    account_sid = settings.TWILIO_ACCOUNT_SID
    key_sid, key_secret = settings.TWILIO_API_KEY_SID, settings.TWILIO_API_KEY_SECRET
    if not account_sid:
        raise TwilioNotConfigured(
            "TWILIO_ACCOUNT_SID is not set (it names the account, also with an API key)"
        )
    if key_sid or key_secret:
        if not key_sid:
            raise TwilioNotConfigured("TWILIO_API_KEY_SECRET is set without TWILIO_API_KEY_SID")
        if not key_secret:
            raise TwilioNotConfigured("TWILIO_API_KEY_SID is set without TWILIO_API_KEY_SECRET")
        if not API_KEY_SID.fullmatch(key_sid):
            raise TwilioNotConfigured(
                f"TWILIO_API_KEY_SID {key_sid[:40]!r} is not an API key SID (SK followed by 32 "
                "hex digits)"
            )
        return RestCredentials(key_sid, key_secret, account_sid)
    if not settings.TWILIO_AUTH_TOKEN:
        raise TwilioNotConfigured(
            "no Twilio credentials: set TWILIO_API_KEY_SID and TWILIO_API_KEY_SECRET, or "
            "TWILIO_AUTH_TOKEN"
        )
    return RestCredentials(account_sid, settings.TWILIO_AUTH_TOKEN, account_sid)


@functools.cache
def _client(username: str, password: str, account_sid: str, region: str, timeout: float) -> Client:
    http_client = _OverridableHttpClient(timeout=timeout)
    return Client(username, password, account_sid, region=region or None, http_client=http_client)


def get_client() -> Client:
    """The process-wide Twilio REST client for the configured account, authenticated as
    :func:`rest_credentials` says (twilio-python's ``Client(key_sid, key_secret, account_sid)``
    with an API key)."""
    credentials = rest_credentials()
    return _client(
        credentials.username,
        credentials.password,
        credentials.account_sid,
        settings.TWILIO_REGION,
        settings.TWILIO_HTTP_TIMEOUT,
    )


@contextmanager
def translated_errors(what: str) -> Iterator[None]:
    """Turn twilio/requests exceptions into :class:`TwilioUnavailable` or :class:`TwilioRejected`.

    ``what`` names the operation for the error message (never a URL with credentials).
    """
    try:
        yield
    except TwilioRestException as exc:
        raise _classify(exc.status, f"{what}: Twilio answered {exc.status}", exc.code) from None
    except TwilioServiceException as exc:
        # twilio-python raises this one for RFC 9457 problem bodies: same status, same code.
        raise _classify(exc.status, f"{what}: Twilio answered {exc.status}", exc.code) from None
    except requests.RequestException as exc:
        raise TwilioUnavailable(f"{what}: Twilio unreachable ({type(exc).__name__})") from None
    except TwilioException as exc:
        # A list page Twilio refused comes as TwilioException("Unable to fetch page", response):
        # classified by its status like any other answer (a 401 is not worth retrying).
        response = exc.args[1] if len(exc.args) > 1 else None
        status = getattr(response, "status_code", None)
        if isinstance(status, int) and status >= 400:
            code = _error_code(getattr(response, "text", ""))
            raise _classify(status, f"{what}: Twilio answered {status}", code) from None
        raise TwilioUnavailable(f"{what}: {exc}") from None


def _error_body_code(response: requests.Response) -> int | None:
    """The ``code`` of a streamed error answer's JSON body, read no further than 4 KiB."""
    try:
        head = next(response.iter_content(4096), b"")
    except requests.RequestException:
        return None
    return _error_code(head)


def _error_code(body: Any) -> int | None:
    """The ``code`` of Twilio's JSON error body (e.g. 20003, 16109), or None."""
    try:
        code = json.loads(body).get("code") if body else None
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def _classify(status: int, message: str, code: int | None = None) -> TwilioError:
    if status >= 500 or status == 429:
        return TwilioUnavailable(message, status=status, code=code)
    if status == 401:
        message += f" (Twilio refused the portal's credentials: {_credentials_hint()})"
    return TwilioRejected(message, status=status, code=code)


def _credentials_hint() -> str:
    """Which configured credentials a 401 refused (never the secret itself)."""
    if settings.TWILIO_API_KEY_SID:
        return (
            f"check TWILIO_API_KEY_SID {settings.TWILIO_API_KEY_SID[:40]} and "
            "TWILIO_API_KEY_SECRET, and that the key belongs to TWILIO_ACCOUNT_SID"
        )
    return "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"


@dataclass(frozen=True)
class TwilioRecording:
    """The fields of a Twilio Recording resource the portal keeps, as plain values."""

    sid: str
    account_sid: str
    call_sid: str
    conference_sid: str
    status: str
    source: str
    channels: int | None
    duration: str | None
    start_time: Any
    date_created: Any
    date_updated: Any
    price: str | None
    price_unit: str
    error_code: int | None
    uri: str
    media_url: str
    encryption_details: dict[str, Any] | None


def _as_recording(instance: Any) -> TwilioRecording:
    def text(name: str) -> str:
        return getattr(instance, name, None) or ""

    return TwilioRecording(
        sid=text("sid"),
        account_sid=text("account_sid"),
        call_sid=text("call_sid"),
        conference_sid=text("conference_sid"),
        status=text("status"),
        source=text("source"),
        channels=_int_or_none(getattr(instance, "channels", None)),
        duration=getattr(instance, "duration", None),
        start_time=getattr(instance, "start_time", None),
        date_created=getattr(instance, "date_created", None),
        date_updated=getattr(instance, "date_updated", None),
        price=getattr(instance, "price", None),
        price_unit=text("price_unit"),
        error_code=_int_or_none(getattr(instance, "error_code", None)),
        uri=text("uri"),
        media_url=text("media_url"),
        encryption_details=getattr(instance, "encryption_details", None) or None,
    )


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def recording_fetch(*, sid: str, account_sid: str | None = None) -> TwilioRecording:
    """Fetch one Recording resource (of the configured account or one of its subaccounts).

    Deleted recordings too (``IncludeSoftDeleted``): Twilio keeps their metadata for 40 days,
    with status ``deleted``; after that, or for a recording it never had, it answers 404.
    """
    client = get_client()
    with translated_errors(f"fetch recording {sid}"):
        account = client.api.v2010.accounts(account_sid or client.account_sid)
        return _as_recording(account.recordings(sid).fetch(include_soft_deleted=True))


def recordings_list(
    *, account_sid: str | None = None, created_after: Any = None, page_size: int = 1000
) -> Iterator[TwilioRecording]:
    """Every Recording created after ``created_after``, page by page (lazily)."""
    client = get_client()
    with translated_errors("list recordings"):
        account = client.api.v2010.accounts(account_sid or client.account_sid)
        for instance in account.recordings.stream(
            date_created_after=created_after, page_size=page_size
        ):
            yield _as_recording(instance)


def recording_delete(*, sid: str, account_sid: str | None = None) -> bool:
    """Delete a recording's media and metadata at Twilio; True when Twilio confirms."""
    client = get_client()
    with translated_errors(f"delete recording {sid}"):
        account = client.api.v2010.accounts(account_sid or client.account_sid)
        return bool(account.recordings(sid).delete())


def public_key_create(*, pem: str, friendly_name: str) -> str:
    """Register an RSA public key (``-----BEGIN PUBLIC KEY-----`` PEM) with Twilio's Credentials
    API (``POST /v1/Credentials/PublicKeys``) so recordings can be encrypted for it; returns the
    ``CR…`` SID Twilio names it by. Twilio never gives the key back."""
    client = get_client()
    with translated_errors("register public key"):
        credential = client.accounts.v1.credentials.public_key.create(
            public_key=pem, friendly_name=friendly_name or values.unset
        )
    return str(credential.sid or "")


def public_key_delete(*, sid: str) -> bool:
    """Withdraw a registered public key (``DELETE /v1/Credentials/PublicKeys/{sid}``)."""
    client = get_client()
    with translated_errors(f"delete public key {sid}"):
        return bool(client.accounts.v1.credentials.public_key(sid).delete())


@dataclass(frozen=True)
class TwilioSubaccountInfo:
    """A subaccount as listed by Twilio, with the auth token that signs its webhooks."""

    sid: str
    friendly_name: str
    status: str
    auth_token: str


def subaccounts_list() -> list[TwilioSubaccountInfo]:
    """The configured account's subaccounts (every account listed other than itself).

    Twilio lets only the auth token or a Main API key read accounts: a Standard key's 401 is
    raised as :class:`TwilioRejected` saying so.
    """
    client = get_client()
    try:
        with translated_errors("list accounts"):
            return [
                TwilioSubaccountInfo(
                    sid=account.sid,
                    friendly_name=account.friendly_name or "",
                    status=account.status or "",
                    auth_token=account.auth_token or "",
                )
                for account in client.api.v2010.accounts.stream(page_size=1000)
                if account.sid != client.account_sid
            ]
    except TwilioRejected as exc:
        if exc.status != 401 or not settings.TWILIO_API_KEY_SID:
            raise
        raise TwilioRejected(
            f"list accounts: Twilio refused API key {settings.TWILIO_API_KEY_SID[:40]} (401): "
            "reading subaccounts needs a Main API key (Standard keys may not read accounts) "
            "or, without an API key, the auth token",
            status=exc.status,
            code=exc.code,
        ) from None


def iam_validate_token(token: str, *, timeout: float = 3.0) -> dict[str, Any]:
    """Ask Twilio IAM whether a Flex token is valid; returns Twilio's answer as a dict.

    The caller decides on the ``valid`` field: Twilio answers 200 with ``valid: false`` for a
    bad token, so the HTTP status alone means nothing. Authenticated with
    :func:`rest_credentials` (the API key when one is configured); Twilio refusing those
    credentials (401/403) raises :class:`TwilioRejected`, since no token can be judged then.
    """
    credentials = rest_credentials()
    realm = settings.TWILIO_REGION.split("-", 1)[0] if settings.TWILIO_REGION else ""
    host = f"iam.{realm}.twilio.com" if realm and realm != "us1" else "iam.twilio.com"
    url = rewrite_url(f"https://{host}/v1/Accounts/{credentials.account_sid}/Tokens/validate")
    try:
        response = _media_session().post(
            url,
            data=json.dumps({"token": token}),
            headers={"Content-Type": "application/json", "Cache-Control": "no-cache"},
            auth=(credentials.username, credentials.password),
            timeout=timeout,
        )
    except requests.RequestException as exc:
        raise TwilioUnavailable(f"token validation: unreachable ({type(exc).__name__})") from None
    if response.status_code >= 500 or response.status_code == 429:
        raise TwilioUnavailable(
            f"token validation: Twilio answered {response.status_code}",
            status=response.status_code,
        )
    if response.status_code in (401, 403):
        # The portal's own credentials were refused: no token can be judged (fail closed),
        # rather than reading Twilio's error body as "this token is invalid".
        response.close()
        raise _classify(
            response.status_code, f"token validation: Twilio answered {response.status_code}"
        )
    try:
        body = response.json()
    except ValueError:
        raise TwilioUnavailable("token validation: Twilio's answer was not JSON") from None
    if not isinstance(body, dict):
        raise TwilioUnavailable("token validation: Twilio's answer was not an object")
    return body


@functools.cache
def _media_session() -> requests.Session:
    return requests.Session()


@dataclass
class TwilioMedia:
    """A recording's media as Twilio sends it: bytes ``[start, end)`` of ``size``."""

    size: int
    start: int
    end: int
    partial: bool
    chunks: Iterator[bytes]


_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
# Twilio's "Cannot fetch .mp3 encrypted recording": encrypted media only comes as .wav.
ERROR_ENCRYPTED_NOT_MP3 = 16109


def recording_media_fetch(
    *,
    sid: str,
    account_sid: str | None = None,
    channels: int | None = None,
    range_header: str | None = None,
    fmt: str = "wav",
    chunk_size: int = 256 * 1024,
) -> TwilioMedia:
    """Stream a recording's media from Twilio (dual-channel recordings with both channels),
    passing a player's ``Range`` header through. The connection closes when ``chunks`` is
    exhausted or closed."""
    credentials = rest_credentials()
    account = account_sid or credentials.account_sid
    url = rewrite_url(
        f"https://api.twilio.com/2010-04-01/Accounts/{account}/Recordings/{sid}.{fmt}"
    )
    params = {"RequestedChannels": "2"} if channels == 2 else None
    headers = {"Range": range_header} if range_header else {}
    try:
        response = _media_session().get(
            url,
            params=params,
            headers=headers,
            auth=(credentials.username, credentials.password),
            stream=True,
            timeout=settings.TWILIO_HTTP_TIMEOUT,
        )
    except requests.RequestException as exc:
        raise TwilioUnavailable(f"download {sid}: unreachable ({type(exc).__name__})") from None
    if response.status_code >= 400:
        # A refusal's small JSON body names Twilio's error; a 5xx's is not waited for.
        code = _error_body_code(response) if response.status_code < 500 else None
        response.close()
        message = f"download {sid}: Twilio answered {response.status_code}"
        if code == ERROR_ENCRYPTED_NOT_MP3:
            message += (
                f" (error {code}: Twilio serves encrypted recordings only as .wav, not .{fmt})"
            )
        raise _classify(response.status_code, message, code)
    found = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    if response.status_code == 206 and found:
        start, last, size = (int(value) for value in found.groups())
        end, partial = last + 1, True
    else:
        size = int(response.headers.get("Content-Length") or 0)
        start, end, partial = 0, size, False

    def chunks() -> Iterator[bytes]:
        try:
            yield from response.iter_content(chunk_size)
        except requests.RequestException as exc:
            raise TwilioUnavailable(f"download {sid}: interrupted ({type(exc).__name__})") from None
        finally:
            response.close()

    return TwilioMedia(size=size, start=start, end=end, partial=partial, chunks=chunks())


# --- Video storage settings and credentials (the admin's Twilio storage pages) -----------------

VIDEO_SETTINGS_KINDS = ("recording", "composition")


@dataclass(frozen=True)
class VideoStorageSettings:
    """Video ``RecordingSettings`` or ``CompositionSettings`` (``/v1/…Settings/Default``): where
    Twilio stores Video media (its own storage or the customer's S3) and whether it encrypts it.
    """

    friendly_name: str
    aws_credentials_sid: str
    aws_s3_url: str
    aws_storage_enabled: bool
    encryption_key_sid: str
    encryption_enabled: bool


def _video_settings_context(client: Client, kind: str) -> Any:
    if kind not in VIDEO_SETTINGS_KINDS:
        raise ValueError(f"kind must be one of {VIDEO_SETTINGS_KINDS}, not {kind!r}")
    video = client.video.v1
    return video.recording_settings() if kind == "recording" else video.composition_settings()


def _as_video_settings(instance: Any) -> VideoStorageSettings:
    return VideoStorageSettings(
        friendly_name=instance.friendly_name or "",
        aws_credentials_sid=instance.aws_credentials_sid or "",
        aws_s3_url=instance.aws_s3_url or "",
        aws_storage_enabled=bool(instance.aws_storage_enabled),
        encryption_key_sid=instance.encryption_key_sid or "",
        encryption_enabled=bool(instance.encryption_enabled),
    )


def video_settings_fetch(*, kind: str) -> VideoStorageSettings:
    """The current Video ``RecordingSettings`` (``kind="recording"``) or
    ``CompositionSettings`` (``kind="composition"``)."""
    client = get_client()
    with translated_errors(f"fetch video {kind} settings"):
        return _as_video_settings(_video_settings_context(client, kind).fetch())


def video_settings_update(*, kind: str, new: VideoStorageSettings) -> VideoStorageSettings:
    """Set every field of the Video settings of ``kind`` (Twilio's POST replaces them); empty
    SIDs and URL are sent empty, which clears them. Answers the settings as Twilio stored them."""
    client = get_client()
    with translated_errors(f"update video {kind} settings"):
        instance = _video_settings_context(client, kind).create(
            friendly_name=new.friendly_name,
            aws_credentials_sid=new.aws_credentials_sid,
            aws_s3_url=new.aws_s3_url,
            aws_storage_enabled=new.aws_storage_enabled,
            encryption_key_sid=new.encryption_key_sid,
            encryption_enabled=new.encryption_enabled,
        )
        return _as_video_settings(instance)


@dataclass(frozen=True)
class TwilioCredential:
    """An AWS credential or a public key registered at Twilio: Twilio never returns the key
    material, only these fields."""

    sid: str
    friendly_name: str
    account_sid: str
    date_created: Any
    date_updated: Any


CREDENTIAL_KINDS = ("aws", "public_key")


def _credentials_resource(client: Client, kind: str) -> Any:
    if kind not in CREDENTIAL_KINDS:
        raise ValueError(f"kind must be one of {CREDENTIAL_KINDS}, not {kind!r}")
    credentials = client.accounts.v1.credentials
    return credentials.aws if kind == "aws" else credentials.public_key


def _as_credential(instance: Any) -> TwilioCredential:
    return TwilioCredential(
        sid=instance.sid or "",
        friendly_name=instance.friendly_name or "",
        account_sid=instance.account_sid or "",
        date_created=instance.date_created,
        date_updated=instance.date_updated,
    )


def credentials_list(*, kind: str) -> list[TwilioCredential]:
    """Every AWS credential (``kind="aws"``) or public key (``kind="public_key"``) registered
    at Twilio (``/v1/Credentials/AWS``, ``/v1/Credentials/PublicKeys``)."""
    client = get_client()
    with translated_errors(f"list {kind} credentials"):
        return [
            _as_credential(item)
            for item in _credentials_resource(client, kind).stream(page_size=100)
        ]


def aws_credential_create(
    *, access_key_id: str, secret_access_key: str, friendly_name: str
) -> TwilioCredential:
    """Register an AWS access key with Twilio (``POST /v1/Credentials/AWS``) so Twilio can write
    to the customer's bucket. The secret goes to Twilio only: the portal keeps nothing."""
    client = get_client()
    with translated_errors("create AWS credential"):
        instance = client.accounts.v1.credentials.aws.create(
            credentials=f"{access_key_id}:{secret_access_key}",
            friendly_name=friendly_name or values.unset,
        )
        return _as_credential(instance)


def aws_credential_delete(*, sid: str) -> bool:
    """Remove an AWS credential from Twilio (``DELETE /v1/Credentials/AWS/{sid}``)."""
    client = get_client()
    with translated_errors(f"delete AWS credential {sid}"):
        return bool(client.accounts.v1.credentials.aws(sid).delete())


# --- TaskRouter tasks (Flex conversations: writing ``conversations.media``) --------------------


class TwilioPreconditionFailed(TwilioRejected):
    """Twilio answered 412 to a write with ``If-Match``: the resource changed since it was read.
    Read it again and redo the change; retrying the same write never helps."""


class TwilioNotFound(TwilioRejected):
    """Twilio answered 404: the resource does not exist (any more)."""


@dataclass(frozen=True)
class TaskSnapshot:
    """A TaskRouter Task as read: its attributes (parsed JSON), the ``ETag`` that a conditional
    write must name, and the fields the portal shows."""

    sid: str
    attributes: dict[str, Any]
    etag: str
    assignment_status: str


def _header(headers: Any, name: str) -> str:
    """A response header by name, whatever case the server gave it (twilio-python hands back
    a plain dict of the response's headers)."""
    wanted = name.lower()
    for key, value in dict(headers or {}).items():
        if str(key).lower() == wanted:
            return str(value)
    return ""


@contextmanager
def _task_errors(what: str) -> Iterator[None]:
    """:func:`translated_errors`, with 412 and 404 as their own kinds: the attachment reads
    again on the first and records the task as gone on the second."""
    try:
        with translated_errors(what):
            yield
    except TwilioRejected as exc:
        if exc.status == 412:
            raise TwilioPreconditionFailed(str(exc), status=412, code=exc.code) from None
        if exc.status == 404:
            raise TwilioNotFound(str(exc), status=404, code=exc.code) from None
        raise


def _task_attributes(raw: Any, what: str) -> dict[str, Any]:
    """A task's ``attributes`` JSON string as a dict; anything else is Twilio's fault, not a
    reason to write over what is there."""
    try:
        parsed = json.loads(raw) if isinstance(raw, str) and raw else {}
    except ValueError:
        raise TwilioRejected(f"{what}: the task's attributes are not JSON") from None
    if not isinstance(parsed, dict):
        raise TwilioRejected(f"{what}: the task's attributes are not a JSON object")
    return parsed


def taskrouter_task_fetch(*, workspace_sid: str, task_sid: str) -> TaskSnapshot:
    """Read one TaskRouter Task with its ``ETag`` (``GET /v1/Workspaces/WS…/Tasks/WT…``).

    A deleted task (TaskRouter removes completed and canceled tasks after a while) raises
    :class:`TwilioNotFound`; an answer without an ``ETag`` raises :class:`TwilioUnavailable`,
    since no safe conditional write can follow it.
    """
    what = f"fetch task {task_sid}"
    client = get_client()
    with _task_errors(what):
        response = (
            client.taskrouter.v1.workspaces(workspace_sid).tasks(task_sid).fetch_with_http_info()
        )
    etag = _header(response.headers, "ETag")
    if not etag:
        raise TwilioUnavailable(f"{what}: Twilio sent no ETag")
    instance = response.data
    return TaskSnapshot(
        sid=str(getattr(instance, "sid", None) or task_sid),
        attributes=_task_attributes(getattr(instance, "attributes", None), what),
        etag=etag,
        assignment_status=str(getattr(instance, "assignment_status", None) or ""),
    )


def taskrouter_task_update_attributes(
    *, workspace_sid: str, task_sid: str, attributes: dict[str, Any], if_match: str
) -> TaskSnapshot:
    """Replace a task's attributes, only if the task still has the ETag ``if_match``
    (``POST …/Tasks/WT…`` with ``If-Match``); answers the task as Twilio stored it.

    Raises :class:`TwilioPreconditionFailed` (412) when someone changed the task since it was
    read, :class:`TwilioNotFound` when it is gone, :class:`TwilioUnavailable` for 429/5xx and
    timeouts. An empty ``if_match`` is refused: twilio-python would send the write unguarded.
    """
    if not if_match:
        raise ValueError("if_match is required: an unconditional write could lose others' changes")
    what = f"update task {task_sid}"
    client = get_client()
    with _task_errors(what):
        response = (
            client.taskrouter.v1.workspaces(workspace_sid)
            .tasks(task_sid)
            .update_with_http_info(
                if_match=if_match, attributes=json.dumps(attributes, separators=(",", ":"))
            )
        )
    instance = response.data
    return TaskSnapshot(
        sid=str(getattr(instance, "sid", None) or task_sid),
        attributes=_task_attributes(getattr(instance, "attributes", None), what),
        etag=_header(response.headers, "ETag"),
        assignment_status=str(getattr(instance, "assignment_status", None) or ""),
    )


@dataclass(frozen=True)
class TaskRouterWorker:
    """A TaskRouter Worker as listed: its SID, friendly name (the agent's Flex identity) and
    attributes (decoded; {} when they are not a JSON object)."""

    sid: str
    friendly_name: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class TaskRouterQueue:
    """A TaskRouter TaskQueue as listed."""

    sid: str
    friendly_name: str


def _json_object_or_empty(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        parsed = json.loads(raw) if raw else {}
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def taskrouter_workers_list(
    *, workspace_sid: str, page_size: int = 1000
) -> Iterator[TaskRouterWorker]:
    """Every Worker of the workspace, page by page (lazily; Twilio's errors as
    :class:`TwilioError` from any page)."""
    client = get_client()
    with translated_errors(f"list workers of {workspace_sid}"):
        for instance in client.taskrouter.v1.workspaces(workspace_sid).workers.stream(
            page_size=page_size
        ):
            yield TaskRouterWorker(
                sid=str(instance.sid or ""),
                friendly_name=str(instance.friendly_name or ""),
                attributes=_json_object_or_empty(instance.attributes),
            )


def taskrouter_queues_list(
    *, workspace_sid: str, page_size: int = 1000
) -> Iterator[TaskRouterQueue]:
    """Every TaskQueue of the workspace, page by page (lazily)."""
    client = get_client()
    with translated_errors(f"list task queues of {workspace_sid}"):
        for instance in client.taskrouter.v1.workspaces(workspace_sid).task_queues.stream(
            page_size=page_size
        ):
            yield TaskRouterQueue(
                sid=str(instance.sid or ""), friendly_name=str(instance.friendly_name or "")
            )
