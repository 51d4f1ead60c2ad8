"""App configuration for audit."""

from django.apps import AppConfig


class AuditConfig(AppConfig):
    """Access rules and the access log."""

    name = "audit"
    default_auto_field = "django.db.models.BigAutoField"
