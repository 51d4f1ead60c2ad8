"""Reads for compliance officers: a recording's timeline, what one identity opened, and the
figures and alerts of the compliance dashboard.

Every query here is bounded (a window of time, a ``LIMIT``, or an indexed lookup), so the pages
built on them stay fast when the access log holds millions of rows.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TypedDict
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Count, Max, Min, Q, Sum
from django.db.models.functions import TruncDay, TruncHour
from django.urls import reverse

from audit.models import AccessAction, AccessLog, AccessOutcome, ChainCheck
from recordings.models import (
    MediaLink,
    Recording,
    RecordingEvent,
    RecordingStatus,
    SyncState,
    private_key_missing,
)

# What "opening" a recording means for reports: url_provider handed the caller a link.
OPEN = Q(action=AccessAction.URL_PROVIDER, outcome=AccessOutcome.ALLOWED)
PLAYER_ACTIONS = (AccessAction.URL_PROVIDER,)
TIMELINE_LOG_LIMIT = 500
IDENTITY_RECORDINGS_LIMIT = 1000


# --- A recording's timeline ------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEvent:
    """One thing that happened to a recording: ``kind`` is ``recording``, ``callback``,
    ``link`` or ``log`` (an access-log row); ``tone`` is ``ok``, ``denied``, ``error`` or
    ``info`` for the page's colours; ``sequence`` names the log row when there is one."""

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
    label = AccessAction(row.action).label if row.action in AccessAction.values else row.action
    return f"{label}: {row.outcome}"


def _log_detail(row: AccessLog) -> str:
    parts = [row.reason_code]
    if row.rule_name:
        parts.append(f"rule {row.rule_name}")
    if row.bytes_served is not None:
        parts.append(f"{row.bytes_served} bytes")
    if row.client_ip:
        parts.append(f"from {row.client_ip}")
    return ", ".join(part for part in parts if part)


def recording_timeline(*, sid: str) -> RecordingTimeline:
    """The timeline of recording ``sid``: the recording row's own milestones (started, first
    seen, synced, sync failed, deleted), each accepted callback, each media link issued, and
    the access-log rows naming the SID (accesses, denials, playbacks, admin views, syncs).

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
    the recording's facts when the portal still has it."""

    recording_sid: str
    times: int
    first_at: datetime
    last_at: datetime
    recording: Recording | None


@dataclass
class IdentityActivity:
    """What ``identity`` did: the recordings it opened (latest first) and its denials."""

    identity: str
    opened: list[OpenedRecording]
    denied: int
    errors: int
    truncated: bool


