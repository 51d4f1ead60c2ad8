"""The test-control API under ``/_fake/``: the fake's Python API as JSON over HTTP, for a fake
running in its own process (``python -m faketwilio``, the benchmarks, the demo).

No authentication, not logged, never faulted. Bodies are JSON objects; datetimes are ISO 8601
strings and media is base64 (``media_base64``). Routes:

* ``GET /_fake/health``, ``POST /_fake/reset``;
* ``POST /_fake/subaccounts``; ``POST /_fake/api_keys``; ``DELETE /_fake/api_keys/{SK}``;
* ``POST /_fake/tokens`` (``ttl_seconds`` or ``expiration``);
* ``POST /_fake/recordings``; ``GET``/``POST``/``DELETE /_fake/recordings/{RE}``;
* ``POST /_fake/faults`` (``kind``: fail, slow, drop or clear);
* ``GET /_fake/requests`` (``?method=``, ``?path_contains=``), ``DELETE /_fake/requests``;
* TaskRouter, the bodies taking the Python API's argument names (``workspace_sid`` wherever a
  resource lives in a workspace; for a ``GET`` or ``DELETE`` it may be a query parameter):
  ``POST /_fake/taskrouter/workspaces``, ``…/task_queues``, ``…/workers``;
  ``POST /_fake/taskrouter/workers/{WK}`` (update); ``POST /_fake/taskrouter/tasks``;
  ``GET``/``POST``/``DELETE /_fake/taskrouter/tasks/{WT}`` (the task with ``attributes`` as an
  object and its ``etag``; update; remove); ``POST /_fake/taskrouter/reservations`` (with
  ``task_sid``, ``worker_sid``), ``POST /_fake/taskrouter/reservations/{WR}`` (``task_sid``,
  ``status``); ``POST /_fake/taskrouter/race`` (``task_sid``, ``changes``, ``count``);
  ``POST /_fake/taskrouter/events`` (``event_type``, ``task_sid``, ``worker_sid``,
  ``reservation_sid``, ``task_queue_sid``, ``timestamp_ms``, ``extra``: an object of further
  parameters; with ``url``, also the ``signature`` a POST of them there carries) answers
  ``{"params": {…}, "signature": …}``, which the caller posts itself.

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
from faketwilio.taskrouter_events import signature


class Controllable(Protocol):
    """The part of the fake's Python API that the control API calls."""

    @property
    def account_sid(self) -> str: ...

    @property
    def auth_token(self) -> str: ...

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

    def add_workspace(
        self, sid: str | None = None, *, friendly_name: str, event_callback_url: str
    ) -> dict[str, Any]: ...

    def add_task_queue(
        self, workspace_sid: str, *, sid: str | None, friendly_name: str
    ) -> dict[str, Any]: ...

    def add_worker(
        self,
        workspace_sid: str,
        *,
        sid: str | None,
        friendly_name: str,
        attributes: dict[str, Any] | None,
        activity_name: str,
    ) -> dict[str, Any]: ...

    def update_worker(
        self,
        workspace_sid: str,
        sid: str,
        *,
        attributes: dict[str, Any] | None,
        friendly_name: str | None,
        activity_name: str | None,
    ) -> dict[str, Any]: ...

    def add_task(
        self,
        workspace_sid: str,
        *,
        sid: str | None,
        attributes: dict[str, Any],
        task_queue_sid: str | None,
        task_channel_unique_name: str,
        assignment_status: str,
    ) -> dict[str, Any]: ...

    def get_task(self, workspace_sid: str, sid: str) -> dict[str, Any] | None: ...

    def update_task(
        self,
        workspace_sid: str,
        sid: str,
        *,
        attributes: dict[str, Any] | None,
        assignment_status: str | None,
    ) -> dict[str, Any]: ...

    def remove_task(self, workspace_sid: str, sid: str) -> None: ...

    def add_reservation(
        self, workspace_sid: str, task_sid: str, *, worker_sid: str, sid: str | None, status: str
    ) -> dict[str, Any]: ...

    def update_reservation(
        self, workspace_sid: str, task_sid: str, sid: str, *, status: str
    ) -> dict[str, Any]: ...

    def race_task_attributes(
        self, workspace_sid: str, task_sid: str, changes: dict[str, Any], *, count: int
    ) -> None: ...

    def taskrouter_event(
        self,
        event_type: str,
        *,
        workspace_sid: str,
        task_sid: str | None,
        worker_sid: str | None,
        reservation_sid: str | None,
        task_queue_sid: str | None,
        timestamp_ms: int | None,
        **extra: Any,
    ) -> dict[str, str]: ...


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
    if path.startswith("/_fake/taskrouter/"):
        return _taskrouter(fake, method, path.rstrip("/"), {**query, **payload})
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


