"""Evidence packages (issue 15 item 5): the package holds the media as stored, the decrypted
audio when asked, the recordings' access-log rows with seals and inclusion proofs and a signed
manifest; the offline verifier accepts it with the public key alone and refuses a flipped byte
anywhere, naming the file; the export is an access-log row; the admin refuses decrypted audio
to anyone but a superuser, and audits the refusal; memory stays flat."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tracemalloc
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from celery import current_app
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.utils import timezone

from audit import evidence
from audit.models import AccessLog
from audit.sealer import seal_pending, seal_public_keys
from audit.services import access_log_append
from conftest import TEST_BUCKET
from faketwilio.recording_formats import make_wav
from recordings.lifecycle import evidence_package, evidence_verify
from recordings.lifecycle.evidence_package import NOT_RECORDED, evidence_package_write
from recordings.models import EvidencePackage, LegalHold, MediaLocation, Recording
from recordings.tests.test_encrypted_media import hold, voice_recording

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def public_keys() -> dict:
    return seal_public_keys()


@pytest.fixture
def eager() -> Iterator[None]:
    before = current_app.conf.task_always_eager
    current_app.conf.task_always_eager = True
    yield
    current_app.conf.task_always_eager = before


def plain_in_s3(s3, recording_make, data: bytes, *, ingest: bool = True) -> Recording:
    recording = recording_make(
        media_location=MediaLocation.S3,
        media_bucket=TEST_BUCKET,
        channels=1,
    )
    key = f"AC-test/{recording.sid}.wav"
    s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=data)
    Recording.objects.filter(pk=recording.pk).update(
        media_key=key, media_sha256=hashlib.sha256(data).hexdigest() if ingest else ""
    )
    recording.refresh_from_db()
    return recording


def accessed(recording: Recording, times: int = 2) -> None:
    for n in range(times):
        access_log_append(
            action="url_provider",
            outcome="allowed",
            reason_code="allowed_by_rule",
            identity=f"qa_{n}",
            recording_sid=recording.sid,
        )
    # Someone else's rows in the same seals: the package must carry proofs, not whole seals.
    access_log_append(action="admin_view", outcome="allowed", identity="admin:someone")


def seal_all() -> None:
    while seal_pending(now=timezone.now() + timedelta(minutes=1)) is not None:
        pass


@pytest.fixture
def evidence_case(s3, rsa_key, recording_make):
    """Three recordings: plain with an ingest hash, plain without one, encrypted (held key);
    their access rows sealed."""
    plain = plain_in_s3(s3, recording_make, make_wav(1))
    unhashed = plain_in_s3(s3, recording_make, make_wav(0.5), ingest=False)
    hold(rsa_key, "CR" + "b" * 32)
    plaintext = make_wav(2)
    secret, ciphertext = voice_recording(s3, rsa_key, plaintext, public_key_sid="CR" + "b" * 32)
    for recording in (plain, unhashed, secret):
        accessed(recording)
    seal_all()
    accessed(plain, 1)  # after the last seal: left out, counted
    return {
        "recordings": [plain, unhashed, secret],
        "plaintext": plaintext,
        "ciphertext": ciphertext,
    }


def written(tmp_path: Path, recordings, *, decrypted: bool = False, name: str = "p.zip"):
    path = tmp_path / name
    with path.open("w+b") as out:
        summary = evidence_package_write(
            recordings=recordings,
            reason="Subpoena 2026-114 (https://tickets.example/114)",
            exporter="admin:officer",
            include_decrypted=decrypted,
            output=out,
        )
    return path, summary


def test_package_holds_media_as_stored_rows_and_a_signed_manifest(
    tmp_path, evidence_case, public_keys
):
    plain, unhashed, secret = evidence_case["recordings"]
    path = write(tmp_path, evidence_case["recordings"], decrypted=True)

    report = evidence_verify.package_verify(path, public_keys)
    assert report.ok, report.problems
    assert (report.recordings, report.rows) == (3, 6)
    assert report.seals >= 1
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        # As stored: the ciphertext, byte for byte; the decrypted audio beside it.
        assert archive.read(f"media/{secret.sid}.wav") == evidence_case["ciphertext"]
        assert archive.read(f"decrypted/{secret.sid}.wav") == evidence_case["plaintext"]
        assert f"decrypted/{plain.sid}.wav" not in archive.namelist()  # never encrypted
        rows = [json.loads(line) for line in archive.read("audit/rows.jsonl").splitlines()]
        proofs = archive.read("audit/proofs.jsonl").splitlines()
    assert {row["recording_sid"] for row in rows} == {plain.sid, unhashed.sid, secret.sid}
    assert len(proofs) == 6
    assert manifest["audit"]["unsealed_rows_left_out"] == 1
    entries = {entry["sid"]: entry for entry in manifest["recordings"]}
    assert entries[plain.sid]["ingest_sha256"] == plain.media_sha256
    assert entries[plain.sid]["export_matches_ingest"] is True
    assert entries[unhashed.sid]["ingest_sha256"] == NOT_RECORDED
    assert entries[unhashed.sid]["export_matches_ingest"] is None
    encryption = entries[secret.sid]["encryption"]
    assert encryption["encrypted_cek"] == secret.encryption_cek
    assert encryption["public_key_sid"] == "CR" + "b" * 32
    assert entries[secret.sid]["decrypted"] == f"decrypted/{secret.sid}.wav"
    for name, facts in manifest["files"].items():
        assert len(facts["sha256"]) == 64, name
        assert facts["size"] >= 0, name
    assert manifest["exporter"] == "admin:officer"
    assert manifest["reason"].startswith("Subpoena 2026-114")
    assert manifest["signing_key_fingerprint"] in public_keys
    # No private key and no content key in clear anywhere in the package.
    raw = path.read_bytes()
    assert b"PRIVATE KEY" not in raw


def write(tmp_path: Path, recordings, **options) -> Path:
    path, summary = written(tmp_path, recordings, **options)
    assert summary.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert summary.size == path.stat().st_size
    return path


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def data_offset(path: Path, name: str) -> int:
    """Where member ``name``'s bytes start in the ZIP file."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    raw = path.read_bytes()
    start = info.header_offset
    name_length = int.from_bytes(raw[start + 26 : start + 28], "little")
    extra_length = int.from_bytes(raw[start + 28 : start + 30], "little")
    return start + 30 + name_length + extra_length


