"""A partial index on the access log's rows about restricted recordings (``"restricted": true``
in the detail), newest first: the log's ``?restricted=1`` filter and the dashboard's box read
only those rows instead of scanning every row's JSON (issue 15, item 2)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0020_access_reviews"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="accesslog",
            index=models.Index(
                condition=models.Q(("detail__restricted", True)),
                fields=["-sequence"],
                name="accesslog_restricted_idx",
            ),
        ),
    ]
