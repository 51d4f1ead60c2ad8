"""The only place that reads or writes recording files: the customer's S3 bucket(s), or the local
media folder in embedded mode. Also knows how to tell, from a URL Twilio reports, which bucket
and key a recording lives at.
"""

from __future__ import annotations

import functools
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import boto3
from botocore.config import Config
from django.conf import settings


@dataclass(frozen=True)
class S3Location:
    """A bucket and an object key."""

    bucket: str
    key: str


_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# bucket.s3.amazonaws.com, bucket.s3.eu-west-1.amazonaws.com, bucket.s3-eu-west-1.amazonaws.com,
# bucket.s3.dualstack.eu-west-1.amazonaws.com
_VIRTUAL_HOST = re.compile(
    r"^(?P<bucket>.+?)\.s3(?:[.-](?:dualstack\.)?[a-z0-9-]+)?\.amazonaws\.com(?:\.cn)?$"
)
# s3.amazonaws.com, s3.eu-west-1.amazonaws.com, s3-eu-west-1.amazonaws.com
_PATH_STYLE_HOST = re.compile(r"^s3(?:[.-](?:dualstack\.)?[a-z0-9-]+)?\.amazonaws\.com(?:\.cn)?$")


def parse_s3_url(url: str) -> S3Location | None:
    """Bucket and key of an S3 object URL, virtual-host or path style; None if it is not one.

    URLs on the configured ``AWS_S3_ENDPOINT_URL`` host (MinIO, moto, a VPC endpoint) are read
    path-style. Query strings (e.g. a presigned signature) are ignored.
    """
    if not url:
        return None
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    path = unquote(parts.path)
    if parts.scheme not in ("http", "https") or not host:
        return None
    location: S3Location | None = None
    virtual = _VIRTUAL_HOST.match(host)
    if virtual and not _PATH_STYLE_HOST.match(host):
        location = S3Location(virtual.group("bucket"), path.lstrip("/"))
    elif _PATH_STYLE_HOST.match(host) or _is_configured_endpoint(parts.netloc):
        bucket, _, key = path.lstrip("/").partition("/")
        location = S3Location(bucket, key)
    if location and _BUCKET_NAME.match(location.bucket) and location.key:
        return location
    return None


def _is_configured_endpoint(netloc: str) -> bool:
    endpoint = settings.AWS_S3_ENDPOINT_URL
    return bool(endpoint) and urlsplit(endpoint).netloc.lower() == netloc.lower()


def uses_s3() -> bool:
    """True when recordings are kept in S3 (``AWS_STORAGE_BUCKET_NAME`` set)."""
    return bool(settings.AWS_STORAGE_BUCKET_NAME)


@functools.cache
def _s3_client(endpoint: str | None, region: str | None, key_id: str | None, secret: str | None):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(
            signature_version="s3v4",
            connect_timeout=3,
            read_timeout=10,
            retries={"max_attempts": 2, "mode": "standard"},
        ),
    )


def s3_client():
    """The process-wide boto3 S3 client (creating one costs ~5 ms, so it is made once)."""
    return _s3_client(
        settings.AWS_S3_ENDPOINT_URL,
        settings.AWS_S3_REGION_NAME,
        settings.AWS_ACCESS_KEY_ID,
        settings.AWS_SECRET_ACCESS_KEY,
    )


def local_root() -> Path:
    """The folder that holds recordings in embedded mode."""
    return Path(settings.MEDIA_ROOT) / "recordings"


def check_ready() -> None:
    """Raise unless recordings storage answers: the bucket exists and is reachable, or the local
    folder is writable."""
    if uses_s3():
        s3_client().head_bucket(Bucket=settings.AWS_STORAGE_BUCKET_NAME)
        return
    root = local_root()
    root.mkdir(parents=True, exist_ok=True)
    probe = root / f".ready-{uuid.uuid4().hex}"
    probe.write_bytes(b"")
    probe.unlink()
