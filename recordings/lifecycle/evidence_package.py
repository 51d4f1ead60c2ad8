"""Evidence packages: recordings handed over with their chain of custody, in one ZIP file an
outsider verifies offline with nothing but the portal's audit public key.

A package holds, per recording, the media **as stored** (the ciphertext of an encrypted
recording, byte for byte, read from the bucket or from Twilio when Twilio still holds it) and,
when asked for, the decrypted audio; the recordings' access-log rows with the seals that cover
them and each row's Merkle inclusion proof (an ``audit/`` folder in exactly the layout of an
``export_audit_evidence`` bundle, so ``verify_audit_log --bundle`` checks it too); and
``manifest.json``: every file's size and SHA-256 at export, each recording's SHA-256 at ingest
from the archive's record (``Recording.media_sha256``, "not recorded at ingest" where there is
none), its metadata and encryption details (the wrapped content key as Twilio gave it, never a
key in clear), the exporter, the reason, the case and the time. ``manifest.sig`` is the raw
Ed25519 signature of ``manifest.json``'s bytes with the audit seal key
(``AUDIT_SEAL_SIGNING_KEY``, the key that signs seals), whose fingerprint the manifest names.
``recordings.lifecycle.evidence_verify`` checks a package; ``docs/evidence-packages.md`` says how
to do it by hand.

It lives in ``lifecycle`` (beside the archive, whose hashes it reports, and legal holds, whose
cases it packages) because it reads and decrypts media: ``custody`` sits below ``media`` in the
layers and could not. Memory stays flat: every file is streamed into the archive in storage's
256 KiB pieces, access-log rows are spooled to temporary files one seal at a time, and the ZIP
entries are written with ZIP64 headers so a package may exceed 4 GiB.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import PurePosixPath
from typing import IO, Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit import evidence, merkle
from audit.chain import timestamp_canonical
from audit.evidence_export import row_document
from audit.models import AccessLog, AuditSeal
from audit.sealer import seal_document, seal_public_keys, seal_signing_keys
from audit.services import access_log_append
from recordings import jobs
from recordings.integrations import storage, twilio_api
from recordings.lifecycle.evidence_verify import PackageStream, member_info
from recordings.lifecycle.retention import recordings_on_hold
from recordings.media.body import MediaError, stored_object
from recordings.media.opener import media_open
from recordings.models import EvidencePackage, LegalHold, MediaLocation, Recording

logger = logging.getLogger(__name__)

PACKAGE_FORMAT = "recordings-portal evidence package v1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
PUBLIC_KEY = "public_key.pem"
AUDIT_FOLDER = "audit"
NOT_RECORDED = "not recorded at ingest"
EXPORT_ACTION = "admin_export"
COPY_CHUNK = storage.READ_CHUNK

# The access log refuses links in ``detail``; a reason may cite a ticket URL, which stays
# readable without its scheme (the manifest keeps the reason as given).
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


class PackageError(Exception):
    """A package cannot be made (bad selection, media unreadable); nothing is kept."""


@dataclass
class PackageSummary:
    """What a written package holds."""

    recordings: int = 0
    files: int = 0
    rows: int = 0
    seals: int = 0
    unsealed_rows_left_out: int = 0
    decrypted: int = 0
    size: int = 0
    sha256: str = ""
    manifest_sha256: str = ""
    notes: list[str] = field(default_factory=list)


class _Archive:
    """A ZIP being written, recording each member's size and SHA-256 as it streams."""

    def __init__(self, output: IO[bytes]) -> None:
        self.stream = PackageStream(output)
        self.zip = zipfile.ZipFile(
            self.stream,
            "w",
            compression=zipfile.ZIP_STORED,
            allowZip64=True,
        )
        self.files: dict[str, dict[str, Any]] = {}

    def add(self, name: str, chunks: Iterable[bytes]) -> dict[str, Any]:
        """Stream ``chunks`` into member ``name``; answers its size and SHA-256."""
        digest = hashlib.sha256()
        size = 0
        # force_zip64: the size is not known before the stream ends and may pass 4 GiB.
        with self.zip.open(member_info(name), "w", force_zip64=True) as member:
            for chunk in chunks:
                member.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        entry = {"sha256": digest.hexdigest(), "size": size}
        self.files[name] = entry
        return entry

    def add_file(self, name: str, spool: IO[bytes]) -> dict[str, Any]:
        """Copy a spooled temporary file into member ``name``."""
        spool.seek(0)
        return self.add(name, iter(lambda: spool.read(COPY_CHUNK), b""))

    def close(self) -> None:
        """Write the central directory."""
        self.zip.close()


