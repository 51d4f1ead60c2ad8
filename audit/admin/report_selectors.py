"""Reads for the playback report (issue 14): who opened which recordings in a period, how
often, roughly how long they listened, and what they were refused and why, grouped by person,
by team or by recording.

The report aggregates in the database: one grouped query for the figures, one for the denials
by reason, one to name the groups (people, or recordings' facts), whatever the number of log
rows. Teams are the listener's team as the portal's Flex worker directory knows it
(``FlexWorker.team_name``, found by the row's worker SID, else by its identity); a recording's
own handling teams are shown beside it in the grouping by recording. On PostgreSQL the
directory is read once and handed to the grouping query as two JSON objects (worker SID to
team, identity to team), so each log row finds its team with one lookup in a parameter
instead of two correlated subqueries into the directory: a month of a busy centre (a million
rows) was twenty seconds of those lookups (``bench/playback_report.py``).

A report of the whole centre over whole days reads those days from the daily rollup
(``audit.rollups``) instead of the log, on PostgreSQL: by person and by team, each group's
sums are the rollup's plus the log's rest, and the distinct counts (recordings, people) are
one query over the rollup's (identity, worker, recording) pairs and the live opens; by
recording, the rollup ranks the recordings (plays, then denials) and the log, read by SID,
gives the figures of the ones shown. The figures are the same as the log's
(``audit/tests/test_playback_report_rollup.py`` compares them); a row that arrived after its
day was rolled up shows after the next hourly run.

Listening time is an estimate, and only where the portal's media endpoint served the file:
each ``media_playback`` summary row holds the bytes one link served, and the recording's
duration and stored size turn bytes into seconds (``bytes * duration / size``, at most the
duration). Presigned S3 links are served by S3, which tells the portal nothing; re-fetched
ranges (seeking back) count again. So the figure says how much audio was sent, not heard.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from django.db import connection, transaction
from django.db.models import (
    CharField,
    Count,
    F,
    FloatField,
    Func,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.expressions import RawSQL
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce, Collate, Least
from django.urls import reverse
from django.utils import timezone
from psycopg import sql

from audit.labels import NOT_FOUND_REASONS, PLAYER_ACTIONS, reason_label
from audit.models import (
    AccessAction,
    AccessLog,
    AccessLogDay,
    AccessLogDayDenial,
    AccessLogDayListener,
    AccessOutcome,
)
from audit.people import people_describe, people_match
from audit.rollups import (
    GroupKey,
    LogSplit,
    RolledDays,
    log_split,
    opened_distinct,
    quoted_column,
    recordings_ranked,
    span_current,
    span_opened_distinct,
)
from recordings.models import FlexWorker, Recording

GROUPINGS: dict[str, str] = {
    "person": "Person",
    "team": "Team (the listener's)",
    "recording": "Recording",
}
# Groups shown on the page and in the PDF; the CSV has them all.
PAGE_GROUP_LIMIT = 500
# Memory each sort or hash of one report may use on PostgreSQL (:func:`_report_settings`).
REPORT_WORK_MEM = "64MB"
NO_TEAM = ""

# Conditions on a log row, or on a rollup row of the same action, outcome and reason.
_OPEN = Q(action=AccessAction.URL_PROVIDER, outcome=AccessOutcome.ALLOWED)
_DENIED = Q(outcome=AccessOutcome.DENIED) & ~Q(reason_code__in=NOT_FOUND_REASONS)
_NOT_FOUND = Q(reason_code__in=NOT_FOUND_REASONS)
_ERROR = Q(outcome=AccessOutcome.ERROR)
_PLAYBACK = Q(action=AccessAction.MEDIA_PLAYBACK)


@dataclass(frozen=True)
class ReportFilters:
    """What the report covers: ``since`` (inclusive) to ``until`` (exclusive, or open), a
    person as the officer typed them, a listener's team name, one recording SID."""

    since: datetime
    until: datetime | None = None
    person: str = ""
    team: str = ""
    recording_sid: str = ""

    def detail(self) -> dict[str, str]:
        """The filters as the audit row's ``detail`` and the PDF's header keep them."""
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat() if self.until else "",
            "person": self.person,
            "team": self.team,
            "recording": self.recording_sid,
        }


