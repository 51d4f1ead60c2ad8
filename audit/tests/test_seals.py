"""Seals, anchors and evidence bundles (``audit.sealer``, ``audit.anchors``, ``audit.evidence``),
against real PostgreSQL and moto's S3 with Object Lock: every tamper trial of the audit-evidence
issue, done behind the append-only triggers as a superuser would, is detected and named."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import timedelta
from pathlib import Path

import boto3
import pytest
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.utils import timezone

from audit import evidence, merkle, sealer
from audit.anchors import LocalAnchorStore, anchor_name
from audit.chain import (
    CHAIN_FIELDS,
    row_hash_compute,
    row_mac_compute,
    row_mac_keys,
    timestamp_canonical,
)
from audit.models import AccessLog, AuditSeal
from audit.services import access_log_append
from audit.tests.helpers import command_output, tamper

pytestmark = pytest.mark.django_db


def verify() -> str:
    return command_output("verify_audit_log")


def verify_fails() -> str:
    with pytest.raises(CommandError) as caught:
        verify()
    assert caught.value.returncode == 1
    return str(caught.value)


# --- Merkle trees (RFC 9162) ---------------------------------------------------------------


def reference_root(leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1's recursive definition, written as plainly as the RFC states it."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    left, right = reference_root(leaves[:k]), reference_root(leaves[k:])
    return hashlib.sha256(b"\x01" + left + right).digest()


@pytest.mark.parametrize("size", [*range(1, 18), 31, 32, 33, 100])
def test_merkle_roots_and_every_inclusion_proof_follow_rfc_9162(size):
    leaves = [hashlib.sha256(str(i).encode()).digest() for i in range(size)]
    root = merkle.merkle_root(leaves)
    assert root == reference_root(leaves)
    for index in range(size):
        proof = merkle.inclusion_proof(leaves, index)
        assert merkle.inclusion_verify(
            data=leaves[index], index=index, size=size, proof=proof, root=root
        )
        wrong = leaves[(index + 1) % size] if size > 1 else b"x"
        assert not merkle.inclusion_verify(
            data=wrong, index=index, size=size, proof=proof, root=root
        )


# --- Sealing -------------------------------------------------------------------------------


def test_rows_are_sealed_signed_anchored_and_verify(append_rows, audit_anchor_dir):
    append_rows(5)
    first = sealer.seal_pending()
    append_rows(2)
    second = sealer.seal_pending()
    assert sealer.seal_pending() is None  # nothing left
    assert (first.number, first.first_sequence, first.last_sequence) == (1, 1, 5)
    assert (second.number, second.first_sequence, second.row_count) == (2, 6, 2)
    assert second.prev_seal_hash == first.seal_hash
    assert sealer.anchors_publish() == 2
    assert sealer.anchors_publish() == 0  # written once
    anchored = json.loads((audit_anchor_dir / anchor_name(2)).read_bytes())
    assert anchored == sealer.seal_document(second)
    output = verify()
    assert "OK: 7 rows" in output
    assert "2 seals over 7 rows (0 not sealed yet), 2 anchors" in output


def test_a_row_left_unsealed_past_the_delay_is_named(append_rows, settings):
    append_rows(2)
    sealer.seal_and_anchor()
    late = append_rows(1)[0]
    report = sealer.seals_verify(
        now=late.occurred_at + timedelta(seconds=settings.AUDIT_SEAL_MAX_DELAY_SECONDS + 1)
    )
    assert report.problems == [
        f"row 3 of {evidence_time(late)} is not sealed after "
        f"{settings.AUDIT_SEAL_MAX_DELAY_SECONDS} s"
    ]
    assert report.unsealed_rows == 1


def evidence_time(row: AccessLog) -> str:
    return timestamp_canonical(row.occurred_at)


def test_two_sealers_at_once_seal_every_row_exactly_once(append_rows):
    append_rows(30)
    barrier = threading.Barrier(2)
    results: list[object] = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(sealer.seal_pending(max_rows=7))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    while sealer.seal_pending(max_rows=7):
        pass
    seals = list(AuditSeal.objects.order_by("number"))
    assert [s.first_sequence for s in seals] == [1, 8, 15, 22, 29]
    assert sum(s.row_count for s in seals) == 30
    assert sealer.seals_verify().problems == []


def test_a_sealer_killed_mid_batch_leaves_nothing_and_the_next_run_seals(append_rows, monkeypatch):
    append_rows(4)

    def killed(*args, **kwargs):
        raise SystemExit("sealer killed")

    monkeypatch.setattr(AuditSeal, "save", killed)
    with pytest.raises(SystemExit):
        sealer.seal_pending()
    monkeypatch.undo()
    assert not AuditSeal.objects.exists()
    seal = sealer.seal_pending()
    assert (seal.number, seal.first_sequence, seal.last_sequence) == (1, 1, 4)


# --- Tamper trials (PostgreSQL, triggers bypassed as a superuser would) --------------------


postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="tamper trials bypass PostgreSQL's triggers"
)


@postgresql_only
def test_rows_rewritten_with_the_mac_key_and_their_seals_deleted_are_caught_by_the_anchors(
    append_rows,
):
    append_rows(6)
    sealer.seal_and_anchor()
    # Rewrite rows 4 to 6 consistently (hashes, links, MACs: the attacker stole the MAC key)
    # and delete the seal that covered them.
    _key_id, mac_key = row_mac_keys()[0]
    previous = AccessLog.objects.get(sequence=3).row_hash
    for sequence in (4, 5, 6):
        row = AccessLog.objects.get(sequence=sequence)
        row.identity, row.prev_hash = "mallory", previous
        row.row_hash = row_hash_compute(row)
        tamper(
            "UPDATE audit_accesslog SET identity = %s, prev_hash = %s, row_hash = %s, "
            "row_mac = %s WHERE id = %s",
            [
                row.identity,
                row.prev_hash,
                row.row_hash,
                row_mac_compute(row.row_hash, mac_key),
                row.id,
            ],
        )
        previous = row.row_hash
    tamper("DELETE FROM audit_auditseal")
    message = verify_fails()
    assert "seal 1 is anchored but missing from the database" in message


@postgresql_only
def test_the_last_rows_deleted_with_their_seal_are_caught(append_rows):
    append_rows(3)
    sealer.seal_and_anchor()
    append_rows(2)
    sealer.seal_and_anchor()
    tamper("DELETE FROM audit_accesslog WHERE sequence > 3")
    tamper("DELETE FROM audit_auditseal WHERE number = 2")
    message = verify_fails()
    assert "seal 2 is anchored but missing from the database" in message


@postgresql_only
def test_a_truncated_log_and_seals_are_caught_when_anchors_exist(append_rows):
    append_rows(3)
    sealer.seal_and_anchor()
    tamper("TRUNCATE audit_accesslog, audit_auditseal, audit_accesslogdigest")
    message = verify_fails()
    assert "seal 1 is anchored but missing from the database" in message


@postgresql_only
def test_a_sealed_row_changed_even_with_the_mac_key_breaks_its_seal(append_rows):
    append_rows(4)
    sealer.seal_and_anchor()
    row = AccessLog.objects.get(sequence=4)  # the last row: no later link to break
    row.identity = "mallory"
    row.row_hash = row_hash_compute(row)
    _key_id, mac_key = row_mac_keys()[0]
    tamper(
        "UPDATE audit_accesslog SET identity = %s, row_hash = %s, row_mac = %s WHERE id = %s",
        [row.identity, row.row_hash, row_mac_compute(row.row_hash, mac_key), row.id],
    )
    message = verify_fails()
    assert "seal 1's Merkle root does not match rows 1 to 4" in message


@postgresql_only
def test_a_forged_seal_is_named(append_rows):
    append_rows(2)
    sealer.seal_and_anchor()
    tamper("UPDATE audit_auditseal SET merkle_root = %s", ["0" * 64])
    message = verify_fails()
    assert "seal 1 has a bad signature" in message
    assert "seal 1 differs from its anchor" in message


def test_an_empty_log_verifies_only_while_no_anchor_exists(audit_anchor_dir):
    assert "OK: 0 rows" in verify()
    store = LocalAnchorStore(audit_anchor_dir)
    store.put(1, {"number": 1, "anything": "left by an earlier log"})
    assert "seal 1 is anchored but missing from the database" in verify_fails()


# --- Anchors in S3 with Object Lock (moto) -------------------------------------------------


@pytest.fixture
def lock_bucket(s3_server, settings):
    """An Object Lock bucket on moto's server, configured as the anchor store."""
    settings.AWS_S3_ENDPOINT_URL = s3_server
    settings.AWS_S3_REGION_NAME = "us-east-1"
    settings.AWS_ACCESS_KEY_ID = "testing"
    settings.AWS_SECRET_ACCESS_KEY = "testing"
    name = f"anchors-{timezone.now():%H%M%S%f}"
    client = boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    settings.AUDIT_ANCHOR_BUCKET = name
    return client, name


