"""Custody of the RSA private keys that open Twilio's encrypted recordings.

Keys come in through the ``generate_keypair`` and ``import_private_key`` commands and are stored
sealed under ``PORTAL_MASTER_KEY`` (``portal.sealing``), bound to the key's fingerprint. A key is
chosen by the ``public_key_sid`` Twilio reports for each recording, never as "the current key":
Twilio falls back to another registered key when the configured one is invalid (error 16107),
so several keys live side by side and rotation is adding one.

Opened private keys and unwrapped content keys are cached in this process's memory only, for a
few minutes, in small bounded caches (:class:`SecretCache`); never in Redis, the database or a
log. No function here logs or raises an error that contains key material.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from datetime import timedelta
from typing import Generic, TypeVar

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from portal.sealing import SealingError, current_master_key_id, seal, sealed_key_id, unseal
from recordings.integrations import twilio_api
from recordings.models import PrivateKey, Recording, TwilioSubaccount

logger = logging.getLogger(__name__)

MIN_KEY_BITS = 2048
MAX_KEY_BITS = 16384
DEFAULT_KEY_BITS = 4096
PUBLIC_KEY_SID = re.compile(r"^CR[0-9a-f]{32}$")
FRIENDLY_NAME_MAX = 64  # Twilio's limit, and the model's
LAST_USED_RESOLUTION = timedelta(minutes=1)

_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
_PRIVATE_LABELS = (b"RSA PRIVATE KEY", b"PRIVATE KEY")  # PKCS#1, PKCS#8


class KeyCustodyError(Exception):
    """Base class: a private key cannot be stored, found or opened as asked."""


class KeyImportError(KeyCustodyError, ValueError):
    """The offered key is not an unencrypted RSA private key of an accepted size, or the
    portal already holds it (or another key under the same SID)."""


class KeyNotFound(KeyCustodyError, LookupError):
    """The portal holds no private key for that public key SID."""


class KeyUnavailable(KeyCustodyError):
    """A held private key cannot be opened: the master key that sealed it is not configured,
    or its sealed text is damaged."""


class KeyRegistrationFailed(KeyCustodyError):
    """Twilio did not register the public key; nothing was stored."""


class MasterKeyRotationError(KeyCustodyError):
    """A secret could not be resealed under the current master key; nothing was changed."""


# ---------------------------------------------------------------------------------------------
# Process-memory caches for secrets
# ---------------------------------------------------------------------------------------------

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SecretCache(Generic[K, V]):
    """A small thread-safe LRU cache whose entries expire ``ttl`` seconds after being stored.

    Holds secrets (opened private keys, content keys) in this process's memory only, so that a
    recording seeked many times costs one RSA unwrap rather than one per range request. Bounded
    in size and age, so a key deleted in the admin stops working everywhere within ``ttl``.
    """

    def __init__(self, *, max_entries: int, ttl: float) -> None:
        self.max_entries = max_entries
        self.ttl = ttl
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The value stored under ``key``, or None if absent or expired."""
        now = time.monotonic()
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if item[0] <= now:
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return item[1]

    def put(self, key: K, value: V) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds, evicting the least recently used."""
        with self._lock:
            self._items[key] = (time.monotonic() + self.ttl, value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def discard(self, predicate: Callable[[K], bool]) -> None:
        """Forget every entry whose key satisfies ``predicate``."""
        with self._lock:
            for key in [key for key in self._items if predicate(key)]:
                del self._items[key]

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


# (PrivateKey pk, SHA-256 of its sealed text) -> opened key. Keyed by the sealed text so a
# resealed or replaced row is never answered from a stale entry.
_opened_keys: SecretCache[tuple[int, str], rsa.RSAPrivateKey] = SecretCache(max_entries=32, ttl=300)
_last_touched: dict[int, float] = {}
_last_touched_lock = threading.Lock()


def key_caches_clear(*, private_key_id: int | None = None) -> None:
    """Drop opened private keys from this process's cache (all, or one key's), e.g. after a
    key was deleted; content keys are dropped by ``recordings.media.encrypted``."""
    if private_key_id is None:
        _opened_keys.clear()
    else:
        _opened_keys.discard(lambda key: key[0] == private_key_id)


# ---------------------------------------------------------------------------------------------
# Reading and describing keys
# ---------------------------------------------------------------------------------------------


def public_key_fingerprint(public_key: rsa.RSAPublicKey) -> str:
    """SHA-256 (hex) of the public key's SubjectPublicKeyInfo DER: the key's stable name, the
    same as ``openssl pkey -pubin -outform DER | sha256sum``."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def public_key_pem(public_key: rsa.RSAPublicKey) -> str:
    """The ``-----BEGIN PUBLIC KEY-----`` text Twilio's Credentials API takes."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def _purpose(fingerprint: str) -> str:
    # Bound to the fingerprint, not the SID: a key generated without --register gets its SID
    # later without being resealed, and a sealed blob copied to another row does not open.
    return f"private-key:{fingerprint}"


def _load_private_pem(pem: bytes) -> rsa.RSAPrivateKey:
    """Parse an unencrypted PKCS#1 or PKCS#8 RSA private key, refusing everything else with a
    message that says what was offered and what to do (never echoing the input)."""
    if not isinstance(pem, bytes | bytearray):
        raise KeyImportError("the key must be given as bytes of PEM text")
    labels = _PEM_BEGIN.findall(pem)
    if not labels:
        raise KeyImportError(
            "this is not a PEM file (no '-----BEGIN ...-----' line); a DER key can be converted "
            "with `openssl pkey -inform DER -in key.der -out key.pem`"
        )
    if b"ENCRYPTED PRIVATE KEY" in labels or b"Proc-Type: 4,ENCRYPTED" in pem:
        raise KeyImportError(
            "the private key is encrypted with a passphrase; decrypt it first with "
            "`openssl pkey -in key.pem -out plain.pem` (the portal seals it at rest itself)"
        )
    private = [label for label in labels if label in _PRIVATE_LABELS]
    if not private:
        other = [label for label in labels if label.endswith(b"PRIVATE KEY")]
        if other:
            kind = other[0].decode("ascii").removesuffix(" PRIVATE KEY")
            raise KeyImportError(
                f"this is a {kind} private key; Twilio encrypts recordings for RSA keys only "
                "(PEM 'RSA PRIVATE KEY' or 'PRIVATE KEY')"
            )
        raise KeyImportError(
            "this file holds no private key (only "
            + ", ".join(sorted({label.decode("ascii") for label in labels}))
            + "); the portal needs the private half of the key pair"
        )
    if len(private) > 1:
        raise KeyImportError(f"the file holds {len(private)} private keys; import one at a time")
    label = private[0]
    start = pem.index(b"-----BEGIN " + label + b"-----")
    end_marker = b"-----END " + label + b"-----"
    end = pem.find(end_marker, start)
    if end < 0:
        raise KeyImportError("the PEM block has no END line: the file is truncated")
    block = bytes(pem[start : end + len(end_marker)])
    try:
        key = serialization.load_pem_private_key(block, password=None)
    except TypeError:
        raise KeyImportError(
            "the private key is encrypted with a passphrase; decrypt it first with "
            "`openssl pkey -in key.pem -out plain.pem`"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyImportError(
            "the private key could not be read: the PEM text is damaged or not a valid key"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyImportError(
            f"this is a {_algorithm_name(key)} private key; Twilio encrypts recordings for RSA "
            "keys only"
        )
    _check_bits(key.key_size, what="the key is")
    return key


def _algorithm_name(key: object) -> str:
    name = type(key).__name__.removeprefix("_").replace("PrivateKey", "")
    return {"EllipticCurve": "EC"}.get(name, name or "non-RSA")


def _check_bits(bits: int, *, what: str) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise KeyImportError("the key size must be a whole number of bits")
    if bits < MIN_KEY_BITS:
        raise KeyImportError(f"{what} {bits}-bit; the portal requires RSA of at least 2048 bits")
    if bits > MAX_KEY_BITS:
        raise KeyImportError(f"{what} {bits}-bit; the portal accepts at most {MAX_KEY_BITS} bits")


def _check_sid(public_key_sid: str | None) -> str | None:
    if public_key_sid in (None, ""):
        return None
    if not isinstance(public_key_sid, str) or not PUBLIC_KEY_SID.match(public_key_sid):
        raise KeyImportError(
            f"{str(public_key_sid)[:40]!r} is not a public key SID (CR followed by 32 lowercase "
            "hex digits, as Twilio's console and Credentials API show it)"
        )
    return public_key_sid


def _check_friendly_name(friendly_name: str) -> str:
    friendly_name = (friendly_name or "").strip()
    if len(friendly_name) > FRIENDLY_NAME_MAX:
        raise KeyImportError(f"the friendly name is longer than {FRIENDLY_NAME_MAX} characters")
    return friendly_name


# ---------------------------------------------------------------------------------------------
# Services
# ---------------------------------------------------------------------------------------------


def _store(key: rsa.RSAPrivateKey, *, public_key_sid: str | None, friendly_name: str) -> PrivateKey:
    """Write a new key row (inside the caller's transaction), refusing duplicates clearly."""
    public = key.public_key()
    fingerprint = public_key_fingerprint(public)
    existing = PrivateKey.objects.filter(fingerprint=fingerprint).first()
    if existing is not None:
        raise KeyImportError(f"the portal already holds this key ({existing}, {fingerprint})")
    if public_key_sid and PrivateKey.objects.filter(public_key_sid=public_key_sid).exists():
        raise KeyImportError(
            f"the portal already holds a different private key for {public_key_sid}"
        )
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    sealed = seal(der, purpose=_purpose(fingerprint))
    try:
        with transaction.atomic():
            stored = PrivateKey.objects.create(
                public_key_sid=public_key_sid,
                friendly_name=friendly_name,
                fingerprint=fingerprint,
                key_size=key.key_size,
                public_key_pem=public_key_pem(public),
                sealed_private_key=sealed,
                master_key_id=sealed_key_id(sealed),
            )
    except IntegrityError:  # the same key or SID, stored by a concurrent import just now
        raise KeyImportError(
            "the portal already holds this key or a key for this SID (imported concurrently)"
        ) from None
    _clear_missing_key_problems(public_key_sid)
    return stored


@transaction.atomic
def private_key_import(
    *, pem: bytes, public_key_sid: str | None, friendly_name: str = ""
) -> PrivateKey:
    """Store an RSA private key (PEM, PKCS#1 or PKCS#8, unencrypted, 2048-16384 bits) sealed
    under the master key, under the ``CR…`` SID Twilio gave its public half.

    Raises :class:`KeyImportError` for anything else (EC or other non-RSA keys, public keys,
    passphrase-protected PEM, garbage, keys under 2048 bits), a malformed SID, or a key or SID
    the portal already holds.
    """
    sid = _check_sid(public_key_sid)
    name = _check_friendly_name(friendly_name)
    key = _load_private_pem(pem)
    return _store(key, public_key_sid=sid, friendly_name=name)


def private_key_generate(
    *, bits: int = DEFAULT_KEY_BITS, register: bool = False, friendly_name: str = ""
) -> PrivateKey:
    """Make a new RSA key pair (e = 65537) and store the private key sealed.

    With ``register``, the public key is uploaded through Twilio's Credentials API first and the
    returned ``CR…`` SID stored with it. The row is written only after Twilio answered, so a
    Twilio failure (:class:`KeyRegistrationFailed`) leaves nothing behind; if storing fails
    after Twilio registered the key, the registration is withdrawn again, because Twilio could
    otherwise fall back to encrypting recordings for a key nobody holds (error 16107).
    """
    _check_bits(bits, what="the requested key is")
    name = _check_friendly_name(friendly_name)
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    sid: str | None = None
    if register:
        try:
            sid = twilio_api.public_key_create(
                pem=public_key_pem(key.public_key()), friendly_name=name
            )
        except twilio_api.TwilioError as exc:
            raise KeyRegistrationFailed(
                f"Twilio did not register the public key ({exc}); nothing was stored"
            ) from None
        if not PUBLIC_KEY_SID.match(sid or ""):
            _withdraw_registration(sid)
            raise KeyRegistrationFailed(
                f"Twilio answered an unexpected SID {str(sid)[:40]!r}; nothing was stored"
            )
    try:
        with transaction.atomic():
            return _store(key, public_key_sid=sid, friendly_name=name)
    except BaseException:
        if sid:
            _withdraw_registration(sid)
        raise


def _withdraw_registration(sid: str | None) -> None:
    if not sid:
        return
    try:
        twilio_api.public_key_delete(sid=sid)
    except twilio_api.TwilioError as exc:
        logger.error(
            "public key %s is registered at Twilio but its private key was not stored, and "
            "deleting the registration failed (%s): delete it in the Twilio console",
            sid,
            exc,
        )


@transaction.atomic
def private_key_assign_sid(*, fingerprint: str, public_key_sid: str) -> PrivateKey:
    """Give a key generated without ``--register`` the ``CR…`` SID Twilio assigned when its
    public key was uploaded by hand. A key that already has a SID keeps it."""
    sid = _check_sid(public_key_sid)
    if sid is None:
        raise KeyImportError("a public key SID is required")
    key = PrivateKey.objects.select_for_update().filter(fingerprint=fingerprint.lower()).first()
    if key is None:
        raise KeyNotFound(f"the portal holds no key with fingerprint {fingerprint[:64]!r}")
    if key.public_key_sid:
        if key.public_key_sid == sid:
            return key
        raise KeyImportError(f"this key is already registered as {key.public_key_sid}")
    if PrivateKey.objects.filter(public_key_sid=sid).exists():
        raise KeyImportError(f"the portal already holds a different private key for {sid}")
    key.public_key_sid = sid
    key.save(update_fields=["public_key_sid"])
    _clear_missing_key_problems(sid)
    return key


def _open(row_id: int, fingerprint: str, sealed: str) -> rsa.RSAPrivateKey:
    """The opened private key of a row, from the process cache or by unsealing it."""
    cache_key = (row_id, hashlib.sha256(sealed.encode()).hexdigest())
    key = _opened_keys.get(cache_key)
    if key is not None:
        return key
    try:
        der = unseal(sealed, purpose=_purpose(fingerprint))
    except SealingError as exc:
        raise KeyUnavailable(f"private key {fingerprint[:16]}… cannot be opened: {exc}") from None
    loaded = serialization.load_der_private_key(der, password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey):  # pragma: no cover - only RSA is ever sealed
        raise KeyUnavailable(f"private key {fingerprint[:16]}… is not an RSA key")
    _opened_keys.put(cache_key, loaded)
    return loaded


def _touch(row_id: int) -> None:
    """Record that a key was used, at most once a minute per key (per process, and guarded in
    the database so several processes do not all write)."""
    now_mono = time.monotonic()
    resolution = LAST_USED_RESOLUTION.total_seconds()
    with _last_touched_lock:
        if now_mono - _last_touched.get(row_id, -resolution) < resolution:
            return
        _last_touched[row_id] = now_mono
    now = timezone.now()
    PrivateKey.objects.filter(pk=row_id).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    ).update(last_used_at=now)


