"""Fixtures shared by the recordings tests: RSA key pairs (slow to make, so one per module) and
empty key caches around every test (a key or content key cached by one test must not serve the
next)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from faketwilio.recording_formats import make_rsa_key
from recordings.custody import keys
from recordings.media import encrypted


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
