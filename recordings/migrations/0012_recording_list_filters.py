"""The recordings list's filters without reading the whole table (issue 14).

``source`` and ``encryption_type`` get their choices, so the admin's filters list them from
the model instead of ``SELECT DISTINCT`` over every recording (a choice changes no column);
each filtered field gets an index with the start time, so a value few recordings have is
found, counted and dated (the drill-down's MIN/MAX) without a scan.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("recordings", "0011_restriction_rules_and_restricted_retention"),
    ]

    operations = [
        migrations.AlterField(
            model_name="recording",
            name="source",
            field=models.CharField(
                blank=True,
                choices=[
                    ("DialVerb", "<Dial record> (DialVerb)"),
                    ("Conference", "conference (Conference)"),
                    ("OutboundAPI", "outbound call API (OutboundAPI)"),
                    ("Trunking", "Elastic SIP Trunking (Trunking)"),
                    ("RecordVerb", "<Record> (RecordVerb)"),
                    ("StartCallRecordingAPI", "call recording API (StartCallRecordingAPI)"),
                    (
                        "StartConferenceRecordingAPI",
                        "conference recording API (StartConferenceRecordingAPI)",
                    ),
                ],
                max_length=40,
            ),
        ),
        migrations.AlterField(
            model_name="recording",
            name="encryption_type",
            field=models.CharField(
                blank=True,
                choices=[
                    ("", "not encrypted"),
                    ("rsa-aes", "public key (rsa-aes)"),
                    ("s3-envelope", "S3 envelope, Video (s3-envelope)"),
                    ("unknown", "type not given (unknown)"),
                    ("invalid", "unreadable details (invalid)"),
                ],
                max_length=16,
            ),
        ),
        migrations.AddIndex(
            model_name="recording",
            index=models.Index(fields=["status", "-start_time"], name="recording_status_idx"),
        ),
        migrations.AddIndex(
            model_name="recording",
            index=models.Index(fields=["source", "-start_time"], name="recording_source_idx"),
        ),
        migrations.AddIndex(
            model_name="recording",
            index=models.Index(
                fields=["encryption_type", "-start_time"], name="recording_encrypt_idx"
            ),
        ),
        migrations.AddIndex(
            model_name="recording",
            index=models.Index(
                fields=["media_location", "-start_time"], name="recording_location_idx"
            ),
        ),
        migrations.AddIndex(
            model_name="recording",
            index=models.Index(
                fields=["archive_state", "-start_time"], name="recording_archive_idx"
            ),
        ),
    ]
