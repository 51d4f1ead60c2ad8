"""Appending outside any transaction, as url_provider does in production: the row's number from
PostgreSQL's sequence, then one INSERT that commits itself, with no lock shared by other
requests. The rows must read back exactly, and a failure must leave nothing half-written."""

from __future__ import annotations

import psycopg
import pytest
from django.db import DatabaseError, connection

from audit.chain import chain_verify, row_hash_compute
from audit.models import AccessLog
from audit.services import UNCHAINED, access_log_append
from audit.tests.helpers import AWKWARD_ROW

pytestmark = pytest.mark.django_db(transaction=True)


def test_rows_appended_in_autocommit_read_back_exactly_as_returned():
    assert not connection.in_atomic_block
    first = access_log_append(action="url_provider", outcome="allowed", identity="qa_1")
    second = access_log_append(**AWKWARD_ROW)
    assert (first.sequence, second.sequence) == (1, 2)
    assert (first.prev_hash, second.prev_hash) == (UNCHAINED, UNCHAINED)  # seals vouch instead
    stored = AccessLog.objects.get(pk=second.pk)
    assert stored.sequence == second.sequence
    assert stored.client_ip == second.client_ip == "2001:db8::1"
    assert stored.roles == ["wfo.full_access", "supervisor"]
    assert stored.detail == AWKWARD_ROW["detail"]
    assert stored.occurred_at == second.occurred_at
    assert row_hash_compute(stored) == stored.row_hash == second.row_hash
    assert chain_verify().ok


def test_a_returned_row_is_a_saved_row():
    row = access_log_append(action="url_provider", outcome="denied")
    assert row.pk is not None
    assert not row._state.adding
    assert AccessLog.objects.filter(pk=row.pk, sequence=row.sequence).exists()


def test_a_failed_append_writes_nothing_and_leaves_the_connection_usable():
    access_log_append(action="url_provider", outcome="allowed")
    with psycopg.connect(**connection.get_connection_params()) as other:
        other.execute("LOCK TABLE audit_accesslog IN ACCESS EXCLUSIVE MODE")
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '100ms'")
        with pytest.raises(DatabaseError):
            # The number is taken, the INSERT cannot get the table in time.
            access_log_append(action="url_provider", outcome="allowed")
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
        other.rollback()
    assert AccessLog.objects.count() == 1
    later = access_log_append(action="url_provider", outcome="allowed")
    assert later.sequence == 3  # number 2 was taken by the failed append: a gap a seal states
    assert chain_verify().ok


def test_text_that_cannot_be_encoded_is_cleaned_not_lost():
    # A Flex identity is JSON from Twilio, where "\ud800" is legal; the row must still be written.
    row = access_log_append(action="url_provider", outcome="denied", identity="bad \ud800 x")
    assert AccessLog.objects.get(pk=row.pk).identity == "bad \ufffd x"
