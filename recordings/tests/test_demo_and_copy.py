"""The demo keeps its promises (seed_demo prints the demo rules it loads; run_periodic_work runs
beat's tasks in embedded mode) and the Video settings page says when Programmable Video ends."""

from __future__ import annotations

from datetime import date
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from audit.models import AccessRule, AuditSeal
from recordings.admin.twilio_settings import video_end_of_life_notice
from recordings.management.commands.seed_demo import DEMO_RULES


@pytest.mark.django_db
def test_seed_demo_prints_every_demo_rule_it_loads(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.DEBUG = True
    out = StringIO()
    call_command("seed_demo", stdout=out)
    printed = out.getvalue()
    assert "demo-own-team (allow): Demo: agents may play the calls their own team handled." in (
        printed
    )
    for rule in DEMO_RULES:
        assert AccessRule.objects.filter(name=rule["name"], enabled=True).exists()
        assert f"{rule['name']} ({rule['effect']}): {rule['reason']}" in printed


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (
            date(2026, 12, 2),
            "reaches its end of life on Saturday 5 December 2026 (3 days from now)",
        ),
        (date(2026, 12, 4), "(1 day from now)"),
        (date(2026, 12, 5), "reached its end of life on Saturday 5 December 2026"),
    ],
)
def test_video_end_of_life_notice(today, expected):
    assert expected in video_end_of_life_notice(today=today)


@pytest.mark.django_db
@pytest.mark.urls("audit.tests.urls")
def test_video_page_says_when_programmable_video_ends(admin_client, fake_twilio):
    page = admin_client.get(reverse("admin:twilio_storage_video"))
    assert page.status_code == 200
    assert b'id="video-end-of-life"' in page.content
    assert b"5 December 2026" in page.content
    assert b"Zoom Video SDK" in page.content or b"reached its end of life" in page.content


@pytest.fixture
def embedded_celery():
    """Celery as embedded mode configures it: no broker, tasks run where they are sent."""
    from celery import current_app

    before = current_app.conf.task_always_eager
    current_app.conf.task_always_eager = True
    yield
    current_app.conf.task_always_eager = before


@pytest.mark.django_db
def test_run_periodic_work_runs_the_beat_schedule_here(settings, embedded_celery):
    settings.CELERY_BEAT_SCHEDULE = {
        "seal-audit-log": {"task": "audit.tasks.seal_audit_log", "schedule": 15.0},
    }
    from audit.services import access_log_append

    settings.AUDIT_SEAL_INLINE = False
    access_log_append(
        action="admin_view", outcome="allowed", reason_code="admin_view", identity="x"
    )
    before = AuditSeal.objects.count()
    out = StringIO()
    call_command("run_periodic_work", "--run-first", "--once", stdout=out)
    assert "running 1 periodic tasks" in out.getvalue()
    assert AuditSeal.objects.count() > before


def test_run_periodic_work_refuses_with_a_broker(settings, embedded_celery):
    from celery import current_app

    current_app.conf.task_always_eager = False
    with pytest.raises(CommandError, match="celery -A portal beat"):
        call_command("run_periodic_work", "--once")


@pytest.mark.django_db
def test_officers_guide_is_linked_from_the_index_and_served_to_staff(admin_client, client):
    index = admin_client.get(reverse("admin:index"))
    guide_url = reverse("admin:officers_guide")
    assert f'href="{guide_url}"'.encode() in index.content
    page = admin_client.get(guide_url)
    assert page.status_code == 200
    assert b"<h2>Common questions</h2>" in page.content
    assert b"Who may do what" in page.content
    # Behind the admin's login like every console page.
    anonymous = client.get(guide_url)
    assert anonymous.status_code == 302
    assert "/admin/login/" in anonymous["Location"]


@pytest.mark.django_db
def test_the_index_names_apps_in_words(admin_client):
    index = admin_client.get(reverse("admin:index"))
    assert b"Two-factor devices (TOTP)" in index.content
    assert b"Otp_Totp" not in index.content
    assert b"OTP_TOTP" not in index.content
