"""Access requests and grants (four eyes), restricted recordings named by rules, and their
access-log actions. On SQLite, adding a column to ``audit_accessrule`` rebuilds the table and
drops the rule-set version triggers of ``0015``: they are made again here.
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


SQLITE_EVENTS = ("insert", "update", "delete")
SQLITE_TRIGGER = """
CREATE TRIGGER audit_accessrule_set_version_{event} AFTER {upper} ON audit_accessrule
BEGIN
    INSERT OR REPLACE INTO audit_accessrulesetversion (id, token)
    VALUES (1, lower(hex(randomblob(16))));
END;
"""


def sqlite_triggers_restore(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    for event in SQLITE_EVENTS:
        schema_editor.execute(
            f"DROP TRIGGER IF EXISTS audit_accessrule_set_version_{event}", params=None
        )
        schema_editor.execute(SQLITE_TRIGGER.format(event=event, upper=event.upper()), params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0016_full_verification_runs"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="accessrule",
            name="restricted",
            field=models.BooleanField(
                default=False,
                help_text="Names restricted recordings explicitly: the rule applies only to restricted recordings, and only such an allow (or a grant) plays them.",
            ),
        ),
        migrations.RunPython(sqlite_triggers_restore, migrations.RunPython.noop, elidable=False),
        migrations.AlterField(
            model_name="accesslog",
            name="action",
            field=models.CharField(
                choices=[
                    ("url_provider", "url_provider request"),
                    ("media_fetch", "media fetch"),
                    ("media_playback", "media playback (summary of a link's fetches)"),
                    ("admin_view", "admin view"),
                    ("admin_export", "admin export"),
                    ("recording_sync", "recording sync"),
                    ("rule_change", "rule change"),
                    ("chain_verify", "audit chain verification"),
                    ("twilio_config", "Twilio storage configuration"),
                    ("private_key_delete", "private key deletion"),
                    ("admin_login", "admin login (success, failure or lockout)"),
                    ("legal_hold", "legal hold placed or released"),
                    ("retention_policy", "retention policy change"),
                    ("retention_delete", "recording deletion"),
                    ("media_verify", "media integrity check"),
                    ("flex_media_attach", "Flex media attachment (url_provider put into a task)"),
                    ("flex_directory_sync", "Flex worker and queue directory sync"),
                    ("waveform_view", "waveform view"),
                    ("access_request", "access request (asked, approved, refused, revoked)"),
                    ("recording_restrict", "recording restricted or released"),
                ],
                max_length=32,
            ),
        ),
        migrations.CreateModel(
            name="AccessGrant",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("requested", "requested"),
                            ("approved", "approved"),
                            ("refused", "refused"),
                        ],
                        default="requested",
                        max_length=16,
                    ),
                ),
                ("grantee_identity", models.CharField(db_index=True, max_length=255)),
                ("grantee_worker_sid", models.CharField(blank=True, db_index=True, max_length=34)),
                (
                    "scope",
                    models.CharField(
                        choices=[
                            ("recording", "one recording (RE…)"),
                            ("call", "a call's recordings (CA…)"),
                            ("team", "a team's recordings (team name)"),
                        ],
                        max_length=16,
                    ),
                ),
                ("scope_value", models.CharField(max_length=255)),
                ("reason", models.TextField(help_text="Why the requester needs the access.")),
                (
                    "duration_hours",
                    models.PositiveIntegerField(
                        help_text="How long the grant lasts once approved."
                    ),
                ),
                (
                    "requested_at",
                    models.DateTimeField(default=django.utils.timezone.now, editable=False),
                ),
                ("decided_at", models.DateTimeField(blank=True, null=True)),
                ("decision_note", models.TextField(blank=True)),
                ("valid_from", models.DateTimeField(blank=True, null=True)),
                ("valid_until", models.DateTimeField(blank=True, null=True)),
                ("revoked_at", models.DateTimeField(blank=True, null=True)),
                ("revoke_reason", models.TextField(blank=True)),
                (
                    "decided_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "requested_by",
                    models.ForeignKey(
                        blank=True,
                        help_text="The staff member who filed the request on the grantee's behalf, if any.",
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "revoked_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["-requested_at"],
                "permissions": [
                    ("approve_accessgrant", "Can approve, refuse and revoke access requests")
                ],
            },
        ),
    ]