@dataclass(frozen=True)
class DenialCount:
    """Denials of one reason within a group, with the reason's label."""

    reason_code: str
    label: str
    count: int
    log_link: str


@dataclass
class ReportGroup:
    """One row of the report: a person (``key`` an identity), a team (a team name, ``""``
    for listeners the directory does not place in a team) or a recording (its SID)."""

    key: str
    label: str
    plays: int
    denials: int
    not_found: int
    errors: int
    recordings: int
    people: int
    playbacks_measured: int
    bytes_served: int
    listened_seconds: float
    first_at: datetime | None
    last_at: datetime | None
    log_link: str
    denial_reasons: list[DenialCount] = field(default_factory=list)
    recording: Recording | None = None
    team: str = ""


@dataclass
class PlaybackReport:
    """The report: its filters and grouping, the groups (most plays first) and whether more
    groups exist than were asked for."""

    filters: ReportFilters
    group_by: str
    groups: list[ReportGroup]
    truncated: bool


def _player_rows(filters: ReportFilters) -> QuerySet[AccessLog]:
    """The player's and media endpoint's rows the filters cover (the occurred_at index bounds
    the scan; the person and team become identity and worker SID lists first)."""
    rows = AccessLog.objects.filter(action__in=PLAYER_ACTIONS, occurred_at__gte=filters.since)
    if filters.until is not None:
        rows = rows.filter(occurred_at__lt=filters.until)
    if filters.recording_sid:
        rows = rows.filter(recording_sid=filters.recording_sid)
    if filters.person:
        found = people_match(term=filters.person)
        rows = rows.filter(
            Q(identity__in=sorted(found.identities)) | Q(worker_sid__in=sorted(found.worker_sids))
        )
    if filters.team:
        members = FlexWorker.objects.filter(team_name__iexact=filters.team).values_list(
            "sid", "friendly_name"
        )
        sids = sorted({sid for sid, _ in members})
        names = sorted({name for _, name in members if name})
        rows = rows.filter(Q(worker_sid__in=sids) | Q(identity__in=names))
    return rows


class _JsonText(Func):
    """``object ->> key``: the text a PostgreSQL ``jsonb`` object holds under ``key`` (a
    column), ``NULL`` when it has no such key."""

    template = "(%(expressions)s)"
    arg_joiner = " ->> "
    output_field = CharField()


def team_directory() -> tuple[dict[str, str], dict[str, str]]:
    """The worker directory's teams by worker SID, and by identity (``friendly_name``; where
    several workers share one, a current worker before a deleted one, then the most recently
    synced)."""
    by_sid: dict[str, str] = {}
    by_identity: dict[str, str] = {}
    workers = FlexWorker.objects.values_list("sid", "friendly_name", "team_name", "deleted_at")
    # Deleted ones first, then oldest sync first: the worker written last wins its identity.
    for sid, identity, team, _ in sorted(
        workers.order_by("synced_at"), key=lambda worker: worker[3] is None
    ):
        by_sid[sid] = team
        if identity:
            by_identity[identity] = team
    return by_sid, by_identity


def _listener_team() -> Coalesce:
    """The team of a row's listener, from the worker directory: by worker SID, else identity
    (see the module docstring for the PostgreSQL form)."""
    if connection.vendor == "postgresql":
        by_sid_map, by_identity_map = team_directory()
        return Coalesce(
            _JsonText(RawSQL("%s::jsonb", (json.dumps(by_sid_map),)), F("worker_sid")),
            _JsonText(RawSQL("%s::jsonb", (json.dumps(by_identity_map),)), F("identity")),
            Value(NO_TEAM),
            output_field=CharField(),
        )
    by_sid = FlexWorker.objects.filter(sid=OuterRef("worker_sid")).values("team_name")[:1]
    by_identity = (
        FlexWorker.objects.filter(friendly_name=OuterRef("identity"))
        .exclude(friendly_name="")
        .order_by("deleted_at", "-synced_at")
        .values("team_name")[:1]
    )
    return Coalesce(Subquery(by_sid), Subquery(by_identity), Value(NO_TEAM))


