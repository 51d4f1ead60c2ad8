"""Periodic access reviews in the admin (issue 15, item 6), through the test client: the list
with its overdue marker, the review page's sections, sign-off and reassignment with their
refusals, the CSV, PDF and JSON exports (each audited), permissions, the dashboard's alert for
overdue and unassigned reviews, and pinned query counts."""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from audit import reviews
from audit.models import AccessLog, AccessReview, ReviewState
from audit.reviews import ReviewPeriod, review_period
from audit.services import access_log_append
from audit.tests.test_admin_reports import pdf_text
from recordings.models import FlexWorker

pytestmark = [pytest.mark.django_db, pytest.mark.urls("audit.tests.urls")]

LIST = "admin:audit_accessreview_changelist"
SAM = "sam_40example_2Ecom"


def page_url(review: AccessReview) -> str:
    return reverse("admin:audit_accessreview_change", args=[review.pk])


def sign_url(review: AccessReview) -> str:
    return reverse("admin:audit_accessreview_sign_off", args=[review.pk])


def export_url(review: AccessReview, fmt: str) -> str:
    return reverse("admin:audit_accessreview_export", args=[review.pk, fmt])


@pytest.fixture
def reviewed(staff_client):
    """A review of the current week assigned to Ann (a compliance manager), with Sam (Team
    Blue) having played one recording and been denied another; Bea is another manager."""
    ann = staff_client("compliance manager", "ann")
    bea = staff_client("compliance manager", "bea")
    FlexWorker.objects.create(
        sid="WK" + "5" * 32,
        workspace_sid="WS" + "0" * 32,
        friendly_name=SAM,
        full_name="Sam Taylor",
        email="sam@example.com",
        team_name="Blue",
    )
    for outcome, reason in (("allowed", "allowed_by_rule"), ("denied", "no_matching_rule")):
        access_log_append(
            action="url_provider",
            outcome=outcome,
            reason_code=reason,
            identity=SAM,
            recording_sid="RE" + "1" * 32,
        )
    period = review_period(schedule="weekly", now=timezone.now() + timedelta(days=7))
    review, _ = reviews.access_review_build(period=period, now=timezone.now())
    assert review.reviewer == ann.user
    return review, ann, bea


def test_the_review_page_shows_every_section_and_is_logged(reviewed):
    review, ann, _ = reviewed
    page = ann.get(page_url(review))
    assert page.status_code == 200
    text = page.content.decode()
    for section in (
        "review-people",
        "review-teams",
        "review-denials",
        "review-restricted",
        "review-alerts",
        "review-sealing",
        "review-staff",
        "sign-off-form",
        "reassign-form",
    ):
        assert f'id="{section}"' in text
    assert "Sam Taylor &lt;sam@example.com&gt;" in text
    assert "no rule allows it" in text
    assert review.report_sha256 in text
    assert "matches the stored report" in text
    row = AccessLog.objects.filter(reason_code="review_page").get()
    assert (row.action, row.identity, row.detail) == (
        "admin_view",
        "admin:ann",
        {"review_id": review.pk},
    )


def test_the_assigned_reviewer_signs_off_in_the_admin(reviewed):
    review, ann, _ = reviewed
    answer = ann.post(
        sign_url(review),
        {"findings": "exceptions_noted", "comments": "Sam's denial was a wrong team; fixed."},
    )
    assert answer.status_code == 302
    review.refresh_from_db()
    assert review.state == ReviewState.SIGNED_OFF
    assert review.signed_off_by == ann.user
    page = ann.get(page_url(review)).content.decode()
    assert "Sam&#x27;s denial was a wrong team; fixed." in page
    assert 'id="sign-off-form"' not in page
    assert 'id="reassign-form"' not in page
    # Read-only for everyone: no change, add or delete permission in the admin.
    model_admin = __import__("django.contrib.admin", fromlist=["site"]).site._registry[AccessReview]
    request = type("R", (), {"user": ann.user})()
    assert not model_admin.has_change_permission(request, review)
    assert not model_admin.has_delete_permission(request, review)
    assert not model_admin.has_add_permission(request)
    # The PDF carries the sign-off, the report's sections and its own access-log row.
    words = pdf_text(ann.get(export_url(review, "pdf")).content)
    exported = AccessLog.objects.get(reason_code="review_exported")
    for text in (
        "Access review: week of",
        "Signed off by: ann",
        "Sam's denial was a wrong team; fixed.",
        review.report_sha256,
        "Sam Taylor",
        "sam_40example_2Ecom Blue 1 1 1 1 x no rule allows it",
        f"access-log row {exported.sequence}",
    ):
        assert text in words, text
    # A second sign-off is refused and changes nothing.
    again = ann.post(sign_url(review), {"findings": "no_exceptions", "comments": "again"})
    assert again.status_code == 400
    review.refresh_from_db()
    assert review.findings == "exceptions_noted"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"findings": "no_exceptions", "comments": "   "}, "This field is required."),
        ({"comments": "fine"}, "This field is required."),
        ({"findings": "whatever", "comments": "fine"}, "Select a valid choice."),
    ],
)
def test_a_sign_off_without_comments_or_findings_is_refused(reviewed, data, error):
    review, ann, _ = reviewed
    answer = ann.post(sign_url(review), data)
    assert answer.status_code == 400
    assert error in answer.content.decode()
    assert AccessReview.objects.get().state == ReviewState.OPEN
    assert not AccessLog.objects.filter(reason_code="review_signed_off").exists()


