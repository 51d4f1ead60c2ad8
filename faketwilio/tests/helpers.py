"""Shared by the fake Twilio's tests: the accounts they impersonate, a public key, and small
helpers to build sids and URLs and to call token validation.

The fixtures (``server``, ``fake``, ``client``) are in this folder's ``conftest.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twilio.http.http_client import TwilioHttpClient

from faketwilio import FakeTwilio

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "fake-auth-token-0123456789abcdef"
SUB_SID = "AC" + "2" * 32
SUB_TOKEN = "sub-auth-token"
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def _rsa_public_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


PUBLIC_PEM = _rsa_public_pem()


class RewritingHttpClient(TwilioHttpClient):
    """twilio's HTTP client, sending ``https://{product}.twilio.com{path}`` to the fake."""

    def __init__(self, base_url: str) -> None:
        super().__init__(timeout=5)
        self.base_url = base_url

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        """Rewrite the URL as ``TWILIO_API_OVERRIDE`` does, then send it."""
        parts = urlsplit(url)
        hostname = parts.hostname or ""
        if hostname.endswith(".twilio.com"):
            product = hostname.split(".", 1)[0]
            base = urlsplit(self.base_url)
            url = urlunsplit((base.scheme, base.netloc, f"/{product}{parts.path}", parts.query, ""))
        return super().request(method, url, *args, **kwargs)


def rec_sid(n: int) -> str:
    """A recording sid made from ``n`` (sorts like ``n``)."""
    return f"RE{n:032x}"


def media_url(fake: FakeTwilio, sid: str, ext: str = ".wav", account: str = ACCOUNT_SID) -> str:
    """The fake's URL of a recording's media."""
    return f"{fake.url}/api/2010-04-01/Accounts/{account}/Recordings/{sid}{ext}"


def validate(
    fake: FakeTwilio,
    token: str | None,
    *,
    auth: tuple[str, str] | None = (ACCOUNT_SID, AUTH_TOKEN),
    body: dict[str, Any] | None = None,
) -> requests.Response:
    """POST a Flex token validation to the fake (``body`` replaces ``{"token": token}``)."""
    return requests.post(
        f"{fake.url}/iam/v1/Accounts/{ACCOUNT_SID}/Tokens/validate",
        json={"token": token} if body is None else body,
        headers={"Cache-Control": "no-cache"},
        auth=auth,
        timeout=5,
    )
