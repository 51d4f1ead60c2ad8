"""Merkle trees over access-log row hashes, as Certificate Transparency builds them (RFC 9162).

A seal commits to the rows it covers by the root of this tree: ``leaf = SHA-256(0x00 || d)``,
``node = SHA-256(0x01 || left || right)``, split at the largest power of two below the size.
Inclusion proofs ("this row is leaf ``i`` of a tree of ``n`` leaves with this root") let an
auditor check one row against a signed seal without the other rows.

Written here rather than taken from a library: the algorithm is a page of RFC 9162, the
maintained Python packages for it target Certificate Transparency logs (with their own leaf
encoding and HTTP clients), and an outside auditor must be able to read exactly what is hashed.
Pure functions, no Django: the offline bundle verifier uses them too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """The hash of one leaf: ``SHA-256(0x00 || data)``."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node: ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(size: int) -> int:
    """The largest power of two smaller than ``size`` (``size`` > 1)."""
    split = 1
    while split * 2 < size:
        split *= 2
    return split


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """The Merkle tree hash of ``leaves`` (each the raw data of one leaf), RFC 9162 §2.1.1.

    Iterative, level by level, so a seal of many rows needs no deep recursion; the result is
    the same tree as the RFC's recursive definition.
    """
    if not leaves:
        return EMPTY_ROOT
    level = [leaf_hash(data) for data in leaves]
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])  # an odd node is promoted unchanged
        level = paired
    return level[0]


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``leaves`` (RFC 9162 §2.1.3.1)."""
    if not 0 <= index < len(leaves):
        raise ValueError("leaf index outside the tree")
    proof: list[bytes] = []
    low, high = 0, len(leaves)
    # Walk from the root down to the leaf, remembering the sibling subtree at each split.
    siblings: list[tuple[int, int]] = []
    while high - low > 1:
        split = low + _split(high - low)
        if index < split:
            siblings.append((split, high))
            high = split
        else:
            siblings.append((low, split))
            low = split
    for start, end in reversed(siblings):
        proof.append(merkle_root(leaves[start:end]))
    return proof


def inclusion_verify(
    *, data: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """True when ``data`` is leaf ``index`` of a tree of ``size`` leaves whose root is
    ``root``, by the audit path ``proof`` (RFC 9162 §2.1.3.2)."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    computed = leaf_hash(data)
    for sibling in proof:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            computed = node_hash(sibling, computed)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            computed = node_hash(computed, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and computed == root
