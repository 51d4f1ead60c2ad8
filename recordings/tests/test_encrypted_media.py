"""Encrypted recordings played end to end: fixtures encrypted exactly as Twilio does, stored in
S3 through moto's server, opened with ``media_open`` (every range compared with the plaintext)
and through the real media endpoint (each bad input answers its own status and code, with its
audit row); the one-time tag check and the ETag pin; constant memory on a 64 MiB object; and an
independent decryption with node's WebCrypto, as in Twilio's JavaScript sample."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from audit.models import AccessLog
from conftest import TEST_BUCKET
from faketwilio.recording_formats import (
    encrypt_video_like_twilio,
    encrypt_voice_like_twilio,
    make_wav,
)
from recordings import jobs, tasks
from recordings.custody import keys
from recordings.integrations import storage
from recordings.media import encrypted
from recordings.media.body import (
    MediaIntegrityFailed,
    MediaNotFound,
    MediaRangeNotSatisfiable,
    MediaUnavailable,
)
from recordings.media.encrypted import (
    MediaChanged,
    MediaEncryptionUnsupported,
    MediaKeyMismatch,
    MediaKeyUnavailable,
    MediaUndecryptable,
)
from recordings.media.opener import media_open
from recordings.models import IntegrityState, MediaLocation, PrivateKey, Recording, RecordingStatus
from recordings.tests.callbacks import new_sid
from recordings.tests.playback_fixtures import allow_supervisors, ask, flex_token

pytestmark = pytest.mark.django_db

MiB = 1024 * 1024
EBML = b"\x1a\x45\xdf\xa3"


def hold(key: rsa.RSAPrivateKey, sid: str | None = None) -> PrivateKey:
    """Import ``key`` the way an operator does (PKCS#8 PEM)."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return keys.private_key_import(pem=pem, public_key_sid=sid)


def voice_recording(
    s3, key: rsa.RSAPrivateKey, plaintext: bytes, *, public_key_sid: str | None = None, **fields
) -> tuple[Recording, bytes]:
    """An encrypted voice recording stored in S3, and its stored bytes."""
    sid = new_sid("RE")
    body, details = encrypt_voice_like_twilio(
        plaintext, key.public_key(), public_key_sid or new_sid("CR")
    )
    object_key = f"AC-test/{sid}.wav"
    s3.put_object(Bucket=TEST_BUCKET, Key=object_key, Body=body)
    values = {
        "account_sid": "AC" + "a" * 32,
        "status": RecordingStatus.COMPLETED,
        "channels": 1,
        "start_time": timezone.now() - timedelta(days=1),
        "media_location": MediaLocation.S3,
        "media_bucket": TEST_BUCKET,
        "media_key": object_key,
        "encryption_type": details["type"],
        "encryption_public_key_sid": details["public_key_sid"],
        "encryption_cek": details["encrypted_cek"],
        "encryption_iv": details["iv"],
    }
    values.update(fields)
    return Recording.objects.create(sid=sid, **values), body


def video_recording(
    s3, key: rsa.RSAPrivateKey, plaintext: bytes, *, extension: str = ".mka", **fields
) -> tuple[Recording, bytes, dict[str, str]]:
    """An encrypted video recording or composition in S3 (S3 encryption client v1 envelope)."""
    sid = new_sid("RE")
    body, metadata = encrypt_video_like_twilio(plaintext, key.public_key())
    object_key = f"AC-test/{sid}{extension}"
    s3.put_object(Bucket=TEST_BUCKET, Key=object_key, Body=body, Metadata=metadata)
    values = {
        "account_sid": "AC" + "a" * 32,
        "status": RecordingStatus.COMPLETED,
        "start_time": timezone.now() - timedelta(days=1),
        "media_location": MediaLocation.S3,
        "media_bucket": TEST_BUCKET,
        "media_key": object_key,
    }
    values.update(fields)
    return Recording.objects.create(sid=sid, **values), body, metadata


def mkv_like(length: int) -> bytes:
    """Bytes that start like a Matroska file (EBML signature), then random."""
    return (EBML + os.urandom(max(length - 4, 0)))[:length] if length >= 4 else EBML[:length]


def read_all(chunks: Iterable[bytes]) -> bytes:
    out = bytearray()
    for chunk in chunks:
        assert isinstance(chunk, bytes)
        assert 0 < len(chunk) <= encrypted.CHUNK_SIZE
        out += chunk
    return bytes(out)


def fresh(recording: Recording) -> Recording:
    return Recording.objects.get(pk=recording.pk)


# Range headers, drawn relative to a plaintext of ``size`` bytes (all three RFC 9110 forms).
def range_headers(size: int):
    first = st.integers(0, size - 1)
    return st.one_of(
        st.tuples(first, st.integers(0, size + 40)).map(
            lambda pair: f"bytes={pair[0]}-{max(pair)}"
        ),
        first.map(lambda start: f"bytes={start}-"),
        st.integers(1, size + 40).map(lambda suffix: f"bytes=-{suffix}"),
    )


def expected_slice(header: str, data: bytes) -> tuple[int, int]:
    first, last = header.removeprefix("bytes=").split("-")
    if first == "":
        return max(len(data) - int(last), 0), len(data)
    return int(first), len(data) if last == "" else min(int(last) + 1, len(data))


PROPERTY = hypothesis_settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# ---------------------------------------------------------------------------------------------
# Every range equals the plaintext slice
# ---------------------------------------------------------------------------------------------


@PROPERTY
@given(data=st.data())
def test_every_voice_range_is_the_plaintext_slice(s3, rsa_key, data):
    sid = new_sid("CR")
    if not PrivateKey.objects.filter(public_key_sid__isnull=False).exists():
        hold(rsa_key, sid)
    held_sid = PrivateKey.objects.get().public_key_sid
    plaintext = data.draw(st.binary(min_size=1, max_size=3000), label="plaintext")
    recording, _ = voice_recording(s3, rsa_key, plaintext, public_key_sid=held_sid)
    for header in data.draw(st.lists(range_headers(len(plaintext)), min_size=1, max_size=4)):
        start, end = expected_slice(header, plaintext)
        body = media_open(recording=fresh(recording), range_header=header)
        assert (body.size, body.start, body.end, body.partial) == (len(plaintext), start, end, True)
        assert body.content_range == f"bytes {start}-{end - 1}/{len(plaintext)}"
        assert read_all(body.chunks) == plaintext[start:end]


@PROPERTY
@given(data=st.data())
def test_every_video_range_is_the_plaintext_slice(s3, rsa_key, data):
    if not PrivateKey.objects.exists():
        hold(rsa_key)
    length = data.draw(st.integers(4, 3000), label="length")
    extension = data.draw(st.sampled_from([".mka", ".mkv", ".webm", ".bin"]), label="extension")
    plaintext = mkv_like(length)
    recording, _, _ = video_recording(s3, rsa_key, plaintext, extension=extension)
    for header in data.draw(st.lists(range_headers(length), min_size=1, max_size=4)):
        start, end = expected_slice(header, plaintext)
        body = media_open(recording=recording, range_header=header)
        assert (body.size, body.start, body.end, body.partial) == (length, start, end, True)
        assert read_all(body.chunks) == plaintext[start:end]


# ---------------------------------------------------------------------------------------------
# Voice: verified once, pinned by ETag
# ---------------------------------------------------------------------------------------------


def test_whole_voice_recording_is_verified_once_then_pinned(s3, rsa_key, monkeypatch):
    sid = new_sid("CR")
    hold(rsa_key, sid)
    wav = make_wav(0.5)
    recording, stored = voice_recording(s3, rsa_key, wav, public_key_sid=sid)
    assert recording.integrity_state == IntegrityState.UNVERIFIED

    body = media_open(recording=recording)
    assert (body.size, body.start, body.end, body.partial) == (len(wav), 0, len(wav), False)
    assert body.content_type == "audio/wav"
    assert read_all(body.chunks) == wav

    row = fresh(recording)
    head = s3.head_object(Bucket=TEST_BUCKET, Key=recording.media_key)
    assert row.integrity_state == IntegrityState.VERIFIED
    assert row.media_etag == head["ETag"]
    assert row.media_size == len(stored) == len(wav) + 16
    assert row.media_sha256 == hashlib.sha256(stored).hexdigest()
    assert row.integrity_checked_at is not None
    assert PrivateKey.objects.get().last_used_at is not None

    # Later reads: no HEAD, no second verification, and every GET carries If-Match.
    reads: list[dict] = []
    real_read = storage.object_read

    def spying_read(**kwargs):
        reads.append(kwargs)
        return real_read(**kwargs)

    def no_stat(**kwargs):
        raise AssertionError("a verified recording is not looked at again")

    monkeypatch.setattr(storage, "object_read", spying_read)
    monkeypatch.setattr(storage, "object_stat", no_stat)
    body = media_open(recording=row, range_header="bytes=100-199")
    assert read_all(body.chunks) == wav[100:200]
    assert [(r["start"], r["end"], r["if_match"]) for r in reads] == [(100, 200, row.media_etag)]


def test_content_key_is_unwrapped_once_while_seeking(s3, rsa_key, monkeypatch):
    sid = new_sid("CR")
    hold(rsa_key, sid)
    recording, _ = voice_recording(s3, rsa_key, os.urandom(500), public_key_sid=sid)
    unwraps = []
    real_unwrap = encrypted.crypto.unwrap_voice_cek
    monkeypatch.setattr(
        encrypted.crypto,
        "unwrap_voice_cek",
        lambda *args: unwraps.append(1) or real_unwrap(*args),
    )
    for start in range(0, 500, 50):
        read_all(media_open(recording=fresh(recording), range_header=f"bytes={start}-").chunks)
    assert len(unwraps) == 1


def test_both_spellings_of_the_details_play(s3, rsa_key):
    """The sync stores either spelling in the same fields; REST's spelling here."""
    sid = new_sid("CR")
    hold(rsa_key, sid)
    plaintext = os.urandom(300)
    body, details = encrypt_voice_like_twilio(plaintext, rsa_key.public_key(), sid, spelling="rest")
    recording, _ = voice_recording(s3, rsa_key, b"x", public_key_sid=sid)
    s3.put_object(Bucket=TEST_BUCKET, Key=recording.media_key, Body=body)
    Recording.objects.filter(pk=recording.pk).update(
        encryption_cek=details["encryption_cek"], encryption_iv=details["iv"]
    )
    assert read_all(media_open(recording=fresh(recording)).chunks) == plaintext


# ---------------------------------------------------------------------------------------------
# Bad input through the real media endpoint: status, code, audit row
# ---------------------------------------------------------------------------------------------


def play(client, fake_twilio, recording: Recording, range_header: str | None = None):
    """Ask url_provider for a link the way the player does, then fetch it."""
    if not allow_supervisors_exists():
        allow_supervisors()
    answer = ask(client, recording.sid, flex_token(fake_twilio))
    assert answer.status_code == 200, answer.content
    url = urlsplit(answer.json()["media_url"])
    headers = {"HTTP_RANGE": range_header} if range_header else {}
    return client.get(f"{url.path}?{url.query}", **headers)


def allow_supervisors_exists() -> bool:
    from audit.models import AccessRule

    return AccessRule.objects.filter(name="supervisors").exists()


def content(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def error_row(recording: Recording) -> AccessLog:
    return AccessLog.objects.filter(recording_sid=recording.sid, outcome="error").latest("sequence")


def assert_refused(response, recording: Recording, status: int, code: str) -> dict:
    assert response.status_code == status, content(response)
    answer = response.json()
    assert answer["error"] == code
    assert answer["detail"]
    row = error_row(recording)
    assert (row.action, row.reason_code) == ("media_fetch", code)
    assert row.identity == "alice"
    return answer


def test_plays_through_the_endpoint_with_ranges(client, fake_twilio, s3, rsa_key):
    sid = new_sid("CR")
    hold(rsa_key, sid)
    wav = make_wav(0.3)
    recording, _ = voice_recording(s3, rsa_key, wav, public_key_sid=sid)
    whole = play(client, fake_twilio, recording)
    assert whole.status_code == 200
    assert whole["Content-Length"] == str(len(wav))
    assert content(whole) == wav
    part = play(client, fake_twilio, recording, "bytes=44-99")
    assert part.status_code == 206
    assert part["Content-Range"] == f"bytes 44-99/{len(wav)}"
    assert content(part) == wav[44:100]


def test_missing_key_for_the_sid(client, fake_twilio, s3, rsa_key):
    hold(rsa_key, new_sid("CR"))  # held, but under another SID
    recording, _ = voice_recording(s3, rsa_key, b"audio" * 50)
    answer = assert_refused(
        play(client, fake_twilio, recording), recording, 503, "decryption_key_unavailable"
    )
    assert recording.encryption_public_key_sid in answer["detail"]
    assert fresh(recording).integrity_state == IntegrityState.UNVERIFIED


def test_wrong_key_under_the_sid(client, fake_twilio, s3, rsa_key, other_rsa_key):
    sid = new_sid("CR")
    hold(other_rsa_key, sid)
    recording, _ = voice_recording(s3, rsa_key, b"audio" * 50, public_key_sid=sid)
    answer = assert_refused(
        play(client, fake_twilio, recording), recording, 503, "decryption_key_mismatch"
    )
    assert "not the key Twilio encrypted it for" in answer["detail"]
    assert fresh(recording).integrity_state == IntegrityState.UNVERIFIED
    with pytest.raises(MediaKeyMismatch):
        media_open(recording=fresh(recording))


def test_master_key_of_the_private_key_not_configured(client, fake_twilio, s3, rsa_key, settings):
    sid = new_sid("CR")
    settings.PORTAL_MASTER_KEYS = [base64.urlsafe_b64encode(os.urandom(32)).decode()]
    hold(rsa_key, sid)
    keys.key_caches_clear()
    settings.PORTAL_MASTER_KEYS = [base64.urlsafe_b64encode(os.urandom(32)).decode()]
    recording, _ = voice_recording(s3, rsa_key, b"audio" * 50, public_key_sid=sid)
    answer = assert_refused(
        play(client, fake_twilio, recording), recording, 503, "decryption_key_unavailable"
    )
    assert "PORTAL_MASTER_KEY" in answer["detail"]


@pytest.mark.parametrize(
    ("damage", "status", "code", "detail"),
    [
        ({"encryption_type": "rsa-aes-v2"}, 500, "encryption_unsupported", "only 'rsa-aes'"),
        ({"encryption_iv": "not*base64!"}, 500, "encryption_details_invalid", "'iv' is not valid"),
        ({"encryption_iv": "AAAA"}, 500, "encryption_details_invalid", "decodes to 3 bytes"),
        ({"encryption_cek": "@@@@"}, 500, "encryption_details_invalid", "'encrypted_cek'"),
        ({"encryption_cek": ""}, 500, "encryption_details_invalid", "have no 'encrypted_cek'"),
        ({"encryption_type": "invalid"}, 500, "encryption_details_invalid", "not valid JSON"),
    ],
)
def test_unusable_encryption_details(
    client, fake_twilio, s3, rsa_key, damage, status, code, detail
):
    sid = new_sid("CR")
    hold(rsa_key, sid)
    recording, _ = voice_recording(s3, rsa_key, b"audio" * 50, public_key_sid=sid, **damage)
    answer = assert_refused(play(client, fake_twilio, recording), recording, status, code)
    assert detail in answer["detail"]


@pytest.mark.parametrize(
    ("damage", "label"),
    [
        (lambda body: body[:-1], "truncated by a byte"),
        (lambda body: body[:100], "truncated mid-file"),
        (lambda body: body[:10], "shorter than the tag"),
        (lambda body: body + b"\x00", "extended"),
        (lambda body: body[:50] + bytes([body[50] ^ 1]) + body[51:], "tampered byte"),
        (lambda body: body[:-1] + bytes([body[-1] ^ 0x80]), "tampered tag"),
    ],
)
def test_damaged_file_is_flagged_audited_and_never_served(
    client, fake_twilio, s3, rsa_key, damage, label
):
    sid = new_sid("CR")
    hold(rsa_key, sid)
    recording, body = voice_recording(s3, rsa_key, os.urandom(400), public_key_sid=sid)
    s3.put_object(Bucket=TEST_BUCKET, Key=recording.media_key, Body=damage(body))

    response = play(client, fake_twilio, recording, "bytes=0-9")
    assert_refused(response, recording, 409, "media_integrity_failed")
    row = fresh(recording)
    assert row.integrity_state == IntegrityState.FAILED, label
    assert row.integrity_error
    verify_row = AccessLog.objects.get(recording_sid=recording.sid, action="media_verify")
    assert (verify_row.outcome, verify_row.reason_code) == ("error", "media_tampered")
    assert verify_row.detail["stored_size"] == len(damage(body))

    # Flagged for good: even a repaired object is not served until someone re-verifies it.
    s3.put_object(Bucket=TEST_BUCKET, Key=recording.media_key, Body=body)
    assert_refused(play(client, fake_twilio, recording), recording, 409, "media_integrity_failed")
    assert tasks.verify_recording_media.apply((recording.pk,), {"force": True}).get() == "verified"
    assert content(play(client, fake_twilio, recording)) == media_plaintext(recording)


def media_plaintext(recording: Recording) -> bytes:
    return read_all(media_open(recording=fresh(recording)).chunks)


@pytest.mark.parametrize("header", ["bytes=400-", "bytes=405-410", "bytes=415-", "bytes=900-"])
def test_range_in_the_tag_or_past_the_end_is_416(client, fake_twilio, s3, rsa_key, header):
    sid = new_sid("CR")
    hold(rsa_key, sid)
    recording, _ = voice_recording(s3, rsa_key, os.urandom(400), public_key_sid=sid)
    response = play(client, fake_twilio, recording, header)
    assert_refused(response, recording, 416, "range_not_satisfiable")
    assert response["Content-Range"] == "bytes */400"


def test_a_range_over_the_tag_is_cut_at_the_plaintext(s3, rsa_key):
    sid = new_sid("CR")
    hold(rsa_key, sid)
    plaintext = os.urandom(400)
    recording, stored = voice_recording(s3, rsa_key, plaintext, public_key_sid=sid)
    body = media_open(recording=recording, range_header=f"bytes=390-{len(stored) - 1}")
    assert (body.start, body.end, body.size) == (390, 400, 400)
    assert read_all(body.chunks) == plaintext[390:]  # never a tag byte
    with pytest.raises(MediaRangeNotSatisfiable) as refused:
        media_open(recording=fresh(recording), range_header="bytes=400-415")
    assert refused.value.size == 400


def test_object_replaced_after_verification_is_refused_then_rechecked(
    client, fake_twilio, s3, rsa_key
):
    sid = new_sid("CR")
    hold(rsa_key, sid)
    plaintext = os.urandom(2000)
    recording, stored = voice_recording(s3, rsa_key, plaintext, public_key_sid=sid)
    assert content(play(client, fake_twilio, recording)) == plaintext
    verified_etag = fresh(recording).media_etag

    tampered = stored[:7] + bytes([stored[7] ^ 0x55]) + stored[8:]
    s3.put_object(Bucket=TEST_BUCKET, Key=recording.media_key, Body=tampered)
    assert_refused(
        play(client, fake_twilio, recording, "bytes=0-15"), recording, 409, "media_changed"
    )
    row = fresh(recording)
    assert (row.integrity_state, row.media_etag) == (IntegrityState.UNVERIFIED, "")
    assert verified_etag[:20] in row.integrity_error

    # The next request checks the new object before serving any of it: tampered, so flagged.
    assert_refused(play(client, fake_twilio, recording), recording, 409, "media_integrity_failed")
    assert fresh(recording).integrity_state == IntegrityState.FAILED


def test_same_bytes_under_a_new_etag_are_verified_again_and_served(s3, rsa_key):
    """A copy (here a multipart upload) changes the ETag, not the recording: the tag decides."""
    sid = new_sid("CR")
    hold(rsa_key, sid)
    plaintext = os.urandom(3000)
    recording, stored = voice_recording(s3, rsa_key, plaintext, public_key_sid=sid)
    assert read_all(media_open(recording=recording).chunks) == plaintext
    first_etag = fresh(recording).media_etag

    upload = s3.create_multipart_upload(Bucket=TEST_BUCKET, Key=recording.media_key)
    part = s3.upload_part(
        Bucket=TEST_BUCKET,
        Key=recording.media_key,
        UploadId=upload["UploadId"],
        PartNumber=1,
        Body=stored,
    )
    s3.complete_multipart_upload(
        Bucket=TEST_BUCKET,
        Key=recording.media_key,
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )
    with pytest.raises(MediaChanged):
        media_open(recording=fresh(recording), range_header="bytes=0-")
    body = media_open(recording=fresh(recording), range_header="bytes=10-20")
    assert read_all(body.chunks) == plaintext[10:21]
    row = fresh(recording)
    assert row.integrity_state == IntegrityState.VERIFIED
    assert row.media_etag not in ("", first_etag)


def test_missing_object_is_404(s3, rsa_key):
    # (Encrypted recordings whose media Twilio keeps: test_encrypted_at_twilio.py.)
    sid = new_sid("CR")
    hold(rsa_key, sid)
    recording, _ = voice_recording(s3, rsa_key, b"a" * 100, public_key_sid=sid)
    s3.delete_object(Bucket=TEST_BUCKET, Key=recording.media_key)
    with pytest.raises(MediaNotFound):
        media_open(recording=recording)


@pytest.mark.parametrize("kind", ["voice", "video"])
def test_storage_down_while_opening_is_503_not_a_traceback(s3, rsa_key, monkeypatch, kind):
    sid = new_sid("CR")
    hold(rsa_key, sid)
    if kind == "voice":
        recording, _ = voice_recording(s3, rsa_key, os.urandom(100), public_key_sid=sid)
    else:
        recording, _, _ = video_recording(s3, rsa_key, mkv_like(100))

    real_read = storage.object_read

    def unreachable_from_the_start(**kwargs):
        # Video reads the final blocks first (padding), then the first (container signature).
        if kwargs["start"] == 0:
            raise storage.StorageUnavailable("s3: unreachable (ConnectTimeoutError)")
        yield from real_read(**kwargs)

    monkeypatch.setattr(storage, "object_read", unreachable_from_the_start)
    with pytest.raises(MediaUnavailable, match="unreachable"):
        media_open(recording=recording)
    assert fresh(recording).integrity_state == IntegrityState.UNVERIFIED


def test_no_key_material_reaches_the_logs(s3, rsa_key, caplog):
    sid = new_sid("CR")
    caplog.set_level(logging.DEBUG)
    hold(rsa_key, sid)
    recording, stored = voice_recording(s3, rsa_key, os.urandom(300), public_key_sid=sid)
    read_all(media_open(recording=recording).chunks)
    s3.put_object(Bucket=TEST_BUCKET, Key=recording.media_key, Body=stored[:-1])
    Recording.objects.filter(pk=recording.pk).update(integrity_state=IntegrityState.UNVERIFIED)
    with pytest.raises(MediaIntegrityFailed):
        media_open(recording=fresh(recording))
    cek = encrypted.crypto.unwrap_voice_cek(
        rsa_key, base64.b64decode(recording.encryption_cek)
    )
    pkcs8 = rsa_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "failed verification" in logged  # the log was captured at all
    for secret in (
        base64.b64encode(cek).decode(),
        cek.hex(),
        base64.b64encode(pkcs8).decode()[60:120],
        recording.encryption_cek[:40],
        recording.encryption_iv,
    ):
        assert secret not in logged


# ---------------------------------------------------------------------------------------------
# Verification task and its queueing by the sync
# ---------------------------------------------------------------------------------------------


def test_verification_task(s3, rsa_key):
    sid = new_sid("CR")
    good, _ = voice_recording(s3, rsa_key, os.urandom(100), public_key_sid=sid)
    assert tasks.verify_recording_media.apply((good.pk,)).get() == "decryption_key_unavailable"
    assert not AccessLog.objects.exists()  # nobody asked: nothing to audit
    hold(rsa_key, sid)
    assert tasks.verify_recording_media.apply((good.pk,)).get() == "verified"
    assert tasks.verify_recording_media.apply((good.pk,)).get() == "skipped"
    assert fresh(good).integrity_state == IntegrityState.VERIFIED

    bad, stored = voice_recording(s3, rsa_key, os.urandom(100), public_key_sid=sid)
    s3.put_object(Bucket=TEST_BUCKET, Key=bad.media_key, Body=stored[:-3])
    assert tasks.verify_recording_media.apply((bad.pk,)).get() == "media_integrity_failed"
    assert fresh(bad).integrity_state == IntegrityState.FAILED
    assert AccessLog.objects.get(action="media_verify").recording_sid == bad.sid
    assert tasks.verify_recording_media.apply((bad.pk + 1000,)).get() == "missing"


def test_sync_queues_verification_of_encrypted_stored_recordings(
    s3, rsa_key, monkeypatch, django_capture_on_commit_callbacks
):
    from recordings.ingest import sync
    from recordings.integrations import twilio_api

    queued: list[int] = []
    monkeypatch.setattr(jobs, "queue_media_verification", queued.append)

    def resource(sid: str, media_url: str, details: dict | None) -> twilio_api.TwilioRecording:
        return twilio_api.TwilioRecording(
            sid=sid,
            account_sid="AC" + "a" * 32,
            call_sid="",
            conference_sid="",
            status="completed",
            source="DialVerb",
            channels=1,
            duration="1",
            start_time=None,
            date_created=None,
            date_updated=None,
            price=None,
            price_unit="USD",
            error_code=None,
            uri="",
            media_url=media_url,
            encryption_details=details,
        )

    _, details = encrypt_voice_like_twilio(b"x", rsa_key.public_key())
    in_s3 = f"https://{TEST_BUCKET}.s3.amazonaws.com/AC/{new_sid('RE')}.wav"
    at_twilio = "https://api.twilio.com/2010-04-01/Accounts/AC/Recordings/RE.wav"
    with django_capture_on_commit_callbacks(execute=True):
        encrypted = sync.recording_store_resource(
            resource=resource(new_sid("RE"), in_s3, details)
        )
        sync.recording_store_resource(resource=resource(new_sid("RE"), in_s3, None))
        sync.recording_store_resource(resource=resource(new_sid("RE"), at_twilio, details))
    assert queued == [encrypted.pk]


# ---------------------------------------------------------------------------------------------
# Video recordings and compositions
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extension", "content_type", "plaintext"),
    [
        (".mka", "audio/x-matroska", mkv_like(5000)),
        (".mkv", "video/x-matroska", mkv_like(4096)),
        (".webm", "video/webm", mkv_like(17)),
        (".mp4", "video/mp4", b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000)),
    ],
    ids=["mka", "mkv", "webm", "mp4"],  # random bytes make unstable ids across xdist workers
)
def test_video_plays_whole_with_its_content_type(s3, rsa_key, extension, content_type, plaintext):
    hold(rsa_key)
    recording, _, _ = video_recording(s3, rsa_key, plaintext, extension=extension)
    body = media_open(recording=recording)
    assert (body.size, body.partial, body.content_type) == (len(plaintext), False, content_type)
    assert read_all(body.chunks) == plaintext


