"""What one fake Twilio holds in memory: the main account and its subaccounts, their API keys,
recordings, Flex tokens, Video settings and credentials, TaskRouter workspaces (their contents
are in :mod:`faketwilio.taskrouter_state`), and the lock that guards them.

Plain data classes and the operations the Python API and the product endpoints perform on them
(:mod:`faketwilio.api_2010`, :mod:`faketwilio.iam`, :mod:`faketwilio.video`). Nothing here
knows HTTP or JSON: each product module renders its own resources. The server answers on many
threads while a test changes the state, so every read or change holds :attr:`State.lock`
(re-entrant, so an endpoint can hold it across several operations and the rendering).
"""

from __future__ import annotations

import hashlib
import io
import re
import secrets
import struct
import threading
import wave
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

#: Where Twilio serves API 2010-04-01; a recording's ``media_url`` elsewhere is external.
API_BASE = "https://api.twilio.com"

ACCOUNT_SID_RE = re.compile(r"AC[0-9a-fA-F]{32}")
API_KEY_SID_RE = re.compile(r"SK[0-9a-fA-F]{32}")
#: The fields of a recording that :meth:`State.add_recording` and ``update_recording`` take.
RECORDING_FIELDS = frozenset(
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
ACCOUNT_STATUSES = ("active", "suspended", "closed")
CREDENTIAL_KINDS = ("PublicKeys", "AWS")


def new_sid(prefix: str) -> str:
    """A random Twilio-style SID: the two-letter ``prefix`` and 32 lowercase hex digits."""
    return prefix + secrets.token_hex(16)


def utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (a naive one is taken to be UTC already)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def now() -> datetime:
    """The current UTC time to the second, as Twilio shows its timestamps."""
    return datetime.now(UTC).replace(microsecond=0)


def _to_second(value: datetime) -> datetime:
    return utc(value).replace(microsecond=0)


def wav_seconds(media: bytes | None) -> int | None:
    """The length of a WAV file in whole seconds (rounded), or None when it is not a WAV."""
    if not media:
        return None
    try:
        with wave.open(io.BytesIO(media), "rb") as reader:
            rate = reader.getframerate()
            return round(reader.getnframes() / rate) if rate else None
    except (wave.Error, EOFError, struct.error):
        return None


@dataclass
class Account:
    """The main account or a subaccount; ``ordinal`` orders the account list (main first)."""

    sid: str
    auth_token: str
    friendly_name: str
    status: str
    owner_account_sid: str
    date_created: datetime
    ordinal: int


@dataclass
class ApiKey:
    """An API key: ``sid`` (``SK…``) and ``secret`` authenticate as the account it belongs to.

    A standard key (``main=False``) may not read or manage accounts (Twilio answers 20003 on
    the ``/Accounts`` resources); a main key may, as the account's own credentials do.
    """

    sid: str
    secret: str
    account_sid: str
    friendly_name: str
    main: bool


@dataclass
class Recording:
    """A Recording resource; ``deleted`` once soft-deleted (its media is then gone)."""

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
        url = self.media_url or ""
        return bool(url) and not url.startswith(API_BASE + "/")


@dataclass
class Token:
    """A Flex token and the claims its validation answers with."""

    token: str
    identity: str
    realm_user_id: str
    roles: list[str]
    worker_sid: str
    expiration: datetime


@dataclass
class Credential:
    """An uploaded public key or AWS credential; ``secret`` is the PEM or ``KEY_ID:SECRET``."""

    sid: str
    account_sid: str
    friendly_name: str | None
    secret: str
    date_created: datetime
    date_updated: datetime


class State:
    """Everything one fake Twilio holds for its main account and the subaccounts of it.

    ``account_sid`` and ``auth_token`` are the main account's credentials; :meth:`clear`
    forgets everything else. The operations raise ValueError (or KeyError for an unknown
    recording) for input that is a test's mistake, never an HTTP error.
    """

    subaccounts: dict[str, Account]
    api_keys: dict[str, ApiKey]
    recordings: dict[str, Recording]
    tokens: dict[str, Token]
    settings: dict[str, dict[str, Any]]
    credentials: dict[str, dict[str, Credential]]
    # TaskRouter workspaces by SID: faketwilio.taskrouter_state.Workspace objects (that module
    # builds on this one, so it is not imported here, not even for the annotation).
    workspaces: dict[str, Any]

    def __init__(self, account_sid: str, auth_token: str, friendly_name: str) -> None:
        if not ACCOUNT_SID_RE.fullmatch(account_sid or ""):
            raise ValueError("account_sid must be 'AC' followed by 32 hex digits")
        if not auth_token:
            raise ValueError("auth_token must not be empty")
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.friendly_name = friendly_name
        self.created = now()
        self.lock = threading.RLock()
        self.clear()

    def clear(self) -> None:
        """Forget subaccounts, API keys, recordings, tokens, settings, credentials and
        TaskRouter workspaces."""
        with self.lock:
            self.subaccounts = {}
            self.api_keys = {}
            self.recordings = {}
            self.tokens = {}
            self.settings = {}
            self.credentials = {kind: {} for kind in CREDENTIAL_KINDS}
            self.workspaces = {}
            self._ordinal = 0

    # ------------------------------------------------------------------ accounts

    @property
    def main(self) -> Account:
        """The main account (built afresh: its credentials may have been reassigned)."""
        return Account(
            sid=self.account_sid,
            auth_token=self.auth_token,
            friendly_name=self.friendly_name,
            status="active",
            owner_account_sid=self.account_sid,
            date_created=self.created,
            ordinal=0,
        )

    def accounts(self) -> list[Account]:
        """The main account, then every subaccount."""
        with self.lock:
            return [self.main, *self.subaccounts.values()]

    def has_account(self, sid: str) -> bool:
        """True for the main account's sid and its subaccounts'."""
        with self.lock:
            return sid == self.account_sid or sid in self.subaccounts

    def add_subaccount(self, sid: str, auth_token: str, friendly_name: str, status: str) -> Account:
        """Create (or replace) a subaccount of the main account."""
        if not ACCOUNT_SID_RE.fullmatch(sid or "") or sid == self.account_sid:
            raise ValueError("a subaccount sid is 'AC' + 32 hex digits, not the main account's")
        if status not in ACCOUNT_STATUSES:
            raise ValueError(f"unknown account status {status!r}")
        with self.lock:
            self._ordinal += 1
            account = Account(
                sid=sid,
                auth_token=auth_token,
                friendly_name=friendly_name,
                status=status,
                owner_account_sid=self.account_sid,
                date_created=now(),
                ordinal=self._ordinal,
            )
            self.subaccounts[sid] = account
            return account

    def account(self, sid: str) -> Account | None:
        """The main account or the subaccount ``sid``; None for any other SID."""
        with self.lock:
            return self.main if sid == self.account_sid else self.subaccounts.get(sid)

    # ------------------------------------------------------------------ API keys

    def add_api_key(
        self, sid: str, secret: str, *, account_sid: str, friendly_name: str, main: bool
    ) -> ApiKey:
        """Create (or replace) an API key of the main account or one of its subaccounts."""
        if not API_KEY_SID_RE.fullmatch(sid or ""):
            raise ValueError("an API key sid is 'SK' followed by 32 hex digits")
        if not secret:
            raise ValueError("an API key secret must not be empty")
        with self.lock:
            if not self.has_account(account_sid):
                raise ValueError(f"unknown account {account_sid}: add_subaccount() it first")
            key = ApiKey(sid, secret, account_sid, friendly_name, main)
            self.api_keys[sid] = key
            return key

    def remove_api_key(self, sid: str) -> None:
        """Revoke an API key; no-op if absent."""
        with self.lock:
            self.api_keys.pop(sid, None)

    # ------------------------------------------------------------------ recordings

    def add_recording(
        self,
        sid: str,
        *,
        account_sid: str | None,
        call_sid: str | None,
        status: str,
        media: bytes | None,
        channels: int,
        source: str,
        track: str,
        duration: int | str | None,
        start_time: datetime | None,
        date_created: datetime | None,
        date_updated: datetime | None,
        price: str | None,
        price_unit: str,
        error_code: int | None,
        encryption_details: dict[str, Any] | None,
        media_url: str | None,
        conference_sid: str | None,
    ) -> Recording:
        """Create (or replace) a recording, filling in the defaults that
        :meth:`faketwilio.FakeTwilio.add_recording` documents."""
        if not re.fullmatch(r"RE\w+", sid or ""):
            raise ValueError("a recording sid starts with 'RE'")
        account_sid = account_sid or self.account_sid
        with self.lock:
            if not self.has_account(account_sid):
                raise ValueError(f"unknown account {account_sid}: add_subaccount() it first")
            media = bytes(media) if media is not None else None
            if duration is None:
                seconds = wav_seconds(media)
                if status in ("in-progress", "paused", "processing"):
                    duration = -1
                else:
                    duration = seconds if seconds is not None else 1
            created = _to_second(date_created or start_time or now())
            started = _to_second(start_time) if start_time else created
            recording = Recording(
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
                date_updated=_to_second(date_updated) if date_updated else created,
                price=price,
                price_unit=price_unit,
                error_code=error_code,
                encryption_details=encryption_details,
                media_url=media_url,
                conference_sid=conference_sid,
            )
            self.recordings[sid] = recording
            return recording

    def update_recording(self, sid: str, fields: dict[str, Any]) -> Recording:
        """Change fields of a recording (``date_updated`` moves to now unless given).

        Raises TypeError for a field a recording does not have, KeyError for an unknown sid.
        """
        unknown = set(fields) - RECORDING_FIELDS
        if unknown:
            raise TypeError(f"unknown recording fields: {sorted(unknown)}")
        with self.lock:
            recording = self.recordings[sid]
            if "account_sid" in fields and not self.has_account(fields["account_sid"]):
                raise ValueError(f"unknown account {fields['account_sid']}")
            for name, value in fields.items():
                if name in ("start_time", "date_created", "date_updated") and value is not None:
                    value = _to_second(value)
                elif name == "media" and value is not None:
                    value = bytes(value)
                elif name == "duration" and value is not None:
                    value = str(value)
                elif name == "channels":
                    value = int(value)
                setattr(recording, name, value)
            if "date_updated" not in fields:
                recording.date_updated = now()
            return recording

    def soft_delete_recording(self, recording: Recording) -> None:
        """Delete as Twilio does: the resource stays (status ``deleted``), the media goes."""
        with self.lock:
            recording.deleted = True
            recording.media = None
            recording.date_updated = now()

    def remove_recording(self, sid: str) -> None:
        """Forget a recording entirely; no-op if absent."""
        with self.lock:
            self.recordings.pop(sid, None)

    def media(self, sid: str) -> bytes | None:
        """The media bytes held for a recording (None: none, deleted or unknown)."""
        with self.lock:
            recording = self.recordings.get(sid)
            return None if recording is None or recording.deleted else recording.media

    # ------------------------------------------------------------------ Flex tokens

    def add_token(
        self,
        token: str,
        *,
        identity: str,
        realm_user_id: str,
        roles: Iterable[str],
        worker_sid: str | None,
        expiration: datetime | None,
    ) -> Token:
        """Make ``token`` a Flex token that validates; ``worker_sid`` defaults to a ``WK…``
        derived from the token, ``expiration`` to an hour from now."""
        if not token:
            raise ValueError("token must not be empty")
        entry = Token(
            token=token,
            identity=identity,
            realm_user_id=realm_user_id,
            roles=list(roles),
            worker_sid=worker_sid or "WK" + hashlib.sha256(token.encode()).hexdigest()[:32],
            expiration=utc(expiration) if expiration else datetime.now(UTC) + timedelta(hours=1),
        )
        with self.lock:
            self.tokens[token] = entry
        return entry

    # ------------------------------------------------------------------ Video settings

    def update_settings(self, kind: str, update: dict[str, Any]) -> None:
        """Merge ``update`` into the stored ``RecordingSettings`` or ``CompositionSettings``."""
        with self.lock:
            self.settings.setdefault(kind, {}).update(update)

    # ------------------------------------------------------------------ credentials

    def add_credential(
        self, kind: str, account_sid: str, friendly_name: str | None, secret: str
    ) -> Credential:
        """Store a new ``PublicKeys`` or ``AWS`` credential under a fresh ``CR…`` sid."""
        created = now()
        with self.lock:
            credential = Credential(
                new_sid("CR"), account_sid, friendly_name, secret, created, created
            )
            self.credentials[kind][credential.sid] = credential
            return credential

    def rename_credential(self, credential: Credential, friendly_name: str | None) -> None:
        """Set a credential's friendly name (None: none) and move its ``date_updated``."""
        with self.lock:
            credential.friendly_name = friendly_name
            credential.date_updated = now()

    def credential_secrets(self, kind: str) -> dict[str, str]:
        """A snapshot of one kind of credential: ``CR…`` sid → secret as uploaded."""
        with self.lock:
            return {sid: cred.secret for sid, cred in self.credentials[kind].items()}
