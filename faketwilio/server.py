"""A fake Twilio REST API on loopback, for the test suite, the benchmarks and the demo.

The portal talks to Twilio only through ``TWILIO_API_OVERRIDE``: a request for
``https://{product}.twilio.com{path}`` goes to ``{override}/{product}{path}``. This module
answers those requests the way Twilio does (same paths, parameters, JSON field names, date
formats, list envelopes, pagination and error bodies) for the small part of Twilio the portal
uses:

* ``iam``: Flex token validation (``/iam/v1/Accounts/{AC}/Tokens/validate``);
* ``api``: accounts, and the Recording resource of API 2010-04-01 (fetch, list, delete, media);
* ``video``: ``RecordingSettings`` and ``CompositionSettings``;
* ``accounts``: ``Credentials/PublicKeys`` and ``Credentials/AWS``.

Tests drive it in-process through :class:`FakeTwilio`'s methods; a separately running fake
(``python -m faketwilio``) is driven over HTTP under ``/_fake/`` (no auth there). Failures can
be injected (error status, delay, dropped connection, listener down) so that the portal's
retry and error handling can be exercised without the real Twilio.

It is plain Python (standard library, plus ``cryptography`` to check uploaded public keys) and
never imports Django.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import io
import json
import re
import secrets
import signal
import socket
import struct
import sys
import threading
import time
import wave
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit

# The one WAV generator of the project (plain Python, no Django), shared with the fixtures.
from faketwilio.recording_formats import make_wav

__all__ = [
    "FakeTwilio",
    "RecordedRequest",
    "make_wav",
    "new_sid",
    "seed_demo",
    "serve_forever",
]

API_VERSION = "2010-04-01"
API_BASE = "https://api.twilio.com"
VIDEO_BASE = "https://video.twilio.com"
ACCOUNTS_BASE = "https://accounts.twilio.com"
ERRORS_BASE = "https://www.twilio.com/docs/errors"

#: Twilio's page size when ``PageSize`` is not sent, and the largest it accepts.
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
#: The request log keeps at most this many entries (oldest dropped), so a long benchmark run
#: against a separately running fake does not grow without bound.
MAX_LOGGED_REQUESTS = 100_000

_ACCOUNT_SID_RE = re.compile(r"AC[0-9a-fA-F]{32}")
_RECORDING_FIELDS = frozenset(
    {
        "account_sid",
        "call_sid",
        "status",
        "media",
        "channels",
        "source",
        "track",
        "duration",
        "start_time",
        "date_created",
        "date_updated",
        "price",
        "price_unit",
        "error_code",
        "encryption_details",
        "media_url",
        "conference_sid",
    }
)
_SETTINGS_KINDS = ("RecordingSettings", "CompositionSettings")
_CREDENTIAL_KINDS = ("PublicKeys", "AWS")


def new_sid(prefix: str) -> str:
    """A random Twilio-style SID: the two-letter ``prefix`` and 32 lowercase hex digits."""
    return prefix + secrets.token_hex(16)


def _wav_seconds(media: bytes | None) -> int | None:
    """The length of a WAV file in whole seconds (rounded), or None when it is not a WAV."""
    if not media:
        return None
    try:
        with wave.open(io.BytesIO(media), "rb") as reader:
            rate = reader.getframerate()
            return round(reader.getnframes() / rate) if rate else None
    except (wave.Error, EOFError, struct.error):
        return None


def _utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (a naive one is taken to be UTC already)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _rfc2822(value: datetime | None) -> str | None:
    """API 2010-04-01's date format: ``Fri, 14 Oct 2016 21:56:34 +0000``."""
    return format_datetime(_utc(value)) if value else None


