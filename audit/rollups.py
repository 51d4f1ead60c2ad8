"""The access log rolled up by UTC day, so the compliance dashboard and the playback report
read a month's figures without scanning a month of log rows.

Ordinary tables (the log itself is append-only and never touched): ``AccessLogDay`` marks a
rolled-up day and how many log rows it held, ``AccessLogDayCount`` counts the day's rows per
action and outcome, ``AccessLogDayOpen`` counts the day's opens (url_provider allowed) per
(identity, recording) pair. Pairs, not per-day distinct counts: distinct people per recording
over 30 days cannot be summed from daily distinct counts, but can be counted from the pairs.
Counting them is still a month of pairs for each page view, so the task also counts them once
for the dashboard's whole days (``AccessLogSpan``: per identity and per recording); the page
adds the live rows, counting a live (identity, recording) pair only when the span's days do not
already hold it. The pairs keep the opener's Flex worker too (the report's teams).

For the playback report (``audit.admin.report_selectors``), ``AccessLogDayListener`` counts the
day's player rows per listener (identity and worker), action, outcome and reason, with the
bytes and the audio the playback summaries sent, and ``AccessLogDayDenial`` the day's denials
per recording and reason. A report of any period reads its whole days from these (a day with
summaries that do not keep their audio figure excepted) and the rest from the log.

The rule (``access_log_rollup``, the ``rollup-access-log`` beat entry, hourly): every day from
``ROLLUP_KEEP_DAYS`` ago up to the last day that ended at least ``SETTLE`` ago is counted again
in the log; a day with no marker, or whose count differs from its marker's ``rows``, is rolled
up anew (its rows replaced in one transaction, so running it twice gives the same tables).
Rows only ever arrive, with ``occurred_at`` stamped when they are written, so a different count
means a row arrived late (its transaction committed after its day was rolled up) and the next
run puts it in. Then the span of the dashboard's whole days (the ``DASHBOARD_DAYS`` - 1 days
before today) is counted again when one of its days was rolled up after it, or it is missing.
Days older than ``ROLLUP_KEEP_DAYS`` and older spans are deleted from the rollup (the log
keeps them; a report reaching further back reads those days from the log). Beat runs one at a
time; two runs at once take turns on a day's marker row, and of two counts of one span one
fails on its unique key (the next run counts it again).

A reader splits its time with ``log_split``: whole rolled-up days come from the rollup, the
rest (today, a partial first day, a day not rolled up yet) from the log; the distinct counts
use the span when it matches those days and is current, else count the days' pairs. The
figures are the log's; a row that arrived after its day was rolled up shows after the next run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db import connection, models, transaction
from django.db.models import Count, FloatField, Max, Min, Q, QuerySet, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce, TruncDay
from psycopg import sql

from audit.labels import NOT_FOUND_REASONS, PLAYER_ACTIONS
from audit.models import (
    AccessAction,
    AccessLog,
    AccessLogDay,
    AccessLogDayCount,
    AccessLogDayDenial,
    AccessLogDayListener,
    AccessLogDayOpen,
    AccessLogSpan,
    AccessLogSpanIdentity,
    AccessLogSpanRecording,
    AccessOutcome,
)

# What "opening" a recording means for the dashboard: url_provider handed the caller a link.
OPENED = Q(action=AccessAction.URL_PROVIDER, outcome=AccessOutcome.ALLOWED)
# The dashboard's window, in days up to now.
DASHBOARD_DAYS = 30
# Days the rollup holds: the dashboard's 30 days, the partial day they start in, and one more.
ROLLUP_KEEP_DAYS = DASHBOARD_DAYS + 2
# A day is rolled up once it ended this long ago: most rows stamped before midnight have
# committed by then (any later one is caught by the recount).
SETTLE = timedelta(minutes=5)
_BATCH = 5000
# The key under which a playback summary's ``detail`` keeps the milliseconds of audio its
# bytes amount to (``recordings.playback.links``).
AUDIO_MS_SENT = "audio_ms_sent"


# What a rolled-up day holds besides its marker (``AccessLogDay``): replaced together.
_DAY_TABLES: tuple[
    type[AccessLogDayCount]
    | type[AccessLogDayOpen]
    | type[AccessLogDayListener]
    | type[AccessLogDayDenial],
    ...,
] = (AccessLogDayCount, AccessLogDayOpen, AccessLogDayListener, AccessLogDayDenial)


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of ``day``."""
    return datetime.combine(day, time.min, tzinfo=UTC)


@dataclass(frozen=True)
class RolledDays:
    """Rolled-up days: when each was rolled up (``at``) and its log rows per (action,
    outcome) (``rows``; a day without rows has none)."""

    at: dict[date, datetime] = field(default_factory=dict)
    rows: dict[date, dict[tuple[str, str], int]] = field(default_factory=dict)

    def count(self, days: Iterable[date], counted: Callable[[str, str], bool]) -> int:
        """The rows of ``days`` whose (action, outcome) is ``counted``."""
        return sum(
            n
            for day in days
            for (action, outcome), n in self.rows.get(day, {}).items()
            if counted(action, outcome)
        )


