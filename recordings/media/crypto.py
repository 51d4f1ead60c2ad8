"""Decrypting Twilio's encrypted recordings, whole or by byte range, in constant memory.

Twilio produces two formats (see Twilio's "Encrypted Recordings" and "Video Recordings and
Compositions" docs):

* **Voice** (``encryption_details.type == "rsa-aes"``): a random 256-bit content key (CEK) per
  recording, wrapped with the customer's RSA public key using RSA-OAEP (SHA-256, MGF1-SHA-256,
  no label). The audio is AES-256-GCM with a 12-byte IV; the stored file is
  ``ciphertext || 16-byte tag``, so the plaintext is 16 bytes shorter than the file.
* **Video recordings and compositions** (the AWS S3 encryption client's v1 envelope): the CEK is
  wrapped with RSA PKCS#1 v1.5 and sent as S3 object metadata (``x-amz-key``, ``x-amz-iv``,
  ``x-amz-unencrypted-content-length``, ``x-amz-matdesc``); the media is AES-256-CBC with PKCS#7
  padding. **CBC has no authentication**: a modified object decrypts to modified media, and only
  the padding of the final block is checked.

Everything here is pure: no Django, no models, no network or file I/O. Media bytes come in
through a *range reader*, a callable ``read_range(start, end_exclusive) -> Iterable[bytes]`` that
the storage layer provides (typically one S3 ``GET`` with a ``Range`` header, yielding the body in
pieces). Each function asks for exactly the stored bytes it needs, once, and yields plaintext in
pieces of at most ``chunk_size`` bytes (1 MiB by default), so memory use does not grow with the
size of the recording. Arguments are checked when a function is called; storage is read only
as the returned iterator is consumed.

Errors are one small hierarchy rooted at :class:`DecryptionError`. No message ever contains key
material (content keys, IVs or private keys); nothing here logs.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.ciphers import (
    AEADDecryptionContext,
    Cipher,
    algorithms,
    modes,
)

__all__ = [
    "CEK_LENGTH",
    "CHUNK_SIZE",
    "GCM_IV_LENGTH",
    "GCM_MAX_PLAINTEXT_LENGTH",
    "GCM_TAG_LENGTH",
    "VIDEO_IV_LENGTH",
    "VOICE_ENCRYPTION_TYPE",
    "DecryptionError",
    "MalformedEncryptionDetails",
    "RangeNotSatisfiable",
    "RangeReader",
    "TamperedMedia",
    "UnsupportedEncryption",
    "VideoEnvelope",
    "VoiceEncryption",
    "WrongKey",
    "parse_video_envelope",
    "parse_voice_encryption_details",
    "unwrap_video_cek",
    "unwrap_voice_cek",
    "verify_gcm_tag",
    "video_decrypt_range",
    "video_plaintext_length",
    "voice_decrypt_range",
    "voice_decrypt_stream",
    "voice_plaintext_length",
]

RangeReader = Callable[[int, int], Iterable[bytes]]
"""``read_range(start, end_exclusive)``: the stored object's bytes ``[start, end_exclusive)``,
as an iterable of pieces (any sizes, in order). Must yield exactly ``end - start`` bytes."""

CHUNK_SIZE: Final = 1024 * 1024
"""Default upper bound, in bytes, on every piece fed to a cipher and every piece yielded."""

CEK_LENGTH: Final = 32  # AES-256
GCM_IV_LENGTH: Final = 12
GCM_TAG_LENGTH: Final = 16
VIDEO_IV_LENGTH: Final = 16
VOICE_ENCRYPTION_TYPE: Final = "rsa-aes"

_BLOCK: Final = 16
_COUNTER_MODULUS: Final = 1 << 32
GCM_MAX_PLAINTEXT_LENGTH: Final = (_COUNTER_MODULUS - 2) * _BLOCK
"""GCM's plaintext limit, 2^39 - 256 bits (64 GiB - 32 bytes): counters 2 .. 2^32 - 1."""

# The S3 encryption client's name for v1 envelope content encryption (when it writes one at all).
_CBC_CEK_ALGORITHM: Final = "AES/CBC/PKCS5Padding"
_META_PREFIX: Final = "x-amz-meta-"


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class DecryptionError(Exception):
    """Base class: a recording cannot be decrypted as asked."""


