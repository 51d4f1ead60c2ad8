"""Django's PostgreSQL backend, with a cheaper health check for persistent connections and a
direct path for the hot paths' single-row statements.

Django's ``CONN_HEALTH_CHECKS`` sends ``SELECT 1`` at the start of every request that reuses a
connection: one database round trip per webhook and per url_provider request, for a failure
(the server restarted, or dropped an idle connection) that happens a few times a year. A server
that ends a connection first sends its reason and closes the socket, so the socket turns
readable; an idle, healthy connection has nothing to read. This backend checks that locally and
sends ``SELECT 1`` only when the socket has something to say (or the connection is not idle),
so a dead connection is still replaced before the request uses it.

``fetch_one`` runs one statement and returns its row through libpq's prepared-statement calls,
with psycopg's own adapters for the values: a webhook's event row cost 250 µs of client CPU
through a Django and psycopg cursor and 180 µs this way (measured in one process on the 2-core
dev machine), most of the difference being psycopg's per-query Python machinery.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
import select
import weakref
from collections.abc import Sequence
from typing import Any

import psycopg
from django.db.backends.postgresql import base
from psycopg import pq
from psycopg.adapt import PyFormat, Transformer

_PLACEHOLDER = re.compile(r"%s")
_UNDEFINED_STATEMENT = b"26000"  # invalid_sql_statement_name: the server forgot the statement
_SUCCESS = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK)


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

    def fetch_one(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        """Run ``sql`` (``%s`` placeholders) with ``params`` and return its first row, or None.

        For the hot paths' one-row statements, which run in autocommit: libpq runs it as a
        named prepared statement (unnamed inside a transaction, or when
        ``DATABASE_PREPARED_STATEMENTS`` is off for poolers that cannot keep them), psycopg's
        adapters dump the parameters and load the row, and errors come out as Django's
        database errors. In a transaction psycopg has not begun yet (an ``atomic`` block before
        its first query), it goes through a cursor, which begins it.
        """
        self.close_if_health_check_failed()
        self.ensure_connection()
        self.validate_no_broken_transaction()
        raw = self.connection
        with self.wrap_database_errors:
            if not raw.autocommit and raw.pgconn.transaction_status == pq.TransactionStatus.IDLE:
                with raw.cursor() as cursor:
                    cursor.execute(sql, params)
                    return cursor.fetchone()
            with raw.lock:
                transformer = Transformer(raw)
                args = transformer.dump_sequence(params, [PyFormat.TEXT] * len(params))
                result = self._run_statement(raw, libpq_statement(sql), args)
                if not result.ntuples:
                    return None
                transformer.set_pgresult(result)
                return transformer.load_row(0, tuple)

    def _run_statement(
        self, raw: psycopg.Connection, statement: tuple[bytes, bytes], args: list[Any]
    ) -> pq.abc.PGresult:
        name, text = statement
        pgconn = raw.pgconn
        if (
            self.settings_dict["OPTIONS"].get("prepare_threshold") is None
            or pgconn.transaction_status != pq.TransactionStatus.IDLE
        ):
            # Unnamed: behind a pooler that cannot keep statements, and inside a transaction,
            # where a statement the session has forgotten would abort the caller's work.
            return _checked(raw, pgconn.exec_params(text, args))
        prepared = _prepared_statements.setdefault(raw, set())
        if name not in prepared:
            _checked(raw, pgconn.prepare(name, text))
            prepared.add(name)
        result = pgconn.exec_prepared(name, args)
        if (
            result.status == pq.ExecStatus.FATAL_ERROR
            and result.error_field(pq.DiagnosticField.SQLSTATE) == _UNDEFINED_STATEMENT
        ):
            # The session forgot it: psycopg sends DEALLOCATE ALL after a rollback or a DROP
            # that touched its own prepared statements, and poolers DISCARD ALL. In autocommit
            # nothing was aborted: prepare it again and run it.
            _checked(raw, pgconn.prepare(name, text))
            result = pgconn.exec_prepared(name, args)
        return _checked(raw, result)


# The statements fetch_one has prepared, per server session (a replaced connection is a new key).
_prepared_statements: weakref.WeakKeyDictionary[psycopg.Connection, set[bytes]] = (
    weakref.WeakKeyDictionary()
)


@functools.lru_cache(maxsize=64)
def libpq_statement(sql: str) -> tuple[bytes, bytes]:
    """A name to prepare ``sql`` under and its text with libpq's ``$n`` placeholders; the name
    is a hash of the text, so it cannot meet psycopg's own (``_pg3_…``) or another statement."""
    if "%%" in sql or "%(" in sql:
        raise ValueError("fetch_one takes %s placeholders only")
    numbers = itertools.count(1)
    text = _PLACEHOLDER.sub(lambda _: f"${next(numbers)}", sql)
    return b"portal_" + hashlib.sha256(text.encode()).hexdigest()[:24].encode(), text.encode()


def _checked(raw: psycopg.Connection, result: pq.abc.PGresult) -> pq.abc.PGresult:
    """``result``, or the psycopg error it reports (which Django's wrapper translates); a lost
    connection is an OperationalError, as psycopg's own calls report it."""
    if result.status in _SUCCESS:
        return result
    if raw.pgconn.status == pq.ConnStatus.BAD:
        message = (result.error_message or raw.pgconn.error_message).decode(errors="replace")
        raise psycopg.OperationalError(f"the connection was lost: {message.strip()}")
    raise psycopg.errors.error_from_result(result, encoding=raw.info.encoding)
