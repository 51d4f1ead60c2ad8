"""Periodic access review (HIPAA 164.312(b): record *and examine*): each completed period's
report, assigned to a reviewer, who signs it off with comments and findings.

A review covers one completed UTC period: a week (Monday 00:00 to the next Monday, exclusive)
or a calendar month, as ``ACCESS_REVIEW_SCHEDULE`` says (``off``: none). Beat runs
``audit.tasks.build_access_review`` daily; :func:`access_review_build_due` then builds the
review of the last completed period if it does not exist yet, so a day the scheduler missed is
made up the next day and building twice builds once (one review per period, a unique
constraint). The review is due ``ACCESS_REVIEW_DUE_DAYS`` after its period ends; an open review
past that is overdue and the dashboard says so (``audit.admin.reviews``).

Why the report is handed in: the report counts accesses by team, which only the worker
directory knows, and the listening estimate needs the recordings' sizes; the audit core imports
nothing of ``recordings`` (import-linter). So, like the people directory of ``audit.people``,
the compliance console registers the function that builds the report
(:func:`review_report_builder_register`, done by ``audit.admin.review_report`` when Django
loads the admin, in every process: web, worker and commands). The core keeps what a review
*is*: its period, its frozen report and that report's SHA-256 (taken when built, checked again
before a sign-off and on every page), the assignment and the sign-off rules. A Celery task in
``audit.tasks`` may therefore build reviews without importing the console.

Rules: the review goes to the next active staff member holding ``audit.review_accessreview``
(round-robin by user id after the previous review's reviewer); when nobody holds it, the review
stays unassigned and the dashboard says so. Only the assigned reviewer signs off (on an
unassigned review, any holder of the permission, who then becomes its reviewer); comments are
required. A holder of ``audit.assign_accessreview`` reassigns an open review. A signed-off
review never changes again (the model and, on PostgreSQL, a trigger refuse). Each step, and
each export, is an access-log row (action ``access_review``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from audit.models import (
    AccessAction,
    AccessLog,
    AccessOutcome,
    AccessReview,
    ReviewFindings,
    ReviewState,
)
from audit.people import identity_spellings
from audit.services import access_log_append

SCHEDULES = ("weekly", "monthly")
REVIEW_PERMISSION = "audit.review_accessreview"
ASSIGN_PERMISSION = "audit.assign_accessreview"
COMMENTS_MAX_LENGTH = 5000
SYSTEM_ACTOR = "system:schedule"
EXPORT_FORMATS = ("csv", "pdf", "json")


class AccessReviewInvalid(ValueError):
    """A sign-off, reassignment or build that cannot be done; ``errors`` by field."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))


@dataclass(frozen=True)
class ReviewPeriod:
    """A completed review period: ``start`` inclusive, ``end`` exclusive, both UTC midnight."""

    schedule: str
    start: datetime
    end: datetime

    def label(self) -> str:
        """``week of 2026-11-23`` or ``November 2026``."""
        if self.schedule == "weekly":
            return f"week of {self.start:%Y-%m-%d}"
        return f"{self.start:%B %Y}"


