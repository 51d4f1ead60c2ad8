"""Access-log rows for logins to the admin: every failed attempt, every lockout and every
successful login (``admin_login``), with the username as the identity (``admin:<username>``)
and the request's address, user agent and request id, like any other row.

Django and django-axes announce logins with signals; ``audit.apps`` connects the receivers
below (:func:`staff_login_receivers_connect`). The reason of a failure tells officers what the
login page never tells the person trying: ``bad_password``, ``bad_otp`` (the password was
right, the code was not: that password is known to whoever tried), ``not_staff``, or
``locked_out`` (refused unchecked while a lock held). The lock itself is a ``lockout`` row.
Rows never hold the submitted password or code.

Only logins made through a URL (the admin's login page) are recorded: a test client's
``force_login`` or ``authenticate()`` in a shell is nobody logging in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.http import HttpRequest

from audit.models import AccessAction, AccessOutcome
from audit.services import access_log_append
from portal.http import request_audit_fields


def _through_a_url(request: HttpRequest | None) -> bool:
    return request is not None and getattr(request, "resolver_match", None) is not None


def _refused_while_locked(request: HttpRequest) -> bool:
    # django-axes marks the request locked out either when its backend refused the attempt
    # unchecked (the failure is then not counted, so no count is set) or when this failure
    # reached the limit (the count is set): true for the first only, in either receiver order.
    return bool(getattr(request, "axes_locked_out", False)) and (
        getattr(request, "axes_failures_since_start", None) is None
    )


def login_failure_log(
    sender: Any,
    credentials: Mapping[str, Any],
    request: HttpRequest | None = None,
    reason: str = "bad_password",
    **kwargs: Any,
) -> None:
    """Receiver of Django's ``user_login_failed``: one ``admin_login`` ``denied`` row per failed
    attempt. ``reason`` is ``bad_password`` when Django sends it (the password was wrong, or
    the account inactive) and what ``portal.admin_site`` says when it sends it after a right
    password (``bad_otp``, ``not_staff``); ``locked_out`` when django-axes refused the attempt
    without checking it. Only the username is kept from ``credentials``."""
    if request is None or not _through_a_url(request):
        return
    access_log_append(
        action=AccessAction.ADMIN_LOGIN,
        outcome=AccessOutcome.DENIED,
        reason_code="locked_out" if _refused_while_locked(request) else reason,
        identity=f"admin:{credentials.get('username') or ''}",
        **request_audit_fields(request),
    )


def lockout_log(
    sender: Any,
    request: HttpRequest | None = None,
    username: str | None = None,
    **kwargs: Any,
) -> None:
    """Receiver of django-axes' ``user_locked_out``: an ``admin_login`` ``denied`` row with
    reason ``lockout`` when a failure reaches ``AXES_FAILURE_LIMIT``, with the failures counted
    and the cool-off in ``detail``. django-axes sends the signal again for each attempt refused
    while the lock holds; those are the ``locked_out`` failure rows, not new lockouts."""
    if request is None or not _through_a_url(request) or _refused_while_locked(request):
        return
    access_log_append(
        action=AccessAction.ADMIN_LOGIN,
        outcome=AccessOutcome.DENIED,
        reason_code="lockout",
        identity=f"admin:{username or ''}",
        detail={
            "failures": getattr(request, "axes_failures_since_start", None),
            "cooloff_seconds": int(settings.AXES_COOLOFF_TIME.total_seconds()),
        },
        **request_audit_fields(request),
    )


def login_success_log(
    sender: Any, request: HttpRequest | None, user: AbstractBaseUser, **kwargs: Any
) -> None:
    """Receiver of Django's ``user_logged_in``: an ``admin_login`` ``allowed`` row, reason
    ``login``, saying in ``detail`` whether a TOTP device verified the login (django-otp sets
    ``user.otp_device`` when it did)."""
    if request is None or not _through_a_url(request):
        return
    access_log_append(
        action=AccessAction.ADMIN_LOGIN,
        outcome=AccessOutcome.ALLOWED,
        reason_code="login",
        identity=f"admin:{user.get_username()}",
        detail={"second_factor": getattr(user, "otp_device", None) is not None},
        **request_audit_fields(request),
    )


def staff_login_receivers_connect() -> None:
    """Connect the three receivers above (``audit.apps`` calls it once the models are loaded)."""
    user_login_failed.connect(login_failure_log, dispatch_uid="audit_login_failure")
    user_locked_out.connect(lockout_log, dispatch_uid="audit_login_lockout")
    user_logged_in.connect(login_success_log, dispatch_uid="audit_login_success")