def test_video_key_is_found_among_several_and_remembered(s3, rsa_key, other_rsa_key, monkeypatch):
    right = hold(rsa_key, new_sid("CR"))
    hold(other_rsa_key)  # newer, tried first
    plaintext = mkv_like(3000)
    recording, _, _ = video_recording(s3, rsa_key, plaintext)
    assert (
        read_all(media_open(recording=recording, range_header="bytes=5-").chunks) == plaintext[5:]
    )
    assert PrivateKey.objects.get(pk=right.pk).last_used_at is not None

    # Content keys expire from the cache; the owner is remembered, so one unwrap, not two.
    encrypted._video_keys.clear()
    unwraps = []
    real_unwrap = encrypted.crypto.unwrap_video_cek
    monkeypatch.setattr(
        encrypted.crypto,
        "unwrap_video_cek",
        lambda *args: unwraps.append(1) or real_unwrap(*args),
    )
    assert read_all(media_open(recording=recording).chunks) == plaintext
    assert len(unwraps) == 1


def test_video_marked_encrypted_goes_through_the_envelope(client, fake_twilio, s3, rsa_key):
    hold(rsa_key)
    plaintext = mkv_like(2000)
    recording, _, _ = video_recording(
        s3, rsa_key, plaintext, encryption_type=encrypted.ENVELOPE_ENCRYPTION_TYPE
    )
    response = play(client, fake_twilio, recording, "bytes=100-")
    assert response.status_code == 206
    assert content(response) == plaintext[100:]