def test_someone_else_cannot_sign_off(reviewed, staff_client):
    review, _, bea = reviewed
    page = bea.get(page_url(review)).content.decode()
    assert 'id="sign-off-form"' not in page
    assert "assigned to ann" in page
    answer = bea.post(sign_url(review), {"findings": "no_exceptions", "comments": "mine"})
    assert answer.status_code == 400
    assert "assigned to ann" in answer.content.decode()
    viewer = staff_client("compliance viewer", "vic")
    answer = viewer.post(sign_url(review), {"findings": "no_exceptions", "comments": "mine"})
    assert answer.status_code == 400
    assert AccessReview.objects.get().state == ReviewState.OPEN
    assert bea.get(sign_url(review)).status_code == 405


def test_a_manager_reassigns_and_a_viewer_may_not(reviewed, staff_client):
    review, ann, bea = reviewed
    viewer = staff_client("compliance viewer", "vic")
    assert 'id="reassign-form"' not in viewer.get(page_url(review)).content.decode()
    url = reverse("admin:audit_accessreview_reassign", args=[review.pk])
    assert viewer.post(url, {"reviewer": bea.user.pk}).status_code == 403
    bad = ann.post(url, {"reviewer": viewer.user.pk})
    assert bad.status_code == 400  # not a reviewer: not among the choices
    assert ann.post(url, {"reviewer": bea.user.pk}).status_code == 302
    assert AccessReview.objects.get().reviewer == bea.user
    assert (
        AccessLog.objects.get(reason_code="review_reassigned").detail["previous_reviewer"] == "ann"
    )


def test_the_exports_are_audited_and_the_json_matches_its_hash(reviewed):
    review, ann, _ = reviewed
    snapshot = ann.get(export_url(review, "json"))
    assert snapshot.status_code == 200
    assert hashlib.sha256(snapshot.content).hexdigest() == review.report_sha256
    assert snapshot["X-Report-SHA256"] == review.report_sha256
    assert "no-store" in snapshot["Cache-Control"]

    table = ann.get(export_url(review, "csv"))
    lines = list(csv.reader(io.StringIO(b"".join(table.streaming_content).decode())))
    assert lines[0][0] == "section"
    sections = {line[0] for line in lines[1:]}
    assert {"review", "totals", "person", "team", "denial", "sealing", "alert"} <= sections
    person = next(line for line in lines if line[0] == "person")
    assert person[1:4] == [SAM, "Sam Taylor <sam@example.com>", "Blue"]
    facts = {line[1]: line[-1] for line in lines if line[0] == "review"}
    assert facts["report_sha256"] == review.report_sha256
    assert facts["reviewer"] == "ann"

    pdf = ann.get(export_url(review, "pdf"))
    assert pdf.content.startswith(b"%PDF-")
    assert 'filename="access-review-' in pdf["Content-Disposition"]

    rows = AccessLog.objects.filter(reason_code="review_exported").order_by("sequence")
    assert [(row.action, row.detail["format"]) for row in rows] == [
        ("access_review", "json"),
        ("access_review", "csv"),
        ("access_review", "pdf"),
    ]
    assert ann.get(export_url(review, "xlsx")).status_code == 404


def test_a_formula_in_a_name_is_not_run_by_a_spreadsheet(reviewed):
    review, ann, _ = reviewed
    person = {**review.report["by_person"][0], "label": "=HYPERLINK(1)"}
    AccessReview.objects.filter(pk=review.pk).update(
        report={**review.report, "by_person": [person]}
    )
    text = b"".join(ann.get(export_url(review, "csv")).streaming_content).decode()
    assert '"\'=HYPERLINK(1)"' in text


