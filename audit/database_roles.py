"""PostgreSQL roles: what the portal's runtime role may do to the database, and the deploy check
that it can do no more.

With ``DATABASE_OWNER_URL`` set, ``manage.py migrate`` (``audit.management.commands.migrate``)
runs as a role that owns the schema and then calls ``runtime_grants_apply``: the
``DATABASE_URL`` role may read and write the portal's tables but only read and append to the
audit tables. PostgreSQL then refuses that role UPDATE, DELETE and TRUNCATE on them (missing
privileges), and ALTER TABLE (DISABLE TRIGGER included), DROP TRIGGER, DROP TABLE and replacing
the trigger's function (it owns none of them): the append-only trigger of audit migration 0002
stops being the only thing between one injected statement and an empty log.

Raw SQL on purpose, and only in this module: the ORM has no words for GRANT, REVOKE, ownership or
role attributes. Identifiers are quoted by psycopg's ``sql.Identifier``. This module reads the
model registry when called, never ``audit.models`` on import, because ``audit.apps`` registers
the deploy check before the models are loaded.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from django.apps import AppConfig, apps
from django.core.checks import CheckMessage
from django.core.checks import Warning as CheckWarning
from django.db import DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg import sql

# Django's record of applied migrations (``MigrationRecorder``'s table): the runtime role may
# read it, so ``showmigrations`` and ``migrate --check`` work as that role.
MIGRATIONS_TABLE = "django_migrations"
TABLE_PRIVILEGES = sql.SQL("SELECT, INSERT, UPDATE, DELETE")
APPEND_ONLY_PRIVILEGES = sql.SQL("SELECT, INSERT")
# How many table names a message lists before "and N more".
_NAMES_SHOWN = 5


def portal_tables(connection: BaseDatabaseWrapper) -> list[str]:
    """The tables of every installed app's models (Django's own and many-to-many tables
    included) that exist in this database, sorted."""
    models = apps.get_models(include_auto_created=True)
    wanted = {model._meta.db_table for model in models if model._meta.managed}
    return sorted(wanted & set(connection.introspection.table_names()))


def role_exists(connection: BaseDatabaseWrapper, role: str) -> bool:
    """Whether PostgreSQL knows ``role``: granting to a missing role would fail half-way."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
        return cursor.fetchone() is not None