def _listened_seconds() -> Coalesce:
    """A ``media_playback`` row's seconds of audio sent: its bytes as a share of the stored
    size, times the duration, at most the whole duration; ``NULL`` (left out of the sum)
    when the recording, its duration or its size is unknown.

    Summaries keep that figure (``audio_ms_sent`` in ``detail``, written by
    ``recordings.playback.links``); only rows written before they did look their recording up
    (a subquery per row: a month's 150,000 summaries were most of a report's time)."""
    estimate = (
        Recording.objects.filter(
            sid=OuterRef("recording_sid"), media_size__gt=0, duration_seconds__isnull=False
        )
        # The SID is unique: no need to sort (the model's ordering) for each playback row.
        .order_by()
        .annotate(
            seconds=Least(
                Cast(OuterRef("bytes_served"), FloatField())
                * Cast(F("duration_seconds"), FloatField())
                / Cast(F("media_size"), FloatField()),
                Cast(F("duration_seconds"), FloatField()),
            )
        )
        .values("seconds")[:1]
    )
    return Coalesce(
        Cast(KT("detail__audio_ms_sent"), FloatField()) / Value(1000.0),
        Subquery(estimate, output_field=FloatField()),
        output_field=FloatField(),
    )


_GROUP_FIELD = {"person": "identity", "recording": "recording_sid"}
KEY = "group_key"


def _group_key(group_by: str) -> Any:
    """The expression the report groups by (:func:`_grouped`); built once per report, as the
    team's reads the worker directory.

    On PostgreSQL the key (an identity, a SID or a team) is grouped under the "C" collation:
    grouping with distinct counts sorts the rows by the key, and byte order sorts several
    times faster than the database's language collation (measured in
    ``bench/playback_report.py``); the groups are the same, since keys are compared for
    equality only. Groups of equal plays and denials are then listed in byte order, as
    Python sorts them when it adds the rolled-up days' figures to the live ones.
    """
    key = _listener_team() if group_by == "team" else F(_GROUP_FIELD[group_by])
    if connection.vendor == "postgresql":
        return Collate(key, "C")
    return key  # SQLite compares text byte by byte


def _grouped(rows: QuerySet[Any], key: Any) -> QuerySet[Any, dict[str, Any]]:
    """``rows`` (of the log or of its rollup) grouped by ``key`` (:func:`_group_key`), named
    :data:`KEY`."""
    return rows.annotate(**{KEY: key}).values(KEY)


def _live_figures() -> dict[str, Any]:
    """The figures of a group of log rows that add up across days (the distinct counts do
    not: they are counted apart)."""
    return {
        "plays": Count("id", filter=_OPEN),
        "denials": Count("id", filter=_DENIED),
        "not_found": Count("id", filter=_NOT_FOUND),
        "errors": Count("id", filter=_ERROR),
        "playbacks_measured": Count("id", filter=_PLAYBACK),
        "bytes_sent": Coalesce(Sum("bytes_served", filter=_PLAYBACK), 0),
        "listened_seconds": Coalesce(
            Sum(_listened_seconds(), filter=_PLAYBACK), Value(0.0), output_field=FloatField()
        ),
        "first_at": Min("occurred_at"),
        "last_at": Max("occurred_at"),
    }


