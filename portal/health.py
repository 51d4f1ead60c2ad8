"""Liveness and readiness endpoints for load balancers and orchestrators, and the probe of what
the portal's S3 credentials may do (:func:`storage_permissions_probe`).

The probe is not part of ``/readyz``: it makes one S3 request per action and resource (a dozen
or more with every feature on), and orchestrators poll readiness every few seconds; permissions
change when someone edits IAM, not between two polls. Superusers run it from the IAM policy
page, after changing a policy or the credentials.
"""

from __future__ import annotations

import base64
import contextvars
import functools
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils.cache import add_never_cache_headers
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.views import APIView

from portal.negotiation import FixedFormat
from portal.s3 import s3_client
from recordings.integrations import storage

logger = logging.getLogger(__name__)


class _HealthView(APIView):
    authentication_classes: list = []
    permission_classes: list = []
    content_negotiation_class = FixedFormat
    http_method_names = ["get"]


_READINESS = inline_serializer(
    "Readiness",
    fields={
        "status": serializers.ChoiceField(choices=["ready", "unavailable"]),
        "checks": serializers.DictField(
            child=serializers.CharField(), help_text='each dependency: "ok" or "failed: …"'
        ),
    },
)


class HealthzView(_HealthView):
    """Liveness, for load balancers."""

    @extend_schema(
        operation_id="healthz",
        summary="Liveness: 200 while the process runs",
        responses={
            200: inline_serializer(
                "Liveness", fields={"status": serializers.ChoiceField(choices=["ok"])}
            )
        },
    )
    def get(self, request: Request) -> JsonResponse:
        """200 while the process can answer at all."""
        return healthz_answer(request)


class ReadyzView(_HealthView):
    """Readiness, for orchestrators."""

    @extend_schema(
        operation_id="readyz",
        summary="Readiness: the database, the broker and the storage answer",
        responses={
            200: OpenApiResponse(_READINESS, description="every dependency answers"),
            503: OpenApiResponse(_READINESS, description="the checks named failed"),
        },
    )
    def get(self, request: Request) -> JsonResponse:
        """200 when every dependency answers, 503 naming those that do not."""
        return readyz_answer(request)


def healthz_answer(request: HttpRequest) -> JsonResponse:
    """200 while the process can answer at all; checks nothing else on purpose."""
    response = JsonResponse({"status": "ok"})
    add_never_cache_headers(response)
    return response


def _check_database() -> None:
    # Runs in a thread of its own, so on a connection of its own: closed here, not left open.
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()


def _check_redis(timeout: float) -> None:
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=timeout, socket_timeout=timeout
    )
    try:
        client.ping()
    finally:
        client.close()


def readiness_checks(*, timeout: float) -> dict[str, Callable[[], None]]:
    """The dependencies that must answer before this instance takes traffic, each check given
    ``timeout`` seconds where its client takes a timeout."""
    checks: dict[str, Callable[[], None]] = {
        "database": _check_database,
        "storage": functools.partial(storage.check_ready, timeout=timeout),
    }
    if settings.REDIS_URL:
        checks["redis"] = functools.partial(_check_redis, timeout)
    return checks


# The thread of each check still running, so a dependency that hangs holds one thread per
# process, not one more per request.
_running: dict[str, threading.Thread] = {}
_running_lock = threading.Lock()


def _outcome(check: Callable[[], None], outcomes: dict[str, str], name: str) -> None:
    try:
        check()
    except Exception as exc:
        outcomes[name] = f"failed: {type(exc).__name__}"
    else:
        outcomes[name] = "ok"


def checks_run(checks: dict[str, Callable[[], None]], *, timeout: float) -> dict[str, str]:
    """Run every check at once and answer within ``timeout`` seconds whatever hangs: ``ok``, or
    ``failed: …`` naming the error, or that no answer came in time.

    Each check runs in a daemon thread (one that hangs never holds the process at exit). A
    check whose previous run is still hanging is not started again: it is reported failed at
    once, so repeated probes of a hung dependency do not pile up threads.
    """
    outcomes: dict[str, str] = {}
    started: list[threading.Thread] = []
    for name, check in checks.items():
        with _running_lock:
            previous = _running.get(name)
            if previous is not None and previous.is_alive():
                outcomes[name] = "failed: the previous check has not answered yet"
                continue
            # The request's context (its id in log lines) goes with the check.
            thread = threading.Thread(
                target=contextvars.copy_context().run,
                args=(_outcome, check, outcomes, name),
                name=f"readiness-{name}",
                daemon=True,
            )
            _running[name] = thread
        thread.start()
        started.append(thread)
    deadline = time.monotonic() + timeout
    for thread in started:
        thread.join(max(0.0, deadline - time.monotonic()))
    return {
        name: outcomes.get(name) or f"failed: no answer within {timeout:g} s" for name in checks
    }


def readyz_answer(request: HttpRequest) -> JsonResponse:
    """200 when every dependency answers; 503 naming each one that does not. Answers within
    ``READINESS_TIMEOUT`` seconds (plus the time to start the checks) even when one hangs."""
    timeout = settings.READINESS_TIMEOUT
    results = checks_run(readiness_checks(timeout=timeout), timeout=timeout)
    for name, outcome in results.items():
        if outcome != "ok":
            logger.warning("readiness check %s %s", name, outcome)
    ready = all(value == "ok" for value in results.values())
    response = JsonResponse(
        {"status": "ready" if ready else "unavailable", "checks": results},
        status=200 if ready else 503,
    )
    add_never_cache_headers(response)
    return response


