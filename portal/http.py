"""HTTP concerns shared by the portal's public endpoints: who the client is (behind trusted
proxies only) and what every access-log row keeps of a request. CORS for the Flex origins is
django-cors-headers' (see ``CORS_*`` in the settings)."""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

from django.conf import settings
from django.http import HttpRequest


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


def from_trusted_proxy(request: HttpRequest) -> bool:
    """Whether the request's peer (the socket's address) is a proxy named in
    ``TRUSTED_PROXIES``: only then are headers a proxy adds (``X-Forwarded-For``,
    ``X-Request-ID``) believed, since anyone else can send them too."""
    return _is_trusted(request.META.get("REMOTE_ADDR") or "")


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: the socket's peer, or, when that peer is a proxy named in
    ``TRUSTED_PROXIES``, the right-most ``X-Forwarded-For`` hop that is not itself trusted.

    Hops left of an untrusted one were written by whoever sent the request, so they prove
    nothing and are never used.
    """
    peer = request.META.get("REMOTE_ADDR") or None
    if not peer or not from_trusted_proxy(request):
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
