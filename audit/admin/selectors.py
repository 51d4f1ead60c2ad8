"""Reads for compliance officers: a recording's timeline, what one identity opened, and the
figures and alerts of the compliance dashboard.

Every query here is bounded (a window of time, a ``LIMIT``, or an indexed lookup), so the pages
built on them stay fast when the access log holds millions of rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TypedDict
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Count, Max, Min, Q, Sum
from django.db.models.functions import TruncDay, TruncHour
from django.urls import reverse

from audit.admin.display import plural, utc_text
from audit.labels import NOT_FOUND_REASONS, PLAYER_ACTIONS, action_label, reason_label
from audit.models import AccessAction, AccessLog, AccessOutcome, ChainCheck
from audit.people import Person, people_describe
from audit.rollups import (
    DASHBOARD_DAYS,
    OPENED,
    RolledDays,
    log_split,
    opens_ranked,
    rolled_days,
    span_current,
)
from recordings.lifecycle.retention import hold_covers
from recordings.models import (
    LegalHold,
    MediaLink,
    Recording,
    RecordingEvent,
    RecordingStatus,
    SyncState,
    private_key_missing,
)

# What "opening" a recording means for reports: url_provider handed the caller a link.
OPEN = OPENED
# The player's requests for recordings: what the dashboard's accesses and denials count.
REQUEST_ACTIONS = (AccessAction.URL_PROVIDER,)
TIMELINE_LOG_LIMIT = 500
IDENTITY_RECORDINGS_LIMIT = 1000


# --- A recording's timeline ------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEvent:
    """One thing that happened to a recording: ``kind`` is ``recording``, ``callback``,
    ``link``, ``hold`` (a legal hold) or ``log`` (an access-log row); ``tone`` is ``ok``,
    ``denied``, ``error`` or ``info`` for the page's colours; ``sequence`` names the log row
    when there is one."""

    at: datetime
    kind: str
    title: str
    detail: str = ""
    identity: str = ""
    tone: str = "info"
    sequence: int | None = None


@dataclass
class RecordingTimeline:
    """Everything known about one recording SID, oldest first.

    ``log_truncated`` says the recording has more access-log rows than the page shows (the
    latest :data:`TIMELINE_LOG_LIMIT` are shown; the access log, filtered by the SID, has all).
    """

    sid: str
    recording: Recording | None
    events: list[TimelineEvent] = field(default_factory=list)
    log_truncated: bool = False


_OUTCOME_TONE: dict[str, str] = {
    AccessOutcome.ALLOWED: "ok",
    AccessOutcome.DENIED: "denied",
    AccessOutcome.ERROR: "error",
}


def _log_title(row: AccessLog) -> str:
    return f"{action_label(row.action)}: {row.outcome}"


def _log_detail(row: AccessLog) -> str:
    parts = [reason_label(row.reason_code)]
    if row.rule_name:
        parts.append(f"rule {row.rule_name}")
    if row.bytes_served is not None:
        parts.append(f"{row.bytes_served} bytes")
    if row.client_ip:
        parts.append(f"from {row.client_ip}")
    return ", ".join(part for part in parts if part)


def _hold_events(recording: Recording) -> list[TimelineEvent]:
    """The legal holds that cover (or covered) ``recording``, placed and released: their
    audit rows name the hold, not each recording, so they are found by what the holds cover
    (the rule deletion obeys, ``hold_covers``). One query: holds are few."""
    events: list[TimelineEvent] = []
    for hold in LegalHold.objects.order_by("created_at", "pk"):
        if not hold_covers(hold=hold, recording=recording):
            continue
        events.append(
            TimelineEvent(
                hold.created_at,
                "hold",
                f"Legal hold placed: {hold}",
                hold.reason[:300],
                identity=f"admin:{hold.created_by}" if hold.created_by else "",
                tone="denied",
            )
        )
        if hold.released_at is not None:
            events.append(
                TimelineEvent(
                    hold.released_at,
                    "hold",
                    f"Legal hold released: {hold.case_reference or hold}",
                    hold.release_reason[:300],
                    identity=f"admin:{hold.released_by}" if hold.released_by else "",
                )
            )
    return events


def recording_timeline(*, sid: str) -> RecordingTimeline:
    """The timeline of recording ``sid``: the recording row's own milestones (started, first
    seen, synced, sync failed, deleted), each accepted callback, each media link issued, and
    the access-log rows naming the SID (accesses, denials, playbacks, admin views, syncs),
    and the legal holds that cover it, placed and released.

    Works for a SID the portal no longer has a row for (only the log then). Five queries.
    """
    recording = Recording.objects.filter(sid=sid).first()
    timeline = RecordingTimeline(sid=sid, recording=recording)
    events = timeline.events
    if recording is not None:
        if recording.start_time:
            events.append(
                TimelineEvent(recording.start_time, "recording", "Recording started at Twilio")
            )
        events.append(
            TimelineEvent(
                recording.created_at,
                "recording",
                "First seen by the portal",
                f"account {recording.account_sid}, call {recording.call_sid or '-'}",
            )
        )
        if recording.synced_at:
            tone = "error" if recording.sync_state == SyncState.SYNC_FAILED else "ok"
            events.append(
                TimelineEvent(
                    recording.synced_at,
                    "recording",
                    f"Last sync: {recording.get_sync_state_display()}",
                    recording.sync_error or f"status {recording.status or '-'}",
                    tone=tone,
                )
            )
        if recording.status == RecordingStatus.DELETED:
            events.append(
                TimelineEvent(
                    recording.twilio_media_deleted_at
                    or recording.date_updated
                    or recording.updated_at,
                    "recording",
                    "Deleted at Twilio",
                    tone="error",
                )
            )
        elif recording.twilio_media_deleted_at:
            events.append(
                TimelineEvent(
                    recording.twilio_media_deleted_at,
                    "recording",
                    "Deleted at Twilio",
                    "the copy in the bucket remains and still plays",
                )
            )
    for event in RecordingEvent.objects.filter(recording_sid=sid).order_by("received_at"):
        detail = f"{event.deliveries} deliveries, {event.get_state_display()}"
        if event.last_error:
            detail += f": {event.last_error}"
        events.append(
            TimelineEvent(
                event.received_at,
                "callback",
                f"Twilio callback: {event.recording_status or '-'}",
                detail,
                tone="error" if event.state == "failed" else "info",
            )
        )
    if recording is not None:
        for link in MediaLink.objects.filter(recording=recording).order_by("created_at")[
            :TIMELINE_LOG_LIMIT
        ]:
            events.append(
                TimelineEvent(
                    link.created_at,
                    "link",
                    "Media link issued",
                    f"expires {link.expires_at:%Y-%m-%d %H:%M:%S}Z, {link.fetches} fetches, "
                    f"{link.bytes_served} bytes",
                    identity=link.identity,
                )
            )
        events.extend(_hold_events(recording))
    rows = list(
        AccessLog.objects.filter(recording_sid=sid).order_by("-sequence")[: TIMELINE_LOG_LIMIT + 1]
    )
    timeline.log_truncated = len(rows) > TIMELINE_LOG_LIMIT
    for row in rows[:TIMELINE_LOG_LIMIT]:
        events.append(
            TimelineEvent(
                row.occurred_at,
                "log",
                _log_title(row),
                _log_detail(row),
                identity=row.identity,
                tone=_OUTCOME_TONE.get(row.outcome, "info"),
                sequence=row.sequence,
            )
        )
    events.sort(key=lambda event: (event.at, event.sequence or 0))
    return timeline


# --- What one identity opened ----------------------------------------------------------------


@dataclass(frozen=True)
class OpenedRecording:
    """One recording an identity was given a link to: how often, first and last time, and
    the recording when the portal still has it (its SID, call and start time loaded)."""

    recording_sid: str
    times: int
    first_at: datetime
    last_at: datetime
    recording: Recording | None


@dataclass
class IdentityActivity:
    """What the ``identities`` of one person did: the recordings they opened (latest first),
    their denials (a request for a recording that does not exist is counted apart, as
    ``not_found``: nobody was refused anything) and errors."""

    identities: list[str]
    opened: list[OpenedRecording]
    denied: int
    not_found: int
    errors: int
    truncated: bool


def identity_activity(
    *,
    identities: Collection[str],
    since: datetime | None = None,
    until: datetime | None = None,
) -> IdentityActivity:
    """Every recording ``identities`` opened (url_provider allowed) between ``since`` and
    ``until`` (exclusive), grouped by recording, with the count of their denials and errors.
    Reads the two covering indexes of an identity's opens and refusals; rows are counted by
    ``occurred_at`` (never null, and in both indexes), not by id, so no table row is read.
    Three queries."""
    mine = AccessLog.objects.filter(identity__in=sorted(identities))
    if since is not None:
        mine = mine.filter(occurred_at__gte=since)
    if until is not None:
        mine = mine.filter(occurred_at__lt=until)
    grouped = list(
        mine.filter(OPEN)
        .values("recording_sid")
        .annotate(
            times=Count("occurred_at"), first_at=Min("occurred_at"), last_at=Max("occurred_at")
        )
        .order_by("-last_at")[: IDENTITY_RECORDINGS_LIMIT + 1]
    )
    # Only what the page shows of each recording: a thousand full rows are wide.
    recordings = Recording.objects.only("sid", "call_sid", "start_time").in_bulk(
        [row["recording_sid"] for row in grouped[:IDENTITY_RECORDINGS_LIMIT]], field_name="sid"
    )
    outcomes = (
        mine.filter(action__in=PLAYER_ACTIONS)
        .exclude(outcome=AccessOutcome.ALLOWED)
        .aggregate(
            denied=Count(
                "occurred_at",
                filter=Q(outcome=AccessOutcome.DENIED) & ~Q(reason_code__in=NOT_FOUND_REASONS),
            ),
            not_found=Count("occurred_at", filter=Q(reason_code__in=NOT_FOUND_REASONS)),
            errors=Count("occurred_at", filter=Q(outcome=AccessOutcome.ERROR)),
        )
    )
    return IdentityActivity(
        identities=sorted(identities),
        opened=[
            OpenedRecording(
                recording_sid=row["recording_sid"],
                times=row["times"],
                first_at=row["first_at"],
                last_at=row["last_at"],
                recording=recordings.get(row["recording_sid"]),
            )
            for row in grouped[:IDENTITY_RECORDINGS_LIMIT]
        ],
        denied=outcomes["denied"],
        not_found=outcomes["not_found"],
        errors=outcomes["errors"],
        truncated=len(grouped) > IDENTITY_RECORDINGS_LIMIT,
    )


# --- The dashboard ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DayCount:
    """Player requests on one UTC day: allowed (a link was issued) and denied."""

    day: date
    allowed: int
    denied: int


@dataclass(frozen=True)
class Alert:
    """Something an officer should look at: ``level`` is ``error`` or ``warning``; ``link``
    is the admin page (with its query string) that shows what is behind it."""

    level: str
    title: str
    detail: str
    link: str = ""


class IdentityOpens(TypedDict):
    """An identity and how many recordings it opened (distinct) in how many opens."""

    identity: str
    recordings: int
    opens: int


class RecordingOpeners(TypedDict):
    """A recording and how many identities opened it in how many opens."""

    recording_sid: str
    people: int
    opens: int


@dataclass
class Dashboard:
    """The dashboard's figures over the last ``days`` days, and its alerts."""

    days: int
    per_day: list[DayCount]
    top_identities: list[IdentityOpens]
    widely_opened: list[RecordingOpeners]
    alerts: list[Alert]
    last_check: ChainCheck | None
    sync_failed: int
    activity: ActivityCounts = field(default_factory=lambda: ActivityCounts(0, 0))
    denied: list[DeniedPerson] = field(default_factory=list)


