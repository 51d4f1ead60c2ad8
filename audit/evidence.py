"""Audit evidence an outsider can check with nothing but a public key: seal documents, their
Ed25519 signatures, and the verification of an exported bundle.

A **seal** commits to the access-log rows from ``first_sequence`` to ``last_sequence`` but the
``missing_sequences`` it states (numbers taken by appends that rolled back), ``row_count`` of
them, by the Merkle root of their row hashes
(``audit.merkle``), links to the previous seal by its hash, and is signed with an Ed25519 key
that the database never holds (``AUDIT_SEAL_SIGNING_KEY``). Its canonical body is compact JSON
with sorted keys; ``seal_hash`` is the SHA-256 of the signed document (body plus signature), so
the chain of seals covers the signatures too.

Pure functions, no Django models or settings: the offline verifier (``verify_audit_log
--bundle``) and an auditor's own script rely on exactly this module, which the README's
"Checking the evidence yourself" section restates with ``openssl`` and a few lines of Python.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit import merkle

SEAL_VERSION = 1
GENESIS_SEAL_HASH = "0" * 64
SEAL_BODY_FIELDS = (
    "version",
    "number",
    "created_at",
    "first_sequence",
    "last_sequence",
    "row_count",
    "missing_sequences",
    "merkle_root",
    "prev_seal_hash",
    "key_fingerprint",
)


def canonical_json(document: Mapping[str, Any]) -> bytes:
    """Sorted-key compact ASCII JSON: the one byte form that is hashed and signed."""
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


# --- Keys ----------------------------------------------------------------------------------


def signing_key_from_seed(encoded: str) -> Ed25519PrivateKey:
    """The Ed25519 private key from its 32-byte seed, URL-safe base64 (padding optional)."""
    text = encoded.strip()
    seed = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if len(seed) != 32:
        raise ValueError("an Ed25519 seed is 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_raw(key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of a public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_fingerprint(key: Ed25519PublicKey) -> str:
    """Hex SHA-256 of the raw public key: how a seal names the key that signed it."""
    return hashlib.sha256(public_key_raw(key)).hexdigest()


def public_key_pem(key: Ed25519PublicKey) -> str:
    """The public key as PEM (SubjectPublicKeyInfo), readable by ``openssl pkey -pubin``."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def public_keys_from_pem(text: str) -> dict[str, Ed25519PublicKey]:
    """Every Ed25519 public key in a PEM text, by fingerprint (a file may hold several, for
    rotation)."""
    keys: dict[str, Ed25519PublicKey] = {}
    marker = "-----END PUBLIC KEY-----"
    for block in text.split(marker):
        if "-----BEGIN PUBLIC KEY-----" not in block:
            continue
        loaded = serialization.load_pem_public_key((block.strip() + "\n" + marker).encode())
        if not isinstance(loaded, Ed25519PublicKey):
            raise ValueError("the public key file holds a key that is not Ed25519")
        keys[public_key_fingerprint(loaded)] = loaded
    if not keys:
        raise ValueError("no public key found (expected PEM 'BEGIN PUBLIC KEY' blocks)")
    return keys


# --- Seals ---------------------------------------------------------------------------------


def row_leaf(row_hash: str) -> bytes:
    """A row's Merkle leaf data: the 32 bytes of its hex ``row_hash``."""
    return bytes.fromhex(row_hash)


def seal_body(
    *,
    number: int,
    created_at: str,
    first_sequence: int,
    last_sequence: int,
    missing_sequences: Sequence[int],
    row_hashes: Sequence[str],
    prev_seal_hash: str,
    key_fingerprint: str,
) -> dict[str, Any]:
    """The body of a seal over ``row_hashes`` (in sequence order, one per sequence from
    ``first_sequence`` to ``last_sequence`` except ``missing_sequences``)."""
    return {
        "version": SEAL_VERSION,
        "number": number,
        "created_at": created_at,
        "first_sequence": first_sequence,
        "last_sequence": last_sequence,
        "row_count": len(row_hashes),
        "missing_sequences": sorted(missing_sequences),
        "merkle_root": merkle.merkle_root([row_leaf(h) for h in row_hashes]).hex(),
        "prev_seal_hash": prev_seal_hash,
        "key_fingerprint": key_fingerprint,
    }