class MalformedEncryptionDetails(DecryptionError):
    """Encryption details or envelope metadata are missing a field or hold an unusable value."""


class UnsupportedEncryption(DecryptionError):
    """The recording uses an encryption scheme this module does not implement."""


class WrongKey(DecryptionError):
    """The private key does not unwrap this recording's content key (it is not the key used)."""


class TamperedMedia(DecryptionError):
    """The stored object is not what was encrypted: the GCM tag or CBC padding is wrong, or it
    is truncated, longer than expected, or not a whole number of blocks."""


class RangeNotSatisfiable(DecryptionError):
    """The requested byte range is not inside the plaintext."""


# --------------------------------------------------------------------------------------------
# Voice: encryption details and key unwrap
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VoiceEncryption:
    """A voice recording's parsed ``encryption_details``.

    ``public_key_sid`` names the key Twilio actually used (it can differ from the configured one,
    error 16107), so pick the private key by it.
    """

    public_key_sid: str
    wrapped_cek: bytes = field(repr=False)
    iv: bytes = field(repr=False)


# Field -> accepted spellings, in order: the status callback / parameter table spelling first,
# then the REST GET example's spelling (the Twilio doc shows both).
_VOICE_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "public_key_sid": ("public_key_sid", "encryption_public_key_sid"),
    "wrapped_cek": ("encrypted_cek", "encryption_cek"),
    "iv": ("iv",),
}


def parse_voice_encryption_details(details: Mapping[str, Any] | str) -> VoiceEncryption:
    """Parse a voice recording's ``encryption_details`` into a :class:`VoiceEncryption`.

    Accepts the mapping from the REST resource, or the JSON string Twilio posts as the
    ``EncryptionDetails`` callback parameter. Both spellings Twilio documents are read:
    ``public_key_sid``/``encrypted_cek`` and ``encryption_public_key_sid``/``encryption_cek``
    (which one the live API returns is unconfirmed).

    Raises :class:`UnsupportedEncryption` for a ``type`` other than ``rsa-aes``, and
    :class:`MalformedEncryptionDetails` for anything else wrong: not an object, missing or empty
    fields, conflicting spellings, bad base64, an IV that is not 12 bytes.
    """
    if isinstance(details, str):
        try:
            details = json.loads(details)
        except ValueError:
            raise MalformedEncryptionDetails("encryption details are not valid JSON") from None
    if not isinstance(details, Mapping):
        raise MalformedEncryptionDetails(
            f"encryption details must be an object, not {type(details).__name__}"
        )

    kind = details.get("type")
    if kind is None or kind == "":
        raise MalformedEncryptionDetails("encryption details have no 'type'")
    if kind != VOICE_ENCRYPTION_TYPE:
        raise UnsupportedEncryption(
            f"unsupported voice encryption type {str(kind)[:40]!r} (only 'rsa-aes' is known)"
        )

    values = {name: _one_of(details, spellings) for name, spellings in _VOICE_FIELDS.items()}
    iv = _b64(values["iv"], "iv")
    if len(iv) != GCM_IV_LENGTH:
        raise MalformedEncryptionDetails(
            f"'iv' decodes to {len(iv)} bytes; AES-GCM here needs {GCM_IV_LENGTH}"
        )
    wrapped = _b64(values["wrapped_cek"], "encrypted_cek")
    if not wrapped:
        raise MalformedEncryptionDetails("'encrypted_cek' is empty")
    return VoiceEncryption(public_key_sid=values["public_key_sid"], wrapped_cek=wrapped, iv=iv)


def _one_of(details: Mapping[str, Any], spellings: tuple[str, ...]) -> str:
    """The single non-empty string value among ``spellings``; error if none, or if they differ."""
    found = {name: details[name] for name in spellings if details.get(name) not in (None, "")}
    if not found:
        raise MalformedEncryptionDetails(
            "encryption details have no " + " or ".join(repr(name) for name in spellings)
        )
    for name, value in found.items():
        if not isinstance(value, str):
            raise MalformedEncryptionDetails(f"{name!r} must be a string")
    if len(set(found.values())) > 1:
        raise MalformedEncryptionDetails(
            "encryption details disagree between " + " and ".join(repr(name) for name in found)
        )
    return next(iter(found.values()))