healthz = HealthzView.as_view()
readyz = ReadyzView.as_view()


# --- What the storage credentials may do ----------------------------------------------------

PROBE_FOLDER = "_portal_check/"
# S3's answers meaning "these credentials may not": the probe reports them as denied.
_DENIED = {
    "AccessDenied",
    "403",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
}
_BODY = b"portal permission check"
# Content-MD5 of other bytes: S3 authorizes a PutObject before it checks the digest, so a
# permitted write answers 400 BadDigest and stores nothing, a refused one 403.
_WRONG_MD5 = base64.b64encode(hashlib.md5(b"not the body", usedforsecurity=False).digest())


class GrantLike(Protocol):
    """What the probe reads of a grant (``recordings.custody.iam_policy.Grant``)."""

    @property
    def sid(self) -> str: ...
    @property
    def feature(self) -> str: ...
    @property
    def bucket(self) -> str: ...
    @property
    def prefix(self) -> str | None: ...
    @property
    def actions(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class PermissionProbe:
    """One action tried on one resource: ``outcome`` is ``ok``, ``denied`` or ``failed``."""

    sid: str
    feature: str
    action: str
    where: str
    outcome: str
    detail: str


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", "")) or type(exc).__name__


def _try_action(client: Any, action: str, bucket: str, key: str) -> tuple[str, str]:
    """Try ``action`` in a way that changes nothing, or as little as S3 allows; ``(outcome,
    detail)``."""
    calls: dict[str, Callable[[], Any]] = {
        # A missing key: 404 when GetObject (and ListBucket) are granted, 403 otherwise.
        "s3:GetObject": lambda: client.get_object(Bucket=bucket, Key=key),
        "s3:GetObjectVersion": lambda: client.get_object(Bucket=bucket, Key=key, VersionId="null"),
        "s3:PutObject": lambda: client.put_object(
            Bucket=bucket, Key=key, Body=_BODY, ContentMD5=_WRONG_MD5.decode()
        ),
        # Deleting a key that never existed (a versioned bucket keeps a delete marker there).
        "s3:DeleteObject": lambda: client.delete_object(Bucket=bucket, Key=key),
        "s3:AbortMultipartUpload": lambda: client.abort_multipart_upload(
            Bucket=bucket, Key=key, UploadId="portal-permission-check"
        ),
        "s3:PutObjectRetention": lambda: client.put_object_retention(
            Bucket=bucket,
            Key=key,
            Retention={
                "Mode": "COMPLIANCE",
                "RetainUntilDate": datetime.now(UTC) + timedelta(days=1),
            },
        ),
        "s3:ListBucket": lambda: client.list_objects_v2(
            Bucket=bucket, Prefix=PROBE_FOLDER, MaxKeys=1
        ),
        "s3:ListBucketVersions": lambda: client.list_object_versions(
            Bucket=bucket, Prefix=PROBE_FOLDER, MaxKeys=1
        ),
    }
    call = calls.get(action)
    if call is None:
        return "failed", "the probe does not know how to try this action"
    try:
        call()
    except Exception as exc:  # each answer is reported, never raised
        code = _error_code(exc)
        if code in _DENIED:
            return "denied", f"S3 answered {code}"
        if code == "NoSuchBucket":
            return "failed", "the bucket does not exist"
        if action == "s3:PutObjectRetention" and code == "InvalidRequest":
            return "failed", "S3 answered InvalidRequest: the bucket has no Object Lock"
        if code in (
            "NoSuchKey",
            "404",
            "NoSuchVersion",
            "NoSuchUpload",
            "BadDigest",
            "InvalidDigest",
            "InvalidArgument",
            "InvalidRequest",
        ):
            return "ok", f"allowed (S3 answered {code} to the probe)"
        return "failed", f"S3 answered {code}"
    if action == "s3:PutObject":
        # A store that does not check Content-MD5 kept the object: take it away again.
        try:
            client.delete_object(Bucket=bucket, Key=key)
        except Exception:
            return "ok", f"allowed; a scratch object was left at s3://{bucket}/{key}"
        return "ok", "allowed (the scratch object was stored, then deleted)"
    return "ok", "allowed"


def storage_permissions_probe(*, grants: Iterable[GrantLike]) -> list[PermissionProbe]:
    """Try every action of every grant with the portal's S3 credentials, on a scratch key
    under the grant's prefix (``…/_portal_check/<random>``) that no recording uses, and say
    for each whether S3 allowed it. Reads nothing real, writes nothing that stays (a write is
    sent with a wrong Content-MD5, which S3 refuses after authorizing it), deletes only the
    scratch key."""
    client = s3_client()
    results: list[PermissionProbe] = []
    scratch = f"{PROBE_FOLDER}{uuid.uuid4().hex}"
    for grant in grants:
        key = f"{grant.prefix or ''}{scratch}"
        where = f"s3://{grant.bucket}" + ("" if grant.prefix is None else f"/{grant.prefix}")
        for action in grant.actions:
            outcome, detail = _try_action(client, action, grant.bucket, key)
            results.append(
                PermissionProbe(grant.sid, grant.feature, action, where, outcome, detail)
            )
    return results