def private_key_for(public_key_sid: str) -> rsa.RSAPrivateKey:
    """The private key for the public key Twilio names in a recording's encryption details.

    Selected by SID only, never by "the current key". Raises :class:`KeyNotFound` when the
    portal holds no key for that SID and :class:`KeyUnavailable` when it cannot be opened (its
    master key is not configured). Updates ``last_used_at``, at most once a minute.
    """
    row = (
        PrivateKey.objects.filter(public_key_sid=public_key_sid)
        .values_list("pk", "fingerprint", "sealed_private_key")
        .first()
        if public_key_sid
        else None
    )
    if row is None:
        raise KeyNotFound(
            f"the portal holds no private key for public key {str(public_key_sid)[:40]!r}: "
            "import it with `manage.py import_private_key --public-key-sid … FILE`"
        )
    key = _open(*row)
    _touch(row[0])
    return key


def private_key_held(public_key_sid: str) -> bool:
    """True when the portal holds a private key for ``public_key_sid`` (whether or not it can
    be opened right now); one indexed query, nothing unsealed."""
    return (
        bool(public_key_sid) and PrivateKey.objects.filter(public_key_sid=public_key_sid).exists()
    )


MISSING_KEY_PROBLEM = "encrypted for a public key whose private key the portal does not hold"


