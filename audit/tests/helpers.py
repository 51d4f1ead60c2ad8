"""Helpers for the audit tests."""

from __future__ import annotations

from io import StringIO

from django.core.management import call_command
from django.db import connection

RECORDING_SID = "RE" + "0" * 32
# A row with every kind of value the database might give back differently (non-ASCII text, an
# IPv6 address in long form, nested JSON, a big integer): the round-trip tests append it.
AWKWARD_ROW = {
    "action": "media_fetch",
    "outcome": "allowed",
    "identity": "ünïcode ✓",
    "roles": ("wfo.full_access", "supervisor"),
    "recording_sid": RECORDING_SID,
    "client_ip": "2001:0DB8:0000::0001",
    "user_agent": "Mozilla/5.0 (X11)",
    "link_id": "lnk_1",
    "bytes_served": 2**40,
    "detail": {
        "b": [1, "two", None, True],
        "a": {"nested": "x"},
        "origin": "https://flex.twilio.com",
    },
}


def tamper(sql: str, params: list | None = None) -> None:
    """Run ``sql`` against the audit tables behind the append-only guard.

    On PostgreSQL the triggers are disabled first (as the table owner, inside the test's
    transaction, so they are back on when the test rolls back); SQLite has no triggers.
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for table in ("audit_accesslog", "audit_accesslogdigest", "audit_auditseal"):
                cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only")
                cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER {table}_no_truncate")
        cursor.execute(sql, params or [])


def command_output(name: str, *args: str) -> str:
    """What a management command prints on stdout."""
    out = StringIO()
    call_command(name, *args, stdout=out)
    return out.getvalue()
