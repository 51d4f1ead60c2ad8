"""The officer's hold and delete journeys in real headless Chromium: hold everything a search
of the recordings matches (preview, confirm, the banner on the recording's page), and delete a
recording with a reason (confirmation, the banner). Screenshots of each step go to
``test-artifacts/``."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AccessLog
from portal.tests.test_browser_admin import log_in, officer, snap  # noqa: F401 (fixture)
from recordings.models import LegalHold, Recording, RecordingStatus, SyncState

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def recording(call_sid: str, hours_ago: int) -> Recording:
    return Recording.objects.create(
        sid="RE" + secrets.token_hex(16),
        account_sid="AC" + "a" * 32,
        call_sid=call_sid,
        status=RecordingStatus.COMPLETED,
        source="DialVerb",
        start_time=timezone.now() - timedelta(hours=hours_ago),
        sync_state=SyncState.SYNCED,
    )


def test_hold_everything_a_search_matches(live_server, page, officer):  # noqa: F811
    call = "CA" + secrets.token_hex(16)
    first, second = recording(call, 3), recording(call, 2)
    other = recording("CA" + secrets.token_hex(16), 1)
    log_in(page, live_server, officer)

    page.goto(f"{live_server.url}/admin/recordings/recording/")
    page.fill("#searchbar", call)
    page.press("#searchbar", "Enter")
    page.wait_for_selector("#result_list")
    page.click("#hold-search")
    page.wait_for_selector("#hold-preview")
    assert "2 recordings will be held" in page.locator("#hold-count").inner_text()
    sample = page.locator("#hold-sample").inner_text()
    assert first.sid in sample
    assert other.sid not in sample
    snap(page, "hold-1-preview")

    page.fill("#id_reason", "Regulator's request about this call")
    page.fill("#id_case_reference", "REG-2026-17")
    page.click("input[name=confirm]")
    page.wait_for_selector(".messagelist")
    assert "placed on 2 recording(s)" in page.locator(".messagelist").inner_text()
    snap(page, "hold-2-placed")
    hold = LegalHold.objects.get()
    assert hold.call_sids == [call]

    page.click(f"#result_list >> text={second.sid}")
    page.wait_for_selector("#recording-state")
    banner = page.locator("#recording-state").inner_text()
    assert "On legal hold: REG-2026-17 since" in banner
    assert "placed by officer" in banner
    assert "Legal hold placed: REG-2026-17" in page.locator("#recording-timeline").inner_text()
    snap(page, "hold-3-banner")


def test_delete_with_a_reason(live_server, page, officer):  # noqa: F811
    doomed = recording("CA" + secrets.token_hex(16), 5)
    held = recording("CA" + secrets.token_hex(16), 4)
    LegalHold.objects.create(reason="fraud", case_reference="CASE-55", recording_sids=[held.sid])
    log_in(page, live_server, officer)

    page.goto(f"{live_server.url}/admin/recordings/recording/")
    page.check(f"#result_list tr:has-text('{doomed.sid}') input.action-select")
    page.check(f"#result_list tr:has-text('{held.sid}') input.action-select")
    page.select_option("select[name=action]", "delete_now")
    page.click("button[name=index]")
    page.wait_for_selector("#delete-preview")
    assert "Delete 1 of 2 selected recordings" in page.locator("#delete-preview").inner_text()
    assert "CASE-55" in page.locator("#delete-held").inner_text()
    snap(page, "delete-1-confirm")

    page.click("input[name=confirm]")  # no reason: the browser asks for one first
    assert page.locator("#id_reason:invalid").count() == 1
    assert page.locator("#delete-preview").count() == 1
    doomed.refresh_from_db()
    assert doomed.soft_deleted_at is None

    page.fill("#id_reason", "Recorded a personal call by mistake")
    page.click("input[name=confirm]")
    page.wait_for_selector(".messagelist")
    messages = page.locator(".messagelist").inner_text()
    assert "1 recording(s) hidden" in messages
    assert f"{held.sid} is under legal hold CASE-55" in messages
    assert "deleted (media purge pending)" in page.locator("#result_list").inner_text()
    snap(page, "delete-2-done")

    page.click(f"#result_list >> text={doomed.sid}")
    page.wait_for_selector("#deletion-banner")
    banner = page.locator("#deletion-banner").inner_text()
    assert "by admin:officer" in banner
    assert "Recorded a personal call by mistake" in banner
    assert "deleted for good on" in banner
    snap(page, "delete-3-banner")
    assert AccessLog.objects.filter(
        action="retention_delete", outcome="denied", recording_sid=held.sid
    ).exists()
