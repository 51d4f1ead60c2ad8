"""Periodic access reviews (issue 15, item 6): the period a review covers (weeks, months and
their boundaries), building (idempotent, the report frozen with its hash, teams from the
worker directory, restricted-recording activity and alerts), round-robin assignment, the
sign-off rules, reassignment, immutability of a signed-off review (Python and the database)
and overdue reviews."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.contrib.auth.models import Group, User
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from audit import reviews
from audit.models import AccessLog, AccessReview, ReviewState, SignedOffReviewError
from audit.reviews import ReviewPeriod, review_period
from audit.services import access_log_append
from audit.tasks import build_access_review
from recordings.models import FlexWorker

pytestmark = pytest.mark.django_db

SAM = "sam_40example_2Ecom"
SAM_SID = "WK" + "5" * 32


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- Periods ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "start", "end"),
    [
        # A Wednesday: the week before the current one, Monday to Monday.
        ("2026-12-02T10:00:00", "2026-11-23", "2026-11-30"),
        # Monday at midnight: the week that just ended.
        ("2026-11-30T00:00:00", "2026-11-23", "2026-11-30"),
        # Sunday just before midnight: the current week has not ended.
        ("2026-11-29T23:59:59", "2026-11-16", "2026-11-23"),
        # Across a year's end.
        ("2027-01-01T12:00:00", "2026-12-21", "2026-12-28"),
    ],
)
def test_a_weekly_period_is_the_last_completed_week(now, start, end):
    period = review_period(schedule="weekly", now=at(now))
    assert (period.start, period.end) == (at(start + "T00:00:00"), at(end + "T00:00:00"))
    assert period.start.weekday() == 0
    assert period.label() == f"week of {start}"


@pytest.mark.parametrize(
    ("now", "start", "end", "label"),
    [
        ("2026-12-02T10:00:00", "2026-11-01", "2026-12-01", "November 2026"),
        ("2026-03-01T00:00:00", "2026-02-01", "2026-03-01", "February 2026"),
        ("2024-03-31T23:59:59", "2024-02-01", "2024-03-01", "February 2024"),  # leap year
        ("2026-01-15T08:00:00", "2025-12-01", "2026-01-01", "December 2025"),
        ("2026-07-31T23:00:00", "2026-06-01", "2026-07-01", "June 2026"),
    ],
)
def test_a_monthly_period_is_the_last_calendar_month(now, start, end, label):
    period = review_period(schedule="monthly", now=at(now))
    assert (period.start, period.end) == (at(start + "T00:00:00"), at(end + "T00:00:00"))
    assert period.label() == label


def test_periods_are_computed_in_utc_whatever_zone_now_is_in():
    # 00:30 on 1 December in UTC+2 is still 30 November in UTC: November is not over.
    now = datetime(2026, 12, 1, 0, 30, tzinfo=dt_timezone(timedelta(hours=2)))
    assert review_period(schedule="monthly", now=now).start == at("2026-10-01T00:00:00")


def test_an_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="unknown review schedule"):
        review_period(schedule="daily", now=timezone.now())


# --- Building --------------------------------------------------------------------------------


def current_week() -> ReviewPeriod:
    """The week holding now (rows are stamped with the real time), as a completed period."""
    return review_period(schedule="weekly", now=timezone.now() + timedelta(days=7))


def manager(username: str, **fields) -> User:
    user = User.objects.create_user(username, is_staff=True, **fields)
    user.groups.add(Group.objects.get(name="compliance manager"))
    return user


@pytest.fixture
def week_activity():
    """Sam (Team Blue) played a recording, was denied another, and tried a restricted one
    (refused); an officer opened the access log."""
    FlexWorker.objects.create(
        sid=SAM_SID,
        workspace_sid="WS" + "0" * 32,
        friendly_name=SAM,
        full_name="Sam Taylor",
        email="sam@example.com",
        team_name="Blue",
    )
    common = {"identity": SAM, "worker_sid": SAM_SID, "action": "url_provider"}
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
    access_log_append(
        action="admin_view", outcome="allowed", reason_code="access_log_list", identity="admin:ann"
    )


def test_building_freezes_the_report_with_its_hash_and_logs_it(week_activity):
    reviewer = manager("ann")
    period = current_week()
    review, created = reviews.access_review_build(period=period, now=timezone.now())
    assert created
    review.refresh_from_db()
    assert review.state == ReviewState.OPEN
    assert review.reviewer == reviewer
    assert review.due_at == period.end + timedelta(days=7)
    report = review.report
    assert (
        reviews.report_sha256(report)
        == review.report_sha256
        == (__import__("hashlib").sha256(reviews.report_canonical(report)).hexdigest())
    )
    assert reviews.review_report_intact(review)
    (sam,) = report["by_person"]
    assert (sam["identity"], sam["label"], sam["team"]) == (
        SAM,
        "Sam Taylor <sam@example.com>",
        "Blue",
    )
    assert (sam["plays"], sam["denials"]) == (1, 2)
    assert [team["team"] for team in report["by_team"]] == ["Blue"]
    assert {row["reason_code"]: row["count"] for row in report["denials"]} == {
        "no_matching_rule": 1,
        "restricted_no_grant": 1,
    }
    restricted = report["restricted"]
    assert (restricted["attempts"], restricted["refused"]) == (1, 1)
    assert restricted["by_person"][0]["identity"] == SAM
    assert [alert["kind"] for alert in report["alerts"]] == ["restricted_refused", "unsealed"]
    assert report["staff"][0]["identity"] == "admin:ann"
    assert report["totals"]["plays"] == 1
    assert report["sealing"]["period_sealed"] is False
    # No floats anywhere: the hash must survive the database's JSON unchanged.
    assert "." not in json.dumps(report["totals"])
    opened = AccessLog.objects.get(action="access_review")
    assert (opened.reason_code, opened.identity) == ("review_opened", "system:schedule")
    assert opened.detail["review_id"] == review.pk
    assert opened.detail["reviewer"] == "ann"
    assert opened.detail["report_sha256"] == review.report_sha256


def test_building_twice_builds_once():
    period = current_week()
    first, created = reviews.access_review_build(period=period, now=timezone.now())
    again, created_again = reviews.access_review_build(period=period, now=timezone.now())
    assert created
    assert not created_again
    assert first.pk == again.pk
    assert AccessReview.objects.count() == 1
    assert AccessLog.objects.filter(reason_code="review_opened").count() == 1


def test_the_daily_task_builds_the_configured_periods_review(settings):
    settings.ACCESS_REVIEW_SCHEDULE = "monthly"
    review_id = build_access_review()
    review = AccessReview.objects.get(pk=review_id)
    assert (review.period_start, review.period_end) == (
        (p := review_period(schedule="monthly", now=timezone.now())).start,
        p.end,
    )
    assert build_access_review() == review_id
    settings.ACCESS_REVIEW_SCHEDULE = "off"
    assert build_access_review() is None
    assert AccessReview.objects.count() == 1


def test_reviews_go_round_robin_to_active_staff_holding_the_permission():
    first, second = manager("ann"), manager("bea")
    manager("old", is_active=False)
    viewer = User.objects.create_user("vic", is_staff=True)
    viewer.groups.add(Group.objects.get(name="compliance viewer"))
    User.objects.create_user("root", is_staff=True, is_superuser=True)
    assert reviews.reviewer_candidates() == [first, second]
    start = at("2026-01-05T00:00:00")
    assigned = []
    for week in range(3):
        period = ReviewPeriod(
            "weekly", start + timedelta(weeks=week), start + timedelta(weeks=week + 1)
        )
        review, _ = reviews.access_review_build(period=period, now=timezone.now())
        assigned.append(review.reviewer.username)
    assert assigned == ["ann", "bea", "ann"]


def test_without_anyone_who_may_review_the_review_is_unassigned():
    review, _ = reviews.access_review_build(period=current_week(), now=timezone.now())
    assert review.reviewer is None
    assert AccessLog.objects.get(reason_code="review_opened").detail["assigned"] is False


# --- Sign-off --------------------------------------------------------------------------------


def signing(review: AccessReview, user: User, **fields) -> AccessReview:
    values = {"comments": "Examined every denial; all expected.", "findings": "no_exceptions"}
    values.update(fields)
    return reviews.access_review_sign_off(review=review, user=user, now=timezone.now(), **values)


@pytest.fixture
def assigned():
    ann, bea = manager("ann"), manager("bea")
    review, _ = reviews.access_review_build(period=current_week(), now=timezone.now())
    assert review.reviewer == ann
    return review, ann, bea


def test_only_the_assigned_reviewer_signs_off(assigned):
    review, ann, bea = assigned
    viewer = User.objects.create_user("vic", is_staff=True)
    viewer.groups.add(Group.objects.get(name="compliance viewer"))
    with pytest.raises(reviews.AccessReviewInvalid, match="assigned to ann"):
        signing(review, bea)
    with pytest.raises(reviews.AccessReviewInvalid, match="permission"):
        signing(review, viewer)
    assert AccessReview.objects.get().state == ReviewState.OPEN

    signed = signing(
        review, ann, comments="  Two denials, both expected.  ", findings="exceptions_noted"
    )
    assert signed.state == ReviewState.SIGNED_OFF
    assert (signed.signed_off_by, signed.comments, signed.findings) == (
        ann,
        "Two denials, both expected.",
        "exceptions_noted",
    )
    row = AccessLog.objects.get(reason_code="review_signed_off")
    assert row.identity == "admin:ann"
    assert row.detail["comments"] == "Two denials, both expected."
    assert row.detail["findings"] == "exceptions_noted"
    assert row.detail["report_sha256"] == review.report_sha256
    with pytest.raises(reviews.AccessReviewInvalid, match="already signed off"):
        signing(review, ann)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"comments": "   "}, "comments"),
        ({"comments": "x" * 5001}, "comments"),
        ({"comments": "a\x00b"}, "comments"),
        ({"findings": "fine"}, "findings"),
        ({"findings": ""}, "findings"),
    ],
)
def test_a_sign_off_needs_comments_and_known_findings(assigned, fields, error):
    review, ann, _ = assigned
    with pytest.raises(reviews.AccessReviewInvalid) as refused:
        signing(review, ann, **fields)
    assert error in refused.value.errors
    assert AccessReview.objects.get().state == ReviewState.OPEN
    assert not AccessLog.objects.filter(reason_code="review_signed_off").exists()


def test_an_unassigned_review_is_signed_by_any_reviewer_who_becomes_its_reviewer():
    review, _ = reviews.access_review_build(period=current_week(), now=timezone.now())
    cat = manager("cat")
    signed = signing(review, cat)
    assert (signed.reviewer, signed.signed_off_by) == (cat, cat)


def test_a_report_changed_after_it_was_built_cannot_be_signed_off(assigned):
    review, ann, _ = assigned
    AccessReview.objects.filter(pk=review.pk).update(report={**review.report, "totals": {}})
    with pytest.raises(reviews.AccessReviewInvalid, match="no longer matches"):
        signing(review, ann)


# --- Immutability ----------------------------------------------------------------------------


def test_a_signed_off_review_never_changes(assigned):
    review, ann, _ = assigned
    signing(review, ann)
    stored = AccessReview.objects.get()
    stored.comments = "rewritten"
    with pytest.raises(SignedOffReviewError):
        stored.save()
    with pytest.raises(SignedOffReviewError):
        stored.delete()
    with pytest.raises(SignedOffReviewError):
        AccessReview.objects.filter(pk=stored.pk).update(comments="rewritten")
    with pytest.raises(SignedOffReviewError):
        AccessReview.objects.all().delete()
    # And the database refuses the application's own user too.
    for statement in (
        "UPDATE audit_accessreview SET comments = 'rewritten'",
        "DELETE FROM audit_accessreview",
    ):
        with (
            pytest.raises(DatabaseError, match="signed off"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement)
    assert AccessReview.objects.get().comments == "Examined every denial; all expected."


def test_an_open_review_can_still_be_reassigned_but_not_once_signed(assigned):
    review, ann, bea = assigned
    cat = User.objects.create_user("cat", is_staff=True)
    cat.groups.add(Group.objects.get(name="compliance viewer"))
    with pytest.raises(reviews.AccessReviewInvalid, match="permission to reassign"):
        reviews.access_review_reassign(review=review, user=cat, reviewer=bea, now=timezone.now())
    with pytest.raises(reviews.AccessReviewInvalid, match="may not review"):
        reviews.access_review_reassign(review=review, user=ann, reviewer=cat, now=timezone.now())
    with pytest.raises(reviews.AccessReviewInvalid, match="already assigned"):
        reviews.access_review_reassign(review=review, user=ann, reviewer=ann, now=timezone.now())
    moved = reviews.access_review_reassign(
        review=review, user=ann, reviewer=bea, now=timezone.now()
    )
    assert moved.reviewer == bea
    row = AccessLog.objects.get(reason_code="review_reassigned")
    assert (row.identity, row.detail["previous_reviewer"], row.detail["reviewer"]) == (
        "admin:ann",
        "ann",
        "bea",
    )
    signing(review, bea)
    with pytest.raises(reviews.AccessReviewInvalid, match="never reassigned"):
        reviews.access_review_reassign(review=review, user=ann, reviewer=ann, now=timezone.now())


# --- Overdue ---------------------------------------------------------------------------------


def test_an_open_review_past_its_due_date_is_overdue_until_signed(assigned):
    review, ann, _ = assigned
    assert not reviews.access_review_overdue(review, now=review.due_at - timedelta(seconds=1))
    assert reviews.access_review_overdue(review, now=review.due_at)
    signed = signing(review, ann)
    assert not reviews.access_review_overdue(signed, now=review.due_at + timedelta(days=30))
    row = AccessLog.objects.get(reason_code="review_signed_off")
    assert row.detail["overdue"] is False


# --- Settings and schedule -------------------------------------------------------------------


def test_beat_builds_reviews_daily_through_a_registered_task(settings):
    from portal.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["build-access-review"]
    assert entry["task"] == "audit.tasks.build_access_review"
    assert entry["task"] in app.tasks
    assert settings.ACCESS_REVIEW_SCHEDULE == "monthly"
    assert settings.ACCESS_REVIEW_DUE_DAYS == 7


@pytest.mark.parametrize(
    ("variable", "value"),
    [("ACCESS_REVIEW_SCHEDULE", "fortnightly"), ("ACCESS_REVIEW_DUE_DAYS", "0")],
)
def test_a_wrong_review_setting_refuses_to_start(variable, value):
    from portal.tests.test_settings import run_manage

    result = run_manage("check", env={"DJANGO_DEBUG": "1", variable: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr


def test_the_command_builds_a_chosen_period_once(settings):
    """``build_access_review`` builds a period the schedule did not (a weekly review while the
    setting says monthly, a month before reviews ran), answers an existing one as it is, and
    refuses a malformed or future date without building anything."""
    from io import StringIO

    from django.core.management import CommandError, call_command

    settings.ACCESS_REVIEW_SCHEDULE = "monthly"
    out = StringIO()
    call_command(
        "build_access_review", "--schedule", "weekly", "--as-of", "2026-11-05", stdout=out
    )
    assert "built: review #" in out.getvalue()
    review = AccessReview.objects.get()
    assert (review.schedule, review.period_start, review.period_end) == (
        "weekly",
        at("2026-10-26T00:00:00Z"),
        at("2026-11-02T00:00:00Z"),
    )
    opened = AccessLog.objects.filter(action="access_review", reason_code="review_opened")
    assert opened.count() == 1

    again = StringIO()
    call_command(
        "build_access_review", "--schedule", "weekly", "--as-of", "2026-11-08", stdout=again
    )
    assert f"already there: review #{review.pk}" in again.getvalue()

    call_command("build_access_review", "--as-of", "2026-11-01", stdout=StringIO())
    monthly = AccessReview.objects.get(schedule="monthly")
    assert (monthly.period_start, monthly.period_end) == (
        at("2026-10-01T00:00:00Z"),
        at("2026-11-01T00:00:00Z"),
    )
    for bad in ("yesterday", (timezone.now() + timedelta(days=2)).date().isoformat()):
        with pytest.raises(CommandError, match="--as-of"):
            call_command("build_access_review", "--as-of", bad, stdout=StringIO())
    assert AccessReview.objects.count() == 2