def review_period(*, schedule: str, now: datetime) -> ReviewPeriod:
    """The last period of ``schedule`` (``weekly`` or ``monthly``) that ended at or before
    ``now``: the week (Monday to Monday, UTC) before the current one, or the previous calendar
    month. Raises ``ValueError`` for another schedule."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown review schedule {schedule!r}")
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if schedule == "weekly":
        end = midnight - timedelta(days=midnight.weekday())
        return ReviewPeriod(schedule=schedule, start=end - timedelta(days=7), end=end)
    end = midnight.replace(day=1)
    start = (end - timedelta(days=1)).replace(day=1)
    return ReviewPeriod(schedule=schedule, start=start, end=end)


ReportBuilder = Callable[..., dict[str, Any]]
"""Called as ``builder(period=ReviewPeriod, now=datetime)``; answers the report (JSON types,
no floats: a float may not survive the database's JSON unchanged and the hash would differ)."""

_builder: ReportBuilder | None = None


def review_report_builder_register(builder: ReportBuilder) -> None:
    """Make ``builder`` the function that builds a period's report (see the module docstring)."""
    global _builder
    _builder = builder


def report_canonical(report: Mapping[str, Any]) -> bytes:
    """The report's canonical JSON (sorted keys, no spaces, UTF-8): what its hash covers and
    what the JSON download holds."""
    return json.dumps(
        report, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def report_sha256(report: Mapping[str, Any]) -> str:
    """The SHA-256 of :func:`report_canonical`, in hex."""
    return hashlib.sha256(report_canonical(report)).hexdigest()


def review_report_intact(review: AccessReview) -> bool:
    """Whether the stored report still has the hash taken when it was built."""
    return report_sha256(review.report) == review.report_sha256


def reviewer_candidates() -> list[User]:
    """Active staff who hold the reviewer permission directly or through a group (superusers
    only when they hold it that way too: "may do anything" is not "was asked to review"),
    by id."""
    return list(
        User.objects.with_perm(
            REVIEW_PERMISSION,
            include_superusers=False,
            # The one backend that grants permissions (axes' only refuses logins).
            backend="django.contrib.auth.backends.ModelBackend",
        )
        .filter(is_active=True, is_staff=True)
        .order_by("pk")
    )


def reviewer_next() -> User | None:
    """The next reviewer, round-robin: the first candidate after the reviewer of the latest
    assigned review (by id), or the first one; ``None`` when nobody may review."""
    candidates = reviewer_candidates()
    if not candidates:
        return None
    previous = (
        AccessReview.objects.filter(reviewer__isnull=False)
        .order_by("-period_start", "-pk")
        .values_list("reviewer_id", flat=True)
        .first()
    )
    if previous is not None:
        for candidate in candidates:
            if candidate.pk > previous:
                return candidate
    return candidates[0]


def _log_text(value: str, limit: int = 500) -> str:
    """Free text for the log's detail, which refuses anything that reads as a link."""
    return value.replace("://", ":/ /")[:limit]


def _log(
    review: AccessReview,
    reason_code: str,
    *,
    identity: str,
    audit_fields: Mapping[str, Any] | None = None,
    outcome: str = AccessOutcome.ALLOWED,
    **extra: Any,
) -> AccessLog:
    return access_log_append(
        action=AccessAction.ACCESS_REVIEW,
        outcome=outcome,
        reason_code=reason_code,
        identity=identity,
        detail={
            "review_id": review.pk,
            "schedule": review.schedule,
            "period_start": review.period_start.isoformat(),
            "period_end": review.period_end.isoformat(),
            "report_sha256": review.report_sha256,
            "reviewer": review.reviewer.get_username() if review.reviewer else "",
            **extra,
        },
        **(audit_fields or {}),
    )


def access_review_build(*, period: ReviewPeriod, now: datetime) -> tuple[AccessReview, bool]:
    """The review of ``period``: the existing one, or a new one built now (its report frozen
    with its hash, assigned, due ``ACCESS_REVIEW_DUE_DAYS`` after the period ends, and an
    access-log row ``review_opened``). Answers ``(review, created)``; two builders at once
    create one review (the unique constraint decides, the loser answers the winner's)."""
    existing = AccessReview.objects.filter(period_start=period.start, period_end=period.end)
    found = existing.select_related("reviewer").first()
    if found is not None:
        return found, False
    if _builder is None:
        raise RuntimeError(
            "no access review report builder is registered (audit.admin.review_report "
            "registers it when Django loads the admin)"
        )
    report = _builder(period=period, now=now)
    reviewer = reviewer_next()
    try:
        with transaction.atomic():
            review = AccessReview.objects.create(
                schedule=period.schedule,
                period_start=period.start,
                period_end=period.end,
                created_at=now,
                due_at=period.end + timedelta(days=settings.ACCESS_REVIEW_DUE_DAYS),
                reviewer=reviewer,
                report=report,
                report_sha256=report_sha256(report),
            )
            _log(
                review,
                "review_opened",
                identity=SYSTEM_ACTOR,
                due_at=review.due_at.isoformat(),
                assigned=reviewer is not None,
            )
    except IntegrityError:
        return existing.select_related("reviewer").get(), False
    return review, True


def access_review_build_due(*, now: datetime) -> AccessReview | None:
    """Build the review of the last completed period of ``ACCESS_REVIEW_SCHEDULE`` if it is
    missing (the daily task); answers that period's review, or ``None`` when reviews are off."""
    schedule = settings.ACCESS_REVIEW_SCHEDULE
    if schedule == "off":
        return None
    review, _created = access_review_build(
        period=review_period(schedule=schedule, now=now), now=now
    )
    return review


def access_review_overdue(review: AccessReview, *, now: datetime) -> bool:
    """Whether ``review`` is open past its due date."""
    return review.state == ReviewState.OPEN and review.due_at <= now


def sign_off_refusal(*, review: AccessReview, user: User) -> str | None:
    """Why ``user`` may not sign ``review`` off, or ``None`` when they may."""
    if review.state != ReviewState.OPEN:
        return "the review is already signed off"
    if not user.is_active or not user.has_perm(REVIEW_PERMISSION):
        return "needs the permission to review access (compliance managers hold it)"
    if review.reviewer_id is not None and review.reviewer_id != user.pk:
        assigned = review.reviewer.get_username() if review.reviewer else str(review.reviewer_id)
        return f"the review is assigned to {assigned}; only they sign it off (or reassign it)"
    return None


def reviewer_in_report(*, review: AccessReview, user: User) -> bool:
    """Whether ``user``'s own activity is in the review's report: as a listener (their e-mail
    as Flex writes it into an identity) or as staff (``admin:<username>``). Not a refusal: the
    page warns, so the reviewer can ask a colleague to take the review over (reassign)."""
    own = {f"admin:{user.get_username()}"}
    email = (user.email or "").strip()
    if email:
        own |= identity_spellings(email)
    report = review.report
    seen = {row.get("identity", "") for row in report.get("by_person", [])}
    seen |= {row.get("identity", "") for row in report.get("restricted", {}).get("by_person", [])}
    seen |= {row.get("identity", "") for row in report.get("staff", [])}
    return bool(own & seen)


def _comments_clean(comments: str) -> str:
    text = comments.strip()
    if not text:
        raise AccessReviewInvalid({"comments": "say what you examined and what you found"})
    if len(text) > COMMENTS_MAX_LENGTH or "\x00" in text:
        raise AccessReviewInvalid({"comments": f"at most {COMMENTS_MAX_LENGTH} characters, no NUL"})
    return text


def access_review_sign_off(
    *,
    review: AccessReview,
    user: User,
    comments: str,
    findings: str,
    now: datetime,
    audit_fields: Mapping[str, Any] | None = None,
) -> AccessReview:
    """Sign ``review`` off as ``user`` with ``comments`` (required) and ``findings``; the
    review is then kept as it is for good. Refused (:class:`AccessReviewInvalid`, nothing
    written) for anyone but its reviewer (or, unassigned, a holder of the permission), for a
    signed-off review, without comments, with unknown findings, or when the report no longer
    matches its hash."""
    text = _comments_clean(comments)
    if findings not in ReviewFindings.values:
        raise AccessReviewInvalid(
            {"findings": f"must be one of {', '.join(ReviewFindings.values)}"}
        )
    with transaction.atomic():
        locked = (
            AccessReview.objects.select_for_update(of=("self",))
            .select_related("reviewer")
            .get(pk=review.pk)
        )
        refusal = sign_off_refusal(review=locked, user=user)
        if refusal:
            raise AccessReviewInvalid({"user": refusal})
        if not review_report_intact(locked):
            raise AccessReviewInvalid(
                {"report": "the stored report no longer matches the hash taken when it was built"}
            )
        locked.reviewer = user
        locked.state = ReviewState.SIGNED_OFF
        locked.signed_off_by = user
        locked.signed_off_at = now
        locked.comments = text
        locked.findings = findings
        locked.save()
        _log(
            locked,
            "review_signed_off",
            identity=f"admin:{user.get_username()}",
            audit_fields=audit_fields,
            findings=findings,
            comments=_log_text(text),
            overdue=locked.due_at <= now,
        )
    return locked


def access_review_reassign(
    *,
    review: AccessReview,
    user: User,
    reviewer: User,
    now: datetime,
    audit_fields: Mapping[str, Any] | None = None,
) -> AccessReview:
    """Give an open review to ``reviewer`` (active staff holding the reviewer permission), as
    ``user`` (holding ``audit.assign_accessreview``); logged with the old and new reviewer."""
    if not user.has_perm(ASSIGN_PERMISSION):
        raise AccessReviewInvalid({"user": "needs the permission to reassign access reviews"})
    if not (reviewer.is_active and reviewer.is_staff and reviewer.has_perm(REVIEW_PERMISSION)):
        raise AccessReviewInvalid(
            {"reviewer": f"{reviewer.get_username()} may not review access (no permission)"}
        )
    with transaction.atomic():
        locked = (
            AccessReview.objects.select_for_update(of=("self",))
            .select_related("reviewer")
            .get(pk=review.pk)
        )
        if locked.state != ReviewState.OPEN:
            raise AccessReviewInvalid({"state": "a signed-off review is never reassigned"})
        if locked.reviewer_id == reviewer.pk:
            raise AccessReviewInvalid(
                {"reviewer": f"the review is already assigned to {reviewer.get_username()}"}
            )
        before = locked.reviewer.get_username() if locked.reviewer else ""
        locked.reviewer = reviewer
        locked.save(update_fields=["reviewer"])
        _log(
            locked,
            "review_reassigned",
            identity=f"admin:{user.get_username()}",
            audit_fields=audit_fields,
            previous_reviewer=before,
            at=now.isoformat(),
        )
    return locked


def access_review_export_log(
    *,
    review: AccessReview,
    user: User,
    fmt: str,
    audit_fields: Mapping[str, Any] | None = None,
) -> AccessLog:
    """Write the access-log row of one export of ``review`` (``csv``, ``pdf`` or ``json``)
    and answer it (a PDF names its own row)."""
    if fmt not in EXPORT_FORMATS:
        raise AccessReviewInvalid({"format": f"must be one of {', '.join(EXPORT_FORMATS)}"})
    return _log(
        review,
        "review_exported",
        identity=f"admin:{user.get_username()}",
        audit_fields=audit_fields,
        format=fmt,
        state=review.state,
    )
