"""The only place that reads or writes recording files: the customer's S3 bucket(s), or the local
media folder in embedded mode. Also knows how to tell, from a URL Twilio reports, which bucket
and key a recording lives at.

Presigned links go through django-storages (``S3Storage.url(name, expire=…)``), configured by
the same ``AWS_*`` settings. boto3 is used directly only where django-storages cannot say what
the portal needs: ranged reads pinned to one object version with ``If-Match``, uploads made
only if the key is empty (``If-None-Match``), streamed multipart uploads whose ETag proves the
copy, and ``HEAD`` for an object's size, ETag and encryption metadata.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from botocore.exceptions import ClientError
from django.conf import settings
from storages.backends.s3 import S3Storage

from portal import s3 as portal_s3


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


def s3_client() -> Any:
    """The process-wide S3 client (``portal.s3``), every call bounded by the storage timeouts."""
    return portal_s3.s3_client()


@functools.cache
def _bucket_storage(
    bucket: str,
    endpoint: str | None,
    region: str | None,
    key_id: str | None,
    secret: str | None,
    timeouts: tuple[float, float],
) -> S3Storage:
    return S3Storage(
        bucket_name=bucket,
        endpoint_url=endpoint,
        region_name=region,
        access_key=key_id,
        secret_key=secret,
        # Carries the addressing style and signature version too: django-storages uses a given
        # client config as it is.
        client_config=portal_s3.client_config(endpoint, *timeouts, portal_s3.ATTEMPTS),
        querystring_auth=True,
        custom_domain=None,
    )


def bucket_storage(bucket: str = "") -> S3Storage:
    """django-storages' backend for one bucket (default ``AWS_STORAGE_BUCKET_NAME``), with the
    settings' endpoint, region, credentials and storage timeouts: recordings may name other
    buckets. Made once per bucket and settings."""
    return _bucket_storage(
        bucket or settings.AWS_STORAGE_BUCKET_NAME,
        settings.AWS_S3_ENDPOINT_URL,
        settings.AWS_S3_REGION_NAME,
        settings.AWS_ACCESS_KEY_ID,
        settings.AWS_SECRET_ACCESS_KEY,
        portal_s3.storage_timeouts(),
    )


def presigned_get_url(*, bucket: str, key: str, ttl: int) -> str:
    """A presigned GET URL for one object, valid ``ttl`` seconds. Computed locally (no call to
    S3); it is a credential: never log it."""
    return str(bucket_storage(bucket).url(key, expire=ttl))


def local_root() -> Path:
    """The folder that holds recordings in embedded mode."""
    return Path(settings.MEDIA_ROOT) / "recordings"


def check_ready(*, timeout: float) -> None:
    """Raise unless recordings storage answers within about ``timeout`` seconds: the bucket
    exists and is reachable (one attempt, no retry), or the local folder is writable."""
    if uses_s3():
        client = portal_s3.bounded_client(
            settings.AWS_S3_ENDPOINT_URL,
            settings.AWS_S3_REGION_NAME,
            settings.AWS_ACCESS_KEY_ID,
            settings.AWS_SECRET_ACCESS_KEY,
            (min(timeout, settings.STORAGE_CONNECT_TIMEOUT), timeout),
            1,
        )
        client.head_bucket(Bucket=settings.AWS_STORAGE_BUCKET_NAME)
        return
    root = local_root()
    root.mkdir(parents=True, exist_ok=True)
    probe = root / f".ready-{uuid.uuid4().hex}"
    probe.write_bytes(b"")
    probe.unlink()


class StorageError(Exception):
    """Reading a stored recording failed."""


def storage_error_reason(exc: Exception) -> str:
    """A storage error without its ``s3://bucket/key`` prefix, for an access-log row that
    names the object in fields of its own (the log refuses anything that looks like a link)."""
    return str(exc).split(": ", 1)[-1][:300]


class StorageNotFound(StorageError):
    """No object at that bucket and key (or no such local file)."""


class StorageUnavailable(StorageError):
    """The storage could not be reached or answered with an error: worth trying again."""


class StorageChanged(StorageError):
    """The object is not the one expected (its ETag changed since it was checked)."""


class StorageObjectExists(StorageError):
    """A write asked to create an object refused because one is already at that key."""


@dataclass(frozen=True)
class StoredObject:
    """What storage says about one object, without reading it."""

    size: int
    etag: str
    content_type: str
    metadata: dict[str, str]


READ_CHUNK = 256 * 1024


def _local_path(key: str) -> Path:
    root = local_root().resolve()
    path = (root / key).resolve()
    if root not in path.parents:
        raise StorageNotFound("key points outside the media folder")
    return path


def _local_etag(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_mtime_ns:x}-{stat.st_size:x}"


def _s3_error(exc: Exception, what: str) -> StorageError:
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in ("NoSuchKey", "NoSuchBucket", "404", "NotFound") or status == 404:
            return StorageNotFound(f"{what}: not found")
        if code in ("PreconditionFailed", "412") or status == 412:
            return StorageChanged(f"{what}: the object changed")
        return StorageUnavailable(f"{what}: S3 answered {code or status}")
    return StorageUnavailable(f"{what}: S3 unreachable ({type(exc).__name__})")


def object_stat(*, local: bool, bucket: str, key: str) -> StoredObject:
    """Size, ETag, content type and user metadata of a stored recording file."""
    if local:
        path = _local_path(key)
        if not path.is_file():
            raise StorageNotFound(f"{key}: no such file")
        return StoredObject(path.stat().st_size, _local_etag(path), "", {})
    try:
        head = s3_client().head_object(Bucket=bucket or settings.AWS_STORAGE_BUCKET_NAME, Key=key)
    except Exception as exc:
        raise _s3_error(exc, f"s3://{bucket}/{key}") from None
    return StoredObject(
        size=int(head["ContentLength"]),
        etag=head.get("ETag", ""),
        content_type=head.get("ContentType", ""),
        metadata={k.lower(): v for k, v in head.get("Metadata", {}).items()},
    )


def object_read(
    *, local: bool, bucket: str, key: str, start: int, end: int, if_match: str = ""
) -> Iterator[bytes]:
    """Bytes ``[start, end)`` of a stored recording file, streamed in chunks.

    With ``if_match`` (an ETag from :func:`object_stat`), a file that changed meanwhile is
    refused with :class:`StorageChanged` rather than served.
    """
    if end <= start:
        return
    if local:
        path = _local_path(key)
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise StorageNotFound(f"{key}: no such file") from None
        with handle:
            if if_match and _local_etag(path) != if_match:
                raise StorageChanged(f"{key}: the file changed")
            handle.seek(start)
            remaining = end - start
            while remaining > 0:
                chunk = handle.read(min(READ_CHUNK, remaining))
                if not chunk:
                    raise StorageChanged(f"{key}: the file is shorter than expected")
                remaining -= len(chunk)
                yield chunk
        return
    arguments = {
        "Bucket": bucket or settings.AWS_STORAGE_BUCKET_NAME,
        "Key": key,
        "Range": f"bytes={start}-{end - 1}",
    }
    if if_match:
        arguments["IfMatch"] = if_match
    try:
        body = s3_client().get_object(**arguments)["Body"]
    except Exception as exc:
        raise _s3_error(exc, f"s3://{arguments['Bucket']}/{key}") from None
    try:
        yield from body.iter_chunks(READ_CHUNK)
    except Exception as exc:
        raise _s3_error(exc, f"s3://{arguments['Bucket']}/{key}") from None
    finally:
        body.close()


# --- Writing: streamed uploads for the archive (``recordings.lifecycle.archive``) -----------

UPLOAD_PART_SIZE = 8 * 1024 * 1024


@dataclass(frozen=True)
class UploadResult:
    """What was written, computed over the bytes as they went out: their size, SHA-256, and
    the ETag S3 computes for such an upload when ETags are MD5-based (``md5`` for one part,
    ``md5(part md5s)-N`` for N parts); beside it ``etag``, the ETag S3 answered for the object
    it stored (empty from :func:`stream_digest`, which uploads nothing). When the two are
    equal, S3 computed over the bytes it received the digest we computed over the bytes we
    sent: the stored object is proven without reading it back or asking again."""

    size: int
    sha256: str
    expected_etag: str
    parts: int
    etag: str = ""

    @property
    def proven(self) -> bool:
        """True when S3's ETag for the stored object is the one computed over what was sent."""
        return bool(self.etag) and self.etag == self.expected_etag


