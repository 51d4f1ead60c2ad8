import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0017_access_grants_restricted"),
        ("audit", "0017_access_log_filter_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="ForwarderPosition",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("destination", models.CharField(max_length=300, unique=True)),
                ("last_sequence", models.PositiveBigIntegerField(default=0)),
                ("updated_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={"verbose_name": "audit forwarder position"},
        ),
    ]
