"""The access log's rows: canonical content, row hashes and MACs, signed digests, verification.

Rows written before seals existed form a hash chain (below); rows written since carry no link
(``prev_hash`` is empty) but a MAC, and the seals (``audit.sealer``) prove none is missing.

Like CloudTrail's log file integrity validation. Every ``AccessLog`` row stores
``row_hash = sha256(canonical(row))``, where the canonical content includes the row's
``sequence`` and ``prev_hash`` (the previous row's ``row_hash``; ``GENESIS_HASH`` for the first).
Changing a row breaks its hash; deleting or inserting one breaks the links. A hash chain alone
cannot stop someone who rewrites every later row consistently, or who appends forged rows at the
end, so a periodic task signs the head (``AccessLogDigest``) with an HMAC key the database does
not hold; ``chain_verify`` checks every digest against the rows.

The canonical form is versioned by ``CHAIN_FIELDS``: adding a column to the log must not add it
here for old rows (introduce a new version instead), or every old row would stop verifying.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Max

from audit.models import AccessLog, AccessLogDigest

GENESIS_HASH = "0" * 64

# The content fields covered by a row's hash, besides ``sequence`` and ``prev_hash``.
CHAIN_FIELDS = (
    "occurred_at",
    "action",
    "outcome",
    "reason_code",
    "identity",
    "realm_user_id",
    "worker_sid",
    "roles",
    "recording_sid",
    "rule_name",
    "client_ip",
    "user_agent",
    "request_id",
    "link_id",
    "bytes_served",
    "detail",
)

# HKDF ``info`` for the fallback signing key, so it is never the master key itself nor any other
# key derived from it.
_SIGNING_KEY_INFO = b"recordings-portal audit-log digest signing v1"


def timestamp_canonical(moment: datetime) -> str:
    """An aware datetime as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC (microseconds always shown)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("audit timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json_canonical(document: Mapping[str, Any]) -> bytes:
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def row_canonical(values: Mapping[str, Any] | AccessLog) -> bytes:
    """The canonical bytes of a log row: sorted-key compact JSON of ``CHAIN_FIELDS``,
    ``sequence`` and ``prev_hash``, with ``occurred_at`` in canonical UTC form.

    ``values`` is a mapping of field names (as ``access_log_append`` builds it) or anything with
    those attributes, such as an ``AccessLog`` row read back from the database.
    """
    if not isinstance(values, Mapping):
        values = {name: getattr(values, name) for name in (*CHAIN_FIELDS, "sequence", "prev_hash")}
    document = {name: values[name] for name in CHAIN_FIELDS}
    document["occurred_at"] = timestamp_canonical(values["occurred_at"])
    document["roles"] = list(values["roles"])
    document["sequence"] = values["sequence"]
    document["prev_hash"] = values["prev_hash"]
    return _json_canonical(document)


def row_hash_compute(values: Mapping[str, Any] | AccessLog) -> str:
    """Hex SHA-256 of :func:`row_canonical`."""
    return hashlib.sha256(row_canonical(values)).hexdigest()


# --- Row MACs ------------------------------------------------------------------------------


def _key_bytes(encoded: str, setting: str) -> bytes:
    text = encoded.strip()
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as exc:
        raise ImproperlyConfigured(f"{setting} is not URL-safe base64") from exc
    if len(key) < 32:
        raise ImproperlyConfigured(f"{setting} must be at least 32 random bytes")
    return key


def row_mac_keys() -> list[tuple[str, bytes]]:
    """The row-MAC keys as ``(key_id, key)`` from ``AUDIT_ROW_MAC_KEY``, the one that MACs new
    rows first. The database never holds them, so a row inserted around the portal (by SQL,
    by a DBA) cannot carry a valid MAC."""
    keys = [_key_bytes(value, "AUDIT_ROW_MAC_KEY") for value in settings.AUDIT_ROW_MAC_KEYS]
    if not keys:
        raise ImproperlyConfigured("No audit row MAC key: set AUDIT_ROW_MAC_KEY")
    return [(hashlib.sha256(b"audit-row-mac-key-id:" + key).hexdigest()[:16], key) for key in keys]


def row_mac_compute(row_hash: str, key: bytes) -> str:
    """Hex HMAC-SHA256 of a row's hash (its 32 bytes) under ``key``."""
    return hmac.new(key, bytes.fromhex(row_hash), hashlib.sha256).hexdigest()


# --- Digests -------------------------------------------------------------------------------


def signing_key_id(key: bytes) -> str:
    """Short public identifier of a signing key: stored with each digest, reveals nothing."""
    return hashlib.sha256(b"audit-signing-key-id:" + key).hexdigest()[:16]


def signing_keys() -> list[tuple[str, bytes]]:
    """The audit signing keys as ``(key_id, key)``, the one that signs new digests first.

    From ``settings.AUDIT_SIGNING_KEY`` (a string, or a list of strings to rotate: the first
    signs, all verify). Without it, derived by HKDF-SHA256 from each ``PORTAL_MASTER_KEYS`` entry
    with a dedicated info label, so the key is never ``SECRET_KEY`` and never the master key.
    """
    configured = getattr(settings, "AUDIT_SIGNING_KEY", None)
    if configured:
        secrets = [configured] if isinstance(configured, str | bytes) else list(configured)
        keys = [secret.encode() if isinstance(secret, str) else bytes(secret) for secret in secrets]
    else:
        keys = []
        for encoded in getattr(settings, "PORTAL_MASTER_KEYS", []):
            try:
                master = base64.urlsafe_b64decode(encoded.strip().encode())
            except ValueError as exc:
                raise ImproperlyConfigured("PORTAL_MASTER_KEY is not URL-safe base64") from exc
            hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SIGNING_KEY_INFO)
            keys.append(hkdf.derive(master))
    if not keys:
        raise ImproperlyConfigured("No audit signing key: set AUDIT_SIGNING_KEY")
    return [(signing_key_id(key), key) for key in keys]


