"""The PostgreSQL backend's health check: a connection the server closed is replaced before a
request uses it, and a healthy one is reused without a ``SELECT 1`` round trip."""

from __future__ import annotations

import pytest
from django.db import connection

from portal.tests.database import server_ends_session

pytestmark = pytest.mark.django_db(transaction=True)


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def start_request() -> None:
    """What Django does when a request starts: forget the last health check."""
    connection.close_if_unusable_or_obsolete()


def test_the_portal_uses_its_own_postgresql_backend():
    assert connection.settings_dict["ENGINE"] == "portal.postgresql"
    assert connection.vendor == "postgresql"
    assert connection.health_check_enabled


def test_a_healthy_connection_is_reused_without_a_ping(monkeypatch):
    pid = backend_pid()
    pings = []
    real = connection.is_usable
    monkeypatch.setattr(connection, "is_usable", lambda: pings.append(1) or real())
    for _ in range(3):
        start_request()
        assert backend_pid() == pid
    assert pings == []


def test_a_connection_the_server_closed_is_replaced_before_use():
    backend_pid()
    pid = server_ends_session()
    start_request()
    assert backend_pid() != pid  # no OperationalError: the dead connection never reached a query
