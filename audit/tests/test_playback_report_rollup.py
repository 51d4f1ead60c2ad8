"""The playback report read from the daily rollup (``audit.rollups``, the report's tables):
on generated activity over five weeks, every grouping, period and limit gives the log's own
figures, to the row, whether its whole days come from the rollup or not; days the rollup
cannot serve (not rolled up, or holding playback summaries without their audio figure) are
read from the log; and the report's queries do not grow with the rows."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.admin import report_selectors
from audit.admin.report_selectors import ReportFilters, playback_report
from audit.models import AccessLogDay, AccessLogDayDenial, AccessLogDayListener
from audit.rollups import access_log_rollup, day_start, recordings_ranked, span_current
from audit.tests.test_dashboard_rollup import append
from recordings.models import FlexWorker

pytestmark = [pytest.mark.django_db, pytest.mark.urls("audit.tests.urls")]

NOW = datetime(2026, 11, 20, 10, 30, tzinfo=UTC)
TODAY = NOW.date()
MIDNIGHT = day_start(TODAY)

# (identity, the worker SID its rows carry, the directory's team for it)
LISTENERS = [
    ("sam_40example_2Ecom", "WK" + "1" * 32, "Blue"),
    ("alex_40example_2Ecom", "WK" + "2" * 32, "Green"),
    ("kim_40example_2Ecom", "WK" + "3" * 32, "Blue"),
    ("jo_40example_2Ecom", "", "Green"),  # no worker SID on its rows: its team by identity
    ("lee_40example_2Ecom", "", ""),  # not in the directory: no team
    ("", "", ""),  # a token refused before its identity was known
]


def sid(n: int) -> str:
    return f"RE{n:032x}"


def directory() -> None:
    for identity, worker_sid, team in LISTENERS:
        if team:
            FlexWorker.objects.create(
                sid=worker_sid or "WK" + "9" * 32,
                workspace_sid="WS" + "0" * 32,
                friendly_name=identity,
                full_name=identity.split("_")[0].title(),
                email=identity.split("_")[0] + "@example.com",
                team_name=team,
            )


def generated_log(
    monkeypatch, recording_factory, seed: int, *, unmeasured: bool, unknown: int = 2
) -> None:
    """About 300 rows over the last 34 days: opens, denials (by a rule, and of recordings that
    do not exist), media fetches, errors, waveform views, playback summaries (with their audio
    figure, and without it when ``unmeasured``) and staff views, with rows on each side of
    midnight UTC and of the report's periods' edges."""
    chance = random.Random(seed)
    recordings = [
        recording_factory(duration_seconds=60 + 30 * n, media_size=16000 * (60 + 30 * n)).sid
        for n in range(4)
    ] + [sid(900 + n) for n in range(unknown)]  # recordings the portal does not hold
    moments = [
        MIDNIGHT,
        MIDNIGHT - timedelta(microseconds=1),
        MIDNIGHT - timedelta(days=30),
        MIDNIGHT - timedelta(days=30, microseconds=1),
        MIDNIGHT - timedelta(days=10),
        MIDNIGHT - timedelta(days=3, microseconds=1),
        NOW - timedelta(days=20, hours=-3),
        NOW - timedelta(days=2, hours=5),
        NOW - timedelta(minutes=5),
    ]
    moments += [
        NOW - timedelta(seconds=chance.randrange(1, 34 * 86400)) for _ in range(300 - len(moments))
    ]
    for moment in sorted(moments):
        identity, worker_sid, _ = chance.choice(LISTENERS)
        who: dict[str, Any] = {
            "identity": identity,
            "worker_sid": worker_sid,
            "recording_sid": chance.choice(recordings),
        }
        kind = chance.random()
        if kind < 0.45:
            append(monkeypatch, moment, reason_code="allowed_by_rule", **who)
        elif kind < 0.57:
            append(monkeypatch, moment, outcome="denied", reason_code="no_matching_rule", **who)
        elif kind < 0.62:
            append(monkeypatch, moment, outcome="denied", reason_code="token_expired", **who)
        elif kind < 0.67:
            append(monkeypatch, moment, outcome="denied", reason_code="recording_not_found", **who)
        elif kind < 0.75:
            append(monkeypatch, moment, action="media_fetch", reason_code="playback_started", **who)
        elif kind < 0.78:
            append(
                monkeypatch,
                moment,
                action="media_fetch",
                outcome="error",
                reason_code="storage_unavailable",
                **who,
            )
        elif kind < 0.80:
            append(
                monkeypatch, moment, action="waveform_view", reason_code="waveform_served", **who
            )
        elif kind < 0.95:
            sent = chance.randrange(1000, 2_000_000)
            measured = not unmeasured or chance.random() < 0.7
            append(
                monkeypatch,
                moment,
                action="media_playback",
                reason_code="playback_summary",
                bytes_served=sent,
                detail={"fetches": 2, **({"audio_ms_sent": sent // 16} if measured else {})},
                **who,
            )
        else:
            append(
                monkeypatch,
                moment,
                action="admin_view",
                reason_code="access_log_list",
                identity="admin:officer",
            )


class Seconds(float):
    """Listening time: a sum of floats, equal whichever order it was added in."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, float) and abs(self - other) < 1e-6

    __hash__ = float.__hash__