def _rolled_figures() -> dict[str, Any]:
    """:func:`_live_figures` of a group of ``AccessLogDayListener`` rows (each counts
    ``rows`` log rows)."""
    return {
        "plays": Coalesce(Sum("rows", filter=_OPEN), 0),
        "denials": Coalesce(Sum("rows", filter=_DENIED), 0),
        "not_found": Coalesce(Sum("rows", filter=_NOT_FOUND), 0),
        "errors": Coalesce(Sum("rows", filter=_ERROR), 0),
        "playbacks_measured": Coalesce(Sum("rows", filter=_PLAYBACK), 0),
        "bytes_sent": Coalesce(Sum("bytes_served", filter=_PLAYBACK), 0),
        "listened_seconds": Coalesce(
            Sum("listened_seconds", filter=_PLAYBACK), Value(0.0), output_field=FloatField()
        ),
        "first_at": Min("first_at"),
        "last_at": Max("last_at"),
    }


_SUMMED = ("plays", "denials", "not_found", "errors", "playbacks_measured", "bytes_sent")


def _figures_added(into: dict[str, dict[str, Any]], rows: Iterable[dict[str, Any]]) -> None:
    """Add each group's figures of ``rows`` to the same group's in ``into``."""
    for row in rows:
        held = into.get(row[KEY])
        if held is None:
            into[row[KEY]] = dict(row)
            continue
        for name in _SUMMED:
            held[name] += row[name]
        held["listened_seconds"] = float(held["listened_seconds"]) + float(row["listened_seconds"])
        held["first_at"] = min(held["first_at"], row["first_at"])
        held["last_at"] = max(held["last_at"], row["last_at"])


def _group_order(row: dict[str, Any]) -> tuple[int, int, str]:
    """Most plays first, then most denials, then the key (byte order, as the database sorts
    it: :func:`_group_key`)."""
    return (-row["plays"], -row["denials"], row[KEY])


def _log_link(filters: ReportFilters, **params: str) -> str:
    """The access log's list filtered to what a report cell counts (the team is not a log
    filter: a team's rows are reached through its people)."""
    query: dict[str, str] = {"since": filters.since.strftime("%Y-%m-%dT%H:%M:%S")}
    if filters.until is not None:
        query["until"] = filters.until.strftime("%Y-%m-%dT%H:%M:%S")
    if filters.person and "identity" not in params:
        query["q"] = filters.person
    if filters.recording_sid:
        query["recording"] = filters.recording_sid
    query.update(params)
    return reverse("admin:audit_accesslog_changelist") + "?" + urlencode(query)


def _group_log_params(group_by: str, key: str) -> dict[str, str]:
    if group_by == "person":
        return {"identity": key}
    if group_by == "recording":
        return {"recording": key}
    return {}


@contextmanager
def _report_settings() -> Iterator[None]:
    """The report's queries without PostgreSQL's JIT compilation, and with room to hash.

    The grouping query's estimated cost is always high (a subquery per playback row), so
    PostgreSQL compiles it to machine code first: a large share of a month's report in
    ``bench/playback_report.py`` (see its output), more than the compiled code saves. The
    rollup's distinct counts group a month of (listener, recording) pairs: with the default
    ``work_mem`` (4 MB) PostgreSQL sorts them on disk, with :data:`REPORT_WORK_MEM` it hashes
    them in memory (this report only: an officer's page, not the player's requests).
    ``SET LOCAL`` keeps both settings to this transaction."""
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL jit = off; SET LOCAL work_mem = '{REPORT_WORK_MEM}'")
        yield


