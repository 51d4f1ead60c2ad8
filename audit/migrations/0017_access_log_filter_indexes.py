"""Indexes for the access log admin's filters on action, reason, worker SID and role.

Without them a filter with few matches (a rare action, one worker) reads the whole log
backwards along ``sequence`` looking for fifty rows. Roles are a JSON list: PostgreSQL's GIN
index (``jsonb_path_ops``) serves the filter's containment test; SQLite (embedded mode) has no
such index and no need of one.
"""

from django.db import migrations, models

GIN_ROLES = (
    "CREATE INDEX IF NOT EXISTS accesslog_roles_gin ON audit_accesslog "
    "USING gin (roles jsonb_path_ops)"
)


def roles_index_create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(GIN_ROLES)


def roles_index_drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS accesslog_roles_gin")


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0016_full_verification_runs"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="accesslog",
            index=models.Index(fields=["action", "-sequence"], name="accesslog_action_idx"),
        ),
        migrations.AddIndex(
            model_name="accesslog",
            index=models.Index(fields=["reason_code", "-sequence"], name="accesslog_reason_idx"),
        ),
        migrations.AddIndex(
            model_name="accesslog",
            index=models.Index(fields=["worker_sid", "-sequence"], name="accesslog_worker_idx"),
        ),
        migrations.RunPython(roles_index_create, roles_index_drop, elidable=False),
    ]
