"""The compliance dashboard (figures, chart, alerts) and the "Verify audit log" page."""

from __future__ import annotations

import base64
import json
from datetime import date, datetime, timedelta
from types import SimpleNamespace

import pytest
import redis
from celery import current_app
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from audit import sealer, services
from audit.admin import selectors
from audit.admin.chart import daily_bar_chart
from audit.admin.selectors import DayCount
from audit.models import AccessLog, ChainCheck
from audit.services import access_log_append, audit_digest_create, chain_check_run
from audit.tasks import verify_audit_chain
from audit.tests.helpers import tamper
from recordings.models import SyncState

pytestmark = [pytest.mark.django_db, pytest.mark.urls("audit.tests.urls")]


def open_(identity: str, sid: str, **fields) -> AccessLog:
    return access_log_append(
        action="url_provider", outcome="allowed", identity=identity, recording_sid=sid, **fields
    )


def sid(n: int) -> str:
    return f"RE{n:032x}"


def at(monkeypatch, moment: datetime) -> None:
    """Stamp the next rows at ``moment`` (the log's clock is the service's)."""
    monkeypatch.setattr(services, "timezone", SimpleNamespace(now=lambda: moment))


def test_dashboard_figures_and_chart(admin_client):
    for n in range(3):
        open_("alice", sid(n))
    open_("bob", sid(0))
    access_log_append(action="url_provider", outcome="denied", identity="eve")
    response = admin_client.get(reverse("admin:audit_accesslog_dashboard"))
    assert response.status_code == 200
    data = response.context["dashboard"]
    today = data.per_day[-1]
    assert (today.day, today.allowed, today.denied) == (timezone.now().date(), 4, 1)
    assert len(data.per_day) == 30
    assert [(r["identity"], r["recordings"]) for r in data.top_identities] == [
        ("alice", 3),
        ("bob", 1),
    ]
    assert [(r["recording_sid"], r["people"]) for r in data.widely_opened] == [(sid(0), 2)]
    assert b"<svg" in response.content
    assert b'class="allowed"' in response.content
    assert AccessLog.objects.filter(action="admin_view", reason_code="dashboard").exists()


def test_bulk_listening_is_an_alert(admin_client, settings):
    settings.AUDIT_ALERT_BULK_ACCESS_PER_HOUR = 3
    for n in range(4):
        open_("scraper", sid(n))
    for n in range(3):
        open_("normal", sid(n))  # at the threshold, not over it
    alerts = selectors.dashboard(now=timezone.now()).alerts
    bulk = [alert for alert in alerts if alert.title.startswith("Bulk listening")]
    assert [alert.title for alert in bulk] == ["Bulk listening: scraper"]
    assert "opened 4 recordings" in bulk[0].detail
    assert "?identity=scraper&action=url_provider&since=" in bulk[0].link  # that hour's opens


def test_denial_spike_against_the_week_before(monkeypatch):
    now = timezone.now()
    at(monkeypatch, now - timedelta(days=2))
    for _ in range(7 * 24):  # one denial an hour on average over the week before
        access_log_append(action="url_provider", outcome="denied", identity="x")
    at(monkeypatch, now - timedelta(minutes=5))
    for _ in range(5):
        access_log_append(action="url_provider", outcome="denied", identity="y")
    assert selectors.denial_spike_alert(now=now, minimum=4, factor=3) is not None
    assert selectors.denial_spike_alert(now=now, minimum=5, factor=3) is None  # not above 5
    assert selectors.denial_spike_alert(now=now, minimum=1, factor=5) is None  # not above 5 times 1


def test_broken_chain_and_stuck_syncs_are_alerts(admin_client, recording_factory):
    recording_factory(sync_state=SyncState.SYNC_FAILED)
    alerts = {alert.title for alert in selectors.dashboard(now=timezone.now()).alerts}
    assert "The audit chain was never verified" in alerts
    assert "1 recording stuck in sync_failed" in alerts

    open_("alice", sid(1))
    assert chain_check_run(trigger="admin").ok
    alerts = {alert.title for alert in selectors.dashboard(now=timezone.now()).alerts}
    assert not any("chain" in title for title in alerts)

    tamper("UPDATE audit_accesslog SET identity = 'mallory' WHERE sequence = 1")
    assert not chain_check_run(trigger="admin").ok
    response = admin_client.get(reverse("admin:audit_accesslog_dashboard"))
    assert b"Broken audit chain" in response.content


def test_a_stale_verification_is_a_warning():
    check = ChainCheck.objects.create(trigger="schedule", ok=True, count=0)
    late = check.checked_at + timedelta(hours=27)
    titles = [alert.title for alert in selectors.chain_alerts(now=late, check=check)]
    assert titles == ["The audit chain was not verified for over a day"]


