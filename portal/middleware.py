"""Cross-cutting request handling: request ids, the admin session's idle/absolute limits, and
the admin's referrer policy."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse

from portal.http import from_trusted_proxy
from portal.logging import request_id_var

REQUEST_ID_HEADER = "X-Request-ID"
_ACCEPTABLE_INCOMING_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestWithId(HttpRequest):
    """A request as :class:`RequestIdMiddleware` leaves it: with its ``request_id``."""

    request_id: str


class RequestIdMiddleware:
    """Give every request an id, put it on every log line, and answer it in ``X-Request-ID``.

    A well-formed id from a proxy named in ``TRUSTED_PROXIES`` is kept so one request can be
    followed across systems; any other is replaced, so a caller can neither inject text into
    the logs nor choose the request id its access-log rows carry.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: RequestWithId) -> HttpResponse:
        incoming = request.headers.get(REQUEST_ID_HEADER, "") if from_trusted_proxy(request) else ""
        request_id = incoming if _ACCEPTABLE_INCOMING_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response[REQUEST_ID_HEADER] = request_id
        return response


class SessionTimeoutMiddleware:
    """End a logged-in session after ``SESSION_IDLE_TIMEOUT_SECONDS`` idle or
    ``SESSION_COOKIE_AGE`` in all, whichever comes first (admin sessions of compliance staff).
    """

    _STARTED = "_portal_session_started"
    _SEEN = "_portal_session_seen"

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Only requests with a session cookie can be logged in; API and webhook requests have
        # none, and must not pay for loading an empty session (nor get "Vary: Cookie").
        if settings.SESSION_COOKIE_NAME not in request.COOKIES:
            return self.get_response(request)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            now = time.time()
            started = request.session.get(self._STARTED, now)
            seen = request.session.get(self._SEEN, now)
            if (
                now - seen > settings.SESSION_IDLE_TIMEOUT_SECONDS
                or now - started > settings.SESSION_COOKIE_AGE
            ):
                logout(request)
            else:
                if self._STARTED not in request.session:
                    request.session[self._STARTED] = started
                # Written at most once a minute, so every page view is not a session write.
                if now - seen > 60 or self._SEEN not in request.session:
                    request.session[self._SEEN] = now
        return self.get_response(request)


class AdminReferrerPolicyMiddleware:
    """Answer admin pages with ``Referrer-Policy: same-origin`` instead of the portal-wide
    ``no-referrer``.

    Under ``no-referrer`` browsers send ``Origin: null`` with a form's POST, and Django's CSRF
    check (rightly) refuses that origin: no admin form, the login included, could be submitted.
    ``same-origin`` still sends nothing to other sites. Placed after ``SecurityMiddleware`` in
    ``MIDDLEWARE``, so the header is set before that middleware's default applies.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        if match is not None and "admin" in match.namespaces:
            response.headers.setdefault("Referrer-Policy", "same-origin")
        return response
