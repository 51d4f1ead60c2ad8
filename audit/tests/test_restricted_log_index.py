"""The access log's ``?restricted=1`` filter (and the dashboard's restricted box) are served by
the partial index on the rows about restricted recordings (migration 0021), not by a scan of
every row's JSON detail; the page's query count is pinned."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.models import AccessLog
from audit.services import access_log_append

pytestmark = [pytest.mark.django_db, pytest.mark.urls("audit.tests.urls")]

LOG = "admin:audit_accesslog_changelist"


def restricted_attempts(count: int) -> list[AccessLog]:
    return [
        access_log_append(
            action="url_provider",
            outcome="denied",
            reason_code="restricted_no_grant",
            identity=f"agent_{index}",
            recording_sid="RE" + "5" * 32,
            detail={"restricted": True},
        )
        for index in range(count)
    ]


def plan(sql: str) -> str:
    with connection.cursor() as cursor:
        # Tiny test tables make a sequential scan cheapest whatever the indexes: forbid it, so
        # the plan says which index PostgreSQL can serve the query from.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql)
        text = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("SET LOCAL enable_seqscan = on")
    return text


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's plans")
def test_the_restricted_filter_reads_the_partial_index(
    admin_client, append_rows, django_assert_num_queries
):
    append_rows(30)
    wanted = restricted_attempts(3)
    append_rows(30)
    # As the other filtered log pages (test_admin_scale): session, user, permissions, the
    # view's own row, the count and the page.
    with django_assert_num_queries(10):
        page = admin_client.get(reverse(LOG), {"restricted": "1", "activity": "all"})
    assert page.status_code == 200
    shown = [row.sequence for row in page.context["cl"].result_list]
    assert shown == [row.sequence for row in reversed(wanted)]

    with CaptureQueriesContext(connection) as captured:
        admin_client.get(reverse(LOG), {"restricted": "1", "activity": "all"})
    listing = [
        q["sql"]
        for q in captured
        if q["sql"].startswith("SELECT")
        and "audit_accesslog" in q["sql"]
        and "restricted" in q["sql"]
    ]
    assert listing, [q["sql"][:120] for q in captured]
    for sql in listing:
        assert "accesslog_restricted_idx" in plan(sql), sql


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's plans")
def test_the_index_holds_only_the_restricted_rows():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index "
            "JOIN pg_class c ON c.oid = indexrelid WHERE c.relname = 'accesslog_restricted_idx'"
        )
        [definition] = cursor.fetchone()
    assert "WHERE ((detail -> 'restricted'::text) = 'true'::jsonb)" in definition
    assert "sequence DESC" in definition