def _b64(value: str, name: str) -> bytes:
    """Strict base64 (standard or URL-safe alphabet, padding optional); the value is never
    echoed in the error, since for keys it is sensitive."""
    text = "".join(value.split()).translate(str.maketrans("-_", "+/"))
    data = text.rstrip("=")
    padded = len(text) != len(data)
    if "=" in data or (padded and (len(text) % 4 or len(text) - len(data) > 2)):
        raise MalformedEncryptionDetails(f"{name!r} is not valid base64 (bad padding)")
    try:
        return base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedEncryptionDetails(f"{name!r} is not valid base64") from None


def unwrap_voice_cek(private_key: RSAPrivateKey, wrapped: bytes) -> bytes:
    """Unwrap a voice recording's content key: RSA-OAEP, SHA-256, MGF1-SHA-256, no label.

    These are the parameters of Twilio's own decryptor samples (BouncyCastle's
    ``OAEPWithSHA256AndMGF1Padding``; note SunJCE's same-named transformation uses MGF1-SHA-1).
    Raises :class:`WrongKey` if ``private_key`` is not the key the CEK was wrapped for, and also
    if what it unwraps is not a 32-byte AES-256 key.
    """
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    return _unwrap(private_key, wrapped, oaep, "RSA-OAEP-SHA256")


def unwrap_video_cek(private_key: RSAPrivateKey, wrapped: bytes) -> bytes:
    """Unwrap a video recording's or composition's content key: RSA PKCS#1 v1.5.

    This is what ``openssl rsautl -decrypt`` (Twilio's documented recipe) and Java's default
    ``"RSA"`` cipher do. Caution: OpenSSL >= 3.2 (bundled with ``cryptography``) uses *implicit
    rejection* for PKCS#1 v1.5, so a wrong key usually yields pseudo-random bytes instead of an
    error. Those bytes are almost never 32 long, so the length check here raises
    :class:`WrongKey` -- but about 1 wrong key in a few hundred (RSA-2048) passes it. The CBC
    padding check when the final block is decrypted (:func:`video_plaintext_length`,
    :func:`video_decrypt_range`) catches nearly all of the rest; check it once per object.
    """
    return _unwrap(private_key, wrapped, padding.PKCS1v15(), "RSA PKCS#1 v1.5")


def _unwrap(
    private_key: RSAPrivateKey, wrapped: bytes, scheme: padding.AsymmetricPadding, name: str
) -> bytes:
    if not isinstance(private_key, RSAPrivateKey):
        raise TypeError(f"private_key must be an RSA private key, not {type(private_key).__name__}")
    modulus_bytes = (private_key.key_size + 7) // 8
    if len(wrapped) != modulus_bytes:
        raise WrongKey(
            f"wrapped content key is {len(wrapped)} bytes but this private key is "
            f"{private_key.key_size}-bit: it was wrapped for a different key"
        )
    try:
        cek = private_key.decrypt(bytes(wrapped), scheme)
    except ValueError:
        raise WrongKey(f"{name} unwrap failed: this private key did not wrap the key") from None
    if len(cek) != CEK_LENGTH:
        raise WrongKey(
            f"{name} unwrap gave {len(cek)} bytes, not a {CEK_LENGTH}-byte AES-256 key: "
            "wrong private key"
        )
    return cek


# --------------------------------------------------------------------------------------------
# Voice: AES-256-GCM
# --------------------------------------------------------------------------------------------


def voice_plaintext_length(size: int) -> int:
    """Plaintext length of a voice object of ``size`` stored bytes (``size - 16``).

    Raises :class:`TamperedMedia` if the object is too short to hold a tag, or longer than
    any AES-GCM message can be.
    """
    if size < GCM_TAG_LENGTH:
        raise TamperedMedia(
            f"object is {size} bytes, shorter than the {GCM_TAG_LENGTH}-byte GCM tag: truncated"
        )
    plaintext_len = size - GCM_TAG_LENGTH
    if plaintext_len > GCM_MAX_PLAINTEXT_LENGTH:
        raise TamperedMedia("object is longer than any AES-GCM message can be")
    return plaintext_len


