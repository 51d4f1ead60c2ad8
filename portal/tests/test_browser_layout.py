"""The access log fits a 1280 px screen: every column (the rule and the client IP at the right
end included) is inside the window and no recording SID is cut. Screenshot in
``test-artifacts/``."""

from __future__ import annotations

import secrets

import pytest

from audit.services import access_log_append
from portal.tests.test_browser_admin import log_in, officer, snap  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def busy_log() -> None:
    """Rows with long values in every column: Flex identities, SIDs, rules, IPv6 addresses."""
    for n in range(8):
        access_log_append(
            action="url_provider",
            outcome="denied" if n % 3 == 0 else "allowed",
            reason_code="no_matching_rule" if n % 3 == 0 else "allowed_by_rule",
            identity=f"quality.manager.{n}_40contact-centre.example.com",
            roles=["supervisor", "wfo.quality_manager"],
            recording_sid="RE" + secrets.token_hex(16),
            rule_name="" if n % 3 == 0 else "team-blue-supervisors-and-quality-managers",
            client_ip="2001:db8:85a3::8a2e:370:7334",
        )


@pytest.mark.parametrize("width", [1280, 1440])
def test_the_log_list_fits_the_window(live_server, page, officer, busy_log, width):  # noqa: F811
    page.set_viewport_size({"width": width, "height": 800})
    log_in(page, live_server, officer)
    page.goto(f"{live_server.url}/admin/audit/accesslog/?activity=all")
    page.wait_for_selector("#result_list")
    snap(page, f"log-list-{width}")
    layout = page.evaluate(
        """() => {
          const right = (el) => el.getBoundingClientRect().right;
          const heads = [...document.querySelectorAll('#result_list thead th')];
          const cells = [...document.querySelectorAll(
            '#result_list tbody td, #result_list tbody th')];
          const sids = [...document.querySelectorAll('#result_list tbody td.field-recording_link')];
          const box = document.querySelector('#result_list').parentElement;
          return {
            viewport: Math.min(document.documentElement.clientWidth, right(box)),
            boxScroll: box.scrollWidth - box.clientWidth,
            widths: heads.map((h) => [h.className, h.getBoundingClientRect().width]),
            pageScroll: document.documentElement.scrollWidth,
            headers: heads.map((h) => [h.innerText.trim(), right(h)]),
            widest: Math.max(...cells.map(right)),
            cutSids: sids.filter((c) => c.scrollWidth > c.clientWidth + 1).length,
            sidTexts: sids.map((c) => c.innerText.trim()),
          };
        }"""
    )
    names = [name.lower() for name, _ in layout["headers"]]
    assert any("rule" in name for name in names), names
    assert any("ip" in name for name in names), names
    for name, right in layout["headers"]:
        assert right <= layout["viewport"], (name, right, layout["viewport"], layout["widths"])
    assert layout["widest"] <= layout["viewport"]
    assert layout["pageScroll"] <= page.viewport_size["width"]
    assert layout["boxScroll"] <= 0, layout["widths"]
    assert layout["cutSids"] == 0
    sids = [text for text in layout["sidTexts"] if text.startswith("RE")]
    assert len(sids) == 8
    assert all(len(text) == 34 for text in sids), sids


def test_the_recordings_list_fits_1280(live_server, page, officer):  # noqa: F811
    from django.utils import timezone

    from recordings.models import Recording, RecordingStatus, SyncState

    for _ in range(5):
        Recording.objects.create(
            sid="RE" + secrets.token_hex(16),
            account_sid="AC" + secrets.token_hex(16),
            call_sid="CA" + secrets.token_hex(16),
            status=RecordingStatus.COMPLETED,
            source="OutboundAPI",
            start_time=timezone.now(),
            sync_state=SyncState.SYNCED,
        )
    page.set_viewport_size({"width": 1280, "height": 800})
    log_in(page, live_server, officer)
    page.goto(f"{live_server.url}/admin/recordings/recording/")
    page.wait_for_selector("#result_list")
    snap(page, "recordings-list-1280")
    layout = page.evaluate(
        """() => {
          const box = document.querySelector('#result_list').parentElement;
          const cut = [...document.querySelectorAll(
            '#result_list tbody .field-sid, #result_list tbody .field-account_sid')]
            .filter((c) => c.scrollWidth > c.clientWidth + 1).length;
          return {overflow: box.scrollWidth - box.clientWidth, cut: cut,
                  page: document.documentElement.scrollWidth};
        }"""
    )
    assert layout["overflow"] <= 0, layout
    assert layout["cut"] == 0
    assert layout["page"] <= 1280
