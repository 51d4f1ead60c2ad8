"""Test fixtures in Twilio's encrypted-recording formats, importable by any test in the project.

Produces what Twilio would store: voice recordings as AES-256-GCM ``ciphertext || tag`` with the
content key wrapped by RSA-OAEP-SHA256 and ``encryption_details`` in either documented spelling;
video recordings as the S3 encryption client's v1 envelope (AES-256-CBC + PKCS#7, key wrapped
with RSA PKCS#1 v1.5, ``x-amz-*`` metadata). Also a small WAV generator and an in-memory range
reader. For tests, the fake Twilio and the demo data; nothing on a request path imports it.
"""

from __future__ import annotations

import array
import base64
import io
import math
import os
import sys
import wave
from collections.abc import Iterator
from typing import Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as symmetric_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "TEST_PUBLIC_KEY_SID",
    "MemoryRangeReader",
    "encrypt_video_like_twilio",
    "encrypt_voice_like_twilio",
    "make_rsa_key",
    "make_wav",
]

TEST_PUBLIC_KEY_SID = "CR" + "0123456789abcdef" * 2
"""A well-formed, made-up public key SID for fixtures."""


def make_rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """A fresh RSA private key (e = 65537), like ``openssl genrsa`` in Twilio's docs.

    Generating one takes tens of milliseconds; share it per module or session in tests.
    """
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _public(key: rsa.RSAPublicKey | rsa.RSAPrivateKey) -> rsa.RSAPublicKey:
    return key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key


def encrypt_voice_like_twilio(
    plaintext: bytes,
    public_key: rsa.RSAPublicKey | rsa.RSAPrivateKey,
    public_key_sid: str = TEST_PUBLIC_KEY_SID,
    *,
    spelling: Literal["callback", "rest"] = "callback",
    cek: bytes | None = None,
    iv: bytes | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Encrypt ``plaintext`` the way Twilio encrypts a voice recording.

    Returns ``(file_bytes, encryption_details)``: the file is AES-256-GCM ``ciphertext || tag``
    under a random 32-byte CEK and 12-byte IV; the details hold ``type: "rsa-aes"``, the SID, the
    CEK wrapped with RSA-OAEP-SHA256 (MGF1-SHA256, no label) and the IV, both base64.
    ``spelling="callback"`` gives ``public_key_sid``/``encrypted_cek`` (status callback and the
    doc's table); ``"rest"`` gives ``encryption_public_key_sid``/``encryption_cek`` (the doc's
    REST example). Pass ``cek``/``iv`` for deterministic output.
    """
    cek = os.urandom(32) if cek is None else cek
    iv = os.urandom(12) if iv is None else iv
    body = AESGCM(cek).encrypt(iv, plaintext, None)
    wrapped = _public(public_key).encrypt(
        cek,
        padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
    )
    sid_field, cek_field = (
        ("public_key_sid", "encrypted_cek")
        if spelling == "callback"
        else ("encryption_public_key_sid", "encryption_cek")
    )
    details = {
        "type": "rsa-aes",
        sid_field: public_key_sid,
        cek_field: base64.b64encode(wrapped).decode(),
        "iv": base64.b64encode(iv).decode(),
    }
    return body, details


def encrypt_video_like_twilio(
    plaintext: bytes,
    public_key: rsa.RSAPublicKey | rsa.RSAPrivateKey,
    *,
    cek: bytes | None = None,
    iv: bytes | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Encrypt ``plaintext`` the way Twilio stores an encrypted video recording or composition.

    Returns ``(file_bytes, metadata)``: the file is AES-256-CBC with PKCS#7 padding; the metadata
    is the S3 encryption client v1 envelope without the ``x-amz-meta-`` prefix, as boto3's
    ``put_object(Metadata=...)`` takes it and ``head_object()["Metadata"]`` returns it:
    ``x-amz-key`` (CEK wrapped with RSA PKCS#1 v1.5, base64), ``x-amz-iv`` (16 bytes, base64),
    ``x-amz-matdesc: "{}"`` and ``x-amz-unencrypted-content-length``.
    """
    cek = os.urandom(32) if cek is None else cek
    iv = os.urandom(16) if iv is None else iv
    padder = symmetric_padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
    body = encryptor.update(padded) + encryptor.finalize()
    wrapped = _public(public_key).encrypt(cek, padding.PKCS1v15())
    metadata = {
        "x-amz-key": base64.b64encode(wrapped).decode(),
        "x-amz-iv": base64.b64encode(iv).decode(),
        "x-amz-matdesc": "{}",
        "x-amz-unencrypted-content-length": str(len(plaintext)),
    }
    return body, metadata


def make_wav(
    seconds: float, sample_rate: int = 8000, channels: int = 1, *, frequency: float = 440.0
) -> bytes:
    """A valid 16-bit PCM WAV file holding a sine tone (Twilio's voice recordings are WAV).

    Channel ``n`` plays ``frequency * (1 + n / 2)`` Hz, so the channels of a dual-channel
    recording differ.
    """
    if seconds < 0 or sample_rate < 1 or channels < 1:
        raise ValueError("seconds must be >= 0, sample_rate and channels >= 1")
    frames = round(seconds * sample_rate)
    steps = [2 * math.pi * frequency * (1 + n / 2) / sample_rate for n in range(channels)]
    samples = array.array(
        "h",
        (round(12000 * math.sin(step * frame)) for frame in range(frames) for step in steps),
    )
    if sys.byteorder == "big":
        samples.byteswap()  # WAV is little-endian
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(samples.tobytes())
    return out.getvalue()


class MemoryRangeReader:
    """A range reader (``read_range(start, end_exclusive)``) over bytes in memory.

    Yields each requested range in pieces of ``piece_size`` bytes, like a streamed S3 body, and
    records every requested range in ``calls`` so tests can check what was read.
    """

    def __init__(self, data: bytes, piece_size: int = 64 * 1024) -> None:
        if piece_size < 1:
            raise ValueError("piece_size must be positive")
        self.data = data
        self.piece_size = piece_size
        self.calls: list[tuple[int, int]] = []

    def __call__(self, start: int, end_exclusive: int) -> Iterator[bytes]:
        """The stored bytes ``[start, end_exclusive)``, in pieces."""
        if not 0 <= start <= end_exclusive <= len(self.data):
            raise ValueError(f"range [{start}, {end_exclusive}) outside {len(self.data)} bytes")
        self.calls.append((start, end_exclusive))
        return self._pieces(start, end_exclusive)

    def _pieces(self, start: int, end: int) -> Iterator[bytes]:
        view = memoryview(self.data)
        for offset in range(start, end, self.piece_size):
            yield bytes(view[offset : min(offset + self.piece_size, end)])