def verify_gcm_tag(
    cek: bytes, iv: bytes, read_range: RangeReader, size: int, *, chunk_size: int = CHUNK_SIZE
) -> None:
    """Check a whole voice object against its GCM tag, reading it once, in constant memory.

    ``size`` is the stored object's size (ciphertext + 16-byte tag). Streams the object through
    an AES-GCM decryptor (plaintext goes into one reused buffer and is discarded) and finishes
    with the tag check. Raises :class:`TamperedMedia` if the tag does not match (modified,
    truncated or extended object, or a CEK/IV that are not this object's).

    The portal verifies an object once, records its ETag, and then serves ranges with
    :func:`voice_decrypt_range` under ``If-Match`` on that ETag.
    """
    _check_voice_params(cek, iv, chunk_size)
    plaintext_len = voice_plaintext_length(size)
    decryptor = Cipher(algorithms.AES(cek), modes.GCM(iv)).decryptor()
    scratch = bytearray(chunk_size + _BLOCK - 1)
    tag = bytearray()
    for piece in _read_exact(read_range, 0, size, chunk_size):
        body, tail = _split_at(piece, plaintext_len)
        if body:
            decryptor.update_into(body, scratch)
        tag += tail
        plaintext_len -= len(body)
    _finalize_gcm(decryptor, bytes(tag))


def voice_decrypt_stream(
    cek: bytes, iv: bytes, read_range: RangeReader, size: int, *, chunk_size: int = CHUNK_SIZE
) -> Iterator[bytes]:
    """Decrypt a whole voice object, yielding plaintext pieces, and check the GCM tag at the end.

    ``size`` is the stored object's size (ciphertext + tag); the object is read in one pass.
    The tag can only be checked after the last byte, so :class:`TamperedMedia` is raised *after*
    all plaintext has been yielded. A caller must therefore not have sent any of it to a user
    before the generator finished, unless the object was verified earlier (e.g. by
    :func:`verify_gcm_tag` and pinned by ETag); write to a temporary file, or verify first.
    """
    _check_voice_params(cek, iv, chunk_size)
    plaintext_len = voice_plaintext_length(size)
    return _voice_stream(cek, iv, read_range, size, plaintext_len, chunk_size)


def _voice_stream(
    cek: bytes, iv: bytes, read_range: RangeReader, size: int, plaintext_len: int, chunk_size: int
) -> Iterator[bytes]:
    decryptor = Cipher(algorithms.AES(cek), modes.GCM(iv)).decryptor()
    tag = bytearray()
    remaining = plaintext_len
    for piece in _read_exact(read_range, 0, size, chunk_size):
        body, tail = _split_at(piece, remaining)
        if body:
            yield decryptor.update(body)
        tag += tail
        remaining -= len(body)
    _finalize_gcm(decryptor, bytes(tag))


def _finalize_gcm(decryptor: AEADDecryptionContext, tag: bytes) -> None:
    try:
        decryptor.finalize_with_tag(tag)
    except InvalidTag:
        raise TamperedMedia(
            "GCM tag mismatch: the object was modified or truncated, or the key is not its key"
        ) from None


def voice_decrypt_range(
    cek: bytes,
    iv: bytes,
    read_range: RangeReader,
    start: int,
    end_exclusive: int,
    plaintext_len: int,
    *,
    chunk_size: int = CHUNK_SIZE,
) -> Iterator[bytes]:
    """Decrypt plaintext bytes ``[start, end_exclusive)`` of a voice object, **without** the tag.

    GCM encrypts with AES-CTR: plaintext byte ``o`` is XORed with keystream block
    ``AES(cek, iv || inc32^(2 + o // 16))``, from byte ``o % 16`` of it. So any range can be
    decrypted from just the same range of ciphertext; only those stored bytes are read, in one
    call to ``read_range``. ``plaintext_len`` is the object's size minus 16.

    Nothing is authenticated here: use it only on an object already checked with
    :func:`verify_gcm_tag` and pinned (ETag + ``If-Match``). Raises :class:`RangeNotSatisfiable`
    for a range outside ``[0, plaintext_len]`` (so one reaching into the tag). An empty range
    yields nothing and reads nothing.
    """
    _check_voice_params(cek, iv, chunk_size)
    if plaintext_len < 0 or plaintext_len > GCM_MAX_PLAINTEXT_LENGTH:
        raise TamperedMedia("plaintext length is outside what AES-GCM allows")
    _check_range(start, end_exclusive, plaintext_len)
    return _voice_range(cek, iv, read_range, start, end_exclusive, chunk_size)


