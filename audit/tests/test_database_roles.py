"""Least-privilege database roles (``audit.database_roles``, the ``migrate`` override).

A fresh database is migrated the way production does it: ``manage.py migrate`` in a subprocess
with ``DATABASE_OWNER_URL`` (a role that owns the schema) and ``DATABASE_URL`` (the role the
portal runs as). Then PostgreSQL itself, not the append-only trigger, refuses the runtime role
every way of changing, emptying or unprotecting the audit tables, while the portal still appends
to and reads the log and writes its ordinary tables. ``check --deploy`` warns about a runtime
role that could undo this.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from django.apps import apps
from django.conf import settings
from psycopg import errors

from audit.models import AppendOnlyModel

ROOT = Path(__file__).resolve().parents[2]
APPEND_ONLY_TABLES = sorted(
    model._meta.db_table for model in apps.get_models() if issubclass(model, AppendOnlyModel)
)


@dataclass(frozen=True)
class RoleSplit:
    """A database migrated by ``owner`` for ``runtime``, and how to reach it."""

    database: str
    owner: str
    runtime: str
    host: str
    port: int

    def url(self, role: str, password: str | None = None) -> str:
        return f"postgres://{role}:{password or role}@{self.host}:{self.port}/{self.database}"

    @property
    def owner_url(self) -> str:
        return self.url(self.owner)

    @property
    def runtime_url(self) -> str:
        return self.url(self.runtime)


def superuser_connection(dbname: str = "postgres") -> psycopg.Connection:
    """The test cluster's superuser (the suite's own ``DATABASE_URL`` role)."""
    database = settings.DATABASES["default"]
    return psycopg.connect(
        host=database["HOST"] or "127.0.0.1",
        port=int(database["PORT"] or 5432),
        user=database["USER"],
        password=database["PASSWORD"] or None,
        dbname=dbname,
        autocommit=True,
    )


def manage(*args: str, **environment: str) -> subprocess.CompletedProcess[str]:
    """``manage.py`` in embedded mode with the given environment (no inherited owner URL)."""
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_OWNER_URL"}
    env.update(DJANGO_SETTINGS_MODULE="portal.settings", DJANGO_DEBUG="1", **environment)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def migrate(split: RoleSplit) -> subprocess.CompletedProcess[str]:
    return manage(
        "migrate",
        "--noinput",
        DATABASE_URL=split.runtime_url,
        DATABASE_OWNER_URL=split.owner_url,
    )


@pytest.fixture(scope="module")
def split() -> Iterator[RoleSplit]:
    """Two fresh roles (owner, runtime) made by docker/postgres-init.sh, and a database the
    owner migrated; all dropped after."""
    suffix = secrets.token_hex(4)
    database = settings.DATABASES["default"]
    roles = RoleSplit(
        database=f"roles_test_{suffix}",
        owner=f"roles_owner_{suffix}",
        runtime=f"roles_runtime_{suffix}",
        host=database["HOST"] or "127.0.0.1",
        port=int(database["PORT"] or 5432),
    )
    with superuser_connection() as admin:
        try:
            # As the postgres image does: the superuser creates POSTGRES_DB, then runs the init
            # script that docker-compose.yml mounts.
            admin.execute(f"CREATE DATABASE {roles.database}")
            init = subprocess.run(
                ["sh", str(ROOT / "docker" / "postgres-init.sh")],
                env={
                    **os.environ,
                    "PGHOST": roles.host,
                    "PGPORT": str(roles.port),
                    "PGPASSWORD": database["PASSWORD"] or "",
                    "POSTGRES_USER": database["USER"],
                    "POSTGRES_DB": roles.database,
                    "PORTAL_DB_OWNER": roles.owner,
                    "PORTAL_DB_OWNER_PASSWORD": roles.owner,
                    "PORTAL_DB_USER": roles.runtime,
                    "PORTAL_DB_PASSWORD": roles.runtime,
                },
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert init.returncode == 0, init.stderr
            result = migrate(roles)
            assert result.returncode == 0, result.stderr
            assert f"Granted '{roles.runtime}'" in result.stdout
            yield roles
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {roles.database} WITH (FORCE)")
            admin.execute(f"DROP ROLE IF EXISTS {roles.runtime}")
            admin.execute(f"DROP ROLE IF EXISTS {roles.owner}")


def as_runtime(split: RoleSplit) -> psycopg.Connection:
    return psycopg.connect(split.runtime_url, autocommit=True)


def table_grants(split: RoleSplit, grantee: str) -> dict[str, set[str]]:
    with superuser_connection(split.database) as admin:
        rows = admin.execute(
            "SELECT table_name, privilege_type FROM information_schema.role_table_grants"
            " WHERE grantee = %s",
            [grantee],
        ).fetchall()
    grants: dict[str, set[str]] = {}
    for table, privilege in rows:
        grants.setdefault(table, set()).add(privilege)
    return grants


def test_the_audit_tables_are_found_by_model():
    assert {"audit_accesslog", "audit_accesslogdigest"} <= set(APPEND_ONLY_TABLES)


def test_the_owner_owns_every_table_and_the_runtime_role_none(split):
    with superuser_connection(split.database) as admin:
        owners = dict(
            admin.execute(
                "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        )
        roles = admin.execute(
            "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles"
            " WHERE rolname = ANY(%s) ORDER BY rolname",
            [[split.owner, split.runtime]],
        ).fetchall()
    assert set(owners.values()) == {split.owner}
    assert set(APPEND_ONLY_TABLES) <= set(owners)
    assert [attributes for _, *attributes in roles] == [[False, False, False]] * 2


def test_the_runtime_role_may_only_read_and_append_to_the_audit_tables(split):
    grants = table_grants(split, split.runtime)
    for table in APPEND_ONLY_TABLES:
        assert grants[table] == {"SELECT", "INSERT"}, table
    assert not set(APPEND_ONLY_TABLES) & set(table_grants(split, "PUBLIC"))


def test_the_runtime_role_may_read_and_write_the_other_tables(split):
    grants = table_grants(split, split.runtime)
    for table in ("recordings_recording", "auth_user", "django_session", "audit_accessrule"):
        assert grants[table] == {"SELECT", "INSERT", "UPDATE", "DELETE"}, table
    assert grants["django_migrations"] == {"SELECT"}


REFUSED = {
    "update": "UPDATE {table} SET id = id",
    "delete": "DELETE FROM {table}",
    "truncate": "TRUNCATE {table}",
    "alter": "ALTER TABLE {table} ADD COLUMN forged text",
    "disable trigger": "ALTER TABLE {table} DISABLE TRIGGER {table}_append_only",
    "disable all triggers": "ALTER TABLE {table} DISABLE TRIGGER USER",
    "drop trigger": "DROP TRIGGER {table}_append_only ON {table}",
    "drop table": "DROP TABLE {table}",
}


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
@pytest.mark.parametrize("statement", list(REFUSED), ids=list(REFUSED))
def test_postgresql_refuses_the_runtime_role(split, table, statement):
    with as_runtime(split) as runtime:
        # The trigger's old escape (gone since migration 0007) would change nothing either.
        runtime.execute("SET audit.allow_truncate = on")
        with pytest.raises(errors.InsufficientPrivilege) as refused:
            runtime.execute(REFUSED[statement].format(table=table))
    # PostgreSQL's privilege system refused it, not the append-only trigger.
    message = str(refused.value)
    assert "permission denied for table" in message or "must be owner of" in message
    assert "append-only" not in message


def test_postgresql_refuses_the_runtime_role_replacing_the_triggers_function(split):
    replacement = (
        "CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger"
        " LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END; $$"
    )
    with as_runtime(split) as runtime, pytest.raises(errors.InsufficientPrivilege):
        runtime.execute(replacement)
    with superuser_connection(split.database) as admin:
        (source,) = admin.execute(
            "SELECT prosrc FROM pg_proc WHERE proname = 'audit_refuse_change'"
        ).fetchone()
    assert "RAISE EXCEPTION" in source


def test_the_runtime_role_cannot_create_anything_in_the_schema(split):
    with as_runtime(split) as runtime, pytest.raises(errors.InsufficientPrivilege):
        runtime.execute("CREATE TABLE forged (id int)")


def test_the_portal_appends_to_and_reads_the_log_as_the_runtime_role(split):
    script = (
        "from audit.services import access_log_append; from audit.models import AccessLog; "
        "row = access_log_append(action='url_provider', outcome='denied', "
        "reason_code='no_matching_rule', identity='roles-test'); "
        "print(AccessLog.objects.filter(pk=row.pk, identity='roles-test').count())"
    )
    result = manage("shell", "-v", "0", "-c", script, DATABASE_URL=split.runtime_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"
    with as_runtime(split) as runtime:
        (count,) = runtime.execute(
            "SELECT count(*) FROM audit_accesslog WHERE identity = 'roles-test'"
        ).fetchone()
    assert count == 1


def test_ordinary_tables_accept_updates_from_the_runtime_role(split):
    with as_runtime(split) as runtime:
        runtime.execute("UPDATE recordings_recording SET sync_state = sync_state")
        runtime.execute("UPDATE auth_user SET last_login = last_login")
        runtime.execute("DELETE FROM django_session WHERE expire_date < now()")


def test_migrating_again_takes_back_what_was_granted_by_hand(split):
    before = table_grants(split, split.runtime)
    with superuser_connection(split.database) as admin:
        admin.execute(f"GRANT UPDATE, DELETE, TRUNCATE ON audit_accesslog TO {split.runtime}")
        admin.execute("GRANT TRUNCATE ON audit_accesslogdigest TO PUBLIC")
    result = migrate(split)
    assert result.returncode == 0, result.stderr
    assert table_grants(split, split.runtime) == before
    assert "audit_accesslogdigest" not in table_grants(split, "PUBLIC")


def test_migrate_refuses_tables_the_owner_does_not_own(split):
    with superuser_connection(split.database) as admin:
        admin.execute(f"ALTER TABLE recordings_medialink OWNER TO {split.runtime}")
        try:
            result = migrate(split)
        finally:
            admin.execute(f"ALTER TABLE recordings_medialink OWNER TO {split.owner}")
    assert result.returncode == 1
    assert f"{split.runtime}: recordings_medialink" in result.stderr
    assert "REASSIGN OWNED BY" in result.stderr


def test_migrate_refuses_one_role_for_both_urls(split):
    result = manage("migrate", DATABASE_URL=split.owner_url, DATABASE_OWNER_URL=split.owner_url)
    assert result.returncode == 1
    assert "must be another role" in result.stderr


def test_migrate_refuses_a_runtime_role_that_does_not_exist(split):
    result = manage(
        "migrate",
        DATABASE_URL=split.url("roles_nobody_" + secrets.token_hex(4)),
        DATABASE_OWNER_URL=split.owner_url,
    )
    assert result.returncode == 1
    assert "does not exist" in result.stderr


DEPLOY_WARNINGS = ("audit.W001", "audit.W002", "audit.W003")


def deploy_warnings(database_url: str) -> set[str]:
    result = manage("check", "--deploy", DATABASE_URL=database_url)
    return {code for code in DEPLOY_WARNINGS if code in result.stderr + result.stdout}


def test_check_deploy_is_silent_for_the_runtime_role(split):
    assert deploy_warnings(split.runtime_url) == set()


def test_check_deploy_warns_when_the_runtime_role_owns_the_audit_tables(split):
    assert deploy_warnings(split.owner_url) == {"audit.W002"}


def test_check_deploy_warns_when_the_runtime_role_is_a_superuser(split):
    with superuser_connection() as admin:
        admin.execute(f"ALTER ROLE {split.runtime} SUPERUSER")
        try:
            warnings = deploy_warnings(split.runtime_url)
        finally:
            admin.execute(f"ALTER ROLE {split.runtime} NOSUPERUSER")
    assert "audit.W001" in warnings


def test_check_deploy_warns_when_the_database_cannot_be_reached():
    assert deploy_warnings("postgres://nobody:nothing@127.0.0.1:1/portal") == {"audit.W003"}


def test_check_deploy_is_silent_on_sqlite(tmp_path):
    assert deploy_warnings(f"sqlite:///{tmp_path / 'db.sqlite3'}") == set()
