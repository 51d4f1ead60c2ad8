# Legal-hold cases (issue 15): the case's matter, custodians and notes, and the S3 Object
# Lock legal hold each hold put on each held object (recordings.lifecycle.hold_locks).

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("recordings", "0008_evidence_package"),
    ]

    operations = [
        migrations.AddField(
            model_name="legalhold",
            name="custodians",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name="legalhold",
            name="matter_name",
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AddField(
            model_name="legalhold",
            name="notes",
            field=models.TextField(blank=True),
        ),
        migrations.CreateModel(
            name="HoldObjectLock",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("bucket", models.CharField(max_length=63)),
                ("key", models.CharField(max_length=1024)),
                ("version_id", models.CharField(blank=True, max_length=1024)),
                (
                    "state",
                    models.CharField(
                        choices=[
                            ("locked", "locked"),
                            ("released", "released"),
                            ("failed", "failed (retried)"),
                            ("not_enabled", "Object Lock not enabled on the bucket"),
                        ],
                        max_length=16,
                    ),
                ),
                ("error", models.TextField(blank=True)),
                ("attempts", models.PositiveIntegerField(default=0)),
                ("updated_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "hold",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="object_locks",
                        to="recordings.legalhold",
                    ),
                ),
                (
                    "recording",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="recordings.recording",
                    ),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["hold", "state"], name="hold_lock_state_idx")],
                "constraints": [
                    models.UniqueConstraint(fields=("hold", "recording"), name="hold_lock_once")
                ],
            },
        ),
    ]
