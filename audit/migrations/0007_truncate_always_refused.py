"""The append-only trigger refuses TRUNCATE in every session: the escape that let a session set
``audit.allow_truncate = on`` (once there for Django's test framework) is gone from the product.

The test suite instead disables the TRUNCATE triggers of its own test databases, as their
owner, when it creates them (``conftest.py``); UPDATE and DELETE stay refused there too.
"""

from django.db import migrations

REFUSE_ALWAYS = """
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
"""

WITH_ESCAPE = """
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
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(REFUSE_ALWAYS, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(WITH_ESCAPE, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0006_admin_login_action")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
