"""The admin login is no password oracle: one answer for every failure, failures (wrong
passwords and wrong TOTP codes alike) throttled per username and address and per address by
django-axes, and every failure, lockout and success written to the access log."""

from __future__ import annotations

import logging
import re
import time
from datetime import timedelta

import pytest
import redis
from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import AccessAction, AccessLog, AccessOutcome

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
WRONG_PASSWORD = "wrong-guess-0b5c1e"
STRANGER_IP = "198.51.100.66"
COLLEAGUE_IP = "203.0.113.10"
SAME_ANSWER = (
    "Please enter the correct username, password and authenticator code for a staff account."
)


@pytest.fixture
def officer(django_user_model):
    user = django_user_model.objects.create_user(
        "officer", password=PASSWORD, is_staff=True, is_superuser=True
    )
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    return user, device


@pytest.fixture
def otp_required(settings):
    settings.ADMIN_REQUIRE_OTP = True


def right_code(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"


def wrong_code(device: TOTPDevice) -> str:
    """A code that matches none of the steps the device accepts now (it allows one each side)."""
    valid = {
        f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=d):06d}"
        for d in (-2, -1, 0, 1, 2)
    }
    return next(code for code in ("731942", "582017", "264905", "918273") if code not in valid)


def login(client: Client, ip: str, *, password: str = PASSWORD, **fields: str):
    return client.post(
        reverse("admin:login"),
        {"username": "officer", "password": password, "next": reverse("admin:index"), **fields},
        REMOTE_ADDR=ip,
    )


def login_rows(reason: str | None = None) -> list[AccessLog]:
    rows = AccessLog.objects.filter(action=AccessAction.ADMIN_LOGIN).order_by("sequence")
    return list(rows.filter(reason_code=reason) if reason else rows)


def page_without_csrf(response) -> str:
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", response.content.decode())


@pytest.mark.parametrize("otp", [True, False], ids=["totp", "password-only"])
def test_thirty_wrong_passwords_are_locked_out_before_the_thirtieth_and_audited(
    officer, settings, otp
):
    settings.ADMIN_REQUIRE_OTP = otp
    client = Client()
    statuses = [login(client, STRANGER_IP, password=WRONG_PASSWORD).status_code for _ in range(30)]
    assert 429 in statuses, statuses
    first_lock = statuses.index(429)
    assert first_lock < 29
    assert set(statuses[:first_lock]) == {200}
    assert set(statuses[first_lock:]) == {429}
    # Locked: even the right password (and code) from there is refused, unchecked.
    locked = login(client, STRANGER_IP, otp_token=right_code(officer[1]))
    assert locked.status_code == 429
    assert locked["Retry-After"] == str(15 * 60)
    assert b"Too many failed logins from your address. Try again in 15 minutes." in locked.content
    assert client.get(reverse("admin:index")).status_code == 302

    failures = login_rows("bad_password")
    assert len(failures) == first_lock + 1
    assert len(login_rows("locked_out")) == 30 - first_lock  # refused attempts, the last included
    (lockout,) = login_rows("lockout")
    assert lockout.outcome == AccessOutcome.DENIED
    assert lockout.identity == "admin:officer"
    assert lockout.client_ip == STRANGER_IP
    assert lockout.detail["failures"] == first_lock + 1
    assert all(row.outcome == AccessOutcome.DENIED for row in failures)
    assert all(row.identity == "admin:officer" and row.client_ip == STRANGER_IP for row in failures)


