"""HTTP concerns shared by the portal's public endpoints: who the client is (behind trusted
proxies only) and CORS for the Flex origins."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse

CORS_ALLOWED_HEADERS = "Authorization, Cache-Control, Pragma, Range"
CORS_EXPOSED_HEADERS = "Content-Length, Content-Range, Accept-Ranges, X-Request-ID"
CORS_MAX_AGE_SECONDS = 600


@functools.cache
def _trusted_networks(
    proxies: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(proxy.strip(), strict=False) for proxy in proxies if proxy)


def _is_trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in _trusted_networks(tuple(settings.TRUSTED_PROXIES)))


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: the socket's peer, or, when that peer is a proxy named in
    ``TRUSTED_PROXIES``, the right-most ``X-Forwarded-For`` hop that is not itself trusted.

    Hops left of an untrusted one were written by whoever sent the request, so they prove
    nothing and are never used.
    """
    peer = request.META.get("REMOTE_ADDR") or None
    if not peer or not _is_trusted(peer):
        return peer
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    for hop in reversed([hop for hop in hops if hop]):
        if not _is_trusted(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # a malformed hop: fall back to what we know
    return peer


def request_audit_fields(request: HttpRequest) -> dict[str, Any]:
    """The request fields every access-log row carries: client address, user agent (cut to the
    column's size), request id."""
    return {
        "client_ip": client_ip(request),
        "user_agent": request.headers.get("User-Agent", "")[:512],
        "request_id": getattr(request, "request_id", ""),
    }


def allowed_origin(request: HttpRequest) -> str | None:
    """The request's ``Origin`` when it is one of ``FLEX_ALLOWED_ORIGINS``, else None."""
    origin = request.headers.get("Origin", "")
    return origin if origin and origin in settings.FLEX_ALLOWED_ORIGINS else None


def add_cors_headers(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """CORS headers for an allowed Flex origin (the exact origin, never ``*``); none for
    any other origin."""
    response["Vary"] = "Origin"
    origin = allowed_origin(request)
    if origin:
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Expose-Headers"] = CORS_EXPOSED_HEADERS
    return response


def flex_cors(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Answer the browser's preflight for the Flex origins and add CORS headers to every
    answer of ``view``. The preflight is not passed to the view (and so not audited)."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method == "OPTIONS":
            response = HttpResponse(status=204)
            origin = allowed_origin(request)
            if origin:
                response["Access-Control-Allow-Methods"] = "GET, HEAD, OPTIONS"
                response["Access-Control-Allow-Headers"] = CORS_ALLOWED_HEADERS
                response["Access-Control-Max-Age"] = str(CORS_MAX_AGE_SECONDS)
            return add_cors_headers(request, response)
        return add_cors_headers(request, view(request, *args, **kwargs))

    wrapper.csrf_exempt = True  # type: ignore[attr-defined]
    return wrapper
