"""What the fake received: :class:`RecordedRequest` and the bounded, thread-safe
:class:`RequestLog` of them that tests inspect (``FakeTwilio.requests``, ``count``) and that
``GET /_fake/requests`` serves.

Every Twilio API request is logged, faulted ones included; ``/_fake/`` control requests are
not. The log keeps the newest :data:`MAX_LOGGED_REQUESTS` entries.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from faketwilio.httpserver import iso_millis

#: The request log keeps at most this many entries (oldest dropped), so a long benchmark run
#: against a separately running fake does not grow without bound.
MAX_LOGGED_REQUESTS = 100_000


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
            "received_at": iso_millis(self.received_at),
        }


class RequestLog:
    """The requests received so far, oldest first, at most :data:`MAX_LOGGED_REQUESTS`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[RecordedRequest] = []

    def record(self, entry: RecordedRequest) -> None:
        """Append ``entry`` (dropping the oldest beyond the limit)."""
        with self._lock:
            self._entries.append(entry)
            if len(self._entries) > MAX_LOGGED_REQUESTS:
                del self._entries[: len(self._entries) - MAX_LOGGED_REQUESTS]

    def snapshot(self) -> list[RecordedRequest]:
        """The entries, as a new list."""
        with self._lock:
            return list(self._entries)

    def count(self, method: str | None = None, path_contains: str | None = None) -> int:
        """How many entries have this method and a path containing this text."""
        with self._lock:
            return sum(
                1
                for entry in self._entries
                if (method is None or entry.method == method.upper())
                and (path_contains is None or path_contains in entry.path)
            )

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()