def test_a_wrong_password_and_a_wrong_or_missing_code_get_the_same_answer(officer, otp_required):
    device = officer[1]
    answers = [
        login(Client(), COLLEAGUE_IP, password=WRONG_PASSWORD, otp_token=right_code(device)),
        login(Client(), COLLEAGUE_IP, password=WRONG_PASSWORD, otp_token=wrong_code(device)),
        login(Client(), COLLEAGUE_IP, otp_token=wrong_code(device)),
        login(Client(), COLLEAGUE_IP),  # right password, no code
    ]
    assert {answer.status_code for answer in answers} == {200}
    for answer in answers:
        assert answer.context["form"].errors == {"__all__": [SAME_ANSWER]}
    pages = {page_without_csrf(answer) for answer in answers}
    assert len(pages) == 1
    assert SAME_ANSWER in pages.pop()
    # The access log tells officers which factor failed; the answer never does.
    assert [row.reason_code for row in login_rows()] == [
        "bad_password",
        "bad_password",
        "bad_otp",
        "bad_otp",
    ]


def test_a_right_password_of_an_account_that_is_not_staff_gets_the_same_answer_and_counts(
    django_user_model, otp_required
):
    django_user_model.objects.create_user("officer", password=PASSWORD)  # not staff
    response = login(Client(), COLLEAGUE_IP)
    assert response.status_code == 200
    assert response.context["form"].errors == {"__all__": [SAME_ANSWER]}
    assert PASSWORD not in response.content.decode()
    assert [row.reason_code for row in login_rows()] == ["not_staff"]


def test_a_wrong_code_counts_as_a_failed_login(officer, otp_required):
    device = officer[1]
    client = Client()
    statuses = [
        login(client, STRANGER_IP, otp_token=wrong_code(device)).status_code for _ in range(30)
    ]
    assert 429 in statuses, statuses
    assert len(login_rows("bad_otp")) == statuses.index(429) + 1
    assert len(login_rows("lockout")) == 1
    # Knowing the password gives no more code guesses: the right code is refused too.
    assert login(client, STRANGER_IP, otp_token=right_code(device)).status_code == 429
    assert client.get(reverse("admin:index")).status_code == 302


def test_a_stranger_with_the_password_cannot_lock_the_colleague_out(officer, otp_required):
    device = officer[1]
    stranger = Client()
    for _ in range(30):
        login(stranger, STRANGER_IP, otp_token=wrong_code(device))
    assert login(stranger, STRANGER_IP, otp_token=right_code(device)).status_code == 429

    colleague = Client()
    response = login(colleague, COLLEAGUE_IP, otp_token=right_code(device))
    assert response.status_code == 302, response.context and response.context["form"].errors
    assert colleague.get(reverse("admin:index")).status_code == 200
    (success,) = login_rows("login")
    assert success.outcome == AccessOutcome.ALLOWED
    assert success.identity == "admin:officer"
    assert success.client_ip == COLLEAGUE_IP
    assert success.detail == {"second_factor": True}
    # The colleague's login does not lift the stranger's lock.
    assert login(Client(), STRANGER_IP, otp_token=right_code(device)).status_code == 429


def test_wrong_codes_do_not_lock_the_colleagues_device(officer, otp_required):
    # django-otp's own throttle doubles a device's delay after each wrong code, without bound:
    # the count a stranger with the password reaches over a few cool-offs would lock the
    # colleague's device for days, from everywhere. Here that count is set directly.
    device = officer[1]
    device.throttling_failure_count = 20
    device.throttling_failure_timestamp = timezone.now()
    device.save()
    response = login(Client(), COLLEAGUE_IP, otp_token=right_code(device))
    assert response.status_code == 302, response.context and response.context["form"].errors


def test_a_lockout_ends_after_the_cool_off(officer, settings):
    settings.AXES_COOLOFF_TIME = timedelta(seconds=1)
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        login(client, STRANGER_IP, password=WRONG_PASSWORD)
    assert login(client, STRANGER_IP).status_code == 429
    time.sleep(1.5)
    assert login(client, STRANGER_IP).status_code == 302
    assert client.get(reverse("admin:index")).status_code == 200