def _voice_range(
    cek: bytes, iv: bytes, read_range: RangeReader, start: int, end: int, chunk_size: int
) -> Iterator[bytes]:
    decrypt = _voice_decryptor(cek, iv, start)
    for piece in _read_exact(read_range, start, end, chunk_size):
        yield decrypt(piece)


def _voice_decryptor(cek: bytes, iv: bytes, offset: int) -> Callable[[memoryview], bytes]:
    """A function that decrypts a voice object's ciphertext piece by piece from ``offset``
    on: one cipher context for the whole range, whatever the number of pieces.

    From offset 0 it is GCM's own decryptor, whose tag is never checked here (the object was
    checked once by :func:`verify_gcm_tag` and reads are pinned to it). It XORs exactly the
    keystream the CTR path would, but OpenSSL runs GCM on its combined AES and GHASH code,
    which is faster than its AES-CTR on CPUs with vector AES; a player's first request and
    every full download start there. Any other offset needs the counter positioned by hand:
    :class:`_GcmCounterStream`.
    """
    if offset == 0:
        return Cipher(algorithms.AES(cek), modes.GCM(iv)).decryptor().update
    return _GcmCounterStream(cek, iv, offset).update


class _GcmCounterStream:
    """AES-CTR positioned at a GCM plaintext offset, with GCM's ``inc32`` counter semantics.

    OpenSSL's CTR mode increments the whole 128-bit block, but GCM increments only the low 32
    bits, modulo 2^32, leaving the IV alone. The two agree until the 32-bit counter wraps, so
    this starts a fresh CTR decryptor, with counter 0, exactly at each wrap point. (In a valid
    GCM message the wrap never happens: counters 2 .. 2^32 - 1 cover its maximum length. It is
    handled anyway so the keystream is right for any offset.)
    """

    def __init__(self, cek: bytes, iv: bytes, offset: int) -> None:
        self._cek = cek
        self._iv = iv
        self._offset = offset
        self._start_segment()

    def _start_segment(self) -> None:
        block, skip = divmod(self._offset, _BLOCK)
        counter = (2 + block) % _COUNTER_MODULUS
        nonce = self._iv + counter.to_bytes(4, "big")
        self._ctr = Cipher(algorithms.AES(self._cek), modes.CTR(nonce)).decryptor()
        # The counter wraps after (2^32 - counter) more blocks.
        self._segment_end = (block + (_COUNTER_MODULUS - counter)) * _BLOCK
        if skip:
            self._ctr.update(bytes(skip))

    def update(self, data: bytes | memoryview) -> bytes:
        """XOR ``data`` (the ciphertext at the current offset) with the keystream."""
        room = self._segment_end - self._offset
        if len(data) <= room:
            self._offset += len(data)
            out = self._ctr.update(data)
            if self._offset == self._segment_end:
                self._start_segment()
            return out
        view = memoryview(data)
        head = self._ctr.update(view[:room])
        self._offset += room
        self._start_segment()
        return head + self.update(view[room:])


def _check_voice_params(cek: bytes, iv: bytes, chunk_size: int) -> None:
    if len(cek) != CEK_LENGTH:
        raise MalformedEncryptionDetails(f"content key must be {CEK_LENGTH} bytes")
    if len(iv) != GCM_IV_LENGTH:
        raise MalformedEncryptionDetails(f"voice IV must be {GCM_IV_LENGTH} bytes")
    _check_chunk_size(chunk_size)


