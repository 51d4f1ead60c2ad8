"""Sealing the access log and checking the seals: the database side of ``audit.evidence``.

``seal_pending`` takes the committed rows after the last seal, in sequence order, and writes one
signed seal over them (``AuditSeal``); ``anchors_publish`` then writes every seal not yet
anchored to the anchor store (``audit.anchors``). A seal is written in its own transaction:
two sealers at once cannot both seal the same rows (seal numbers and sequence ranges are
unique), and a sealer killed mid-batch leaves nothing behind but rows the next run seals. When
the anchor store is down the seals wait in the database and are anchored on a later run;
verification meanwhile says which seals are not yet anchored.

``seals_verify`` checks the seals against the rows and the anchors (see its docstring); the row
contents, hash links, row MACs and the older HMAC digests are ``audit.chain.chain_verify``'s.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import evidence, merkle
from audit.anchors import AnchorConflict, AnchorStore, AnchorUnavailable, anchor_store
from audit.chain import timestamp_canonical
from audit.models import AccessLog, AuditSeal, SealAnchorSwitch

logger = logging.getLogger(__name__)

SEAL_MAX_ROWS = 10_000
"""Rows per seal at most, so one seal's Merkle tree and transaction stay small."""

GAP_GRACE = timedelta(seconds=10)
"""How long a number below a committed row may stay unused before the seal states it missing."""


# --- Keys ----------------------------------------------------------------------------------


def seal_signing_keys() -> list[Ed25519PrivateKey]:
    """The seal-signing keys from ``AUDIT_SEAL_SIGNING_KEY``, the one that signs first."""
    try:
        keys = [evidence.signing_key_from_seed(v) for v in settings.AUDIT_SEAL_SIGNING_KEYS]
    except ValueError as exc:
        raise ImproperlyConfigured(
            "AUDIT_SEAL_SIGNING_KEY must be URL-safe base64 of a 32-byte Ed25519 seed"
        ) from exc
    if not keys:
        raise ImproperlyConfigured("No audit seal signing key: set AUDIT_SEAL_SIGNING_KEY")
    return keys


def seal_public_keys() -> dict[str, Ed25519PublicKey]:
    """The public halves of every configured seal key, by fingerprint (all of them verify)."""
    public = [key.public_key() for key in seal_signing_keys()]
    return {evidence.public_key_fingerprint(key): key for key in public}


# --- Sealing -------------------------------------------------------------------------------


def seal_document(seal: AuditSeal) -> dict[str, Any]:
    """A stored seal as its signed document (what is anchored and exported)."""
    return {
        "version": evidence.SEAL_VERSION,
        "number": seal.number,
        "created_at": timestamp_canonical(seal.created_at),
        "first_sequence": seal.first_sequence,
        "last_sequence": seal.last_sequence,
        "row_count": seal.row_count,
        "missing_sequences": list(seal.missing_sequences),
        "merkle_root": seal.merkle_root,
        "prev_seal_hash": seal.prev_seal_hash,
        "key_fingerprint": seal.key_fingerprint,
        "signature": seal.signature,
        "seal_hash": seal.seal_hash,
    }


