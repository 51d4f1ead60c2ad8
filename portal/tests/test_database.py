"""Django's PostgreSQL backend with ``CONN_HEALTH_CHECKS``: a connection the server closed is
replaced before a request uses it."""

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


def test_the_portal_uses_djangos_own_postgresql_backend_with_health_checks():
    assert connection.settings_dict["ENGINE"] == "django.db.backends.postgresql"
    assert connection.health_check_enabled


def test_a_connection_the_server_closed_is_replaced_before_use():
    backend_pid()
    pid = server_ends_session()
    start_request()
    assert backend_pid() != pid  # no OperationalError: the dead connection never reached a query