# --------------------------------------------------------------------------------------------
# Video / compositions: S3 encryption client v1 envelope, AES-256-CBC + PKCS#7
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoEnvelope:
    """A video recording's or composition's v1 envelope, from its S3 object metadata.

    ``unencrypted_content_length`` is None when the metadata does not carry it; then
    :func:`video_plaintext_length` finds it from the final block. ``matdesc`` is the parsed
    material description (Twilio sends ``{}``).
    """

    wrapped_cek: bytes = field(repr=False)
    iv: bytes = field(repr=False)
    unencrypted_content_length: int | None
    matdesc: Mapping[str, Any]


def parse_video_envelope(metadata: Mapping[str, str]) -> VideoEnvelope:
    """Parse S3 object metadata into a :class:`VideoEnvelope`.

    Keys are matched case-insensitively, with or without the ``x-amz-meta-`` prefix, so both
    boto3's ``head_object()["Metadata"]`` (``x-amz-key``) and raw response headers
    (``x-amz-meta-x-amz-key``) work. Raises :class:`UnsupportedEncryption` for an S3 encryption
    client v2 envelope (``x-amz-key-v2``) or a content algorithm other than AES/CBC, and
    :class:`MalformedEncryptionDetails` for a missing key or IV, bad base64, an IV that is not
    16 bytes, a bad length, a material description that is not a JSON object, or one field
    given twice with different values.
    """
    meta: dict[str, str] = {}
    for raw_name, value in metadata.items():
        name = raw_name.strip().lower()
        if name.startswith(_META_PREFIX):
            name = name[len(_META_PREFIX) :]
        if name in meta and meta[name] != value:
            raise MalformedEncryptionDetails(f"metadata gives {name!r} twice, differently")
        meta[name] = value

    if "x-amz-key-v2" in meta:
        raise UnsupportedEncryption(
            "S3 encryption client v2 envelope (x-amz-key-v2); only the v1 envelope is supported"
        )
    cek_alg = meta.get("x-amz-cek-alg")
    if cek_alg is not None and cek_alg != _CBC_CEK_ALGORITHM:
        raise UnsupportedEncryption(f"unsupported content algorithm {cek_alg[:40]!r}")
    for required in ("x-amz-key", "x-amz-iv"):
        if not meta.get(required):
            raise MalformedEncryptionDetails(f"object metadata has no {required!r}")

    wrapped = _b64(meta["x-amz-key"], "x-amz-key")
    if not wrapped:
        raise MalformedEncryptionDetails("'x-amz-key' is empty")
    iv = _b64(meta["x-amz-iv"], "x-amz-iv")
    if len(iv) != VIDEO_IV_LENGTH:
        raise MalformedEncryptionDetails(
            f"'x-amz-iv' decodes to {len(iv)} bytes; AES-CBC needs {VIDEO_IV_LENGTH}"
        )

    length: int | None = None
    raw_length = meta.get("x-amz-unencrypted-content-length")
    if raw_length is not None and raw_length.strip() != "":
        text = raw_length.strip()
        if not (text.isascii() and text.isdigit()):
            raise MalformedEncryptionDetails(
                "'x-amz-unencrypted-content-length' is not a non-negative integer"
            )
        length = int(text)

    matdesc: Mapping[str, Any] = {}
    raw_matdesc = meta.get("x-amz-matdesc")
    if raw_matdesc is not None and raw_matdesc.strip() != "":
        try:
            parsed = json.loads(raw_matdesc)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise MalformedEncryptionDetails("'x-amz-matdesc' is not a JSON object")
        matdesc = parsed
    return VideoEnvelope(
        wrapped_cek=wrapped, iv=iv, unencrypted_content_length=length, matdesc=matdesc
    )


def video_plaintext_length(
    cek: bytes, iv: bytes, read_range: RangeReader, ciphertext_len: int
) -> int:
    """Plaintext length of a video object, from the PKCS#7 padding of its final block.

    Reads the last 32 stored bytes (16 for a one-block object). Use it when the metadata lacks
    ``x-amz-unencrypted-content-length``, or to check that value and the key once per object
    (see :func:`unwrap_video_cek`). Raises :class:`TamperedMedia` for invalid padding or a
    length that is not a positive multiple of 16.
    """
    _check_video_params(cek, iv, _BLOCK)
    _check_ciphertext_len(ciphertext_len)
    last = ciphertext_len // _BLOCK - 1
    read_from = (last - 1) * _BLOCK if last else 0
    stored = b"".join(bytes(p) for p in _read_exact(read_range, read_from, ciphertext_len, _BLOCK))
    previous, final = (stored[:_BLOCK], stored[_BLOCK:]) if last else (iv, stored)
    decryptor = Cipher(algorithms.AES(cek), modes.CBC(previous)).decryptor()
    block = decryptor.update(final) + decryptor.finalize()
    return ciphertext_len - _padding_length(block)