def _write_error(exc: Exception, where: str, *, conditional: bool = False) -> StorageError:
    """Like :func:`_s3_error`, naming a missing bucket and a refused write plainly; for a
    write made ``only_if_absent``, S3's 412 means an object is already at the key."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if conditional and (code == "PreconditionFailed" or status == 412):
            return StorageObjectExists(f"{where}: an object is already there")
        if code == "NoSuchBucket":
            return StorageNotFound(f"{where}: the bucket does not exist")
        if code == "RequestTimeTooSkewed":
            return StorageUnavailable(
                f"{where}: S3 refused the request because this machine's clock is more than "
                "15 minutes off (RequestTimeTooSkewed); fix the clock (NTP)"
            )
        if code in ("AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId"):
            return StorageUnavailable(f"{where}: S3 refused the write ({code})")
    return _s3_error(exc, where)


def stream_digest(chunks: Iterable[bytes], *, part_size: int = UPLOAD_PART_SIZE) -> UploadResult:
    """Size, SHA-256 and expected ETag of a stream as :func:`object_write_stream` would upload
    it, without uploading: to tell whether an object already stored is these very bytes."""
    digests = _Digests()
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= part_size:
            digests.add_part(bytes(buffer[:part_size]))
            del buffer[:part_size]
    multipart = len(digests.part_md5s) > 0
    if buffer or not multipart:
        digests.add_part(buffer)
    return digests.result(multipart=multipart)


class _Digests:
    """SHA-256 of the whole stream plus the MD5 of each part, for the expected ETag."""

    def __init__(self) -> None:
        self.size = 0
        self.sha256 = hashlib.sha256()
        self.part_md5s: list[bytes] = []

    def add_part(self, data: bytes | bytearray) -> None:
        self.size += len(data)
        self.sha256.update(data)
        self.part_md5s.append(hashlib.md5(data, usedforsecurity=False).digest())

    def result(self, *, multipart: bool, stored_etag: str = "") -> UploadResult:
        if multipart:
            combined = hashlib.md5(b"".join(self.part_md5s), usedforsecurity=False).hexdigest()
            etag = f'"{combined}-{len(self.part_md5s)}"'
        else:
            etag = f'"{self.part_md5s[0].hex()}"' if self.part_md5s else ""
        return UploadResult(
            self.size, self.sha256.hexdigest(), etag, len(self.part_md5s), stored_etag
        )


def object_write_stream(
    *,
    bucket: str,
    key: str,
    chunks: Iterable[bytes],
    content_type: str = "application/octet-stream",
    metadata: dict[str, str] | None = None,
    part_size: int = UPLOAD_PART_SIZE,
    only_if_absent: bool = False,
) -> UploadResult:
    """Stream ``chunks`` into one S3 object in constant memory (at most one part buffered).

    Under ``part_size`` bytes it is one ``PutObject``; beyond, a multipart upload of
    ``part_size`` parts, aborted on any failure so no half-written object or orphaned parts
    remain (the object only appears when the upload completes). Errors reading ``chunks`` pass
    through unchanged; S3's are raised as :class:`StorageError`.

    With ``only_if_absent``, S3 stores the object only if none is at the key yet
    (``If-None-Match: *``, checked atomically by S3 when the object would appear) and
    :class:`StorageObjectExists` is raised otherwise, so nothing already there is replaced
    unseen. A store that ignores the condition simply writes.
    """
    client = s3_client()
    bucket = bucket or settings.AWS_STORAGE_BUCKET_NAME
    extra: dict[str, Any] = {"ContentType": content_type, "Metadata": metadata or {}}
    condition: dict[str, Any] = {"IfNoneMatch": "*"} if only_if_absent else {}
    digests = _Digests()
    buffer = bytearray()
    upload_id = ""
    parts: list[dict[str, Any]] = []
    where = f"s3://{bucket}/{key}"

    def send_part(data: bytes) -> None:
        nonlocal upload_id
        try:
            if not upload_id:
                upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, **extra)[
                    "UploadId"
                ]
            number = len(parts) + 1
            answer = client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
            )
        except Exception as exc:
            raise _write_error(exc, where) from None
        parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    try:
        for chunk in chunks:
            buffer += chunk
            while len(buffer) >= part_size:
                part = bytes(buffer[:part_size])
                del buffer[:part_size]
                digests.add_part(part)
                send_part(part)
        if upload_id:
            if buffer:
                digests.add_part(buffer)
                send_part(bytes(buffer))
            try:
                answer = client.complete_multipart_upload(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                    **condition,
                )
            except Exception as exc:
                raise _write_error(exc, where, conditional=only_if_absent) from None
            upload_id = ""
            return digests.result(multipart=True, stored_etag=answer.get("ETag", ""))
        digests.add_part(buffer)
        try:
            answer = client.put_object(
                Bucket=bucket, Key=key, Body=bytes(buffer), **extra, **condition
            )
        except Exception as exc:
            raise _write_error(exc, where, conditional=only_if_absent) from None
        return digests.result(multipart=False, stored_etag=answer.get("ETag", ""))
    finally:
        if upload_id:
            with contextlib.suppress(Exception):  # best effort: a lifecycle rule cleans up too
                client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


def object_sha256(*, bucket: str, key: str, if_match: str = "") -> tuple[int, str]:
    """Size and SHA-256 of a stored S3 object, read back in full in constant memory; for
    objects whose ETag says nothing about their content (SSE-KMS, foreign uploads)."""
    stat = object_stat(local=False, bucket=bucket, key=key)
    digest = hashlib.sha256()
    size = 0
    for chunk in object_read(
        local=False, bucket=bucket, key=key, start=0, end=stat.size, if_match=if_match or stat.etag
    ):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def object_delete(*, local: bool, bucket: str, key: str) -> None:
    """Delete a stored recording file for good (retention); an object already gone counts as
    deleted, so a rerun after a crash finishes quietly. S3's refusals are raised as
    :class:`StorageError` (``StorageUnavailable``: worth trying again)."""
    if local:
        path = _local_path(key)
        path.unlink(missing_ok=True)
        return
    where = f"s3://{bucket}/{key}"
    try:
        s3_client().delete_object(Bucket=bucket or settings.AWS_STORAGE_BUCKET_NAME, Key=key)
    except Exception as exc:
        error = _write_error(exc, where)
        if isinstance(error, StorageNotFound) and "bucket" not in str(error):
            return
        raise error from None


# --- Derived data (``recordings.analysis``): small files computed from a recording ---------
# Kept beside the recordings (the default bucket, or the local media folder) under ``derived/``,
# so they share the recordings' access controls and lifecycle rules.

DERIVED_PREFIX = "derived/"


def _derived_path(key: str) -> Path:
    root = (Path(settings.MEDIA_ROOT) / "derived").resolve()
    path = (root / key).resolve()
    if root not in path.parents:
        raise StorageNotFound("key points outside the derived-data folder")
    return path


def derived_write(*, key: str, data: bytes, content_type: str = "application/json") -> None:
    """Store one derived file (replacing any older one at ``key``)."""
    if not uses_s3():
        path = _derived_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        partial.write_bytes(data)
        partial.replace(path)  # atomic: a reader sees the old file or the new one
        return
    where = f"s3://{settings.AWS_STORAGE_BUCKET_NAME}/{DERIVED_PREFIX}{key}"
    try:
        s3_client().put_object(
            Bucket=settings.AWS_STORAGE_BUCKET_NAME,
            Key=DERIVED_PREFIX + key,
            Body=data,
            ContentType=content_type,
        )
    except Exception as exc:
        raise _write_error(exc, where) from None


def derived_read(*, key: str) -> bytes:
    """A derived file's bytes; :class:`StorageNotFound` when there is none."""
    if not uses_s3():
        path = _derived_path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise StorageNotFound(f"{key}: no such derived file") from None
    bucket = settings.AWS_STORAGE_BUCKET_NAME
    try:
        body = s3_client().get_object(Bucket=bucket, Key=DERIVED_PREFIX + key)["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()
    except Exception as exc:
        raise _s3_error(exc, f"s3://{bucket}/{DERIVED_PREFIX}{key}") from None


def derived_delete(*, key: str) -> None:
    """Delete a derived file; one already gone counts as deleted."""
    if not uses_s3():
        _derived_path(key).unlink(missing_ok=True)
        return
    bucket = settings.AWS_STORAGE_BUCKET_NAME
    try:
        s3_client().delete_object(Bucket=bucket, Key=DERIVED_PREFIX + key)
    except Exception as exc:  # S3 answers a missing key with success: any error is real
        raise _write_error(exc, f"s3://{bucket}/{DERIVED_PREFIX}{key}") from None


# --- S3 Object Lock legal holds (``recordings.lifecycle.hold_locks``) ---------------------------
# boto3 directly: django-storages knows nothing of Object Lock. A legal hold on an object
# version makes S3 itself refuse to delete or overwrite that version until the hold is cleared,
# whoever asks; only a bucket created (or later configured) with Object Lock accepts one.


class ObjectLockNotEnabled(StorageError):
    """The bucket has no Object Lock configuration, so S3 cannot hold its objects."""


def bucket_object_lock_enabled(*, bucket: str) -> bool:
    """True when ``bucket`` has Object Lock enabled (``GetObjectLockConfiguration``); a bucket
    without a configuration answers False, any other failure raises :class:`StorageError`."""
    try:
        answer = s3_client().get_object_lock_configuration(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ObjectLockConfigurationNotFoundError":
            return False
        raise _s3_error(exc, f"s3://{bucket}") from None
    except Exception as exc:
        raise _s3_error(exc, f"s3://{bucket}") from None
    config = answer.get("ObjectLockConfiguration", {})
    return str(config.get("ObjectLockEnabled", "")) == "Enabled"


def object_legal_hold_set(*, bucket: str, key: str, on: bool, version_id: str = "") -> str:
    """Set (``on``) or clear the Object Lock legal hold of one object version and answer the
    version's id: ``version_id``, or, when empty, the current version's, read first so that the
    hold and every later read-back name the same version even if a newer one appears.
    :class:`ObjectLockNotEnabled` when the bucket cannot hold objects."""
    where = f"s3://{bucket}/{key}"
    client = s3_client()
    try:
        if not version_id:
            version_id = str(client.head_object(Bucket=bucket, Key=key).get("VersionId") or "")
        arguments: dict[str, Any] = {
            "Bucket": bucket,
            "Key": key,
            "LegalHold": {"Status": "ON" if on else "OFF"},
        }
        if version_id and version_id != "null":
            arguments["VersionId"] = version_id
        client.put_object_legal_hold(**arguments)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "InvalidRequest" and "Object Lock" in str(
            error.get("Message", "")
        ).replace("ObjectLock", "Object Lock"):
            raise ObjectLockNotEnabled(
                f"{where}: Object Lock is not enabled on the bucket"
            ) from None
        raise _write_error(exc, where) from None
    except Exception as exc:
        raise _write_error(exc, where) from None
    return version_id


def object_legal_hold_status(*, bucket: str, key: str, version_id: str = "") -> str:
    """The Object Lock legal hold status S3 reports for one object version (``GetObjectLegalHold``):
    ``ON`` or ``OFF`` (an object never held has no status: ``OFF``)."""
    where = f"s3://{bucket}/{key}"
    arguments: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id and version_id != "null":
        arguments["VersionId"] = version_id
    try:
        answer = s3_client().get_object_legal_hold(**arguments)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code == "NoSuchObjectLockConfiguration":
            return "OFF"
        if code == "InvalidRequest":
            raise ObjectLockNotEnabled(
                f"{where}: Object Lock is not enabled on the bucket"
            ) from None
        raise _s3_error(exc, where) from None
    except Exception as exc:
        raise _s3_error(exc, where) from None
    return str((answer.get("LegalHold") or {}).get("Status") or "OFF")
