"""HTTP plumbing and wire conventions shared by every product of the fake Twilio.

:class:`Server` and :class:`RequestHandler` are the threaded HTTP/1.1 server: the handler reads
each request into a :class:`Request`, hands it to one callable (the fake's pipeline: control
API, request log, faults, routing; see :mod:`faketwilio.server`) and writes back the
:class:`Response` it returns, or drops the connection when it returns None. They know nothing
of Twilio's resources.

The rest is what more than one product answers with: Twilio's JSON error body
(:class:`HttpError`), its date formats, its boolean parameters, and the paging of list
resources (:func:`paginate`, rendered in API 2010-04-01's ``*_page_uri`` envelope or the v1
APIs' ``meta`` envelope).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from faketwilio.state import Account, new_sid, utc

ERRORS_BASE = "https://www.twilio.com/docs/errors"

#: Twilio's page size when ``PageSize`` is not sent, and the largest it accepts.
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


# ---------------------------------------------------------------------- requests and answers


@dataclass
class Request:
    """One request as received: ``path`` with the ``/{product}`` prefix and without the query,
    ``query`` with the last value of each parameter; ``principal`` is the account whose
    credentials it carries, once authenticated."""

    method: str
    path: str
    query: dict[str, str]
    headers: Message
    body: bytes
    principal: Account | None = None

    def form(self) -> dict[str, str]:
        """The body parsed as ``application/x-www-form-urlencoded`` (last value wins)."""
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))


class HttpError(Exception):
    """An error answer, rendered as Twilio's JSON error body."""

    def __init__(
        self, status: int, code: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_body(status: int, code: int, message: str) -> dict[str, Any]:
    """Twilio's error JSON: ``code``, ``message``, ``more_info`` and ``status``."""
    return {
        "code": code,
        "message": message,
        "more_info": f"{ERRORS_BASE}/{code}",
        "status": status,
    }


def bad_request(message: str) -> HttpError:
    """A 400 with Twilio's generic "invalid parameter" code 20001."""
    return HttpError(400, 20001, message)


def not_found(twilio_path: str) -> HttpError:
    """Twilio's 404 (code 20404) for the path as Twilio shows it (see :func:`twilio_path`)."""
    return HttpError(404, 20404, f"The requested resource {twilio_path} was not found")


@dataclass
class Response:
    """An answer: status, body bytes and headers (``Content-Length`` is added when sent)."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        """``payload`` as a JSON body."""
        return cls(
            status,
            json.dumps(payload).encode(),
            {"Content-Type": "application/json; charset=utf-8", **(headers or {})},
        )

    @classmethod
    def error(cls, exc: HttpError) -> Response:
        """``exc`` as Twilio's JSON error body."""
        return cls.json(exc.status, error_body(exc.status, exc.code, exc.message), exc.headers)


def twilio_path(path: str) -> str:
    """The path as Twilio would show it: without the ``/{product}`` prefix of the override."""
    return "/" + path.lstrip("/").partition("/")[2]


def pick(params: dict[str, str], *names: str) -> dict[str, str]:
    """The parameters among ``names`` that were sent."""
    return {name: params[name] for name in names if name in params}


def boolean(params: dict[str, str], name: str) -> bool | None:
    """Twilio's boolean parameter (``true``/``false``); None when absent; 400 otherwise."""
    if name not in params:
        return None
    value = params[name].strip().lower()
    if value not in ("true", "false"):
        raise bad_request(f"{name} must be true or false")
    return value == "true"


# ---------------------------------------------------------------------- date formats


def rfc2822(value: datetime | None) -> str | None:
    """API 2010-04-01's date format: ``Fri, 14 Oct 2016 21:56:34 +0000``."""
    return format_datetime(utc(value)) if value else None


def iso(value: datetime | None) -> str | None:
    """The v1 APIs' date format: ``2016-10-14T21:56:34Z``."""
    return utc(value).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def iso_millis(value: datetime) -> str:
    """Flex token validation's expiration format: ``2018-09-24T23:22:44.240Z``."""
    value = utc(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


# ---------------------------------------------------------------------- pagination


@dataclass
class Page:
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

    def v1(self, key: str, url: str) -> dict[str, Any]:
        """The v1 APIs' envelope: the records under ``key`` plus a ``meta`` object whose page
        URLs are ``url`` (the list's absolute URL, e.g. ``https://accounts.twilio.com/v1/…``)
        with the paging parameters."""
        current = self.query.get("PageToken")
        return {
            key: self.records,
            "meta": {
                "page": self.page,
                "page_size": self.page_size,
                "first_page_url": f"{url}?{self._query({}, 0, None)}",
                "previous_page_url": (
                    f"{url}?{self._query({}, max(self.page - 1, 0), self.previous_token)}"
                    if self.previous_token
                    else None
                ),
                "url": f"{url}?{self._query({}, self.page, current)}",
                "next_page_url": (
                    f"{url}?{self._query({}, self.page + 1, self.next_token)}"
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
        raise bad_request("PageToken is invalid") from None


def paginate(
    items: list[tuple[tuple[Any, ...], dict[str, Any]]], query: dict[str, str], *, reverse: bool
) -> Page:
    """Cut ``items`` (sort key, record) into Twilio's pages.

    ``PageToken`` (``PA``: after this key, ``PB``: before it) keeps paging stable while
    records come and go, as Twilio's tokens do; without one, ``Page`` is an offset.
    """
    try:
        page_size = int(query.get("PageSize") or DEFAULT_PAGE_SIZE)
        page = int(query.get("Page") or 0)
    except ValueError:
        raise bad_request("PageSize and Page must be integers") from None
    if not 1 <= page_size <= MAX_PAGE_SIZE or page < 0:
        raise bad_request(f"PageSize must be between 1 and {MAX_PAGE_SIZE}, Page at least 0")
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
            raise bad_request("PageToken is invalid") from None
    chunk = ordered[start:end]
    next_token = _page_token("PA", chunk[-1][0]) if chunk and end < len(ordered) else None
    previous_token = _page_token("PB", chunk[0][0]) if chunk and start > 0 else None
    return Page([record for _, record in chunk], page, page_size, query, next_token, previous_token)


# ---------------------------------------------------------------------- the server

#: What the server does with a request: the answer, or None to drop the connection unanswered.
Responder = Callable[[Request], Response | None]


class Server(ThreadingHTTPServer):
    """The HTTP server: one daemon thread per connection; quiet about clients going away.

    It binds and listens on construction. ``respond`` answers every request; ``verbose`` is
    asked before each access-log line. It tracks its open connections so that :meth:`close`
    can cut kept-alive ones too (a stopped Twilio refuses every request).
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the default 5 makes bursts of connections wait for SYN retries

    def __init__(
        self, address: tuple[str, int], respond: Responder, verbose: Callable[[], bool]
    ) -> None:
        self.respond = respond
        self.verbose = verbose
        self.closed = False
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, RequestHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError) or self.closed:
            return
        super().handle_error(request, client_address)

    def track(self, connection: socket.socket, *, add: bool) -> None:
        """Note a connection opening (``add``) or closing."""
        with self._connections_lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close(self) -> None:
        """Stop serving (the thread in :meth:`serve_forever` returns), stop listening, and shut
        every open connection so that requests on kept-alive ones fail too."""
        self.closed = True
        self.shutdown()
        self.server_close()
        with self._connections_lock:
            connections = list(self._connections)
            self._connections.clear()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class RequestHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 (keep-alive) request handler that hands every request to the server's
    ``respond``."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeTwilio/1.0"
    sys_version = ""
    timeout = 120
    server: Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without TCP_NODELAY, Nagle plus the
        # client's delayed ACK would add ~40 ms to every keep-alive request.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.track(self.connection, add=False)

    def handle_one_request(self) -> None:
        if self.server.closed:
            self.close_connection = True
            return
        try:
            super().handle_one_request()
        except OSError:
            self.close_connection = True

    def _handle(self) -> None:
        target = urlsplit(self.path)
        query = dict(parse_qsl(target.query, keep_blank_values=True))
        request = Request(self.command, target.path, query, self.headers, self.read_body())
        response = self.server.respond(request)
        if response is None:
            self.drop()
        else:
            self.answer(response, head=self.command == "HEAD")

    do_GET = do_POST = do_DELETE = do_HEAD = do_PUT = do_PATCH = do_OPTIONS = _handle

    def read_body(self) -> bytes:
        """The request body (``Content-Length`` or chunked), empty when there is none."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
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

    def answer(self, response: Response, *, head: bool = False) -> None:
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
        if self.server.verbose():
            super().log_message(format, *args)