def _line(document: dict[str, Any]) -> bytes:
    return evidence.canonical_json(document) + b"\n"


# --- What is in the package --------------------------------------------------------------


def recording_metadata(recording: Recording) -> dict[str, Any]:
    """A recording's facts for the manifest: Twilio's metadata, handling facts, storage and
    integrity, and its encryption details (the content key only as Twilio wrapped it)."""

    def moment(value: datetime | None) -> str | None:
        return timestamp_canonical(value) if value else None

    encryption = None
    if recording.encryption_type:
        encryption = {
            "type": recording.encryption_type,
            "public_key_sid": recording.encryption_public_key_sid,
            # RSA-OAEP-wrapped by Twilio with the customer's public key: opening it needs the
            # private key, which the package never holds.
            "encrypted_cek": recording.encryption_cek,
            "iv": recording.encryption_iv,
        }
    return {
        "sid": recording.sid,
        "account_sid": recording.account_sid,
        "call_sid": recording.call_sid,
        "conference_sid": recording.conference_sid,
        "status": recording.status,
        "source": recording.source,
        "channels": recording.channels,
        "track": recording.track,
        "duration_seconds": recording.duration_seconds,
        "start_time": moment(recording.start_time),
        "date_created": moment(recording.date_created),
        "handled_worker_sids": list(recording.handled_worker_sids or []),
        "handled_team_names": list(recording.handled_team_names or []),
        "handled_queues": list(recording.handled_queues or []),
        "media_location": recording.media_location,
        "media_bucket": recording.media_bucket,
        "media_key": recording.media_key,
        "archived_at": moment(recording.archived_at),
        "integrity_state": recording.integrity_state,
        "integrity_checked_at": moment(recording.integrity_checked_at),
        "soft_deleted_at": moment(recording.soft_deleted_at),
        "hard_deleted_at": moment(recording.hard_deleted_at),
        "encryption": encryption,
    }


def _stored_media(recording: Recording) -> tuple[str, dict[str, Any], Iterator[bytes]] | None:
    """The recording's media as stored: member name, what storage says of it, and its bytes
    (pinned to the object's ETag, so a file that changes mid-copy is refused); None when no
    media is stored anywhere (deleted, or never known)."""
    if recording.hard_deleted_at is not None:
        return None
    if recording.media_location in (MediaLocation.S3, MediaLocation.LOCAL):
        local, bucket, key = stored_object(recording)
        try:
            stat = storage.object_stat(local=local, bucket=bucket, key=key)
        except storage.StorageNotFound:
            return None
        suffix = PurePosixPath(key).suffix.lower() or ".bin"
        described = {
            "where": "local folder" if local else f"s3://{bucket or '(default bucket)'}/{key}",
            "stored_size": stat.size,
            "etag": stat.etag,
            "content_type": stat.content_type,
            "object_metadata": stat.metadata,
        }
        chunks = storage.object_read(
            local=local, bucket=bucket, key=key, start=0, end=stat.size, if_match=stat.etag
        )
        return f"media/{recording.sid}{suffix}", described, chunks
    if recording.media_location == MediaLocation.TWILIO:
        # Still at Twilio: the file Twilio serves is what is stored (ciphertext if encrypted).
        try:
            media = twilio_api.recording_media_fetch(
                sid=recording.sid, account_sid=recording.account_sid, channels=recording.channels
            )
        except twilio_api.TwilioRejected as exc:
            if exc.status in (404, 410):
                return None
            raise
        return (
            f"media/{recording.sid}.wav",
            {"where": "Twilio", "stored_size": media.size},
            media.chunks,
        )
    return None


def _decrypted_media(recording: Recording) -> tuple[str, Iterator[bytes]] | str:
    """The decrypted audio's member name and bytes, or why it is not included."""
    if not recording.is_encrypted:
        return "not encrypted: the original is the audio"
    try:
        body = media_open(recording=recording)
    except MediaError as exc:
        return f"not decrypted: {exc}"
    suffix = PurePosixPath(recording.media_key).suffix.lower() or ".wav"
    return f"decrypted/{recording.sid}{suffix}", body.chunks


