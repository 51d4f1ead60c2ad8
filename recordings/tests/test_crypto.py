"""Tests for ``recordings.media.crypto``: Twilio's voice (RSA-OAEP + AES-GCM) and video (S3 v1
envelope, RSA PKCS#1 v1.5 + AES-CBC) formats, decrypted whole and by byte range.

Property tests compare every decrypted range with the plaintext slice; error tests check each
bad input raises its own exception; a 64 MiB synthetic object checks memory stays flat; and the
``openssl`` CLI independently unwraps keys and decrypts bodies. No timing assertions (the
hypothesis deadline is off too).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import tracemalloc
import wave
from collections.abc import Callable, Iterable, Iterator

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as symmetric_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faketwilio.recording_formats import (
    TEST_PUBLIC_KEY_SID,
    MemoryRangeReader,
    encrypt_video_like_twilio,
    encrypt_voice_like_twilio,
    make_rsa_key,
    make_wav,
)
from recordings.media import crypto
from recordings.media.crypto import (
    CHUNK_SIZE,
    GCM_MAX_PLAINTEXT_LENGTH,
    MalformedEncryptionDetails,
    RangeNotSatisfiable,
    TamperedMedia,
    UnsupportedEncryption,
    VideoEnvelope,
    VoiceEncryption,
    WrongKey,
    parse_video_envelope,
    parse_voice_encryption_details,
    unwrap_video_cek,
    unwrap_voice_cek,
    verify_gcm_tag,
    video_decrypt_range,
    video_plaintext_length,
    voice_decrypt_range,
    voice_decrypt_stream,
    voice_plaintext_length,
)

MiB = 1024 * 1024
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

keys32 = st.binary(min_size=32, max_size=32)
ivs12 = st.binary(min_size=12, max_size=12)
ivs16 = st.binary(min_size=16, max_size=16)
plaintexts = st.binary(max_size=5000)
chunk_sizes = st.one_of(st.integers(1, 64), st.sampled_from([16, 1000, CHUNK_SIZE]))
piece_sizes = st.one_of(st.integers(1, 100), st.sampled_from([16, 4096, 64 * 1024]))


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return make_rsa_key()


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return make_rsa_key()


def gcm_encrypt(plaintext: bytes, cek: bytes, iv: bytes) -> bytes:
    return AESGCM(cek).encrypt(iv, plaintext, None)


def cbc_encrypt_raw(padded: bytes, cek: bytes, iv: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


def cbc_encrypt(plaintext: bytes, cek: bytes, iv: bytes) -> bytes:
    padder = symmetric_padding.PKCS7(128).padder()
    return cbc_encrypt_raw(padder.update(plaintext) + padder.finalize(), cek, iv)


def collect(chunks: Iterable[bytes], chunk_size: int = CHUNK_SIZE) -> bytes:
    out = bytearray()
    for chunk in chunks:
        assert isinstance(chunk, bytes)
        assert 0 < len(chunk) <= chunk_size
        out += chunk
    return bytes(out)


def consume_into(chunks: Iterable[bytes], seen: bytearray) -> None:
    """Append every chunk to ``seen`` (so a test can see what came before an error)."""
    for chunk in chunks:
        seen += chunk


def video_read_span(start: int, end: int, plaintext_len: int, ciphertext_len: int):
    """The stored bytes a CBC range decrypt must read: one block before, through the end
    block, through the final block when the range reaches the end of the plaintext."""
    first = start // 16
    read_from = (first - 1) * 16 if first else 0
    stop = ciphertext_len if end == plaintext_len else -(-end // 16) * 16
    return read_from, stop


# ---------------------------------------------------------------------------------------------
# Property tests: every range equals the plaintext slice
# ---------------------------------------------------------------------------------------------


@PROPERTY
@given(plaintexts, keys32, ivs12, chunk_sizes, piece_sizes, st.data())
def test_voice_range_equals_slice(plaintext, cek, iv, chunk_size, piece_size, data):
    stored = gcm_encrypt(plaintext, cek, iv)
    start = data.draw(st.integers(0, len(plaintext)), label="start")
    end = data.draw(st.integers(start, len(plaintext)), label="end")
    reader = MemoryRangeReader(stored, piece_size)

    got = collect(
        voice_decrypt_range(cek, iv, reader, start, end, len(plaintext), chunk_size=chunk_size),
        chunk_size,
    )

    assert got == plaintext[start:end]
    assert reader.calls == ([(start, end)] if start < end else [])


@PROPERTY
@given(plaintexts, keys32, ivs12, chunk_sizes, piece_sizes, st.data())
def test_voice_range_from_byte_zero_equals_slice(plaintext, cek, iv, chunk_size, piece_size, data):
    """Reads from byte 0 (full downloads, a player's first request) take GCM's own decryptor
    instead of the counter stream: the same bytes, every length, every piece size."""
    stored = gcm_encrypt(plaintext, cek, iv)
    end = data.draw(st.integers(0, len(plaintext)), label="end")
    reader = MemoryRangeReader(stored, piece_size)

    got = collect(
        voice_decrypt_range(cek, iv, reader, 0, end, len(plaintext), chunk_size=chunk_size),
        chunk_size,
    )

    assert got == plaintext[:end]


@PROPERTY
@given(plaintexts, keys32, ivs16, chunk_sizes, piece_sizes, st.data())
def test_video_range_equals_slice(plaintext, cek, iv, chunk_size, piece_size, data):
    stored = cbc_encrypt(plaintext, cek, iv)
    start = data.draw(st.integers(0, len(plaintext)), label="start")
    end = data.draw(st.integers(start, len(plaintext)), label="end")
    reader = MemoryRangeReader(stored, piece_size)

    got = collect(
        video_decrypt_range(
            cek, iv, reader, start, end, len(plaintext), len(stored), chunk_size=chunk_size
        ),
        chunk_size,
    )

    assert got == plaintext[start:end]
    expected_calls = (
        [video_read_span(start, end, len(plaintext), len(stored))] if start < end else []
    )
    assert reader.calls == expected_calls


@PROPERTY
@given(plaintexts, keys32, ivs12, chunk_sizes, piece_sizes)
def test_voice_stream_and_verify_whole_object(plaintext, cek, iv, chunk_size, piece_size):
    stored = gcm_encrypt(plaintext, cek, iv)
    reader = MemoryRangeReader(stored, piece_size)

    verify_gcm_tag(cek, iv, reader, len(stored), chunk_size=chunk_size)
    got = collect(voice_decrypt_stream(cek, iv, reader, len(stored), chunk_size=chunk_size))

    assert got == plaintext
    assert reader.calls == [(0, len(stored)), (0, len(stored))]


@PROPERTY
@given(plaintexts, keys32, ivs16, piece_sizes)
def test_video_plaintext_length_from_padding(plaintext, cek, iv, piece_size):
    stored = cbc_encrypt(plaintext, cek, iv)
    reader = MemoryRangeReader(stored, piece_size)

    assert video_plaintext_length(cek, iv, reader, len(stored)) == len(plaintext)
    assert reader.calls == [(max(len(stored) - 32, 0), len(stored))]


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 31, 32, 33, 47, 48])
@pytest.mark.parametrize("chunk_size", [1, 5, 16, CHUNK_SIZE])
def test_every_range_of_short_plaintexts(length, chunk_size):
    plaintext = os.urandom(length)
    cek, gcm_iv, cbc_iv = os.urandom(32), os.urandom(12), os.urandom(16)
    voice = MemoryRangeReader(gcm_encrypt(plaintext, cek, gcm_iv), piece_size=7)
    video_stored = cbc_encrypt(plaintext, cek, cbc_iv)
    video = MemoryRangeReader(video_stored, piece_size=7)
    for start in range(length + 1):
        for end in range(start, length + 1):
            assert (
                collect(
                    voice_decrypt_range(
                        cek, gcm_iv, voice, start, end, length, chunk_size=chunk_size
                    ),
                    chunk_size,
                )
                == plaintext[start:end]
            )
            assert (
                collect(
                    video_decrypt_range(
                        cek,
                        cbc_iv,
                        video,
                        start,
                        end,
                        length,
                        len(video_stored),
                        chunk_size=chunk_size,
                    ),
                    chunk_size,
                )
                == plaintext[start:end]
            )


# ---------------------------------------------------------------------------------------------
# GCM counter: inc32 semantics
# ---------------------------------------------------------------------------------------------


def gcm_keystream(cek: bytes, iv: bytes, offset: int, length: int) -> bytes:
    """GCM's keystream for plaintext bytes [offset, offset+length), block by block with ECB:
    block b uses the counter block iv || ((2 + b) mod 2^32)."""
    ecb = Cipher(algorithms.AES(cek), modes.ECB()).encryptor()  # noqa: S305 - keystream by hand
    first, last = offset // 16, (offset + length - 1) // 16
    blocks = b"".join(iv + ((2 + b) % 2**32).to_bytes(4, "big") for b in range(first, last + 1))
    stream = ecb.update(blocks) + ecb.finalize()
    skip = offset % 16
    return stream[skip : skip + length]


@pytest.mark.parametrize("piece", [1, 13, 16, 64, 1000])
def test_counter_wraps_like_gcm_inc32(piece):
    cek, iv = os.urandom(32), os.urandom(12)
    wrap = (2**32 - 2) * 16  # plaintext offset whose block uses counter 0 (wrapped)
    offset, length = wrap - 37, 200
    stream = crypto._GcmCounterStream(cek, iv, offset)
    zeros = bytes(length)
    got = b"".join(stream.update(zeros[i : i + piece]) for i in range(0, length, piece))

    assert got == gcm_keystream(cek, iv, offset, length)
    # OpenSSL's CTR increments all 128 bits, carrying into the IV at the wrap: the two agree up
    # to the wrap point and differ after it, which is why the wrap needs handling at all.
    first, skip = divmod(offset, 16)
    naive = Cipher(algorithms.AES(cek), modes.CTR(iv + (2 + first).to_bytes(4, "big")))
    naive_stream = naive.encryptor().update(bytes(skip + length))[skip:]
    assert naive_stream[:37] == got[:37]
    assert naive_stream[37:] != got[37:]


def test_counter_at_ordinary_offsets_matches_gcm():
    cek, iv = os.urandom(32), os.urandom(12)
    for offset in (0, 1, 15, 16, 17, 4096 + 3, 2**32 * 16 + 5):
        stream = crypto._GcmCounterStream(cek, iv, offset)
        assert stream.update(bytes(50)) == gcm_keystream(cek, iv, offset, 50)


def test_plaintext_longer_than_gcm_allows_is_rejected():
    cek, iv = bytes(32), bytes(12)
    with pytest.raises(TamperedMedia):
        voice_decrypt_range(cek, iv, MemoryRangeReader(b""), 0, 1, GCM_MAX_PLAINTEXT_LENGTH + 1)
    with pytest.raises(TamperedMedia):
        voice_plaintext_length(GCM_MAX_PLAINTEXT_LENGTH + 17)
    assert voice_plaintext_length(GCM_MAX_PLAINTEXT_LENGTH + 16) == GCM_MAX_PLAINTEXT_LENGTH


# ---------------------------------------------------------------------------------------------
# Voice: details, unwrap, end to end
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["callback", "rest"])
def test_voice_end_to_end_in_both_spellings(key, spelling):
    audio = make_wav(0.25)
    stored, details = encrypt_voice_like_twilio(audio, key.public_key(), spelling=spelling)
    if spelling == "rest":
        assert {"encryption_public_key_sid", "encryption_cek"} <= details.keys()
    else:
        assert {"public_key_sid", "encrypted_cek"} <= details.keys()

    parsed = parse_voice_encryption_details(details)
    assert parsed.public_key_sid == TEST_PUBLIC_KEY_SID
    cek = unwrap_voice_cek(key, parsed.wrapped_cek)
    reader = MemoryRangeReader(stored)

    verify_gcm_tag(cek, parsed.iv, reader, len(stored))
    assert collect(voice_decrypt_stream(cek, parsed.iv, reader, len(stored))) == audio
    plaintext_len = voice_plaintext_length(len(stored))
    assert plaintext_len == len(audio)
    assert (
        collect(voice_decrypt_range(cek, parsed.iv, reader, 44, 1044, plaintext_len))
        == (audio[44:1044])
    )


def test_voice_details_as_callback_json_string(key):
    _, details = encrypt_voice_like_twilio(b"x", key.public_key(), "CR" + "f" * 32)
    parsed = parse_voice_encryption_details(json.dumps(details))
    assert parsed == parse_voice_encryption_details(details)
    assert parsed.public_key_sid == "CR" + "f" * 32


def test_voice_details_with_both_spellings_agreeing_is_fine(key):
    _, details = encrypt_voice_like_twilio(b"x", key.public_key())
    details["encryption_cek"] = details["encrypted_cek"]
    details["encryption_public_key_sid"] = details["public_key_sid"]
    assert parse_voice_encryption_details(details).public_key_sid == TEST_PUBLIC_KEY_SID


def test_voice_details_repr_hides_key_material(key):
    _, details = encrypt_voice_like_twilio(b"x", key.public_key())
    parsed = parse_voice_encryption_details(details)
    text = repr(parsed)
    assert TEST_PUBLIC_KEY_SID in text
    assert repr(parsed.wrapped_cek) not in text
    assert repr(parsed.iv) not in text


VALID_DETAILS = {
    "type": "rsa-aes",
    "public_key_sid": TEST_PUBLIC_KEY_SID,
    "encrypted_cek": base64.b64encode(bytes(256)).decode(),
    "iv": "uFM4mEKKptceQs/L",
}


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"type": "rsa-aes-v2"}, UnsupportedEncryption, "unsupported"),
        ({"type": "none"}, UnsupportedEncryption, "unsupported"),
        ({"type": None}, MalformedEncryptionDetails, "'type'"),
        ({"public_key_sid": None}, MalformedEncryptionDetails, "public_key_sid"),
        ({"encrypted_cek": None}, MalformedEncryptionDetails, "encrypted_cek"),
        ({"encrypted_cek": ""}, MalformedEncryptionDetails, "encrypted_cek"),
        ({"iv": None}, MalformedEncryptionDetails, "'iv'"),
        ({"iv": "uFM4mEKK!tceQs/L"}, MalformedEncryptionDetails, "base64"),
        ({"iv": "uFM4mEKKptceQs/L="}, MalformedEncryptionDetails, "base64"),
        ({"encrypted_cek": "not base64 at all?"}, MalformedEncryptionDetails, "base64"),
        ({"encrypted_cek": "AAAA" * 3 + "A"}, MalformedEncryptionDetails, "base64"),
        ({"iv": base64.b64encode(bytes(16)).decode()}, MalformedEncryptionDetails, "12"),
        ({"iv": base64.b64encode(bytes(8)).decode()}, MalformedEncryptionDetails, "12"),
        ({"iv": 12345}, MalformedEncryptionDetails, "string"),
        ({"encryption_public_key_sid": "CR" + "1" * 32}, MalformedEncryptionDetails, "disagree"),
    ],
)
def test_bad_voice_details(change, error, message):
    details = {k: v for k, v in {**VALID_DETAILS, **change}.items() if v is not None}
    with pytest.raises(error, match=message):
        parse_voice_encryption_details(details)


@pytest.mark.parametrize("details", ["{not json", "[1, 2]", "null"])
def test_voice_details_that_are_not_an_object(details):
    with pytest.raises(MalformedEncryptionDetails):
        parse_voice_encryption_details(details)


def test_valid_details_parse():
    parsed = parse_voice_encryption_details(VALID_DETAILS)
    assert parsed == VoiceEncryption(
        TEST_PUBLIC_KEY_SID, bytes(256), base64.b64decode("uFM4mEKKptceQs/L")
    )


def test_voice_wrong_private_key(key, other_key):
    _, details = encrypt_voice_like_twilio(b"audio", key.public_key())
    wrapped = parse_voice_encryption_details(details).wrapped_cek
    with pytest.raises(WrongKey):
        unwrap_voice_cek(other_key, wrapped)


def test_wrapped_key_for_a_different_key_size(key):
    small = make_rsa_key(1024)
    _, details = encrypt_voice_like_twilio(b"audio", small.public_key())
    wrapped = parse_voice_encryption_details(details).wrapped_cek
    with pytest.raises(WrongKey, match="different key"):
        unwrap_voice_cek(key, wrapped)
    with pytest.raises(WrongKey, match="different key"):
        unwrap_video_cek(key, wrapped)


def test_unwrapped_key_must_be_32_bytes(key):
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    with pytest.raises(WrongKey, match="32"):
        unwrap_voice_cek(key, key.public_key().encrypt(bytes(16), oaep))
    with pytest.raises(WrongKey, match="32"):
        unwrap_video_cek(key, key.public_key().encrypt(bytes(16), padding.PKCS1v15()))


def test_voice_wrap_with_sha1_oaep_is_wrong_key(key):
    """SunJCE's OAEPWithSHA-256AndMGF1Padding uses MGF1-SHA1; that is not Twilio's scheme."""
    sha1_mgf = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA256(), label=None)  # noqa: S303
    with pytest.raises(WrongKey):
        unwrap_voice_cek(key, key.public_key().encrypt(bytes(32), sha1_mgf))


def test_unwrap_needs_an_rsa_private_key(key):
    with pytest.raises(TypeError):
        unwrap_voice_cek(key.public_key(), bytes(256))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Voice: tampering, truncation, bad ranges
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def voice_object() -> tuple[bytes, bytes, bytes, bytes]:
    plaintext = os.urandom(3000)
    cek, iv = os.urandom(32), os.urandom(12)
    return plaintext, gcm_encrypt(plaintext, cek, iv), cek, iv


@pytest.mark.parametrize("position", [0, 1500, -17, -16, -1])  # ciphertext ... tag
def test_tampered_byte_fails_the_tag(voice_object, position):
    _, stored, cek, iv = voice_object
    tampered = bytearray(stored)
    tampered[position] ^= 0x01
    reader = MemoryRangeReader(bytes(tampered), piece_size=1000)

    with pytest.raises(TamperedMedia, match="tag"):
        verify_gcm_tag(cek, iv, reader, len(tampered))
    with pytest.raises(TamperedMedia, match="tag"):
        collect(voice_decrypt_stream(cek, iv, reader, len(tampered)))


def test_stream_yields_before_raising_on_tamper(voice_object):
    """Documented behaviour: the tag is checked after the last byte, so a consumer sees
    plaintext before the error. Callers verify first (or buffer) before serving."""
    plaintext, stored, cek, iv = voice_object
    tampered = stored[:-1] + bytes([stored[-1] ^ 1])
    seen = bytearray()
    stream = voice_decrypt_stream(
        cek, iv, MemoryRangeReader(tampered), len(tampered), chunk_size=1000
    )
    with pytest.raises(TamperedMedia):
        consume_into(stream, seen)
    assert bytes(seen) == plaintext


def test_wrong_cek_or_iv_fails_the_tag(voice_object):
    _, stored, cek, iv = voice_object
    reader = MemoryRangeReader(stored)
    with pytest.raises(TamperedMedia):
        verify_gcm_tag(os.urandom(32), iv, reader, len(stored))
    with pytest.raises(TamperedMedia):
        verify_gcm_tag(cek, os.urandom(12), reader, len(stored))


@pytest.mark.parametrize("keep", [2999, 16, 1])
def test_truncated_voice_object(voice_object, keep):
    _, stored, cek, iv = voice_object
    truncated = stored[:keep]
    reader = MemoryRangeReader(truncated)
    with pytest.raises(TamperedMedia):
        verify_gcm_tag(cek, iv, reader, len(truncated))
    with pytest.raises(TamperedMedia):
        collect(voice_decrypt_stream(cek, iv, reader, len(truncated)))


def short_reader(data: bytes, missing: int) -> Callable[[int, int], Iterator[bytes]]:
    def read(start: int, end: int) -> Iterator[bytes]:
        yield data[start : end - missing]

    return read


def long_reader(data: bytes) -> Callable[[int, int], Iterator[bytes]]:
    def read(start: int, end: int) -> Iterator[bytes]:
        yield data[start:end]
        yield b"extra"

    return read


def test_storage_returning_too_few_or_too_many_bytes(voice_object):
    """The object shrank or grew after its size was taken: never silently short output."""
    _, stored, cek, iv = voice_object
    with pytest.raises(TamperedMedia, match="truncated"):
        verify_gcm_tag(cek, iv, short_reader(stored, 10), len(stored))
    with pytest.raises(TamperedMedia, match="truncated"):
        collect(voice_decrypt_range(cek, iv, short_reader(stored, 1), 10, 100, 3000))
    with pytest.raises(TamperedMedia, match="more than"):
        collect(voice_decrypt_range(cek, iv, long_reader(stored), 10, 100, 3000))


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, 3001), (3000, 3001), (3005, 3016), (0, 3016), (-1, 10), (100, 99), (3017, 3018)],
)
def test_voice_range_outside_plaintext(voice_object, start, end):
    _, stored, cek, iv = voice_object
    reader = MemoryRangeReader(stored)
    with pytest.raises(RangeNotSatisfiable):
        voice_decrypt_range(cek, iv, reader, start, end, voice_plaintext_length(len(stored)))
    assert reader.calls == []


def test_voice_bad_cek_or_iv_length():
    reader = MemoryRangeReader(bytes(100))
    with pytest.raises(MalformedEncryptionDetails):
        voice_decrypt_range(bytes(16), bytes(12), reader, 0, 1, 84)
    with pytest.raises(MalformedEncryptionDetails):
        verify_gcm_tag(bytes(32), bytes(16), reader, 100)
    with pytest.raises(ValueError, match="chunk_size"):
        voice_decrypt_range(bytes(32), bytes(12), reader, 0, 1, 84, chunk_size=0)


# ---------------------------------------------------------------------------------------------
# Video: envelope, unwrap, padding
# ---------------------------------------------------------------------------------------------


def test_video_end_to_end(key):
    media = os.urandom(5000)
    stored, metadata = encrypt_video_like_twilio(media, key.public_key())
    envelope = parse_video_envelope(metadata)
    assert envelope.unencrypted_content_length == len(media)
    assert envelope.matdesc == {}
    cek = unwrap_video_cek(key, envelope.wrapped_cek)
    reader = MemoryRangeReader(stored)

    assert video_plaintext_length(cek, envelope.iv, reader, len(stored)) == len(media)
    assert (
        collect(video_decrypt_range(cek, envelope.iv, reader, 0, len(media), len(media), 5008))
        == media
    )


@pytest.mark.parametrize(
    "spell", [str, str.upper, lambda k: "x-amz-meta-" + k, lambda k: "X-Amz-Meta-" + k.title()]
)
def test_video_envelope_key_spellings(key, spell):
    _, metadata = encrypt_video_like_twilio(b"video", key.public_key())
    spelled = {spell(name): value for name, value in metadata.items()}
    assert parse_video_envelope(spelled) == parse_video_envelope(metadata)


def test_video_envelope_without_length_or_matdesc(key):
    _, metadata = encrypt_video_like_twilio(b"video", key.public_key())
    del metadata["x-amz-unencrypted-content-length"], metadata["x-amz-matdesc"]
    envelope = parse_video_envelope(metadata)
    assert envelope.unencrypted_content_length is None
    assert envelope.matdesc == {}
    assert metadata["x-amz-key"] not in repr(envelope)
    assert repr(envelope.wrapped_cek) not in repr(envelope)


GOOD_ENVELOPE = {
    "x-amz-key": base64.b64encode(bytes(256)).decode(),
    "x-amz-iv": "EmKjzVpvXC9rE6DJ00Xv7Q==",
    "x-amz-matdesc": "{}",
    "x-amz-unencrypted-content-length": "746518",
}


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"x-amz-key": None}, MalformedEncryptionDetails, "x-amz-key"),
        ({"x-amz-iv": None}, MalformedEncryptionDetails, "x-amz-iv"),
        ({"x-amz-key": "%%%"}, MalformedEncryptionDetails, "base64"),
        ({"x-amz-iv": "EmKjzVpvXC9rE6DJ"}, MalformedEncryptionDetails, "16"),
        ({"x-amz-unencrypted-content-length": "-1"}, MalformedEncryptionDetails, "integer"),
        ({"x-amz-unencrypted-content-length": "12.5"}, MalformedEncryptionDetails, "integer"),
        ({"x-amz-matdesc": "[]"}, MalformedEncryptionDetails, "matdesc"),
        ({"x-amz-matdesc": "{"}, MalformedEncryptionDetails, "matdesc"),
        ({"x-amz-meta-x-amz-iv": "AAAAAAAAAAAAAAAAAAAAAA=="}, MalformedEncryptionDetails, "twice"),
        ({"x-amz-key-v2": "abc"}, UnsupportedEncryption, "v2"),
        ({"x-amz-cek-alg": "AES/GCM/NoPadding"}, UnsupportedEncryption, "algorithm"),
    ],
)
def test_bad_video_envelope(change, error, message):
    metadata = {k: v for k, v in {**GOOD_ENVELOPE, **change}.items() if v is not None}
    with pytest.raises(error, match=message):
        parse_video_envelope(metadata)


def test_good_video_envelope():
    assert parse_video_envelope(GOOD_ENVELOPE) == VideoEnvelope(
        bytes(256), base64.b64decode("EmKjzVpvXC9rE6DJ00Xv7Q=="), 746518, {}
    )
    with_alg = {**GOOD_ENVELOPE, "x-amz-cek-alg": "AES/CBC/PKCS5Padding"}
    assert parse_video_envelope(with_alg) == parse_video_envelope(GOOD_ENVELOPE)


def test_video_wrong_private_key(key, other_key):
    """PKCS#1 v1.5 unwrap uses implicit rejection (OpenSSL >= 3.2): a wrong key gives
    pseudo-random bytes, which the 32-byte check rejects nearly always; never the real key."""
    rejected = 0
    for _ in range(20):
        cek = os.urandom(32)
        _, metadata = encrypt_video_like_twilio(b"video", key.public_key(), cek=cek)
        wrapped = parse_video_envelope(metadata).wrapped_cek
        try:
            assert unwrap_video_cek(other_key, wrapped) != cek
        except WrongKey:
            rejected += 1
    assert rejected >= 15


def test_video_wrong_cek_fails_padding_check_mostly():
    plaintext = os.urandom(1000)
    cek, iv = os.urandom(32), os.urandom(16)
    stored = cbc_encrypt(plaintext, cek, iv)
    failures = 0
    for _ in range(20):
        try:
            assert video_plaintext_length(os.urandom(32), iv, MemoryRangeReader(stored), 1008) != (
                1000
            )
        except TamperedMedia:
            failures += 1
    assert failures >= 15


@pytest.mark.parametrize(
    "last_block",
    [
        bytes(16),  # pad byte 0
        bytes(15) + b"\x11",  # 17 > block size
        bytes(13) + b"\x02\x03\x03",  # inconsistent
        bytes(12) + b"\x04\x04\x05\x04",
        b"\x10" * 15 + b"\x0f",
    ],
)
@pytest.mark.parametrize("chunk_size", [1, 16, CHUNK_SIZE])
def test_video_bad_padding(last_block, chunk_size):
    body = os.urandom(64)
    cek, iv = os.urandom(32), os.urandom(16)
    stored = cbc_encrypt_raw(body + last_block, cek, iv)
    plaintext_len = 80 - 1  # as if the metadata claimed one byte of padding
    reader = MemoryRangeReader(stored, piece_size=7)

    # A range that does not reach the final block does not look at the padding.
    assert collect(video_decrypt_range(cek, iv, reader, 0, 64, plaintext_len, 80)) == body
    # One that does raises before yielding any of the final block.
    seen = bytearray()
    chunks = video_decrypt_range(cek, iv, reader, 10, 70, plaintext_len, 80, chunk_size=chunk_size)
    with pytest.raises(TamperedMedia, match="padding"):
        consume_into(chunks, seen)
    assert bytes(seen) == body[10:64]
    with pytest.raises(TamperedMedia, match="padding"):
        video_plaintext_length(cek, iv, reader, 80)


def test_video_padding_disagreeing_with_metadata_length():
    plaintext = os.urandom(70)  # 10 bytes of padding
    cek, iv = os.urandom(32), os.urandom(16)
    stored = cbc_encrypt(plaintext, cek, iv)
    reader = MemoryRangeReader(stored)
    with pytest.raises(TamperedMedia, match="metadata says 71"):
        collect(video_decrypt_range(cek, iv, reader, 0, 71, 71, 80))
    # Not reaching the final block, the claimed length is not checked (CBC is unauthenticated).
    assert collect(video_decrypt_range(cek, iv, reader, 0, 60, 71, 80)) == plaintext[:60]


def test_video_full_block_of_padding_is_still_checked():
    plaintext = os.urandom(64)  # padding is a whole extra block
    cek, iv = os.urandom(32), os.urandom(16)
    stored = cbc_encrypt(plaintext, cek, iv)
    reader = MemoryRangeReader(stored)
    assert collect(video_decrypt_range(cek, iv, reader, 50, 64, 64, 80)) == plaintext[50:]
    assert reader.calls == [(32, 80)]
    tampered = stored[:-1] + bytes([stored[-1] ^ 1])
    with pytest.raises(TamperedMedia):
        collect(video_decrypt_range(cek, iv, MemoryRangeReader(tampered), 50, 64, 64, 80))


@pytest.mark.parametrize(("plaintext_len", "ciphertext_len"), [(10, 15), (10, 0), (40, 47)])
def test_video_object_not_whole_blocks(plaintext_len, ciphertext_len):
    with pytest.raises(TamperedMedia, match="multiple"):
        video_decrypt_range(
            bytes(32), bytes(16), MemoryRangeReader(b""), 0, 1, plaintext_len, ciphertext_len
        )
    with pytest.raises(TamperedMedia, match="multiple"):
        video_plaintext_length(bytes(32), bytes(16), MemoryRangeReader(b""), ciphertext_len)


@pytest.mark.parametrize("plaintext_len", [-1, 15, 32, 40])
def test_video_length_metadata_that_cannot_fit(plaintext_len):
    with pytest.raises(MalformedEncryptionDetails, match="does not fit"):
        video_decrypt_range(bytes(32), bytes(16), MemoryRangeReader(b""), 0, 0, plaintext_len, 32)


@pytest.mark.parametrize(("start", "end"), [(0, 31), (30, 31), (-1, 5), (9, 8), (31, 40)])
def test_video_range_outside_plaintext(start, end):
    reader = MemoryRangeReader(bytes(32))
    with pytest.raises(RangeNotSatisfiable):
        video_decrypt_range(bytes(32), bytes(16), reader, start, end, 30, 32)
    assert reader.calls == []


def test_truncated_video_object():
    plaintext = os.urandom(100)
    cek, iv = os.urandom(32), os.urandom(16)
    stored = cbc_encrypt(plaintext, cek, iv)
    with pytest.raises(TamperedMedia, match="truncated"):
        collect(video_decrypt_range(cek, iv, short_reader(stored, 16), 0, 100, 100, 112))
    # Cut at a block boundary: the new final block's "padding" is ciphertext noise.
    cut = stored[:96]
    failures = 0
    for pad in range(1, 17):  # whatever length the metadata claims
        try:
            collect(video_decrypt_range(cek, iv, MemoryRangeReader(cut), 0, 96 - pad, 96 - pad, 96))
        except TamperedMedia:
            failures += 1
    assert failures >= 15


# ---------------------------------------------------------------------------------------------
# Constant memory on a 64 MiB object
# ---------------------------------------------------------------------------------------------

BIG = 64 * MiB
PIECE = 256 * 1024


def pattern_pieces(length: int) -> Iterator[bytes]:
    """Deterministic, non-repeating-per-piece plaintext, generated piece by piece."""
    for index, offset in enumerate(range(0, length, PIECE)):
        yield hashlib.sha256(index.to_bytes(8, "big")).digest() * (
            min(PIECE, length - offset) // 32
        )


class SyntheticObject:
    """A range reader over a large encrypted object that is never held in memory: each read
    re-encrypts the pattern from the start and yields only the requested stored bytes."""

    def __init__(self, kind: str, length: int, cek: bytes, iv: bytes) -> None:
        self.kind, self.length, self.cek, self.iv = kind, length, cek, iv

    def stored_pieces(self) -> Iterator[bytes]:
        if self.kind == "voice":
            encryptor = Cipher(algorithms.AES(self.cek), modes.GCM(self.iv)).encryptor()
            for piece in pattern_pieces(self.length):
                yield encryptor.update(piece)
            encryptor.finalize()
            yield encryptor.tag
        else:
            encryptor = Cipher(algorithms.AES(self.cek), modes.CBC(self.iv)).encryptor()
            for piece in pattern_pieces(self.length):
                yield encryptor.update(piece)
            yield encryptor.update(bytes([16]) * 16) + encryptor.finalize()

    def __call__(self, start: int, end: int) -> Iterator[bytes]:
        position = 0
        for piece in self.stored_pieces():
            lo, hi = max(start - position, 0), min(end - position, len(piece))
            if lo < hi:
                yield piece[lo:hi]
            position += len(piece)
            if position >= end:
                return


def sha256_of(chunks: Iterable[bytes]) -> bytes:
    digest = hashlib.sha256()
    for chunk in chunks:
        assert len(chunk) <= CHUNK_SIZE
        digest.update(chunk)
    return digest.digest()


def peak_memory(run: Callable[[], object]) -> tuple[object, int]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = run()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_64_mib_objects_decrypt_in_constant_memory():
    cek, gcm_iv, cbc_iv = os.urandom(32), os.urandom(12), os.urandom(16)
    expected = sha256_of(pattern_pieces(BIG))
    voice = SyntheticObject("voice", BIG, cek, gcm_iv)
    video = SyntheticObject("video", BIG, cek, cbc_iv)
    limit = 4 * MiB

    _, peak = peak_memory(lambda: verify_gcm_tag(cek, gcm_iv, voice, BIG + 16))
    assert peak < limit
    digest, peak = peak_memory(
        lambda: sha256_of(voice_decrypt_stream(cek, gcm_iv, voice, BIG + 16))
    )
    assert (digest, peak < limit) == (expected, True)
    digest, peak = peak_memory(
        lambda: sha256_of(voice_decrypt_range(cek, gcm_iv, voice, 0, BIG, BIG))
    )
    assert (digest, peak < limit) == (expected, True)
    digest, peak = peak_memory(
        lambda: sha256_of(video_decrypt_range(cek, cbc_iv, video, 0, BIG, BIG, BIG + 16))
    )
    assert (digest, peak < limit) == (expected, True)


def test_big_reader_pieces_are_split_to_chunk_size():
    plaintext = os.urandom(3 * MiB + 5)
    cek, iv = os.urandom(32), os.urandom(12)
    reader = MemoryRangeReader(gcm_encrypt(plaintext, cek, iv), piece_size=4 * MiB)
    got = collect(voice_decrypt_stream(cek, iv, reader, len(plaintext) + 16), CHUNK_SIZE)
    assert got == plaintext


# ---------------------------------------------------------------------------------------------
# Independent cross-check with the openssl CLI
# ---------------------------------------------------------------------------------------------


def openssl(*args: str) -> None:
    binary = shutil.which("openssl")
    assert binary, "the openssl CLI is needed for the cross-check"
    subprocess.run([binary, *args], check=True, capture_output=True)


def write_key(key: rsa.RSAPrivateKey, path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,  # what `openssl genrsa` writes
            serialization.NoEncryption(),
        )
    )


def test_openssl_unwraps_voice_cek_and_decrypts_a_ctr_range(key, tmp_path):
    audio = make_wav(0.5)
    stored, details = encrypt_voice_like_twilio(audio, key.public_key())
    parsed = parse_voice_encryption_details(details)
    write_key(key, tmp_path / "key.pem")
    (tmp_path / "cek.enc").write_bytes(parsed.wrapped_cek)

    openssl(
        "pkeyutl", "-decrypt", "-inkey", str(tmp_path / "key.pem"),
        "-in", str(tmp_path / "cek.enc"), "-out", str(tmp_path / "cek.bin"),
        "-pkeyopt", "rsa_padding_mode:oaep",
        "-pkeyopt", "rsa_oaep_md:sha256",
        "-pkeyopt", "rsa_mgf1_md:sha256",
    )  # fmt: skip
    cek = unwrap_voice_cek(key, parsed.wrapped_cek)
    assert (tmp_path / "cek.bin").read_bytes() == cek

    # GCM's body is CTR from counter 2: openssl's AES-CTR over a block-aligned slice agrees.
    offset, length = 16 * 100, 3000
    counter_block = parsed.iv + (2 + offset // 16).to_bytes(4, "big")
    (tmp_path / "slice.enc").write_bytes(stored[offset : offset + length])
    openssl(
        "enc", "-d", "-aes-256-ctr", "-K", cek.hex(), "-iv", counter_block.hex(),
        "-in", str(tmp_path / "slice.enc"), "-out", str(tmp_path / "slice.bin"),
    )  # fmt: skip
    ours = collect(
        voice_decrypt_range(
            cek, parsed.iv, MemoryRangeReader(stored), offset, offset + length, len(audio)
        )
    )
    assert (tmp_path / "slice.bin").read_bytes() == ours == audio[offset : offset + length]


def test_openssl_unwraps_video_cek_and_decrypts_the_body(key, tmp_path):
    media = make_wav(0.3, channels=2)
    stored, metadata = encrypt_video_like_twilio(media, key.public_key())
    envelope = parse_video_envelope(metadata)
    write_key(key, tmp_path / "key.pem")
    (tmp_path / "cek.enc").write_bytes(envelope.wrapped_cek)
    (tmp_path / "media.enc").write_bytes(stored)

    openssl(
        "pkeyutl", "-decrypt", "-inkey", str(tmp_path / "key.pem"),
        "-in", str(tmp_path / "cek.enc"), "-out", str(tmp_path / "cek.bin"),
    )  # fmt: skip
    cek = unwrap_video_cek(key, envelope.wrapped_cek)
    assert (tmp_path / "cek.bin").read_bytes() == cek

    openssl(
        "enc", "-d", "-aes-256-cbc", "-K", cek.hex(), "-iv", envelope.iv.hex(),
        "-in", str(tmp_path / "media.enc"), "-out", str(tmp_path / "media.bin"),
    )  # fmt: skip
    ours = collect(
        video_decrypt_range(
            cek, envelope.iv, MemoryRangeReader(stored), 0, len(media), len(media), len(stored)
        )
    )
    assert (tmp_path / "media.bin").read_bytes() == ours == media


# ---------------------------------------------------------------------------------------------
# Fixtures module
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "rate", "channels"), [(1, 8000, 1), (0.5, 16000, 2), (0, 8000, 1)]
)
def test_make_wav_is_valid_pcm(seconds, rate, channels):
    data = make_wav(seconds, rate, channels)
    assert data[:4] == b"RIFF"
    assert data[8:12] == b"WAVE"
    with wave.open(io.BytesIO(data)) as wav:
        assert wav.getnchannels() == channels
        assert wav.getframerate() == rate
        assert wav.getsampwidth() == 2
        assert wav.getnframes() == round(seconds * rate)
        frames = wav.readframes(wav.getnframes())
    if seconds:
        assert any(frames)  # a tone, not silence


def test_memory_range_reader_rejects_ranges_outside_the_data():
    reader = MemoryRangeReader(b"abc")
    assert b"".join(reader(1, 3)) == b"bc"
    with pytest.raises(ValueError, match="outside"):
        reader(0, 4)
