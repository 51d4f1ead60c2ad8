"""Fixtures shared by the recordings tests: RSA key pairs (slow to make, so one per module) and
empty key caches around every test (a key or content key cached by one test must not serve the
next), and a maker of plain recordings for the admin tests."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from faketwilio.recording_formats import make_rsa_key
from recordings.custody import keys
from recordings.media import encrypted
from recordings.models import Recording, RecordingStatus, SyncState


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    """A private key, the one Twilio encrypts for in most tests."""
    return make_rsa_key()


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    """A second private key: the wrong one, or a rotation's new one."""
    return make_rsa_key()


@pytest.fixture(autouse=True)
def _fresh_key_caches() -> Iterator[None]:
    keys.key_caches_clear()
    encrypted.content_key_caches_clear()
    yield
    keys.key_caches_clear()
    encrypted.content_key_caches_clear()


@pytest.fixture
def recording_make() -> Callable[..., Recording]:
    """``recording_make(**fields)``: a completed, synced recording with fresh recording and
    call SIDs (the admin tests' recordings; ``fields`` override any value)."""

    def make(**fields: Any) -> Recording:
        values: dict[str, Any] = {
            "sid": "RE" + secrets.token_hex(16),
            "account_sid": "AC" + "a" * 32,
            "call_sid": "CA" + secrets.token_hex(16),
            "status": RecordingStatus.COMPLETED,
            "source": "DialVerb",
            "start_time": datetime(2026, 10, 1, 12, 0, tzinfo=UTC),
            "sync_state": SyncState.SYNCED,
        }
        values.update(fields)
        return Recording.objects.create(**values)

    return make
