"""The compliance officer's main journeys in real headless Chromium: log in with a TOTP code,
filter the access log, open a recording's timeline, test a rule, verify the chain, read the
dashboard. Screenshots of each step go to ``test-artifacts/``."""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.admin.export_jobs import export_access_log
from audit.models import AccessLog, AccessLogExport, AccessRule
from audit.services import access_log_append
from audit.tasks import verify_audit_chain
from recordings.models import Recording, RecordingEvent, RecordingStatus, SyncState

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "officer-password-for-tests"


def snap(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"admin-{name}.png"), full_page=True)


@pytest.fixture
def officer(settings) -> TOTPDevice:
    """A superuser with a TOTP device, and the admin requiring the second factor."""
    settings.ADMIN_REQUIRE_OTP = True
    user = User.objects.create_user("officer", password=PASSWORD, is_staff=True, is_superuser=True)
    return TOTPDevice.objects.create(user=user, name="phone", confirmed=True)


@pytest.fixture
def recording() -> Recording:
    """A recording with a callback, two accesses and a denial in the log."""
    recording = Recording.objects.create(
        sid="RE" + secrets.token_hex(16),
        account_sid="AC" + "a" * 32,
        call_sid="CA" + secrets.token_hex(16),
        status=RecordingStatus.COMPLETED,
        source="DialVerb",
        start_time=timezone.now() - timedelta(hours=3),
        sync_state=SyncState.SYNCED,
        synced_at=timezone.now() - timedelta(hours=2),
    )
    RecordingEvent.objects.create(
        recording_sid=recording.sid,
        account_sid=recording.account_sid,
        recording_status="completed",
        payload={},
        received_at=timezone.now() - timedelta(hours=2, minutes=30),
        state="processed",
    )
    for identity, outcome in (("qa_alice", "allowed"), ("bob", "denied"), ("qa_carol", "allowed")):
        access_log_append(
            action="url_provider",
            outcome=outcome,
            reason_code="allowed_by_rule" if outcome == "allowed" else "no_matching_rule",
            identity=identity,
            roles=["supervisor"],
            recording_sid=recording.sid,
            rule_name="qa-supervisors" if outcome == "allowed" else "",
            client_ip="192.0.2.7",
        )
    return recording


def log_in(page, live_server, device: TOTPDevice) -> None:
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "officer")
    page.fill("#id_password", PASSWORD)
    code = totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits)
    page.fill("#id_otp_token", f"{code:06d}")
    snap(page, "1-login-with-totp")
    page.click("input[type=submit]")
    page.wait_for_selector("#compliance-tools")


def test_log_in_filter_the_log_and_open_a_timeline(live_server, page, officer, recording):
    log_in(page, live_server, officer)
    snap(page, "2-index")
    page.click("#compliance-tools >> text=Access log")
    page.fill("input[name=identity]", "qa_alice")
    page.press("input[name=identity]", "Enter")
    page.wait_for_selector("#result_list")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    assert "qa_alice" in rows.first.inner_text()
    page.click("text=Last hour")
    assert "occurred=1h" in page.url
    assert "identity=qa_alice" in page.url
    snap(page, "3-log-filtered")

    # Export the filtered list: queued, written by the worker, downloaded from the exports page.
    page.click("#export-csv")
    page.wait_for_selector("#exports")
    assert "queued" in page.locator("#exports").inner_text()
    job = AccessLogExport.objects.get()
    export_access_log(job.pk)  # what the worker does
    page.reload()
    with page.expect_download() as download:
        page.click("#exports >> text=Download")
    content = Path(download.value.path()).read_text()
    assert "qa_alice" in content
    assert "bob" not in content
    snap(page, "3b-exports")
    page.go_back()
    page.goto(f"{live_server.url}/admin/audit/accesslog/?identity=qa_alice")

    page.click(f"#result_list >> text={recording.sid}")
    page.wait_for_selector("#recording-timeline")
    timeline = page.locator("#recording-timeline").inner_text()
    assert "Twilio callback: completed" in timeline
    assert "Player asked for a recording: denied" in timeline
    assert "bob" in timeline
    snap(page, "4-recording-timeline")
    assert AccessLog.objects.filter(
        identity="admin:officer", reason_code="recording_page", recording_sid=recording.sid
    ).exists()


def test_test_a_rule_verify_the_chain_and_read_the_dashboard(live_server, page, officer, recording):
    AccessRule.objects.create(
        name="qa-supervisors", effect="allow", identities=["qa_*"], roles=["supervisor"]
    )
    log_in(page, live_server, officer)
    page.click("#compliance-tools >> text=Test the access rules")
    page.fill("#id_identity", "qa_dave")
    page.fill("#id_roles", "supervisor")
    page.fill("#id_recording_sid", recording.sid)
    page.click("input[value=Decide]")
    page.wait_for_selector("#decision")
    assert "Allowed" in page.locator("#decision").inner_text()
    assert "qa-supervisors" in page.locator("#decision").inner_text()
    snap(page, "5-rule-tester")

    page.goto(f"{live_server.url}/admin/")
    page.click("#compliance-tools >> text=Verify audit log")
    assert "Seal public key" in page.locator("#sealing-status").inner_text()
    page.click("input[value='Verify audit log now']")
    assert "Verification queued" in page.locator(".messagelist").inner_text()
    verify_audit_chain(trigger="admin", actor="admin:officer")  # what the worker does
    page.reload()
    page.wait_for_selector("#verify-result")
    assert "Intact" in page.locator("#verify-result").inner_text()
    snap(page, "6-verify-chain")

    page.goto(f"{live_server.url}/admin/")
    page.click("#compliance-tools >> text=Dashboard")
    page.wait_for_selector("svg.portal-chart")
    assert page.locator("svg.portal-chart rect.allowed").count() == 30
    snap(page, "7-dashboard")
    assert "qa_alice" in page.locator("#top-identities").inner_text()
    assert recording.sid in page.locator("#widely-opened").inner_text()