def rolled_days(*, since: datetime) -> RolledDays:
    """The rolled-up days from the day of ``since`` on, with their counts; two queries."""
    first = since.astimezone(UTC).date()
    rolled = RolledDays(
        at=dict(AccessLogDay.objects.filter(day__gte=first).values_list("day", "rolled_up_at"))
    )
    for day, action, outcome, n in AccessLogDayCount.objects.filter(day__gte=first).values_list(
        "day", "action", "outcome", "rows"
    ):
        rolled.rows.setdefault(day, {})[(action, outcome)] = n
    return rolled


@dataclass(frozen=True)
class LogSplit:
    """The log from ``since`` on, split in two: ``days``, the rolled-up days wholly inside
    ``[since, until)``, read from the rollup; ``ranges``, the rest (``[start, end)``, the last
    one open-ended), read from the log."""

    days: tuple[date, ...]
    ranges: tuple[tuple[datetime, datetime | None], ...]

    @property
    def live(self) -> Q:
        """The log rows of ``ranges``."""
        condition = Q()
        for start, end in self.ranges:
            part = Q(occurred_at__gte=start)
            if end is not None:
                part &= Q(occurred_at__lt=end)
            condition |= part
        return condition


def log_split(*, since: datetime, until: datetime, rolled: Collection[date]) -> LogSplit:
    """Split the log from ``since`` on at the days of ``rolled`` that lie wholly inside
    ``[since, until)`` (see ``LogSplit``)."""
    days = sorted(
        day
        for day in rolled
        if day_start(day) >= since and day_start(day + timedelta(days=1)) <= until
    )
    ranges: list[tuple[datetime, datetime | None]] = []
    start = since
    for day in days:
        if day_start(day) > start:
            ranges.append((start, day_start(day)))
        start = day_start(day + timedelta(days=1))
    ranges.append((start, None))
    return LogSplit(days=tuple(days), ranges=tuple(ranges))


# --- Writing the rollup ----------------------------------------------------------------------


def access_log_day_rollup(*, day: date, now: datetime) -> AccessLogDay:
    """Roll up one UTC day of the log: replace the day's counts and opens with the log's and
    mark the day with the rows counted. One transaction; the day's marker row is locked
    first, so two runs on one day take turns and leave the same result."""
    start, end = day_start(day), day_start(day + timedelta(days=1))
    rows = AccessLog.objects.filter(occurred_at__gte=start, occurred_at__lt=end)
    with transaction.atomic():
        marker, _ = AccessLogDay.objects.select_for_update().get_or_create(
            day=day, defaults={"rows": 0, "rolled_up_at": now}
        )
        # Counted first: a row committed while this runs may be in the opens but not in
        # ``rows``, so the next run's recount differs and rolls the day up again.
        counts = list(rows.values("action", "outcome").annotate(n=Count("id")).order_by())
        opens = (
            rows.filter(OPENED)
            .values("identity", "recording_sid", "worker_sid")
            .annotate(n=Count("id"))
            .order_by()
            .iterator(chunk_size=_BATCH)
        )
        for table in _DAY_TABLES:
            table.objects.filter(day=day).delete()
        AccessLogDayCount.objects.bulk_create(
            AccessLogDayCount(day=day, action=row["action"], outcome=row["outcome"], rows=row["n"])
            for row in counts
        )
        _bulk_create(
            AccessLogDayOpen,
            (
                AccessLogDayOpen(
                    day=day,
                    identity=row["identity"],
                    recording_sid=row["recording_sid"],
                    worker_sid=row["worker_sid"],
                    opens=row["n"],
                )
                for row in opens
            ),
        )
        _player_day_rollup(rows, day)
        marker.rows = sum(row["n"] for row in counts)
        marker.rolled_up_at = now
        marker.save(update_fields=["rows", "rolled_up_at"])
    return marker


def _player_day_rollup(rows: QuerySet[AccessLog], day: date) -> None:
    """Write the playback report's rows of one day (``rows``, the day's log): the player's
    rows per listener, action, outcome and reason, and its denials per recording and
    reason."""
    player = rows.filter(action__in=PLAYER_ACTIONS)
    measured = Q(action=AccessAction.MEDIA_PLAYBACK, detail__has_key=AUDIO_MS_SENT)
    listeners = (
        player.values("identity", "worker_sid", "action", "outcome", "reason_code")
        .annotate(
            n=Count("id"),
            bytes=Coalesce(Sum("bytes_served"), 0),
            listened_ms=Coalesce(
                Sum(Cast(KT(f"detail__{AUDIO_MS_SENT}"), FloatField()), filter=measured),
                0.0,
                output_field=FloatField(),
            ),
            unmeasured=Count("id", filter=Q(action=AccessAction.MEDIA_PLAYBACK) & ~measured),
            first=Min("occurred_at"),
            last=Max("occurred_at"),
        )
        .order_by()
    )
    _bulk_create(
        AccessLogDayListener,
        (
            AccessLogDayListener(
                day=day,
                identity=row["identity"],
                worker_sid=row["worker_sid"],
                action=row["action"],
                outcome=row["outcome"],
                reason_code=row["reason_code"],
                rows=row["n"],
                bytes_served=row["bytes"],
                listened_seconds=row["listened_ms"] / 1000.0,
                unmeasured=row["unmeasured"],
                first_at=row["first"],
                last_at=row["last"],
            )
            for row in listeners.iterator(chunk_size=_BATCH)
        ),
    )
    denials = (
        player.filter(outcome=AccessOutcome.DENIED)
        .values("recording_sid", "reason_code")
        .annotate(n=Count("id"))
        .order_by()
    )
    _bulk_create(
        AccessLogDayDenial,
        (
            AccessLogDayDenial(
                day=day,
                recording_sid=row["recording_sid"],
                reason_code=row["reason_code"],
                rows=row["n"],
            )
            for row in denials.iterator(chunk_size=_BATCH)
        ),
    )