def test_seals_are_anchored_in_compliance_mode_and_cannot_be_deleted(append_rows, lock_bucket):
    client, bucket = lock_bucket
    append_rows(3)
    assert sealer.seal_and_anchor() == (1, 1)
    head = client.head_object(Bucket=bucket, Key=anchor_name(1))
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] > timezone.now() + timedelta(days=2000)
    with pytest.raises(client.exceptions.ClientError):
        client.delete_object(Bucket=bucket, Key=anchor_name(1), VersionId=head["VersionId"])
    assert "1 anchors in s3://" in verify()


def test_a_second_version_put_beside_a_locked_anchor_is_named(append_rows, lock_bucket):
    client, bucket = lock_bucket
    append_rows(2)
    sealer.seal_and_anchor()
    client.put_object(Bucket=bucket, Key=anchor_name(1), Body=b'{"number": 1}')
    assert "seal 1 differs from its anchor" in verify_fails()


def test_s3_down_while_sealing_loses_nothing_and_anchors_later(append_rows, settings, lock_bucket):
    append_rows(3)
    real_endpoint = settings.AWS_S3_ENDPOINT_URL
    settings.AWS_S3_ENDPOINT_URL = "http://127.0.0.1:1"  # nothing listens there
    assert sealer.seal_and_anchor() == (1, 0)  # sealed in the database, not anchored
    assert AuditSeal.objects.count() == 1
    settings.AWS_S3_ENDPOINT_URL = real_endpoint
    report = sealer.seals_verify()
    assert report.not_yet_anchored == [1]
    assert report.problems == []  # younger than the delay: said, not failed
    later = timezone.now() + timedelta(seconds=settings.AUDIT_SEAL_MAX_DELAY_SECONDS + 1)
    assert sealer.seals_verify(now=later).problems[-1].startswith("seal 1 (")
    assert sealer.seal_and_anchor() == (0, 1)  # back: anchored now
    assert sealer.seals_verify().not_yet_anchored == []


