"""A partial index on the access log's rows about restricted recordings (``"restricted": true``
in the detail), newest first: the log's ``?restricted=1`` filter and the dashboard's box read
only those rows instead of scanning every row's JSON (issue 15, item 2). Built without
blocking the log's writes on PostgreSQL (``portal.migration_operations``)."""

from django.db import migrations, models

from portal.migration_operations import AddIndexWithoutBlockingWrites


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run in a transaction; this migration holds nothing else.
    atomic = False

    dependencies = [
        ("audit", "0020_access_reviews"),
    ]

    operations = [
        AddIndexWithoutBlockingWrites(
            model_name="accesslog",
            index=models.Index(
                condition=models.Q(("detail__restricted", True)),
                fields=["-sequence"],
                name="accesslog_restricted_idx",
            ),
        ),
    ]
