"""Seal anchors outside the database: every seal document is also written where the database's
users cannot rewrite it, so deleting rows *and* their seals, or emptying both tables, is found
by comparing the two.

Production writes to an S3 bucket with Object Lock in compliance mode (``AUDIT_ANCHOR_BUCKET``;
each object retained ``AUDIT_ANCHOR_RETENTION_DAYS``, not even the account's root user can
delete or overwrite it before then); embedded mode, or a mounted WORM volume, writes files under
``AUDIT_ANCHOR_DIR``. An anchor is written once: the S3 write is conditional on the key being
empty, the file is created exclusively and made read-only. Every version found is compared, so
a second version put beside a locked one is reported too.

The kernel's bounded S3 client (``portal.s3``) is used directly: the audit core imports nothing
from ``recordings`` (whose storage module serves recordings), and django-storages cannot set
Object Lock retention on a write.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from audit.evidence import canonical_json
from portal.s3 import s3_client

PREFIX = "audit-seals/"


class AnchorUnavailable(Exception):
    """The anchor store cannot be read or written now (S3 down, folder missing)."""


class AnchorConflict(Exception):
    """Another document is already anchored under this seal's number."""


def anchor_name(number: int) -> str:
    """The object or file name of seal ``number``'s anchor."""
    return f"{PREFIX}{number:012d}.json"


@dataclass(frozen=True)
class Anchored:
    """What the store holds for one seal number: every version's document."""

    number: int
    documents: tuple[dict[str, Any], ...]


class AnchorStore(Protocol):
    """Where seals are anchored."""

    description: str

    def put(self, number: int, document: Mapping[str, Any]) -> None:
        """Anchor one seal document; idempotent for the same document."""

    def has(self, number: int) -> bool:
        """True when seal ``number`` is anchored (one cheap look, no read of its content)."""

    def numbers(self) -> set[int]:
        """The numbers of every anchored seal (a listing, no content read)."""

    def anchored(
        self, *, from_number: int = 1, through_number: int | None = None
    ) -> dict[int, Anchored]:
        """Every anchored seal from ``from_number`` on (through ``through_number`` when given),
        by number, with all its versions."""


