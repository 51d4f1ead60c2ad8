"""Verifying an evidence package offline: no database, no settings, no secret, only the ZIP
and the portal's audit public key (PEM, as ``audit_public_key`` prints it).

Checks, naming the file at fault: the manifest's Ed25519 signature (``manifest.sig``) with a
key from the given public key file whose fingerprint the manifest names; every member's size
and SHA-256 against the manifest (and the ZIP's own CRC on the way), no member missing and none
unlisted; that the ZIP around them is byte for byte the one the portal writes for those
members (the writer is deterministic), so no header byte changes unseen; then the ``audit/``
folder as an evidence bundle (``audit.evidence.bundle_verify``: seal signatures, links, row
hashes, inclusion proofs) and that its rows are the listed recordings'. A recording whose
exported file differs from its SHA-256 at ingest is reported too: that is a finding about the
recording, the package itself may be intact.

Imports nothing of Django: run it as ``python -m recordings.lifecycle.evidence_verify PACKAGE
--public-key FILE`` with the ``cryptography`` package alone (``manage.py
verify_evidence_package`` does the same inside the portal). ``docs/evidence-packages.md``
restates every step with ``openssl`` and a few lines of Python.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit import evidence

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
AUDIT_FOLDER = "audit/"
PACKAGE_FORMAT = "recordings-portal evidence package v1"
_CHUNK = 256 * 1024
# ZIP entries carry a fixed time: the manifest says when the package was made, and two
# packages of the same evidence then differ only where the evidence does.
_ENTRY_TIME = (1980, 1, 1, 0, 0, 0)


class PackageStream:
    """The file a package is written to (or, without one, only hashed), seen by ``zipfile``
    as a stream it cannot seek: each member then goes out once, header, data and data
    descriptor, never rewritten. So the package is a pure function of its members' names and
    bytes, which lets the offline verifier rebuild it and compare every byte, headers and
    central directory included; and its size and SHA-256 are known as it is written."""

    def __init__(self, output: IO[bytes] | None = None) -> None:
        self.output = output
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        """Pass ``data`` on, hashing it."""
        if self.output is not None:
            self.output.write(data)
        self.digest.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        """Bytes written so far (``zipfile`` asks to fill in offsets)."""
        return self.size

    def seek(self, *args: object) -> int:
        """Refused: ``zipfile`` then writes data descriptors instead of seeking back."""
        raise OSError("a package is written as a stream")

    def seekable(self) -> bool:
        """Never."""
        return False

    def flush(self) -> None:
        """Flush the file beneath."""
        if self.output is not None:
            self.output.flush()

    def close(self) -> None:
        """Flush; the file beneath is its owner's to close."""
        self.flush()


def member_info(name: str) -> zipfile.ZipInfo:
    """The header of one member, the same on every platform: stored (audio does not
    compress, and stored bytes can be hashed in place), a fixed time (the manifest says when
    the package was made), Unix, mode 0644."""
    info = zipfile.ZipInfo(name, date_time=_ENTRY_TIME)
    info.compress_type = zipfile.ZIP_STORED
    info.create_system = 3
    info.external_attr = 0o644 << 16
    return info


