"""``manage.py build_access_review [--schedule weekly|monthly] [--as-of YYYY-MM-DD]``: build
the periodic access review of the last period that ended at or before a date, now.

The daily task builds each period's review as it ends (``audit.reviews``); this builds one
the schedule did not: the periods before the portal ran reviews, or a weekly review where the
setting says monthly. Building is idempotent: a period's existing review is answered as it is.
A review built after its period ended long ago is due ``ACCESS_REVIEW_DUE_DAYS`` after the
period's end, like any other, so the dashboard shows it overdue at once.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from audit.reviews import SCHEDULES, access_review_build, review_period


class Command(BaseCommand):
    """Build one period's access review now."""

    help = (
        "Build the access review of the last week or month that ended at or before --as-of "
        "(default: now); an existing review of that period is left as it is."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """``--schedule`` and ``--as-of``."""
        parser.add_argument(
            "--schedule",
            choices=SCHEDULES,
            help="weekly or monthly (default: ACCESS_REVIEW_SCHEDULE, or monthly when off)",
        )
        parser.add_argument(
            "--as-of",
            dest="as_of",
            help="a date, YYYY-MM-DD (UTC): review the last period that ended by then",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Build (or find) the review and say which, with its period, reviewer and due date."""
        configured = settings.ACCESS_REVIEW_SCHEDULE
        schedule = options["schedule"] or (configured if configured in SCHEDULES else "monthly")
        now = timezone.now()
        as_of = now
        if options["as_of"]:
            try:
                day = date.fromisoformat(options["as_of"])
            except ValueError:
                raise CommandError(
                    f"--as-of: not a date (YYYY-MM-DD): {options['as_of']!r}"
                ) from None
            as_of = datetime.combine(day, time.min, tzinfo=UTC)
            if as_of > now:
                raise CommandError("--as-of: a date in the future has no completed period yet")
        period = review_period(schedule=schedule, now=as_of)
        review, created = access_review_build(period=period, now=now)
        reviewer = review.reviewer.get_username() if review.reviewer else "nobody (unassigned)"
        self.stdout.write(
            f"{'built' if created else 'already there'}: review #{review.pk}, "
            f"{period.label()} ({period.start:%Y-%m-%d} to {period.end:%Y-%m-%d}, end "
            f"exclusive), reviewer {reviewer}, due {review.due_at:%Y-%m-%d %H:%M} UTC, "
            f"report SHA-256 {review.report_sha256}"
        )
