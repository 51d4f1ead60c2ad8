"""The admin app's configuration: Django's admin with the portal's own default site.

Kept apart from ``portal.admin_site`` because ``INSTALLED_APPS`` imports this module before any
model is loaded; the site itself (which imports forms and models) is imported lazily by Django.
"""

from __future__ import annotations

from django.contrib.admin.apps import AdminConfig


class ComplianceAdminConfig(AdminConfig):
    """``django.contrib.admin`` whose ``admin.site`` is :class:`ComplianceAdminSite`, so every
    ``@admin.register`` in the project lands on the site that enforces the second factor."""

    default_site = "portal.admin_site.ComplianceAdminSite"
