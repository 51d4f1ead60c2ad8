"""The officer's journey "run a playback report" (issue 14) in real headless Chromium: open the
report from the admin's index, filter by team, see the people with their plays, denials and the
listening estimate, regroup by recording, follow a denial to the filtered access log, and
export the PDF (written in the background, downloaded from the exports page). Screenshots go to
``test-artifacts/``."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from celery import current_app
from django.utils import timezone

from audit.models import AccessLog
from audit.services import access_log_append
from portal.tests.test_browser_admin import ARTIFACTS, log_in, officer, snap  # noqa: F401  (fixture)
from recordings.models import FlexWorker, Recording, RecordingStatus, SyncState

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SAM = "sam_40example_2Ecom"
SAM_SID = "WK" + "5" * 32


@pytest.fixture
def eager():
    """Export jobs written at once, as in embedded mode (no broker in the test)."""
    current_app.conf.task_always_eager = True
    yield
    current_app.conf.task_always_eager = False


@pytest.fixture
def teams_week() -> Recording:
    """Sam (Team Blue) played a recording and the media endpoint sent half of it; Sam was
    denied once; Alex (Team Green) played it too."""
    FlexWorker.objects.create(
        sid=SAM_SID,
        workspace_sid="WS" + "0" * 32,
        friendly_name=SAM,
        full_name="Sam Taylor",
        email="sam@example.com",
        team_name="Blue",
    )
    FlexWorker.objects.create(
        sid="WK" + "6" * 32,
        workspace_sid="WS" + "0" * 32,
        friendly_name="alex_40example_2Ecom",
        full_name="Alex Kim",
        email="alex@example.com",
        team_name="Green",
    )
    recording = Recording.objects.create(
        sid="RE" + secrets.token_hex(16),
        account_sid="AC" + "a" * 32,
        call_sid="CA" + secrets.token_hex(16),
        status=RecordingStatus.COMPLETED,
        source="DialVerb",
        start_time=timezone.now() - timedelta(hours=3),
        sync_state=SyncState.SYNCED,
        synced_at=timezone.now() - timedelta(hours=2),
        duration_seconds=240,
        media_size=2_400_000,
        handled_team_names=["Blue"],
    )
    common = {"roles": ["agent"], "recording_sid": recording.sid, "client_ip": "192.0.2.7"}
    access_log_append(
        action="url_provider",
        outcome="allowed",
        reason_code="allowed_by_rule",
        identity=SAM,
        worker_sid=SAM_SID,
        **common,
    )
    access_log_append(
        action="media_playback",
        outcome="allowed",
        reason_code="playback_summary",
        identity=SAM,
        worker_sid=SAM_SID,
        bytes_served=1_200_000,
        **common,
    )
    access_log_append(
        action="url_provider",
        outcome="denied",
        reason_code="no_matching_rule",
        identity=SAM,
        worker_sid=SAM_SID,
        **common,
    )
    access_log_append(
        action="url_provider",
        outcome="allowed",
        reason_code="allowed_by_rule",
        identity="alex_40example_2Ecom",
        **common,
    )
    return recording


def test_run_a_playback_report(live_server, page, officer, teams_week, eager):  # noqa: F811
    log_in(page, live_server, officer)
    page.click("#compliance-tools >> text=Playback report")
    page.wait_for_selector("#report")
    groups = page.locator("#report tr.report-group")
    assert groups.count() == 2
    snap(page, "report-1-by-person")

    page.fill("#id_team", "Blue")
    page.fill("#id_since", str((timezone.now() - timedelta(days=7)).date()))
    page.click("input[value='Show report']")
    page.wait_for_selector("#report-summary")
    assert groups.count() == 1
    text = groups.first.inner_text()
    assert "Sam Taylor <sam@example.com>" in text
    assert "1 x no rule allows it" in text
    assert "2 min 00 s" in text  # half of 240 s sent by the media endpoint
    snap(page, "report-2-team-blue")

    page.select_option("#id_by", "recording")
    page.click("input[value='Show report']")
    page.wait_for_selector("#report-summary")
    assert teams_week.sid in page.locator("#report").inner_text()
    snap(page, "report-3-by-recording")

    page.click("#report .report-denials a")
    page.wait_for_selector("#result_list")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    assert "no rule allows it" in rows.first.inner_text()
    snap(page, "report-4-denials-in-the-log")

    page.go_back()
    page.wait_for_selector("#report-summary")
    page.click("#report-pdf")
    page.wait_for_selector("#exports")
    first = page.locator("#exports tbody tr").first
    assert "playback report" in first.inner_text()
    assert "PDF" in first.inner_text()
    snap(page, "report-5-export-done")
    with page.expect_download() as download:
        first.locator("text=Download").click()
    assert download.value.suggested_filename.startswith("playback-report-")
    assert download.value.suggested_filename.endswith(".pdf")
    saved = ARTIFACTS / "admin-report-3-by-recording.pdf"
    download.value.save_as(saved)
    assert saved.read_bytes().startswith(b"%PDF-")

    # Every view, the export and its download are themselves in the log, with their filters.
    logged = list(
        AccessLog.objects.filter(reason_code__startswith="playback_report").order_by("sequence")
    )
    codes = [entry.reason_code for entry in logged]
    assert codes[:3] == ["playback_report"] * 3
    assert codes[-2:] == ["playback_report_pdf", "playback_report_download"]
    assert logged[1].detail["team"] == "Blue"
    assert logged[-2].detail["group_by"] == "recording"
