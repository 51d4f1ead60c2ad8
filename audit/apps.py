"""App configuration for audit."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.apps import apps as global_apps
from django.core import checks
from django.db.models.signals import post_migrate

from audit.database_roles import database_roles_check
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
        """Keep the compliance groups complete after every ``migrate`` (``audit.groups``), and
        have ``check --deploy`` warn when the portal's database role could undo the audit log's
        protections (``audit.database_roles``), and write admin logins, failures and lockouts
        to the access log (``audit.staff_logins``)."""
        post_migrate.connect(
            _compliance_groups, sender=self, dispatch_uid="audit_compliance_groups"
        )
        checks.register(database_roles_check, checks.Tags.security, deploy=True)
        # Where Django's documentation connects receivers: this module writes access-log rows,
        # so it needs the models, which are loaded only now.
        from audit.staff_logins import staff_login_receivers_connect

        staff_login_receivers_connect()
        # The kinds of change the audit core holds for a second approver (maker/checker,
        # ``audit.control_changes``) register themselves on import.
        from audit import anchor_switch, control_rules  # noqa: F401
