"""Secrets at rest: seal and open small secrets under ``PORTAL_MASTER_KEY``.

Used for private keys and Twilio subaccount auth tokens. AES-256-GCM with a fresh 96-bit nonce;
the sealed text names the id of the master key that sealed it, so a master key can be rotated:
list the new key first in ``PORTAL_MASTER_KEY`` (comma-separated), keep the old one after it until
every secret has been resealed.
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

_VERSION = "v1"


class SealingError(Exception):
    """A sealed secret cannot be opened: unknown master key id, corrupt or tampered text."""


def _master_keys() -> dict[str, bytes]:
    keys: dict[str, bytes] = {}
    for encoded in settings.PORTAL_MASTER_KEYS:
        raw = base64.urlsafe_b64decode(encoded.strip().encode())
        if len(raw) != 32:
            raise SealingError("PORTAL_MASTER_KEY must be 32 bytes in URL-safe base64")
        keys[master_key_id(raw)] = raw
    return keys


def master_key_id(raw_key: bytes) -> str:
    """Short public identifier of a master key: safe to store and show, reveals nothing."""
    return hashlib.sha256(b"portal-master-key-id:" + raw_key).hexdigest()[:12]


def current_master_key_id() -> str:
    """Id of the master key that seals new secrets (the first one configured)."""
    return next(iter(_master_keys()))


def seal(plaintext: bytes, *, purpose: str) -> str:
    """Encrypt ``plaintext`` under the current master key, bound to ``purpose``.

    ``purpose`` (e.g. ``"private-key:CR…"``) is authenticated but not stored: a sealed value
    copied into another row or field does not open there.
    """
    key_id, key = next(iter(_master_keys().items()))
    nonce = os.urandom(12)
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, purpose.encode())
    body = base64.urlsafe_b64encode(nonce + ciphertext).decode()
    return f"{_VERSION}:{key_id}:{body}"


def unseal(sealed: str, *, purpose: str) -> bytes:
    """Open a value made by :func:`seal` with the same ``purpose``."""
    try:
        version, key_id, body = sealed.split(":", 2)
        raw = base64.urlsafe_b64decode(body.encode())
    except ValueError as exc:
        raise SealingError("sealed secret is malformed") from exc
    if version != _VERSION:
        raise SealingError(f"unknown sealing version {version!r}")
    key = _master_keys().get(key_id)
    if key is None:
        raise SealingError(f"master key {key_id} is not configured in PORTAL_MASTER_KEY")
    try:
        return AESGCM(key).decrypt(raw[:12], raw[12:], purpose.encode())
    except InvalidTag as exc:
        raise SealingError(
            "sealed secret failed authentication (tampered or wrong purpose)"
        ) from exc


def sealed_key_id(sealed: str) -> str:
    """The master key id a sealed value was made with (to find values that need resealing)."""
    return sealed.split(":", 2)[1]
