"""On PostgreSQL, refuse UPDATE, DELETE and TRUNCATE on the access log and its digests.

A guard rail against the application's own database user (a bug, an injected statement); the
table owner can still disable the trigger, which ``verify_audit_log`` would then have to catch.
TRUNCATE was allowed in a session that set ``audit.allow_truncate = on``, for Django's test
framework; migration 0007 removed that escape (the tests disable their own databases' TRUNCATE
triggers instead, in ``conftest.py``).
"""

from django.db import migrations

TABLES = ("audit_accesslog", "audit_accesslogdigest")

INSTALL = """
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' AND current_setting('audit.allow_truncate', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
""" + "".join(
    f"""
CREATE TRIGGER {table}_append_only
    BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER {table}_no_truncate
    BEFORE TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
"""
    for table in TABLES
)

REMOVE = "".join(
    f"""
DROP TRIGGER IF EXISTS {table}_append_only ON {table};
DROP TRIGGER IF EXISTS {table}_no_truncate ON {table};
"""
    for table in TABLES
) + "DROP FUNCTION IF EXISTS audit_refuse_change();"


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(INSTALL, params=None)


def remove(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(REMOVE, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunPython(install, remove, elidable=False)]
