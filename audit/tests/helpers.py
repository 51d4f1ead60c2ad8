"""Helpers for the audit tests."""

from __future__ import annotations

from django.db import connection

RECORDING_SID = "RE" + "0" * 32


def tamper(sql: str, params: list | None = None) -> None:
    """Run ``sql`` against the audit tables behind the append-only guard.

    On PostgreSQL the triggers are disabled first (as the table owner, inside the test's
    transaction, so they are back on when the test rolls back); SQLite has no triggers.
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for table in ("audit_accesslog", "audit_accesslogdigest"):
                cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only")
        cursor.execute(sql, params or [])