def test_permissions(reviewed, staff_client):
    review, _, _ = reviewed
    nobody = staff_client(None, "nobody")
    assert nobody.get(reverse(LIST)).status_code == 403
    assert nobody.get(page_url(review)).status_code == 403
    assert nobody.get(export_url(review, "json")).status_code == 403
    viewer = staff_client("compliance viewer", "vic")
    assert viewer.get(reverse(LIST)).status_code == 200
    assert viewer.get(page_url(review)).status_code == 200
    assert viewer.get(export_url(review, "pdf")).status_code == 200
    assert viewer.get(reverse("admin:audit_accessreview_change", args=[99999])).status_code == 404
    assert viewer.get(reverse("admin:audit_accessreview_add")).status_code == 403


def test_the_list_marks_overdue_reviews_and_is_logged(reviewed):
    _, ann, _ = reviewed
    start = datetime(2026, 1, 5, tzinfo=UTC)
    reviews.access_review_build(
        period=ReviewPeriod("weekly", start, start + timedelta(weeks=1)), now=timezone.now()
    )
    page = ann.get(reverse(LIST))
    assert page.status_code == 200
    text = page.content.decode()
    assert text.count("review-overdue") == 1
    assert "week of 2026-01-05" in text
    assert AccessLog.objects.filter(reason_code="review_list", identity="admin:ann").exists()


def test_the_dashboard_alerts_overdue_and_unassigned_reviews(staff_client):
    viewer = staff_client("compliance viewer", "vic")
    start = datetime(2026, 1, 5, tzinfo=UTC)
    overdue, _ = reviews.access_review_build(
        period=ReviewPeriod("weekly", start, start + timedelta(weeks=1)), now=timezone.now()
    )
    period = review_period(schedule="weekly", now=timezone.now() + timedelta(days=7))
    pending, _ = reviews.access_review_build(period=period, now=timezone.now())
    text = viewer.get(reverse("admin:audit_accesslog_dashboard")).content.decode()
    assert 'id="access-review-alerts"' in text
    assert "Access review overdue: week of 2026-01-05" in text
    assert "Access review unassigned" in text
    assert page_url(overdue) in text
    assert page_url(pending) in text

    manager = staff_client("compliance manager", "ann")
    reviews.access_review_sign_off(
        review=overdue,
        user=manager.user,
        comments="late, examined",
        findings="no_exceptions",
        now=timezone.now(),
    )
    text = viewer.get(reverse("admin:audit_accesslog_dashboard")).content.decode()
    assert "Access review overdue" not in text


def test_the_index_links_the_reviews(staff_client):
    viewer = staff_client("compliance viewer", "vic")
    assert reverse(LIST) in viewer.get(reverse("admin:index")).content.decode()
    assert (
        Group.objects.get(name="compliance viewer")
        .permissions.filter(codename="view_accessreview")
        .exists()
    )


def test_query_counts_are_pinned(reviewed, django_assert_num_queries):
    review, ann, _ = reviewed
    for week in range(1, 6):
        start = review.period_start - timedelta(weeks=week)
        reviews.access_review_build(
            period=ReviewPeriod("weekly", start, start + timedelta(weeks=1)), now=timezone.now()
        )
    with django_assert_num_queries(LIST_QUERIES):
        assert ann.get(reverse(LIST)).status_code == 200
    with django_assert_num_queries(PAGE_QUERIES):
        assert ann.get(page_url(review)).status_code == 200


# Session, user, two permission lookups, the access-log row (two), the count, the page of
# reviews with their reviewers, the schedule filter's choices, the session's save (three).
LIST_QUERIES = 12
# Session, user, permissions (two), the review with its people, the access-log row (two), the
# reviewers a review can be reassigned to (two: who holds the permission, then the choices).
PAGE_QUERIES = 9


def test_a_reviewer_whose_own_activity_is_in_the_report_is_warned(reviewed):
    review, ann, _ = reviewed
    assert 'id="own-activity"' not in ann.get(page_url(review)).content.decode()
    ann.user.email = "Sam@Example.com"  # Flex writes sam@example.com as sam_40example_2Ecom
    ann.user.save()
    assert 'id="own-activity"' in ann.get(page_url(review)).content.decode()
    # A warning, not a refusal: the form is still there.
    assert 'id="sign-off-form"' in ann.get(page_url(review)).content.decode()
