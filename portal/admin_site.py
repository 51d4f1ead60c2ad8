"""The portal's admin site: Django's admin, with a TOTP second factor in production.

Compliance officers live in the admin, so it is the portal's most privileged surface. In
production (``DJANGO_DEBUG=0``) ``ADMIN_REQUIRE_OTP`` is always on: staff log in with a password
and a TOTP code (django-otp), and a session that was not verified by a device is treated as not
staff at all. Embedded mode (the demo) stays password-only unless ``ADMIN_REQUIRE_OTP=1``.

The site also carries pages that belong to no single model, which apps add with
:meth:`ComplianceAdminSite.register_urls` (the Twilio storage settings, credentials and IAM
policy generator of ``recordings.admin.twilio_settings``), and an index that links the
compliance tools (dashboard, chain verification, rule tester, rules import/export). The site
itself imports no app, so the arrows point from the apps to the kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.admin import AdminSite
from django.contrib.admin.forms import AdminAuthenticationForm
from django.http import HttpRequest
from django.urls import URLPattern, URLResolver
from django_otp.admin import OTPAdminAuthenticationForm
from django_otp.plugins.otp_totp.models import TOTPDevice


class TotpAdminAuthenticationForm(OTPAdminAuthenticationForm):
    """django-otp's admin login form, for staff who each have one TOTP device: the code is
    checked against the user's newest confirmed TOTP device, so nobody picks a device from a
    list (django-otp would otherwise ask, so that a wrong code never counts as a failure
    against an unrelated device). ``enroll_totp --replace`` renews a lost device."""

    def _chosen_device(self, user: Any) -> TOTPDevice | None:
        return (
            TOTPDevice.objects.devices_for_user(user, confirmed=True)
            .order_by("-created_at", "-id")
            .first()
        )


def admin_otp_required() -> bool:
    """True when staff must pass a TOTP second factor to use the admin (see the module doc)."""
    return bool(getattr(settings, "ADMIN_REQUIRE_OTP", not settings.DEBUG))


class ComplianceAdminSite(AdminSite):
    """The default admin site (``admin.site``) of the portal.

    ``has_permission`` adds django-otp's verification to Django's "active staff" check when
    :func:`admin_otp_required`; the login page then asks for the TOTP code too.
    """

    site_header = "Recordings compliance portal"
    site_title = "Compliance portal"
    index_title = "Compliance administration"
    index_template = "admin/portal_index.html"
    # The portal has no public site to link to from the admin header.
    site_url = None
    # Wide lists (the access log) need the room more than a second menu beside the index.
    enable_nav_sidebar = False

    @property
    def login_form(self) -> type[AdminAuthenticationForm]:  # type: ignore[override]
        """The login form: username, password and, when required, the TOTP code."""
        return TotpAdminAuthenticationForm if admin_otp_required() else AdminAuthenticationForm

    @property
    def login_template(self) -> str:  # type: ignore[override]
        """The login page: Django's, or the same page with a TOTP code field."""
        return "admin/login_otp.html" if admin_otp_required() else "admin/login.html"

    def has_permission(self, request: HttpRequest) -> bool:
        """Active staff, verified by a TOTP device when the second factor is required."""
        if not super().has_permission(request):
            return False
        if not admin_otp_required():
            return True
        # django-otp's OTPMiddleware gives the user ``is_verified()``; a request it has not
        # seen is not verified (refused, rather than a server error).
        is_verified = getattr(request.user, "is_verified", None)
        return callable(is_verified) and bool(is_verified())

    def each_context(self, request: HttpRequest) -> dict[str, Any]:
        """Django's context, plus whether the second factor is on (shown in the index)."""
        context = super().each_context(request)
        context["admin_otp_required"] = admin_otp_required()
        return context

    def __init__(self, name: str = "admin") -> None:
        super().__init__(name)
        self._extra_urls: list[Callable[[AdminSite], list[URLPattern]]] = []

    def register_urls(self, urls: Callable[[AdminSite], list[URLPattern]]) -> None:
        """Add pages that belong to no model: ``urls(site)`` answers their URL patterns, each
        wrapped by the caller in ``site.admin_view``. Called from an app's ``admin`` module,
        which Django imports before the URLs are first resolved."""
        self._extra_urls.append(urls)

    def get_urls(self) -> list[URLResolver | URLPattern]:
        """Django's admin URLs, plus the pages added by :meth:`register_urls`."""
        extra: list[URLResolver | URLPattern] = [
            pattern for urls in self._extra_urls for pattern in urls(self)
        ]
        return extra + super().get_urls()
