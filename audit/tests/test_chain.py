"""The access log's hash chain: appending, verifying, digests, and catching tampering.

Tampering goes around the append-only guards on purpose (``helpers.tamper``): on PostgreSQL it
disables the trigger as the table owner inside the test's transaction.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError
from django.db import DatabaseError, connection, transaction

from audit import chain
from audit.chain import GENESIS_HASH, chain_verify, row_canonical, row_hash_compute
from audit.decisions import Caller, Decision
from audit.models import AccessLog, AccessLogDigest, AppendOnlyError
from audit.sealer import seal_pending
from audit.services import access_log_append, access_log_record_decision, audit_digest_create
from audit.tasks import sign_audit_head
from audit.tests.helpers import AWKWARD_ROW, RECORDING_SID, command_output, tamper

pytestmark = pytest.mark.django_db
postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the append-only trigger exists on PostgreSQL only"
)


def run_verify() -> str:
    return command_output("verify_audit_log")


# --- Appending -----------------------------------------------------------------------------


def test_new_rows_are_numbered_hashed_and_macd_without_a_link(append_rows):
    first, second, third = append_rows(3)
    assert (first.sequence, second.sequence, third.sequence) == (1, 2, 3)
    assert {first.prev_hash, second.prev_hash, third.prev_hash} == {""}  # seals vouch instead
    assert first.row_hash == hashlib.sha256(row_canonical(first)).hexdigest()
    key_id, key = chain.row_mac_keys()[0]
    assert (first.mac_key_id, first.row_mac) == (key_id, chain.row_mac_compute(first.row_hash, key))


def legacy_rows(count: int) -> list[AccessLog]:
    """Rows as the portal wrote them before seals existed: chained by ``prev_hash`` from the
    genesis hash, numbered from 1, without MACs."""
    rows, previous = [], GENESIS_HASH
    for sequence in range(1, count + 1):
        row = AccessLog(
            sequence=sequence,
            occurred_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=sequence),
            action="url_provider",
            outcome="allowed",
            identity=f"legacy_{sequence}",
            prev_hash=previous,
            row_mac="",
            mac_key_id="",
        )
        row.row_hash = row_hash_compute(row)
        insert(row)
        rows.append(AccessLog.objects.get(sequence=sequence))
        previous = row.row_hash
    return rows


@postgresql_only
def test_rows_written_before_seals_still_verify_as_a_chain_and_new_rows_follow(append_rows):
    legacy_rows(3)
    with connection.cursor() as cursor:  # the migration starts the numbers after the old rows
        cursor.execute("SELECT setval('audit_accesslog_position', 4, false)")
    appended = append_rows(2)
    assert [row.sequence for row in appended] == [4, 5]
    assert chain_verify().ok
    tamper("DELETE FROM audit_accesslog WHERE sequence = 2")
    result = chain_verify()
    assert (result.ok, result.problem, result.first_bad_sequence) == (False, "deleted", 2)


def test_hashes_survive_the_round_trip_through_the_database():
    row = access_log_append(**AWKWARD_ROW)
    stored = AccessLog.objects.get(pk=row.pk)
    assert stored.client_ip == "2001:db8::1"
    assert row_hash_compute(stored) == stored.row_hash == row.row_hash
    mapped = access_log_append(action="media_fetch", outcome="error", client_ip="::ffff:192.0.2.1")
    assert row_hash_compute(AccessLog.objects.get(pk=mapped.pk)) == mapped.row_hash


def test_canonical_form_is_sorted_compact_json_with_utc_microseconds(append_rows):
    (row,) = append_rows(1)
    document = json.loads(row_canonical(row))
    assert list(document) == sorted(document)
    assert set(document) == {*chain.CHAIN_FIELDS, "sequence", "prev_hash"}
    assert document["occurred_at"].endswith("Z")
    assert len(document["occurred_at"]) == len("2026-01-01T00:00:00.000000Z")
    assert b" " not in row_canonical(row).replace(b"pytest", b"")


def test_append_cleans_its_input():
    row = access_log_append(
        action="url_provider",
        outcome="denied",
        user_agent="A" * 600 + "\x00",
        identity="nul\x00here",
        rule_name=None,
    )
    assert len(row.user_agent) == 512
    assert row.identity == "nul\ufffdhere"
    assert row.rule_name == ""
    assert row.occurred_at.tzinfo is not None


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"outcome": "maybe"}, "outcome"),
        ({"action": "URL Provider"}, "action"),
        ({"client_ip": "not-an-ip"}, "IP"),
        ({"detail": {"ratio": 0.5}}, "float"),
        ({"detail": {"flex_token": "x"}}, "credential"),
        ({"detail": {"nested": {"Authorization": "Basic x"}}}, "credential"),
        ({"detail": {"media": "https://bucket.s3.amazonaws.com/k?X-Amz-Signature=1"}}, "URL"),
        ({"detail": {"blob": "x" * 5000}}, "under 4096"),
        ({"bytes_served": -1}, "range"),
    ],
)
def test_append_refuses_bad_values_before_writing(fields, complaint):
    values = {"action": "url_provider", "outcome": "allowed", **fields}
    with pytest.raises(ValueError, match=complaint):
        access_log_append(**values)
    assert AccessLog.objects.count() == 0


def test_record_decision_fills_the_row_from_the_decision_and_caller():
    row = access_log_record_decision(
        action="url_provider",
        caller=Caller(
            identity="qa_1", realm_user_id="u1", worker_sid="WK" + "a" * 32, roles=("admin",)
        ),
        recording_sid=RECORDING_SID,
        decision=Decision(False, "denied_by_rule", "lockout", 3),
        client_ip="198.51.100.7",
        request_id="abc",
    )
    assert (row.outcome, row.reason_code, row.rule_name, row.identity, row.roles) == (
        "denied",
        "denied_by_rule",
        "lockout",
        "qa_1",
        ["admin"],
    )


def test_append_works_inside_an_outer_transaction(append_rows):
    append_rows(1)
    with transaction.atomic():
        inner = access_log_append(action="url_provider", outcome="allowed")
        assert inner.sequence == 2
    assert chain_verify().ok


def test_the_orm_refuses_to_change_or_delete_rows(append_rows):
    (row,) = append_rows(1)
    row.identity = "someone else"
    with pytest.raises(AppendOnlyError):
        row.save()
    with pytest.raises(AppendOnlyError):
        row.delete()
    with pytest.raises(AppendOnlyError):
        AccessLog.objects.filter(pk=row.pk).update(identity="x")
    with pytest.raises(AppendOnlyError):
        AccessLog.objects.all().delete()
    with pytest.raises(AppendOnlyError):
        AccessLog.objects.bulk_create([AccessLog(sequence=99, row_hash="x")])
    with pytest.raises(AppendOnlyError, match=r"audit\.services"):
        AccessLog.objects.create(
            sequence=99, occurred_at=row.occurred_at, action="x", outcome="allowed"
        )
    assert AccessLog.objects.get(pk=row.pk).identity == "agent_0"


# --- The PostgreSQL trigger ----------------------------------------------------------------


def run_sql(*statements: str) -> None:
    """Run statements as any client could, in a savepoint so the test goes on after an error."""
    with transaction.atomic(), connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


@postgresql_only
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_accesslog SET identity = 'mallory'",
        "DELETE FROM audit_accesslog",
        "UPDATE audit_accesslogdigest SET head_hash = 'x'",
        "DELETE FROM audit_accesslogdigest",
    ],
)
def test_the_trigger_refuses_update_and_delete(append_rows, statement):
    append_rows(2)
    audit_digest_create()
    with pytest.raises(DatabaseError, match="append-only"):
        run_sql(statement)
    assert AccessLog.objects.filter(identity="mallory").count() == 0
    assert chain_verify().ok


@postgresql_only
@pytest.mark.parametrize("table", ["audit_accesslog", "audit_accesslogdigest", "audit_auditseal"])
def test_the_trigger_refuses_truncate_whatever_the_session_sets(append_rows, table):
    append_rows(2)
    # The test database's TRUNCATE triggers are off for Django's flush (conftest.py): put this
    # table's back, as in production, inside this test's transaction.
    with pytest.raises(DatabaseError, match="append-only"):
        run_sql(
            f"ALTER TABLE {table} ENABLE TRIGGER {table}_no_truncate",
            "SET LOCAL audit.allow_truncate = 'on'",  # the escape that once existed
            f"TRUNCATE {table}",
        )
    assert AccessLog.objects.count() == 2


# --- Verification --------------------------------------------------------------------------


def test_an_intact_log_verifies_and_the_command_exits_0(append_rows):
    assert chain_verify().ok
    append_rows(5)
    audit_digest_create()
    result = chain_verify()
    assert (result.ok, result.count, result.digests_checked) == (True, 5, 1)
    assert "OK: 5 rows, 1 digests, 0 seals" in run_verify()


def test_a_changed_row_is_named(append_rows):
    rows = append_rows(5)
    tamper("UPDATE audit_accesslog SET identity = 'mallory' WHERE sequence = 3")
    result = chain_verify()
    assert (result.ok, result.problem, result.first_bad_sequence) == (False, "changed", 3)
    assert (result.count, result.bad_row_id) == (2, rows[2].id)
    with pytest.raises(CommandError) as caught:
        run_verify()
    assert caught.value.returncode == 1
    message = str(caught.value)
    assert "changed at sequence 3" in message
    assert f"id {rows[2].id}" in message
    assert chain.timestamp_canonical(rows[2].occurred_at) in message


def test_a_changed_timestamp_is_named(append_rows):
    append_rows(3)
    tamper(
        "UPDATE audit_accesslog SET occurred_at = %s WHERE sequence = 2",
        [datetime(2020, 1, 1, tzinfo=UTC)],
    )
    assert chain_verify().problem == "changed"


def test_a_deleted_row_is_named_by_its_seal(append_rows):
    append_rows(5)
    seal_pending()
    tamper("DELETE FROM audit_accesslog WHERE sequence = 3")
    with pytest.raises(CommandError, match=r"rows \[3\] are gone") as caught:
        run_verify()
    assert caught.value.returncode == 1
    assert "seal 1 covers 5 rows (1 to 5), the log holds 4" in str(caught.value)


def test_a_deleted_row_with_the_rest_renumbered_is_named(append_rows):
    append_rows(5)
    # Remove row 3 and renumber 4 and 5, recomputing their hashes (prev_hash left alone).
    tamper("DELETE FROM audit_accesslog WHERE sequence = 3")
    for old in (4, 5):
        row = AccessLog.objects.get(sequence=old)
        row.sequence = old - 1
        tamper(
            "UPDATE audit_accesslog SET sequence = %s, row_hash = %s WHERE id = %s",
            [old - 1, row_hash_compute(row), row.id],
        )
    # Renumbered rows need new hashes, and a new hash cannot carry a valid MAC.
    result = chain_verify()
    assert (result.problem, result.first_bad_sequence) == ("forged", 3)


def forged_row(*, sequence: int, prev_hash: str) -> AccessLog:
    """A well-formed row with a correct hash, as someone who knows the algorithm would write."""
    template = AccessLog.objects.get(sequence=1)
    template.sequence, template.prev_hash, template.identity = sequence, prev_hash, "forger"
    template.row_hash = row_hash_compute(template)
    return template


def insert(row: AccessLog) -> None:
    columns = ["sequence", *chain.CHAIN_FIELDS, "prev_hash", "row_hash", "row_mac", "mac_key_id"]
    values = [getattr(row, column) for column in columns]
    values = [json.dumps(value) if isinstance(value, list | dict) else value for value in values]
    placeholders = ", ".join(["%s"] * len(columns))
    statement = f"INSERT INTO audit_accesslog ({', '.join(columns)}) VALUES ({placeholders})"  # noqa: S608
    tamper(statement, values)


def test_an_inserted_row_is_named(append_rows):
    rows = append_rows(5)
    # Slipped in at the end, claiming to follow row 2.
    insert(forged_row(sequence=6, prev_hash=rows[1].row_hash))
    result = chain_verify()
    assert (result.ok, result.problem, result.first_bad_sequence, result.count) == (
        False,
        "inserted",
        6,
        5,
    )
    with pytest.raises(CommandError, match="inserted at sequence 6") as caught:
        run_verify()
    assert caught.value.returncode == 1


def test_a_row_inserted_in_the_middle_is_named(append_rows):
    rows = append_rows(4)
    # Make room after row 2 (hashes recomputed, links left as they were), then insert there.
    for old in (4, 3):
        row = AccessLog.objects.get(sequence=old)
        row.sequence = old + 1
        tamper(
            "UPDATE audit_accesslog SET sequence = %s, row_hash = %s WHERE id = %s",
            [old + 1, row_hash_compute(row), row.id],
        )
    insert(forged_row(sequence=3, prev_hash=rows[1].row_hash))
    result = chain_verify()
    # The slipped-in row links and hashes correctly, but carries no valid MAC: it is named
    # itself, before the link after it would give it away.
    assert (result.problem, result.first_bad_sequence) == ("forged", 3)
    assert "not written by the portal" in result.message


def test_a_row_inserted_with_a_made_up_sequence_is_named(append_rows):
    rows = append_rows(3)
    insert(forged_row(sequence=10, prev_hash=rows[2].row_hash))
    result = chain_verify()
    assert (result.problem, result.first_bad_sequence) == ("inserted", 10)


# --- Digests -------------------------------------------------------------------------------


def test_digests_sign_the_head_and_the_task_makes_one(append_rows):
    empty = audit_digest_create()
    assert (empty.head_sequence, empty.head_hash) == (0, GENESIS_HASH)
    rows = append_rows(3)
    digest_id = sign_audit_head()
    digest = AccessLogDigest.objects.get(pk=digest_id)
    assert (digest.head_sequence, digest.head_hash) == (3, rows[2].row_hash)
    result = chain_verify()
    assert (result.ok, result.digests_checked, result.last_digest_at) == (
        True,
        2,
        digest.created_at,
    )


def rewrite_from_row_2(*, with_the_mac_key: bool) -> None:
    """Change row 2 and recompute every hash after it, as someone who knows the algorithm
    would; with the MAC key (stolen from the portal's environment) the MACs too."""
    _key_id, mac_key = chain.row_mac_keys()[0]
    previous = AccessLog.objects.get(sequence=1).row_hash
    for sequence in (2, 3, 4):
        row = AccessLog.objects.get(sequence=sequence)
        row.prev_hash = previous
        if sequence == 2:
            row.identity = "mallory"
        row.row_hash = row_hash_compute(row)
        mac = chain.row_mac_compute(row.row_hash, mac_key) if with_the_mac_key else row.row_mac
        tamper(
            "UPDATE audit_accesslog SET identity = %s, prev_hash = %s, row_hash = %s, "
            "row_mac = %s WHERE id = %s",
            [row.identity, row.prev_hash, row.row_hash, mac, row.id],
        )
        previous = row.row_hash


def test_a_chain_rewritten_consistently_without_the_mac_key_is_named_by_the_row_mac(
    append_rows,
):
    rows = append_rows(4)
    rewrite_from_row_2(with_the_mac_key=False)
    result = chain_verify()
    assert (result.problem, result.first_bad_sequence, result.bad_row_id) == (
        "forged",
        2,
        rows[1].id,
    )


def test_a_chain_rewritten_consistently_with_the_mac_key_is_caught_by_the_digest(append_rows):
    append_rows(4)
    audit_digest_create()
    rewrite_from_row_2(with_the_mac_key=True)
    result = chain_verify()
    assert (result.problem, result.first_bad_sequence, result.count) == ("digest_mismatch", 4, 4)


def test_rows_deleted_from_the_end_are_caught_by_the_digest(append_rows):
    append_rows(4)
    audit_digest_create()
    tamper("DELETE FROM audit_accesslog WHERE sequence >= 3")
    result = chain_verify()
    assert (result.problem, result.first_bad_sequence) == ("deleted", 3)


def test_a_forged_digest_signature_is_caught(append_rows):
    append_rows(2)
    digest = audit_digest_create()
    tamper("UPDATE audit_accesslogdigest SET signature = %s WHERE id = %s", ["0" * 64, digest.id])
    result = chain_verify()
    assert (result.problem, result.first_bad_sequence) == ("digest_mismatch", 2)
    assert "bad signature" in result.message


def test_a_digest_from_an_unknown_key_is_caught(append_rows, settings):
    append_rows(1)
    settings.AUDIT_SIGNING_KEY = "an old key that was dropped"
    audit_digest_create()
    settings.AUDIT_SIGNING_KEY = "the new key"
    result = chain_verify()
    assert result.problem == "digest_mismatch"
    assert "unknown key" in result.message
    settings.AUDIT_SIGNING_KEY = ["the new key", "an old key that was dropped"]
    assert chain_verify().ok


def test_the_signing_key_is_never_the_secret_key_and_follows_the_setting(settings):
    settings.AUDIT_SIGNING_KEY = None
    (_, derived), *_ = chain.signing_keys()
    assert derived not in (
        settings.SECRET_KEY.encode(),
        hashlib.sha256(settings.SECRET_KEY.encode()).digest(),
    )
    settings.PORTAL_MASTER_KEYS = ["A" * 43 + "="]
    assert chain.signing_keys()[0][1] != derived
    settings.AUDIT_SIGNING_KEY = "configured"
    assert chain.signing_keys() == [(chain.signing_key_id(b"configured"), b"configured")]
