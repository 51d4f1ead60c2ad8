"""Django's PostgreSQL backend, with a cheaper health check for persistent connections.

Django's ``CONN_HEALTH_CHECKS`` sends ``SELECT 1`` at the start of every request that reuses a
connection: one database round trip per webhook and per url_provider request, for a failure
(the server restarted, or dropped an idle connection) that happens a few times a year. A server
that ends a connection first sends its reason and closes the socket, so the socket turns
readable; an idle, healthy connection has nothing to read. This backend checks that locally and
sends ``SELECT 1`` only when the socket has something to say (or the connection is not idle),
so a dead connection is still replaced before the request uses it.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base
from psycopg import pq


def socket_quiet(connection) -> bool:
    """True when a psycopg connection is idle, open, and its socket has nothing to read: the
    server has not closed it nor sent anything since the last command finished."""
    pgconn = connection.pgconn
    if connection.closed or pgconn.status != pq.ConnStatus.OK:
        return False
    if pgconn.transaction_status != pq.TransactionStatus.IDLE:
        return False
    try:
        readable, _, _ = select.select([pgconn.socket], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


class DatabaseWrapper(base.DatabaseWrapper):
    """PostgreSQL, with the request-start health check done without a round trip when the
    connection's socket shows it is healthy (a full ``SELECT 1`` otherwise)."""

    def close_if_health_check_failed(self) -> None:
        """Replace a connection the server has closed; skip the ping for a quiet one."""
        if (
            self.connection is not None
            and self.health_check_enabled
            and not self.health_check_done
            and socket_quiet(self.connection)
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()