def digest_message(
    *, created_at: datetime, head_sequence: int, head_hash: str, key_id: str
) -> bytes:
    """The canonical bytes a digest's HMAC covers."""
    return _json_canonical(
        {
            "created_at": timestamp_canonical(created_at),
            "head_hash": head_hash,
            "head_sequence": head_sequence,
            "key_id": key_id,
        }
    )


def digest_sign(
    *, created_at: datetime, head_sequence: int, head_hash: str, key_id: str, key: bytes
) -> str:
    """Hex HMAC-SHA256 of :func:`digest_message` under ``key``."""
    message = digest_message(
        created_at=created_at, head_sequence=head_sequence, head_hash=head_hash, key_id=key_id
    )
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def digest_signature_ok(digest: AccessLogDigest, keys: Mapping[str, bytes]) -> bool:
    """True when ``digest`` carries a valid signature by one of ``keys`` (by ``key_id``)."""
    key = keys.get(digest.key_id)
    if key is None:
        return False
    expected = digest_sign(
        created_at=digest.created_at,
        head_sequence=digest.head_sequence,
        head_hash=digest.head_hash,
        key_id=digest.key_id,
        key=key,
    )
    return hmac.compare_digest(expected, digest.signature)


# --- Verification --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of :func:`chain_verify`.

    ``count`` is the number of rows checked. When ``ok`` is false, ``problem`` is one of
    ``changed``, ``deleted``, ``inserted``, ``forged`` (no valid row MAC) or
    ``digest_mismatch``, ``first_bad_sequence`` the
    sequence where the chain first goes wrong (for a deletion, the first missing sequence), and
    ``bad_row_id``/``bad_row_time`` identify the row at which it was detected, when there is one.
    """

    ok: bool
    count: int
    first_bad_sequence: int | None = None
    problem: str | None = None
    message: str = ""
    last_digest_at: datetime | None = None
    digests_checked: int = 0
    bad_row_id: int | None = None
    bad_row_time: datetime | None = None


_ROW_FIELDS = ("id", "sequence", "prev_hash", "row_hash", "row_mac", "mac_key_id", *CHAIN_FIELDS)


def _describe(row: AccessLog) -> str:
    return f"row sequence {row.sequence} (id {row.id}, {timestamp_canonical(row.occurred_at)})"


def _link_problem(row: AccessLog, expected_prev: str) -> tuple[str, str]:
    """Classify a row whose ``prev_hash`` is not the previous row's hash."""
    linked = (
        AccessLog.objects.filter(row_hash=row.prev_hash, sequence__lt=row.sequence)
        .values_list("sequence", flat=True)
        .first()
    )
    if linked is not None:
        return (
            "inserted",
            f"{_describe(row)} links to sequence {linked}, not to sequence {row.sequence - 1}: "
            f"a row was inserted into the chain at or just before sequence {row.sequence}",
        )
    return (
        "deleted",
        f"{_describe(row)} links to a row that is no longer in the log "
        f"(prev_hash {row.prev_hash[:16]}…, expected {expected_prev[:16]}…): a row was deleted "
        f"just before sequence {row.sequence}",
    )


