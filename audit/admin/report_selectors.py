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

Listening time is an estimate, and only where the portal's media endpoint served the file:
each ``media_playback`` summary row holds the bytes one link served, and the recording's
duration and stored size turn bytes into seconds (``bytes * duration / size``, at most the
duration). Presigned S3 links are served by S3, which tells the portal nothing; re-fetched
ranges (seeking back) count again. So the figure says how much audio was sent, not heard.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
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

from audit.labels import NOT_FOUND_REASONS, PLAYER_ACTIONS, reason_label
from audit.models import AccessAction, AccessLog, AccessOutcome
from audit.people import people_describe, people_match
from recordings.models import FlexWorker, Recording

GROUPINGS: dict[str, str] = {
    "person": "Person",
    "team": "Team (the listener's)",
    "recording": "Recording",
}
# Groups shown on the page and in the PDF; the CSV has them all.
PAGE_GROUP_LIMIT = 500
NO_TEAM = ""

_OPEN = Q(action=AccessAction.URL_PROVIDER, outcome=AccessOutcome.ALLOWED)
_DENIED = Q(outcome=AccessOutcome.DENIED) & ~Q(reason_code__in=NOT_FOUND_REASONS)
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

    On PostgreSQL an identity or SID is grouped under the "C" collation: grouping with
    distinct counts sorts the rows by the key, and byte order sorts several times faster than
    the database's language collation (measured in ``bench/playback_report.py``); the groups
    are the same, since keys are compared for equality only.
    """
    if group_by == "team":
        return _listener_team()
    if connection.vendor == "postgresql":
        return Collate(_GROUP_FIELD[group_by], "C")
    return F(_GROUP_FIELD[group_by])


def _grouped(rows: QuerySet[AccessLog], key: Any) -> QuerySet[AccessLog, dict[str, Any]]:
    """``rows`` grouped by ``key`` (:func:`_group_key`), named :data:`KEY`."""
    return rows.annotate(**{KEY: key}).values(KEY)


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
def _without_jit() -> Iterator[None]:
    """The report's queries without PostgreSQL's JIT compilation.

    The grouping query's estimated cost is always high (a subquery per playback row), so
    PostgreSQL compiles it to machine code first: a large share of a month's report in
    ``bench/playback_report.py`` (see its output), more than the compiled code saves.
    ``SET LOCAL`` keeps the setting to this transaction."""
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")
        yield


def playback_report(
    *, filters: ReportFilters, group_by: str, limit: int | None = PAGE_GROUP_LIMIT
) -> PlaybackReport:
    """The playback report for ``filters`` grouped ``by`` person, team or recording, the
    groups with the most plays first (at most ``limit``; ``None``: all of them).

    Three queries whatever the log holds: the figures per group, the denials per group and
    reason, and the names of the groups (people from the directory, or the recordings'
    facts; a team needs none). A team filter first looks its members up, a grouping by team
    first reads the directory's teams (PostgreSQL), and on PostgreSQL one more statement turns
    JIT off for the transaction (:func:`_without_jit`).
    """
    if group_by not in GROUPINGS:
        raise ValueError(f"unknown grouping {group_by!r}")
    with _without_jit():
        return _report(filters=filters, group_by=group_by, limit=limit)


def _report(*, filters: ReportFilters, group_by: str, limit: int | None) -> PlaybackReport:
    rows = _player_rows(filters)
    key = _group_key(group_by)
    figures = (
        _grouped(rows, key)
        .annotate(
            plays=Count("id", filter=_OPEN),
            denials=Count("id", filter=_DENIED),
            not_found=Count("id", filter=Q(reason_code__in=NOT_FOUND_REASONS)),
            errors=Count("id", filter=Q(outcome=AccessOutcome.ERROR)),
            recordings=Count("recording_sid", filter=_OPEN, distinct=True),
            people=Count("identity", filter=_OPEN, distinct=True),
            playbacks_measured=Count("id", filter=_PLAYBACK),
            bytes_sent=Coalesce(Sum("bytes_served", filter=_PLAYBACK), 0),
            listened_seconds=Coalesce(
                Sum(_listened_seconds(), filter=_PLAYBACK), Value(0.0), output_field=FloatField()
            ),
            first_at=Min("occurred_at"),
            last_at=Max("occurred_at"),
        )
        .order_by("-plays", "-denials", KEY)
    )
    found = list(figures if limit is None else figures[: limit + 1])
    truncated = limit is not None and len(found) > limit
    found = found[:limit] if limit is not None else found
    keys = [row[KEY] for row in found]
    # Without a limit every group is wanted: no list of keys (it could be long) to filter on.
    shown = keys if limit is not None else None
    reasons = _denial_reasons(rows, group_by, key, shown, filters) if found else {}
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
            denial_reasons=reasons.get(row[KEY], []),
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
    """The denials of each group by reason, most frequent first: one query."""
    denied = rows.filter(_DENIED)
    if keys is not None and group_by != "team":
        # Only the groups shown (the page's limit); a team's key is computed, not a column.
        denied = denied.filter(**{f"{_GROUP_FIELD[group_by]}__in": keys})
    counted = (
        _grouped(denied, key)
        .annotate(count=Count("id"))
        .values(KEY, "reason_code", "count")
        .order_by(KEY, "-count", "reason_code")
    )
    reasons: dict[str, list[DenialCount]] = {}
    for row in counted:
        group_params = _group_log_params(group_by, row[KEY])
        reasons.setdefault(row[KEY], []).append(
            DenialCount(
                reason_code=row["reason_code"],
                label=reason_label(row["reason_code"]) or "(no reason given)",
                count=row["count"],
                log_link=_log_link(
                    filters,
                    **group_params,
                    outcome__exact=AccessOutcome.DENIED,
                    reason=row["reason_code"],
                ),
            )
        )
    return reasons


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