def video_decrypt_range(
    cek: bytes,
    iv: bytes,
    read_range: RangeReader,
    start: int,
    end_exclusive: int,
    plaintext_len: int,
    ciphertext_len: int,
    *,
    chunk_size: int = CHUNK_SIZE,
) -> Iterator[bytes]:
    """Decrypt plaintext bytes ``[start, end_exclusive)`` of a video (AES-256-CBC) object.

    CBC plaintext block ``i`` is ``AES-1(C[i]) XOR C[i-1]`` (the IV for block 0), so a range is
    decrypted from its own blocks plus the one ciphertext block before it; only those stored
    bytes are read, in one call to ``read_range``. When the range reaches the end of the
    plaintext, the final block is read too (one extra block when the padding fills a whole
    block) and its PKCS#7 padding is validated *before* that block's plaintext is yielded:
    invalid padding, or padding that disagrees with ``plaintext_len``, raises
    :class:`TamperedMedia`.

    **No authentication:** CBC detects nothing but bad final padding, so a modified object
    (or, rarely, a wrong key: see :func:`unwrap_video_cek`) yields wrong plaintext silently.
    ``ciphertext_len`` is the stored object's size; ``plaintext_len`` is
    ``x-amz-unencrypted-content-length`` (or :func:`video_plaintext_length`). Raises
    :class:`RangeNotSatisfiable` for a range outside ``[0, plaintext_len]``.
    """
    _check_video_params(cek, iv, chunk_size)
    _check_ciphertext_len(ciphertext_len)
    if not ciphertext_len - _BLOCK <= plaintext_len < ciphertext_len:
        raise MalformedEncryptionDetails(
            f"unencrypted length {plaintext_len} does not fit a {ciphertext_len}-byte "
            "AES-CBC object (PKCS#7 adds 1 to 16 bytes)"
        )
    _check_range(start, end_exclusive, plaintext_len)
    return _video_range(
        cek, iv, read_range, start, end_exclusive, plaintext_len, ciphertext_len, chunk_size
    )