def _rows_checked(head_sequence: int, after_sequence: int) -> Iterator[AccessLog]:
    return (
        AccessLog.objects.filter(sequence__gt=after_sequence, sequence__lte=head_sequence)
        .order_by("sequence", "id")
        .only(*_ROW_FIELDS)
        .iterator(chunk_size=2000)
    )


def chain_verify(*, after_sequence: int = 0, through_sequence: int | None = None) -> VerifyResult:
    """Recompute the rows (all of them, or those after ``after_sequence``: an incremental run
    after a verified seal; up to ``through_sequence`` when given: one batch of a resumable full
    run, ``audit.verification``) and check every digest over them; stop at the first problem.

    Streams rows in sequence order (constant memory). For each row: a sequence below the expected
    one (a duplicate) means a row was inserted; above it, rows were deleted; a hash that does not
    match the content means the row was changed; a ``prev_hash`` that is not the previous row's
    hash means a row was inserted (it links to an earlier row still present) or deleted (it links
    to a row no longer present). Each digest must be correctly signed and its ``head_hash`` must
    equal the hash of the row at its ``head_sequence``; a digest pointing beyond the last row
    means rows were deleted from the end.

    Rows and digests appended while verification runs are not checked: the digests are taken as
    of the start, then the head, so every digest considered points at a committed row.
    """
    keys = dict(signing_keys())
    mac_keys = dict(row_mac_keys())
    last_digest_id = AccessLogDigest.objects.aggregate(last=Max("id"))["last"] or 0
    bounded = through_sequence is not None
    head_sequence = (
        through_sequence
        if through_sequence is not None
        else AccessLog.objects.aggregate(head=Max("sequence"))["head"] or 0
    )
    in_range = {"head_sequence__lte": head_sequence} if bounded else {}
    digests = (
        AccessLogDigest.objects.filter(
            id__lte=last_digest_id, head_sequence__gte=after_sequence, **in_range
        )
        .order_by("head_sequence", "id")
        .iterator(chunk_size=2000)
    )
    last_digest_at: datetime | None = None
    digests_checked = 0

    pending_digest = next(digests, None)
    expected_sequence = after_sequence + 1
    previous_hash = GENESIS_HASH
    macs_seen = False
    if after_sequence:
        # Start where the last verified seal ended: the row there is the link for a chained
        # row after it, and says whether MACs had begun.
        start = AccessLog.objects.filter(sequence=after_sequence).only("row_hash", "row_mac")
        anchor_row = start.first()
        previous_hash = anchor_row.row_hash if anchor_row else ""
        macs_seen = bool(anchor_row and anchor_row.row_mac)
        while pending_digest is not None and pending_digest.head_sequence == after_sequence:
            pending_digest = next(digests, None)  # verified with that row before
    count = 0

    def failure(
        problem: str, message: str, sequence: int, row: AccessLog | None = None
    ) -> VerifyResult:
        return VerifyResult(
            ok=False,
            count=count,
            first_bad_sequence=sequence,
            problem=problem,
            message=message,
            last_digest_at=last_digest_at,
            digests_checked=digests_checked,
            bad_row_id=row.id if row is not None else None,
            bad_row_time=row.occurred_at if row is not None else None,
        )

    def digest_failure(digest: AccessLogDigest) -> str | None:
        nonlocal last_digest_at, digests_checked
        if not digest_signature_ok(digest, keys):
            known = "an unknown key" if digest.key_id not in keys else f"key {digest.key_id}"
            return (
                f"digest id {digest.id} of {timestamp_canonical(digest.created_at)} "
                f"(head sequence {digest.head_sequence}) has a bad signature for {known}"
            )
        digests_checked += 1
        if last_digest_at is None or digest.created_at > last_digest_at:
            last_digest_at = digest.created_at
        return None

    # Digests of the empty log (sequence 0) point at the genesis hash.
    while pending_digest is not None and pending_digest.head_sequence == 0:
        problem = digest_failure(pending_digest)
        if problem:
            return failure("digest_mismatch", problem, 0)
        if pending_digest.head_hash != GENESIS_HASH:
            return failure(
                "digest_mismatch",
                f"digest id {pending_digest.id} of the empty log does not sign the genesis hash",
                0,
            )
        pending_digest = next(digests, None)

    for row in _rows_checked(head_sequence, after_sequence):
        if row.sequence < expected_sequence:
            return failure(
                "inserted",
                f"{_describe(row)} repeats or precedes sequence {expected_sequence - 1}: "
                "a row was inserted",
                row.sequence,
                row,
            )
        unchained = row.prev_hash == ""
        if row.sequence > expected_sequence and unchained:
            # Rows written since seals exist take numbers without a lock: a number taken by an
            # append that rolled back leaves a gap, which a seal states. The seals, not this
            # pass, account for every number (audit.sealer.seals_verify).
            expected_sequence = row.sequence
        if row.sequence > expected_sequence:
            if row.prev_hash == previous_hash and count:
                # It links straight to the previous row: nothing is missing, the row itself was
                # slipped in with a made-up sequence number.
                return failure(
                    "inserted",
                    f"{_describe(row)} links to sequence {expected_sequence - 1} but skips "
                    f"sequence {expected_sequence}: a row was inserted",
                    row.sequence,
                    row,
                )
            missing = (
                f"sequence {expected_sequence}"
                if row.sequence == expected_sequence + 1
                else f"sequences {expected_sequence} to {row.sequence - 1}"
            )
            return failure(
                "deleted",
                f"{missing} missing before {_describe(row)}: rows were deleted",
                expected_sequence,
                row,
            )
        if row_hash_compute(row) != row.row_hash:
            return failure(
                "changed",
                f"{_describe(row)} does not match its hash: the row was changed",
                row.sequence,
                row,
            )
        if not unchained and row.prev_hash != previous_hash:
            problem, message = _link_problem(row, previous_hash)
            return failure(problem, message, row.sequence, row)
        if row.row_mac or macs_seen or unchained:
            # Rows written before row MACs existed have none; every row after the first one
            # that has a MAC must carry a valid one, or it was written around the portal.
            mac_key = mac_keys.get(row.mac_key_id)
            if mac_key is None or not hmac.compare_digest(
                row_mac_compute(row.row_hash, mac_key), row.row_mac
            ):
                return failure(
                    "forged",
                    f"{_describe(row)} has no valid MAC: it was not written by the portal",
                    row.sequence,
                    row,
                )
            macs_seen = True
        count += 1
        while pending_digest is not None and pending_digest.head_sequence == row.sequence:
            problem = digest_failure(pending_digest)
            if problem:
                return failure("digest_mismatch", problem, row.sequence, row)
            if pending_digest.head_hash != row.row_hash:
                return failure(
                    "digest_mismatch",
                    f"digest id {pending_digest.id} of "
                    f"{timestamp_canonical(pending_digest.created_at)} signed another hash for "
                    f"{_describe(row)}: the chain was rewritten up to there",
                    row.sequence,
                    row,
                )
            pending_digest = next(digests, None)
        previous_hash = row.row_hash
        expected_sequence += 1

    if pending_digest is not None:
        problem = digest_failure(pending_digest)
        if problem:
            return failure("digest_mismatch", problem, pending_digest.head_sequence)
        ends = "the rows checked end" if bounded else "the log ends"
        return failure(
            "deleted",
            f"digest id {pending_digest.id} of {timestamp_canonical(pending_digest.created_at)} "
            f"covers sequence {pending_digest.head_sequence}, but {ends} at "
            f"{expected_sequence - 1}: rows were deleted" + ("" if bounded else " from the end"),
            expected_sequence,
        )
    return VerifyResult(
        ok=True,
        count=count,
        message=f"{count} rows, {digests_checked} digests verified",
        last_digest_at=last_digest_at,
        digests_checked=digests_checked,
    )
