"""Access-log rows take their ``sequence`` from a PostgreSQL sequence, not from the previous row
under a lock: appends from every process go side by side (``audit.services``), and the seals,
not a hash link, prove that no row is missing (``audit.sealer``).

The sequence starts after the last row already written; it is owned by the column, so the
grants of ``audit.database_roles`` (USAGE on the table's sequences) cover it. SQLite (embedded
mode, one writer) has no sequences and numbers rows under its write lock instead.
"""

from django.db import migrations

CREATE = """
CREATE SEQUENCE IF NOT EXISTS audit_accesslog_position OWNED BY audit_accesslog.sequence;
SELECT setval(
    'audit_accesslog_position',
    COALESCE((SELECT max(sequence) FROM audit_accesslog), 0) + 1,
    false
);
"""
DROP = "DROP SEQUENCE IF EXISTS audit_accesslog_position;"


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0007_truncate_always_refused")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
