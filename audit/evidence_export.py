"""Writing evidence bundles: the rows an auditor asks for, every seal that covers them, the
public keys, and a manifest, in a folder that ``verify_audit_log --bundle`` (or the README's
manual procedure) checks with nothing but a public key.

Rows are exported in exactly the form their ``row_hash`` covers (``audit.chain.row_canonical``)
plus the hash and MAC, one JSON object per line. A window (``since``/``until``) exports whole
seals, so the verifier recomputes each Merkle root; one row (``sequence``) is exported with its
inclusion proof instead. Rows not sealed yet are left out and counted in the manifest.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.db.models import Max, Min

from audit import evidence, merkle
from audit.chain import row_canonical, timestamp_canonical
from audit.models import AccessLog, AuditSeal
from audit.sealer import seal_document, seal_public_keys

BUNDLE_FILES = ("rows.jsonl", "seals.jsonl", "proofs.jsonl", "public_keys.pem")


@dataclass(frozen=True)
class BundleSummary:
    """What a bundle holds."""

    rows: int
    seals: int
    unsealed_left_out: int


def row_document(row: AccessLog) -> dict[str, Any]:
    """One row as exported: the canonical content its hash covers, the hash, the MAC."""
    document: dict[str, Any] = json.loads(row_canonical(row))
    document.update(row_hash=row.row_hash, row_mac=row.row_mac, mac_key_id=row.mac_key_id)
    return document


def _line(document: dict[str, Any]) -> bytes:
    return evidence.canonical_json(document) + b"\n"


def evidence_export(
    *,
    output: Path,
    since: datetime | None = None,
    until: datetime | None = None,
    sequence: int | None = None,
) -> BundleSummary:
    """Write a bundle to the empty or new folder ``output`` (see the module docstring)."""
    output.mkdir(parents=True, exist_ok=True)
    if any(output.iterdir()):
        raise ValueError(f"{output} is not empty")
    rows_file = output / "rows.jsonl"
    seals_file = output / "seals.jsonl"
    proofs_file = output / "proofs.jsonl"
    rows = seals = left_out = 0
    with rows_file.open("wb") as rows_out, seals_file.open("wb") as seals_out, proofs_file.open(
        "wb"
    ) as proofs_out:
        if sequence is not None:
            seal = AuditSeal.objects.filter(
                first_sequence__lte=sequence, last_sequence__gte=sequence
            ).first()
            if seal is None:
                raise ValueError(f"row {sequence} is not sealed (yet)")
            chosen = [seal]
            hashes = list(
                AccessLog.objects.filter(
                    sequence__gte=seal.first_sequence, sequence__lte=seal.last_sequence
                )
                .order_by("sequence")
                .values_list("row_hash", flat=True)
            )
            leaves = [evidence.row_leaf(h) for h in hashes]
            held = list(
                AccessLog.objects.filter(
                    sequence__gte=seal.first_sequence, sequence__lte=seal.last_sequence
                )
                .order_by("sequence")
                .values_list("sequence", flat=True)
            )
            proof = merkle.inclusion_proof(leaves, held.index(sequence))
            rows_out.write(_line(row_document(AccessLog.objects.get(sequence=sequence))))
            proofs_out.write(_line({"sequence": sequence, "proof": [p.hex() for p in proof]}))
            rows = 1
        else:
            window = AccessLog.objects.all()
            if since is not None:
                window = window.filter(occurred_at__gte=since)
            if until is not None:
                window = window.filter(occurred_at__lt=until)
            bounds = window.aggregate(low=Min("sequence"), high=Max("sequence"))
            chosen = (
                list(
                    AuditSeal.objects.filter(
                        last_sequence__gte=bounds["low"], first_sequence__lte=bounds["high"]
                    ).order_by("number")
                )
                if bounds["low"] is not None
                else []
            )
            for seal in chosen:
                for row in (
                    AccessLog.objects.filter(
                        sequence__gte=seal.first_sequence, sequence__lte=seal.last_sequence
                    )
                    .order_by("sequence")
                    .iterator(chunk_size=2000)
                ):
                    rows_out.write(_line(row_document(row)))
                    rows += 1
            last_sealed = chosen[-1].last_sequence if chosen else 0
            left_out = window.filter(sequence__gt=last_sealed).count()
        for seal in chosen:
            seals_out.write(_line(seal_document(seal)))
            seals += 1
    (output / "public_keys.pem").write_text(
        "".join(evidence.public_key_pem(key) for key in seal_public_keys().values())
    )
    manifest = {
        "format": "recordings-portal audit evidence v1",
        "window": {
            "since": timestamp_canonical(since) if since else None,
            "until": timestamp_canonical(until) if until else None,
            "sequence": sequence,
        },
        "rows": rows,
        "seals": seals,
        "unsealed_rows_left_out": left_out,
        "files": {
            name: hashlib.sha256((output / name).read_bytes()).hexdigest()
            for name in BUNDLE_FILES
        },
    }
    (output / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return BundleSummary(rows=rows, seals=seals, unsealed_left_out=left_out)