def test_video_without_its_key(client, fake_twilio, s3, rsa_key, other_rsa_key):
    recording, _, _ = video_recording(
        s3, rsa_key, mkv_like(500), encryption_type=encrypted.ENVELOPE_ENCRYPTION_TYPE
    )
    answer = assert_refused(
        play(client, fake_twilio, recording), recording, 503, "decryption_key_unavailable"
    )
    assert "holds no private key" in answer["detail"]
    hold(other_rsa_key)
    answer = assert_refused(
        play(client, fake_twilio, recording), recording, 503, "decryption_key_unavailable"
    )
    assert "none of the 1 private keys" in answer["detail"]


def test_video_whose_key_decrypts_to_another_container_is_refused(s3, rsa_key):
    """The container signature check: a right key but the file is not what its name says
    stands in for a wrong key that happened to pass the padding check."""
    hold(rsa_key)
    recording, _, _ = video_recording(s3, rsa_key, os.urandom(600), extension=".mkv")
    with pytest.raises(MediaKeyUnavailable):
        media_open(recording=recording)


def test_video_bad_envelopes(s3, rsa_key):
    hold(rsa_key)
    recording, body, metadata = video_recording(s3, rsa_key, mkv_like(300))

    def store(**changes: str | None) -> Recording:
        meta = {k: v for k, v in {**metadata, **changes}.items() if v is not None}
        s3.put_object(Bucket=TEST_BUCKET, Key=recording.media_key, Body=body, Metadata=meta)
        encrypted.content_key_caches_clear()
        return fresh(recording)

    with pytest.raises(MediaUndecryptable, match="'x-amz-iv' is not valid base64"):
        media_open(recording=store(**{"x-amz-iv": "%%%"}))
    with pytest.raises(MediaEncryptionUnsupported, match="v2 envelope"):
        media_open(recording=store(**{"x-amz-key-v2": metadata["x-amz-key"]}))
    with pytest.raises(MediaKeyUnavailable, match="or its file is damaged"):
        media_open(recording=store(**{"x-amz-unencrypted-content-length": "299"}))
    s3.put_object(Bucket=TEST_BUCKET, Key=recording.media_key, Body=body[:-1], Metadata=metadata)
    with pytest.raises(MediaIntegrityFailed, match="not whole AES blocks"):
        media_open(recording=fresh(recording))
    s3.put_object(
        Bucket=TEST_BUCKET,
        Key=recording.media_key,
        Body=body[:-16] + bytes(16),  # final block: padding no longer valid
        Metadata=metadata,
    )
    with pytest.raises(MediaKeyUnavailable, match="or its file is damaged"):
        media_open(recording=fresh(recording))