def missing_key_problem(public_key_sid: str) -> str:
    """What to tell an officer about a recording encrypted for ``public_key_sid`` when the
    portal holds no private key for it: it cannot be played, and how to fix that."""
    if not public_key_sid:
        return f"{MISSING_KEY_PROBLEM}: Twilio's encryption details name no public key SID"
    return (
        f"{MISSING_KEY_PROBLEM} ({public_key_sid}): it cannot be played until that key is "
        f"imported with `manage.py import_private_key --public-key-sid {public_key_sid} FILE`"
    )


def _clear_missing_key_problems(public_key_sid: str | None) -> None:
    """Once the portal holds the key for ``public_key_sid``, its recordings' sync errors that
    said it was missing no longer hold."""
    if public_key_sid:
        Recording.objects.filter(
            encryption_public_key_sid=public_key_sid,
            sync_error__startswith=MISSING_KEY_PROBLEM,
        ).update(sync_error="", updated_at=timezone.now())


def private_keys_held() -> list[tuple[int, rsa.RSAPrivateKey]]:
    """Every held private key that can be opened, newest first, as ``(row id, key)``.

    For media whose envelope does not name its key (Twilio Video's S3 envelope): the caller
    tries them in turn. Keys that cannot be opened are skipped (and logged without detail).
    """
    rows = PrivateKey.objects.order_by("-created_at", "-pk").values_list(
        "pk", "fingerprint", "sealed_private_key"
    )
    held: list[tuple[int, rsa.RSAPrivateKey]] = []
    for row_id, fingerprint, sealed in rows:
        try:
            held.append((row_id, _open(row_id, fingerprint, sealed)))
        except KeyUnavailable:
            logger.warning("private key %s… cannot be opened; skipped", fingerprint[:16])
    return held


