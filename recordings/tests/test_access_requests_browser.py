"""Restricted recordings and access requests in real headless Chromium: an officer restricts a
recording from the admin's list (with a reason) and sees its marker; the player is refused; the
Flex user asks for access on the portal's page; a second compliance manager approves it in the
admin; the player plays; the grant expires and the player is refused again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from audit.models import AccessGrant, AccessLog, GrantStatus
from recordings.tests.playback_fixtures import allow_supervisors, flex_token, local_recording

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "manager-password-for-tests"


def manager(name: str) -> User:
    user = User.objects.create_user(name, password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name="compliance manager"))
    return user


def log_in(page, live_server, name: str) -> None:
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", name)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#content")


def play(page, live_server, token: str, sid: str, state: str) -> str:
    player_origin = live_server.url
    portal_origin = player_origin.replace("localhost", "127.0.0.1")
    page.goto(f"{player_origin}/demo/player?portal={portal_origin}")
    page.fill("#token", token)
    page.fill("#recording", sid)
    page.click("#play")
    page.wait_for_selector(f'#status[data-state="{state}"]', timeout=20_000)
    return page.inner_text("#status")


def choose_action(page, action: str, note: str = "") -> None:
    page.select_option("select[name=action]", action)
    if note:
        page.fill("input[name=note]", note)
    page.click("button[name=index]")


def test_restrict_refuse_request_approve_by_another_play_and_expire(
    live_server, settings, fake_twilio, browser, page
):
    settings.ADMIN_REQUIRE_OTP = False
    settings.DEMO_PLAYER_ENABLED = True
    settings.CORS_ALLOWED_ORIGINS = [live_server.url]
    allow_supervisors()
    recording, _ = local_recording(seconds=1)
    token = flex_token(fake_twilio, identity="alice")
    manager("first_manager")
    manager("second_manager")

    # The first manager restricts the recording from a search of the list, with a reason.
    log_in(page, live_server, "first_manager")
    page.goto(f"{live_server.url}/admin/recordings/recording/?q={recording.sid}")
    page.check("input[name=_selected_action]")
    choose_action(page, "restrict_recordings")
    page.fill("#id_reason", "Caller declined QA use")
    page.click("#restriction-apply")
    page.wait_for_selector(".messagelist")
    page.goto(f"{live_server.url}/admin/recordings/recording/{recording.pk}/change/")
    banner = page.inner_text("#restricted-banner")
    assert "Restricted" in banner
    assert "Caller declined QA use" in banner

    # The player is refused, although a general rule allows supervisors.
    player = browser.new_page()
    assert play(player, live_server, token, recording.sid, "error").startswith("403")

    # The Flex user asks for access on the portal's page.
    player.goto(f"{live_server.url}/access-requests/?recording_sid={recording.sid}")
    player.fill("#token", token)
    player.fill("#reason", "Complaint #42: listen to the call")
    player.fill("#duration_hours", "1")
    player.click("#ask")
    filed = player.inner_text("#filed")
    assert "waits for a compliance manager" in filed
    grant = AccessGrant.objects.get()

    # The second manager (not the requester) approves it in the admin.
    approver = browser.new_page()
    log_in(approver, live_server, "second_manager")
    approver.goto(f"{live_server.url}/admin/audit/accessgrant/")
    approver.check(f"input[name=_selected_action][value='{grant.pk}']")
    choose_action(approver, "approve_requests", "ok for the complaint")
    assert "1 approved" in approver.inner_text(".messagelist")
    grant.refresh_from_db()
    assert grant.status == GrantStatus.APPROVED

    # The player plays under the grant.
    assert play(player, live_server, token, recording.sid, "ended") == "Played to the end."
    use = AccessLog.objects.filter(action="url_provider").latest("sequence")
    assert use.reason_code == "allowed_by_grant"
    assert use.detail["grant"]["approver"] == "second_manager"

    # The grant expires on its own: refused again.
    AccessGrant.objects.filter(pk=grant.pk).update(
        valid_until=timezone.now() - timedelta(seconds=1)
    )
    assert play(player, live_server, token, recording.sid, "error").startswith("403")
    steps = list(
        AccessLog.objects.filter(action="access_request")
        .order_by("sequence")
        .values_list("reason_code", flat=True)
    )
    assert steps == ["grant_requested", "grant_approved"]