def playback_report(
    *,
    filters: ReportFilters,
    group_by: str,
    limit: int | None = PAGE_GROUP_LIMIT,
    from_rollup: bool = True,
) -> PlaybackReport:
    """The playback report for ``filters`` grouped ``by`` person, team or recording, the
    groups with the most plays first (at most ``limit``; ``None``: all of them).

    The figures are the log's whichever way they are read. On PostgreSQL, a report of the
    whole centre (no person, team or recording filter) reads its whole rolled-up days from the
    daily rollup (``audit.rollups``; ``from_rollup=False`` reads the log alone) and the rest of
    its period from the log: by person or team (:func:`_report_rolled`), each group's sums are
    the rollup's plus the log's, and its distinct recordings come from the dashboard's span
    when the days are its own, else from one query over the days' pairs and the live opens;
    by recording (:func:`_report_ranked`), the rollup (or the span) ranks the recordings and
    the log gives the shown ones' figures. A filtered report, or one by recording of fewer
    groups than ``limit``, reads the log: its rows are few, or its order needs groups the
    rollup does not rank. From the log alone, three queries whatever it holds: the figures per
    group, the denials per group and reason, and the names of the groups. A team filter or
    grouping also reads the directory's teams, and on PostgreSQL one more statement sets the
    transaction's JIT and memory (:func:`_report_settings`).
    """
    if group_by not in GROUPINGS:
        raise ValueError(f"unknown grouping {group_by!r}")
    with _report_settings():
        found = _rolled_split(filters) if from_rollup else None
        if found is not None and group_by != "recording":
            split, rolled = found
            return _report_rolled(
                filters=filters, group_by=group_by, limit=limit, split=split, rolled=rolled
            )
        if found is not None and limit is not None:
            split, rolled = found
            span = span_current(split=split, rolled=rolled)
            ranked = recordings_ranked(split=split, limit=limit + 1, span=span)
            if len(ranked) > limit:
                shown = [sid for sid, _, _ in ranked[:limit]]
                return _report_ranked(filters=filters, recordings=shown, split=split)
        return _report(filters=filters, group_by=group_by, limit=limit)


def _rolled_split(filters: ReportFilters) -> tuple[LogSplit, RolledDays] | None:
    """The report's period split into rolled-up days and live ranges (``audit.rollups``),
    with when each day was rolled up, or ``None`` when the rollup cannot serve it: not
    PostgreSQL, a filtered report, or no whole day of the period rolled up. A day holding
    playback summaries without their audio figure (written before summaries kept it) stays
    live: their estimate needs the recording. One query."""
    if connection.vendor != "postgresql" or filters.person or filters.team or filters.recording_sid:
        return None
    last = (filters.until or timezone.now()).astimezone(UTC).date()
    unmeasured = AccessLogDayListener.objects.filter(unmeasured__gt=0).values("day")
    rolled = RolledDays(
        at=dict(
            AccessLogDay.objects.filter(
                day__gte=filters.since.astimezone(UTC).date(), day__lte=last
            )
            .exclude(day__in=unmeasured)
            .values_list("day", "rolled_up_at")
        )
    )
    split = log_split(since=filters.since, until=filters.until or timezone.now(), rolled=rolled.at)
    if not split.days:
        return None
    if filters.until is not None:
        # The last live range is open-ended: it ends where the report does.
        *ranges, (start, _) = split.ranges
        split = LogSplit(days=split.days, ranges=(*ranges, (start, filters.until)))
    return split, rolled


def _live_rows(split: LogSplit) -> QuerySet[AccessLog]:
    """The player's rows of ``split``'s live ranges, in a report of the whole centre (the
    only kind the rollup serves). The ranges already start and end where the report does:
    alone, each is one range of the ``occurred_at`` index (with the report's own bounds
    around them, PostgreSQL reads the index from the report's start instead)."""
    return AccessLog.objects.filter(action__in=PLAYER_ACTIONS).filter(split.live)


def _log_figures(rows: QuerySet[AccessLog], key: Any) -> QuerySet[AccessLog, dict[str, Any]]:
    """Every figure of each group of log ``rows``, the distinct counts included, in the
    report's order."""
    return (
        _grouped(rows, key)
        .annotate(
            **_live_figures(),
            recordings=Count("recording_sid", filter=_OPEN, distinct=True),
            people=Count("identity", filter=_OPEN, distinct=True),
        )
        .order_by("-plays", "-denials", KEY)
    )


def _report(*, filters: ReportFilters, group_by: str, limit: int | None) -> PlaybackReport:
    """The report from the log alone."""
    rows = _player_rows(filters)
    key = _group_key(group_by)
    figures = _log_figures(rows, key)
    found = list(figures if limit is None else figures[: limit + 1])
    truncated = limit is not None and len(found) > limit
    found = found[:limit] if limit is not None else found
    # Without a limit every group is wanted: no list of keys (it could be long) to filter on.
    shown = [row[KEY] for row in found] if limit is not None else None
    reasons = _denial_reasons(rows, group_by, key, shown, filters) if found else {}
    return _built(filters, group_by, found, reasons, truncated)


