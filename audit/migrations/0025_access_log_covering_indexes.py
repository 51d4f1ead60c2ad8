"""Covering partial indexes on the access log for an identity's page and the dashboard's live
opens (``audit.rollups``), built without blocking the log's writes on PostgreSQL
(``portal.migration_operations``): players keep being answered and audited during an upgrade."""

from django.db import migrations, models

from portal.migration_operations import AddIndexWithoutBlockingWrites


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run in a transaction; this migration holds nothing else.
    atomic = False

    dependencies = [
        ('audit', '0024_export_kinds'),
    ]

    operations = [
        AddIndexWithoutBlockingWrites(
            model_name='accesslog',
            index=models.Index(condition=models.Q(('action', 'url_provider'), ('outcome', 'allowed')), fields=['identity', 'occurred_at'], include=('recording_sid',), name='accesslog_opened_idx'),
        ),
        AddIndexWithoutBlockingWrites(
            model_name='accesslog',
            index=models.Index(condition=models.Q(('outcome', 'allowed'), _negated=True), fields=['identity', 'occurred_at'], include=('action', 'outcome', 'reason_code'), name='accesslog_refused_idx'),
        ),
        AddIndexWithoutBlockingWrites(
            model_name='accesslog',
            index=models.Index(condition=models.Q(('action', 'url_provider'), ('outcome', 'allowed')), fields=['occurred_at'], include=('identity', 'recording_sid'), name='accesslog_opened_at_idx'),
        ),
    ]