def seal_sign(body: Mapping[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """The signed seal document: the body plus ``signature`` (URL-safe base64 of Ed25519 over
    the body's canonical JSON) and ``seal_hash``."""
    signature = base64.urlsafe_b64encode(key.sign(canonical_json(body))).decode("ascii")
    document = {**body, "signature": signature}
    return {**document, "seal_hash": seal_hash(document)}


def seal_hash(document: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the signed document (body and signature, without ``seal_hash``)."""
    signed = {name: document[name] for name in (*SEAL_BODY_FIELDS, "signature")}
    return hashlib.sha256(canonical_json(signed)).hexdigest()


def seal_problem(document: Mapping[str, Any], keys: Mapping[str, Ed25519PublicKey]) -> str | None:
    """Why a seal document is not authentic (unknown key, bad signature, wrong hash), or None."""
    try:
        body = {name: document[name] for name in SEAL_BODY_FIELDS}
        signature = base64.urlsafe_b64decode(str(document["signature"]))
    except (KeyError, ValueError):
        return f"seal {document.get('number')} is malformed"
    key = keys.get(str(body["key_fingerprint"]))
    if key is None:
        return f"seal {body['number']} is signed by an unknown key {body['key_fingerprint'][:16]}…"
    try:
        key.verify(signature, canonical_json(body))
    except InvalidSignature:
        return f"seal {body['number']} has a bad signature"
    if document.get("seal_hash") != seal_hash(document):
        return f"seal {body['number']} does not match its seal_hash"
    return None


# --- Bundles -------------------------------------------------------------------------------


@dataclass
class BundleReport:
    """What an offline verification of a bundle checked, and the first problem found."""

    rows: int = 0
    seals: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was wrong."""
        return not self.problems


def _jsonl(path: Path) -> Iterable[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def bundle_verify(directory: Path, keys: Mapping[str, Ed25519PublicKey]) -> BundleReport:
    """Verify an evidence bundle written by ``export_audit_evidence`` with public keys only.

    Checks, in order: the manifest's file hashes; each seal's signature and hash; the link of
    each seal to the one before it (within the bundle); each row's hash against its content;
    and each seal's Merkle root: recomputed when the bundle holds all the seal's rows, else
    each row's inclusion proof (``proofs.jsonl``) against it. Every problem is listed.
    """
    report = BundleReport()
    manifest_path = directory / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        report.problems.append(f"manifest.json unreadable: {exc}")
        return report
    for name, expected in manifest.get("files", {}).items():
        path = directory / name
        actual = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None
        if actual != expected:
            report.problems.append(f"{name} does not match the manifest's SHA-256")
    if report.problems:
        return report

    seals = list(_jsonl(directory / "seals.jsonl"))
    rows_by_sequence = {row["sequence"]: row for row in _jsonl(directory / "rows.jsonl")}
    proofs_path = directory / "proofs.jsonl"
    proofs = (
        {entry["sequence"]: entry["proof"] for entry in _jsonl(proofs_path)}
        if proofs_path.exists()
        else {}
    )
    sealed = {
        s
        for seal in seals
        for s in range(seal["first_sequence"], seal["last_sequence"] + 1)
        if s not in seal.get("missing_sequences", [])
    }
    for sequence in sorted(set(rows_by_sequence) - sealed):
        report.problems.append(f"row {sequence} is in the bundle but in none of its seals")
    report.seals, report.rows = len(seals), len(rows_by_sequence)
    previous: Mapping[str, Any] | None = None
    for seal in sorted(seals, key=lambda s: int(s.get("number", 0))):
        problem = seal_problem(seal, keys)
        if problem:
            report.problems.append(problem)
            continue
        if previous is not None and seal["number"] == previous["number"] + 1:
            if seal["prev_seal_hash"] != previous["seal_hash"]:
                report.problems.append(f"seal {seal['number']} does not link to the seal before")
            if seal["first_sequence"] != previous["last_sequence"] + 1:
                report.problems.append(f"seal {seal['number']} leaves a gap after the seal before")
        missing = set(seal["missing_sequences"])
        covered = [
            s for s in range(seal["first_sequence"], seal["last_sequence"] + 1) if s not in missing
        ]
        for stated in sorted(missing & set(rows_by_sequence)):
            report.problems.append(f"row {stated} is in the bundle but seal {seal['number']} "
                                   "states it missing")
        inside = [rows_by_sequence[s] for s in covered if s in rows_by_sequence]
        for row in inside:
            if row_content_hash(row) != row["row_hash"]:
                report.problems.append(f"row {row['sequence']} does not match its row_hash")
        if len(inside) == seal["row_count"]:
            root = merkle.merkle_root([row_leaf(row["row_hash"]) for row in inside]).hex()
            if root != seal["merkle_root"] or len(covered) != seal["row_count"]:
                report.problems.append(f"seal {seal['number']}'s Merkle root does not match")
        elif not inside:
            report.problems.append(f"seal {seal['number']} comes without any of its rows")
        else:  # some rows of the seal: each must come with its inclusion proof
            for row in inside:
                proof = proofs.get(row["sequence"])
                if proof is None or not merkle.inclusion_verify(
                    data=row_leaf(row["row_hash"]),
                    index=covered.index(row["sequence"]),
                    size=seal["row_count"],
                    proof=[bytes.fromhex(step) for step in proof],
                    root=bytes.fromhex(seal["merkle_root"]),
                ):
                    report.problems.append(
                        f"row {row['sequence']} is not proven to be in seal {seal['number']}"
                    )
        previous = seal
    return report


def row_content_hash(row: Mapping[str, Any]) -> str:
    """Hex SHA-256 of an exported row's canonical content: every field but ``row_hash`` and
    ``row_mac``/``mac_key_id`` (the MAC is for the portal, whose key the auditor lacks),
    exactly the bytes ``audit.chain.row_canonical`` hashes."""
    content = {k: v for k, v in row.items() if k not in ("row_hash", "row_mac", "mac_key_id")}
    return hashlib.sha256(canonical_json(content)).hexdigest()