@pytest.mark.parametrize(
    "member",
    [
        "media",
        "decrypted",
        "audit/rows.jsonl",
        "audit/seals.jsonl",
        "audit/proofs.jsonl",
        "manifest.json",
        "manifest.sig",
    ],
)
def test_a_flipped_byte_is_refused_naming_the_file(tmp_path, evidence_case, public_keys, member):
    secret = evidence_case["recordings"][2]
    path = write(tmp_path, evidence_case["recordings"], decrypted=True)
    name = {"media": f"media/{secret.sid}.wav", "decrypted": f"decrypted/{secret.sid}.wav"}.get(
        member, member
    )
    flip(
        path, data_offset(path, name) + 40 if member != "manifest.sig" else data_offset(path, name)
    )
    report = evidence_verify.package_verify(path, public_keys)
    assert not report.ok
    named = "manifest.json" if member == "manifest.sig" else name
    assert any(named in problem for problem in report.problems), report.problems


def test_a_flipped_byte_anywhere_is_refused(tmp_path, evidence_case, public_keys):
    path = write(tmp_path, evidence_case["recordings"][:2])
    size = path.stat().st_size
    original = path.read_bytes()
    # Every 29th byte, headers, data and central directory alike.
    for offset in range(0, size, 29):
        path.write_bytes(original)
        flip(path, offset)
        report = evidence_verify.package_verify(path, public_keys)
        assert not report.ok, f"a flipped byte at {offset} of {size} went unnoticed"


def test_another_key_is_refused(tmp_path, evidence_case):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = write(tmp_path, evidence_case["recordings"][:1])
    other = Ed25519PrivateKey.generate().public_key()
    report = evidence_verify.package_verify(path, {evidence.public_key_fingerprint(other): other})
    assert not report.ok
    assert "not in the public key file" in report.problems[0]