def shown(report) -> tuple[list[tuple], bool]:
    """Everything the page and the files show of a report."""
    return (
        [
            (
                group.key,
                group.label,
                group.team,
                group.plays,
                group.denials,
                group.not_found,
                group.errors,
                group.recordings,
                group.people,
                group.playbacks_measured,
                group.bytes_served,
                Seconds(group.listened_seconds),
                group.first_at,
                group.last_at,
                group.log_link,
                [(d.reason_code, d.label, d.count, d.log_link) for d in group.denial_reasons],
            )
            for group in report.groups
        ],
        report.truncated,
    )


PERIODS = {
    "the default: the dashboard's 30 days": ReportFilters(since=NOW - timedelta(days=30)),
    "30 days from midnight and today": ReportFilters(since=MIDNIGHT - timedelta(days=30)),
    "mid-day to mid-day": ReportFilters(
        since=NOW - timedelta(days=20, hours=-3), until=NOW - timedelta(days=2, hours=5)
    ),
    "whole days only": ReportFilters(
        since=MIDNIGHT - timedelta(days=10), until=MIDNIGHT - timedelta(days=3)
    ),
}


def both(filters: ReportFilters, group_by: str, limit: int | None) -> tuple[Any, Any]:
    rolled = shown(playback_report(filters=filters, group_by=group_by, limit=limit))
    live = shown(
        playback_report(filters=filters, group_by=group_by, limit=limit, from_rollup=False)
    )
    return rolled, live


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("group_by", ["person", "team", "recording"])
def test_the_report_shows_the_logs_figures_from_the_rollup(
    monkeypatch, recording_factory, seed, group_by
):
    directory()
    generated_log(monkeypatch, recording_factory, seed, unmeasured=False)
    access_log_rollup(now=NOW)
    assert AccessLogDayListener.objects.exists()
    assert AccessLogDayDenial.objects.exists()
    for name, filters in PERIODS.items():
        found = report_selectors._rolled_split(filters)
        assert found is not None, name
        assert found[0].days, name
        for limit in (500, 2, None):
            rolled, live = both(filters, group_by, limit)
            assert live[0], name
            assert rolled == live, (name, limit)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_spans_first_recordings_are_the_days_first_recordings(
    monkeypatch, recording_factory, seed
):
    # Thirty recordings, so that the first few are chosen among many: the span's first ones
    # and the ones today's rows touched must hold every recording that can come first.
    generated_log(monkeypatch, recording_factory, seed, unmeasured=False, unknown=26)
    access_log_rollup(now=NOW)
    found = report_selectors._rolled_split(PERIODS["the default: the dashboard's 30 days"])
    assert found is not None
    split, rolled = found
    span = span_current(split=split, rolled=rolled)
    assert span is not None
    for limit in (1, 2, 3, 5, 8, 13, 50):
        ranked = recordings_ranked(split=split, limit=limit)
        assert ranked
        assert recordings_ranked(split=split, limit=limit, span=span) == ranked, limit


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("group_by", ["person", "team"])
def test_the_dashboards_span_gives_the_distinct_recordings_of_its_window(
    monkeypatch, recording_factory, seed, group_by
):
    directory()
    generated_log(monkeypatch, recording_factory, seed, unmeasured=False)
    access_log_rollup(now=NOW)
    filters = PERIODS["the default: the dashboard's 30 days"]
    live = both(filters, group_by, None)[1]

    def not_counted_over_the_days(**kwargs):
        raise AssertionError("the span should have answered")

    monkeypatch.setattr(report_selectors, "opened_distinct", not_counted_over_the_days)
    for limit in (None, 2):
        rolled = shown(playback_report(filters=filters, group_by=group_by, limit=limit))
        assert rolled[0] == live[0][: limit or None]


