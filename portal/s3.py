"""The S3 clients of the portal: built once per settings, every call bounded by
``STORAGE_CONNECT_TIMEOUT`` and ``STORAGE_READ_TIMEOUT`` and tried :data:`ATTEMPTS` times.

In the kernel because two rooms talk to S3 and must not import each other: recordings' storage
(``recordings.integrations.storage``) and the audit log's seal anchors (``audit.anchors``).
"""

from __future__ import annotations

import functools
from typing import Any

import boto3
from botocore.config import Config
from django.conf import settings

ATTEMPTS = 2
"""How many times one S3 call is tried (botocore's standard retry mode, ``total_max_attempts``):
a call that gets no answer gives up after ``ATTEMPTS`` times ``STORAGE_CONNECT_TIMEOUT`` (no
connection) or ``STORAGE_READ_TIMEOUT`` (no answer), plus botocore's backoff between them."""


def client_config(
    endpoint: str | None, connect_timeout: float, read_timeout: float, attempts: int
) -> Config:
    """botocore's configuration for a client of ``endpoint`` with these bounds."""
    return Config(
        signature_version="s3v4",
        # MinIO, moto and VPC endpoints answer path-style; AWS itself picks its own.
        s3={"addressing_style": "path" if endpoint else "auto"},
        connect_timeout=connect_timeout,
        # Also bounds each read of a streamed body: an S3 that stalls mid-object is given up on.
        read_timeout=read_timeout,
        retries={"total_max_attempts": attempts, "mode": "standard"},
    )


@functools.cache
def bounded_client(
    endpoint: str | None,
    region: str | None,
    key_id: str | None,
    secret: str | None,
    timeouts: tuple[float, float],
    attempts: int,
) -> Any:
    """A client for these settings and bounds, made once: building one loads the service
    model, too costly for every request."""
    # A session of its own: boto3's default session is not safe to build clients from in
    # several threads at once (gunicorn's threaded workers, /readyz's checks).
    return boto3.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=client_config(endpoint, *timeouts, attempts),
    )


def storage_timeouts() -> tuple[float, float]:
    """``(STORAGE_CONNECT_TIMEOUT, STORAGE_READ_TIMEOUT)``."""
    return settings.STORAGE_CONNECT_TIMEOUT, settings.STORAGE_READ_TIMEOUT


def s3_client() -> Any:
    """The process-wide S3 client for the settings' endpoint, region and credentials, every
    call bounded, so a hung S3 fails a request instead of holding its worker."""
    return bounded_client(
        settings.AWS_S3_ENDPOINT_URL,
        settings.AWS_S3_REGION_NAME,
        settings.AWS_ACCESS_KEY_ID,
        settings.AWS_SECRET_ACCESS_KEY,
        storage_timeouts(),
        ATTEMPTS,
    )
