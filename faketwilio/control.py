"""The test-control API under ``/_fake/``: the fake's Python API as JSON over HTTP, for a fake
running in its own process (``python -m faketwilio``, the benchmarks, the demo).

No authentication, not logged, never faulted. Bodies are JSON objects; datetimes are ISO 8601
strings and media is base64 (``media_base64``). Routes:

* ``GET /_fake/health``, ``POST /_fake/reset``;
* ``POST /_fake/subaccounts``; ``POST /_fake/api_keys``; ``DELETE /_fake/api_keys/{SK}``;
* ``POST /_fake/tokens`` (``ttl_seconds`` or ``expiration``);
* ``POST /_fake/recordings``; ``GET``/``POST``/``DELETE /_fake/recordings/{RE}``;
* ``POST /_fake/faults`` (``kind``: fail, slow, drop or clear);
* ``GET /_fake/requests`` (``?method=``, ``?path_contains=``), ``DELETE /_fake/requests``.

It drives the fake through the methods of :class:`Controllable`, which
:class:`faketwilio.FakeTwilio` has.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from faketwilio.httpserver import HttpError, Request, Response, error_body, not_found
from faketwilio.requestlog import RecordedRequest
from faketwilio.state import RECORDING_FIELDS, new_sid


class Controllable(Protocol):
    """The part of the fake's Python API that the control API calls."""

    @property
    def account_sid(self) -> str: ...

    @property
    def requests(self) -> list[RecordedRequest]: ...

    def reset(self) -> None: ...

    def add_subaccount(
        self, sid: str, auth_token: str, friendly_name: str, status: str
    ) -> dict[str, Any]: ...

    def add_api_key(
        self,
        sid: str | None,
        secret: str | None,
        *,
        account_sid: str | None,
        friendly_name: str,
        main: bool,
    ) -> dict[str, Any]: ...

    def remove_api_key(self, sid: str) -> None: ...

    # Its keyword arguments come from JSON: see recording_fields().
    def add_recording(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...

    def update_recording(self, sid: str, **fields: Any) -> dict[str, Any]: ...

    def get_recording(self, sid: str) -> dict[str, Any] | None: ...

    def remove_recording(self, sid: str) -> None: ...

    def add_token(
        self,
        token: str,
        *,
        identity: str,
        realm_user_id: str,
        roles: Iterable[str],
        worker_sid: str | None,
        expiration: datetime | None,
    ) -> dict[str, Any]: ...

    def fail(self, status: int, *, count: int | None, path_contains: str | None) -> None: ...

    def slow(self, seconds: float, *, count: int | None, path_contains: str | None) -> None: ...

    def drop(self, *, count: int | None, path_contains: str | None) -> None: ...

    def reset_faults(self) -> None: ...

    def clear_requests(self) -> None: ...


def control(fake: Controllable, request: Request) -> Response:
    """Serve one ``/_fake/…`` request; a malformed one is a 400 with Twilio's error body."""
    try:
        payload = json.loads(request.body) if request.body.strip() else {}
        if not isinstance(payload, dict):
            raise ValueError("the body must be a JSON object")
        return _route(fake, request.method, request.path, request.query, payload)
    except HttpError as exc:
        return Response.error(exc)
    except (ValueError, TypeError, KeyError, binascii.Error) as exc:
        return Response.json(400, error_body(400, 20001, f"{type(exc).__name__}: {exc}"))


def _route(
    fake: Controllable, method: str, path: str, query: dict[str, str], payload: dict[str, Any]
) -> Response:
    route = (method, path.rstrip("/"))
    if route == ("GET", "/_fake/health"):
        return Response.json(200, {"ok": True, "account_sid": fake.account_sid})
    if route == ("POST", "/_fake/reset"):
        fake.reset()
        return Response.json(200, {"ok": True})
    if route == ("POST", "/_fake/subaccounts"):
        created = fake.add_subaccount(
            payload.get("sid") or new_sid("AC"),
            payload.get("auth_token") or secrets.token_hex(16),
            friendly_name=payload.get("friendly_name", ""),
            status=payload.get("status", "active"),
        )
        return Response.json(201, created)
    if route == ("POST", "/_fake/api_keys"):
        created = fake.add_api_key(
            payload.get("sid"),
            payload.get("secret"),
            account_sid=payload.get("account_sid"),
            friendly_name=payload.get("friendly_name", ""),
            main=bool(payload.get("main", False)),
        )
        return Response.json(201, created)
    if method == "DELETE" and path.startswith("/_fake/api_keys/"):
        fake.remove_api_key(path.rsplit("/", 1)[1])
        return Response(204)
    if route == ("POST", "/_fake/recordings"):
        fields = recording_fields(payload)
        return Response.json(201, fake.add_recording(payload.get("sid") or new_sid("RE"), **fields))
    if path.startswith("/_fake/recordings/"):
        sid = path.rsplit("/", 1)[1]
        if method == "GET":
            found = fake.get_recording(sid)
            if found is None:
                raise not_found(path)
            return Response.json(200, found)
        if method == "POST":
            try:
                return Response.json(200, fake.update_recording(sid, **recording_fields(payload)))
            except KeyError:
                raise not_found(path) from None
        if method == "DELETE":
            fake.remove_recording(sid)
            return Response(204)
    if route == ("POST", "/_fake/tokens"):
        expiration = parse_datetime(payload.get("expiration"))
        if expiration is None and payload.get("ttl_seconds") is not None:
            expiration = datetime.now(UTC) + timedelta(seconds=float(payload["ttl_seconds"]))
        token = payload.get("token") or secrets.token_urlsafe(24)
        answer = fake.add_token(
            token,
            identity=payload.get("identity", "alice"),
            realm_user_id=payload.get("realm_user_id", "alice@example.com"),
            roles=payload.get("roles", ["supervisor"]),
            worker_sid=payload.get("worker_sid"),
            expiration=expiration,
        )
        return Response.json(201, {"token": token, **answer})
    if route == ("POST", "/_fake/faults"):
        return _fault(fake, payload)
    if route == ("GET", "/_fake/requests"):
        entries = [
            entry.to_dict()
            for entry in fake.requests
            if ("method" not in query or entry.method == query["method"].upper())
            and ("path_contains" not in query or query["path_contains"] in entry.path)
        ]
        return Response.json(200, {"count": len(entries), "requests": entries})
    if route == ("DELETE", "/_fake/requests"):
        fake.clear_requests()
        return Response(204)
    raise not_found(path)


def _fault(fake: Controllable, payload: dict[str, Any]) -> Response:
    kind = payload.get("kind")
    count = payload.get("count")
    count = int(count) if count is not None else None
    path_contains = payload.get("path_contains")
    if kind == "fail":
        fake.fail(int(payload.get("status", 503)), count=count, path_contains=path_contains)
    elif kind == "slow":
        fake.slow(float(payload["seconds"]), count=count, path_contains=path_contains)
    elif kind == "drop":
        fake.drop(count=count, path_contains=path_contains)
    elif kind == "clear":
        fake.reset_faults()
    else:
        raise ValueError("kind must be one of fail, slow, drop, clear")
    return Response.json(200, {"ok": True})


def recording_fields(payload: dict[str, Any]) -> dict[str, Any]:
    """:meth:`FakeTwilio.add_recording` keyword arguments from a control API JSON body."""
    fields = {k: v for k, v in payload.items() if k in RECORDING_FIELDS}
    unknown = set(payload) - RECORDING_FIELDS - {"sid", "media_base64"}
    if unknown:
        raise ValueError(f"unknown recording fields: {sorted(unknown)}")
    if "media_base64" in payload:
        encoded = payload["media_base64"]
        fields["media"] = None if encoded is None else base64.b64decode(encoded, validate=True)
    if "media" in payload:
        raise ValueError("send media as base64 in 'media_base64'")
    for name in ("start_time", "date_created", "date_updated"):
        if name in fields:
            fields[name] = parse_datetime(fields[name])
    return fields


def parse_datetime(value: Any) -> datetime | None:
    """A datetime from a datetime or an ISO 8601 string (control API input); None stays None."""
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    raise ValueError(f"not a datetime: {value!r}")