class LocalAnchorStore:
    """Anchors as read-only files under a folder (embedded mode, or a WORM mount)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.description = f"folder {root}"

    def put(self, number: int, document: Mapping[str, Any]) -> None:
        """Create the anchor file exclusively; an identical one already there is fine."""
        path = self.root / anchor_name(number)
        body = canonical_json(document)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        except FileExistsError:
            if path.read_bytes() != body:
                raise AnchorConflict(f"{path} already holds another seal {number}") from None
            return
        except OSError as exc:
            raise AnchorUnavailable(f"cannot write {path}: {exc}") from exc
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())

    def has(self, number: int) -> bool:
        """True when the anchor file exists."""
        return (self.root / anchor_name(number)).exists()

    def numbers(self) -> set[int]:
        """The seal numbers of the anchor files."""
        folder = self.root / PREFIX
        try:
            return {int(path.stem) for path in folder.glob("*.json")} if folder.exists() else set()
        except ValueError as exc:
            raise AnchorUnavailable(f"a file under {folder} is not an anchor: {exc}") from exc

    def anchored(
        self, *, from_number: int = 1, through_number: int | None = None
    ) -> dict[int, Anchored]:
        """Every anchor file's document from ``from_number`` on (through ``through_number``
        when given), by seal number."""
        folder = self.root / PREFIX
        if not folder.exists():
            return {}
        found: dict[int, Anchored] = {}
        try:
            for path in sorted(folder.glob("*.json")):
                number = int(path.stem)
                if number < from_number or (through_number is not None and number > through_number):
                    continue
                found[number] = Anchored(number, (json.loads(path.read_bytes()),))
        except (OSError, ValueError) as exc:
            raise AnchorUnavailable(f"cannot read anchors under {folder}: {exc}") from exc
        return found


class S3AnchorStore:
    """Anchors as objects in an Object Lock bucket, each retained in compliance mode."""

    def __init__(self, bucket: str, retention_days: int) -> None:
        self.bucket = bucket
        self.retention_days = retention_days
        self.description = f"s3://{bucket} (Object Lock, compliance mode)"

    def _client(self) -> Any:
        return s3_client()

    def put(self, number: int, document: Mapping[str, Any]) -> None:
        """Write the anchor with compliance-mode retention, only if none is there yet."""
        body = canonical_json(document)
        existing = self.anchored_versions(number)
        if existing:
            if any(version != dict(document) for version in existing):
                raise AnchorConflict(f"s3://{self.bucket}/{anchor_name(number)} differs")
            return
        retain_until = datetime.now(UTC) + timedelta(days=self.retention_days)
        try:
            self._client().put_object(
                Bucket=self.bucket,
                Key=anchor_name(number),
                Body=body,
                ContentType="application/json",
                ObjectLockMode="COMPLIANCE",
                ObjectLockRetainUntilDate=retain_until,
                ChecksumAlgorithm="SHA256",
            )
        except (ClientError, BotoCoreError) as exc:
            raise AnchorUnavailable(f"cannot anchor seal {number}: {exc}") from exc

    def has(self, number: int) -> bool:
        """True when an object is at the seal's key (a HEAD request)."""
        try:
            self._client().head_object(Bucket=self.bucket, Key=anchor_name(number))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise AnchorUnavailable(f"cannot look for anchor {number}: {exc}") from exc
        except BotoCoreError as exc:
            raise AnchorUnavailable(f"cannot look for anchor {number}: {exc}") from exc
        return True

    def anchored_versions(self, number: int) -> list[dict[str, Any]]:
        """Every version of one seal's anchor (empty when there is none)."""
        found = self.anchored(prefix=anchor_name(number)).get(number)
        return list(found.documents) if found else []

    def numbers(self) -> set[int]:
        """The seal numbers of every anchor object (keys only, no content read)."""
        try:
            paginator = self._client().get_paginator("list_object_versions")
            return {
                int(version["Key"].removeprefix(PREFIX).removesuffix(".json"))
                for page in paginator.paginate(Bucket=self.bucket, Prefix=PREFIX)
                for version in page.get("Versions", [])
            }
        except (ClientError, BotoCoreError, ValueError) as exc:
            raise AnchorUnavailable(f"cannot list anchors in s3://{self.bucket}: {exc}") from exc

    def anchored(
        self, *, from_number: int = 1, through_number: int | None = None, prefix: str = PREFIX
    ) -> dict[int, Anchored]:
        """Every version of every anchor from ``from_number`` on (through ``through_number``
        when given), read back, by seal number."""
        client = self._client()
        documents: dict[int, list[dict[str, Any]]] = {}
        # Keys are zero-padded, so the listing is in seal order: start after the key before
        # ``from_number`` and stop past ``through_number`` rather than list years of anchors.
        start = {"KeyMarker": anchor_name(from_number - 1)} if from_number > 1 else {}
        try:
            paginator = client.get_paginator("list_object_versions")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, **start):
                for version in page.get("Versions", []):
                    key = version["Key"]
                    number = int(key.removeprefix(PREFIX).removesuffix(".json"))
                    if number < from_number:
                        continue
                    if through_number is not None and number > through_number:
                        return {n: Anchored(n, tuple(docs)) for n, docs in documents.items()}
                    body = client.get_object(
                        Bucket=self.bucket, Key=key, VersionId=version["VersionId"]
                    )["Body"].read()
                    documents.setdefault(number, []).append(json.loads(body))
        except (ClientError, BotoCoreError, ValueError) as exc:
            raise AnchorUnavailable(f"cannot read anchors in s3://{self.bucket}: {exc}") from exc
        return {number: Anchored(number, tuple(docs)) for number, docs in documents.items()}


def anchor_store() -> AnchorStore | None:
    """The configured anchor store: the Object Lock bucket, else the folder, else None."""
    if settings.AUDIT_ANCHOR_BUCKET:
        return S3AnchorStore(settings.AUDIT_ANCHOR_BUCKET, settings.AUDIT_ANCHOR_RETENTION_DAYS)
    if settings.AUDIT_ANCHOR_DIR:
        return LocalAnchorStore(Path(settings.AUDIT_ANCHOR_DIR))
    return None
