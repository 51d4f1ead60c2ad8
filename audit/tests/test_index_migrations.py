"""The access log's indexes added since the log took live traffic are built without blocking
its writes on PostgreSQL (``portal.migration_operations``): ``CREATE INDEX CONCURRENTLY``, in
migrations that run outside a transaction, and still a plain index on SQLite."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from portal.migration_operations import AddIndexWithoutBlockingWrites

NON_BLOCKING = {
    "0021_access_log_restricted_index": ["accesslog_restricted_idx"],
    "0025_access_log_covering_indexes": [
        "accesslog_opened_idx",
        "accesslog_refused_idx",
        "accesslog_opened_at_idx",
    ],
}


@pytest.mark.parametrize(("name", "indexes"), NON_BLOCKING.items())
def test_the_migration_holds_only_non_blocking_index_builds(name, indexes):
    migration = MigrationLoader(None, ignore_no_migrations=True).get_migration("audit", name)
    assert migration.atomic is False
    assert all(isinstance(op, AddIndexWithoutBlockingWrites) for op in migration.operations)
    assert [op.index.name for op in migration.operations] == indexes


# No test transaction around it: CONCURRENTLY refuses to run inside one, as in `migrate`.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("name", "indexes"), NON_BLOCKING.items())
def test_postgresql_builds_and_drops_them_concurrently(name, indexes):
    assert connection.vendor == "postgresql"
    forwards = StringIO()
    call_command("sqlmigrate", "audit", name, stdout=forwards)
    backwards = StringIO()
    call_command("sqlmigrate", "audit", name, backwards=True, stdout=backwards)
    for index in indexes:
        assert f'CREATE INDEX CONCURRENTLY "{index}"' in forwards.getvalue()
        assert f'DROP INDEX CONCURRENTLY IF EXISTS "{index}"' in backwards.getvalue()
    assert "BEGIN" not in forwards.getvalue()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'audit_accesslog' "
            "AND indexname = ANY(%s)",
            [indexes],
        )
        assert sorted(row[0] for row in cursor.fetchall()) == sorted(indexes)
