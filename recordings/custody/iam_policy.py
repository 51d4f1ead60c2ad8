"""IAM policies for Twilio Voice's external S3 storage, generated from a bucket and a path.

Two policies, each least privilege:

* ``upload_policy``: for the IAM user whose access key is given to Twilio. It may write objects
  under ``BUCKET/PATH`` (``s3:PutObject``, which covers the multipart create/upload/complete
  calls, plus aborting and listing the parts of its own multipart uploads) and list the
  bucket's in-progress multipart uploads, nothing else: an explicit ``Deny`` of every other
  action and every other resource, so a broader policy attached to the same user by mistake
  cannot widen it. It cannot read, list or delete recordings.
* ``portal_policy``: for the portal's own credentials, made of the :class:`Grant` s its
  enabled features need (:func:`portal_grants`), nothing more. Always: read objects under the
  path (``s3:GetObject``, which also answers ``HEAD``, so media integrity checks and ranged
  playback work) and list the bucket (``s3:ListBucket``: the readiness check's ``HeadBucket``
  needs it, and without it a missing object answers 403 instead of 404). Then, only when the
  feature is on: the archive writes copies under each enabled archive policy's prefix
  (``PutObject``, ``AbortMultipartUpload`` for a failed multipart upload, ``GetObject`` to
  check the copy); retention and deletion by hand delete media (``DeleteObject``) and the
  waveform data derived from it; the portal's own bucket keeps waveform data (``derived/``)
  and the officers' log exports (``audit-exports/``); the audit anchors are written once into
  an Object Lock bucket with compliance-mode retention (``PutObject`` plus
  ``PutObjectRetention``, which S3 requires for a write that sets a retain-until date) and read
  back by version (``GetObjectVersion``, ``ListBucketVersions``). With none of these on, the
  policy is read-only.

Pure functions (:func:`portal_features_current` aside, which reads the settings and the
policies' rows): no AWS call is made. ``portal.health.storage_permissions_probe`` tries the
grants against S3 with the portal's credentials.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from recordings.models import ArchivePolicy, Recording, RetentionPolicy

UPLOAD_ACTIONS = ("s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts")
BUCKET_UPLOAD_ACTIONS = ("s3:ListBucketMultipartUploads",)
READ_ACTIONS = ("s3:GetObject",)
BUCKET_READ_ACTIONS = ("s3:ListBucket",)
WRITE_ACTIONS = ("s3:PutObject", "s3:AbortMultipartUpload")
DELETE_ACTIONS = ("s3:DeleteObject",)
ANCHOR_ACTIONS = ("s3:PutObject", "s3:PutObjectRetention", "s3:GetObject", "s3:GetObjectVersion")
BUCKET_ANCHOR_ACTIONS = ("s3:ListBucket", "s3:ListBucketVersions")
# The portal's own prefixes in its bucket (recordings.integrations.storage.DERIVED_PREFIX,
# audit.admin.export_jobs.EXPORT_FOLDER, audit.anchors.PREFIX); named here, not imported, so
# custody keeps its arrows (a test checks they agree).
DERIVED_PREFIX = "derived/"
EXPORTS_PREFIX = "audit-exports/"
ANCHORS_PREFIX = "audit-seals/"

# S3's bucket naming rules (general purpose buckets).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP_ADDRESS = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
# Path characters: RFC 3986 unreserved characters and "/" (no IAM wildcards, no percent signs).
_PATH = re.compile(r"[A-Za-z0-9\-._~/]*")
_PATH_MAX_LENGTH = 512


class PolicyInputError(ValueError):
    """The bucket or the path cannot be used; the message says why."""


@dataclass(frozen=True)
class StoragePolicies:
    """The two policies for one bucket and path, and the values they were made from."""

    bucket: str
    prefix: str
    upload_policy: dict[str, Any]
    portal_policy: dict[str, Any]
    grants: tuple[Grant, ...] = ()

    @property
    def upload_json(self) -> str:
        """``upload_policy`` as indented JSON, ready to paste into IAM."""
        return json.dumps(self.upload_policy, indent=2)

    @property
    def portal_json(self) -> str:
        """``portal_policy`` as indented JSON, ready to paste into IAM."""
        return json.dumps(self.portal_policy, indent=2)

    @property
    def portal_read_only(self) -> bool:
        """True when no enabled feature makes the portal write or delete."""
        return all(grant.read_only for grant in self.grants)


@dataclass(frozen=True)
class Grant:
    """Actions the portal needs on one bucket (``prefix`` ``None``) or on the objects under one
    prefix of it (``""``: the whole bucket), and the feature that needs them."""

    sid: str
    feature: str
    bucket: str
    prefix: str | None
    actions: tuple[str, ...]

    @property
    def resource(self) -> str:
        """The IAM resource: the bucket's ARN, or its objects' under the prefix."""
        if self.prefix is None:
            return f"arn:aws:s3:::{self.bucket}"
        return f"arn:aws:s3:::{self.bucket}/{self.prefix}*"

    @property
    def read_only(self) -> bool:
        """True when every action only reads or lists."""
        return all(action.startswith(("s3:Get", "s3:List")) for action in self.actions)


@dataclass(frozen=True)
class PortalFeatures:
    """What the portal does with S3, as the settings and the policies' rows say.

    ``storage_bucket``: ``AWS_STORAGE_BUCKET_NAME`` (the portal's own files: waveform data and
    log exports), empty when they are local files. ``archive_targets``: ``(bucket, prefix)`` of
    each enabled archive policy. ``deletes``: an enabled retention policy, or recordings deleted
    by hand waiting for their media to be deleted. ``anchor_bucket``: ``AUDIT_ANCHOR_BUCKET``.
    """

    storage_bucket: str = ""
    archive_targets: tuple[tuple[str, str], ...] = ()
    deletes: bool = False
    anchor_bucket: str = ""
    notes: tuple[str, ...] = field(default=(), compare=False)


def bucket_name_problem(bucket: str) -> str | None:
    """Why ``bucket`` is not a valid S3 bucket name, or ``None``."""
    if not _BUCKET.fullmatch(bucket):
        return (
            "a bucket name is 3 to 63 lowercase letters, digits, dots and hyphens, beginning "
            "and ending with a letter or digit"
        )
    if ".." in bucket or ".-" in bucket or "-." in bucket:
        return "a bucket name has no two adjacent dots, and no dot next to a hyphen"
    if _IP_ADDRESS.fullmatch(bucket):
        return "a bucket name must not look like an IP address"
    return None


def path_prefix(path: str) -> str:
    """The object-key prefix for ``path``: without leading slashes and ending in one (so
    ``recordings`` does not also cover ``recordings-old/``); empty for the whole bucket.
    Raises :class:`PolicyInputError` for characters IAM or S3 would read differently."""
    cleaned = path.strip().strip("/")
    if len(cleaned) > _PATH_MAX_LENGTH:
        raise PolicyInputError(f"the path is longer than {_PATH_MAX_LENGTH} characters")
    if not _PATH.fullmatch(cleaned):
        raise PolicyInputError(
            "the path may hold only letters, digits, '-', '.', '_', '~' and '/' "
            "(no wildcards, spaces or percent signs)"
        )
    if "//" in cleaned or any(part in (".", "..") for part in cleaned.split("/")):
        raise PolicyInputError("the path has an empty, '.' or '..' segment")
    return f"{cleaned}/" if cleaned else ""


def _object_prefix(prefix: str) -> str:
    """An archive policy's ``key_prefix`` as an IAM object prefix (``recordings`` ->
    ``recordings/``), like :func:`path_prefix` but never raising: archive prefixes were
    validated when the policy was saved."""
    cleaned = prefix.strip().strip("/")
    return f"{cleaned}/" if cleaned else ""


def portal_grants(*, bucket: str, prefix: str, features: PortalFeatures) -> list[Grant]:
    """What the portal's credentials need, feature by feature, for recordings Twilio writes
    under ``prefix`` in ``bucket`` (see the module docstring). One grant per resource and
    feature; the same bucket listed twice is granted once."""
    grants = [
        Grant(
            "PortalReadsRecordings", "Playback and integrity checks", bucket, prefix, READ_ACTIONS
        )
    ]
    if features.deletes:
        grants.append(
            Grant(
                "RetentionDeletesRecordings",
                "Retention and deletion",
                bucket,
                prefix,
                DELETE_ACTIONS,
            )
        )
    list_buckets = [bucket]
    for n, (target_bucket, target_prefix) in enumerate(features.archive_targets, start=1):
        archive_prefix = _object_prefix(target_prefix)
        actions = (*WRITE_ACTIONS, *READ_ACTIONS) + (DELETE_ACTIONS if features.deletes else ())
        grants.append(
            Grant(f"ArchiveWritesCopies{n}", "Archive", target_bucket, archive_prefix, actions)
        )
        list_buckets.append(target_bucket)
    if features.storage_bucket:
        derived = (*WRITE_ACTIONS[:1], *READ_ACTIONS) + (DELETE_ACTIONS if features.deletes else ())
        grants.append(
            Grant("WaveformData", "Waveforms", features.storage_bucket, DERIVED_PREFIX, derived)
        )
        grants.append(
            Grant(
                "AccessLogExports",
                "Access-log exports",
                features.storage_bucket,
                EXPORTS_PREFIX,
                (*WRITE_ACTIONS, *READ_ACTIONS, *DELETE_ACTIONS),
            )
        )
        list_buckets.append(features.storage_bucket)
    for n, listed in enumerate(dict.fromkeys(list_buckets), start=1):
        grants.append(
            Grant(f"PortalListsBucket{n}", "Readiness and 404s", listed, None, BUCKET_READ_ACTIONS)
        )
    if features.anchor_bucket:
        grants.append(
            Grant(
                "AuditAnchors",
                "Audit anchors",
                features.anchor_bucket,
                ANCHORS_PREFIX,
                ANCHOR_ACTIONS,
            )
        )
        grants.append(
            Grant(
                "AuditAnchorsListed",
                "Audit anchors",
                features.anchor_bucket,
                None,
                BUCKET_ANCHOR_ACTIONS,
            )
        )
    return grants


def policy_document(grants: list[Grant] | tuple[Grant, ...]) -> dict[str, Any]:
    """An IAM policy allowing exactly ``grants``, one statement each."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": grant.sid,
                "Effect": "Allow",
                "Action": list(grant.actions),
                "Resource": grant.resource,
            }
            for grant in grants
        ],
    }