@dataclass(frozen=True)
class ActivityCounts:
    """Log rows over the dashboard's window: players' (url_provider, media, waveforms) and
    everyone else's (staff in the admin, the portal's own work), counted apart."""

    player: int
    staff: int


@dataclass(frozen=True)
class DeniedPerson:
    """Someone refused a recording: their denials, the commonest reason's label, who they are
    and the access log filtered to those denials."""

    identity: str
    denials: int
    reason: str
    person: Person | None
    link: str


def activity_counts(
    *, since: datetime, now: datetime, rolled: RolledDays | None = None
) -> ActivityCounts:
    """Rows since ``since``, player and media activity apart from staff's: the ``rolled``
    days (``rolled_days``) wholly before ``now`` from the daily rollup, the rest from the log;
    one query."""
    rolled = rolled or RolledDays()
    split = log_split(since=since, until=now, rolled=rolled.at)
    player = Q(action__in=PLAYER_ACTIONS)
    counts = AccessLog.objects.filter(split.live).aggregate(
        player=Count("id", filter=player), staff=Count("id", filter=~player)
    )
    played = rolled.count(split.days, lambda action, _outcome: action in PLAYER_ACTIONS)
    return ActivityCounts(
        player=counts["player"] + played,
        staff=counts["staff"] + rolled.count(split.days, lambda *_: True) - played,
    )