def _report_ranked(
    *, filters: ReportFilters, recordings: list[str], split: LogSplit
) -> PlaybackReport:
    """The report by recording of the ``recordings`` the rollup ranked first (more were
    ranked): their figures from the log (a few rows each, found by SID), their denials from
    the rollup's days and the log's rest."""
    rows = _player_rows(filters).filter(recording_sid__in=recordings)
    key = _group_key("recording")
    found = list(_log_figures(rows, key))
    live = _live_rows(split).filter(recording_sid__in=recordings)
    reasons: dict[str, list[DenialCount]] = {}
    _reasons_added(reasons, _live_denials(live.annotate(**{KEY: key}), KEY), "recording", filters)
    rolled = (
        _grouped(
            AccessLogDayDenial.objects.filter(
                day__in=split.days, recording_sid__in=recordings
            ).exclude(reason_code__in=NOT_FOUND_REASONS),
            key,
        )
        .annotate(count=Sum("rows"))
        .values(KEY, "reason_code", "count")
        .order_by()
    )
    _reasons_added(reasons, rolled, "recording", filters)
    return _built(filters, "recording", found, reasons, truncated=True)


def _report_rolled(
    *,
    filters: ReportFilters,
    group_by: str,
    limit: int | None,
    split: LogSplit,
    rolled: RolledDays,
) -> PlaybackReport:
    """The report by person or team from the rollup's days of ``split`` and the log's rest.

    The figures and denials are read per listener (identity and worker: a few thousand rows
    however many log rows) and added up per group here, the team found by
    :func:`_listener_key`; the people of a group are its listeners' identities that played
    something. Then the distinct recordings of the groups shown: from the dashboard's span
    when it holds exactly these days and each person is in one group
    (``audit.rollups.span_opened_distinct``), else counted over the days' pairs."""
    key_of = _listener_key(group_by)
    live = _live_rows(split)
    listeners = AccessLogDayListener.objects.filter(day__in=split.days)
    listener = ("identity", "worker_sid")
    totals: dict[str, dict[str, Any]] = {}
    people: dict[str, set[str]] = {}
    groups_of: dict[str, set[str]] = {}  # each player's groups
    for rows in (
        listeners.values(*listener).annotate(**_rolled_figures()).order_by(),
        live.values(*listener).annotate(**_live_figures()).order_by(),
    ):
        keyed = [{**row, KEY: key_of(row["identity"], row["worker_sid"])} for row in rows]
        _figures_added(totals, keyed)
        for row in keyed:
            if row["plays"]:
                people.setdefault(row[KEY], set()).add(row["identity"])
                groups_of.setdefault(row["identity"], set()).add(row[KEY])
    ordered = sorted(totals.values(), key=_group_order)
    found = ordered if limit is None else ordered[:limit]
    truncated = limit is not None and len(ordered) > limit
    if not found:
        return _built(filters, group_by, found, {}, truncated)
    shown = [row[KEY] for row in found] if limit is not None else None
    recordings = _recordings_per_group(
        split=split, rolled=rolled, group_by=group_by, key_of=key_of, groups_of=groups_of
    )
    if recordings is None:
        recordings = opened_distinct(split=split, key=_group_key_sql(group_by), keys=shown)
    for row in found:
        row["recordings"] = recordings.get(row[KEY], 0)
        row["people"] = len(people.get(row[KEY], ()))
    denials = (
        listeners.filter(_DENIED).values(*listener, "reason_code").annotate(count=Sum("rows")),
        _live_denials(live, *listener),
    )
    reasons: dict[str, list[DenialCount]] = {}
    for counted in denials:
        if shown is not None and group_by == "person":
            counted = counted.filter(identity__in=shown)
        _reasons_added(
            reasons,
            ({**row, KEY: key_of(row["identity"], row["worker_sid"])} for row in counted),
            group_by,
            filters,
        )
    return _built(filters, group_by, found, reasons, truncated)