def _bulk_create(model: type[models.Model], rows: Iterable[models.Model]) -> None:
    """Insert ``rows`` in batches, never holding more than one batch in memory."""
    batch: list[models.Model] = []
    for row in rows:
        batch.append(row)
        if len(batch) == _BATCH:
            model._default_manager.bulk_create(batch)
            batch = []
    model._default_manager.bulk_create(batch)


@dataclass(frozen=True)
class RollupRun:
    """What one run did: the days rolled up (anew or for the first time), the days it
    deleted as older than ``ROLLUP_KEEP_DAYS`` and the span it counted, if any."""

    rolled: list[date]
    pruned: int
    span: AccessLogSpan | None = None


def access_log_rollup(*, now: datetime, keep_days: int = ROLLUP_KEEP_DAYS) -> RollupRun:
    """Bring the rollup up to date as of ``now`` (the rule is in the module docstring): roll
    up each day of the last ``keep_days`` that ended ``SETTLE`` ago and has no marker or a
    marker whose count differs from the log's, and delete older days. Idempotent."""
    last = (now - SETTLE).astimezone(UTC).date() - timedelta(days=1)
    first = now.astimezone(UTC).date() - timedelta(days=keep_days)
    counted = dict(
        AccessLog.objects.filter(
            occurred_at__gte=day_start(first), occurred_at__lt=day_start(last + timedelta(days=1))
        )
        .annotate(day=TruncDay("occurred_at", tzinfo=UTC))
        .values("day")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("day", "n")
    )
    counts = {moment.date(): n for moment, n in counted.items()}
    held = dict(
        AccessLogDay.objects.filter(day__gte=first, day__lte=last).values_list("day", "rows")
    )
    rolled = []
    day = first
    while day <= last:
        if held.get(day) != counts.get(day, 0):
            access_log_day_rollup(day=day, now=now)
            rolled.append(day)
        day += timedelta(days=1)
    today = now.astimezone(UTC).date()
    span_first, span_last = today - timedelta(days=DASHBOARD_DAYS - 1), today - timedelta(days=1)
    computed = None
    if last == span_last:
        span = AccessLogSpan.objects.filter(first_day=span_first, last_day=span_last).first()
        newest = AccessLogDay.objects.filter(day__gte=span_first, day__lte=span_last).aggregate(
            at=Max("rolled_up_at")
        )["at"]
        if (
            span is None
            or newest is None
            or newest > span.computed_at
            or any(span_first <= day <= span_last for day in rolled)
        ):
            computed = access_log_span_compute(first_day=span_first, last_day=span_last, now=now)
    AccessLogSpan.objects.exclude(first_day=span_first, last_day=span_last).delete()
    pruned = AccessLogDay.objects.filter(day__lt=first).delete()[0]
    for table in _DAY_TABLES:
        table.objects.filter(day__lt=first).delete()
    return RollupRun(rolled=rolled, pruned=pruned, span=computed)


def access_log_span_compute(*, first_day: date, last_day: date, now: datetime) -> AccessLogSpan:
    """Count the rolled-up opens of ``first_day`` to ``last_day`` per recording (distinct
    identities, the one identity when only one opened it, and the player's denials of it: a
    recording only refused has a row without opens) and per identity (distinct recordings,
    and how many of them nobody else opened), replacing the span's previous counts in one
    transaction.

    The recordings' rows (one per recording opened or refused in the span: half a million a
    month at a busy centre) are written by one ``INSERT … SELECT`` (``_SPAN_RECORDINGS``), which
    the ORM cannot say: building them as model instances took most of a minute there."""
    pairs = AccessLogDayOpen.objects.filter(day__gte=first_day, day__lte=last_day).order_by()
    with transaction.atomic():
        AccessLogSpan.objects.filter(first_day=first_day, last_day=last_day).delete()
        span = AccessLogSpan.objects.create(first_day=first_day, last_day=last_day, computed_at=now)
        days = [_day(first_day), _day(last_day)]
        # An IN list, not ``= ANY``: embedded mode's SQLite runs this too.
        not_found = sql.SQL(", ").join(sql.SQL("%s") for _ in NOT_FOUND_REASONS)
        with connection.cursor() as cursor:
            cursor.execute(
                _SPAN_RECORDINGS.format(not_found=not_found, **_report_names()).as_string(),
                [span.pk, *days, *days, *NOT_FOUND_REASONS],
            )
        sole = dict(
            AccessLogSpanRecording.objects.filter(span=span, people=1)
            .values("opener")
            .annotate(n=Count("id"))
            .order_by()
            .values_list("opener", "n")
        )
        AccessLogSpanIdentity.objects.bulk_create(
            (
                AccessLogSpanIdentity(
                    span=span,
                    identity=row["identity"],
                    recordings=row["n"],
                    opens=row["opens"],
                    sole_recordings=sole.get(row["identity"], 0),
                )
                for row in pairs.values("identity").annotate(
                    n=Count("recording_sid", distinct=True), opens=Sum("opens")
                )
            ),
            batch_size=_BATCH,
        )
    return span


