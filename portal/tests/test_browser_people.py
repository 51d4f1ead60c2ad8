"""The officer's journey "what did user Y open this week", in real headless Chromium: find a
person by e-mail in the access log (Flex holds only the encoded identity), see their name
beside it, open their page with a date range. Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.services import access_log_append
from portal.tests.test_browser_admin import log_in, officer, snap  # noqa: F401  (fixture)
from recordings.models import FlexWorker, Recording, RecordingStatus, SyncState

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SAM = "sam_40example_2Ecom"


@pytest.fixture
def sams_week() -> Recording:
    """Sam in the worker directory, a recording Sam opened, and other people's rows."""
    FlexWorker.objects.create(
        sid="WK" + "5" * 32,
        workspace_sid="WS" + "0" * 32,
        friendly_name=SAM,
        full_name="Sam Taylor",
        email="sam@example.com",
        team_name="Blue",
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
    )
    for identity, outcome in (
        (SAM, "allowed"),
        ("alex_40example_2Ecom", "allowed"),
        ("bob", "denied"),
    ):
        access_log_append(
            action="url_provider",
            outcome=outcome,
            reason_code="allowed_by_rule" if outcome == "allowed" else "no_matching_rule",
            identity=identity,
            roles=["agent"],
            recording_sid=recording.sid,
            client_ip="192.0.2.7",
        )
    return recording


def test_find_a_person_by_email(live_server, page, officer, sams_week):  # noqa: F811
    log_in(page, live_server, officer)
    page.click("#compliance-tools >> text=Access log")
    page.fill("#searchbar", "sam@example.com")
    page.press("#searchbar", "Enter")
    page.wait_for_selector("#result_list")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    text = rows.first.inner_text()
    assert SAM in text
    assert "Sam Taylor <sam@example.com>" in text
    assert "a rule allows it" in text
    assert " UTC" in text
    # The time's tooltip is the viewer's local time.
    assert (
        page.locator("#result_list time.portal-time")
        .first.get_attribute("title")
        .startswith("Your time: ")
    )
    snap(page, "people-1-log-by-email")

    # A mistyped date keeps the search and says what is wrong next to the field.
    page.fill("input[name=since]", "yesterday")
    page.press("input[name=since]", "Enter")
    page.wait_for_selector("#since-error")
    assert "sam%40example.com" in page.url or "sam@example.com" in page.url
    assert page.locator("#result_list tbody tr").count() == 1
    snap(page, "people-2-bad-date-kept-filters")

    page.click(f"#result_list >> text={SAM}")
    page.wait_for_selector("#opened")
    page.fill("#id_since", str((timezone.now() - timedelta(days=7)).date()))
    page.click("input[value=Show]")
    page.wait_for_selector("#identity-summary")
    assert "1 recording opened" in page.locator("#identity-summary").inner_text()
    assert "Sam Taylor" in page.locator("#people").inner_text()
    assert sams_week.sid in page.locator("#opened").inner_text()
    snap(page, "people-3-identity-page")
