"""Encrypted voice recordings that Twilio keeps (no external storage), played end to end through
the fake Twilio over HTTP: url_provider verifies the GCM tag once and checks the recording can
play before it hands out a link; the link serves the whole file and every range decrypted from
Twilio's ranges; a failed tag, a missing or wrong key, media gone at Twilio, a changed file and
Twilio down each answer their own status and code, audited; an archived copy plays from S3."""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from audit.models import AccessLog
from faketwilio.recording_formats import encrypt_voice_like_twilio, make_wav
from recordings.custody import keys
from recordings.ingest import sync
from recordings.integrations import twilio_api
from recordings.lifecycle import archive
from recordings.models import ArchivePolicy, IntegrityState, MediaLocation, Recording
from recordings.tests.callbacks import new_sid
from recordings.tests.playback_fixtures import (
    URL_PROVIDER,
    allow_supervisors,
    ask,
    basic,
    flex_token,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(fake_twilio) -> str:
    """One supervisor's Flex token, allowed by a rule (validated once, then cached)."""
    allow_supervisors()
    return flex_token(fake_twilio)


def hold(key: rsa.RSAPrivateKey, sid: str) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    keys.private_key_import(pem=pem, public_key_sid=sid)


def at_twilio(
    fake_twilio, key: rsa.RSAPrivateKey, plaintext: bytes, *, damage=None
) -> tuple[Recording, bytes]:
    """An encrypted recording Twilio keeps, synced into the portal; its stored bytes."""
    sid, key_sid = new_sid("RE"), new_sid("CR")
    body, details = encrypt_voice_like_twilio(plaintext, key.public_key(), key_sid)
    stored = damage(body) if damage else body
    fake_twilio.add_recording(sid, media=stored, channels=1, encryption_details=details)
    recording = sync.recording_sync(sid=sid)
    assert (recording.media_location, recording.encryption_type) == (
        MediaLocation.TWILIO,
        "rsa-aes",
    )
    return recording, stored


def link(client, recording: Recording, token: str) -> str:
    response = ask(client, recording.sid, token)
    assert response.status_code == 200, response.content
    url = urlsplit(response.json()["media_url"])
    return f"{url.path}?{url.query}"


def fetch(client, path: str, range_header: str | None = None):
    headers = {"HTTP_RANGE": range_header} if range_header else {}
    return client.get(path, **headers)


def content(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def media_requests(fake_twilio, recording: Recording) -> list:
    return [r for r in fake_twilio.requests if r.path.endswith(f"/Recordings/{recording.sid}.wav")]


def last_row(recording: Recording, action: str) -> AccessLog:
    return AccessLog.objects.filter(recording_sid=recording.sid, action=action).latest("sequence")


def assert_unplayable(response, recording: Recording, status: int, code: str) -> str:
    """url_provider refused with ``status``/``code``, and its row says so."""
    assert response.status_code == status, response.content
    answer = response.json()
    assert answer["error"] == code
    assert set(answer) == {"error", "detail"}
    row = last_row(recording, "url_provider")
    assert (row.outcome, row.reason_code, row.identity) == ("error", code, "alice")
    assert row.rule_name == "supervisors"
    assert not row.link_id
    return answer["detail"]


def fresh(recording: Recording) -> Recording:
    return Recording.objects.get(pk=recording.pk)


@pytest.mark.parametrize(
    "header",
    [None, "bytes=0-0", "bytes=44-99", "bytes=1000-", "bytes=-100", "bytes=0-", "bytes=4799-"],
)
def test_plays_whole_and_by_range_decrypted_from_twilio(
    client, fake_twilio, token, rsa_key, header
):
    wav = make_wav(0.3)  # 4,844 bytes
    recording, stored = at_twilio(fake_twilio, rsa_key, wav)
    hold(rsa_key, recording.encryption_public_key_sid)

    path = link(client, recording, token)

    row = fresh(recording)
    assert row.integrity_state == IntegrityState.VERIFIED
    assert (row.media_size, row.media_sha256) == (len(stored), hashlib.sha256(stored).hexdigest())
    assert row.integrity_checked_at is not None
    allowed = last_row(recording, "url_provider")
    assert (allowed.outcome, allowed.link_id) == ("allowed", path.split("/")[-1].split("?")[0])

    response = fetch(client, path, header)
    if header is None:
        assert response.status_code == 200
        assert response["Content-Length"] == str(len(wav))
        start, end = 0, len(wav)
    else:
        first, last = header.removeprefix("bytes=").split("-")
        start = len(wav) - int(last) if first == "" else int(first)
        end = len(wav) if first == "" or last == "" else int(last) + 1
        assert response.status_code == 206
        assert response["Content-Range"] == f"bytes {start}-{end - 1}/{len(wav)}"
    assert response["Content-Type"] == "audio/wav"
    assert content(response) == wav[start:end]
    # One whole download to check the tag, then Twilio is asked for plaintext bytes only.
    whole, ranged = [], []
    for request in media_requests(fake_twilio, recording):
        (ranged if request.header("Range") else whole).append(request)
    assert len(whole) == 1
    assert ranged[-1].header("Range") == f"bytes={start}-{end - 1}"
    played = last_row(recording, "media_fetch")
    assert (played.outcome, played.reason_code) == ("allowed", "playback_started")


def test_verified_once_then_each_request_checks_twilio_still_has_it(
    client, fake_twilio, token, rsa_key
):
    wav = make_wav(0.2)
    recording, _ = at_twilio(fake_twilio, rsa_key, wav)
    hold(rsa_key, recording.encryption_public_key_sid)
    first = link(client, recording, token)
    checked_at = fresh(recording).integrity_checked_at
    fake_twilio.clear_requests()

    second = link(client, recording, token)

    assert [r.header("Range") for r in media_requests(fake_twilio, recording)] == ["bytes=0-0"]
    assert fresh(recording).integrity_checked_at == checked_at
    assert content(fetch(client, first, "bytes=100-199")) == wav[100:200]
    assert content(fetch(client, second)) == wav


def test_a_file_failing_its_tag_is_flagged_audited_and_never_linked(
    client, fake_twilio, token, rsa_key
):
    def flip(body: bytes) -> bytes:
        return body[:50] + bytes([body[50] ^ 1]) + body[51:]

    recording, stored = at_twilio(fake_twilio, rsa_key, make_wav(0.2), damage=flip)
    hold(rsa_key, recording.encryption_public_key_sid)

    detail = assert_unplayable(
        ask(client, recording.sid, token), recording, 404, "media_integrity_failed"
    )

    assert "GCM tag" in detail
    row = fresh(recording)
    assert (row.integrity_state, row.media_size) == (IntegrityState.FAILED, len(stored))
    verify = last_row(recording, "media_verify")
    assert (verify.outcome, verify.reason_code) == ("error", "media_tampered")
    assert verify.detail["stored_size"] == len(stored)
    downloads = len(media_requests(fake_twilio, recording))
    # Flagged for good: asked again, it is refused without downloading anything.
    assert_unplayable(ask(client, recording.sid, token), recording, 404, "media_integrity_failed")
    assert len(media_requests(fake_twilio, recording)) == downloads
    assert not recording.links.exists()


def test_no_private_key_for_its_public_key_sid(client, fake_twilio, token, rsa_key, other_rsa_key):
    recording, _ = at_twilio(fake_twilio, rsa_key, make_wav(0.1))
    hold(other_rsa_key, new_sid("CR"))  # the portal holds a key, not this one

    detail = assert_unplayable(
        ask(client, recording.sid, token), recording, 503, "decryption_key_unavailable"
    )

    assert recording.encryption_public_key_sid in detail
    assert media_requests(fake_twilio, recording) == []  # nothing downloaded
    assert fresh(recording).integrity_state == IntegrityState.UNVERIFIED
    # Importing the key makes it playable.
    hold(rsa_key, recording.encryption_public_key_sid)
    assert ask(client, recording.sid, token).status_code == 200


def test_the_key_held_under_its_sid_is_not_the_one_twilio_used(
    client, fake_twilio, token, rsa_key, other_rsa_key
):
    recording, _ = at_twilio(fake_twilio, rsa_key, make_wav(0.1))
    hold(other_rsa_key, recording.encryption_public_key_sid)

    assert_unplayable(ask(client, recording.sid, token), recording, 503, "decryption_key_mismatch")
    assert media_requests(fake_twilio, recording) == []


def test_unusable_encryption_details_answer_503_with_their_code(
    client, fake_twilio, token, rsa_key
):
    recording, _ = at_twilio(fake_twilio, rsa_key, make_wav(0.1))
    hold(rsa_key, recording.encryption_public_key_sid)
    Recording.objects.filter(pk=recording.pk).update(encryption_iv="AAAA")

    detail = assert_unplayable(
        ask(client, recording.sid, token), recording, 503, "encryption_details_invalid"
    )
    assert "decodes to 3 bytes" in detail


def test_media_gone_at_twilio_is_404_at_url_provider_and_on_an_issued_link(
    client, fake_twilio, token, rsa_key
):
    recording, _ = at_twilio(fake_twilio, rsa_key, make_wav(0.1))
    hold(rsa_key, recording.encryption_public_key_sid)
    path = link(client, recording, token)
    fake_twilio.update_recording(recording.sid, media=None)  # deleted at Twilio meanwhile

    detail = assert_unplayable(ask(client, recording.sid, token), recording, 404, "media_not_found")
    assert "Twilio has no media" in detail

    response = fetch(client, path, "bytes=10-20")
    assert response.status_code == 404
    assert response.json()["error"] == "media_not_found"
    row = last_row(recording, "media_fetch")
    assert (row.outcome, row.reason_code) == ("error", "media_not_found")


def test_media_never_at_twilio_is_404_before_any_verification(client, fake_twilio, token, rsa_key):
    recording, _ = at_twilio(fake_twilio, rsa_key, make_wav(0.1))
    hold(rsa_key, recording.encryption_public_key_sid)
    fake_twilio.update_recording(recording.sid, media=None)

    assert_unplayable(ask(client, recording.sid, token), recording, 404, "media_not_found")
    assert fresh(recording).integrity_state == IntegrityState.UNVERIFIED


def test_twilio_down_is_503_audited_at_url_provider_and_on_the_media_link(
    client, fake_twilio, token, rsa_key
):
    wav = make_wav(0.2)
    recording, _ = at_twilio(fake_twilio, rsa_key, wav)
    hold(rsa_key, recording.encryption_public_key_sid)

    # Before the first check: Twilio answers 503 for the media.
    fake_twilio.fail(503, path_contains=f"/Recordings/{recording.sid}.wav")
    detail = assert_unplayable(
        ask(client, recording.sid, token), recording, 503, "storage_unavailable"
    )
    assert "Twilio" in detail
    assert fresh(recording).integrity_state == IntegrityState.UNVERIFIED
    fake_twilio.reset_faults()
    path = link(client, recording, token)

    # Verified, then Twilio goes away altogether (the token's validation is cached).
    fake_twilio.down()
    try:
        assert_unplayable(ask(client, recording.sid, token), recording, 503, "storage_unavailable")
        response = fetch(client, path, "bytes=0-99")
        assert response.status_code == 503
        assert response.json()["error"] == "storage_unavailable"
        row = last_row(recording, "media_fetch")
        assert (row.outcome, row.reason_code) == ("error", "storage_unavailable")
    finally:
        fake_twilio.up()
    assert fresh(recording).integrity_state == IntegrityState.VERIFIED
    assert content(fetch(client, path, "bytes=0-99")) == wav[:100]


def test_a_file_of_another_size_at_twilio_is_refused_then_checked_again(
    client, fake_twilio, token, rsa_key
):
    recording, stored = at_twilio(fake_twilio, rsa_key, make_wav(0.2))
    hold(rsa_key, recording.encryption_public_key_sid)
    path = link(client, recording, token)
    fake_twilio.update_recording(recording.sid, media=stored[:-1])  # truncated at Twilio

    response = fetch(client, path, "bytes=0-99")
    assert response.status_code == 409
    assert response.json()["error"] == "media_changed"
    assert fresh(recording).integrity_state == IntegrityState.UNVERIFIED

    # Checked again in full before anything is linked: the truncated file fails its tag.
    assert_unplayable(ask(client, recording.sid, token), recording, 404, "media_integrity_failed")
    assert fresh(recording).integrity_state == IntegrityState.FAILED


def test_a_twilio_that_ignores_range_is_cut_to_the_range(
    client, fake_twilio, token, rsa_key, monkeypatch
):
    wav = make_wav(0.2)
    recording, _ = at_twilio(fake_twilio, rsa_key, wav)
    hold(rsa_key, recording.encryption_public_key_sid)
    path = link(client, recording, token)
    real = twilio_api.recording_media_fetch

    def whole_files_only(**kwargs):
        kwargs["range_header"] = None
        return real(**kwargs)

    monkeypatch.setattr(twilio_api, "recording_media_fetch", whole_files_only)
    response = fetch(client, path, "bytes=300-1299")
    assert response.status_code == 206
    assert content(response) == wav[300:1300]
    assert content(fetch(client, path)) == wav


def test_head_is_refused_the_same_way(client, fake_twilio, token, rsa_key):
    recording, _ = at_twilio(fake_twilio, rsa_key, make_wav(0.1))
    response = client.head(
        URL_PROVIDER, {"recording_sid": recording.sid}, HTTP_AUTHORIZATION=basic(token)
    )
    assert response.status_code == 503
    row = last_row(recording, "url_provider")
    assert (row.outcome, row.reason_code) == ("error", "decryption_key_unavailable")


def test_once_archived_it_plays_from_the_bucket(client, fake_twilio, s3, token, rsa_key):
    wav = make_wav(0.2)
    recording, stored = at_twilio(fake_twilio, rsa_key, wav)
    hold(rsa_key, recording.encryption_public_key_sid)
    link(client, recording, token)  # verified at Twilio
    ArchivePolicy.objects.create(account_sid="", key_prefix="archive")

    assert archive.recording_archive(recording_id=recording.pk).code == "copied"

    row = fresh(recording)
    assert row.media_location == MediaLocation.S3
    assert row.media_sha256 == hashlib.sha256(stored).hexdigest()
    fake_twilio.clear_requests()
    path = link(client, recording, token)
    assert content(fetch(client, path, "bytes=44-99")) == wav[44:100]
    assert content(fetch(client, path)) == wav
    assert media_requests(fake_twilio, recording) == []