def _audit_rows(archive: _Archive, sids: Sequence[str]) -> tuple[int, int, int]:
    """Write the recordings' sealed access-log rows, the seals covering them and each row's
    inclusion proof as an evidence bundle under ``audit/``; answers rows, seals, and rows left
    out for not being sealed yet."""
    last_seal = AuditSeal.objects.order_by("-number").first()
    sealed_through = last_seal.last_sequence if last_seal else 0
    selected = AccessLog.objects.filter(recording_sid__in=list(sids))
    left_out = selected.filter(sequence__gt=sealed_through).count()
    rows = seals = 0
    with (
        tempfile.TemporaryFile() as rows_out,
        tempfile.TemporaryFile() as seals_out,
        tempfile.TemporaryFile() as proofs_out,
    ):
        sequences = selected.filter(sequence__lte=sealed_through).order_by("sequence")
        pending: list[int] = []
        seal: AuditSeal | None = None

        def flush() -> None:
            nonlocal rows, seals
            if seal is None or not pending:
                return
            held = list(
                AccessLog.objects.filter(
                    sequence__gte=seal.first_sequence, sequence__lte=seal.last_sequence
                )
                .order_by("sequence")
                .values_list("sequence", "row_hash")
            )
            index = {sequence: i for i, (sequence, _) in enumerate(held)}
            leaves = [evidence.row_leaf(row_hash) for _, row_hash in held]
            for row in AccessLog.objects.filter(sequence__in=pending).order_by("sequence"):
                proof = merkle.inclusion_proof(leaves, index[row.sequence])
                rows_out.write(_line(row_document(row)))
                proofs_out.write(
                    _line({"sequence": row.sequence, "proof": [p.hex() for p in proof]})
                )
                rows += 1
            seals_out.write(_line(seal_document(seal)))
            seals += 1
            pending.clear()

        for sequence in sequences.values_list("sequence", flat=True).iterator(chunk_size=2000):
            if seal is None or sequence > seal.last_sequence:
                flush()
                seal = AuditSeal.objects.get(
                    first_sequence__lte=sequence, last_sequence__gte=sequence
                )
            pending.append(sequence)
        flush()
        bundle = {
            "rows.jsonl": archive.add_file(f"{AUDIT_FOLDER}/rows.jsonl", rows_out),
            "seals.jsonl": archive.add_file(f"{AUDIT_FOLDER}/seals.jsonl", seals_out),
            "proofs.jsonl": archive.add_file(f"{AUDIT_FOLDER}/proofs.jsonl", proofs_out),
        }
    keys_pem = "".join(evidence.public_key_pem(key) for key in seal_public_keys().values())
    bundle["public_keys.pem"] = archive.add(
        f"{AUDIT_FOLDER}/public_keys.pem", [keys_pem.encode("ascii")]
    )
    # The bundle's own manifest, as ``export_audit_evidence`` writes it, so the extracted
    # folder is also a bundle ``verify_audit_log --bundle`` checks.
    bundle_manifest = {
        "format": "recordings-portal audit evidence v1",
        "window": {"since": None, "until": None, "sequence": None},
        "rows": rows,
        "seals": seals,
        "unsealed_rows_left_out": left_out,
        "files": {name: entry["sha256"] for name, entry in bundle.items()},
    }
    archive.add(
        f"{AUDIT_FOLDER}/manifest.json",
        [(json.dumps(bundle_manifest, indent=2, sort_keys=True) + "\n").encode("ascii")],
    )
    return rows, seals, left_out


# --- Writing -------------------------------------------------------------------------------


