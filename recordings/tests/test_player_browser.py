"""The player journey in real headless Chromium: a page on another origin asks url_provider
with the Flex token, plays the link to its end, seeks, and a denied user sees the 403."""

from __future__ import annotations

import pytest

from audit.models import AccessLog
from recordings.tests.playback_fixtures import allow_supervisors, flex_token, local_recording

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def player(live_server, settings, fake_twilio, page):
    """The demo player served from the live server's ``localhost`` origin, talking to the
    portal on its ``127.0.0.1`` origin: two origins, so the browser enforces CORS."""
    player_origin = live_server.url  # http://localhost:PORT
    portal_origin = player_origin.replace("localhost", "127.0.0.1")
    settings.DEMO_PLAYER_ENABLED = True
    settings.CORS_ALLOWED_ORIGINS = [player_origin]

    def open_player(token: str, recording_sid: str):
        page.goto(f"{player_origin}/demo/player?portal={portal_origin}")
        page.fill("#token", token)
        page.fill("#recording", recording_sid)
        page.click("#play")
        return page

    return open_player


def wait_for_state(page, state: str, timeout: float = 20_000) -> str:
    page.wait_for_selector(f'#status[data-state="{state}"]', timeout=timeout)
    return page.inner_text("#status")


def test_allowed_user_plays_to_the_end_and_can_seek(player, fake_twilio):
    allow_supervisors()
    recording, _ = local_recording(seconds=3)
    page = player(flex_token(fake_twilio), recording.sid)

    assert wait_for_state(page, "ended") == "Played to the end."
    duration = page.evaluate("document.getElementById('audio').duration")
    assert duration == pytest.approx(3, abs=0.1)
    assert page.evaluate("document.getElementById('audio').currentTime") == pytest.approx(
        duration, abs=0.1
    )

    # Playing an ended element restarts it from 0, which itself fires "seeked" (to 0.00 s):
    # wait for the seek to the middle, not for the first "seeked" of either.
    page.evaluate("document.getElementById('audio').play()")
    page.click("#seek")
    page.wait_for_function(
        "document.getElementById('status').textContent.startsWith('Seeked to 1.')",
        timeout=20_000,
    )
    assert page.evaluate("document.getElementById('audio').currentTime") >= duration / 2 - 0.05
    assert wait_for_state(page, "ended") == "Played to the end."

    allowed = AccessLog.objects.filter(action="url_provider", outcome="allowed")
    assert allowed.count() == 1
    fetches = AccessLog.objects.filter(action="media_fetch", outcome="allowed")
    assert fetches.count() == 1  # the whole playback, seeking included, is one row


def test_denied_user_sees_the_403(player, fake_twilio):
    allow_supervisors()
    recording, _ = local_recording(seconds=1)
    page = player(flex_token(fake_twilio, identity="bob", roles=("agent",)), recording.sid)
    assert wait_for_state(page, "error").startswith("403 forbidden")
    row = AccessLog.objects.get()
    assert (row.identity, row.outcome, row.reason_code) == ("bob", "denied", "no_matching_rule")


def test_other_origins_are_refused_by_the_browser(player, fake_twilio, settings):
    allow_supervisors()
    recording, _ = local_recording(seconds=1)
    settings.CORS_ALLOWED_ORIGINS = ["https://flex.twilio.com"]  # not the player's origin
    page = player(flex_token(fake_twilio), recording.sid)
    assert "unreachable" in wait_for_state(page, "error")  # CORS: the browser hides the answer
