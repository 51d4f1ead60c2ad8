"""Structured logging with a request id on every line and secrets scrubbed from every record.

The portal handles Flex tokens, Twilio auth tokens and API key secrets, presigned S3 URLs and
private keys; none of them may reach a log file, whoever logged them (our code, Django,
botocore, twilio). The filters here are attached to the handlers, so they see every record,
including those propagated from third-party loggers.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

REDACTED = "[REDACTED]"

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# Each pattern keeps a recognisable prefix (group 1) and hides what follows.
_SECRET_PATTERNS: tuple[re.Pattern[str], ...] = (
    # PEM blocks of any private key, whole.
    re.compile(
        r"(-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----)[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)"
    ),
    # Authorization header values, in any quoting: "Basic xxx", "Bearer xxx".
    re.compile(r"((?:authorization|proxy-authorization)['\"]?\s*[:=]\s*['\"]?)[^'\"\n,}]+", re.I),
    re.compile(r"(\b(?:Basic|Bearer)\s+)[A-Za-z0-9+/=._~-]{8,}"),
    # JWE / JWT compact serialisations (Flex tokens): base64url segments joined by dots.
    re.compile(r"()\beyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){2,4}"),
    # Presigned URL signatures and credentials (SigV4, SigV2, CloudFront).
    re.compile(
        r"((?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature|"
        r"AWSAccessKeyId|Key-Pair-Id|Policy)=)[^&\s'\"]+",
        re.I,
    ),
    # Our own media link tokens.
    re.compile(r"((?:[?&]|\b)(?:token|link|auth_token|access_token)=)[^&\s'\"]+", re.I),
    # "token": "..." style key/value pairs in dumped dicts and JSON.
    re.compile(
        r"(['\"]?(?:token|auth_token|authtoken|password|secret|encrypted_cek|encryption_cek|"
        r"private_key|credentials|aws_secret_access_key)['\"]?\s*[:=]\s*['\"]?)[^'\"\s,}&]+",
        re.I,
    ),
)

_literal_secrets: tuple[str, ...] = ()


def register_secret(value: str | None) -> None:
    """Add a literal secret (such as the configured Twilio auth token) to scrub everywhere.

    Pattern matching cannot recognise a bare 32-hex auth token reliably, so the ones the
    portal knows about are scrubbed by value.
    """
    global _literal_secrets
    if value and len(value) >= 8 and value not in _literal_secrets:
        _literal_secrets = (*_literal_secrets, value)


def redact(text: str) -> str:
    """Return ``text`` with every known kind of secret replaced by ``[REDACTED]``."""
    for secret in _literal_secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "request_id"}
)


class RedactingFilter(logging.Filter):
    """Scrub secrets from a record's message, arguments, extras and traceback text."""

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        for value in (
            settings.TWILIO_AUTH_TOKEN,
            settings.TWILIO_API_KEY_SECRET,
            settings.SECRET_KEY,
            settings.AWS_SECRET_ACCESS_KEY,
            *settings.PORTAL_MASTER_KEYS,
            *settings.AUDIT_SIGNING_KEY,
            *settings.AUDIT_SEAL_SIGNING_KEYS,
            *settings.AUDIT_ROW_MAC_KEYS,
        ):
            register_secret(value)

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drops it."""
        try:
            message = record.getMessage()
        except Exception:  # a malformed format string must not lose the record
            message = f"{record.msg!r} {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        # The traceback is kept only as redacted text: formatters must not render it again.
        record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                record.__dict__[key] = _redact_value(value)
        return True


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact(str(value))


class RequestIdFilter(logging.Filter):
    """Stamp the current request id (or ``-`` outside a request) on every record.

    ``django.request`` logs an error answer after every middleware has returned, so outside
    the request's context; its records carry the request itself, whose id is taken instead.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Add ``record.request_id``; never drops the record."""
        if not getattr(record, "request_id", None):
            request = getattr(record, "request", None)
            record.request_id = getattr(request, "request_id", None) or request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as a single line of JSON."""
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                payload[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exc"] = record.exc_text
        if record.stack_info:
            payload["stack"] = record.stack_info
        return json.dumps(payload, default=str, ensure_ascii=False)
