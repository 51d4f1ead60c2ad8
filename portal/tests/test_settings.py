"""The two modes of the one settings module, checked in fresh processes."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.contrib.auth.models import User

ROOT = Path(__file__).resolve().parents[2]


def run_manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PORTAL_"))}
    clean.pop("DATABASE_URL", None)
    clean.pop("REDIS_URL", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "portal.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "a-long-random-production-secret-" + "x7Qp2Lm9" * 5,
    "DJANGO_ALLOWED_HOSTS": "portal.example.com",
    "PORTAL_MASTER_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
    "AUDIT_SEAL_SIGNING_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
    "AUDIT_ROW_MAC_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
}


@pytest.mark.parametrize(
    "missing",
    [
        "DJANGO_SECRET_KEY",
        "DJANGO_ALLOWED_HOSTS",
        "PORTAL_MASTER_KEY",
        "AUDIT_SEAL_SIGNING_KEY",
        "AUDIT_ROW_MAC_KEY",
    ],
)
def test_production_refuses_to_start_without_its_secrets(missing):
    env = {k: v for k, v in PRODUCTION.items() if k != missing}
    result = run_manage("check", env=env)
    assert result.returncode != 0
    assert missing in result.stderr
    assert "ImproperlyConfigured" in result.stderr


def test_production_passes_the_deploy_check_without_warnings():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_without_any_variable_the_portal_refuses_to_start_in_production_mode():
    result = run_manage("check", env={})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    for name in ("DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "PORTAL_MASTER_KEY"):
        assert name in result.stderr
    assert "DJANGO_DEBUG=1" in result.stderr  # and says how to get the demo mode instead


def test_embedded_mode_needs_only_djangos_debug_switch():
    result = run_manage("diffsettings", "--all", env={"DJANGO_DEBUG": "1"})
    assert result.returncode == 0, result.stderr
    assert "django.db.backends.sqlite3" in result.stdout
    assert "CELERY_TASK_ALWAYS_EAGER = True" in result.stdout
    assert "LocMemCache" in result.stdout


@pytest.mark.parametrize(
    ("given", "complaint"),
    [
        ({"TWILIO_API_KEY_SID": "SK" + "1" * 32}, "go together"),
        ({"TWILIO_API_KEY_SECRET": "a-secret-0123456789"}, "go together"),
        (
            {"TWILIO_API_KEY_SID": "AC" + "1" * 32, "TWILIO_API_KEY_SECRET": "secret-0123456789"},
            "must be an API key SID",
        ),
    ],
)
def test_a_half_configured_api_key_refuses_to_start(given, complaint):
    result = run_manage("check", env={"DJANGO_DEBUG": "1", **given})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert complaint in result.stderr
    assert "secret-0123456789" not in result.stderr


def test_an_api_key_with_its_secret_starts():
    given = {"TWILIO_API_KEY_SID": "SK" + "1" * 32, "TWILIO_API_KEY_SECRET": "a-secret-01234567"}
    result = run_manage("check", env={"DJANGO_DEBUG": "1", **given})
    assert result.returncode == 0, result.stderr


@pytest.mark.django_db
def test_admin_session_ends_after_thirty_idle_minutes(client, settings):
    user = User.objects.create_superuser("officer", "o@example.com", "pw-0123456789")
    client.force_login(user)
    assert client.get("/admin/").status_code == 200
    session = client.session
    session["_portal_session_seen"] = time.time() - settings.SESSION_IDLE_TIMEOUT_SECONDS - 1
    session.save()
    assert client.get("/admin/").status_code == 302  # back to the login page


@pytest.mark.django_db
def test_admin_session_ends_after_eight_hours_even_when_active(client, settings):
    user = User.objects.create_superuser("officer", "o@example.com", "pw-0123456789")
    client.force_login(user)
    client.get("/admin/")
    session = client.session
    session["_portal_session_started"] = time.time() - settings.SESSION_COOKIE_AGE - 1
    session.save()
    assert client.get("/admin/").status_code == 302


@pytest.mark.parametrize(("flag", "prepared"), [(None, True), ("0", False)])
def test_postgresql_prepares_statements_unless_told_not_to(flag, prepared):
    env = {"DJANGO_DEBUG": "1", "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/portal"}
    if flag is not None:
        env["DATABASE_PREPARED_STATEMENTS"] = flag
    result = run_manage(
        "shell", "-c", "from django.conf import settings; print(settings.DATABASES)", env=env
    )
    assert result.returncode == 0, result.stderr
    assert "'ENGINE': 'django.db.backends.postgresql'" in result.stdout
    assert ("'server_side_binding': True" in result.stdout) is prepared
    assert ("'prepare_threshold': 2" in result.stdout) is prepared