@dataclass
class PackageReport:
    """What an offline check of a package found."""

    recordings: int = 0
    files: int = 0
    rows: int = 0
    seals: int = 0
    problems: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the package is intact and authentic."""
        return not self.problems


def _member_digest(archive: zipfile.ZipFile, name: str) -> tuple[int, str]:
    """Size and SHA-256 of one member, streamed (zipfile checks its CRC at the end)."""
    digest = hashlib.sha256()
    size = 0
    with archive.open(name) as member:
        for chunk in iter(lambda: member.read(_CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _rebuilt(archive: zipfile.ZipFile, names: list[str]) -> str:
    """SHA-256 of the package the portal writes for these members, in this order: the
    writer is deterministic (:class:`PackageStream`, :func:`member_info`), so any byte of a
    header or of the central directory that differs from the file shows here."""
    stream = PackageStream()
    with zipfile.ZipFile(
        stream,
        "w",
        compression=zipfile.ZIP_STORED,
        allowZip64=True,
    ) as rebuilt:
        for name in names:
            with (
                archive.open(name) as member,
                rebuilt.open(member_info(name), "w", force_zip64=True) as copy,
            ):
                shutil.copyfileobj(member, copy, _CHUNK)
    return stream.digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _signature_problem(
    manifest_bytes: bytes,
    signature: bytes,
    manifest: Mapping[str, Any],
    keys: Mapping[str, Ed25519PublicKey],
) -> str | None:
    fingerprint = str(manifest.get("signing_key_fingerprint", ""))
    key = keys.get(fingerprint)
    if key is None:
        return (
            f"{MANIFEST} is signed by key {fingerprint[:16]}…, which is not in the public key file"
        )
    try:
        key.verify(signature, manifest_bytes)
    except InvalidSignature:
        return f"{MANIFEST} does not match its signature ({SIGNATURE}): altered, or not signed"
    return None


def package_verify(path: Path, keys: Mapping[str, Ed25519PublicKey]) -> PackageReport:
    """Check the package at ``path`` with the public keys ``keys`` (by fingerprint); see the
    module docstring. Every problem found is listed; none means intact and authentic."""
    report = PackageReport()
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        report.problems.append(f"{path.name} is not a readable ZIP package: {exc}")
        return report
    with archive:
        try:
            names = [info.filename for info in archive.infolist()]
            manifest_bytes = archive.read(MANIFEST)
            signature = archive.read(SIGNATURE)
        except KeyError as exc:
            report.problems.append(f"the package has no {exc.args[0].split()[-1]}")
            return report
        except (zipfile.BadZipFile, OSError) as exc:
            report.problems.append(f"{MANIFEST} or {SIGNATURE} unreadable: {exc}")
            return report
        try:
            manifest = json.loads(manifest_bytes)
        except ValueError as exc:
            report.problems.append(f"{MANIFEST} is not JSON: {exc}")
            return report
        if manifest.get("format") != PACKAGE_FORMAT:
            report.problems.append(f"{MANIFEST}: unknown format {manifest.get('format')!r}")
            return report
        problem = _signature_problem(manifest_bytes, signature, manifest, keys)
        if problem:
            report.problems.append(problem)
            return report  # nothing else the manifest says can be believed

        listed: dict[str, dict[str, Any]] = manifest.get("files", {})
        for name in names:
            if name in (MANIFEST, SIGNATURE):
                continue
            expected = listed.get(name)
            if expected is None:
                report.problems.append(f"{name} is in the package but not in the manifest")
                continue
            try:
                size, sha256 = _member_digest(archive, name)
            except zipfile.BadZipFile as exc:
                if "CRC" in str(exc):  # the content changed: said as for any changed member
                    report.problems.append(
                        f"{name} does not match the manifest's SHA-256 and size (nor its CRC-32)"
                    )
                else:
                    report.problems.append(f"{name} is damaged: {exc}")
                continue
            except (OSError, EOFError) as exc:
                report.problems.append(f"{name} is damaged: {exc}")
                continue
            if size != expected.get("size") or sha256 != expected.get("sha256"):
                report.problems.append(f"{name} does not match the manifest's SHA-256 and size")
        for name in sorted(set(listed) - set(names)):
            report.problems.append(f"{name} is in the manifest but missing from the package")
        report.files = len(listed)

        recordings = manifest.get("recordings", [])
        report.recordings = len(recordings)
        sids = {entry.get("sid") for entry in recordings}
        for entry in recordings:
            original = entry.get("original")
            ingest = entry.get("ingest_sha256")
            recorded = bool(ingest) and len(str(ingest)) == 64
            if original in listed and recorded and listed[original]["sha256"] != ingest:
                report.findings.append(
                    f"{entry.get('sid')}: the exported file differs from its SHA-256 at "
                    "ingest (changed in storage after it was archived)"
                )

        if report.problems:
            return report
        if _rebuilt(archive, names) != _file_sha256(path):
            report.problems.append(
                f"{path.name}: the ZIP's headers or central directory were altered (every "
                "member's content is intact)"
            )
            return report
        with tempfile.TemporaryDirectory() as folder:
            for name in names:
                if name.startswith(AUDIT_FOLDER) and not name.endswith("/"):
                    target = Path(folder) / Path(name).name
                    with archive.open(name) as member, target.open("wb") as out:
                        shutil.copyfileobj(member, out, _CHUNK)
            bundle = evidence.bundle_verify(Path(folder), keys)
            report.rows, report.seals = bundle.rows, bundle.seals
            report.problems.extend(f"{AUDIT_FOLDER}{p}" for p in bundle.problems)
            rows_path = Path(folder) / "rows.jsonl"
            if rows_path.exists():
                with rows_path.open(encoding="utf-8") as lines:
                    for line in lines:
                        row = json.loads(line) if line.strip() else {}
                        if row and row.get("recording_sid") not in sids:
                            report.problems.append(
                                f"{AUDIT_FOLDER}rows.jsonl: row {row.get('sequence')} is about "
                                "a recording the manifest does not list"
                            )
        if report.rows != manifest.get("audit", {}).get("rows"):
            report.problems.append(
                f"{AUDIT_FOLDER}rows.jsonl: not the row count the manifest states"
            )
    return report


def main(argv: list[str] | None = None) -> int:
    """Command line: exit 0 printing what was checked, 1 naming every problem."""
    parser = argparse.ArgumentParser(description="Verify an evidence package offline.")
    parser.add_argument("package", type=Path)
    parser.add_argument("--public-key", required=True, type=Path, help="PEM public key file")
    arguments = parser.parse_args(argv)
    try:
        keys = evidence.public_keys_from_pem(arguments.public_key.read_text())
    except (OSError, ValueError) as exc:
        print(f"cannot read the public key: {exc}", file=sys.stderr)
        return 2
    report = package_verify(arguments.package, keys)
    for finding in report.findings:
        print(f"finding: {finding}")
    if report.ok:
        print(
            f"OK: {report.recordings} recordings, {report.files} files, {report.rows} access-log "
            f"rows in {report.seals} seals; manifest signed by the given key"
        )
        return 0
    print("package NOT intact:\n  - " + "\n  - ".join(report.problems), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
