import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("recordings", "0007_flex_reservation_team"),
    ]

    operations = [
        migrations.CreateModel(
            name="EvidencePackage",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "requested_at",
                    models.DateTimeField(db_index=True, default=django.utils.timezone.now),
                ),
                (
                    "requested_by",
                    models.CharField(help_text="The exporter's username.", max_length=150),
                ),
                (
                    "reason",
                    models.TextField(
                        help_text="Why the package is made (in its manifest and log row)."
                    ),
                ),
                ("include_decrypted", models.BooleanField(default=False)),
                ("recording_sids", models.JSONField(default=list, verbose_name="recording SIDs")),
                ("state", models.CharField(default="queued", max_length=8)),
                ("file_name", models.CharField(blank=True, max_length=255)),
                ("size", models.PositiveBigIntegerField(blank=True, null=True)),
                ("sha256", models.CharField(blank=True, max_length=64)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                ("error", models.TextField(blank=True)),
                (
                    "hold",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="packages",
                        to="recordings.legalhold",
                    ),
                ),
            ],
            options={"ordering": ["-requested_at", "-id"]},
        ),
    ]