def denied_people(*, since: datetime, limit: int = 10) -> list[DeniedPerson]:
    """Who was refused a recording since ``since`` (a request for a recording that does not
    exist is not a refusal), most denials first, with their commonest reason; two queries and
    one directory lookup."""
    denials = AccessLog.objects.filter(
        action__in=REQUEST_ACTIONS, outcome=AccessOutcome.DENIED, occurred_at__gte=since
    ).exclude(reason_code__in=NOT_FOUND_REASONS)
    top = list(
        denials.values("identity").annotate(n=Count("id")).order_by("-n", "identity")[:limit]
    )
    reasons: dict[str, tuple[int, str]] = {}
    for row in (
        denials.filter(identity__in=[row["identity"] for row in top])
        .values("identity", "reason_code")
        .annotate(n=Count("id"))
    ):
        if row["n"] > reasons.get(row["identity"], (0, ""))[0]:
            reasons[row["identity"]] = (row["n"], row["reason_code"])
    people = people_describe(identities=[row["identity"] for row in top])
    return [
        DeniedPerson(
            identity=row["identity"],
            denials=row["n"],
            reason=reason_label(reasons.get(row["identity"], (0, ""))[1]),
            person=people.get(row["identity"]),
            link=_log_query(
                identity=row["identity"],
                outcome__exact=AccessOutcome.DENIED,
                since=since.strftime("%Y-%m-%dT%H:%M:%S"),
            ),
        )
        for row in top
    ]