def evidence_package_write(
    *,
    recordings: Sequence[Recording],
    reason: str,
    exporter: str,
    include_decrypted: bool,
    output: IO[bytes],
    case: LegalHold | None = None,
    package_id: int | None = None,
) -> PackageSummary:
    """Write a package of ``recordings`` to the binary file ``output``, from its current
    position on (see the module docstring), and answer what it holds, with the whole file's
    size and SHA-256.

    Raises :class:`PackageError` for an empty selection or an empty reason, and storage's or
    Twilio's errors when a stored file cannot be read whole (the caller keeps no part of it).
    Writes nothing to the access log: :func:`evidence_package_record` does, once the package
    is kept.
    """
    reason = reason.strip()
    if not reason:
        raise PackageError("an evidence package needs a reason")
    if not recordings:
        raise PackageError("an evidence package needs at least one recording")
    signing_key = seal_signing_keys()[0]
    fingerprint = evidence.public_key_fingerprint(signing_key.public_key())
    summary = PackageSummary(recordings=len(recordings))
    archive = _Archive(output)
    described: list[dict[str, Any]] = []
    for recording in recordings:
        entry = recording_metadata(recording)
        ingest = recording.media_sha256 or NOT_RECORDED
        entry["ingest_sha256"] = ingest
        stored = _stored_media(recording)
        if stored is None:
            entry["original"] = None
            entry["original_note"] = "no media stored (deleted, or never archived)"
            summary.notes.append(f"{recording.sid}: no media stored")
        else:
            name, facts, chunks = stored
            written = archive.add(name, chunks)
            entry["original"] = name
            entry["stored_object"] = facts
            entry["export_matches_ingest"] = (
                None if ingest == NOT_RECORDED else written["sha256"] == ingest
            )
        if include_decrypted and stored is not None:
            decrypted = _decrypted_media(recording)
            if isinstance(decrypted, str):
                entry["decrypted"] = None
                entry["decrypted_note"] = decrypted
            else:
                archive.add(*decrypted)
                entry["decrypted"] = decrypted[0]
                summary.decrypted += 1
        described.append(entry)
    sids = [recording.sid for recording in recordings]
    summary.rows, summary.seals, summary.unsealed_rows_left_out = _audit_rows(archive, sids)
    public_pem = evidence.public_key_pem(signing_key.public_key())
    archive.add(PUBLIC_KEY, [public_pem.encode("ascii")])
    manifest = {
        "format": PACKAGE_FORMAT,
        "package_id": package_id,
        "created_at": timestamp_canonical(timezone.now()),
        "exporter": exporter,
        "reason": reason,
        "case": (
            {
                "hold_id": case.pk,
                "case_reference": case.case_reference,
                "reason": case.reason,
                "created_at": timestamp_canonical(case.created_at),
                "released_at": timestamp_canonical(case.released_at) if case.released_at else None,
            }
            if case is not None
            else None
        ),
        "decrypted_audio_included": include_decrypted,
        "signing_key_fingerprint": fingerprint,
        "signature_file": SIGNATURE,
        "signature_algorithm": "Ed25519 over the bytes of manifest.json",
        "recordings": described,
        "audit": {
            "folder": f"{AUDIT_FOLDER}/",
            "rows": summary.rows,
            "seals": summary.seals,
            "unsealed_rows_left_out": summary.unsealed_rows_left_out,
        },
        "files": dict(sorted(archive.files.items())),
    }
    manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
    archive.add(MANIFEST, [manifest_bytes])
    archive.add(SIGNATURE, [signing_key.sign(manifest_bytes)])
    archive.close()
    output.flush()
    summary.files = len(archive.files)
    summary.manifest_sha256 = hashlib.sha256(manifest_bytes).hexdigest()
    summary.size, summary.sha256 = archive.stream.size, archive.stream.digest.hexdigest()
    return summary


def evidence_package_record(
    *,
    summary: PackageSummary,
    recordings: Sequence[Recording],
    reason: str,
    exporter: str,
    include_decrypted: bool,
    package_id: int | None = None,
    case: LegalHold | None = None,
    context: dict[str, Any] | None = None,
) -> AccessLog:
    """Write the export to the access log: one ``admin_export`` row per recording (so each
    recording's timeline shows it) and the package's own row, with the count, the reason,
    whether decrypted audio went out, and the package's SHA-256; answers the package's row."""
    fields = {"identity": exporter, **(context or {})}
    for recording in recordings:
        access_log_append(
            action=EXPORT_ACTION,
            outcome="allowed",
            reason_code="evidence_package_recording",
            recording_sid=recording.sid,
            detail={"package_id": package_id, "decrypted": include_decrypted},
            **fields,
        )
    return access_log_append(
        action=EXPORT_ACTION,
        outcome="allowed",
        reason_code="evidence_package",
        detail={
            "package_id": package_id,
            "recordings": summary.recordings,
            "reason": _SCHEME.sub("", reason)[:500],
            "decrypted": "yes" if include_decrypted else "no",
            "package_sha256": summary.sha256,
            "package_size": summary.size,
            "manifest_sha256": summary.manifest_sha256,
            "case_reference": case.case_reference[:200] if case is not None else "",
        },
        **fields,
    )