def _video_range(
    cek: bytes,
    iv: bytes,
    read_range: RangeReader,
    start: int,
    end: int,
    plaintext_len: int,
    ciphertext_len: int,
    chunk_size: int,
) -> Iterator[bytes]:
    if start == end:
        return
    first_block = start // _BLOCK
    final_start = ciphertext_len - _BLOCK  # padded-plaintext offset of the final block
    # Padded-plaintext bytes [block_start, stop) are decrypted; [start, end) of them are yielded.
    block_start = first_block * _BLOCK
    stop = ciphertext_len if end == plaintext_len else -(-end // _BLOCK) * _BLOCK
    read_from = block_start - _BLOCK if first_block else block_start

    pieces = _read_exact(read_range, read_from, stop, chunk_size)
    previous = iv
    if first_block:
        previous, pieces = _take(pieces, _BLOCK)
    decryptor = Cipher(algorithms.AES(cek), modes.CBC(previous)).decryptor()

    position = block_start  # padded-plaintext offset of the next decrypted byte
    final_block = bytearray()
    for piece in pieces:
        out = memoryview(decryptor.update(piece))
        if not out:
            continue
        out_start, position = position, position + len(out)
        if position > final_start:  # the final block is held back until its padding is checked
            keep = max(final_start - out_start, 0)
            final_block += out[keep:]
            out = out[:keep]
        lo = max(start - out_start, 0)
        hi = min(end - out_start, len(out))
        if lo < hi:
            yield from _emit(out[lo:hi], chunk_size)
    rest = decryptor.finalize()
    if rest:  # cryptography's CBC decryptor never holds back whole blocks; be safe anyway
        final_block += rest
    if stop == ciphertext_len:
        pad = _padding_length(bytes(final_block))
        if ciphertext_len - pad != plaintext_len:
            raise TamperedMedia(
                f"PKCS#7 padding says {ciphertext_len - pad} plaintext bytes, "
                f"metadata says {plaintext_len}"
            )
        lo = max(start - final_start, 0)
        hi = end - final_start
        if lo < hi:
            yield from _emit(memoryview(final_block)[lo:hi], chunk_size)


def _padding_length(final_block: bytes) -> int:
    """Validated PKCS#7 padding length of a decrypted final block (1..16)."""
    if len(final_block) != _BLOCK:
        raise TamperedMedia("final AES-CBC block is incomplete")
    pad = final_block[-1]
    if not 1 <= pad <= _BLOCK or not hmac.compare_digest(final_block[-pad:], bytes([pad]) * pad):
        raise TamperedMedia(
            "invalid PKCS#7 padding in the final block: object modified or truncated, "
            "or the key is not its key"
        )
    return pad


def _check_video_params(cek: bytes, iv: bytes, chunk_size: int) -> None:
    if len(cek) != CEK_LENGTH:
        raise MalformedEncryptionDetails(f"content key must be {CEK_LENGTH} bytes")
    if len(iv) != VIDEO_IV_LENGTH:
        raise MalformedEncryptionDetails(f"video IV must be {VIDEO_IV_LENGTH} bytes")
    _check_chunk_size(chunk_size)


def _check_ciphertext_len(ciphertext_len: int) -> None:
    if ciphertext_len < _BLOCK or ciphertext_len % _BLOCK:
        raise TamperedMedia(
            f"object is {ciphertext_len} bytes, not a positive multiple of the AES block size: "
            "truncated or not AES-CBC"
        )


# --------------------------------------------------------------------------------------------
# Shared plumbing
# --------------------------------------------------------------------------------------------


def _check_chunk_size(chunk_size: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError("chunk_size must be a positive integer")


def _check_range(start: int, end: int, plaintext_len: int) -> None:
    if not 0 <= start <= end <= plaintext_len:
        raise RangeNotSatisfiable(
            f"range [{start}, {end}) is not inside the {plaintext_len}-byte plaintext"
        )


def _read_exact(
    read_range: RangeReader, start: int, end: int, chunk_size: int
) -> Iterator[memoryview]:
    """Stored bytes ``[start, end)`` as views of at most ``chunk_size`` bytes, checking that the
    reader returns exactly that many (fewer means the object shrank or the read broke off)."""
    expected = end - start
    if expected <= 0:
        return
    received = 0
    for chunk in read_range(start, end):
        view = memoryview(chunk).cast("B")
        received += len(view)
        if received > expected:
            raise TamperedMedia(
                f"storage returned more than the {expected} bytes asked for: object changed"
            )
        for offset in range(0, len(view), chunk_size):
            yield view[offset : offset + chunk_size]
    if received < expected:
        raise TamperedMedia(
            f"storage returned {received} of {expected} bytes: object truncated or changed"
        )


def _take(pieces: Iterator[memoryview], count: int) -> tuple[bytes, Iterator[memoryview]]:
    """The first ``count`` bytes of ``pieces``, and an iterator over the rest."""
    head = bytearray()
    for piece in pieces:
        need = count - len(head)
        head += piece[:need]
        if len(head) == count:
            rest = piece[need:]

            def remainder(rest: memoryview = rest) -> Iterator[memoryview]:
                if rest:
                    yield rest
                yield from pieces

            return bytes(head), remainder()
    raise TamperedMedia("storage returned fewer bytes than asked for")  # pragma: no cover


def _split_at(piece: memoryview, limit: int) -> tuple[memoryview, memoryview]:
    """``piece`` split into its first ``max(limit, 0)`` bytes and the rest."""
    cut = max(min(limit, len(piece)), 0)
    return piece[:cut], piece[cut:]


def _emit(data: memoryview, chunk_size: int) -> Iterator[bytes]:
    for offset in range(0, len(data), chunk_size):
        yield bytes(data[offset : offset + chunk_size])