def daily_counts(*, now: datetime, days: int, rolled: RolledDays | None = None) -> list[DayCount]:
    """url_provider answers per UTC day for the ``days`` days up to ``now``, zeros included:
    the ``rolled`` days (``rolled_days``) from the daily rollup, the others from the log; one
    query."""
    rolled = rolled or RolledDays()
    first = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    split = log_split(since=first, until=now, rolled=rolled.at)
    rows = (
        AccessLog.objects.filter(split.live, action__in=REQUEST_ACTIONS)
        .annotate(day=TruncDay("occurred_at"))
        .values("day", "outcome")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts: dict[date, dict[str, int]] = defaultdict(dict)
    for row in rows:
        counts[row["day"].date()][row["outcome"]] = row["n"]
    for day in split.days:
        for (action, outcome), n in rolled.rows.get(day, {}).items():
            if action in REQUEST_ACTIONS:
                counts[day][outcome] = counts[day].get(outcome, 0) + n
    return [
        DayCount(
            day=(first + timedelta(days=offset)).date(),
            allowed=counts[(first + timedelta(days=offset)).date()].get(AccessOutcome.ALLOWED, 0),
            denied=counts[(first + timedelta(days=offset)).date()].get(AccessOutcome.DENIED, 0),
        )
        for offset in range(days)
    ]


def opened_tops(
    *,
    since: datetime,
    now: datetime,
    rolled: RolledDays | None = None,
    limit: int = 10,
) -> tuple[list[IdentityOpens], list[RecordingOpeners]]:
    """The dashboard's two boxes of opens since ``since``: the identities that opened the most
    recordings (``identity``, ``recordings`` distinct, ``opens``) and the recordings opened by
    more than one identity, most people first (``recording_sid``, ``people``, ``opens``). The
    ``rolled`` days (``rolled_days``) wholly before ``now`` are read from the daily rollup,
    the rest from the log; two queries."""
    rolled = rolled or RolledDays()
    split = log_split(since=since, until=now, rolled=rolled.at)
    tops = opens_ranked(split=split, span=span_current(split=split, rolled=rolled), limit=limit)
    return (
        [
            IdentityOpens(
                identity=row["identity"], recordings=row["recordings"], opens=row["opens"]
            )
            for row in tops.identities
        ],
        [
            RecordingOpeners(
                recording_sid=row["recording_sid"], people=row["people"], opens=row["opens"]
            )
            for row in tops.recordings
        ],
    )


def bulk_access_alerts(*, now: datetime, threshold: int) -> list[Alert]:
    """Identities that opened more than ``threshold`` distinct recordings within one clock
    hour (UTC) during the last 24 hours: bulk listening, or a scraped token."""
    rows = (
        AccessLog.objects.filter(OPEN, occurred_at__gte=now - timedelta(hours=24))
        .annotate(hour=TruncHour("occurred_at"))
        .values("identity", "hour")
        .annotate(recordings=Count("recording_sid", distinct=True))
        .filter(recordings__gt=threshold)
        .order_by("-recordings", "identity")[:20]
    )
    people = people_describe(identities=[row["identity"] for row in rows])
    return [
        Alert(
            "error",
            f"Bulk listening: {_who(row['identity'], people)}",
            f"opened {row['recordings']} recordings between {utc_text(row['hour'])} and "
            f"{utc_text(row['hour'] + timedelta(hours=1))} (threshold {threshold} an hour)",
            _log_query(
                identity=row["identity"],
                action=AccessAction.URL_PROVIDER,
                since=row["hour"].strftime("%Y-%m-%dT%H:%M:%S"),
                until=(row["hour"] + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"),
            ),
        )
        for row in rows
    ]


def _who(identity: str, people: dict[str, Person]) -> str:
    """An identity with the person behind it, when known: ``sam_40… (Sam Taylor <sam@…>)``."""
    person = people.get(identity)
    return f"{identity} ({person.label})" if person and person.label else identity


def denial_spike_alert(
    *, now: datetime, minimum: int, factor: int, rolled: RolledDays | None = None
) -> Alert | None:
    """An alert when the last hour's denials exceed both ``minimum`` and ``factor`` times the
    hourly average of the seven days before it, else ``None``. The ``rolled`` days inside
    the week are read from the daily rollup."""
    hour_ago = now - timedelta(hours=1)
    week_before = hour_ago - timedelta(days=7)
    rolled = rolled or RolledDays()
    split = log_split(since=week_before, until=hour_ago, rolled=rolled.at)
    denied = AccessLog.objects.filter(
        split.live, action__in=REQUEST_ACTIONS, outcome=AccessOutcome.DENIED
    ).aggregate(
        last_hour=Count("id", filter=Q(occurred_at__gte=hour_ago)),
        before=Count("id", filter=Q(occurred_at__lt=hour_ago)),
    )
    denied["before"] += rolled.count(
        split.days,
        lambda action, outcome: action in REQUEST_ACTIONS and outcome == AccessOutcome.DENIED,
    )
    baseline = denied["before"] / (7 * 24)
    if denied["last_hour"] <= max(minimum, factor * baseline):
        return None
    top = denied_people(since=hour_ago, limit=3)
    who = ", ".join(
        f"{_who(row.identity, {row.identity: row.person} if row.person else {})}: "
        f"{plural(row.denials, 'denial')} ({row.reason})"
        for row in top
    )
    usual = (
        f"{baseline:.1f} an hour on average over the week before"
        if baseline >= 0.1
        else "almost none over the week before"
    )
    return Alert(
        "error",
        "Denial spike",
        f"{plural(denied['last_hour'], 'denial')} in the last hour, against {usual}. "
        f"Most denied: {who or '-'}",
        _log_query(
            outcome__exact=AccessOutcome.DENIED, since=hour_ago.strftime("%Y-%m-%dT%H:%M:%S")
        ),
    )


def _log_query(**params: str) -> str:
    """The access log's admin list, filtered by ``params``."""
    return reverse("admin:audit_accesslog_changelist") + "?" + urlencode(params)


def chain_alerts(*, now: datetime, check: ChainCheck | None) -> list[Alert]:
    """A broken chain at the last full verification, or no verification for over a day."""
    if check is None:
        return [
            Alert(
                "warning",
                "The audit chain was never verified",
                "Run “Verify audit log”; the nightly task does it too.",
                reverse("admin:audit_accesslog_verify"),
            )
        ]
    alerts = []
    if not check.ok:
        alerts.append(
            Alert(
                "error",
                "Broken audit chain",
                f"{check.problem} at sequence {check.first_bad_sequence}: {check.message}",
                reverse("admin:audit_accesslog_verify"),
            )
        )
    if now - check.checked_at > timedelta(hours=26):
        alerts.append(
            Alert(
                "warning",
                "The audit chain was not verified for over a day",
                f"Last verification {utc_text(check.checked_at)}.",
                reverse("admin:audit_accesslog_verify"),
            )
        )
    return alerts


def dashboard(*, now: datetime, days: int = DASHBOARD_DAYS) -> Dashboard:
    """Everything the dashboard shows, as of ``now``: the figures over whole days the daily
    rollup holds come from it (``audit.rollups``), the rest from the log."""
    since = now - timedelta(days=days)
    rolled = rolled_days(since=since)
    last_check = ChainCheck.objects.order_by("-checked_at", "-id").first()
    sync_failed = Recording.objects.filter(sync_state=SyncState.SYNC_FAILED).count()
    alerts = chain_alerts(now=now, check=last_check)
    alerts += bulk_access_alerts(now=now, threshold=settings.AUDIT_ALERT_BULK_ACCESS_PER_HOUR)
    spike = denial_spike_alert(
        now=now,
        minimum=settings.AUDIT_ALERT_DENIAL_SPIKE_MIN,
        factor=settings.AUDIT_ALERT_DENIAL_SPIKE_FACTOR,
        rolled=rolled,
    )
    if spike is not None:
        alerts.append(spike)
    if sync_failed:
        alerts.append(
            Alert(
                "warning",
                f"{plural(sync_failed, 'recording')} stuck in sync_failed",
                "Their metadata could not be fetched from Twilio after every retry.",
                reverse("admin:recordings_recording_changelist") + "?sync_state__exact=sync_failed",
            )
        )
    unplayable = Recording.objects.filter(private_key_missing()).count()
    if unplayable:
        alerts.append(
            Alert(
                "error",
                f"{plural(unplayable, 'encrypted recording')} the portal cannot open",
                "Twilio encrypted them for a public key whose private key the portal does not "
                "hold (error 16107 when the configured key was unusable): import it with "
                "`manage.py import_private_key --public-key-sid CR… FILE`.",
                reverse("admin:recordings_recording_changelist") + "?private_key=missing",
            )
        )
    identities, recordings = opened_tops(since=since, now=now, rolled=rolled)
    return Dashboard(
        days=days,
        per_day=daily_counts(now=now, days=days, rolled=rolled),
        top_identities=identities,
        widely_opened=recordings,
        alerts=alerts,
        last_check=last_check,
        sync_failed=sync_failed,
        activity=activity_counts(since=since, now=now, rolled=rolled),
        denied=denied_people(since=now - timedelta(hours=24)),
    )


def playback_bytes(*, identities: Collection[str]) -> int:
    """Bytes the portal's media endpoint served to ``identities`` (summed over their links)."""
    return (
        MediaLink.objects.filter(identity__in=sorted(identities)).aggregate(
            total=Sum("bytes_served")
        )["total"]
        or 0
    )