def portal_features_current() -> PortalFeatures:
    """The portal's features as its settings and enabled policies are now."""
    notes: list[str] = []
    targets: list[tuple[str, str]] = []
    for policy in ArchivePolicy.objects.filter(enabled=True).order_by("account_sid"):
        target = policy.bucket or settings.AWS_STORAGE_BUCKET_NAME
        if not target:
            notes.append(
                f"The archive policy for {policy} names no bucket and AWS_STORAGE_BUCKET_NAME "
                "is unset: it cannot archive, so it is left out."
            )
            continue
        if (target, policy.key_prefix) not in targets:
            targets.append((target, policy.key_prefix))
    deletes = (
        RetentionPolicy.objects.filter(enabled=True).exists()
        or Recording.objects.filter(
            soft_deleted_at__isnull=False, hard_deleted_at__isnull=True
        ).exists()
    )
    return PortalFeatures(
        storage_bucket=settings.AWS_STORAGE_BUCKET_NAME,
        archive_targets=tuple(targets),
        deletes=deletes,
        anchor_bucket=settings.AUDIT_ANCHOR_BUCKET,
        notes=tuple(notes),
    )


def storage_policies(
    *, bucket: str, path: str, features: PortalFeatures | None = None
) -> StoragePolicies:
    """The upload policy and the portal's policy for objects under ``path`` in ``bucket`` (see
    the module docstring); ``features`` says what else the portal does (none: read-only).
    Raises :class:`PolicyInputError` for an unusable bucket or path."""
    bucket = bucket.strip()
    problem = bucket_name_problem(bucket)
    if problem:
        raise PolicyInputError(problem)
    prefix = path_prefix(path)
    bucket_arn = f"arn:aws:s3:::{bucket}"
    objects_arn = f"{bucket_arn}/{prefix}*"
    upload = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "TwilioWritesRecordings",
                "Effect": "Allow",
                "Action": list(UPLOAD_ACTIONS),
                "Resource": objects_arn,
            },
            {
                "Sid": "TwilioListsItsMultipartUploads",
                "Effect": "Allow",
                "Action": list(BUCKET_UPLOAD_ACTIONS),
                "Resource": bucket_arn,
            },
            {
                "Sid": "DenyEveryOtherAction",
                "Effect": "Deny",
                "NotAction": [*UPLOAD_ACTIONS, *BUCKET_UPLOAD_ACTIONS],
                "Resource": "*",
            },
            {
                "Sid": "DenyWritingElsewhere",
                "Effect": "Deny",
                "Action": list(UPLOAD_ACTIONS),
                "NotResource": objects_arn,
            },
            {
                "Sid": "DenyOtherBuckets",
                "Effect": "Deny",
                "Action": list(BUCKET_UPLOAD_ACTIONS),
                "NotResource": bucket_arn,
            },
        ],
    }
    grants = tuple(
        portal_grants(bucket=bucket, prefix=prefix, features=features or PortalFeatures())
    )
    return StoragePolicies(
        bucket=bucket,
        prefix=prefix,
        upload_policy=upload,
        portal_policy=policy_document(grants),
        grants=grants,
    )
