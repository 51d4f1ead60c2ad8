"""Restriction rules in real headless Chromium: a compliance manager finds "Restriction rules"
on the admin's index, defines a rule on an account, previews what it would restrict among the
recordings already there, applies it, sees the restricted marker on the recording's page, and
the player is refused although a general rule allows supervisors. The page's last view is
saved to ``test-artifacts/`` like every browser test's."""

from __future__ import annotations

import pytest

from audit.models import AccessLog
from recordings.models import Recording
from recordings.tests.playback_fixtures import allow_supervisors, flex_token, local_recording
from recordings.tests.test_access_requests_browser import log_in, manager, play

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HR_ACCOUNT = "AC" + "c" * 32


def test_define_preview_apply_a_rule_see_the_marker_and_a_refused_play(
    live_server, settings, fake_twilio, browser, page
):
    settings.ADMIN_REQUIRE_OTP = False
    settings.DEMO_PLAYER_ENABLED = True
    settings.CORS_ALLOWED_ORIGINS = [live_server.url]
    allow_supervisors()
    hr_calls = [local_recording(seconds=1, account_sid=HR_ACCOUNT)[0] for _ in range(2)]
    other, _ = local_recording(seconds=1)
    token = flex_token(fake_twilio, identity="alice")
    manager("officer")

    # The index leads to the rules; the officer defines one on the HR account.
    log_in(page, live_server, "officer")
    page.click("#restriction-rules-link a")
    page.click("a.addlink")
    page.fill("#id_name", "hr-account")
    page.fill("#id_reason", "HR matter: the HR hotline's account")
    page.fill("#id_account_sids", f'["{HR_ACCOUNT}"]')
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist")

    # Preview: the two HR recordings, not the other one; then apply.
    page.click("a.restriction-rule-apply")
    assert "2 existing recordings would be restricted now" in page.inner_text(
        "#restriction-rule-count"
    )
    sample = page.inner_text("#restriction-rule-sample")
    assert all(recording.sid in sample for recording in hr_calls)
    assert other.sid not in sample
    page.click("#restriction-rule-apply")
    assert "2 recordings restricted by rule" in page.inner_text(".messagelist")
    restricted = set(
        Recording.objects.filter(restricted_at__isnull=False).values_list("sid", flat=True)
    )
    assert restricted == {recording.sid for recording in hr_calls}

    # The marker on the recording's page.
    page.goto(f"{live_server.url}/admin/recordings/recording/{hr_calls[0].pk}/change/")
    banner = page.inner_text("#restricted-banner")
    assert "Restricted" in banner
    assert "HR matter: the HR hotline's account" in banner
    assert "rule hr-account" in banner

    # The player is refused the restricted recording, and still plays the other one.
    player = browser.new_page()
    assert play(player, live_server, token, hr_calls[0].sid, "error").startswith("403")
    assert play(player, live_server, token, other.sid, "ended") == "Played to the end."
    player.close()
    refused = AccessLog.objects.filter(action="url_provider", recording_sid=hr_calls[0].sid).get()
    assert (refused.reason_code, refused.detail["restricted"]) == ("restricted_no_grant", True)
    assert AccessLog.objects.filter(reason_code="restricted_by_rule").count() == 2