def seal_pending(
    *, max_rows: int = SEAL_MAX_ROWS, now: datetime | None = None
) -> AuditSeal | None:
    """Seal the rows committed after the last seal (at most ``max_rows``, in sequence order);
    answer the new seal, or None when there was nothing to seal or another sealer won.

    Appends take numbers without a lock, so a number below a committed row may belong to an
    append still in flight, or to one that rolled back. A gap is sealed as missing only once the
    row after it is older than ``GAP_GRACE`` (an append commits at once, so its number was then
    abandoned); a younger gap ends the seal before it, for the next round.
    """
    now = now or timezone.now()
    last = AuditSeal.objects.order_by("-number").first()
    after = last.last_sequence if last else 0
    rows = AccessLog.objects.filter(sequence__gt=after).order_by("sequence")
    run: list[str] = []
    missing: list[int] = []
    expected = after + 1
    for sequence, row_hash, occurred_at in rows.values_list(
        "sequence", "row_hash", "occurred_at"
    )[:max_rows]:
        if sequence > expected:
            if occurred_at > now - GAP_GRACE:
                break  # the number before may still be committing
            missing.extend(range(expected, sequence))
        run.append(row_hash)
        expected = sequence + 1
    if not run:
        return None
    key = seal_signing_keys()[0]
    created_at = timezone.now()
    body = evidence.seal_body(
        number=(last.number if last else 0) + 1,
        created_at=timestamp_canonical(created_at),
        first_sequence=after + 1,
        last_sequence=expected - 1,
        missing_sequences=missing,
        row_hashes=run,
        prev_seal_hash=last.seal_hash if last else evidence.GENESIS_SEAL_HASH,
        key_fingerprint=evidence.public_key_fingerprint(key.public_key()),
    )
    document = evidence.seal_sign(body, key)
    seal = AuditSeal(
        number=body["number"],
        created_at=created_at,
        first_sequence=body["first_sequence"],
        last_sequence=body["last_sequence"],
        row_count=body["row_count"],
        missing_sequences=body["missing_sequences"],
        merkle_root=body["merkle_root"],
        prev_seal_hash=body["prev_seal_hash"],
        key_fingerprint=body["key_fingerprint"],
        signature=document["signature"],
        seal_hash=document["seal_hash"],
    )
    try:
        with transaction.atomic():
            seal.save()
    except IntegrityError:
        logger.info("another sealer wrote seal %s first", body["number"])
        return None
    return seal


def anchoring_paused() -> bool:
    """Whether staff paused seal anchoring (``audit.anchor_switch``; no switch row: it runs)."""
    return SealAnchorSwitch.objects.filter(pk=1, anchoring_paused=True).exists()


def anchors_publish(store: AnchorStore | None = None) -> int:
    """Anchor the newest seals the store does not hold yet; answer how many were written.

    Seals are anchored in number order and a failure stops the round, so the store holds every
    seal up to some number: looking back from the newest seal until one is found costs one
    look per round, not a listing of years of anchors. Raises ``AnchorUnavailable`` when the
    store cannot be reached (the seals wait for the next round). Writes nothing while staff
    paused anchoring (:func:`anchoring_paused`): the seals wait for the round after resuming.
    """
    store = store or anchor_store()
    if store is None or anchoring_paused():
        return 0
    newest = AuditSeal.objects.order_by("-number").values_list("number", flat=True).first()
    if newest is None:
        return 0
    missing: list[int] = []
    number = newest
    while number >= 1 and not store.has(number):
        missing.append(number)
        number -= 1
    for number in reversed(missing):
        store.put(number, seal_document(AuditSeal.objects.get(number=number)))
    return len(missing)


def seal_and_anchor() -> tuple[int, int]:
    """One sealer round: seal everything pending, then anchor; answers ``(seals, anchors)``
    written. An anchor store that is down is logged, not raised: the rows stay sealed in the
    database and are anchored on a later round."""
    seals = 0
    while seal_pending() is not None:
        seals += 1
    try:
        anchors = anchors_publish()
    except (AnchorUnavailable, AnchorConflict) as exc:
        logger.error("audit seals not anchored: %s", exc)
        anchors = 0
    return seals, anchors


@dataclass(frozen=True)
class SealingStatus:
    """What the verification page shows about sealing, from cheap queries only."""

    public_keys: list[tuple[str, str]]
    last_seal: AuditSeal | None
    unsealed_rows: int
    oldest_unsealed_at: datetime | None
    overdue: bool
    anchor_store: str
    max_delay_seconds: int