def span_current(*, split: LogSplit, rolled: RolledDays) -> AccessLogSpan | None:
    """The span whose days are exactly ``split.days``, if it was counted after each of them
    was rolled up, else ``None``; one query, none when the days are not one run of days."""
    days = split.days
    if not days or (days[-1] - days[0]).days != len(days) - 1:
        return None
    span = AccessLogSpan.objects.filter(first_day=days[0], last_day=days[-1]).first()
    if span is None or any(rolled.at[day] > span.computed_at for day in days):
        return None
    return span


# --- Reading opens over a span ---------------------------------------------------------------
#
# Distinct counts over rolled-up days and live rows together need one aggregate over both.
# Raw SQL on purpose: the ORM cannot group or aggregate the result of ``union()``, nor write a
# common table expression (read here by both boxes, so the live rows are read once).
# Identifiers come from the models, quoted by psycopg's ``sql.Identifier``; every value is a
# query parameter.
#
# With a current span: the span's per-identity (per-recording) counts, plus the live opens
# grouped by (identity, recording) pair and then the same way, a live pair counted only when no
# rolled-up day of the span holds it (``fresh``). Without one: every rolled-up pair of the
# days and every live open, counted together.

# The live opens of one range of ``occurred_at``; the ranges are joined by UNION ALL, not OR,
# so each is one range scan of an index that holds the columns read (``accesslog_opened_at_idx``).
_RANGE = sql.SQL(
    "SELECT {log_identity} AS identity, {log_recording} AS recording_sid FROM {log}"
    " WHERE {action} = %s AND {outcome} = %s AND {occurred} >= %s"
)
_LIVE = sql.SQL(
    "SELECT identity, recording_sid, COUNT(*) AS opens,"
    " NOT EXISTS (SELECT 1 FROM {pairs} AS pair WHERE pair.{identity} = log.identity"
    " AND pair.{recording} = log.recording_sid AND pair.{day} BETWEEN %s AND %s) AS fresh"
    " FROM ({live}) AS log GROUP BY identity, recording_sid"
)
_SPAN_TOPS = sql.SQL(
    "WITH live AS ({live}),"
    " identities AS (SELECT identity AS key, SUM(recordings) AS n, SUM(opens) AS opens,"
    " ROW_NUMBER() OVER (ORDER BY SUM(recordings) DESC, SUM(opens) DESC, identity) AS rank"
    " FROM (SELECT {identity} AS identity, {recordings} AS recordings, {opens} AS opens"
    " FROM {by_identity} WHERE {span} = %s"
    " UNION ALL SELECT identity, COUNT(*) FILTER (WHERE fresh), SUM(opens)"
    " FROM live GROUP BY identity) AS opened GROUP BY identity ORDER BY rank LIMIT %s),"
    " recordings AS (SELECT recording_sid AS key, SUM(people) AS n, SUM(opens) AS opens,"
    " ROW_NUMBER() OVER (ORDER BY SUM(people) DESC, SUM(opens) DESC, recording_sid) AS rank"
    " FROM (SELECT {recording} AS recording_sid, {people} AS people, {opens} AS opens"
    " FROM {by_recording} WHERE {span} = %s"
    " AND ({people} > 1 OR {recording} IN (SELECT recording_sid FROM live))"
    " UNION ALL SELECT recording_sid, COUNT(*) FILTER (WHERE fresh), SUM(opens)"
    " FROM live GROUP BY recording_sid) AS opened GROUP BY recording_sid"
    " HAVING SUM(people) > 1 ORDER BY rank LIMIT %s)"
    " {tops}"
)
_PAIRS_TOPS = sql.SQL(
    "WITH opened AS ("
    "SELECT {identity} AS identity, {recording} AS recording_sid, {opens} AS opens"
    " FROM {pairs} WHERE {rolled}"
    " UNION ALL SELECT identity, recording_sid, 1 FROM ({live}) AS log),"
    " identities AS (SELECT identity AS key, COUNT(DISTINCT recording_sid) AS n,"
    " SUM(opens) AS opens, ROW_NUMBER() OVER (ORDER BY COUNT(DISTINCT recording_sid) DESC,"
    " SUM(opens) DESC, identity) AS rank FROM opened GROUP BY identity ORDER BY rank LIMIT %s),"
    " recordings AS (SELECT recording_sid AS key, COUNT(DISTINCT identity) AS n,"
    " SUM(opens) AS opens, ROW_NUMBER() OVER (ORDER BY COUNT(DISTINCT identity) DESC,"
    " SUM(opens) DESC, recording_sid) AS rank FROM opened GROUP BY recording_sid"
    " HAVING COUNT(DISTINCT identity) > 1 ORDER BY rank LIMIT %s)"
    " {tops}"
)
_TOPS = sql.SQL(
    "SELECT 'identity' AS box, key, n, opens, rank FROM identities"
    " UNION ALL SELECT 'recording', key, n, opens, rank FROM recordings ORDER BY box, rank"
)