def _iso(value: datetime | None) -> str | None:
    """The v1 APIs' date format: ``2016-10-14T21:56:34Z``."""
    return _utc(value).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _iso_millis(value: datetime) -> str:
    """Flex token validation's expiration format: ``2018-09-24T23:22:44.240Z``."""
    value = _utc(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _parse_datetime(value: Any) -> datetime | None:
    """A datetime from a datetime or an ISO 8601 string (control API input); None stays None."""
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    raise ValueError(f"not a datetime: {value!r}")


class _HttpError(Exception):
    """An error answer, rendered as Twilio's JSON error body."""

    def __init__(self, status: int, code: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def _error_body(status: int, code: int, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"{ERRORS_BASE}/{code}",
        "status": status,
    }


def _bad_request(message: str) -> _HttpError:
    return _HttpError(400, 20001, message)


def _not_found(twilio_path: str) -> _HttpError:
    return _HttpError(404, 20404, f"The requested resource {twilio_path} was not found")


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> _Response:
        return cls(
            status,
            json.dumps(payload).encode(),
            {"Content-Type": "application/json; charset=utf-8", **(headers or {})},
        )

    @classmethod
    def error(cls, exc: _HttpError) -> _Response:
        return cls.json(exc.status, _error_body(exc.status, exc.code, exc.message), exc.headers)


@dataclass
class RecordedRequest:
    """One request the fake received (``/_fake/`` control requests are not recorded).

    ``path`` is the request path as received (with the product prefix, without the query),
    ``query`` the query parameters (last value wins), ``body`` the raw bytes, ``status`` the
    HTTP status answered (None while in flight or when the connection was dropped).
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    received_at: datetime
    status: int | None = None

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (undecodable bytes replaced)."""
        return self.body.decode("utf-8", "replace")

    def form(self) -> dict[str, str]:
        """The body parsed as ``application/x-www-form-urlencoded`` (last value wins)."""
        return dict(parse_qsl(self.text, keep_blank_values=True))

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        """A request header by case-insensitive name, or None."""
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as served by ``GET /_fake/requests`` (body as text and base64)."""
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.text,
            "body_base64": base64.b64encode(self.body).decode(),
            "status": self.status,
            "received_at": _iso_millis(self.received_at),
        }


@dataclass
class _Account:
    sid: str
    auth_token: str
    friendly_name: str
    status: str
    owner_account_sid: str
    date_created: datetime
    ordinal: int


@dataclass
class _Recording:
    sid: str
    account_sid: str
    call_sid: str
    status: str
    media: bytes | None
    channels: int
    source: str
    track: str
    duration: str
    start_time: datetime | None
    date_created: datetime
    date_updated: datetime
    price: str | None
    price_unit: str
    error_code: int | None
    encryption_details: dict[str, Any] | None
    media_url: str | None
    conference_sid: str | None
    deleted: bool = False

    @property
    def stored_externally(self) -> bool:
        """True when ``media_url`` points outside Twilio (external S3): Twilio keeps no media."""
        return bool(self.media_url) and not self.media_url.startswith(API_BASE + "/")


@dataclass
class _Token:
    token: str
    identity: str
    realm_user_id: str
    roles: list[str]
    worker_sid: str
    expiration: datetime


@dataclass
class _Credential:
    sid: str
    account_sid: str
    friendly_name: str | None
    secret: str
    date_created: datetime
    date_updated: datetime


@dataclass
class _Fault:
    kind: str  # "fail" | "slow" | "drop"
    remaining: int | None
    path_contains: str | None
    status: int = 503
    seconds: float = 0.0

    def matches(self, path: str) -> bool:
        return self.path_contains is None or self.path_contains in path


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Any
    body: bytes
    principal: _Account | None = None

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))


_Route = tuple[frozenset[str], re.Pattern[str], Callable[[_Request, dict[str, str]], _Response]]


class FakeTwilio:
    """A fake Twilio HTTP server for one main account (and its subaccounts), on loopback.

    Start it with :meth:`start`; point the portal at :attr:`url` (``TWILIO_API_OVERRIDE``).
    Every Twilio endpoint requires HTTP Basic auth with the account SID and auth token (or a
    subaccount's, for that subaccount's ``/2010-04-01/Accounts/{AC}`` paths). All methods are
    thread-safe: the server answers on many threads while a test changes the state.
    """

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        friendly_name: str = "Fake Twilio main account",
        verbose: bool = False,
    ):
        if not _ACCOUNT_SID_RE.fullmatch(account_sid or ""):
            raise ValueError("account_sid must be 'AC' followed by 32 hex digits")
        if not auth_token:
            raise ValueError("auth_token must not be empty")
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.host = host
        self.port = port
        self.verbose = verbose
        self._friendly_name = friendly_name
        self._lock = threading.RLock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._routes = self._build_routes()
        self._started = False
        self._created = _now()
        self._clear_state()

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """Base URL to use as ``TWILIO_API_OVERRIDE``, e.g. ``http://127.0.0.1:41234``."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the server is listening."""
        return self._server is not None

    def start(self) -> FakeTwilio:
        """Listen (port 0 picks a free port, kept for later :meth:`up`) on a daemon thread."""
        with self._lock:
            if self._server is not None:
                return self
            server = _Server((self.host, self.port), _Handler)
            server.fake = self
            self.port = server.server_address[1]
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"faketwilio:{self.port}",
                daemon=True,
            )
            self._thread.start()
            self._started = True
        return self

    def stop(self) -> None:
        """Stop listening and close every open connection (state is kept)."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server, self._thread = None, None
        if server is None:
            return
        server.closed = True
        server.shutdown()
        server.server_close()
        with self._connections_lock:
            connections = list(self._connections)
            self._connections.clear()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if thread is not None:
            thread.join(timeout=5)

    def down(self) -> None:
        """Simulate Twilio being unreachable: connections are refused until :meth:`up`."""
        self.stop()

    def up(self) -> None:
        """Listen again, on the same port as before :meth:`down`."""
        self.start()

    def __enter__(self) -> FakeTwilio:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ state

    def _clear_state(self) -> None:
        with self._lock:
            self._subaccounts: dict[str, _Account] = {}
            self._recordings: dict[str, _Recording] = {}
            self._tokens: dict[str, _Token] = {}
            self._settings: dict[str, dict[str, Any]] = {}
            self._public_keys: dict[str, _Credential] = {}
            self._aws: dict[str, _Credential] = {}
            self._faults: list[_Fault] = []
            self._log: list[RecordedRequest] = []
            self._ordinal = 0

    def reset(self) -> None:
        """Forget recordings, tokens, subaccounts, settings, credentials, faults and the log.

        A fake that was started and then taken :meth:`down` listens again, so a test that
        forgot :meth:`up` cannot leave a shared fake unreachable for the tests after it.
        """
        self._clear_state()
        if self._started and not self.running:
            self.up()

    @property
    def _main(self) -> _Account:
        return _Account(
            sid=self.account_sid,
            auth_token=self.auth_token,
            friendly_name=self._friendly_name,
            status="active",
            owner_account_sid=self.account_sid,
            date_created=self._created,
            ordinal=0,
        )

    def add_subaccount(
        self, sid: str, auth_token: str, friendly_name: str = "", status: str = "active"
    ) -> dict[str, Any]:
        """Create (or replace) a subaccount of the main account; returns its Account JSON.

        Its credentials then authenticate requests to its own ``/2010-04-01/Accounts/{sid}``
        paths, and recordings can be added to it.
        """
        if not _ACCOUNT_SID_RE.fullmatch(sid or "") or sid == self.account_sid:
            raise ValueError("a subaccount sid is 'AC' + 32 hex digits, not the main account's")
        if status not in ("active", "suspended", "closed"):
            raise ValueError(f"unknown account status {status!r}")
        with self._lock:
            self._ordinal += 1
            account = _Account(
                sid=sid,
                auth_token=auth_token,
                friendly_name=friendly_name,
                status=status,
                owner_account_sid=self.account_sid,
                date_created=_now(),
                ordinal=self._ordinal,
            )
            self._subaccounts[sid] = account
            return self._account_json(account)

    def add_recording(
        self,
        sid: str,
        *,
        account_sid: str | None = None,
        call_sid: str | None = None,
        status: str = "completed",
        media: bytes | None = None,
        channels: int = 1,
        source: str = "DialVerb",
        track: str = "both",
        duration: int | str | None = None,
        start_time: datetime | None = None,
        date_created: datetime | None = None,
        date_updated: datetime | None = None,
        price: str | None = "-0.0025",
        price_unit: str = "USD",
        error_code: int | None = None,
        encryption_details: dict[str, Any] | None = None,
        media_url: str | None = None,
        conference_sid: str | None = None,
    ) -> dict[str, Any]:
        """Create (or replace) a Recording; returns its resource JSON as Twilio serves it.

        ``media=None`` means Twilio holds no media (download answers 404); ``media_url``
        outside ``https://api.twilio.com/`` means the media is stored externally (also 404).
        ``duration`` defaults to the WAV's length in seconds (``-1`` while in progress),
        ``call_sid`` to a random ``CA…``, ``date_created`` to ``start_time`` or now. Datetimes
        are kept to the second, as Twilio shows them.
        """
        if not re.fullmatch(r"RE\w+", sid or ""):
            raise ValueError("a recording sid starts with 'RE'")
        account_sid = account_sid or self.account_sid
        with self._lock:
            if account_sid != self.account_sid and account_sid not in self._subaccounts:
                raise ValueError(f"unknown account {account_sid}: add_subaccount() it first")
            media = bytes(media) if media is not None else None
            if duration is None:
                seconds = _wav_seconds(media)
                if status in ("in-progress", "paused", "processing"):
                    duration = -1
                else:
                    duration = seconds if seconds is not None else 1
            created = _utc(date_created or start_time or _now()).replace(microsecond=0)
            started = _utc(start_time).replace(microsecond=0) if start_time else created
            recording = _Recording(
                sid=sid,
                account_sid=account_sid,
                call_sid=call_sid or new_sid("CA"),
                status=status,
                media=media,
                channels=int(channels),
                source=source,
                track=track,
                duration=str(duration),
                start_time=started,
                date_created=created,
                date_updated=_utc(date_updated).replace(microsecond=0) if date_updated else created,
                price=price,
                price_unit=price_unit,
                error_code=error_code,
                encryption_details=encryption_details,
                media_url=media_url,
                conference_sid=conference_sid,
            )
            self._recordings[sid] = recording
            return self._recording_json(recording)

    def update_recording(self, sid: str, **fields: Any) -> dict[str, Any]:
        """Change fields of a recording (same names as :meth:`add_recording`); returns its JSON.

        ``date_updated`` moves to now unless given. Raises KeyError for an unknown sid.
        """
        unknown = set(fields) - _RECORDING_FIELDS
        if unknown:
            raise TypeError(f"unknown recording fields: {sorted(unknown)}")
        with self._lock:
            recording = self._recordings[sid]
            if "account_sid" in fields and fields["account_sid"] not in (
                self.account_sid,
                *self._subaccounts,
            ):
                raise ValueError(f"unknown account {fields['account_sid']}")
            for name, value in fields.items():
                if name in ("start_time", "date_created", "date_updated") and value is not None:
                    value = _utc(value).replace(microsecond=0)
                elif name == "media" and value is not None:
                    value = bytes(value)
                elif name == "duration" and value is not None:
                    value = str(value)
                elif name == "channels":
                    value = int(value)
                setattr(recording, name, value)
            if "date_updated" not in fields:
                recording.date_updated = _now()
            return self._recording_json(recording)

    def remove_recording(self, sid: str) -> None:
        """Forget a recording entirely (404 even with ``IncludeSoftDeleted``); no-op if absent."""
        with self._lock:
            self._recordings.pop(sid, None)

    def get_recording(self, sid: str) -> dict[str, Any] | None:
        """The recording's resource JSON (status ``deleted`` once deleted), or None."""
        with self._lock:
            recording = self._recordings.get(sid)
            return self._recording_json(recording) if recording else None

    def get_media(self, sid: str) -> bytes | None:
        """The media bytes Twilio holds for a recording (None: none, deleted or unknown)."""
        with self._lock:
            recording = self._recordings.get(sid)
            return None if recording is None or recording.deleted else recording.media

    def add_token(
        self,
        token: str,
        *,
        identity: str = "alice",
        realm_user_id: str = "alice@example.com",
        roles: Iterable[str] = ("supervisor",),
        worker_sid: str | None = None,
        expiration: datetime | None = None,
    ) -> dict[str, Any]:
        """Make ``token`` a Flex token that IAM validates; returns the validation answer.

        ``worker_sid`` defaults to a ``WK…`` derived from the token, ``expiration`` to an hour
        from now (a past expiration makes the token validate as expired, code 20104).
        """
        if not token:
            raise ValueError("token must not be empty")
        entry = _Token(
            token=token,
            identity=identity,
            realm_user_id=realm_user_id,
            roles=list(roles),
            worker_sid=worker_sid or "WK" + hashlib.sha256(token.encode()).hexdigest()[:32],
            expiration=_utc(expiration) if expiration else datetime.now(UTC) + timedelta(hours=1),
        )
        with self._lock:
            self._tokens[token] = entry
        return self._token_answer(entry)

    @property
    def public_keys(self) -> dict[str, str]:
        """Uploaded public keys: ``CR…`` sid → the PEM text as sent (a snapshot)."""
        with self._lock:
            return {sid: cred.secret for sid, cred in self._public_keys.items()}

    @property
    def aws_credentials(self) -> dict[str, str]:
        """Uploaded AWS credentials: ``CR…`` sid → ``ACCESS_KEY_ID:SECRET`` (a snapshot)."""
        with self._lock:
            return {sid: cred.secret for sid, cred in self._aws.items()}

    @property
    def video_settings(self) -> dict[str, dict[str, Any]]:
        """``RecordingSettings`` and ``CompositionSettings`` as Twilio would answer them now."""
        with self._lock:
            return {kind: self._settings_json(kind) for kind in _SETTINGS_KINDS}

    # ------------------------------------------------------------------ faults

    def fail(
        self, status: int = 503, *, count: int | None = None, path_contains: str | None = None
    ) -> None:
        """Answer the next ``count`` matching requests (None: until :meth:`reset_faults`) with
        ``status`` and a Twilio-style JSON error body (code ``20000 + status``)."""
        if not 400 <= status <= 599:
            raise ValueError("fail() needs a 4xx or 5xx status")
        self._add_fault(_Fault("fail", count, path_contains, status=status))

    def slow(
        self, seconds: float, *, count: int | None = None, path_contains: str | None = None
    ) -> None:
        """Delay the next ``count`` matching requests by ``seconds`` before answering."""
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        self._add_fault(_Fault("slow", count, path_contains, seconds=seconds))

    def drop(self, *, count: int | None = None, path_contains: str | None = None) -> None:
        """Close the connection of the next ``count`` matching requests without answering."""
        self._add_fault(_Fault("drop", count, path_contains))

    def reset_faults(self) -> None:
        """Remove every injected fault (:meth:`fail`, :meth:`slow`, :meth:`drop`)."""
        with self._lock:
            self._faults.clear()

    def _add_fault(self, fault: _Fault) -> None:
        if fault.remaining is not None and fault.remaining < 1:
            raise ValueError("count must be at least 1 (or None for 'until reset_faults')")
        with self._lock:
            self._faults.append(fault)

    def _take_faults(self, path: str) -> tuple[float, _Fault | None]:
        """Consume the faults matching ``path``: total delay, and the fail/drop to apply."""
        delay, terminal = 0.0, None
        with self._lock:
            for fault in list(self._faults):
                if not fault.matches(path) or (fault.kind != "slow" and terminal is not None):
                    continue
                if fault.kind == "slow":
                    delay += fault.seconds
                else:
                    terminal = fault
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
        return delay, terminal

    # ------------------------------------------------------------------ request log

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far (oldest first, ``/_fake/`` excluded), a snapshot."""
        with self._lock:
            return list(self._log)

    def count(self, method: str | None = None, path_contains: str | None = None) -> int:
        """How many recorded requests have this method and a path containing this text."""
        with self._lock:
            return sum(
                1
                for entry in self._log
                if (method is None or entry.method == method.upper())
                and (path_contains is None or path_contains in entry.path)
            )

    def clear_requests(self) -> None:
        """Empty the request log (state and faults are kept)."""
        with self._lock:
            self._log.clear()

    def _record(self, entry: RecordedRequest) -> None:
        with self._lock:
            self._log.append(entry)
            if len(self._log) > MAX_LOGGED_REQUESTS:
                del self._log[: len(self._log) - MAX_LOGGED_REQUESTS]

    # ------------------------------------------------------------------ connections

    def _track(self, connection: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    # ------------------------------------------------------------------ routing

    def _build_routes(self) -> list[_Route]:
        account = r"/api/2010-04-01/Accounts/(?P<ac>[^/]+)"
        recording = account + r"/Recordings/(?P<re>RE[^/.]+)"
        table: list[tuple[str, str, Callable[[_Request, dict[str, str]], _Response]]] = [
            ("POST", r"/iam/v1/Accounts/(?P<ac>[^/]+)/Tokens/validate", self._token_validate),
            ("GET", r"/api/2010-04-01/Accounts\.json", self._accounts_list),
            ("GET", account + r"\.json", self._account_fetch),
            ("GET", account + r"/Recordings\.json", self._recordings_list),
            ("GET", account + r"/Calls/(?P<ca>[^/]+)/Recordings\.json", self._recordings_list),
            ("GET", recording + r"\.json", self._recording_fetch),
            ("DELETE", recording + r"(?:\.json)?", self._recording_delete),
            ("GET HEAD", recording + r"(?P<ext>\.wav|\.mp3)?", self._recording_media),
            (
                "GET POST",
                r"/video/v1/(?P<kind>RecordingSettings|CompositionSettings)/Default",
                self._video_settings,
            ),
            ("GET POST", r"/accounts/v1/Credentials/(?P<kind>PublicKeys|AWS)", self._credentials),
            (
                "GET POST DELETE",
                r"/accounts/v1/Credentials/(?P<kind>PublicKeys|AWS)/(?P<cr>[^/]+)",
                self._credential,
            ),
        ]
        return [(frozenset(m.split()), re.compile(p), h) for m, p, h in table]

    def _dispatch(self, request: _Request) -> _Response:
        """Authenticate and route one Twilio API request; errors become Twilio error bodies."""
        try:
            path_known = False
            for methods, pattern, handler in self._routes:
                match = pattern.fullmatch(request.path)
                if match is None:
                    continue
                path_known = True
                if request.method in methods:
                    request.principal = self._authenticate(request)
                    return handler(request, match.groupdict())
            if path_known:
                self._authenticate(request)
                raise _HttpError(405, 20004, "Method not allowed")
            raise _not_found(_twilio_path(request.path))
        except _HttpError as exc:
            return _Response.error(exc)

    def _authenticate(self, request: _Request) -> _Account:
        """The account whose credentials the request carries (401 code 20003 otherwise)."""
        header = request.headers.get("Authorization") or ""
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise _HttpError(
                401,
                20003,
                "Authentication Error - No credentials provided",
                {"WWW-Authenticate": 'Basic realm="Twilio API"'},
            )
        try:
            username, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            username, password = "", ""
        with self._lock:
            candidates = [self._main, *self._subaccounts.values()]
        principal = None
        for account in candidates:
            # Compare every candidate's secrets, so timing does not tell which SID exists.
            same_sid = hmac.compare_digest(username.encode(), account.sid.encode())
            same_token = hmac.compare_digest(password.encode(), account.auth_token.encode())
            if same_sid and same_token and account.status == "active":
                principal = account
        if principal is None or (
            principal.sid != self.account_sid and not _subaccount_may_call(principal, request.path)
        ):
            raise _HttpError(
                401,
                20003,
                "Authentication Error - invalid username",
                {"WWW-Authenticate": 'Basic realm="Twilio API"'},
            )
        return principal

    def _visible_account(self, request: _Request, sid: str) -> _Account:
        """The account named in the path, if the caller may see it (404 otherwise)."""
        principal = request.principal
        assert principal is not None
        with self._lock:
            if sid == self.account_sid and principal.sid == self.account_sid:
                return self._main
            account = self._subaccounts.get(sid)
            if account is not None and principal.sid in (self.account_sid, sid):
                return account
        raise _not_found(_twilio_path(request.path))

    # ------------------------------------------------------------------ iam

    def _token_answer(self, entry: _Token | None) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "valid": False,
            "code": 20101,
            "message": "Invalid Access Token",
            "expiration": None,
            "realm_user_id": None,
            "identity": None,
            "roles": None,
            "worker_sid": None,
        }
        if entry is None:
            return answer
        if entry.expiration <= datetime.now(UTC):
            answer.update(code=20104, message="Access Token expired or expiration date invalid")
            return answer
        return {
            "valid": True,
            "code": 0,
            "message": None,
            "expiration": _iso_millis(entry.expiration),
            "realm_user_id": entry.realm_user_id,
            "identity": entry.identity,
            "roles": list(entry.roles),
            "worker_sid": entry.worker_sid,
        }

    def _token_validate(self, request: _Request, match: dict[str, str]) -> _Response:
        self._visible_account(request, match["ac"])
        try:
            payload = json.loads(request.body or b"null")
        except ValueError:
            raise _bad_request("The request body is not valid JSON") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("token"), str):
            raise _bad_request("Missing required parameter token in the post body")
        with self._lock:
            entry = self._tokens.get(payload["token"])
            return _Response.json(200, self._token_answer(entry))

    # ------------------------------------------------------------------ accounts

    def _account_json(self, account: _Account) -> dict[str, Any]:
        base = f"/{API_VERSION}/Accounts/{account.sid}"
        return {
            "auth_token": account.auth_token,
            "date_created": _rfc2822(account.date_created),
            "date_updated": _rfc2822(account.date_created),
            "friendly_name": account.friendly_name,
            "owner_account_sid": account.owner_account_sid,
            "sid": account.sid,
            "status": account.status,
            "subresource_uris": {
                "recordings": f"{base}/Recordings.json",
                "calls": f"{base}/Calls.json",
            },
            "type": "Full",
            "uri": f"{base}.json",
        }

    def _accounts_list(self, request: _Request, match: dict[str, str]) -> _Response:
        principal = request.principal
        assert principal is not None
        with self._lock:
            if principal.sid == self.account_sid:
                accounts = [self._main, *self._subaccounts.values()]
            else:
                accounts = [principal]
            filters = _pick(request.query, "FriendlyName", "Status")
            accounts = [
                a
                for a in accounts
                if filters.get("FriendlyName", a.friendly_name) == a.friendly_name
                and filters.get("Status", a.status) == a.status
            ]
            items = [((a.ordinal,), self._account_json(a)) for a in accounts]
        page = _paginate(items, request.query, reverse=False)
        return _Response.json(200, page.v2010("accounts", f"/{API_VERSION}/Accounts.json", filters))

    def _account_fetch(self, request: _Request, match: dict[str, str]) -> _Response:
        account = self._visible_account(request, match["ac"])
        with self._lock:
            return _Response.json(200, self._account_json(account))

    # ------------------------------------------------------------------ recordings

    def _recording_json(self, recording: _Recording) -> dict[str, Any]:
        base = f"/{API_VERSION}/Accounts/{recording.account_sid}/Recordings/{recording.sid}"
        return {
            "account_sid": recording.account_sid,
            "api_version": API_VERSION,
            "call_sid": recording.call_sid,
            "conference_sid": recording.conference_sid,
            "date_created": _rfc2822(recording.date_created),
            "date_updated": _rfc2822(recording.date_updated),
            "start_time": _rfc2822(recording.start_time),
            "duration": recording.duration,
            "sid": recording.sid,
            "price": recording.price,
            "price_unit": recording.price_unit,
            "status": "deleted" if recording.deleted else recording.status,
            "channels": recording.channels,
            "source": recording.source,
            "error_code": recording.error_code,
            "uri": f"{base}.json",
            "encryption_details": recording.encryption_details,
            "subresource_uris": {
                "add_on_results": f"{base}/AddOnResults.json",
                "transcriptions": f"{base}/Transcriptions.json",
            },
            "media_url": recording.media_url or f"{API_BASE}{base}",
            "track": recording.track,
        }

    def _find_recording(
        self, request: _Request, match: dict[str, str], *, include_deleted: bool
    ) -> _Recording:
        account = self._visible_account(request, match["ac"])
        recording = self._recordings.get(match["re"])
        if (
            recording is None
            or recording.account_sid != account.sid
            or (recording.deleted and not include_deleted)
        ):
            raise _not_found(_twilio_path(request.path))
        return recording

    def _recording_fetch(self, request: _Request, match: dict[str, str]) -> _Response:
        include_deleted = _boolean(request.query, "IncludeSoftDeleted") or False
        with self._lock:
            recording = self._find_recording(request, match, include_deleted=include_deleted)
            return _Response.json(200, self._recording_json(recording))

    def _recording_delete(self, request: _Request, match: dict[str, str]) -> _Response:
        with self._lock:
            recording = self._find_recording(request, match, include_deleted=False)
            recording.deleted = True
            recording.media = None
            recording.date_updated = _now()
        return _Response(204)

    def _recordings_list(self, request: _Request, match: dict[str, str]) -> _Response:
        account = self._visible_account(request, match["ac"])
        query = dict(request.query)
        if match.get("ca"):
            query["CallSid"] = match["ca"]
        filters = _pick(
            request.query,
            "DateCreated",
            "DateCreated<",
            "DateCreated>",
            "CallSid",
            "ConferenceSid",
            "IncludeSoftDeleted",
        )
        checks = _date_checks(query)
        include_deleted = _boolean(query, "IncludeSoftDeleted") or False
        with self._lock:
            items = [
                ((int(r.date_created.timestamp()), r.sid), self._recording_json(r))
                for r in self._recordings.values()
                if r.account_sid == account.sid
                and (include_deleted or not r.deleted)
                and query.get("CallSid", r.call_sid) == r.call_sid
                and query.get("ConferenceSid", r.conference_sid) == r.conference_sid
                and all(check(r.date_created) for check in checks)
            ]
        page = _paginate(items, request.query, reverse=True)
        path = _twilio_path(request.path)
        return _Response.json(200, page.v2010("recordings", path, filters))

    def _recording_media(self, request: _Request, match: dict[str, str]) -> _Response:
        with self._lock:
            recording = self._find_recording(request, match, include_deleted=False)
            media = None if recording.stored_externally else recording.media
        if media is None:
            raise _not_found(_twilio_path(request.path))
        content_type = "audio/mpeg" if match.get("ext") == ".mp3" else "audio/x-wav"
        headers = {"Content-Type": content_type, "Accept-Ranges": "bytes"}
        byte_range = _byte_range(request.headers.get("Range"), len(media))
        if byte_range is None:
            return _Response(200, media, headers)
        start, end = byte_range
        headers["Content-Range"] = f"bytes {start}-{end}/{len(media)}"
        return _Response(206, media[start : end + 1], headers)

    # ------------------------------------------------------------------ video

    def _settings_json(self, kind: str) -> dict[str, Any]:
        stored = self._settings.get(kind, {})
        return {
            "account_sid": self.account_sid,
            "friendly_name": stored.get("friendly_name"),
            "aws_credentials_sid": stored.get("aws_credentials_sid"),
            "aws_s3_url": stored.get("aws_s3_url"),
            "aws_storage_enabled": stored.get("aws_storage_enabled", False),
            "encryption_key_sid": stored.get("encryption_key_sid"),
            "encryption_enabled": stored.get("encryption_enabled", False),
            "url": f"{VIDEO_BASE}/v1/{kind}/Default",
        }

    def _video_settings(self, request: _Request, match: dict[str, str]) -> _Response:
        kind = match["kind"]
        if request.method == "GET":
            with self._lock:
                return _Response.json(200, self._settings_json(kind))
        form = request.form()
        if not form.get("FriendlyName"):
            raise _bad_request("Missing required parameter FriendlyName in the post body")
        if len(form["FriendlyName"]) > 64:
            raise _bad_request("FriendlyName must be at most 64 characters")
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
            value = _boolean(form, param)
            if value is not None:
                update[name] = value
        with self._lock:
            self._settings.setdefault(kind, {}).update(update)
            return _Response.json(201, self._settings_json(kind))

    # ------------------------------------------------------------------ credentials

    def _credential_json(self, kind: str, credential: _Credential) -> dict[str, Any]:
        return {
            "sid": credential.sid,
            "account_sid": credential.account_sid,
            "friendly_name": credential.friendly_name,
            "date_created": _iso(credential.date_created),
            "date_updated": _iso(credential.date_updated),
            "url": f"{ACCOUNTS_BASE}/v1/Credentials/{kind}/{credential.sid}",
        }

    def _credential_store(self, kind: str) -> dict[str, _Credential]:
        return self._public_keys if kind == "PublicKeys" else self._aws

    def _credentials(self, request: _Request, match: dict[str, str]) -> _Response:
        kind = match["kind"]
        if request.method == "GET":
            with self._lock:
                items = [
                    ((int(c.date_created.timestamp()), c.sid), self._credential_json(kind, c))
                    for c in self._credential_store(kind).values()
                ]
            page = _paginate(items, request.query, reverse=False)
            return _Response.json(200, page.v1("credentials", f"/v1/Credentials/{kind}"))
        form = request.form()
        if kind == "PublicKeys":
            secret = _check_public_key(form.get("PublicKey"))
        else:
            secret = _check_aws_credentials(form.get("Credentials"))
        friendly_name = form.get("FriendlyName") or None
        if friendly_name and len(friendly_name) > 64:
            raise _bad_request("FriendlyName must be at most 64 characters")
        account_sid = form.get("AccountSid") or self.account_sid
        now = _now()
        with self._lock:
            if account_sid != self.account_sid and account_sid not in self._subaccounts:
                raise _bad_request(f"AccountSid {account_sid} is not this account or a subaccount")
            credential = _Credential(new_sid("CR"), account_sid, friendly_name, secret, now, now)
            self._credential_store(kind)[credential.sid] = credential
            return _Response.json(201, self._credential_json(kind, credential))

    def _credential(self, request: _Request, match: dict[str, str]) -> _Response:
        kind = match["kind"]
        with self._lock:
            store = self._credential_store(kind)
            credential = store.get(match["cr"])
            if credential is None:
                raise _not_found(_twilio_path(request.path))
            if request.method == "DELETE":
                del store[credential.sid]
                return _Response(204)
            if request.method == "POST":
                friendly_name = request.form().get("FriendlyName")
                if friendly_name is not None:
                    if len(friendly_name) > 64:
                        raise _bad_request("FriendlyName must be at most 64 characters")
                    credential.friendly_name = friendly_name or None
                    credential.date_updated = _now()
            return _Response.json(200, self._credential_json(kind, credential))

    # ------------------------------------------------------------------ control API

    def _control(self, method: str, path: str, query: dict[str, str], body: bytes) -> _Response:
        """Serve ``/_fake/…``: the same controls as the Python API, as JSON over HTTP."""
        try:
            payload = json.loads(body) if body.strip() else {}
            if not isinstance(payload, dict):
                raise ValueError("the body must be a JSON object")
            return self._control_route(method, path, query, payload)
        except _HttpError as exc:
            return _Response.error(exc)
        except (ValueError, TypeError, KeyError, binascii.Error) as exc:
            return _Response.json(400, _error_body(400, 20001, f"{type(exc).__name__}: {exc}"))

    def _control_route(
        self, method: str, path: str, query: dict[str, str], payload: dict[str, Any]
    ) -> _Response:
        route = (method, path.rstrip("/"))
        if route == ("GET", "/_fake/health"):
            return _Response.json(200, {"ok": True, "account_sid": self.account_sid})
        if route == ("POST", "/_fake/reset"):
            self.reset()
            return _Response.json(200, {"ok": True})
        if route == ("POST", "/_fake/subaccounts"):
            created = self.add_subaccount(
                payload.get("sid") or new_sid("AC"),
                payload.get("auth_token") or secrets.token_hex(16),
                friendly_name=payload.get("friendly_name", ""),
                status=payload.get("status", "active"),
            )
            return _Response.json(201, created)
        if route == ("POST", "/_fake/recordings"):
            fields = _recording_fields(payload)
            return _Response.json(
                201, self.add_recording(payload.get("sid") or new_sid("RE"), **fields)
            )
        if path.startswith("/_fake/recordings/"):
            sid = path.rsplit("/", 1)[1]
            if method == "GET":
                found = self.get_recording(sid)
                if found is None:
                    raise _not_found(path)
                return _Response.json(200, found)
            if method == "POST":
                try:
                    return _Response.json(
                        200, self.update_recording(sid, **_recording_fields(payload))
                    )
                except KeyError:
                    raise _not_found(path) from None
            if method == "DELETE":
                self.remove_recording(sid)
                return _Response(204)
        if route == ("POST", "/_fake/tokens"):
            expiration = _parse_datetime(payload.get("expiration"))
            if expiration is None and payload.get("ttl_seconds") is not None:
                expiration = datetime.now(UTC) + timedelta(seconds=float(payload["ttl_seconds"]))
            token = payload.get("token") or secrets.token_urlsafe(24)
            answer = self.add_token(
                token,
                identity=payload.get("identity", "alice"),
                realm_user_id=payload.get("realm_user_id", "alice@example.com"),
                roles=payload.get("roles", ["supervisor"]),
                worker_sid=payload.get("worker_sid"),
                expiration=expiration,
            )
            return _Response.json(201, {"token": token, **answer})
        if route == ("POST", "/_fake/faults"):
            return self._control_fault(payload)
        if route == ("GET", "/_fake/requests"):
            entries = [
                entry.to_dict()
                for entry in self.requests
                if ("method" not in query or entry.method == query["method"].upper())
                and ("path_contains" not in query or query["path_contains"] in entry.path)
            ]
            return _Response.json(200, {"count": len(entries), "requests": entries})
        if route == ("DELETE", "/_fake/requests"):
            self.clear_requests()
            return _Response(204)
        raise _not_found(path)

    def _control_fault(self, payload: dict[str, Any]) -> _Response:
        kind = payload.get("kind")
        count = payload.get("count")
        count = int(count) if count is not None else None
        path_contains = payload.get("path_contains")
        if kind == "fail":
            self.fail(int(payload.get("status", 503)), count=count, path_contains=path_contains)
        elif kind == "slow":
            self.slow(float(payload["seconds"]), count=count, path_contains=path_contains)
        elif kind == "drop":
            self.drop(count=count, path_contains=path_contains)
        elif kind == "clear":
            self.reset_faults()
        else:
            raise ValueError("kind must be one of fail, slow, drop, clear")
        return _Response.json(200, {"ok": True})

    # ------------------------------------------------------------------ one request

    def _serve(self, handler: _Handler, method: str) -> None:
        """Answer one HTTP request on ``handler``'s connection (runs on a server thread)."""
        target = urlsplit(handler.path)
        path = target.path
        query = dict(parse_qsl(target.query, keep_blank_values=True))
        body = handler.read_body()
        if path == "/_fake" or path.startswith("/_fake/"):
            handler.answer(self._control(method, path, query, body), head=method == "HEAD")
            return
        entry = RecordedRequest(
            method=method,
            path=path,
            query=query,
            headers=dict(handler.headers.items()),
            body=body,
            received_at=datetime.now(UTC),
        )
        self._record(entry)
        delay, fault = self._take_faults(path)
        if delay:
            time.sleep(delay)
        if fault is not None and fault.kind == "drop":
            handler.drop()
            return
        if fault is not None:
            phrase = HTTPStatus(fault.status).phrase if fault.status in _STATUSES else "Error"
            response = _Response.error(_HttpError(fault.status, 20000 + fault.status, phrase))
        else:
            request = _Request(method, path, query, handler.headers, body)
            try:
                response = self._dispatch(request)
            except Exception as exc:  # a bug in the fake must still answer, like Twilio's 500
                response = _Response.error(_HttpError(500, 20500, f"Internal error: {exc!r}"))
        entry.status = response.status
        handler.answer(response, head=method == "HEAD")


_STATUSES = {status.value for status in HTTPStatus}


def _twilio_path(path: str) -> str:
    """The path as Twilio would show it: without the ``/{product}`` prefix of the override."""
    return "/" + path.lstrip("/").partition("/")[2]


def _subaccount_may_call(account: _Account, path: str) -> bool:
    """Subaccount credentials are good for that subaccount's own API 2010-04-01 resources."""
    return path == "/api/2010-04-01/Accounts.json" or path.startswith(
        (
            f"/api/2010-04-01/Accounts/{account.sid}/",
            f"/api/2010-04-01/Accounts/{account.sid}.json",
            f"/iam/v1/Accounts/{account.sid}/",
        )
    )


def _pick(params: dict[str, str], *names: str) -> dict[str, str]:
    return {name: params[name] for name in names if name in params}


def _boolean(params: dict[str, str], name: str) -> bool | None:
    """Twilio's boolean parameter (``true``/``false``); None when absent; 400 otherwise."""
    if name not in params:
        return None
    value = params[name].strip().lower()
    if value not in ("true", "false"):
        raise _bad_request(f"{name} must be true or false")
    return value == "true"


def _date_checks(query: dict[str, str]) -> list[Callable[[datetime], bool]]:
    """The ``DateCreated``, ``DateCreated<`` and ``DateCreated>`` filters as predicates.

    A date (``YYYY-MM-DD``) covers that whole UTC day; ``<`` and ``>`` are inclusive, as
    Twilio documents them (``DateCreated<=`` / ``DateCreated>=``). ``DateCreated`` alone
    matches the UTC day of its value even when twilio-python sends it as a date-time
    (it serialises a ``date`` as ``YYYY-MM-DDT00:00:00Z``).
    """
    checks: list[Callable[[datetime], bool]] = []
    for name in ("DateCreated", "DateCreated<", "DateCreated>"):
        raw = query.get(name)
        if not raw:
            continue
        try:
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
                day = datetime.combine(date.fromisoformat(raw), datetime.min.time(), UTC)
                low, high = day, day + timedelta(days=1) - timedelta(seconds=1)
            else:
                low = high = _utc(datetime.fromisoformat(raw.replace("Z", "+00:00")))
                if name == "DateCreated":
                    low = datetime.combine(low.date(), datetime.min.time(), UTC)
                    high = low + timedelta(days=1) - timedelta(seconds=1)
        except ValueError:
            raise _bad_request(f"{name} must be a date or an ISO 8601 date-time") from None
        if name == "DateCreated":
            checks.append(lambda value, low=low, high=high: low <= value <= high)
        elif name == "DateCreated<":
            checks.append(lambda value, high=high: value <= high)
        else:
            checks.append(lambda value, low=low: value >= low)
    return checks


def _byte_range(header: str | None, total: int) -> tuple[int, int] | None:
    """A single ``Range: bytes=a-b`` as inclusive offsets; None to send everything (no or
    unsupported header); raises 416 when the range cannot be satisfied."""
    if not header:
        return None
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if match is None or not (match[1] or match[2]):
        return None
    if match[1]:
        start = int(match[1])
        end = min(int(match[2]), total - 1) if match[2] else total - 1
        if start >= total or (match[2] and int(match[2]) < start):
            start = -1
    else:
        suffix = int(match[2])
        start, end = (max(0, total - suffix), total - 1) if suffix else (-1, -1)
    if start < 0 or total == 0:
        raise _HttpError(
            416, 20416, "Requested range not satisfiable", {"Content-Range": f"bytes */{total}"}
        )
    return start, end


def _check_public_key(pem: str | None) -> str:
    """``pem`` if it is an RSA ``-----BEGIN PUBLIC KEY-----`` that loads, else 400."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    if not pem:
        raise _bad_request("Missing required parameter PublicKey in the post body")
    text = pem.strip()
    match = re.fullmatch(
        r"-----BEGIN PUBLIC KEY-----(.*?)-----END PUBLIC KEY-----", text, flags=re.DOTALL
    )
    if match is None:
        raise _bad_request("PublicKey must be a PEM '-----BEGIN PUBLIC KEY-----' block")
    # Twilio's docs show the key on one line; rebuild standard PEM lines before loading.
    body = "".join(match[1].split())
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    normalized = f"-----BEGIN PUBLIC KEY-----\n{lines}\n-----END PUBLIC KEY-----\n"
    try:
        key = load_pem_public_key(normalized.encode())
    except (ValueError, TypeError):
        raise _bad_request("PublicKey is not a valid public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise _bad_request("PublicKey must be an RSA key")
    return pem


def _check_aws_credentials(credentials: str | None) -> str:
    """``credentials`` if it reads ``ACCESS_KEY_ID:SECRET``, else 400."""
    if not credentials:
        raise _bad_request("Missing required parameter Credentials in the post body")
    if not re.fullmatch(r"[A-Za-z0-9]{4,128}:\S+", credentials):
        raise _bad_request(
            "Credentials must be of the form AWS_ACCESS_KEY_ID:AWS_SECRET_ACCESS_KEY"
        )
    return credentials


def _recording_fields(payload: dict[str, Any]) -> dict[str, Any]:
    """:meth:`FakeTwilio.add_recording` keyword arguments from a control API JSON body."""
    fields = {k: v for k, v in payload.items() if k in _RECORDING_FIELDS}
    unknown = set(payload) - _RECORDING_FIELDS - {"sid", "media_base64"}
    if unknown:
        raise ValueError(f"unknown recording fields: {sorted(unknown)}")
    if "media_base64" in payload:
        encoded = payload["media_base64"]
        fields["media"] = None if encoded is None else base64.b64decode(encoded, validate=True)
    if "media" in payload:
        raise ValueError("send media as base64 in 'media_base64'")
    for name in ("start_time", "date_created", "date_updated"):
        if name in fields:
            fields[name] = _parse_datetime(fields[name])
    return fields


@dataclass
class _Page:
    """One page of a Twilio list: the records and the tokens to the pages around it."""

    records: list[dict[str, Any]]
    page: int
    page_size: int
    query: dict[str, str]
    next_token: str | None
    previous_token: str | None

    def _query(self, filters: dict[str, str], page: int, token: str | None) -> str:
        params: dict[str, Any] = {**filters, "PageSize": self.page_size, "Page": page}
        if token:
            params["PageToken"] = token
        return urlencode(params)

    def v2010(self, key: str, path: str, filters: dict[str, str]) -> dict[str, Any]:
        """API 2010-04-01's envelope: the records under ``key`` plus ``*_page_uri`` fields."""
        start = self.page * self.page_size
        current = self.query.get("PageToken")
        return {
            key: self.records,
            "first_page_uri": f"{path}?{self._query(filters, 0, None)}",
            "next_page_uri": (
                f"{path}?{self._query(filters, self.page + 1, self.next_token)}"
                if self.next_token
                else None
            ),
            "previous_page_uri": (
                f"{path}?{self._query(filters, max(self.page - 1, 0), self.previous_token)}"
                if self.previous_token
                else None
            ),
            "page": self.page,
            "page_size": self.page_size,
            "start": start,
            "end": start + max(len(self.records) - 1, 0),
            "uri": f"{path}?{self._query(filters, self.page, current)}",
        }

    def v1(self, key: str, path: str) -> dict[str, Any]:
        """The v1 APIs' envelope: the records under ``key`` plus a ``meta`` object."""
        base = f"{ACCOUNTS_BASE}{path}"
        current = self.query.get("PageToken")
        return {
            key: self.records,
            "meta": {
                "page": self.page,
                "page_size": self.page_size,
                "first_page_url": f"{base}?{self._query({}, 0, None)}",
                "previous_page_url": (
                    f"{base}?{self._query({}, max(self.page - 1, 0), self.previous_token)}"
                    if self.previous_token
                    else None
                ),
                "url": f"{base}?{self._query({}, self.page, current)}",
                "next_page_url": (
                    f"{base}?{self._query({}, self.page + 1, self.next_token)}"
                    if self.next_token
                    else None
                ),
                "key": key,
            },
        }


def _page_token(direction: str, key: tuple[Any, ...]) -> str:
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return direction + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _read_page_token(token: str) -> tuple[str, tuple[Any, ...]]:
    try:
        direction, encoded = token[:2], token[2:]
        if direction not in ("PA", "PB"):
            raise ValueError(token)
        key = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
        if not isinstance(key, list):
            raise ValueError(token)
        return direction, tuple(key)
    except (ValueError, binascii.Error):
        raise _bad_request("PageToken is invalid") from None


def _paginate(
    items: list[tuple[tuple[Any, ...], dict[str, Any]]], query: dict[str, str], *, reverse: bool
) -> _Page:
    """Cut ``items`` (sort key, record) into Twilio's pages.

    ``PageToken`` (``PA``: after this key, ``PB``: before it) keeps paging stable while
    records come and go, as Twilio's tokens do; without one, ``Page`` is an offset.
    """
    try:
        page_size = int(query.get("PageSize") or DEFAULT_PAGE_SIZE)
        page = int(query.get("Page") or 0)
    except ValueError:
        raise _bad_request("PageSize and Page must be integers") from None
    if not 1 <= page_size <= MAX_PAGE_SIZE or page < 0:
        raise _bad_request(f"PageSize must be between 1 and {MAX_PAGE_SIZE}, Page at least 0")
    ordered = sorted(items, key=lambda item: item[0], reverse=reverse)
    keys = [key for key, _ in ordered]
    token = query.get("PageToken")
    start, end = page * page_size, page * page_size + page_size
    if token:
        direction, boundary = _read_page_token(token)
        try:
            if direction == "PA":  # the page after the record ``boundary``
                start = sum(1 for key in keys if (key >= boundary if reverse else key <= boundary))
                end = start + page_size
            else:  # the page before the record ``boundary``
                end = sum(1 for key in keys if (key > boundary if reverse else key < boundary))
                start = max(0, end - page_size)
        except TypeError:
            raise _bad_request("PageToken is invalid") from None
    chunk = ordered[start:end]
    next_token = _page_token("PA", chunk[-1][0]) if chunk and end < len(ordered) else None
    previous_token = _page_token("PB", chunk[0][0]) if chunk and start > 0 else None
    return _Page(
        [record for _, record in chunk], page, page_size, query, next_token, previous_token
    )


class _Server(ThreadingHTTPServer):
    """The HTTP server: one daemon thread per connection; quiet about clients going away."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the default 5 makes bursts of connections wait for SYN retries
    fake: FakeTwilio
    closed = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError) or self.closed:
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 (keep-alive) request handler that hands every request to the fake."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeTwilio/1.0"
    sys_version = ""
    timeout = 120
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without TCP_NODELAY, Nagle plus the
        # client's delayed ACK would add ~40 ms to every keep-alive request.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.fake._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.fake._track(self.connection, add=False)

    def handle_one_request(self) -> None:
        if self.server.closed:
            self.close_connection = True
            return
        try:
            super().handle_one_request()
        except OSError:
            self.close_connection = True

    def _handle(self) -> None:
        self.server.fake._serve(self, self.command)

    do_GET = do_POST = do_DELETE = do_HEAD = do_PUT = do_PATCH = do_OPTIONS = _handle

    def read_body(self) -> bytes:
        """The request body (``Content-Length`` or chunked), empty when there is none."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def answer(self, response: _Response, *, head: bool = False) -> None:
        """Write ``response`` (headers only for HEAD; no body for 204)."""
        self.send_response(response.status)
        self.send_header("Twilio-Request-Id", new_sid("RQ"))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.status != 204:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if not head and response.status != 204 and response.body:
            self.wfile.write(response.body)

    def drop(self) -> None:
        """Close the connection without answering (the client sees it reset or closed)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.fake.verbose:
            super().log_message(format, *args)


# ---------------------------------------------------------------------- demo and CLI


def seed_demo(fake: FakeTwilio, *, out: TextIO | None = None) -> dict[str, Any]:
    """Fill ``fake`` with a small demo data set and describe it on ``out``.

    Three recordings of the main account (two mono, one dual-channel) and one of a demo
    subaccount, all with short WAV tones as media, plus two Flex tokens valid for 12 hours:
    ``demo-supervisor-token`` (may play recordings) and ``demo-agent-token`` (agent only).
    Returns the seeded sids and tokens.
    """
    now = _now()
    subaccount_sid, subaccount_token = new_sid("AC"), secrets.token_hex(16)
    fake.add_subaccount(subaccount_sid, subaccount_token, friendly_name="Demo subaccount")
    specs = [
        (fake.account_sid, 1, 3.0, 440.0, 50),
        (fake.account_sid, 1, 5.0, 523.25, 35),
        (fake.account_sid, 2, 4.0, 392.0, 20),
        (subaccount_sid, 1, 2.0, 659.25, 5),
    ]
    recordings = []
    for account_sid, channels, seconds, frequency, minutes_ago in specs:
        sid = new_sid("RE")
        fake.add_recording(
            sid,
            account_sid=account_sid,
            media=make_wav(seconds, channels=channels, frequency=frequency),
            channels=channels,
            start_time=now - timedelta(minutes=minutes_ago),
        )
        recordings.append({"sid": sid, "account_sid": account_sid, "channels": channels})
    expiration = datetime.now(UTC) + timedelta(hours=12)
    tokens = {
        "demo-supervisor-token": fake.add_token(
            "demo-supervisor-token",
            identity="sam_40example_2Ecom",
            realm_user_id="sam@example.com",
            roles=["supervisor", "wfo.full_access"],
            expiration=expiration,
        ),
        "demo-agent-token": fake.add_token(
            "demo-agent-token",
            identity="alex_40example_2Ecom",
            realm_user_id="alex@example.com",
            roles=["agent"],
            expiration=expiration,
        ),
    }
    if out is not None:
        out.write(f"Demo subaccount: {subaccount_sid} (auth token {subaccount_token})\n")
        for recording in recordings:
            out.write(
                f"Recording {recording['sid']} account {recording['account_sid']}"
                f" channels {recording['channels']}\n"
            )
        for token, answer in tokens.items():
            out.write(
                f"Flex token {token!r}: roles {answer['roles']}, until {answer['expiration']}\n"
            )
        out.flush()
    return {
        "subaccount": {"sid": subaccount_sid, "auth_token": subaccount_token},
        "recordings": recordings,
        "tokens": list(tokens),
    }


def serve_forever(fake: FakeTwilio, *, demo: bool = False, out: TextIO | None = None) -> None:
    """Run ``fake`` in the foreground until Ctrl-C or SIGTERM (``python -m faketwilio``)."""
    out = out or sys.stdout
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    fake.start()
    try:
        out.write(f"Fake Twilio for {fake.account_sid} listening on {fake.url}\n")
        out.write(f"Set TWILIO_API_OVERRIDE={fake.url}  (control API: {fake.url}/_fake/)\n")
        if demo:
            seed_demo(fake, out=out)
        out.flush()
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        out.write("Fake Twilio stopped\n")
        out.flush()