def sealing_status(*, now: datetime | None = None) -> SealingStatus:
    """The public key(s), the last seal, the rows waiting and whether any waits longer than
    ``AUDIT_SEAL_MAX_DELAY_SECONDS`` (the sealer is not running, or failing)."""
    now = now or timezone.now()
    last = AuditSeal.objects.order_by("-number").first()
    waiting = AccessLog.objects.filter(sequence__gt=last.last_sequence if last else 0)
    oldest = waiting.order_by("sequence").values_list("occurred_at", flat=True).first()
    store = anchor_store()
    return SealingStatus(
        public_keys=[
            (fingerprint, evidence.public_key_pem(key))
            for fingerprint, key in seal_public_keys().items()
        ],
        last_seal=last,
        unsealed_rows=waiting.count(),
        oldest_unsealed_at=oldest,
        overdue=oldest is not None
        and oldest < now - timedelta(seconds=settings.AUDIT_SEAL_MAX_DELAY_SECONDS),
        anchor_store=(store.description if store else "none configured")
        + (" (anchoring PAUSED by staff)" if anchoring_paused() else ""),
        max_delay_seconds=settings.AUDIT_SEAL_MAX_DELAY_SECONDS,
    )


# --- Verification --------------------------------------------------------------------------


@dataclass
class SealReport:
    """What ``seals_verify`` checked and every problem it found."""

    seals: int = 0
    through_number: int = 0
    sealed_rows: int = 0
    unsealed_rows: int = 0
    anchors: int = 0
    anchor_store: str = "none configured"
    first_sealed_at: datetime | None = None
    last_sealed_at: datetime | None = None
    not_yet_anchored: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was wrong."""
        return not self.problems


def _rows_of(seal: AuditSeal) -> Iterator[tuple[int, str]]:
    return (
        AccessLog.objects.filter(
            sequence__gte=seal.first_sequence, sequence__lte=seal.last_sequence
        )
        .order_by("sequence")
        .values_list("sequence", "row_hash")
        .iterator(chunk_size=5000)
    )


def seals_verify(
    *,
    now: datetime | None = None,
    store: AnchorStore | None = None,
    after_number: int = 0,
    through_number: int | None = None,
) -> SealReport:
    """Check the seals (all, or those after seal ``after_number``: an incremental run) against
    the rows they cover and against the anchors.

    With ``through_number`` only seals ``after_number + 1`` to ``through_number`` and their
    anchors are checked (one batch of a resumable full run, ``audit.verification``): the rows
    after the last seal and the anchors outside the range are the final step's, which is an
    incremental run after the last batch.

    Problems named: a seal with a bad signature or hash, a broken link to the previous seal, a
    gap or overlap between seals, a seal whose rows are missing or changed (its Merkle root no
    longer matches), rows older than ``AUDIT_SEAL_MAX_DELAY_SECONDS`` that no seal covers, seals
    missing from the anchors (older than the delay) or anchored differently, anchors of seals the
    database no longer has (rows and seals deleted, tables emptied).
    """
    now = now or timezone.now()
    delay = timedelta(seconds=settings.AUDIT_SEAL_MAX_DELAY_SECONDS)
    keys = seal_public_keys()
    report = SealReport()
    documents: dict[int, dict[str, Any]] = {}
    sealed_at: dict[int, datetime] = {}
    previous = AuditSeal.objects.filter(number=after_number).first() if after_number else None
    if after_number and previous is None:
        report.problems.append(f"seal {after_number}, verified before, is gone")
    report.through_number = after_number
    checked = AuditSeal.objects.filter(number__gt=after_number).order_by("number")
    if through_number is not None:
        checked = checked.filter(number__lte=through_number)
    for seal in checked.iterator(chunk_size=500):
        report.through_number = seal.number
        document = seal_document(seal)
        documents[seal.number] = document
        sealed_at[seal.number] = seal.created_at
        report.seals += 1
        report.first_sealed_at = report.first_sealed_at or seal.created_at
        report.last_sealed_at = seal.created_at
        problem = evidence.seal_problem(document, keys)
        if problem:
            report.problems.append(problem)
        expected_number = previous.number + 1 if previous else 1
        expected_prev = previous.seal_hash if previous else evidence.GENESIS_SEAL_HASH
        expected_first = previous.last_sequence + 1 if previous else 1
        if seal.number != expected_number:
            report.problems.append(f"seal {expected_number} is missing before seal {seal.number}")
        elif seal.prev_seal_hash != expected_prev:
            report.problems.append(f"seal {seal.number} does not link to seal {seal.number - 1}")
        if seal.first_sequence != expected_first:
            report.problems.append(
                f"seal {seal.number} starts at row {seal.first_sequence}, "
                f"expected {expected_first}: rows between seals are unsealed or sealed twice"
            )
        rows_held = list(_rows_of(seal))
        hashes = [row_hash for _sequence, row_hash in rows_held]
        root = merkle.merkle_root([evidence.row_leaf(h) for h in hashes]).hex()
        stated_missing = set(seal.missing_sequences)
        expected_sequences = [
            s
            for s in range(seal.first_sequence, seal.last_sequence + 1)
            if s not in stated_missing
        ]
        if [sequence for sequence, _hash in rows_held] != expected_sequences:
            present = {sequence for sequence, _hash in rows_held}
            gone = sorted(set(expected_sequences) - present)[:5]
            extra = sorted(present & stated_missing)[:5]
            report.problems.append(
                f"seal {seal.number} covers {seal.row_count} rows "
                f"({seal.first_sequence} to {seal.last_sequence}), the log holds {len(rows_held)}"
                + (f": rows {gone} are gone" if gone else "")
                + (f": rows {extra} appeared where the seal states none" if extra else "")
            )
        elif root != seal.merkle_root:
            report.problems.append(
                f"seal {seal.number}'s Merkle root does not match rows {seal.first_sequence} "
                f"to {seal.last_sequence}: a row was changed or replaced"
            )
        report.sealed_rows += len(hashes)
        previous = seal

    bounded = through_number is not None
    if not bounded:
        last_sealed = previous.last_sequence if previous else 0
        unsealed = AccessLog.objects.filter(sequence__gt=last_sealed)
        report.unsealed_rows = unsealed.count()
        overdue = unsealed.filter(occurred_at__lt=now - delay).order_by("sequence").first()
        if overdue is not None:
            report.problems.append(
                f"row {overdue.sequence} of {timestamp_canonical(overdue.occurred_at)} is not "
                f"sealed after {settings.AUDIT_SEAL_MAX_DELAY_SECONDS} s"
            )

    store = store or anchor_store()
    if store is None:
        report.problems.append("no anchor store is configured (AUDIT_ANCHOR_BUCKET)")
        return report
    report.anchor_store = store.description
    try:
        anchored = store.anchored(from_number=after_number + 1, through_number=through_number)
        all_numbers = store.numbers() if after_number and not bounded else set(anchored)
    except AnchorUnavailable as exc:
        report.problems.append(f"anchors cannot be read: {exc}")
        return report
    report.anchors = len(all_numbers)
    if not bounded:  # the anchors of seals verified before: still there, each still held
        held_numbers = set(
            AuditSeal.objects.filter(number__lte=after_number).values_list("number", flat=True)
        )
        for number in sorted(set(range(1, after_number + 1)) - all_numbers):
            report.problems.append(f"seal {number}, verified before, is no longer anchored")
        for number in sorted(
            n for n in all_numbers if n <= after_number and n not in held_numbers
        ):
            report.problems.append(f"seal {number} is anchored but missing from the database")
    for number, anchor in sorted(anchored.items()):
        held = documents.get(number)
        if held is None:
            report.problems.append(
                f"seal {number} is anchored but missing from the database: "
                "rows and their seals were deleted"
            )
        elif any(version != held for version in anchor.documents):
            report.problems.append(f"seal {number} differs from its anchor")
    for number, document in documents.items():
        if number in anchored:
            continue
        report.not_yet_anchored.append(number)
        if sealed_at[number] < now - delay:
            report.problems.append(f"seal {number} ({document['created_at']}) is not anchored")
    return report
