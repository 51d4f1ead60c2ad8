"""The recording page's player in real headless Chromium: the waveform is drawn per channel
with the speech band, a click seeks the audio, and opening it is audited. The screenshot goes
to ``test-artifacts/`` with the other browser tests'."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User

from audit.models import AccessLog
from recordings.analysis import service
from recordings.tests.analysis_fixtures import conversation_wav
from recordings.tests.test_analysis import stored_locally

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "officer-password-for-tests"


@pytest.fixture
def signed_in(live_server, page, settings):
    settings.ADMIN_REQUIRE_OTP = False
    User.objects.create_user("officer", password=PASSWORD, is_staff=True, is_superuser=True)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "officer")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#content")
    return page


def test_the_admin_player_draws_the_waveform_and_a_click_seeks(live_server, signed_in):
    page = signed_in
    recording = stored_locally(conversation_wav())
    assert service.recording_analyse(recording_id=recording.pk).code == "done"

    page.goto(f"{live_server.url}/admin/recordings/recording/{recording.pk}/change/")
    page.wait_for_selector('#waveform-canvas[data-drawn="1200"]')
    page.wait_for_function("document.getElementById('waveform-audio').readyState >= 1")
    # Pixels were painted: the customer's lane (top) is green where the customer speaks, the
    # agent's lane blue where the agent speaks, and the band below carries all four colours.
    painted = page.evaluate(
        """() => {
          const c = document.getElementById('waveform-canvas');
          const ctx = c.getContext('2d');
          const at = (fx, fy) => Array.from(
            ctx.getImageData(Math.floor(c.width * fx), Math.floor(c.height * fy), 1, 1).data);
          return {customer: at(0.25, 0.21), agent: at(0.55, 0.63),
                  band: [0.2, 0.44, 0.6, 0.75].map(f => at(f, 0.97))};
        }"""
    )
    assert painted["customer"][:3] == [0x2E, 0x9E, 0x4F]
    assert painted["agent"][:3] == [0x1F, 0x6F, 0xD1]
    assert [p[:3] for p in painted["band"]] == [
        [0x2E, 0x9E, 0x4F],  # customer at 2.4 s
        [0xD6, 0x31, 0x2B],  # cross-talk at 5.28 s
        [0x1F, 0x6F, 0xD1],  # agent at 7.2 s
        [0xF2, 0x9D, 0x38],  # silence at 9 s
    ]

    box = page.locator("#waveform-canvas").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.75, box["y"] + box["height"] / 2)
    page.wait_for_selector("#waveform-status[data-seeked]")
    seeked = float(page.get_attribute("#waveform-status", "data-seeked"))
    assert seeked == pytest.approx(9.0, abs=0.1)
    assert page.evaluate("document.getElementById('waveform-audio').currentTime") == (
        pytest.approx(9.0, abs=0.1)
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#recording-waveform").screenshot(path=str(ARTIFACTS / "admin-waveform.png"))

    row = AccessLog.objects.get(action="waveform_view")
    assert (row.identity, row.reason_code, row.recording_sid) == (
        "admin:officer",
        "admin_player",
        recording.sid,
    )
    assert row.link_id