def _taskrouter(fake: Controllable, method: str, path: str, body: dict[str, Any]) -> Response:
    """The ``/_fake/taskrouter/…`` routes (``body``: the JSON body over the query)."""
    parts = path.split("/")[3:]  # after "", "_fake", "taskrouter"
    resource, sid = parts[0], (parts[1] if len(parts) == 2 else None)
    if len(parts) > 2:
        raise not_found(path)
    if (method, resource, sid) == ("POST", "workspaces", None):
        created = fake.add_workspace(
            body.get("sid"),
            friendly_name=body.get("friendly_name", "Flex Task Assignment"),
            event_callback_url=body.get("event_callback_url", ""),
        )
        return Response.json(201, created)
    workspace_sid = str(body["workspace_sid"])
    if (method, resource, sid) == ("POST", "task_queues", None):
        created = fake.add_task_queue(
            workspace_sid, sid=body.get("sid"), friendly_name=body["friendly_name"]
        )
        return Response.json(201, created)
    if (method, resource) == ("POST", "workers"):
        if sid is not None:
            updated = fake.update_worker(
                workspace_sid,
                sid,
                attributes=body.get("attributes"),
                friendly_name=body.get("friendly_name"),
                activity_name=body.get("activity_name"),
            )
            return Response.json(200, updated)
        created = fake.add_worker(
            workspace_sid,
            sid=body.get("sid"),
            friendly_name=body["friendly_name"],
            attributes=body.get("attributes"),
            activity_name=body.get("activity_name", "Available"),
        )
        return Response.json(201, created)
    if (method, resource, sid) == ("POST", "tasks", None):
        created = fake.add_task(
            workspace_sid,
            sid=body.get("sid"),
            attributes=body["attributes"],
            task_queue_sid=body.get("task_queue_sid"),
            task_channel_unique_name=body.get("task_channel_unique_name", "voice"),
            assignment_status=body.get("assignment_status", "pending"),
        )
        return Response.json(201, created)
    if resource == "tasks" and sid is not None:
        if method == "GET":
            found = fake.get_task(workspace_sid, sid)
            if found is None:
                raise not_found(path)
            return Response.json(200, found)
        if method == "POST":
            try:
                updated = fake.update_task(
                    workspace_sid,
                    sid,
                    attributes=body.get("attributes"),
                    assignment_status=body.get("assignment_status"),
                )
            except KeyError:
                raise not_found(path) from None
            return Response.json(200, updated)
        if method == "DELETE":
            fake.remove_task(workspace_sid, sid)
            return Response(204)
    if (method, resource) == ("POST", "reservations"):
        task_sid = str(body["task_sid"])
        if sid is not None:
            updated = fake.update_reservation(workspace_sid, task_sid, sid, status=body["status"])
            return Response.json(200, updated)
        created = fake.add_reservation(
            workspace_sid,
            task_sid,
            worker_sid=body["worker_sid"],
            sid=body.get("sid"),
            status=body.get("status", "pending"),
        )
        return Response.json(201, created)
    if (method, resource, sid) == ("POST", "race", None):
        fake.race_task_attributes(
            workspace_sid, body["task_sid"], body["changes"], count=int(body.get("count", 1))
        )
        return Response.json(200, {"ok": True})
    if (method, resource, sid) == ("POST", "events", None):
        extra = body.get("extra") or {}
        if not isinstance(extra, dict):
            raise ValueError("extra must be an object")
        params = fake.taskrouter_event(
            body["event_type"],
            workspace_sid=workspace_sid,
            task_sid=body.get("task_sid"),
            worker_sid=body.get("worker_sid"),
            reservation_sid=body.get("reservation_sid"),
            task_queue_sid=body.get("task_queue_sid"),
            timestamp_ms=body.get("timestamp_ms"),
            **extra,
        )
        url = body.get("url")
        signed = signature(url, params, fake.auth_token) if url else None
        return Response.json(200, {"params": params, "signature": signed})
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