def test_video_range_past_the_end_is_416(s3, rsa_key):
    hold(rsa_key)
    recording, _, _ = video_recording(s3, rsa_key, mkv_like(300))
    with pytest.raises(MediaRangeNotSatisfiable) as refused:
        media_open(recording=recording, range_header="bytes=300-")
    assert refused.value.size == 300


# ---------------------------------------------------------------------------------------------
# Constant memory: 64 MiB objects, whole and ranged, never held in memory
# ---------------------------------------------------------------------------------------------

BIG = 64 * MiB
PIECE = 256 * 1024


def pattern(start: int, end: int) -> Iterator[bytes]:
    """Deterministic plaintext bytes [start, end), generated piece by piece (random access)."""
    position = start
    while position < end:
        index, skip = divmod(position, PIECE)
        block = hashlib.sha256(index.to_bytes(8, "big")).digest() * (PIECE // 32)
        piece = block[skip : skip + min(PIECE - skip, end - position)]
        yield piece
        position += len(piece)


class SyntheticVoiceObject:
    """A 64 MiB voice object in Twilio's format that never exists in memory: any stored range
    is the pattern XOR the GCM keystream at that offset; the tag is computed once, streaming."""

    def __init__(self, length: int, cek: bytes, iv: bytes) -> None:
        self.length, self.cek, self.iv = length, cek, iv
        encryptor = Cipher(algorithms.AES(cek), modes.GCM(iv)).encryptor()
        for piece in pattern(0, length):
            encryptor.update(piece)
        encryptor.finalize()
        self.tag = encryptor.tag

    def read(self, start: int, end: int) -> Iterator[bytes]:
        body_end = min(end, self.length)
        if start < body_end:
            counter = (2 + start // 16).to_bytes(4, "big")
            ctr = Cipher(algorithms.AES(self.cek), modes.CTR(self.iv + counter)).encryptor()
            ctr.update(bytes(start % 16))
            for piece in pattern(start, body_end):
                yield ctr.update(piece)
        if end > self.length:
            yield self.tag[max(start - self.length, 0) : end - self.length]


class SyntheticVideoObject:
    """A 64 MiB CBC envelope object, random access: ciphertext blocks are pseudo-random except
    the first (decrypts to an EBML signature) and the last (decrypts to a full padding block)."""

    def __init__(self, length: int, cek: bytes, iv: bytes) -> None:
        assert length % 16 == 0
        self.size, self.cek, self.iv = length + 16, cek, iv
        self.noise_key = os.urandom(32)
        # Raw single-block AES, to build CBC blocks by hand.
        aes = Cipher(algorithms.AES(cek), modes.ECB()).encryptor()  # noqa: S305
        self.first = aes.update(bytes(a ^ b for a, b in zip(EBML + bytes(12), iv, strict=True)))
        before_last = b"".join(self._noise(self.size - 32, self.size - 16))
        self.last = aes.update(bytes(16 ^ b for b in before_last))

    def _noise(self, start: int, end: int) -> Iterator[bytes]:
        ctr = Cipher(
            algorithms.AES(self.noise_key), modes.CTR((start // 16).to_bytes(16, "big"))
        ).encryptor()
        ctr.update(bytes(start % 16))
        for offset in range(start, end, PIECE):
            yield ctr.update(bytes(min(PIECE, end - offset)))

    def read(self, start: int, end: int) -> Iterator[bytes]:
        if start < 16:
            yield self.first[start : min(end, 16)]
        middle = (max(start, 16), min(end, self.size - 16))
        if middle[0] < middle[1]:
            yield from self._noise(*middle)
        if end > self.size - 16:
            yield self.last[max(start - (self.size - 16), 0) : end - (self.size - 16)]

    def expected_plaintext(self) -> Iterator[bytes]:
        decryptor = Cipher(algorithms.AES(self.cek), modes.CBC(self.iv)).decryptor()
        for piece in self.read(0, self.size - 16):
            yield decryptor.update(piece)


def serve_from(monkeypatch, objects: dict[str, object], metadata: dict[str, dict]) -> None:
    """Point storage at synthetic objects (by key) instead of S3."""

    def stat(*, local, bucket, key):
        return storage.StoredObject(objects[key].size_stored, '"synthetic"', "", metadata[key])

    def read(*, local, bucket, key, start, end, if_match=""):
        assert if_match == '"synthetic"'
        return objects[key].read(start, end)

    monkeypatch.setattr(storage, "object_stat", stat)
    monkeypatch.setattr(storage, "object_read", read)


def peak_of(run: Callable[[], object]) -> tuple[object, int]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = run()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def digest_of(chunks: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def test_64_mib_recordings_stream_in_constant_memory(monkeypatch, rsa_key):
    limit = 4 * MiB  # a 64 MiB object: memory must not follow its size
    sid = new_sid("CR")
    hold(rsa_key, sid)
    cek, gcm_iv, cbc_iv = os.urandom(32), os.urandom(12), os.urandom(16)

    voice = SyntheticVoiceObject(BIG, cek, gcm_iv)
    voice.size_stored = BIG + 16
    video = SyntheticVideoObject(BIG, cek, cbc_iv)
    video.size_stored = video.size
    wrapped_video = rsa_key.public_key().encrypt(cek, padding.PKCS1v15())
    serve_from(
        monkeypatch,
        {"big.wav": voice, "big.mkv": video},
        {
            "big.wav": {},
            "big.mkv": {
                "x-amz-key": base64.b64encode(wrapped_video).decode(),
                "x-amz-iv": base64.b64encode(cbc_iv).decode(),
                "x-amz-unencrypted-content-length": str(BIG),
            },
        },
    )
    _, details = encrypt_voice_like_twilio(b"", rsa_key.public_key(), sid, cek=cek, iv=gcm_iv)
    common = {"account_sid": "AC" + "a" * 32, "media_location": MediaLocation.S3}
    voice_row = Recording.objects.create(
        sid=new_sid("RE"),
        media_key="big.wav",
        encryption_type="rsa-aes",
        encryption_public_key_sid=sid,
        encryption_cek=details["encrypted_cek"],
        encryption_iv=details["iv"],
        **common,
    )
    video_row = Recording.objects.create(sid=new_sid("RE"), media_key="big.mkv", **common)
    expected = digest_of(pattern(0, BIG))

    # First play: the whole-object tag check, then the whole plaintext.
    digest, peak = peak_of(lambda: digest_of(media_open(recording=voice_row).chunks))
    assert (digest, fresh(voice_row).integrity_state) == (expected, IntegrityState.VERIFIED)
    assert peak < limit
    tail = BIG - 5 * MiB
    digest, peak = peak_of(
        lambda: digest_of(
            media_open(recording=fresh(voice_row), range_header=f"bytes={tail}-").chunks
        )
    )
    assert (digest, peak < limit) == (digest_of(pattern(tail, BIG)), True)

    expected_video = digest_of(video.expected_plaintext())
    digest, peak = peak_of(lambda: digest_of(media_open(recording=video_row).chunks))
    assert (digest, peak < limit) == (expected_video, True)
    digest, peak = peak_of(
        lambda: digest_of(media_open(recording=video_row, range_header=f"bytes={tail}-").chunks)
    )
    expected_tail = hashlib.sha256()
    position = 0
    for piece in video.expected_plaintext():
        expected_tail.update(piece[max(tail - position, 0) :])
        position += len(piece)
    assert (digest, peak < limit) == (expected_tail.hexdigest(), True)


# ---------------------------------------------------------------------------------------------
# Independent decryption: Twilio's JavaScript sample's WebCrypto steps, run in node
# ---------------------------------------------------------------------------------------------

WEBCRYPTO_DECRYPT = """
const fs = require("fs");
const [keyPath, detailsPath, mediaPath, outPath] = process.argv.slice(2);
const pem = fs.readFileSync(keyPath, "utf8");
const der = Buffer.from(pem.replace(/-----[^-]+-----/g, "").replace(/\\s+/g, ""), "base64");
const details = JSON.parse(fs.readFileSync(detailsPath, "utf8"));
(async () => {
  const { subtle } = globalThis.crypto;
  const key = await subtle.importKey(
    "pkcs8", der, { name: "RSA-OAEP", hash: "SHA-256" }, false, ["decrypt"]);
  const cek = await subtle.decrypt(
    { name: "RSA-OAEP" }, key, Buffer.from(details.encrypted_cek, "base64"));
  const aes = await subtle.importKey("raw", cek, { name: "AES-GCM" }, false, ["decrypt"]);
  const plain = await subtle.decrypt(
    { name: "AES-GCM", iv: Buffer.from(details.iv, "base64") }, aes, fs.readFileSync(mediaPath));
  fs.writeFileSync(outPath, Buffer.from(plain));
})().catch((error) => { console.error(String(error)); process.exit(1); });
"""


def test_webcrypto_decrypts_the_stored_object_to_what_the_portal_serves(s3, rsa_key, tmp_path):
    node = shutil.which("node")
    assert node, "node is needed for the WebCrypto cross-check"
    sid = new_sid("CR")
    hold(rsa_key, sid)
    recording, _ = voice_recording(s3, rsa_key, make_wav(0.2, channels=2), public_key_sid=sid)
    served = read_all(media_open(recording=recording).chunks)

    stored = s3.get_object(Bucket=TEST_BUCKET, Key=recording.media_key)["Body"].read()
    (tmp_path / "media.bin").write_bytes(stored)
    (tmp_path / "details.json").write_text(
        json.dumps({"encrypted_cek": recording.encryption_cek, "iv": recording.encryption_iv})
    )
    (tmp_path / "key.pem").write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp_path / "decrypt.js").write_text(WEBCRYPTO_DECRYPT)
    subprocess.run(
        [node, "decrypt.js", "key.pem", "details.json", "media.bin", "plain.wav"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert (tmp_path / "plain.wav").read_bytes() == served