def quoted_column(model: type[models.Model], name: str) -> sql.Identifier:
    """The column of ``model``'s field ``name``, quoted."""
    column = getattr(model._meta.get_field(name), "column", None)
    if not isinstance(column, str):  # a relation's reverse side has no column
        raise TypeError(f"{model.__name__}.{name} has no column")
    return sql.Identifier(column)


def _names() -> dict[str, sql.Composable]:
    """Every table and column the queries above name."""
    return {
        "pairs": sql.Identifier(AccessLogDayOpen._meta.db_table),
        "identity": quoted_column(AccessLogDayOpen, "identity"),
        "recording": quoted_column(AccessLogDayOpen, "recording_sid"),
        "day": quoted_column(AccessLogDayOpen, "day"),
        "log": sql.Identifier(AccessLog._meta.db_table),
        "log_identity": quoted_column(AccessLog, "identity"),
        "log_recording": quoted_column(AccessLog, "recording_sid"),
        "action": quoted_column(AccessLog, "action"),
        "outcome": quoted_column(AccessLog, "outcome"),
        "occurred": quoted_column(AccessLog, "occurred_at"),
        "by_identity": sql.Identifier(AccessLogSpanIdentity._meta.db_table),
        "by_recording": sql.Identifier(AccessLogSpanRecording._meta.db_table),
        "span": quoted_column(AccessLogSpanIdentity, "span"),
        "recordings": quoted_column(AccessLogSpanIdentity, "recordings"),
        "people": quoted_column(AccessLogSpanRecording, "people"),
        "opens": quoted_column(AccessLogSpanIdentity, "opens"),
    }


def _moment(value: datetime) -> Any:
    """``value`` as the database stores ``occurred_at`` (SQLite, in embedded mode, compares
    text)."""
    return AccessLog._meta.get_field("occurred_at").get_db_prep_value(value, connection)


def _day(value: date) -> Any:
    """``value`` as the database stores the rollup's days."""
    return AccessLogDayOpen._meta.get_field("day").get_db_prep_value(value, connection)


def _live(split: LogSplit, names: dict[str, sql.Composable]) -> tuple[sql.Composable, list[Any]]:
    """The opens of the live ranges of ``split`` (``_RANGE`` each), and their parameters."""
    parts: list[sql.Composable] = []
    params: list[Any] = []
    for start, end in split.ranges:
        part = _RANGE.format(**names)
        params += [AccessAction.URL_PROVIDER, AccessOutcome.ALLOWED, _moment(start)]
        if end is not None:
            part = sql.SQL("{} AND {} < %s").format(part, names["occurred"])
            params.append(_moment(end))
        parts.append(part)
    return sql.SQL(" UNION ALL ").join(parts), params


def _rolled(split: LogSplit, names: dict[str, sql.Composable]) -> tuple[sql.Composable, list[Any]]:
    """The rollup's opens of the days of ``split``: an ``IN`` list (``= ANY`` is PostgreSQL's
    only), or nothing."""
    if not split.days:
        return sql.SQL("1 = 0"), []
    listed = sql.SQL(", ").join(sql.SQL("%s") for _ in split.days)
    return sql.SQL("{} IN ({})").format(names["day"], listed), [_day(day) for day in split.days]


@dataclass(frozen=True)
class OpenedTops:
    """The dashboard's two boxes of opens: ``identities`` (``identity``, ``recordings``
    distinct, ``opens``) and ``recordings`` opened by more than one identity
    (``recording_sid``, ``people`` distinct, ``opens``), most first."""

    identities: list[dict[str, Any]]
    recordings: list[dict[str, Any]]


def opens_ranked(*, split: LogSplit, span: AccessLogSpan | None, limit: int) -> OpenedTops:
    """The ``limit`` identities that opened the most distinct recordings over ``split`` (then
    the most opens, then by name), and the ``limit`` recordings the most distinct identities
    opened (more than one). ``span``, when current for ``split.days`` (``span_current``),
    spares counting their pairs again. One query for both: the live opens are read once."""
    names = _names()
    live, live_params = _live(split, names)
    rolled, rolled_params = _rolled(split, names)
    if span is not None:
        query = _SPAN_TOPS.format(live=_LIVE.format(live=live, **names), tops=_TOPS, **names)
        params = [
            _day(span.first_day),
            _day(span.last_day),
            *live_params,
            span.pk,
            limit,
            span.pk,
            limit,
        ]
    else:
        query = _PAIRS_TOPS.format(live=live, rolled=rolled, tops=_TOPS, **names)
        params = [*rolled_params, *live_params, limit, limit]
    tops = OpenedTops(identities=[], recordings=[])
    with connection.cursor() as cursor:
        cursor.execute(query.as_string(), params)
        for box, key, n, opens, _rank in cursor.fetchall():
            # SUM answers numeric: the counts are whole numbers.
            if box == "identity":
                tops.identities.append({"identity": key, "recordings": int(n), "opens": int(opens)})
            else:
                tops.recordings.append(
                    {"recording_sid": key, "people": int(n), "opens": int(opens)}
                )
    return tops