def test_a_person_who_played_in_two_teams_is_counted_over_the_days(
    monkeypatch, recording_factory
):
    directory()
    generated_log(monkeypatch, recording_factory, 1, unmeasured=False)
    # Sam (Blue) also played as Alex's worker (Green) on a day of the span.
    append(
        monkeypatch,
        NOW - timedelta(days=4),
        identity=LISTENERS[0][0],
        worker_sid=LISTENERS[1][1],
        recording_sid=sid(950),
    )
    access_log_rollup(now=NOW)
    filters = PERIODS["the default: the dashboard's 30 days"]
    found = report_selectors._rolled_split(filters)
    assert found is not None
    rolled, live = both(filters, "team", None)
    assert rolled == live
    counted_over_the_days = []
    monkeypatch.setattr(
        report_selectors,
        "opened_distinct",
        lambda **kwargs: counted_over_the_days.append(1) or {},
    )
    playback_report(filters=filters, group_by="team", limit=None)
    assert counted_over_the_days


@pytest.mark.parametrize("group_by", ["person", "team", "recording"])
def test_days_the_rollup_cannot_serve_are_read_from_the_log(
    monkeypatch, recording_factory, group_by
):
    directory()
    generated_log(monkeypatch, recording_factory, 3, unmeasured=True)
    access_log_rollup(now=NOW)
    filters = PERIODS["30 days from midnight and today"]
    # Days with summaries written before summaries kept their audio figure are live (their
    # listening time is estimated from the recording's size), the others rolled up.
    unmeasured = set(
        AccessLogDayListener.objects.filter(unmeasured__gt=0).values_list("day", flat=True)
    )
    found = report_selectors._rolled_split(filters)
    assert unmeasured
    assert found is not None
    split = found[0]
    assert split.days
    assert not unmeasured & set(split.days)
    rolled, live = both(filters, group_by, 3)
    assert rolled == live
    # A day not rolled up (yet, or any more) is read from the log too.
    AccessLogDay.objects.filter(day=split.days[len(split.days) // 2]).delete()
    rolled, live = both(filters, group_by, None)
    assert rolled == live


def test_a_row_that_arrives_after_its_day_was_rolled_up_shows_after_the_next_run(
    monkeypatch, recording_factory
):
    directory()
    generated_log(monkeypatch, recording_factory, 4, unmeasured=False)
    access_log_rollup(now=NOW)
    filters = PERIODS["whole days only"]
    late = MIDNIGHT - timedelta(days=5, hours=1)
    append(monkeypatch, late, identity="late_40example_2Ecom", recording_sid=sid(1))
    rolled, live = both(filters, "person", None)
    assert "late_40example_2Ecom" in [row[0] for row in live[0]]
    assert "late_40example_2Ecom" not in [row[0] for row in rolled[0]]
    access_log_rollup(now=NOW + timedelta(hours=1))
    rolled, live = both(filters, "person", None)
    assert rolled == live


def test_a_filtered_report_reads_the_log():
    since = MIDNIGHT - timedelta(days=30)
    for filters in (
        ReportFilters(since=since, person="sam@example.com"),
        ReportFilters(since=since, team="Blue"),
        ReportFilters(since=since, recording_sid=sid(1)),
    ):
        AccessLogDay.objects.get_or_create(
            day=TODAY - timedelta(days=2), defaults={"rows": 0, "rolled_up_at": NOW}
        )
        assert report_selectors._rolled_split(filters) is None


@pytest.mark.parametrize("group_by", ["person", "team", "recording"])
def test_the_rolled_up_reports_queries_do_not_grow_with_the_rows(
    monkeypatch, recording_factory, group_by
):
    directory()
    filters = PERIODS["30 days from midnight and today"]

    def count() -> int:
        access_log_rollup(now=NOW)
        with CaptureQueriesContext(connection) as queries:
            report = playback_report(filters=filters, group_by=group_by, limit=2)
        assert report.truncated
        return len(queries)

    generated_log(monkeypatch, recording_factory, 5, unmeasured=False)
    before = count()
    generated_log(monkeypatch, recording_factory, 6, unmeasured=False)
    assert count() == before
    # Savepoint, JIT off, release; rolled-up days; figures (rollup and log), the span of
    # those days (none here: they are not the dashboard's), distinct counts, denials (log and
    # rollup), then the people's names, or the directory's teams once (a team needs no name).
    # By recording: the span, the ranking, then the figures of the recordings shown (log),
    # their denials (log and rollup) and their names.
    assert before == {"person": 11, "team": 11, "recording": 10}[group_by]