def _recordings_per_group(
    *,
    split: LogSplit,
    rolled: RolledDays,
    group_by: str,
    key_of: Callable[[str, str], str],
    groups_of: dict[str, set[str]],
) -> dict[str, int] | None:
    """The distinct recordings per group from the dashboard's span, or ``None`` when it
    cannot tell: no current span of exactly these days, or (by team) a person who played
    in two teams (as two workers), whose span counts cannot be split between them."""
    span = span_current(split=split, rolled=rolled)
    if span is None:
        return None
    if group_by == "person":
        return span_opened_distinct(split=split, span=span, listener_key=key_of)
    if any(len(groups) > 1 for groups in groups_of.values()):
        return None
    identity_key = {identity: next(iter(groups)) for identity, groups in groups_of.items()}
    return span_opened_distinct(
        split=split, span=span, listener_key=key_of, identity_key=identity_key
    )


def _listener_key(group_by: str) -> Callable[[str, str], str]:
    """The group of a listener (identity, worker SID): the identity, or its team as
    :func:`_listener_team` finds it in SQL (the directory read once)."""
    if group_by == "person":
        return lambda identity, worker_sid: identity
    by_sid, by_identity = team_directory()

    def team(identity: str, worker_sid: str) -> str:
        if worker_sid in by_sid:
            return by_sid[worker_sid]
        return by_identity.get(identity, NO_TEAM)

    return team


def _group_key_sql(group_by: str) -> GroupKey:
    """:func:`_group_key` as SQL over a row ``opened`` (``identity``, ``worker_sid``), for the
    rollup's distinct counts (``audit.rollups.opened_distinct``). A team is found as
    :func:`team_directory` finds it, by joining the directory: by worker SID, else by the
    identity's current worker, then the most recently synced. A join rather than
    :func:`_listener_team`'s JSON lookups: those cost more per pair than the join over a
    month's half a million pairs (``bench/admin_scale.py``)."""
    if group_by == "person":
        return GroupKey(sql.SQL("opened.identity"))
    workers = sql.Identifier(FlexWorker._meta.db_table)
    column = {
        name: quoted_column(FlexWorker, name)
        for name in ("sid", "friendly_name", "team_name", "deleted_at", "synced_at")
    }
    joins = sql.SQL(
        "LEFT JOIN {workers} AS by_sid ON by_sid.{sid} = opened.worker_sid"
        " LEFT JOIN (SELECT DISTINCT ON ({friendly_name}) {friendly_name}, {team_name}"
        " FROM {workers} WHERE {friendly_name} <> ''"
        " ORDER BY {friendly_name}, {deleted_at} IS NOT NULL, {synced_at} DESC) AS by_identity"
        " ON by_identity.{friendly_name} = opened.identity"
    ).format(workers=workers, **column)
    expression = sql.SQL("COALESCE(by_sid.{team}, by_identity.{team}, {none})").format(
        team=column["team_name"], none=sql.Literal(NO_TEAM)
    )
    return GroupKey(expression, joins)


def _built(
    filters: ReportFilters,
    group_by: str,
    found: list[dict[str, Any]],
    reasons: dict[str, list[DenialCount]],
    truncated: bool,
) -> PlaybackReport:
    """The report of the groups' figures ``found`` and their denial ``reasons``, named."""
    groups = [
        ReportGroup(
            key=row[KEY],
            label=row[KEY],
            plays=row["plays"],
            denials=row["denials"],
            not_found=row["not_found"],
            errors=row["errors"],
            recordings=row["recordings"],
            people=row["people"],
            playbacks_measured=row["playbacks_measured"],
            bytes_served=row["bytes_sent"],
            listened_seconds=float(row["listened_seconds"]),
            first_at=row["first_at"],
            last_at=row["last_at"],
            log_link=_log_link(filters, **_group_log_params(group_by, row[KEY])),
            denial_reasons=sorted(
                reasons.get(row[KEY], []), key=lambda denied: (-denied.count, denied.reason_code)
            ),
        )
        for row in found
    ]
    if found:
        _name_groups(groups, group_by)
    return PlaybackReport(filters=filters, group_by=group_by, groups=groups, truncated=truncated)