def tables_owned_elsewhere(
    connection: BaseDatabaseWrapper, tables: Collection[str]
) -> dict[str, list[str]]:
    """Of ``tables``, those the connected role cannot act as owner of, by their owner.

    Migrating such a table fails, and a GRANT or REVOKE on it only warns and changes nothing, so
    ``migrate`` refuses to start while there are any (a role that migrated before the owner role
    existed still owns its tables).
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tableowner, tablename FROM pg_tables"
            " WHERE schemaname = ANY(current_schemas(false)) AND tablename = ANY(%s)"
            " AND NOT pg_has_role(current_user, tableowner, 'USAGE')"
            " ORDER BY tableowner, tablename",
            [list(tables)],
        )
        owned: dict[str, list[str]] = {}
        for owner, table in cursor.fetchall():
            owned.setdefault(owner, []).append(table)
        return owned


def runtime_grants_apply(
    connection: BaseDatabaseWrapper, runtime_role: str, append_only_tables: Collection[str]
) -> list[str]:
    """Give ``runtime_role`` exactly what the portal needs on every portal table; answer them.

    Ordinary tables: SELECT, INSERT, UPDATE, DELETE. ``append_only_tables`` (the audit tables):
    SELECT and INSERT, after revoking everything from the role and from PUBLIC. Their
    sequences: USAGE (``nextval``, not ``setval``). ``django_migrations``: SELECT. Everything
    the role held before is revoked first, so running it again gives the same result. One
    transaction: a failure leaves the previous grants in place.
    """
    tables = portal_tables(connection)
    role = sql.Identifier(runtime_role)
    audit_grantees = sql.SQL("PUBLIC, {}").format(role)
    statements: list[sql.Composable] = []
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        for table in tables:
            append_only = table in append_only_tables
            grantees = audit_grantees if append_only else role
            privileges = APPEND_ONLY_PRIVILEGES if append_only else TABLE_PRIVILEGES
            statements += [
                sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(sql.Identifier(table), grantees),
                sql.SQL("GRANT {} ON TABLE {} TO {}").format(
                    privileges, sql.Identifier(table), role
                ),
            ]
            for sequence in connection.introspection.get_sequences(cursor, table):
                name = sql.Identifier(sequence["name"])
                statements += [
                    sql.SQL("REVOKE ALL ON SEQUENCE {} FROM {}").format(name, grantees),
                    sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(name, role),
                ]
        if MIGRATIONS_TABLE in connection.introspection.table_names():
            migrations = sql.Identifier(MIGRATIONS_TABLE)
            statements += [
                sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(migrations, role),
                sql.SQL("GRANT SELECT ON TABLE {} TO {}").format(migrations, role),
            ]
        for statement in statements:
            cursor.execute(statement.as_string())
    return tables


def runtime_role_warnings(connection: BaseDatabaseWrapper) -> list[CheckMessage]:
    """What the connected role could do against the audit log beyond the portal's needs.

    A superuser, or a role with CREATEROLE (which can make itself a member of the owner role),
    passes every privilege check; a role that owns, or is a member of the owner of, a portal
    table or its schema can alter, disable the trigger of, drop or empty that table.
    """
    messages: list[CheckMessage] = []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT rolname, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user"
        )
        role, superuser, createrole = cursor.fetchone()
        if superuser or createrole:
            messages.append(
                CheckWarning(
                    f"The database role {role!r} of DATABASE_URL is a "
                    + ("superuser" if superuser else "role that can create roles (CREATEROLE)")
                    + ": PostgreSQL would not stop it from disabling the audit log's "
                    "append-only trigger or emptying the log.",
                    hint="Run the portal as a plain role and migrate with DATABASE_OWNER_URL "
                    "(README, Database roles).",
                    id="audit.W001",
                )
            )
        cursor.execute(
            "SELECT t.tablename FROM pg_tables t JOIN pg_namespace n ON n.nspname = t.schemaname"
            " WHERE t.schemaname = ANY(current_schemas(false)) AND t.tablename = ANY(%s)"
            " AND (pg_has_role(current_user, t.tableowner, 'MEMBER')"
            " OR pg_has_role(current_user, n.nspowner, 'MEMBER'))"
            " ORDER BY t.tablename",
            [portal_tables(connection)],
        )
        owned = [table for (table,) in cursor.fetchall()]
    if owned:
        shown = ", ".join(owned[:_NAMES_SHOWN])
        more = f" and {len(owned) - _NAMES_SHOWN} more" if len(owned) > _NAMES_SHOWN else ""
        messages.append(
            CheckWarning(
                f"The database role {role!r} of DATABASE_URL owns, or can act as the owner of, "
                f"{len(owned)} of the portal's tables or their schema ({shown}{more}): it "
                "could disable or drop the audit log's append-only trigger and empty the log.",
                hint="Give the schema to another role and run `manage.py migrate` with "
                "DATABASE_OWNER_URL set to it (README, Database roles).",
                id="audit.W002",
            )
        )
    return messages


def database_roles_check(
    app_configs: Sequence[AppConfig] | None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Deploy check (``check --deploy``): warn when the role the portal runs as could undo the
    audit log's protections (``runtime_role_warnings``).

    PostgreSQL only: silent on SQLite (embedded mode, ``make lint``). Every configured database
    unless ``--database`` names some; one that cannot be reached is a warning of its own, since
    nothing was verified.
    """
    messages: list[CheckMessage] = []
    for alias in databases or list(connections):
        connection = connections[alias]
        if connection.vendor != "postgresql":
            continue
        try:
            messages += runtime_role_warnings(connection)
        except DatabaseError as error:
            messages.append(
                CheckWarning(
                    f"Could not check the database role of DATABASE_URL ({alias}): {error}",
                    hint="Run `manage.py check --deploy` where the database is reachable.",
                    id="audit.W003",
                )
            )
    return messages
