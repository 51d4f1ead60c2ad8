"""The admin's second factor: TOTP (django-otp) in production, password-only in embedded mode,
and ``enroll_totp`` to give staff their device."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from portal.admin_site import ComplianceAdminSite
from portal.tests.test_settings import PRODUCTION, run_manage

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


@pytest.fixture
def officer(django_user_model):
    user = django_user_model.objects.create_user(
        "officer", password=PASSWORD, is_staff=True, is_superuser=True
    )
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    return user, device


def code(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"


def login(client: Client, **fields: str):
    return client.post(
        reverse("admin:login"),
        {"username": "officer", "password": PASSWORD, "next": reverse("admin:index"), **fields},
    )


def test_with_otp_required_a_password_alone_is_not_enough(officer, settings):
    settings.ADMIN_REQUIRE_OTP = True
    client = Client()
    page = client.get(reverse("admin:login"))
    assert b'name="otp_token"' in page.content
    response = login(client)
    assert response.status_code == 200
    # The same answer as a wrong password (test_admin_login_throttle): no hint it was right.
    assert "password and authenticator code" in str(response.context["form"].errors)
    response = login(client, otp_token="000000" if code(officer[1]) != "000000" else "111111")
    assert response.status_code == 200
    assert client.get(reverse("admin:index")).status_code == 302  # still not in


def test_with_otp_required_the_right_code_lets_staff_in(officer, settings):
    settings.ADMIN_REQUIRE_OTP = True
    client = Client()
    response = login(client, otp_token=code(officer[1]))
    assert response.status_code == 302, response.context["form"].errors
    assert client.get(reverse("admin:index")).status_code == 200


def test_a_session_not_verified_by_a_device_is_not_staff(officer, settings):
    settings.ADMIN_REQUIRE_OTP = True
    client = Client()
    client.force_login(officer[0])  # a password session, no device
    response = client.get(reverse("admin:audit_accesslog_changelist"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_a_request_the_otp_middleware_did_not_see_is_refused_not_a_server_error(
    officer, settings, rf
):
    # Without OTPMiddleware the user has no ``is_verified()``: fail closed, do not crash.
    settings.ADMIN_REQUIRE_OTP = True
    request = rf.get(reverse("admin:index"))
    request.user = officer[0]  # what AuthenticationMiddleware does
    assert ComplianceAdminSite().has_permission(request) is False
    settings.ADMIN_REQUIRE_OTP = False
    assert ComplianceAdminSite().has_permission(request) is True


def test_embedded_mode_is_password_only(officer, settings):
    settings.ADMIN_REQUIRE_OTP = False
    client = Client()
    assert b"otp_token" not in client.get(reverse("admin:login")).content
    assert login(client).status_code == 302
    page = client.get(reverse("admin:index"))
    assert page.status_code == 200
    assert b"Embedded mode: the admin asks for a password only" in page.content


def test_production_always_requires_the_second_factor():
    shell = "from django.conf import settings; print(settings.ADMIN_REQUIRE_OTP)"
    result = run_manage("shell", "-c", shell, env={**PRODUCTION, "ADMIN_REQUIRE_OTP": "0"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "True"


def test_enroll_totp_creates_a_device_once(django_user_model):
    user = django_user_model.objects.create_user("alice", is_staff=True)
    out = io.StringIO()
    call_command("enroll_totp", "alice", stdout=out)
    device = TOTPDevice.objects.get(user=user)
    assert device.confirmed
    assert "otpauth://totp/" in out.getvalue()
    with pytest.raises(CommandError, match="--replace"):
        call_command("enroll_totp", "alice", stdout=io.StringIO())
    call_command("enroll_totp", "alice", "--replace", stdout=io.StringIO())
    assert TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).count() == 1
    django_user_model.objects.create_user("bob")
    with pytest.raises(CommandError, match="not staff"):
        call_command("enroll_totp", "bob", stdout=io.StringIO())
    with pytest.raises(CommandError, match="no user"):
        call_command("enroll_totp", "nobody", stdout=io.StringIO())
