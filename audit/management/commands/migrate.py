"""``manage.py migrate``: Django's own, run as the schema owner when ``DATABASE_OWNER_URL`` is set.

The ``DATABASE_URL`` role the portal runs as must not own the audit tables, or one injected
statement could disable their append-only trigger and empty them. So with an owner URL, the
default connection is pointed at the owner role for the run, Django's ``migrate`` runs, and the
``DATABASE_URL`` role is then granted only what the portal needs (``audit.database_roles``):
every ``AppendOnlyModel`` table, read and append only. It lives in the ``audit`` app because
those tables are what the grants protect. Without an owner URL, or for another database alias,
this is Django's ``migrate`` unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import environ
from django.apps import apps
from django.conf import settings
from django.core.management.base import CommandError
from django.core.management.commands import migrate
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from audit.database_roles import (
    MIGRATIONS_TABLE,
    portal_tables,
    role_exists,
    runtime_grants_apply,
    tables_owned_elsewhere,
)
from audit.models import AppendOnlyModel

# What of the owner URL replaces DATABASE_URL's settings for the run (OPTIONS are merged).
_CONNECTION_KEYS = ("NAME", "USER", "PASSWORD", "HOST", "PORT")


def append_only_tables() -> set[str]:
    """The tables of every ``AppendOnlyModel`` subclass: the access log, its digests, its seals,
    and any audit table added later the same way."""
    return {
        model._meta.db_table for model in apps.get_models() if issubclass(model, AppendOnlyModel)
    }


def owner_settings(owner_url: str, runtime: dict[str, Any]) -> dict[str, Any]:
    """The connection settings of ``DATABASE_OWNER_URL``, checked against ``DATABASE_URL``'s.

    Refused: a database other than PostgreSQL, a ``DATABASE_URL`` that does not name its role
    (the one to grant to), and the same role twice (revoking from it would strip the owner).
    """
    owner = environ.Env.db_url_config(owner_url)
    if owner["ENGINE"] != runtime["ENGINE"] or not runtime["ENGINE"].endswith(".postgresql"):
        raise CommandError("DATABASE_OWNER_URL and DATABASE_URL must both be PostgreSQL URLs.")
    if not runtime.get("USER"):
        raise CommandError(
            "DATABASE_URL must name its role (postgres://role:password@host/db): "
            "migrate grants that role what the portal needs."
        )
    if owner.get("USER") == runtime["USER"]:
        raise CommandError(
            f"DATABASE_OWNER_URL and DATABASE_URL both use the role {runtime['USER']!r}: the "
            "owner must be another role, or leave DATABASE_OWNER_URL unset."
        )
    return owner


@contextmanager
def connected_as(connection: BaseDatabaseWrapper, owner: dict[str, Any]) -> Iterator[None]:
    """Point ``connection`` at the owner's role and database for the block, then back.

    The connection is closed on the way in and out, so no statement runs as the wrong role.
    """
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update({key: owner.get(key, "") for key in _CONNECTION_KEYS})
    connection.settings_dict["OPTIONS"] = {
        **(saved.get("OPTIONS") or {}),
        **(owner.get("OPTIONS") or {}),
    }
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


class Command(migrate.Command):
    """Django's ``migrate``; with ``DATABASE_OWNER_URL``, as the owner, then the grants."""

    help = (
        migrate.Command.help
        + " With DATABASE_OWNER_URL set: migrates as that role, then grants the DATABASE_URL "
        "role what the portal needs (read and append only on the audit tables)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        """Migrate as the owner and grant the runtime role, or plain ``migrate``."""
        owner_url = settings.DATABASE_OWNER_URL
        if not owner_url or options["database"] != DEFAULT_DB_ALIAS:
            super().handle(*args, **options)
            return
        connection = connections[DEFAULT_DB_ALIAS]
        runtime_role = str(connection.settings_dict.get("USER") or "")
        owner = owner_settings(owner_url, connection.settings_dict)
        with connected_as(connection, owner):
            if not role_exists(connection, runtime_role):
                raise CommandError(
                    f"The role {runtime_role!r} of DATABASE_URL does not exist: create it "
                    "first (docker/postgres-init.sh shows how)."
                )
            elsewhere = tables_owned_elsewhere(
                connection, [*portal_tables(connection), MIGRATIONS_TABLE]
            )
            if elsewhere:
                owned = "; ".join(
                    f"{role}: {', '.join(tables)}" for role, tables in elsewhere.items()
                )
                raise CommandError(
                    f"These tables belong to roles other than {owner['USER']!r} of "
                    f"DATABASE_OWNER_URL ({owned}). As a superuser, give them to it "
                    f"(REASSIGN OWNED BY <role> TO {owner['USER']}, or ALTER TABLE … OWNER TO "
                    f"{owner['USER']}) and run migrate again."
                )
            super().handle(*args, **options)
            if options["plan"] or options["check_unapplied"]:
                return
            tables = runtime_grants_apply(connection, runtime_role, append_only_tables())
        if options["verbosity"] >= 1:
            self.stdout.write(
                f"Granted {runtime_role!r} what the portal needs on {len(tables)} tables "
                "(the audit tables: read and append only)."
            )
