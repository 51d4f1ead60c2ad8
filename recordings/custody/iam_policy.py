"""IAM policies for Twilio Voice's external S3 storage, generated from a bucket and a path.

Two policies, each least privilege:

* ``upload_policy``: for the IAM user whose access key is given to Twilio. It may write objects
  under ``BUCKET/PATH`` (``s3:PutObject``, which covers the multipart create/upload/complete
  calls, plus aborting and listing the parts of its own multipart uploads) and list the
  bucket's in-progress multipart uploads, nothing else: an explicit ``Deny`` of every other
  action and every other resource, so a broader policy attached to the same user by mistake
  cannot widen it. It cannot read, list or delete recordings.
* ``read_policy``: for the portal's own credentials. It may read objects under the path
  (``s3:GetObject``, which also answers ``HEAD``, so media integrity checks and ranged
  playback work) and list the bucket (``s3:ListBucket``: the readiness check's ``HeadBucket``
  needs it, and without it a missing object answers 403 instead of 404). It cannot write or
  delete.

Pure functions: no AWS call is made.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

UPLOAD_ACTIONS = ("s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts")
BUCKET_UPLOAD_ACTIONS = ("s3:ListBucketMultipartUploads",)
READ_ACTIONS = ("s3:GetObject",)
BUCKET_READ_ACTIONS = ("s3:ListBucket",)

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
    read_policy: dict[str, Any]

    @property
    def upload_json(self) -> str:
        """``upload_policy`` as indented JSON, ready to paste into IAM."""
        return json.dumps(self.upload_policy, indent=2)

    @property
    def read_json(self) -> str:
        """``read_policy`` as indented JSON, ready to paste into IAM."""
        return json.dumps(self.read_policy, indent=2)


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


def storage_policies(*, bucket: str, path: str) -> StoragePolicies:
    """The upload and read policies for objects under ``path`` in ``bucket`` (see the module
    docstring). Raises :class:`PolicyInputError` for an unusable bucket or path."""
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
    read = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PortalReadsRecordings",
                "Effect": "Allow",
                "Action": list(READ_ACTIONS),
                "Resource": objects_arn,
            },
            {
                "Sid": "PortalChecksTheBucket",
                "Effect": "Allow",
                "Action": list(BUCKET_READ_ACTIONS),
                "Resource": bucket_arn,
            },
        ],
    }
    return StoragePolicies(bucket=bucket, prefix=prefix, upload_policy=upload, read_policy=read)
