"""A token that every write to the access rules replaces, in the write's own transaction.

``audit.decisions`` caches the rules in force per process and reloads them when this token
differs from the one it loaded with. Triggers rather than Python hooks, so that every path that
writes rules moves it: ``save()``, ``QuerySet.update()``, bulk writes, ``loaddata``, raw SQL, and
the test framework's flush (``TRUNCATE`` on PostgreSQL, ``DELETE`` on SQLite). The token is
random, not a counter: a rolled-back change takes its token with it, and no later change can
ever produce the same token again, so a process that cached the rolled-back rules reloads.

PostgreSQL fires one trigger per statement (an import of 1,000 rules writes the row once per
statement, not per rule); SQLite has only row triggers.
"""

from django.db import migrations, models

POSTGRESQL_FORWARD = """
CREATE OR REPLACE FUNCTION audit_access_rule_set_bump() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_accessrulesetversion (id, token) VALUES (1, gen_random_uuid()::text)
    ON CONFLICT (id) DO UPDATE SET token = EXCLUDED.token;
    RETURN NULL;
END;
$$;
CREATE TRIGGER audit_accessrule_set_version
AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON audit_accessrule
FOR EACH STATEMENT EXECUTE FUNCTION audit_access_rule_set_bump();
INSERT INTO audit_accessrulesetversion (id, token) VALUES (1, gen_random_uuid()::text)
ON CONFLICT (id) DO NOTHING;
"""

POSTGRESQL_BACKWARD = """
DROP TRIGGER IF EXISTS audit_accessrule_set_version ON audit_accessrule;
DROP FUNCTION IF EXISTS audit_access_rule_set_bump();
"""

SQLITE_EVENTS = ("insert", "update", "delete")
SQLITE_TRIGGER = """
CREATE TRIGGER audit_accessrule_set_version_{event} AFTER {upper} ON audit_accessrule
BEGIN
    INSERT OR REPLACE INTO audit_accessrulesetversion (id, token)
    VALUES (1, lower(hex(randomblob(16))));
END;
"""


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRESQL_FORWARD, params=None)
    elif vendor == "sqlite":
        for event in SQLITE_EVENTS:
            schema_editor.execute(
                SQLITE_TRIGGER.format(event=event, upper=event.upper()), params=None
            )
        schema_editor.execute(
            "INSERT OR IGNORE INTO audit_accessrulesetversion (id, token)"
            " VALUES (1, lower(hex(randomblob(16))))",
            params=None,
        )
    # Any other database: no row, and readers then never reuse a cached rule set.


def backward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRESQL_BACKWARD, params=None)
    elif vendor == "sqlite":
        for event in SQLITE_EVENTS:
            schema_editor.execute(
                f"DROP TRIGGER IF EXISTS audit_accessrule_set_version_{event}", params=None
            )


class Migration(migrations.Migration):
    dependencies = [("audit", "0014_more_access_actions")]

    operations = [
        migrations.CreateModel(
            name="AccessRuleSetVersion",
            fields=[
                (
                    "id",
                    models.PositiveSmallIntegerField(default=1, primary_key=True, serialize=False),
                ),
                ("token", models.CharField(max_length=36)),
            ],
            options={"verbose_name": "access rule set version"},
        ),
        migrations.RunPython(forward, backward, elidable=False),
    ]
