"""App configuration for audit."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.apps import apps as global_apps
from django.db.models.signals import post_migrate

from audit.groups import compliance_groups_ensure


def _compliance_groups(sender: AppConfig, **kwargs: Any) -> None:
    """After ``migrate`` (and the test framework's table flushes): add missing compliance
    groups and permissions (``audit.groups``)."""
    compliance_groups_ensure(global_apps)


class AuditConfig(AppConfig):
    """Access rules and the access log."""

    name = "audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Keep the compliance groups complete after every ``migrate`` (``audit.groups``)."""
        post_migrate.connect(
            _compliance_groups, sender=self, dispatch_uid="audit_compliance_groups"
        )
