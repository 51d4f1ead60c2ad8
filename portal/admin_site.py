"""The portal's admin site: Django's admin, with a TOTP second factor in production.

Compliance officers live in the admin, so it is the portal's most privileged surface. In
production (``DJANGO_DEBUG=0``) ``ADMIN_REQUIRE_OTP`` is always on: staff log in with a password
and a TOTP code (django-otp), and a session that was not verified by a device is treated as not
staff at all. Embedded mode (the demo) stays password-only unless ``ADMIN_REQUIRE_OTP=1``.
Every failed login (wrong password, wrong or missing code) gets the same answer and is counted
by django-axes (``AXES_*`` in the settings); a locked-out attempt gets :func:`login_locked_out`.

The site also carries pages that belong to no single model, which apps add with
:meth:`ComplianceAdminSite.register_urls` (the Twilio storage settings, credentials and IAM
policy generator of ``recordings.admin.twilio_settings``), and an index that links the
compliance tools (dashboard, chain verification, rule tester, rules import/export). The site
itself imports no app, so the arrows point from the apps to the kernel.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar, cast

from django.conf import settings
from django.contrib.admin import AdminSite
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import ValidationError
from django.forms import PasswordInput
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import URLPattern, URLResolver
from django_otp.admin import OTPAdminAuthenticationForm
from django_otp.plugins.otp_totp.models import TOTPDevice
from redis.exceptions import RedisError


class StaffAuthenticationForm(AdminAuthenticationForm):
    """Django's admin login form, with one answer for every failed login, so the page never
    tells a stranger that the password was right (see :meth:`clean`)."""

    def clean(self) -> dict[str, Any]:
        """Django's checks (and, in :class:`TotpAdminAuthenticationForm`, the code's); any
        failure answers the form's ``invalid_login`` message.

        A failure after the password was right (a wrong or missing code, or an account that is
        not active staff) is announced with Django's ``user_login_failed`` signal, as a wrong
        password is, with ``reason`` ``bad_otp`` or ``not_staff``: django-axes then counts it
        (knowing a password gives no more code guesses than not knowing it) and the access log
        records it (``audit.staff_logins``). The signal carries the username, never the
        password or the code, and the page never shows the password again.
        """
        try:
            return super().clean()
        except ValidationError:
            user = self.user_cache
            if user is not None:
                staff = user.is_active and bool(getattr(user, "is_staff", False))
                user_login_failed.send(
                    sender=type(self),
                    credentials={"username": self.cleaned_data.get("username")},
                    request=self.request,
                    reason="bad_otp" if staff else "not_staff",
                )
                self.user_cache = None
            # Never send the password back: django-otp re-fills it after a right password (to
            # save retyping), which would tell a stranger that it was right.
            widget = self.fields["password"].widget
            if isinstance(widget, PasswordInput):
                widget.render_value = False
            raise self.get_invalid_login_error() from None


class TotpAdminAuthenticationForm(StaffAuthenticationForm, OTPAdminAuthenticationForm):
    """django-otp's admin login form, for staff who each have one TOTP device: the code is
    checked against the user's newest confirmed TOTP device, so nobody picks a device from a
    list (django-otp would otherwise ask, so that a wrong code never counts as a failure
    against an unrelated device). ``enroll_totp --replace`` renews a lost device.

    A wrong password and a right password with a wrong or missing code get the same message
    (:meth:`StaffAuthenticationForm.clean`)."""

    error_messages = {
        **StaffAuthenticationForm.error_messages,
        "invalid_login": "Please enter the correct %(username)s, password and authenticator "
        "code for a staff account.",
    }

    def _chosen_device(self, user: Any) -> TOTPDevice | None:
        return (
            TOTPDevice.objects.devices_for_user(user, confirmed=True)
            .order_by("-created_at", "-id")
            .first()
        )


_View = TypeVar("_View", bound=Callable[..., HttpResponseBase])

NUL_REFUSED = (
    "This admin page was given a NUL character (%00) in its address. No search, filter, "
    "identity or export holds one: remove it and try again."
)


def nul_refused(view: _View) -> _View:
    """``view``, answering 400 with :data:`NUL_REFUSED` when a query parameter (name or value)
    or a part of the path holds NUL: no stored value can hold one, PostgreSQL refuses it in
    text and JSON (a 500), and the access log cannot record the filters of such a request."""

    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        parts = [*args, *kwargs.values()]
        for name, values in request.GET.lists():
            parts += [name, *values]
        if any(isinstance(part, str) and "\x00" in part for part in parts):
            return HttpResponseBadRequest(NUL_REFUSED, content_type="text/plain; charset=utf-8")
        return view(request, *args, **kwargs)

    return cast(_View, guarded)


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
        return TotpAdminAuthenticationForm if admin_otp_required() else StaffAuthenticationForm

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

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        """Django's login page, or :func:`login_unavailable` when the login throttle's store
        (the cache's Redis) does not answer: no password is checked while failures cannot be
        counted (fail closed), and the attempt is logged, instead of a server error."""
        try:
            return super().login(request, extra_context)
        except RedisError:
            return login_unavailable(request)

    def admin_view(self, view: _View, cacheable: bool = False) -> _View:
        """Django's wrapper (permission check, no caching), around a view that refuses NUL in
        its parameters with a clear 400 (:func:`nul_refused`): on every admin page."""
        return super().admin_view(nul_refused(view), cacheable)

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


# Seconds an officer is asked to wait when the login throttle cannot count failures.
LOGIN_UNAVAILABLE_RETRY_SECONDS = 30


def login_unavailable(request: HttpRequest) -> HttpResponse:
    """``503`` and a page saying that sign-in is unavailable for now, when django-axes cannot
    reach its counts (the cache's Redis is down or does not answer).

    A posted attempt is announced with Django's ``user_login_failed`` signal, reason
    ``throttle_unavailable``, so the access log records it (``audit.staff_logins``); sent
    robustly, as django-axes' own receiver fails the same way. Only the username travels.
    """
    if request.method == "POST":
        user_login_failed.send_robust(
            sender=ComplianceAdminSite,
            credentials={"username": str(request.POST.get("username", ""))[:150]},
            request=request,
            reason="throttle_unavailable",
        )
    context = {
        "site_header": ComplianceAdminSite.site_header,
        "site_title": ComplianceAdminSite.site_title,
        "title": "Sign-in unavailable",
        "retry_seconds": LOGIN_UNAVAILABLE_RETRY_SECONDS,
    }
    response = render(request, "admin/login_unavailable.html", context, status=503)
    response["Retry-After"] = str(LOGIN_UNAVAILABLE_RETRY_SECONDS)
    return response


def login_locked_out(
    request: HttpRequest,
    original_response: HttpResponseBase | None = None,
    credentials: dict[str, Any] | None = None,
) -> HttpResponse:
    """The answer to a login attempt that is locked out (django-axes'
    ``AXES_LOCKOUT_CALLABLE``): ``429``, ``Retry-After`` and a page saying when to try again.

    The same page whatever the username and whichever lock applies (the address's, or the
    username's from that address), so it tells neither whether the account exists nor whether
    the password was right.
    """
    cool_off: timedelta = settings.AXES_COOLOFF_TIME
    context = {
        "site_header": ComplianceAdminSite.site_header,
        "site_title": ComplianceAdminSite.site_title,
        "title": "Too many failed logins",
        "cooloff_minutes": max(1, math.ceil(cool_off.total_seconds() / 60)),
    }
    response = render(request, "admin/login_locked.html", context, status=429)
    response["Retry-After"] = str(math.ceil(cool_off.total_seconds()))
    return response
