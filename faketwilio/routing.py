"""Routing and authentication of Twilio API requests: the product modules' route tables joined
into one :class:`Router`, HTTP Basic auth against the main account and its subaccounts (their
auth tokens or their API keys), and which accounts a caller may see.

Each product module (:mod:`faketwilio.api_2010`, :mod:`faketwilio.iam`,
:mod:`faketwilio.video`) declares its endpoints with :func:`routes`. An :data:`Endpoint` gets
the fake's :class:`~faketwilio.state.State`, the authenticated
:class:`~faketwilio.httpserver.Request` and the named groups of its path pattern, and returns a
:class:`~faketwilio.httpserver.Response` or raises :class:`~faketwilio.httpserver.HttpError`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from faketwilio.httpserver import HttpError, Request, Response, not_found, twilio_path
from faketwilio.state import Account, State

Endpoint = Callable[[State, Request, dict[str, str]], Response]


@dataclass(frozen=True)
class Route:
    """Requests with one of ``methods`` whose whole path matches ``pattern`` go to
    ``endpoint``."""

    methods: frozenset[str]
    pattern: re.Pattern[str]
    endpoint: Endpoint


def routes(*table: tuple[str, str, Endpoint]) -> list[Route]:
    """A route table from ``(methods, pattern, endpoint)`` rows: the methods space-separated,
    the pattern matching the whole request path, product prefix included (``/api/…``)."""
    return [Route(frozenset(m.split()), re.compile(p), e) for m, p, e in table]


class Router:
    """Finds the route of a Twilio API request, authenticates it and calls the endpoint."""

    def __init__(self, state: State, table: Iterable[Route]) -> None:
        self.state = state
        self.table = list(table)

    def dispatch(self, request: Request) -> Response:
        """Authenticate and route one request; errors become Twilio error bodies (404 for an
        unknown path, 405 for a known path with another method, once authenticated)."""
        try:
            path_known = False
            for route in self.table:
                match = route.pattern.fullmatch(request.path)
                if match is None:
                    continue
                path_known = True
                if request.method in route.methods:
                    request.principal = authenticate(self.state, request)
                    return route.endpoint(self.state, request, match.groupdict())
            if path_known:
                authenticate(self.state, request)
                raise HttpError(405, 20004, "Method not allowed")
            raise not_found(twilio_path(request.path))
        except HttpError as exc:
            return Response.error(exc)


def authenticate(state: State, request: Request) -> Account:
    """The account whose credentials the request carries (401 code 20003 otherwise).

    The credentials are an account's SID and auth token, or an API key's SID and secret
    (``SK…:secret``, as twilio-python's ``Client(key_sid, key_secret, account_sid)`` sends
    them), which act as the key's account; a standard key may not read the accounts.
    """
    header = request.headers.get("Authorization") or ""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise _unauthorized("Authentication Error - No credentials provided")
    try:
        username, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        username, password = "", ""
    principal = None
    with state.lock:
        accounts = state.accounts()
        keys = list(state.api_keys.values())
    for account in accounts:
        # Compare every candidate's secrets, so timing does not tell which SID exists.
        same_sid = hmac.compare_digest(username.encode(), account.sid.encode())
        same_token = hmac.compare_digest(password.encode(), account.auth_token.encode())
        if same_sid and same_token and account.status == "active":
            principal = account
    key_used = None
    for key in keys:
        same_sid = hmac.compare_digest(username.encode(), key.sid.encode())
        same_secret = hmac.compare_digest(password.encode(), key.secret.encode())
        if same_sid and same_secret:
            key_used = key
    if key_used is not None:
        owner = state.account(key_used.account_sid)
        if owner is not None and owner.status == "active":
            principal = owner
    if principal is None or (
        principal.sid != state.account_sid and not subaccount_may_call(principal, request.path)
    ):
        raise _unauthorized("Authentication Error - invalid username")
    if key_used is not None and not key_used.main and _reads_accounts(request.path):
        raise _unauthorized("Authenticate")
    return principal


def _reads_accounts(path: str) -> bool:
    """True for the Accounts resources themselves (list and fetch), which standard API keys
    may not use."""
    return re.fullmatch(r"/api/2010-04-01/Accounts(?:/[^/]+)?\.json", path) is not None


def _unauthorized(message: str) -> HttpError:
    return HttpError(401, 20003, message, {"WWW-Authenticate": 'Basic realm="Twilio API"'})


def subaccount_may_call(account: Account, path: str) -> bool:
    """Subaccount credentials are good for that subaccount's own API 2010-04-01 resources."""
    return path == "/api/2010-04-01/Accounts.json" or path.startswith(
        (
            f"/api/2010-04-01/Accounts/{account.sid}/",
            f"/api/2010-04-01/Accounts/{account.sid}.json",
            f"/iam/v1/Accounts/{account.sid}/",
        )
    )


def visible_account(state: State, request: Request, sid: str) -> Account:
    """The account named in the path, if the caller may see it (404 otherwise)."""
    principal = request.principal
    assert principal is not None
    with state.lock:
        if sid == state.account_sid and principal.sid == state.account_sid:
            return state.main
        account = state.subaccounts.get(sid)
        if account is not None and principal.sid in (state.account_sid, sid):
            return account
    raise not_found(twilio_path(request.path))
