"""API 2010-04-01 (``api.twilio.com``): Accounts, and the Recording resource with its media.

Accounts are listed and fetched; recordings are fetched, listed (per account or per call, with
Twilio's filters, newest first), soft-deleted, and their media downloaded as ``.wav``,
``.mp3`` or without an extension, with single ``Range`` requests. Resources are rendered as
Twilio serves them: RFC 2822 dates, ``duration`` as a string, the list envelope with
``*_page_uri`` fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from faketwilio.httpserver import (
    HttpError,
    Request,
    Response,
    bad_request,
    boolean,
    not_found,
    paginate,
    pick,
    rfc2822,
    twilio_path,
)
from faketwilio.routing import routes, visible_account
from faketwilio.state import API_BASE, Account, Recording, State, utc

API_VERSION = "2010-04-01"


def account_json(account: Account) -> dict[str, Any]:
    """An Account resource as Twilio serves it."""
    base = f"/{API_VERSION}/Accounts/{account.sid}"
    return {
        "auth_token": account.auth_token,
        "date_created": rfc2822(account.date_created),
        "date_updated": rfc2822(account.date_created),
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


def recording_json(recording: Recording) -> dict[str, Any]:
    """A Recording resource as Twilio serves it (status ``deleted`` once soft-deleted)."""
    base = f"/{API_VERSION}/Accounts/{recording.account_sid}/Recordings/{recording.sid}"
    return {
        "account_sid": recording.account_sid,
        "api_version": API_VERSION,
        "call_sid": recording.call_sid,
        "conference_sid": recording.conference_sid,
        "date_created": rfc2822(recording.date_created),
        "date_updated": rfc2822(recording.date_updated),
        "start_time": rfc2822(recording.start_time),
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


# ---------------------------------------------------------------------- accounts


def list_accounts(state: State, request: Request, match: dict[str, str]) -> Response:
    """``GET /Accounts.json``: the main account and its subaccounts (a subaccount sees only
    itself), filtered by ``FriendlyName`` and ``Status``."""
    principal = request.principal
    assert principal is not None
    with state.lock:
        accounts = state.accounts() if principal.sid == state.account_sid else [principal]
        filters = pick(request.query, "FriendlyName", "Status")
        accounts = [
            a
            for a in accounts
            if filters.get("FriendlyName", a.friendly_name) == a.friendly_name
            and filters.get("Status", a.status) == a.status
        ]
        items = [((a.ordinal,), account_json(a)) for a in accounts]
    page = paginate(items, request.query, reverse=False)
    return Response.json(200, page.v2010("accounts", f"/{API_VERSION}/Accounts.json", filters))


def fetch_account(state: State, request: Request, match: dict[str, str]) -> Response:
    """``GET /Accounts/{AC}.json``."""
    account = visible_account(state, request, match["ac"])
    with state.lock:
        return Response.json(200, account_json(account))


# ---------------------------------------------------------------------- recordings


def _find_recording(
    state: State, request: Request, match: dict[str, str], *, include_deleted: bool
) -> Recording:
    account = visible_account(state, request, match["ac"])
    recording = state.recordings.get(match["re"])
    if (
        recording is None
        or recording.account_sid != account.sid
        or (recording.deleted and not include_deleted)
    ):
        raise not_found(twilio_path(request.path))
    return recording


def fetch_recording(state: State, request: Request, match: dict[str, str]) -> Response:
    """``GET /Accounts/{AC}/Recordings/{RE}.json`` (``IncludeSoftDeleted`` shows deleted)."""
    include_deleted = boolean(request.query, "IncludeSoftDeleted") or False
    with state.lock:
        recording = _find_recording(state, request, match, include_deleted=include_deleted)
        return Response.json(200, recording_json(recording))


def delete_recording(state: State, request: Request, match: dict[str, str]) -> Response:
    """``DELETE /Accounts/{AC}/Recordings/{RE}``: a soft delete, 204."""
    with state.lock:
        recording = _find_recording(state, request, match, include_deleted=False)
        state.soft_delete_recording(recording)
    return Response(204)


def list_recordings(state: State, request: Request, match: dict[str, str]) -> Response:
    """``GET /Accounts/{AC}/Recordings.json`` and ``…/Calls/{CA}/Recordings.json``, newest
    first, filtered by ``DateCreated``/``<``/``>``, ``CallSid``, ``ConferenceSid`` and
    ``IncludeSoftDeleted``."""
    account = visible_account(state, request, match["ac"])
    query = dict(request.query)
    if match.get("ca"):
        query["CallSid"] = match["ca"]
    filters = pick(
        request.query,
        "DateCreated",
        "DateCreated<",
        "DateCreated>",
        "CallSid",
        "ConferenceSid",
        "IncludeSoftDeleted",
    )
    checks = _date_checks(query)
    include_deleted = boolean(query, "IncludeSoftDeleted") or False
    with state.lock:
        items = [
            ((int(r.date_created.timestamp()), r.sid), recording_json(r))
            for r in state.recordings.values()
            if r.account_sid == account.sid
            and (include_deleted or not r.deleted)
            and query.get("CallSid", r.call_sid) == r.call_sid
            and query.get("ConferenceSid", r.conference_sid) == r.conference_sid
            and all(check(r.date_created) for check in checks)
        ]
    page = paginate(items, request.query, reverse=True)
    path = twilio_path(request.path)
    return Response.json(200, page.v2010("recordings", path, filters))


def recording_media(state: State, request: Request, match: dict[str, str]) -> Response:
    """``GET``/``HEAD /Accounts/{AC}/Recordings/{RE}[.wav|.mp3]``: the media Twilio holds
    (404 when none or stored externally; error 16109 for an encrypted one as ``.mp3``), a
    single byte range answered 206."""
    with state.lock:
        recording = _find_recording(state, request, match, include_deleted=False)
        media = None if recording.stored_externally else recording.media
        encrypted = bool(recording.encryption_details)
    if media is None:
        raise not_found(twilio_path(request.path))
    if encrypted and match.get("ext") == ".mp3":
        # Twilio cannot transcode what it cannot read (the HTTP status is unconfirmed).
        raise HttpError(
            400,
            16109,
            "Recording cannot be retrieved in .mp3 format when call "
            "recording encryption feature is enabled on the account. Please "
            "re-request with .wav format.",
        )
    content_type = "audio/mpeg" if match.get("ext") == ".mp3" else "audio/x-wav"
    headers = {"Content-Type": content_type, "Accept-Ranges": "bytes"}
    byte_range = _byte_range(request.headers.get("Range"), len(media))
    if byte_range is None:
        return Response(200, media, headers)
    start, end = byte_range
    headers["Content-Range"] = f"bytes {start}-{end}/{len(media)}"
    return Response(206, media[start : end + 1], headers)


def _within(low: datetime | None, high: datetime | None) -> Callable[[datetime], bool]:
    """A predicate: ``low <= value <= high``, a missing bound not checked."""

    def check(value: datetime) -> bool:
        return (low is None or low <= value) and (high is None or value <= high)

    return check


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
                low = high = utc(datetime.fromisoformat(raw.replace("Z", "+00:00")))
                if name == "DateCreated":
                    low = datetime.combine(low.date(), datetime.min.time(), UTC)
                    high = low + timedelta(days=1) - timedelta(seconds=1)
        except ValueError:
            raise bad_request(f"{name} must be a date or an ISO 8601 date-time") from None
        if name == "DateCreated":
            checks.append(_within(low, high))
        elif name == "DateCreated<":
            checks.append(_within(None, high))
        else:
            checks.append(_within(low, None))
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
        raise HttpError(
            416, 20416, "Requested range not satisfiable", {"Content-Range": f"bytes */{total}"}
        )
    return start, end


_ACCOUNT = r"/api/2010-04-01/Accounts/(?P<ac>[^/]+)"
_RECORDING = _ACCOUNT + r"/Recordings/(?P<re>RE[^/.]+)"

ROUTES = routes(
    ("GET", r"/api/2010-04-01/Accounts\.json", list_accounts),
    ("GET", _ACCOUNT + r"\.json", fetch_account),
    ("GET", _ACCOUNT + r"/Recordings\.json", list_recordings),
    ("GET", _ACCOUNT + r"/Calls/(?P<ca>[^/]+)/Recordings\.json", list_recordings),
    ("GET", _RECORDING + r"\.json", fetch_recording),
    ("DELETE", _RECORDING + r"(?:\.json)?", delete_recording),
    ("GET HEAD", _RECORDING + r"(?P<ext>\.wav|\.mp3)?", recording_media),
)
