"""The dashboard's daily rollup of the access log (``audit.rollups``): the task's rule (whole
UTC days once settled, idempotent, late rows rolled up again, empty days marked, old days
dropped) and a dashboard that shows the log's own figures whichever part comes from the
rollup."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.urls import reverse

from audit import services
from audit.admin import selectors
from audit.database_roles import portal_tables
from audit.management.commands.migrate import append_only_tables
from audit.models import (
    AccessLogDay,
    AccessLogDayCount,
    AccessLogDayDenial,
    AccessLogDayListener,
    AccessLogDayOpen,
    AccessLogSpan,
    AccessLogSpanIdentity,
    AccessLogSpanRecording,
)
from audit.rollups import (
    DASHBOARD_DAYS,
    ROLLUP_KEEP_DAYS,
    SETTLE,
    access_log_rollup,
    day_start,
    log_split,
)
from audit.services import access_log_append
from audit.tasks import rollup_access_log

pytestmark = [pytest.mark.django_db, pytest.mark.urls("audit.tests.urls")]

# The dashboard is looked at mid-morning: its 30 days start mid-morning 30 days before.
NOW = datetime(2026, 11, 20, 10, 30, tzinfo=UTC)
TODAY = NOW.date()


def stamp(monkeypatch, moment: datetime) -> None:
    """Stamp the next rows at ``moment`` (the log's clock is the service's)."""
    monkeypatch.setattr(services, "timezone", SimpleNamespace(now=lambda: moment))


def append(monkeypatch, moment: datetime, **fields) -> None:
    stamp(monkeypatch, moment)
    fields.setdefault("action", "url_provider")
    fields.setdefault("outcome", "allowed")
    access_log_append(**fields)


def sid(n: int) -> str:
    return f"RE{n:032x}"


def rollup_tables() -> dict[str, list[tuple]]:
    """Everything the rollup holds, in a comparable form."""
    return {
        "days": sorted(AccessLogDay.objects.values_list("day", "rows")),
        "counts": sorted(AccessLogDayCount.objects.values_list("day", "action", "outcome", "rows")),
        "opens": sorted(
            AccessLogDayOpen.objects.values_list(
                "day", "identity", "recording_sid", "worker_sid", "opens"
            )
        ),
        "listeners": sorted(
            AccessLogDayListener.objects.values_list(
                "day",
                "identity",
                "worker_sid",
                "action",
                "outcome",
                "reason_code",
                "rows",
                "bytes_served",
                "listened_seconds",
                "unmeasured",
                "first_at",
                "last_at",
            )
        ),
        "denials": sorted(
            AccessLogDayDenial.objects.values_list("day", "recording_sid", "reason_code", "rows")
        ),
        "spans": sorted(AccessLogSpan.objects.values_list("first_day", "last_day")),
        "span_identities": sorted(
            AccessLogSpanIdentity.objects.values_list("identity", "recordings", "opens")
        ),
        "span_recordings": sorted(
            AccessLogSpanRecording.objects.values_list("recording_sid", "people", "opens")
        ),
    }


def figures(now: datetime) -> dict[str, object]:
    """What the dashboard shows, without the parts that are not figures of the log."""
    data = selectors.dashboard(now=now)
    return {
        "per_day": data.per_day,
        "top_identities": data.top_identities,
        "widely_opened": data.widely_opened,
        "activity": data.activity,
        "alerts": [(alert.title, alert.detail) for alert in data.alerts],
        "denied": [(row.identity, row.denials, row.reason) for row in data.denied],
    }


def generated_log(monkeypatch, seed: int) -> None:
    """Rows over the last 34 days: opens, denials, media fetches and staff views by a few
    identities of a few recordings (so people and recordings repeat across days, today and
    the dashboard's first, partial day included), and rows on each side of midnight UTC and
    of the dashboard's start."""
    chance = random.Random(seed)
    identities = ["alice", "bob", "carol", "dave", "Eve", "admin:officer"]
    moments = [
        NOW - timedelta(days=DASHBOARD_DAYS),  # the dashboard's first instant
        NOW - timedelta(days=DASHBOARD_DAYS, microseconds=1),  # just before it
        day_start(TODAY),  # today's first instant
        day_start(TODAY) - timedelta(microseconds=1),  # yesterday's last
        day_start(TODAY - timedelta(days=DASHBOARD_DAYS - 1)),  # first whole day's start
        day_start(TODAY - timedelta(days=DASHBOARD_DAYS - 1)) - timedelta(microseconds=1),
        NOW - timedelta(minutes=30),  # the last hour: the denial spike's
    ]
    moments += [
        NOW - timedelta(seconds=chance.randrange(1, 34 * 86400)) for _ in range(160 - len(moments))
    ]
    for moment in sorted(moments):
        kind = chance.random()
        identity = chance.choice(identities[:-1])
        recording = sid(chance.randrange(6))
        if kind < 0.55:
            append(monkeypatch, moment, identity=identity, recording_sid=recording)
        elif kind < 0.75:
            append(
                monkeypatch,
                moment,
                outcome="denied",
                reason_code="no_matching_rule",
                identity=identity,
                recording_sid=recording,
            )
        elif kind < 0.9:
            append(
                monkeypatch,
                moment,
                action="media_fetch",
                reason_code="playback_started",
                identity=identity,
                recording_sid=recording,
            )
        else:
            append(
                monkeypatch,
                moment,
                action="admin_view",
                reason_code="access_log_list",
                identity=identities[-1],
            )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_dashboard_shows_the_logs_figures_from_the_rollup(monkeypatch, settings, seed):
    settings.AUDIT_ALERT_DENIAL_SPIKE_MIN = 0
    generated_log(monkeypatch, seed)
    live = figures(NOW)
    assert live["top_identities"]
    assert live["widely_opened"]

    run = access_log_rollup(now=NOW)
    assert run.span is not None
    assert (run.span.first_day, run.span.last_day) == (
        TODAY - timedelta(days=DASHBOARD_DAYS - 1),
        TODAY - timedelta(days=1),
    )
    assert figures(NOW) == live

    # A day rolled up again after the span was counted: the span is not used until it is
    # counted again, and the figures stay the log's.
    AccessLogDay.objects.filter(day=TODAY - timedelta(days=3)).update(
        rolled_up_at=NOW + timedelta(minutes=1)
    )
    assert figures(NOW) == live
    # A day missing from the middle of the rollup is read from the log.
    AccessLogDay.objects.filter(day=TODAY - timedelta(days=10)).delete()
    assert figures(NOW) == live
    # Later the same day, and the next morning before and after the rollup ran again.
    later = NOW + timedelta(hours=12)
    assert figures(later) == figures_live(later)
    tomorrow = NOW + timedelta(days=1)
    assert figures(tomorrow) == figures_live(tomorrow)
    access_log_rollup(now=tomorrow)
    assert figures(tomorrow) == figures_live(tomorrow)


def figures_live(now: datetime) -> dict[str, object]:
    """The dashboard's figures with the rollup set aside (the log's own)."""
    # Without day markers no day is read from the rollup (nor the span of the days).
    kept = {
        model: list(model.objects.all())
        for model in (AccessLogDay, AccessLogDayCount, AccessLogDayOpen)
    }
    for model in kept:
        model.objects.all().delete()
    try:
        return figures(now)
    finally:
        for model, rows in kept.items():
            model.objects.bulk_create(rows)


def test_a_dashboard_that_starts_at_midnight_counts_its_first_day_once(monkeypatch):
    midnight = day_start(TODAY) + timedelta(days=1)
    for day in (DASHBOARD_DAYS, DASHBOARD_DAYS - 1, 1):
        append(
            monkeypatch,
            day_start(TODAY - timedelta(days=day - 1)),
            identity="a",
            recording_sid=sid(1),
        )
        append(
            monkeypatch,
            day_start(TODAY - timedelta(days=day - 1)),
            identity="b",
            recording_sid=sid(1),
        )
    live = figures(midnight)
    access_log_rollup(now=midnight + SETTLE)
    assert figures(midnight) == live
    assert [
        (row["recording_sid"], row["people"], row["opens"]) for row in live["widely_opened"]
    ] == [(sid(1), 2, 6)]


def test_whole_settled_days_are_rolled_up_each_on_its_own_side_of_midnight(monkeypatch):
    yesterday = TODAY - timedelta(days=1)
    append(
        monkeypatch,
        day_start(yesterday) - timedelta(microseconds=1),
        identity="a",
        recording_sid=sid(1),
    )
    append(monkeypatch, day_start(yesterday), identity="a", recording_sid=sid(1))
    append(
        monkeypatch,
        day_start(TODAY) - timedelta(microseconds=1),
        identity="a",
        recording_sid=sid(1),
    )
    append(monkeypatch, day_start(TODAY), identity="a", recording_sid=sid(1))

    # Just after midnight, yesterday has not settled: only the days before it are rolled up.
    run = access_log_rollup(now=day_start(TODAY) + SETTLE - timedelta(seconds=1))
    assert yesterday not in run.rolled
    assert TODAY not in run.rolled
    assert run.span is None  # the dashboard's whole days are not all rolled up yet
    run = access_log_rollup(now=day_start(TODAY) + SETTLE)
    assert run.rolled == [yesterday]
    assert run.span is not None
    days = dict(AccessLogDay.objects.values_list("day", "rows"))
    assert days[yesterday - timedelta(days=1)] == 1
    assert days[yesterday] == 2
    assert TODAY not in days  # today is read from the log
    assert sorted(AccessLogDayOpen.objects.values_list("day", "opens")) == [
        (yesterday - timedelta(days=1), 1),
        (yesterday, 2),
    ]


def test_a_rerun_changes_nothing_and_a_late_row_rolls_its_day_up_again(monkeypatch):
    generated_log(monkeypatch, 4)
    first = access_log_rollup(now=NOW)
    assert len(first.rolled) == ROLLUP_KEEP_DAYS
    held = rollup_tables()
    again = access_log_rollup(now=NOW)
    assert (again.rolled, again.span) == ([], None)
    assert rollup_tables() == held

    # A transaction that stamped its row five days ago commits only now.
    late_day = TODAY - timedelta(days=5)
    append(
        monkeypatch, day_start(late_day) + timedelta(hours=23), identity="zed", recording_sid=sid(9)
    )
    before = figures(NOW)
    run = access_log_rollup(now=NOW)
    assert run.rolled == [late_day]
    assert run.span is not None  # its day changed, so the span was counted again
    assert AccessLogDayOpen.objects.get(identity="zed").day == late_day
    assert figures(NOW) == figures_live(NOW)
    assert figures(NOW) != before  # the late open shows once its day was rolled up again


def test_empty_days_are_marked_and_read_as_empty(monkeypatch):
    append(monkeypatch, NOW - timedelta(days=2), identity="a", recording_sid=sid(1))
    run = access_log_rollup(now=NOW)
    assert len(run.rolled) == ROLLUP_KEEP_DAYS
    assert AccessLogDay.objects.filter(rows=0).count() == ROLLUP_KEEP_DAYS - 1
    assert AccessLogDayCount.objects.count() == 1
    split = log_split(
        since=NOW - timedelta(days=DASHBOARD_DAYS),
        until=NOW,
        rolled=set(AccessLogDay.objects.values_list("day", flat=True)),
    )
    # Every whole day comes from the rollup; the log is read for the first part-day and today.
    assert len(split.days) == DASHBOARD_DAYS - 1
    assert split.ranges == (
        (NOW - timedelta(days=DASHBOARD_DAYS), day_start(split.days[0])),
        (day_start(TODAY), None),
    )
    assert figures(NOW) == figures_live(NOW)


def test_days_past_the_window_and_old_spans_are_dropped(monkeypatch):
    append(
        monkeypatch, NOW - timedelta(days=ROLLUP_KEEP_DAYS - 1), identity="a", recording_sid=sid(1)
    )
    append(
        monkeypatch,
        NOW - timedelta(days=ROLLUP_KEEP_DAYS - 1),
        outcome="denied",
        reason_code="no_matching_rule",
        identity="a",
        recording_sid=sid(1),
    )
    access_log_rollup(now=NOW)
    assert AccessLogDayListener.objects.count() == 2
    assert AccessLogDayDenial.objects.count() == 1
    later = NOW + timedelta(days=3)
    run = access_log_rollup(now=later)
    assert run.pruned == 3
    assert AccessLogDay.objects.earliest("day").day == later.date() - timedelta(
        days=ROLLUP_KEEP_DAYS
    )
    # Its only rows were on a dropped day.
    assert not AccessLogDayOpen.objects.exists()
    assert not AccessLogDayListener.objects.exists()
    assert not AccessLogDayDenial.objects.exists()
    assert list(AccessLogSpan.objects.values_list("last_day", flat=True)) == [
        later.date() - timedelta(days=1)
    ]


def test_the_dashboard_query_count_with_the_rollup(
    admin_client, append_rows, monkeypatch, django_assert_num_queries
):
    now = datetime.now(UTC)
    append(monkeypatch, now - timedelta(days=3), identity="agent_1", recording_sid=sid(1))
    monkeypatch.undo()
    append_rows(40)
    access_log_rollup(now=now)
    # The test_admin_scale count (24) and the lookup of the span of the whole days.
    with django_assert_num_queries(25):
        assert admin_client.get(reverse("admin:audit_accesslog_dashboard")).status_code == 200


def test_the_rollup_runs_hourly_from_beat_as_the_runtime_role_may():
    entry = settings.CELERY_BEAT_SCHEDULE["rollup-access-log"]
    assert entry["task"] == rollup_access_log.name
    assert rollup_access_log.apply().get() == ROLLUP_KEEP_DAYS  # empty days, marked
    assert rollup_access_log.apply().get() == 0  # nothing new
    # Ordinary tables: the worker replaces a day's rows, so the runtime role (web, worker and
    # beat share it) is granted SELECT, INSERT, UPDATE and DELETE on them by ``migrate``.
    from django.db import connection

    rollup = {
        model._meta.db_table
        for model in (
            AccessLogDay,
            AccessLogDayCount,
            AccessLogDayOpen,
            AccessLogDayListener,
            AccessLogDayDenial,
            AccessLogSpan,
            AccessLogSpanIdentity,
            AccessLogSpanRecording,
        )
    }
    assert rollup <= set(portal_tables(connection))
    assert not rollup & append_only_tables()


def test_a_day_boundary_is_midnight_utc():
    assert day_start(date(2026, 3, 29)) == datetime(2026, 3, 29, tzinfo=UTC)