# --- Background jobs: the admin's packages, kept in the exports storage -------------------

PACKAGE_FOLDER = "evidence-packages"
MAX_RECORDINGS = 1000
"""Recordings per package at most: a bigger case is packaged in parts (each is signed)."""


class PackageState:
    """Where a package job stands (``EvidencePackage.state``)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


def evidence_package_queue(
    *,
    recording_sids: Sequence[str],
    reason: str,
    requested_by: str,
    include_decrypted: bool,
    hold: LegalHold | None = None,
) -> EvidencePackage:
    """Record a package job for the recordings ``recording_sids`` and have it written in the
    background (at once in embedded mode); answers the job. Raises :class:`PackageError` for
    an empty reason or selection, or more than ``MAX_RECORDINGS`` recordings. Who may ask
    (decrypted audio needs a superuser) is the caller's to check."""
    reason = reason.strip()
    sids = list(dict.fromkeys(recording_sids))
    if not reason:
        raise PackageError("an evidence package needs a reason")
    if not sids:
        raise PackageError("an evidence package needs at least one recording")
    if len(sids) > MAX_RECORDINGS:
        raise PackageError(f"at most {MAX_RECORDINGS} recordings per package; make several")
    package = EvidencePackage.objects.create(
        requested_by=requested_by,
        reason=reason,
        include_decrypted=include_decrypted,
        recording_sids=sids,
        hold=hold,
    )
    package_id = package.pk
    transaction.on_commit(lambda: jobs.queue_evidence_package(package_id))
    return package


def evidence_package_for_case(
    *, hold: LegalHold, reason: str, requested_by: str, include_decrypted: bool
) -> EvidencePackage:
    """Queue the package of everything the legal hold ``hold`` (a case) covers now, with the
    case named in its manifest; see :func:`evidence_package_queue`."""
    covered = recordings_on_hold(Recording.objects.all(), held=True, holds=[hold])
    sids = list(
        covered.order_by("start_time", "pk").values_list("sid", flat=True)[: MAX_RECORDINGS + 1]
    )
    return evidence_package_queue(
        recording_sids=sids,
        reason=reason,
        requested_by=requested_by,
        include_decrypted=include_decrypted,
        hold=hold,
    )


