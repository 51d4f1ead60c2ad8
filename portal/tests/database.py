"""Test helpers that act on the database server from outside the portal's connection."""

from __future__ import annotations

import time

import psycopg
from django.db import connection


def server_ends_session() -> int:
    """Have PostgreSQL terminate the backend behind Django's connection, as a server restart
    would, and wait (up to 5 s) until the backend is gone; returns the old pid."""
    pid = connection.connection.info.backend_pid
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            alive = admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid])
            if alive.fetchone() is None:
                break
            time.sleep(0.01)
    return pid