# --- Reading the playback report's days ------------------------------------------------------
#
# The playback report (``audit.admin.report_selectors``) sums its per-listener figures with the
# ORM, from ``AccessLogDayListener`` and the live rows. Its distinct counts and its ranking of
# recordings need one aggregate over rolled-up days and live rows together, so they are raw SQL
# for the dashboard's reason (above). PostgreSQL only: embedded mode reads the log.

_PLAYER_RANGE = sql.SQL(
    "SELECT {log_identity} AS identity, {log_worker} AS worker_sid,"
    " {log_recording} AS recording_sid, {action} AS action, {outcome} AS outcome,"
    " {reason} AS reason_code FROM {log} WHERE {action} = ANY(%s) AND {occurred} >= %s"
)
# Distinct recordings among the opens, per ``{key}`` (an expression of the columns of
# ``opened``, with the tables ``{joins}`` adds: the grouping's key): grouped, then the groups
# counted, which PostgreSQL hashes (COUNT(DISTINCT) sorts every key's values).
_OPENED_DISTINCT = sql.SQL(
    "SELECT key, COUNT(*) FROM (SELECT {key} AS key, opened.recording_sid FROM ("
    "SELECT {identity} AS identity, {pair_worker} AS worker_sid,"
    " {recording} AS recording_sid FROM {pairs} WHERE {day} = ANY(%s)"
    " UNION ALL SELECT identity, worker_sid, recording_sid FROM ({live}) AS live"
    " WHERE action = %s AND outcome = %s) AS opened {joins} {keys} GROUP BY 1, 2) AS pairs"
    " GROUP BY key"
)
# Recordings by plays, then denials (not-found refusals are not denials), then SID in byte
# order: the playback report's order of its groups by recording.
_RECORDINGS_RANKED = sql.SQL(
    "SELECT recording_sid, SUM(plays) AS plays, SUM(denials) AS denials FROM ("
    "SELECT {recording} AS recording_sid, {opens} AS plays, 0 AS denials"
    " FROM {pairs} WHERE {day} = ANY(%s)"
    " UNION ALL SELECT {denial_recording}, 0, {denial_rows} FROM {denials}"
    " WHERE {day} = ANY(%s) AND NOT ({denial_reason} = ANY(%s))"
    " UNION ALL SELECT recording_sid,"
    " CASE WHEN action = %s AND outcome = %s THEN 1 ELSE 0 END,"
    " CASE WHEN outcome = %s AND NOT (reason_code = ANY(%s)) THEN 1 ELSE 0 END"
    " FROM ({live}) AS log) AS counted GROUP BY recording_sid"
    " HAVING SUM(plays) > 0 OR SUM(denials) > 0"
    ' ORDER BY plays DESC, denials DESC, recording_sid COLLATE "C" LIMIT %s'
)


# The same ranking when a span holds the whole days (``span_current``): the span's first
# recordings by its own index, with every recording the live rows touched; only those can be
# first once the live rows are added (a recording the live rows did not touch keeps its span
# figures, and the span's first ``limit`` are ahead of it on those already).
_RECORDINGS_RANKED_FROM_SPAN = sql.SQL(
    "WITH live AS (SELECT recording_sid,"
    " SUM(CASE WHEN action = %s AND outcome = %s THEN 1 ELSE 0 END) AS plays,"
    " SUM(CASE WHEN outcome = %s AND NOT (reason_code = ANY(%s)) THEN 1 ELSE 0 END) AS denials"
    " FROM ({live}) AS log GROUP BY recording_sid),"
    " first AS (SELECT {recording} AS recording_sid FROM {by_recording} WHERE {span} = %s"
    ' ORDER BY {opens} DESC, {span_denials} DESC, {recording} COLLATE "C" LIMIT %s),'
    " chosen AS (SELECT recording_sid FROM first UNION SELECT recording_sid FROM live)"
    " SELECT chosen.recording_sid, COALESCE(counted.{opens}, 0) + COALESCE(live.plays, 0)"
    " AS plays, COALESCE(counted.{span_denials}, 0) + COALESCE(live.denials, 0) AS denials"
    " FROM chosen LEFT JOIN {by_recording} AS counted ON counted.{span} = %s"
    " AND counted.{recording} = chosen.recording_sid"
    " LEFT JOIN live ON live.recording_sid = chosen.recording_sid"
    " WHERE COALESCE(counted.{opens}, 0) + COALESCE(live.plays, 0) > 0"
    " OR COALESCE(counted.{span_denials}, 0) + COALESCE(live.denials, 0) > 0"
    ' ORDER BY plays DESC, denials DESC, chosen.recording_sid COLLATE "C" LIMIT %s'
)


