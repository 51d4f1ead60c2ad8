"""Who is asking: the Flex token from the player's ``Authorization`` header, validated by
Twilio IAM, cached so a player's repeated requests cost one Twilio call.

Cache keys are a hash of the token, never the token. Valid answers are kept until
``min(expiration, 5 min)``, invalid ones for 30 s so a flood of bad tokens does not become a
flood of calls to Twilio.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from django.core.cache import cache
from django.utils import timezone

from audit.decisions import Caller
from recordings.integrations import twilio_api

logger = logging.getLogger(__name__)

VALID_CACHE_SECONDS = 300
INVALID_CACHE_SECONDS = 30
IAM_TIMEOUT_SECONDS = 3.0
_MAX_TOKEN_LENGTH = 16 * 1024
_WHITESPACE = re.compile(r"\s")


class FlexAuthError(Exception):
    """The caller is not authenticated; ``code`` is the machine reason for the audit row."""

    def __init__(self, code: str, detail: str, *, twilio_code: int | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.twilio_code = twilio_code


@dataclass(frozen=True)
class FlexIdentity:
    """A validated Flex user, as Twilio IAM described them."""

    identity: str
    realm_user_id: str
    worker_sid: str
    roles: tuple[str, ...]
    expires_at: datetime | None

    def as_caller(self) -> Caller:
        """The subject of an authorization decision."""
        return Caller(
            identity=self.identity,
            realm_user_id=self.realm_user_id,
            worker_sid=self.worker_sid,
            roles=self.roles,
        )


def token_from_authorization(header: str | None) -> str:
    """The Flex token in ``Basic base64("token:" + jwe)`` (split on the first colon only:
    a token may contain colons) or ``Bearer jwe``; raises FlexAuthError when absent or
    malformed."""
    if not header:
        raise FlexAuthError(
            "missing_token", "An Authorization header with the Flex token is required."
        )
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        token = value
    elif scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise FlexAuthError(
                "malformed_authorization", "The Basic credentials are not base64."
            ) from None
        _user, colon, token = decoded.partition(":")
        if not colon:
            raise FlexAuthError(
                "malformed_authorization", 'Basic credentials must be "token:<Flex token>".'
            )
    else:
        raise FlexAuthError("malformed_authorization", "Use Basic or Bearer authorization.")
    if not token or len(token) > _MAX_TOKEN_LENGTH or _WHITESPACE.search(token):
        raise FlexAuthError("malformed_authorization", "The Flex token is empty or malformed.")
    return token


def _cache_key(token: str) -> str:
    return "flex-token:" + hashlib.sha256(token.encode()).hexdigest()


def _parse_expiration(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def flex_token_validate(token: str) -> FlexIdentity:
    """The Flex user a token belongs to, asking Twilio IAM only when the cache has no answer.

    Raises FlexAuthError (invalid or expired token) or ``twilio_api.TwilioUnavailable``
    (Twilio unreachable or slow: the caller must fail closed).
    """
    key = _cache_key(token)
    cached = _cache_get(key)
    if cached is None:
        answer = twilio_api.iam_validate_token(token, timeout=IAM_TIMEOUT_SECONDS)
        cached = _remember(key, answer)
    if "invalid" in cached:
        raise FlexAuthError(
            cached["invalid"], cached["message"], twilio_code=cached.get("twilio_code")
        )
    expires_at = _parse_expiration(cached.get("expiration"))
    if expires_at is not None and expires_at <= timezone.now():
        raise FlexAuthError("expired_token", "The Flex token has expired.")
    return FlexIdentity(
        identity=cached["identity"],
        realm_user_id=cached["realm_user_id"],
        worker_sid=cached["worker_sid"],
        roles=tuple(cached["roles"]),
        expires_at=expires_at,
    )


def _remember(key: str, answer: dict) -> dict:
    """Cache Twilio's answer in the shape ``flex_token_validate`` reads, and return it."""
    if answer.get("valid") is not True:
        twilio_code = answer.get("code") if isinstance(answer.get("code"), int) else None
        reason = "expired_token" if twilio_code == 20104 else "invalid_token"
        entry = {
            "invalid": reason,
            "message": "The Flex token is not valid."
            if reason == "invalid_token"
            else "The Flex token has expired.",
            "twilio_code": twilio_code,
        }
        _cache_set(key, entry, INVALID_CACHE_SECONDS)
        return entry
    roles = answer.get("roles") or []
    entry = {
        "identity": str(answer.get("identity") or ""),
        "realm_user_id": str(answer.get("realm_user_id") or ""),
        "worker_sid": str(answer.get("worker_sid") or ""),
        "roles": [str(role) for role in roles] if isinstance(roles, list) else [],
        "expiration": answer.get("expiration"),
    }
    expires_at = _parse_expiration(entry["expiration"])
    seconds = VALID_CACHE_SECONDS
    if expires_at is not None:
        seconds = min(seconds, int((expires_at - timezone.now()).total_seconds()))
    if seconds > 0:
        _cache_set(key, entry, seconds)
    return entry


# The cache only saves calls to Twilio: when Redis is down every request asks Twilio instead,
# and the player still gets an answer (and the access log its row).
def _cache_get(key: str) -> dict | None:
    try:
        return cache.get(key)
    except Exception as exc:  # redis-py raises several kinds; any means "no cached answer"
        logger.warning("token cache unavailable (%s): asking Twilio", type(exc).__name__)
        return None


def _cache_set(key: str, entry: dict, seconds: int) -> None:
    try:
        cache.set(key, entry, seconds)
    except Exception as exc:
        logger.warning("token cache unavailable (%s): answer not cached", type(exc).__name__)