def queued_verifications() -> list[dict]:
    """The verification tasks waiting on the real Redis broker, by their keyword arguments."""
    found = []
    for raw in redis.Redis.from_url(settings.REDIS_URL).lrange("celery", 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] == "audit.tasks.verify_audit_chain":
            _args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            found.append(kwargs)
    return found


def test_verify_page_queues_the_check_and_shows_the_first_bad_row(admin_client):
    for n in range(3):
        open_("alice", sid(n))
    digest = audit_digest_create()
    url = reverse("admin:audit_accesslog_verify")
    assert admin_client.get(url).context["latest"] is None

    # A million rows outlast a web request: the button queues the check for a worker.
    response = admin_client.post(url, follow=True)
    assert b"Verification queued" in response.content
    assert response.context["latest"] is None
    assert queued_verifications() == [{"trigger": "admin", "actor": "admin:admin", "full": False}]
    verify_audit_chain(**queued_verifications()[0])  # what the worker runs
    page = admin_client.get(url)
    latest = page.context["latest"]
    assert (latest.ok, latest.count, latest.digests_checked) == (True, 3, 1)
    assert "0\xa0minutes ago" in page.content.decode()  # the result's age, at a glance
    assert latest.last_digest_at == digest.created_at
    assert latest.actor == "admin:admin"
    logged = AccessLog.objects.get(action="chain_verify")
    assert (logged.outcome, logged.reason_code, logged.identity) == (
        "allowed",
        "chain_intact",
        "admin:admin",
    )

    bad = AccessLog.objects.get(sequence=2)
    tamper("UPDATE audit_accesslog SET identity = 'mallory' WHERE sequence = 2")
    verify_audit_chain(trigger="admin", actor="admin:admin")
    response = admin_client.get(url)
    latest = response.context["latest"]
    assert (latest.ok, latest.problem, latest.first_bad_sequence, latest.bad_row_id) == (
        False,
        "changed",
        2,
        bad.pk,
    )
    content = response.content.decode()
    assert "BROKEN: changed" in content
    assert reverse("admin:audit_accesslog_change", args=[bad.pk]) in content
    assert "Last signed digest" in content
    assert len(response.context["checks"]) == 2


def test_in_embedded_mode_the_verify_button_checks_at_once(admin_client):
    open_("alice", sid(1))
    current_app.conf.task_always_eager = True
    try:
        response = admin_client.post(reverse("admin:audit_accesslog_verify"), follow=True)
    finally:
        current_app.conf.task_always_eager = False
    assert b"The audit log is intact" in response.content
    assert response.context["latest"].ok


def test_the_verify_page_shows_the_seal_key_and_warns_when_sealing_stalls(
    admin_client, settings
):
    open_("alice", sid(1))
    url = reverse("admin:audit_accesslog_verify")
    page = admin_client.get(url).content.decode()
    fingerprint = next(iter(sealer.seal_public_keys()))
    assert fingerprint in page
    assert "BEGIN PUBLIC KEY" in page
    assert 'id="sealing-overdue"' not in page  # the row is fresh
    settings.AUDIT_SEAL_MAX_DELAY_SECONDS = 0
    assert 'id="sealing-overdue"' in admin_client.get(url).content.decode()
    sealer.seal_pending()
    page = admin_client.get(url).content.decode()
    assert 'id="sealing-overdue"' not in page
    assert "seal 1, rows 1 to 1" in page


def test_the_nightly_task_records_a_check():
    open_("alice", sid(1))
    assert verify_audit_chain() is True
    check = ChainCheck.objects.get()
    assert (check.trigger, check.actor, check.ok) == ("schedule", "system:nightly", True)


def test_chart_geometry():
    days = [
        DayCount(date(2026, 3, 1), allowed=10, denied=0),
        DayCount(date(2026, 3, 2), allowed=5, denied=3),
    ]
    chart = daily_bar_chart(days)
    assert [tick.text for tick in chart.value_ticks] == ["0", "5", "10"]
    allowed = [bar for bar in chart.bars if bar.series == "allowed"]
    tallest = max(allowed, key=lambda bar: bar.height)
    assert tallest.y == chart.plot_bottom - tallest.height
    assert tallest.height == pytest.approx(chart.plot_bottom - 12)  # the full plot height
    assert allowed[1].height == pytest.approx(tallest.height / 2)
    assert all(bar.x + bar.width <= chart.plot_right for bar in chart.bars)
    assert chart.day_ticks[0].text == "01 Mar"
    assert not chart.empty
    assert daily_bar_chart([DayCount(date(2026, 3, 1), 0, 0)]).empty
    odd = daily_bar_chart([DayCount(date(2026, 3, 1), 7, 0)])
    assert [tick.text for tick in odd.value_ticks] == ["0", "5", "10"]  # 7 rounds up to 10