def evidence_package_run(*, package_id: int) -> EvidencePackage:
    """Write a queued package to the exports storage, whole, record its size and SHA-256 and
    the export's access-log rows; a failure is recorded with its reason and nothing is kept
    (never raises)."""
    package = EvidencePackage.objects.select_related("hold").get(pk=package_id)
    if package.state == PackageState.RUNNING:
        # Delivered again while it runs: the worker that took it died (the broker hands an
        # unacknowledged job to another worker). Marked failed, not run again: a package that
        # kills its worker (memory, a huge file) would otherwise kill every worker in turn.
        evidence_package_abandon(package_id=package.pk, why=ABANDONED_REDELIVERED)
        return EvidencePackage.objects.get(pk=package.pk)
    started = timezone.now()
    claimed = EvidencePackage.objects.filter(pk=package.pk, state=PackageState.QUEUED).update(
        state=PackageState.RUNNING, started_at=started
    )
    if not claimed:  # done, failed or expired, or another worker claimed it first
        return EvidencePackage.objects.get(pk=package.pk)
    # The run's own row: a run the sweep gave up on finds no row to finish.
    mine = EvidencePackage.objects.filter(
        pk=package.pk, state=PackageState.RUNNING, started_at=started
    )
    by_sid = {r.sid: r for r in Recording.objects.filter(sid__in=package.recording_sids)}
    recordings = [by_sid[sid] for sid in package.recording_sids if sid in by_sid]
    exporter = f"admin:{package.requested_by}"
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    name = f"{PACKAGE_FOLDER}/evidence-package-{package.pk}-{stamp}.zip"
    try:
        missing = [sid for sid in package.recording_sids if sid not in by_sid]
        if missing:
            raise PackageError(f"no such recording: {', '.join(missing[:5])}")
        with tempfile.TemporaryFile() as spool:
            summary = evidence_package_write(
                recordings=recordings,
                reason=package.reason,
                exporter=exporter,
                include_decrypted=package.include_decrypted,
                output=spool,
                case=package.hold,
                package_id=package.pk,
            )
            spool.seek(0)
            stored = default_storage.save(name, File(spool, name=name))
    except Exception as exc:  # recorded and shown, never a silent partial package
        logger.exception("evidence package %s failed", package.pk)
        mine.update(
            state=PackageState.FAILED,
            error=f"{type(exc).__name__}: {exc}"[:2000],
            finished_at=timezone.now(),
        )
        access_log_append(
            action=EXPORT_ACTION,
            outcome="error",
            reason_code="evidence_package",
            identity=exporter,
            detail={"package_id": package.pk, "error": _SCHEME.sub("", str(exc))[:300]},
        )
    else:
        with transaction.atomic():
            finished = mine.update(
                state=PackageState.DONE,
                file_name=stored,
                size=summary.size,
                sha256=summary.sha256,
                finished_at=timezone.now(),
            )
            if not finished:
                # Given up on by the sweep meanwhile (marked failed, the officer told): this
                # late file is nobody's, and no export row names it.
                default_storage.delete(stored)
                return EvidencePackage.objects.get(pk=package.pk)
            evidence_package_record(
                summary=summary,
                recordings=recordings,
                reason=package.reason,
                exporter=exporter,
                include_decrypted=package.include_decrypted,
                package_id=package.pk,
                case=package.hold,
            )
    return EvidencePackage.objects.get(pk=package.pk)


ABANDONED_REDELIVERED = (
    "its worker stopped while writing it (the job was handed to another worker): ask for the "
    "package again"
)


def evidence_package_abandon(
    *, package_id: int, why: str, started_before: datetime | None = None
) -> bool:
    """Mark a package still ``running`` failed because its worker is gone (``why`` says how it
    was noticed, shown on the packages page), and write the ``admin_export`` error row with
    reason ``evidence_package_abandoned``; answers whether it did. ``started_before`` only
    gives up on a run that started before that moment (the sweep's timeout), so a run that
    started meanwhile is left alone. A run that later finishes anyway finds its row failed
    and deletes its file (:func:`evidence_package_run`)."""
    running = EvidencePackage.objects.filter(pk=package_id, state=PackageState.RUNNING)
    if started_before is not None:
        # A run from before ``started_at`` existed has none: it is older than any timeout.
        running = running.filter(Q(started_at__lt=started_before) | Q(started_at__isnull=True))
    with transaction.atomic():
        package = running.select_for_update().first()
        if package is None:
            return False
        EvidencePackage.objects.filter(pk=package.pk).update(
            state=PackageState.FAILED,
            error=f"Abandoned: {why}"[:2000],
            finished_at=timezone.now(),
        )
        access_log_append(
            action=EXPORT_ACTION,
            outcome="error",
            reason_code="evidence_package_abandoned",
            identity=f"admin:{package.requested_by}",
            detail={
                "package_id": package.pk,
                "started_at": package.started_at.isoformat() if package.started_at else None,
                "error": why[:300],
            },
        )
    logger.warning("evidence package %s abandoned: %s", package_id, why)
    return True


def evidence_packages_expire(*, now: datetime | None = None) -> int:
    """Delete the files of packages finished more than ``AUDIT_EXPORT_RETENTION_HOURS`` ago
    (they hold recordings, maybe decrypted: personal data kept no longer than the officer
    needs to download it, like the access-log exports); answers how many. The job rows stay."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.AUDIT_EXPORT_RETENTION_HOURS)
    expired = 0
    for package in EvidencePackage.objects.filter(state=PackageState.DONE, finished_at__lt=cutoff):
        default_storage.delete(package.file_name)
        EvidencePackage.objects.filter(pk=package.pk).update(state="expired", file_name="")
        expired += 1
    return expired