def test_a_successful_login_starts_the_count_again(officer, settings):
    limit = settings.AXES_FAILURE_LIMIT
    client = Client()
    for _ in range(limit - 1):
        assert login(client, COLLEAGUE_IP, password=WRONG_PASSWORD).status_code == 200
    assert login(client, COLLEAGUE_IP).status_code == 302
    client.logout()
    for _ in range(limit - 1):
        assert login(client, COLLEAGUE_IP, password=WRONG_PASSWORD).status_code == 200
    assert login(client, COLLEAGUE_IP, password=WRONG_PASSWORD).status_code == 429


def test_the_address_is_the_portals_client_ip_not_a_forwarded_header(officer, settings):
    # From an untrusted peer, a new X-Forwarded-For each time changes nothing: still locked.
    client = Client()
    statuses = [
        client.post(
            reverse("admin:login"),
            {"username": "officer", "password": WRONG_PASSWORD},
            REMOTE_ADDR=STRANGER_IP,
            HTTP_X_FORWARDED_FOR=f"192.0.2.{n}",
        ).status_code
        for n in range(30)
    ]
    assert 429 in statuses
    (lockout,) = login_rows("lockout")
    assert lockout.client_ip == STRANGER_IP

    # Behind a trusted proxy, each client is counted on its own address.
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(
            reverse("admin:login"),
            {"username": "officer", "password": WRONG_PASSWORD},
            REMOTE_ADDR="10.0.0.2",
            HTTP_X_FORWARDED_FOR="192.0.2.200",
        )
    response = client.post(
        reverse("admin:login"),
        {"username": "officer", "password": PASSWORD},
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="192.0.2.201",
    )
    assert response.status_code == 302


def test_no_password_or_code_reaches_a_log_a_row_or_the_cache(officer, otp_required, caplog):
    device = officer[1]
    code = wrong_code(device)
    caplog.set_level(logging.DEBUG)
    client = Client()
    for _ in range(django_settings.AXES_FAILURE_LIMIT + 2):
        login(client, STRANGER_IP, password=WRONG_PASSWORD, otp_token=code)
        login(client, STRANGER_IP, otp_token=code)
    rows = login_rows()
    assert rows
    stored = " ".join(str(values) for values in AccessLog.objects.values())
    cache = redis.Redis.from_url(django_settings.REDIS_URL)
    cached = " ".join(f"{key!r} {cache.dump(key)!r}" for key in cache.scan_iter(count=1000))
    for secret in (PASSWORD, WRONG_PASSWORD, code):
        assert secret not in caplog.text
        assert secret not in stored
        assert secret not in cached


@pytest.fixture
def throttle_store_down(settings):
    """The cache's Redis is down: django-axes cannot read or count failures. Its handler
    keeps the cache it was built with, so it is built again on each change."""
    working = settings.CACHES
    settings.CACHES = {"default": {**working["default"], "LOCATION": "redis://127.0.0.1:1/0"}}
    AxesProxyHandler.get_implementation(force=True)
    yield
    settings.CACHES = working
    AxesProxyHandler.get_implementation(force=True)


def test_while_the_throttle_cannot_count_no_password_is_checked_and_each_attempt_is_logged(
    officer, throttle_store_down
):
    client = Client()
    assert client.get(reverse("admin:login")).status_code == 200  # the page itself is there
    for password in (WRONG_PASSWORD, PASSWORD):
        answer = login(client, STRANGER_IP, password=password)
        page = answer.content.decode()
        assert answer.status_code == 503
        assert answer["Retry-After"] == "30"
        assert "Sign-in is unavailable for now" in page
        assert PASSWORD not in page
        assert WRONG_PASSWORD not in page
    # Not signed in, even with the right password: fail closed.
    assert client.get(reverse("admin:index")).status_code == 302
    rows = login_rows()
    assert [(row.outcome, row.reason_code, row.identity) for row in rows] == [
        (AccessOutcome.DENIED, "throttle_unavailable", "admin:officer")
    ] * 2
    assert all(row.client_ip == STRANGER_IP for row in rows)
