"""Shared test fixtures: the real services every test talks to.

PostgreSQL and Redis run on this machine (``.ci/run`` starts them when they are down); S3 is
moto's server on loopback; Twilio is the project's own fake (``faketwilio``) on loopback. A test
that needs one of them fails, never skips, when it is missing.
"""

from __future__ import annotations

import os
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import redis
from django.conf import settings

TEST_BUCKET = "portal-test-recordings"


AUDIT_TABLES = ("audit_accesslog", "audit_accesslogdigest", "audit_auditseal")


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> None:
    """Let Django's test framework empty the audit tables between transactional tests.

    The append-only trigger refuses TRUNCATE in every session; Django's ``flush`` truncates
    every table. So the suite disables only the TRUNCATE triggers of its own test databases,
    as their owner, once they exist; UPDATE and DELETE stay refused, and the product has no
    switch for any of it.
    """
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor != "postgresql":
            return
        with connection.cursor() as cursor:
            for table in AUDIT_TABLES:
                cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER {table}_no_truncate")


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session", autouse=True)
def _services_are_up() -> None:
    """Fail the run at once, with the fix, when PostgreSQL or Redis is not running."""
    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("postgresql") and not _reachable(
        f"//{database.get('HOST') or '127.0.0.1'}:{database.get('PORT') or 5432}", 5432
    ):
        pytest.exit("PostgreSQL is not reachable: run `make services` (or .ci/run)", 3)
    if settings.REDIS_URL and not _reachable(settings.REDIS_URL, 6379):
        pytest.exit("Redis is not reachable: run `make services` (or .ci/run)", 3)


@pytest.fixture(autouse=True)
def _clean_redis() -> Iterator[None]:
    """Each test starts with an empty Redis database (cache, broker queues)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield
    client.close()


@pytest.fixture(autouse=True)
def _audit_positions_from_the_log(request: pytest.FixtureRequest, django_db_blocker: Any) -> None:
    """Each database test numbers its access-log rows from 1 again: PostgreSQL's sequences do
    not roll back with the test's transaction, so the suite restarts the log's sequence after
    the rows present (none) before each test."""
    if request.node.get_closest_marker("django_db") is None:
        return
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor != "postgresql":
            return
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT setval('audit_accesslog_position', "
                "COALESCE((SELECT max(sequence) FROM audit_accesslog), 0) + 1, false)"
            )


@pytest.fixture(autouse=True)
def audit_anchor_dir(settings, tmp_path: Path) -> Path:
    """Each test anchors audit seals in a folder of its own (never the project's ``var/``)."""
    settings.AUDIT_ANCHOR_BUCKET = ""
    settings.AUDIT_ANCHOR_DIR = str(tmp_path / "audit-anchors")
    return tmp_path / "audit-anchors"


@pytest.fixture(scope="session")
def fake_twilio_server():
    """One fake Twilio HTTP server on loopback for the whole run."""
    from faketwilio import FakeTwilio

    server = FakeTwilio(
        account_sid=settings.TWILIO_ACCOUNT_SID, auth_token=settings.TWILIO_AUTH_TOKEN
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake_twilio(fake_twilio_server, settings):
    """The fake Twilio, emptied, and the portal pointed at it (``TWILIO_API_OVERRIDE``)."""
    fake_twilio_server.reset()
    settings.TWILIO_API_OVERRIDE = fake_twilio_server.url
    yield fake_twilio_server
    fake_twilio_server.reset()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 server on a free loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(s3_server, settings):
    """An empty test bucket on the moto server, with the portal's storage pointed at it."""
    settings.AWS_STORAGE_BUCKET_NAME = TEST_BUCKET
    settings.AWS_S3_ENDPOINT_URL = s3_server
    settings.AWS_S3_REGION_NAME = "us-east-1"
    settings.AWS_ACCESS_KEY_ID = "testing"
    settings.AWS_SECRET_ACCESS_KEY = "testing"  # noqa: S105 - moto's throwaway credentials
    client = boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106
    )
    client.create_bucket(Bucket=TEST_BUCKET)
    yield client
    for page in client.get_paginator("list_object_versions").paginate(Bucket=TEST_BUCKET):
        for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
            client.delete_object(Bucket=TEST_BUCKET, Key=item["Key"], VersionId=item["VersionId"])
    client.delete_bucket(Bucket=TEST_BUCKET)


class _FrozenHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.server.release.wait()  # type: ignore[attr-defined]


class FrozenServer(socketserver.ThreadingTCPServer):
    """A TCP server on loopback that accepts every connection and never answers: an S3 (or
    any HTTP upstream) that hangs. ``accepted`` counts the connections it holds."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _FrozenHandler)
        self.release = threading.Event()
        self.accepted = 0
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.accepted += 1
        return True

    def wait_for_connections(self, count: int, timeout: float = 10.0) -> None:
        """Block until ``count`` connections were accepted (or fail the test)."""
        deadline = time.monotonic() + timeout
        while self.accepted < count:
            if time.monotonic() > deadline:
                pytest.fail(f"the frozen server saw {self.accepted} of {count} connections")
            time.sleep(0.02)


@pytest.fixture
def frozen_s3(settings) -> Iterator[FrozenServer]:
    """A hung S3: the portal's storage pointed at a loopback server that never answers."""
    server = FrozenServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.AWS_STORAGE_BUCKET_NAME = TEST_BUCKET
    settings.AWS_S3_ENDPOINT_URL = server.url
    settings.AWS_S3_REGION_NAME = "us-east-1"
    settings.AWS_ACCESS_KEY_ID = "testing"
    settings.AWS_SECRET_ACCESS_KEY = "testing"  # noqa: S105 - nothing checks them
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


CHROMIUM = Path("/usr/bin/chromium")
# Flags from the machine notes: without the background-networking ones Chromium keeps trying
# to reach Google's hosts, which this closed network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
ARTIFACTS = Path(__file__).resolve().parent / "test-artifacts"


@pytest.fixture(scope="session")
def browser():
    """Debian's headless Chromium driven by Playwright (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: `make browser` (make test does it) installs it")
    # Playwright's sync API runs an event loop in this thread; Django's ORM refuses to run
    # inside one unless told that this test thread is synchronous code.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield instance
        instance.close()


@pytest.fixture
def page(browser, request):
    """A fresh browser tab; its last view is saved to ``test-artifacts/<test>.png``."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    yield tab
    ARTIFACTS.mkdir(exist_ok=True)
    name = request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
    try:
        tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    finally:
        context.close()