def private_key_mark_used(*, private_key_id: int) -> None:
    """Record that a key opened something (``last_used_at``, at most once a minute)."""
    _touch(private_key_id)


@transaction.atomic
def master_key_rotate() -> int:
    """Reseal every secret not sealed under the current master key; returns how many.

    Covers the private keys and the subaccount auth tokens (the other secrets sealed under
    ``PORTAL_MASTER_KEY``). Runs in one transaction with the rows locked: if any secret cannot
    be opened (its master key is no longer configured), :class:`MasterKeyRotationError` names
    it and nothing is changed. Afterwards the old master key can be removed from the list.
    """
    current = current_master_key_id()
    resealed = 0
    for key in PrivateKey.objects.select_for_update().order_by("pk"):
        if key.master_key_id == current and sealed_key_id(key.sealed_private_key) == current:
            continue
        purpose = _purpose(key.fingerprint)
        try:
            der = unseal(key.sealed_private_key, purpose=purpose)
        except SealingError as exc:
            raise MasterKeyRotationError(
                f"private key {key} ({key.fingerprint[:16]}…) cannot be opened: {exc}; "
                "nothing was resealed"
            ) from None
        key.sealed_private_key = seal(der, purpose=purpose)
        key.master_key_id = sealed_key_id(key.sealed_private_key)
        key.save(update_fields=["sealed_private_key", "master_key_id"])
        resealed += 1
    for account in TwilioSubaccount.objects.select_for_update().exclude(sealed_auth_token=""):
        if sealed_key_id(account.sealed_auth_token) == current:
            continue
        purpose = f"subaccount-token:{account.sid}"
        try:
            token = unseal(account.sealed_auth_token, purpose=purpose)
        except SealingError as exc:
            raise MasterKeyRotationError(
                f"the auth token of subaccount {account.sid} cannot be opened: {exc}; "
                "nothing was resealed"
            ) from None
        account.sealed_auth_token = seal(token, purpose=purpose)
        account.save(update_fields=["sealed_auth_token"])
        resealed += 1
    # Entries are keyed by the sealed text, so the old ones would only linger unused.
    _opened_keys.clear()
    return resealed