# Distinct recordings per group over a span's days, for groups of identities (a team whose
# people each belong to it alone): the recordings its people opened alone
# (``AccessLogSpanIdentity.sole_recordings``) plus the shared ones (more than one person
# opened them) that any of them opened, counted here from the pairs of the shared recordings
# only. ``%s::jsonb`` maps each identity to its group.
_SPAN_SHARED = sql.SQL(
    "SELECT key, COUNT(*) FROM (SELECT %s::jsonb ->> pair.{identity} AS key, pair.{recording}"
    " FROM {pairs} AS pair JOIN {by_recording} AS counted ON counted.{span} = %s"
    " AND counted.{people} > 1 AND counted.{recording} = pair.{recording}"
    " WHERE pair.{day} = ANY(%s) GROUP BY 1, 2) AS shared GROUP BY key"
)
# The live opens (each listener and recording once), with what the span knows of the
# recording: how many people opened it, and who when only one did.
_SPAN_LIVE_OPENS = sql.SQL(
    "SELECT opened.identity, opened.worker_sid, opened.recording_sid, counted.{people},"
    " counted.{opener} FROM (SELECT DISTINCT identity, worker_sid, recording_sid"
    " FROM ({live}) AS log WHERE action = %s AND outcome = %s) AS opened"
    " LEFT JOIN {by_recording} AS counted ON counted.{span} = %s"
    " AND counted.{recording} = opened.recording_sid"
)
# Who opened these (shared) recordings on the span's days.
_SPAN_OPENERS = sql.SQL(
    "SELECT DISTINCT {recording}, {identity} FROM {pairs}"
    " WHERE {recording} = ANY(%s) AND {day} = ANY(%s)"
)


# A span's recordings (``access_log_span_compute``): each recording opened on its days with
# its distinct openers, opens and the one opener when only one, and each refused one with its
# denials (not-found refusals aside), a recording both opened and refused in one row.
_SPAN_RECORDINGS = sql.SQL(
    "INSERT INTO {by_recording} ({span}, {recording}, {people}, {opens}, {span_denials},"
    " {opener}) SELECT %s, recording_sid, SUM(people), SUM(opens), SUM(denials), MAX(opener)"
    " FROM (SELECT {recording} AS recording_sid, COUNT(DISTINCT {identity}) AS people,"
    " SUM({opens}) AS opens, 0 AS denials, CASE WHEN COUNT(DISTINCT {identity}) = 1"
    " THEN MIN({identity}) ELSE '' END AS opener FROM {pairs}"
    " WHERE {day} BETWEEN %s AND %s GROUP BY {recording}"
    " UNION ALL SELECT {denial_recording}, 0, 0, SUM({denial_rows}), '' FROM {denials}"
    " WHERE {day} BETWEEN %s AND %s AND {denial_reason} NOT IN ({not_found})"
    " GROUP BY {denial_recording}) AS counted GROUP BY recording_sid"
)


def _report_names() -> dict[str, sql.Composable]:
    """The tables and columns of the report's queries, with the dashboard's."""
    return {
        **_names(),
        "pair_worker": quoted_column(AccessLogDayOpen, "worker_sid"),
        "log_worker": quoted_column(AccessLog, "worker_sid"),
        "reason": quoted_column(AccessLog, "reason_code"),
        "denials": sql.Identifier(AccessLogDayDenial._meta.db_table),
        "denial_recording": quoted_column(AccessLogDayDenial, "recording_sid"),
        "denial_reason": quoted_column(AccessLogDayDenial, "reason_code"),
        "denial_rows": quoted_column(AccessLogDayDenial, "rows"),
        "span_denials": quoted_column(AccessLogSpanRecording, "denials"),
        "opener": quoted_column(AccessLogSpanRecording, "opener"),
        "sole": quoted_column(AccessLogSpanIdentity, "sole_recordings"),
    }


def _live_player(
    split: LogSplit, names: dict[str, sql.Composable]
) -> tuple[sql.Composable, list[Any]]:
    """The player's rows of the live ranges of ``split`` (``_PLAYER_RANGE`` each)."""
    parts: list[sql.Composable] = []
    params: list[Any] = []
    for start, end in split.ranges:
        part = _PLAYER_RANGE.format(**names)
        params += [list(PLAYER_ACTIONS), _moment(start)]
        if end is not None:
            part = sql.SQL("{} AND {} < %s").format(part, names["occurred"])
            params.append(_moment(end))
        parts.append(part)
    return sql.SQL(" UNION ALL ").join(parts), params


@dataclass(frozen=True)
class GroupKey:
    """A report grouping's key as SQL over the columns ``identity`` and ``worker_sid`` of a
    row named ``opened``, with the joins it needs (no placeholders: only names)."""

    expression: sql.Composable
    joins: sql.Composable = field(default_factory=lambda: sql.SQL(""))