def _denial_reasons(
    rows: QuerySet[AccessLog],
    group_by: str,
    key: Any,
    keys: list[str] | None,
    filters: ReportFilters,
) -> dict[str, list[DenialCount]]:
    """The denials of each group of ``rows`` by reason: one query."""
    denied = rows.filter(_DENIED)
    if keys is not None and group_by != "team":
        # Only the groups shown (the page's limit); a team's key is computed, not a column.
        denied = denied.filter(**{f"{_GROUP_FIELD[group_by]}__in": keys})
    counted = (
        _grouped(denied, key).annotate(count=Count("id")).values(KEY, "reason_code", "count")
    ).order_by()
    reasons: dict[str, list[DenialCount]] = {}
    _reasons_added(reasons, counted, group_by, filters)
    return reasons


def _live_denials(rows: QuerySet[AccessLog], *group: str) -> QuerySet[AccessLog, dict[str, Any]]:
    """The denials of the live ``rows`` per ``group`` (fields or annotations) and reason.
    Counted with a FILTER rather than a WHERE on the outcome: PostgreSQL would otherwise read
    the outcome index's every denial ever to intersect it with the live ranges."""
    return (
        rows.values(*group, "reason_code")
        .annotate(count=Count("id", filter=_DENIED))
        .filter(count__gt=0)
        .order_by()
    )


def _reasons_added(
    reasons: dict[str, list[DenialCount]],
    counted: Iterable[dict[str, Any]],
    group_by: str,
    filters: ReportFilters,
) -> None:
    """Add the denials ``counted`` (per group and reason) to ``reasons``, each reason once
    per group, with its label and its link to the log."""
    for row in counted:
        listed = reasons.setdefault(row[KEY], [])
        for index, held in enumerate(listed):
            if held.reason_code == row["reason_code"]:
                listed[index] = replace(held, count=held.count + row["count"])
                break
        else:
            listed.append(
                DenialCount(
                    reason_code=row["reason_code"],
                    label=reason_label(row["reason_code"]) or "(no reason given)",
                    count=row["count"],
                    log_link=_log_link(
                        filters,
                        **_group_log_params(group_by, row[KEY]),
                        outcome__exact=AccessOutcome.DENIED,
                        reason=row["reason_code"],
                    ),
                )
            )


def _name_groups(groups: list[ReportGroup], group_by: str) -> None:
    """Give each group the words an officer knows it by: one query."""
    if group_by == "person":
        people = people_describe(identities=[group.key for group in groups])
        for group in groups:
            person = people.get(group.key)
            if person is not None:
                group.label = person.label or group.key
                group.team = person.team
            if not group.key:
                group.label = "(no identity: token refused before it was known)"
    elif group_by == "team":
        for group in groups:
            group.label = group.key or "(no team known)"
    else:
        recordings = Recording.objects.in_bulk([group.key for group in groups], field_name="sid")
        for group in groups:
            group.recording = recordings.get(group.key)
            if group.recording is not None:
                group.team = ", ".join(group.recording.handled_team_names or [])
            if not group.key:
                group.label = "(no recording SID given)"


def report_totals(report: PlaybackReport) -> dict[str, Any]:
    """The sums over the shown groups, for the page's and the PDF's last line."""
    groups = report.groups
    return {
        "plays": sum(group.plays for group in groups),
        "denials": sum(group.denials for group in groups),
        "not_found": sum(group.not_found for group in groups),
        "bytes_served": sum(group.bytes_served for group in groups),
        "listened_seconds": sum(group.listened_seconds for group in groups),
    }


def duration_text(seconds: float) -> str:
    """``1 h 02 min 05 s``, ``3 min 20 s``, ``45 s``: an estimate, so whole seconds."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min {secs:02d} s"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"