# --- Evidence bundles, verified offline with the public key alone -------------------------


@pytest.fixture
def public_key_file(tmp_path) -> Path:
    path = tmp_path / "seal.pem"
    path.write_text(command_output("audit_public_key"))
    return path


def test_audit_public_key_prints_the_key_that_signs_the_seals(append_rows, public_key_file):
    append_rows(1)
    seal = sealer.seal_pending()
    keys = evidence.public_keys_from_pem(public_key_file.read_text())
    assert list(keys) == [seal.key_fingerprint]
    assert f"fingerprint {seal.key_fingerprint}" in public_key_file.read_text()


def test_a_bundle_verifies_offline_and_one_flipped_byte_is_refused(
    append_rows, tmp_path, public_key_file
):
    append_rows(4)
    sealer.seal_and_anchor()
    append_rows(3)
    sealer.seal_and_anchor()
    append_rows(1)  # not sealed yet: left out, counted
    bundle = tmp_path / "bundle"
    out = command_output("export_audit_evidence", "--output", str(bundle))
    assert "7 rows and 2 seals" in out
    assert "1 rows not sealed" in out
    ok = command_output(
        "verify_audit_log", "--bundle", str(bundle), "--public-key", str(public_key_file)
    )
    assert "OK: bundle of 7 rows and 2 seals verified" in ok

    rows = bundle / "rows.jsonl"
    data = bytearray(rows.read_bytes())
    data[data.index(b"identity") + 12] ^= 0x01
    rows.write_bytes(bytes(data))
    with pytest.raises(CommandError, match=r"rows\.jsonl does not match the manifest"):
        command_output(
            "verify_audit_log", "--bundle", str(bundle), "--public-key", str(public_key_file)
        )
    # Even with the manifest's hash fixed up, the row no longer matches its hash or its seal.
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["rows.jsonl"] = hashlib.sha256(rows.read_bytes()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    keys = evidence.public_keys_from_pem(public_key_file.read_text())
    report = evidence.bundle_verify(bundle, keys)
    assert any("does not match its row_hash" in problem for problem in report.problems)


def test_one_row_is_exported_with_its_inclusion_proof(append_rows, tmp_path, public_key_file):
    rows = append_rows(9)
    sealer.seal_and_anchor()
    bundle = tmp_path / "one"
    command_output("export_audit_evidence", "--output", str(bundle), "--sequence", "6")
    exported = [json.loads(line) for line in (bundle / "rows.jsonl").read_text().splitlines()]
    assert [row["sequence"] for row in exported] == [6]
    assert exported[0]["row_hash"] == rows[5].row_hash
    keys = evidence.public_keys_from_pem(public_key_file.read_text())
    assert evidence.bundle_verify(bundle, keys).ok
    # A proof for another row's place does not verify.
    proofs = bundle / "proofs.jsonl"
    entry = json.loads(proofs.read_text())
    entry["proof"][0] = "00" * 32
    proofs.write_text(json.dumps(entry) + "\n")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["proofs.jsonl"] = hashlib.sha256(proofs.read_bytes()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert evidence.bundle_verify(bundle, keys).problems == ["row 6 is not proven to be in seal 1"]


def test_a_bundle_checked_with_another_key_is_refused(append_rows, tmp_path):
    append_rows(2)
    sealer.seal_and_anchor()
    bundle = tmp_path / "b"
    command_output("export_audit_evidence", "--output", str(bundle))
    stranger = evidence.signing_key_from_seed("A" * 43)
    other = tmp_path / "other.pem"
    other.write_text(evidence.public_key_pem(stranger.public_key()))
    with pytest.raises(CommandError, match="signed by an unknown key"):
        command_output("verify_audit_log", "--bundle", str(bundle), "--public-key", str(other))


# --- Appends without a lock: gaps and late commits ----------------------------------------


def take_a_number_and_roll_back(append_rows) -> None:
    """An append whose transaction rolls back: its number is used up, its row never exists."""
    def fails() -> None:
        with transaction.atomic():
            append_rows(1)
            raise RuntimeError("the caller's transaction fails")

    with pytest.raises(RuntimeError):
        fails()


def test_a_number_taken_by_a_rolled_back_append_is_sealed_as_missing(append_rows, tmp_path):
    append_rows(1)
    take_a_number_and_roll_back(append_rows)
    append_rows(1)
    assert list(AccessLog.objects.values_list("sequence", flat=True).order_by("sequence")) == [1, 3]
    # While row 3 is young, number 2 may still be committing: the seal stops before it.
    young = sealer.seal_pending()
    assert (young.first_sequence, young.last_sequence, young.missing_sequences) == (1, 1, [])
    later = timezone.now() + sealer.GAP_GRACE + timedelta(seconds=1)
    seal = sealer.seal_pending(now=later)
    assert (seal.first_sequence, seal.last_sequence, seal.row_count) == (2, 3, 1)
    assert seal.missing_sequences == [2]
    sealer.anchors_publish()
    assert "OK: 2 rows" in verify()
    bundle = tmp_path / "gap"
    command_output("export_audit_evidence", "--output", str(bundle))
    keys = sealer.seal_public_keys()
    assert evidence.bundle_verify(bundle, keys).ok
    single = tmp_path / "one"
    command_output("export_audit_evidence", "--output", str(single), "--sequence", "3")
    assert evidence.bundle_verify(single, keys).ok


@postgresql_only
def test_a_row_committed_after_its_number_was_sealed_missing_is_named(append_rows):
    append_rows(1)
    take_a_number_and_roll_back(append_rows)
    append_rows(1)
    sealer.seal_pending(now=timezone.now() + sealer.GAP_GRACE + timedelta(seconds=1))
    while sealer.seal_pending():
        pass
    # A row slipped in at the stated gap later (an append that took far too long, or a forger
    # with the MAC key): the seal states the number empty, so verification names it.
    late = AccessLog.objects.get(sequence=3)
    late.sequence, late.identity = 2, "late"
    late.row_hash = row_hash_compute(late)
    _key_id, mac_key = row_mac_keys()[0]
    columns = ["sequence", *CHAIN_FIELDS, "prev_hash", "row_hash", "row_mac", "mac_key_id"]
    values = [
        json.dumps(v) if isinstance(v, list | dict) else v
        for v in (
            [getattr(late, c) for c in columns[:-2]]
            + [row_mac_compute(late.row_hash, mac_key), late.mac_key_id]
        )
    ]
    tamper(
        f"INSERT INTO audit_accesslog ({', '.join(columns)}) "  # noqa: S608
        f"VALUES ({', '.join(['%s'] * len(columns))})",
        values,
    )
    assert "appeared where the seal states none" in verify_fails()


def test_appends_from_several_threads_at_once_are_all_sealed_once(transactional_db):
    writers, each = 4, 20
    barrier = threading.Barrier(writers)

    def write(number: int) -> None:
        try:
            barrier.wait()
            for index in range(each):
                access_log_append(
                    action="url_provider", outcome="allowed", identity=f"w{number}-{index}"
                )
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    while sealer.seal_pending(max_rows=15):
        pass
    seals = list(AuditSeal.objects.order_by("number"))
    assert sum(seal.row_count for seal in seals) == writers * each
    assert [s.first_sequence for s in seals[1:]] == [p.last_sequence + 1 for p in seals[:-1]]
    assert sealer.seals_verify().problems == []


# --- Incremental verification -------------------------------------------------------------


def test_a_daily_check_reads_only_what_was_sealed_since_the_last_verified_seal(append_rows):
    from audit.services import chain_check_run

    append_rows(5)
    sealer.seal_and_anchor()
    first = chain_check_run(trigger="schedule", full=False)  # nothing verified yet: everything
    assert (first.ok, first.full, first.through_seal, first.count) == (True, True, 1, 5)
    append_rows(3)
    sealer.seal_and_anchor()
    second = chain_check_run(trigger="schedule", full=False)
    # The 3 new rows and the first check's own chain_verify row: only seal 2's rows are read.
    assert (second.ok, second.full, second.through_seal, second.count) == (True, False, 2, 4)
    assert "1 seals after seal 1 over 4 rows" in second.message


@postgresql_only
def test_a_daily_check_still_names_a_change_after_the_last_verified_seal(append_rows):
    from audit.services import chain_check_run

    append_rows(2)
    sealer.seal_and_anchor()
    assert chain_check_run(trigger="schedule", full=False).ok
    append_rows(2)
    sealer.seal_and_anchor()
    tamper("DELETE FROM audit_accesslog WHERE sequence = 4")
    check = chain_check_run(trigger="schedule", full=False)
    assert not check.ok
    assert "rows [4] are gone" in check.message


def test_a_daily_check_names_an_old_anchor_that_disappeared(append_rows, audit_anchor_dir):
    from audit.services import chain_check_run

    append_rows(2)
    sealer.seal_and_anchor()
    assert chain_check_run(trigger="schedule", full=False).ok
    anchor = audit_anchor_dir / anchor_name(1)
    anchor.chmod(0o644)
    anchor.unlink()
    check = chain_check_run(trigger="schedule", full=False)
    assert "seal 1, verified before, is no longer anchored" in check.message


@postgresql_only
def test_the_weekly_full_check_names_what_a_daily_check_does_not_reread(append_rows):
    from audit.services import chain_check_run

    append_rows(3)
    sealer.seal_and_anchor()
    assert chain_check_run(trigger="schedule", full=False).ok
    tamper("DELETE FROM audit_accesslog WHERE sequence = 2")  # inside the verified seal
    assert chain_check_run(trigger="schedule", full=False).ok  # not reread daily
    full = chain_check_run(trigger="schedule", full=True)
    assert (full.ok, full.full) == (False, True)
    assert "seal 1 covers 3 rows" in full.message
