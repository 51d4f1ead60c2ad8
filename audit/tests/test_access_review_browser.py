"""The officer's journey "complete an access review" (issue 15, item 6) in real headless
Chromium: the dashboard raises the overdue review, the officer opens it from there, reads the
period's report (people and teams, denials, restricted-recording activity, alerts, sealing),
signs it off with findings and comments, sees it signed and read-only, downloads the PDF and
the JSON snapshot (whose SHA-256 is the one the page shows), and the dashboard's alert is gone.
Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from audit import reviews
from audit.models import AccessLog, AccessReview, ReviewState
from audit.services import access_log_append
from portal.tests.test_browser_admin import ARTIFACTS, log_in, officer, snap  # noqa: F401  (fixture)
from recordings.models import FlexWorker

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SAM = "sam_40example_2Ecom"
SAM_SID = "WK" + "5" * 32


@pytest.fixture
def overdue_review(officer) -> AccessReview:  # noqa: F811
    """This week's review, assigned to the officer (a compliance manager), due yesterday:
    Sam (Team Blue) played a recording, was denied one, and tried a restricted one."""
    officer.user.groups.add(Group.objects.get(name="compliance manager"))
    FlexWorker.objects.create(
        sid=SAM_SID,
        workspace_sid="WS" + "0" * 32,
        friendly_name=SAM,
        full_name="Sam Taylor",
        email="sam@example.com",
        team_name="Blue",
    )
    common = {"action": "url_provider", "identity": SAM, "worker_sid": SAM_SID}
    access_log_append(
        outcome="allowed", reason_code="allowed_by_rule", recording_sid="RE" + "1" * 32, **common
    )
    access_log_append(
        outcome="denied", reason_code="no_matching_rule", recording_sid="RE" + "2" * 32, **common
    )
    access_log_append(
        outcome="denied",
        reason_code="restricted_no_grant",
        recording_sid="RE" + "3" * 32,
        detail={"restricted": True},
        **common,
    )
    period = reviews.review_period(schedule="weekly", now=timezone.now() + timedelta(days=7))
    review, _ = reviews.access_review_build(period=period, now=timezone.now())
    assert review.reviewer == officer.user
    # It was due yesterday (an open review may still change; only a signed one may not).
    AccessReview.objects.filter(pk=review.pk).update(due_at=timezone.now() - timedelta(days=1))
    return AccessReview.objects.get(pk=review.pk)


def test_complete_an_access_review(live_server, page, officer, overdue_review):  # noqa: F811
    review = overdue_review
    log_in(page, live_server, officer)
    page.click("#compliance-tools >> text=Access reviews")
    page.wait_for_selector("#result_list")
    assert "OVERDUE" in page.locator("#result_list").inner_text()
    snap(page, "review-1-list")

    page.goto(f"{live_server.url}/admin/")
    page.click("#compliance-tools >> text=Dashboard")
    page.wait_for_selector("#access-review-alerts")
    alert = page.locator("#access-review-alerts").inner_text()
    assert "Access review overdue" in alert
    assert "assigned to officer" in alert
    snap(page, "review-2-dashboard-alert")

    page.click("#access-review-alerts >> text=Open the review")
    page.wait_for_selector("#review-people")
    assert "OVERDUE" in page.locator("#review-state-text").inner_text()
    people = page.locator("#review-people").inner_text()
    assert "Sam Taylor <sam@example.com>" in people
    assert "1 x no rule allows it" in people
    assert "Blue" in page.locator("#review-teams").inner_text()
    assert "restricted recording, no grant" in page.locator("#review-denials").inner_text()
    restricted = page.locator("#review-restricted").inner_text()
    assert "1 attempt on restricted recordings, 1 refused" in restricted
    assert (
        "Refused attempts on restricted recordings" in page.locator("#review-alerts").inner_text()
    )
    sealing = page.locator("#review-sealing").inner_text()
    assert "The period's rows: not all sealed" in sealing  # no sealer runs in this test
    shown_hash = page.locator("#review-sha256").inner_text()
    assert shown_hash == review.report_sha256
    assert "matches the stored report" in page.locator("#review-intact").inner_text()
    snap(page, "review-3-report")

    page.check("#sign-off-form input[value=exceptions_noted]")
    page.fill(
        "#id_comments",
        "Sam's restricted attempt was refused as it should be; asked the team lead to remind "
        "the team of the access-request page.",
    )
    snap(page, "review-4-sign-off")
    page.click("#sign-off-submit")
    page.wait_for_selector(".messagelist")
    assert "signed off" in page.locator(".messagelist").inner_text()
    assert "Signed off" in page.locator("#review-state-text").inner_text()
    assert "officer" in page.locator("#review-signed").inner_text()
    assert "exceptions noted" in page.locator("#review-findings").inner_text()
    assert "access-request page" in page.locator("#review-comments").inner_text()
    assert page.locator("#sign-off-form").count() == 0
    assert page.locator("#reassign-form").count() == 0
    snap(page, "review-5-signed")

    with page.expect_download() as download:
        page.click("#review-export-pdf")
    saved = ARTIFACTS / "admin-review-signed.pdf"
    download.value.save_as(saved)
    assert saved.read_bytes().startswith(b"%PDF-")
    with page.expect_download() as download:
        page.click("#review-export-json")
    snapshot = ARTIFACTS / "admin-review-signed.json"
    download.value.save_as(snapshot)
    assert hashlib.sha256(snapshot.read_bytes()).hexdigest() == shown_hash

    page.goto(f"{live_server.url}/admin/audit/accesslog/dashboard/")
    page.wait_for_selector("#alerts")
    assert page.locator("#access-review-alerts").count() == 0
    snap(page, "review-6-dashboard-clear")

    stored = AccessReview.objects.get(pk=review.pk)
    assert stored.state == ReviewState.SIGNED_OFF
    assert stored.findings == "exceptions_noted"
    steps = list(
        AccessLog.objects.filter(action="access_review")
        .order_by("sequence")
        .values_list("reason_code", flat=True)
    )
    assert steps == ["review_opened", "review_signed_off", "review_exported", "review_exported"]
    assert AccessLog.objects.filter(reason_code="review_page", identity="admin:officer").exists()
