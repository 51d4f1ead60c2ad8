"""App configuration for audit."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.backends.base.creation import TEST_DATABASE_PREFIX
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate


def _allow_truncate_in_test_databases(sender: Any, connection: Any, **kwargs: Any) -> None:
    """Let Django's test framework empty the audit tables between transactional tests.

    The append-only trigger (migration 0002) refuses TRUNCATE unless the session sets
    ``audit.allow_truncate``; Django's ``flush`` truncates every table, including empty audit
    tables. Only the test suite's settings turn this on (``AUDIT_ALLOW_TRUNCATE_IN_TESTS``), and
    even then only for connections to a Django test database (``test_…``).
    """
    from django.conf import settings

    if not getattr(settings, "AUDIT_ALLOW_TRUNCATE_IN_TESTS", False):
        return
    name = str(connection.settings_dict.get("NAME") or "")
    if connection.vendor == "postgresql" and name.startswith(TEST_DATABASE_PREFIX):
        with connection.cursor() as cursor:
            cursor.execute("SET audit.allow_truncate = 'on'")


def _compliance_groups(sender: AppConfig, **kwargs: Any) -> None:
    """After ``migrate`` (and the test framework's table flushes): add missing compliance
    groups and permissions (``audit.groups``)."""
    from django.apps import apps as global_apps

    from audit.groups import compliance_groups_ensure

    compliance_groups_ensure(global_apps)


class AuditConfig(AppConfig):
    """Access rules and the access log."""

    name = "audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Connect the test-database hook (see ``_allow_truncate_in_test_databases``) and keep
        the compliance groups complete after every ``migrate`` (``audit.groups``)."""
        connection_created.connect(
            _allow_truncate_in_test_databases, dispatch_uid="audit_allow_truncate_in_tests"
        )
        post_migrate.connect(
            _compliance_groups, sender=self, dispatch_uid="audit_compliance_groups"
        )