def identity_activity(*, identity: str) -> IdentityActivity:
    """Every recording ``identity`` opened (url_provider allowed), grouped by recording, with
    the count of its denials and errors. Uses the (identity, sequence) index; three queries."""
    mine = AccessLog.objects.filter(identity=identity)
    grouped = list(
        mine.filter(OPEN)
        .values("recording_sid")
        .annotate(times=Count("id"), first_at=Min("occurred_at"), last_at=Max("occurred_at"))
        .order_by("-last_at")[: IDENTITY_RECORDINGS_LIMIT + 1]
    )
    recordings = Recording.objects.in_bulk(
        [row["recording_sid"] for row in grouped[:IDENTITY_RECORDINGS_LIMIT]], field_name="sid"
    )
    outcomes = dict(
        mine.filter(action__in=PLAYER_ACTIONS)
        .exclude(outcome=AccessOutcome.ALLOWED)
        .values_list("outcome")
        .annotate(n=Count("id"))
        .values_list("outcome", "n")
    )
    return IdentityActivity(
        identity=identity,
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
        denied=outcomes.get(AccessOutcome.DENIED, 0),
        errors=outcomes.get(AccessOutcome.ERROR, 0),
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


def daily_counts(*, now: datetime, days: int) -> list[DayCount]:
    """url_provider answers per UTC day for the ``days`` days up to ``now``, zeros included."""
    first = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = (
        AccessLog.objects.filter(occurred_at__gte=first, action__in=PLAYER_ACTIONS)
        .annotate(day=TruncDay("occurred_at"))
        .values("day", "outcome")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts: dict[date, dict[str, int]] = defaultdict(dict)
    for row in rows:
        counts[row["day"].date()][row["outcome"]] = row["n"]
    return [
        DayCount(
            day=(first + timedelta(days=offset)).date(),
            allowed=counts[(first + timedelta(days=offset)).date()].get(AccessOutcome.ALLOWED, 0),
            denied=counts[(first + timedelta(days=offset)).date()].get(AccessOutcome.DENIED, 0),
        )
        for offset in range(days)
    ]


def top_identities(*, since: datetime, limit: int = 10) -> list[IdentityOpens]:
    """The identities that opened the most recordings since ``since``: ``identity``,
    ``recordings`` (distinct), ``opens``."""
    return list(
        AccessLog.objects.filter(OPEN, occurred_at__gte=since)
        .values("identity")
        .annotate(recordings=Count("recording_sid", distinct=True), opens=Count("id"))
        .order_by("-recordings", "-opens", "identity")[:limit]
    )


def widely_opened(*, since: datetime, limit: int = 10) -> list[RecordingOpeners]:
    """Recordings opened by more than one identity since ``since``, most people first:
    ``recording_sid``, ``people``, ``opens``."""
    return list(
        AccessLog.objects.filter(OPEN, occurred_at__gte=since)
        .values("recording_sid")
        .annotate(people=Count("identity", distinct=True), opens=Count("id"))
        .filter(people__gt=1)
        .order_by("-people", "-opens", "recording_sid")[:limit]
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
    return [
        Alert(
            "error",
            f"Bulk listening: {row['identity']}",
            f"opened {row['recordings']} recordings between {row['hour']:%Y-%m-%d %H:00} and "
            f"{row['hour'] + timedelta(hours=1):%H:00} UTC (threshold {threshold} an hour)",
            _log_query(identity=row["identity"]),
        )
        for row in rows
    ]


def denial_spike_alert(*, now: datetime, minimum: int, factor: int) -> Alert | None:
    """An alert when the last hour's denials exceed both ``minimum`` and ``factor`` times the
    hourly average of the seven days before it, else ``None``."""
    hour_ago = now - timedelta(hours=1)
    week_before = hour_ago - timedelta(days=7)
    denied = AccessLog.objects.filter(
        action__in=PLAYER_ACTIONS, outcome=AccessOutcome.DENIED, occurred_at__gte=week_before
    ).aggregate(
        last_hour=Count("id", filter=Q(occurred_at__gte=hour_ago)),
        before=Count("id", filter=Q(occurred_at__lt=hour_ago)),
    )
    baseline = denied["before"] / (7 * 24)
    if denied["last_hour"] <= max(minimum, factor * baseline):
        return None
    return Alert(
        "error",
        "Denial spike",
        f"{denied['last_hour']} denials in the last hour, against {baseline:.1f} an hour on "
        f"average over the week before",
        _log_query(outcome__exact="denied"),
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
                f"Last verification {check.checked_at:%Y-%m-%d %H:%M} UTC.",
                reverse("admin:audit_accesslog_verify"),
            )
        )
    return alerts


def dashboard(*, now: datetime, days: int = 30) -> Dashboard:
    """Everything the dashboard shows, as of ``now``."""
    since = now - timedelta(days=days)
    last_check = ChainCheck.objects.order_by("-checked_at", "-id").first()
    sync_failed = Recording.objects.filter(sync_state=SyncState.SYNC_FAILED).count()
    alerts = chain_alerts(now=now, check=last_check)
    alerts += bulk_access_alerts(now=now, threshold=settings.AUDIT_ALERT_BULK_ACCESS_PER_HOUR)
    spike = denial_spike_alert(
        now=now,
        minimum=settings.AUDIT_ALERT_DENIAL_SPIKE_MIN,
        factor=settings.AUDIT_ALERT_DENIAL_SPIKE_FACTOR,
    )
    if spike is not None:
        alerts.append(spike)
    if sync_failed:
        alerts.append(
            Alert(
                "warning",
                f"{sync_failed} recording(s) stuck in sync_failed",
                "Their metadata could not be fetched from Twilio after every retry.",
                reverse("admin:recordings_recording_changelist") + "?sync_state__exact=sync_failed",
            )
        )
    unplayable = Recording.objects.filter(private_key_missing()).count()
    if unplayable:
        alerts.append(
            Alert(
                "error",
                f"{unplayable} encrypted recording(s) the portal cannot open",
                "Twilio encrypted them for a public key whose private key the portal does not "
                "hold (error 16107 when the configured key was unusable): import it with "
                "`manage.py import_private_key --public-key-sid CR… FILE`.",
                reverse("admin:recordings_recording_changelist") + "?private_key=missing",
            )
        )
    return Dashboard(
        days=days,
        per_day=daily_counts(now=now, days=days),
        top_identities=top_identities(since=since),
        widely_opened=widely_opened(since=since),
        alerts=alerts,
        last_check=last_check,
        sync_failed=sync_failed,
    )


def playback_bytes(*, identity: str) -> int:
    """Bytes the portal's media endpoint served to ``identity`` (summed over its links)."""
    return (
        MediaLink.objects.filter(identity=identity).aggregate(total=Sum("bytes_served"))["total"]
        or 0
    )