def opened_distinct(
    *, split: LogSplit, key: GroupKey, keys: Collection[str] | None = None
) -> dict[str, int]:
    """Per group (``key``), how many distinct recordings were opened over ``split`` (its
    rolled-up days and live ranges); only the groups ``keys`` names, if given. One query."""
    names = _report_names()
    live, live_params = _live_player(split, names)
    chosen: sql.Composable = sql.SQL("")
    if keys is not None:
        chosen = sql.SQL("WHERE {} = ANY(%s)").format(key.expression)
    query = _OPENED_DISTINCT.format(
        live=live, key=key.expression, joins=key.joins, keys=chosen, **names
    )
    days = [_day(day) for day in split.days]
    params: list[Any] = [days, *live_params, AccessAction.URL_PROVIDER, AccessOutcome.ALLOWED]
    if keys is not None:
        params.append(list(keys))
    with connection.cursor() as cursor:
        cursor.execute(query.as_string(), params)
        return dict(cursor.fetchall())


def span_opened_distinct(
    *,
    split: LogSplit,
    span: AccessLogSpan,
    listener_key: Callable[[str, str], str],
    identity_key: Mapping[str, str] | None = None,
) -> dict[str, int] | None:
    """Per group, how many distinct recordings were opened over ``split``, whose days are
    ``span``'s (``span_current``): the span's counts, plus each recording the live rows
    opened that no one of the group opened on the span's days.

    ``listener_key`` gives a live row's group from its identity and worker SID;
    ``identity_key`` the group of each identity of the span (a team, each person in one),
    or ``None`` to group by identity (a person). ``None`` when an identity of the span has
    no group in ``identity_key`` (the caller counts otherwise). Three or four queries."""
    names = _report_names()
    by_identity = AccessLogSpanIdentity.objects.filter(span=span)
    counted: dict[str, int] = {}
    if identity_key is None:
        for identity, recordings in by_identity.values_list("identity", "recordings"):
            counted[identity] = recordings
    else:
        for identity, sole in by_identity.values_list("identity", "sole_recordings"):
            if identity not in identity_key:
                return None
            counted[identity_key[identity]] = counted.get(identity_key[identity], 0) + sole
        query = _SPAN_SHARED.format(**names)
        with connection.cursor() as cursor:
            days = [_day(day) for day in split.days]
            cursor.execute(query.as_string(), [json.dumps(identity_key), span.pk, days])
            for key, n in cursor.fetchall():
                counted[key] = counted.get(key, 0) + n

    def group_of(identity: str) -> str:
        return identity if identity_key is None else identity_key.get(identity, "")

    live, live_params = _live_player(split, names)
    fresh: set[tuple[str, str]] = set()
    shared: dict[str, set[str]] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            _SPAN_LIVE_OPENS.format(live=live, **names).as_string(),
            [*live_params, AccessAction.URL_PROVIDER, AccessOutcome.ALLOWED, span.pk],
        )
        for identity, worker_sid, recording_sid, people, opener in cursor.fetchall():
            key = listener_key(identity, worker_sid)
            if not people:  # not opened on the span's days
                fresh.add((key, recording_sid))
            elif people == 1:
                if group_of(opener) != key:
                    fresh.add((key, recording_sid))
            else:
                shared.setdefault(recording_sid, set()).add(key)
        if shared:
            openers: dict[str, set[str]] = {}
            cursor.execute(
                _SPAN_OPENERS.format(**names).as_string(),
                [list(shared), [_day(day) for day in split.days]],
            )
            for recording_sid, identity in cursor.fetchall():
                openers.setdefault(recording_sid, set()).add(group_of(identity))
            for recording_sid, keys in shared.items():
                fresh.update(
                    (key, recording_sid)
                    for key in keys
                    if key not in openers.get(recording_sid, ())
                )
    for key, _ in fresh:
        counted[key] = counted.get(key, 0) + 1
    return counted


def recordings_ranked(
    *, split: LogSplit, limit: int, span: AccessLogSpan | None = None
) -> list[tuple[str, int, int]]:
    """The first ``limit`` recordings of ``split`` by plays (opens), then denials (not-found
    refusals aside), then SID: ``(sid, plays, denials)``. Recordings with neither are not
    ranked. ``span``, when current for ``split.days`` (``span_current``), spares adding up a
    month of opens per recording. One query."""
    names = _report_names()
    live, live_params = _live_player(split, names)
    counted = [
        AccessAction.URL_PROVIDER,
        AccessOutcome.ALLOWED,
        AccessOutcome.DENIED,
        list(NOT_FOUND_REASONS),
    ]
    if span is not None:
        query = _RECORDINGS_RANKED_FROM_SPAN.format(live=live, **names)
        params: list[Any] = [*counted, *live_params, span.pk, limit, span.pk, limit]
    else:
        days = [_day(day) for day in split.days]
        query = _RECORDINGS_RANKED.format(live=live, **names)
        params = [days, days, list(NOT_FOUND_REASONS), *counted, *live_params, limit]
    with connection.cursor() as cursor:
        cursor.execute(query.as_string(), params)
        return [(sid, int(plays), int(denials)) for sid, plays, denials in cursor.fetchall()]