def test_offline_verifier_runs_without_django_or_secrets(tmp_path, evidence_case, public_keys):
    path = write(tmp_path, evidence_case["recordings"])
    pem = tmp_path / "audit.pem"
    pem.write_text("".join(evidence.public_key_pem(k) for k in public_keys.values()))
    environment = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)}  # no settings, no keys
    run = [sys.executable, "-m", "recordings.lifecycle.evidence_verify", str(path)]
    good = subprocess.run(
        [*run, "--public-key", str(pem)], env=environment, capture_output=True, text=True
    )
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("OK: 3 recordings")
    # The audit folder, extracted, is an evidence bundle of its own.
    folder = tmp_path / "bundle"
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if name.startswith("audit/"):
                (folder / Path(name).name).parent.mkdir(exist_ok=True)
                (folder / Path(name).name).write_bytes(archive.read(name))
    assert evidence.bundle_verify(folder, public_keys).ok

    secret = evidence_case["recordings"][2]
    flip(path, data_offset(path, f"media/{secret.sid}.wav") + 100)
    bad = subprocess.run(
        [*run, "--public-key", str(pem)], env=environment, capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert f"media/{secret.sid}.wav" in bad.stderr


def test_changed_after_ingest_is_a_finding(tmp_path, s3, recording_make, public_keys):
    recording = plain_in_s3(s3, recording_make, make_wav(0.5))
    s3.put_object(Bucket=TEST_BUCKET, Key=recording.media_key, Body=make_wav(0.6))
    path = write(tmp_path, [recording])
    report = evidence_verify.package_verify(path, public_keys)
    assert report.ok  # the package is intact ...
    assert "differs from its SHA-256 at ingest" in report.findings[0]  # ... the media is not
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["recordings"][0]["export_matches_ingest"] is False


def test_job_writes_the_package_and_the_export_is_an_access_log_row(
    evidence_case, public_keys, eager, tmp_path, django_capture_on_commit_callbacks
):
    recordings = evidence_case["recordings"]
    with django_capture_on_commit_callbacks(execute=True):
        package = evidence_package.evidence_package_queue(
            recording_sids=[r.sid for r in recordings],
            reason="Regulator's request",
            requested_by="officer",
            include_decrypted=False,
        )
    package.refresh_from_db()
    assert package.state == "done", package.error
    from django.core.files.storage import default_storage

    path = tmp_path / "downloaded.zip"
    with default_storage.open(package.file_name, "rb") as stored:
        path.write_bytes(stored.read())
    assert hashlib.sha256(path.read_bytes()).hexdigest() == package.sha256
    assert evidence_verify.package_verify(path, public_keys).ok
    row = AccessLog.objects.get(action="admin_export", reason_code="evidence_package")
    assert row.identity == "admin:officer"
    assert row.detail["package_sha256"] == package.sha256
    assert row.detail["recordings"] == 3
    assert row.detail["decrypted"] == "no"
    assert row.detail["reason"] == "Regulator's request"
    per_recording = AccessLog.objects.filter(reason_code="evidence_package_recording")
    assert set(per_recording.values_list("recording_sid", flat=True)) == {r.sid for r in recordings}
    default_storage.delete(package.file_name)


def test_package_for_a_case_names_the_case(
    evidence_case, eager, django_capture_on_commit_callbacks
):
    plain, unhashed, _ = evidence_case["recordings"]
    case = LegalHold.objects.create(
        reason="fraud inquiry", case_reference="CASE-9", recording_sids=[plain.sid, unhashed.sid]
    )
    with django_capture_on_commit_callbacks(execute=True):
        package = evidence_package.evidence_package_for_case(
            hold=case, reason="For counsel", requested_by="officer", include_decrypted=False
        )
    package.refresh_from_db()
    assert package.state == "done", package.error
    assert sorted(package.recording_sids) == sorted([plain.sid, unhashed.sid])
    from django.core.files.storage import default_storage

    with default_storage.open(package.file_name, "rb") as stored, zipfile.ZipFile(stored) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["case"]["case_reference"] == "CASE-9"
    default_storage.delete(package.file_name)


def test_failed_job_is_recorded_and_keeps_nothing(s3, recording_make, eager):
    recording = plain_in_s3(s3, recording_make, make_wav(0.5))
    package = EvidencePackage.objects.create(
        requested_by="officer", reason="x", recording_sids=[recording.sid, "RE" + "0" * 32]
    )
    done = evidence_package.evidence_package_run(package_id=package.pk)
    assert done.state == "failed"
    assert "no such recording" in done.error
    assert done.file_name == ""
    assert AccessLog.objects.filter(reason_code="evidence_package", outcome="error").exists()


def test_empty_reason_or_selection_is_refused():
    with pytest.raises(evidence_package.PackageError, match="reason"):
        evidence_package.evidence_package_queue(
            recording_sids=["RE" + "1" * 32], reason="  ", requested_by="o", include_decrypted=False
        )
    with pytest.raises(evidence_package.PackageError, match="at least one"):
        evidence_package.evidence_package_queue(
            recording_sids=[], reason="why", requested_by="o", include_decrypted=False
        )


def test_commands_export_and_verify(tmp_path, evidence_case, public_keys, capsys):
    output = tmp_path / "case.zip"
    sids = [r.sid for r in evidence_case["recordings"]]
    call_command(
        "export_evidence_package",
        "--recordings",
        *sids,
        "--reason",
        "court order 7",
        "--output",
        str(output),
        "--decrypted",
        "--exporter",
        "ops",
    )
    pem = tmp_path / "audit.pem"
    pem.write_text("".join(evidence.public_key_pem(k) for k in public_keys.values()))
    call_command("verify_evidence_package", str(output), "--public-key", str(pem))
    assert "OK: 3 recordings" in capsys.readouterr().out
    row = AccessLog.objects.get(reason_code="evidence_package")
    assert row.identity == "command:ops"
    assert row.detail["decrypted"] == "yes"
    assert row.detail["package_sha256"] == hashlib.sha256(output.read_bytes()).hexdigest()
    with pytest.raises(Exception, match="exists"):
        call_command(
            "export_evidence_package",
            "--recordings",
            sids[0],
            "--reason",
            "again",
            "--output",
            str(output),
        )


def test_decrypted_audio_is_for_superusers_and_a_refusal_is_audited(client, evidence_case):
    user = User.objects.create_user("reviewer", password="pw", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(codename="view_recording", content_type__app_label="recordings"),
        Permission.objects.get(codename="view_accesslog", content_type__app_label="audit"),
    )
    client.force_login(user)
    ids = " ".join(str(r.pk) for r in evidence_case["recordings"])
    url = "/admin/recordings/recording/evidence-package/"
    answer = client.post(
        url, {"ids": ids, "reason": "why", "include_decrypted": "on", "confirm": "1"}
    )
    assert answer.status_code == 403
    denied = AccessLog.objects.get(action="admin_export", outcome="denied")
    assert denied.detail["refused"] == "decrypted audio"
    assert not EvidencePackage.objects.exists()
    # Without decrypted audio the same officer may.
    answer = client.post(url, {"ids": ids, "reason": "why", "confirm": "1"})
    assert answer.status_code == 302
    assert EvidencePackage.objects.get().include_decrypted is False


def test_memory_stays_flat(tmp_path, settings, recording_make, public_keys):
    """Ten 4 MiB recordings go through in the memory of a few storage reads."""
    settings.MEDIA_ROOT = tmp_path / "media"
    recordings = []
    for _ in range(10):
        recording = recording_make(media_location=MediaLocation.LOCAL)
        key = f"big/{recording.sid}.wav"
        target = tmp_path / "media" / "recordings" / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(os.urandom(4 * 1024 * 1024))
        Recording.objects.filter(pk=recording.pk).update(media_key=key)
        recording.refresh_from_db()
        recordings.append(recording)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        path, _ = written(tmp_path, recordings)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert path.stat().st_size > 40 * 1024 * 1024
    assert peak < 4 * 1024 * 1024, f"peak {peak} bytes for a 40 MiB package"
    assert evidence_verify.package_verify(path, public_keys).ok


def test_openssl_verifies_the_manifest_as_documented(tmp_path, evidence_case, public_keys):
    """docs/evidence-packages.md: ``openssl pkeyutl -verify -rawin`` on the unzipped files."""
    path = write(tmp_path, evidence_case["recordings"][:1])
    pem = tmp_path / "audit.pem"
    pem.write_text(evidence.public_key_pem(next(iter(public_keys.values()))))
    folder = tmp_path / "case"
    with zipfile.ZipFile(path) as archive:
        archive.extractall(folder)
    command = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pem), "-rawin"]
    files = ["-in", "manifest.json", "-sigfile", "manifest.sig"]
    good = subprocess.run([*command, *files], cwd=folder, capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
    assert "Signature Verified Successfully" in good.stdout
    manifest = folder / "manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b"admin:officer", b"admin:someone"))
    bad = subprocess.run([*command, *files], cwd=folder, capture_output=True, text=True)
    assert bad.returncode != 0
