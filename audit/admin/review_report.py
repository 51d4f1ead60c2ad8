"""The report a periodic access review freezes (``audit.reviews``): one period's accesses by
person and by team, denials and their reasons, restricted-recording activity, staff's own
activity, the period's alerts and the log's sealing status.

It lives in the compliance console because it reads what only the console may read: the
listeners' teams (the worker directory) and the listening estimate (the recordings' sizes),
both through the playback report's selectors (``audit.admin.report_selectors``), which it
reuses rather than counting again. Importing this module registers :func:`review_report` with
the audit core (``audit.reviews.review_report_builder_register``), so the daily task in
``audit.tasks`` builds reviews without importing the console.

The report is plain JSON (strings, integers, booleans, lists, objects; times as ISO 8601 UTC;
no floats, so the SHA-256 taken when it is built still matches after the database's JSON
type). Each list is cut at :data:`SECTION_LIMIT` entries with a ``truncated`` flag; the totals
always count everything. Links are not stored (URLs change); the page builds them from the
period and the keys.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Max, Min, Q
from django.db.models.functions import TruncHour

from audit.admin.report_selectors import (
    PlaybackReport,
    ReportFilters,
    playback_report,
)
from audit.labels import NOT_FOUND_REASONS, PLAYER_ACTIONS, action_label, reason_label
from audit.models import (
    AccessAction,
    AccessLog,
    AccessOutcome,
    AuditSeal,
    ChainCheck,
)
from audit.people import people_describe
from audit.reviews import ReviewPeriod, review_report_builder_register
from audit.sealer import sealing_status

REPORT_VERSION = 1
# Entries per list: enough for a reviewer to read, few enough for a page and a PDF.
SECTION_LIMIT = 200

_OPEN = Q(action=AccessAction.URL_PROVIDER, outcome=AccessOutcome.ALLOWED)
_DENIED = Q(outcome=AccessOutcome.DENIED) & ~Q(reason_code__in=NOT_FOUND_REASONS)


def _time(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def _period_rows(period: ReviewPeriod) -> Any:
    return AccessLog.objects.filter(occurred_at__gte=period.start, occurred_at__lt=period.end)


def _people_section(report: PlaybackReport) -> list[dict[str, Any]]:
    return [
        {
            "identity": group.key,
            "label": group.label if group.label != group.key else "",
            "team": group.team,
            "plays": group.plays,
            "recordings": group.recordings,
            "denials": group.denials,
            "denial_reasons": [
                {"reason_code": item.reason_code, "label": item.label, "count": item.count}
                for item in group.denial_reasons
            ],
            "not_found": group.not_found,
            "errors": group.errors,
            "listened_seconds": round(group.listened_seconds),
            "first_at": _time(group.first_at),
            "last_at": _time(group.last_at),
        }
        for group in report.groups
    ]


def _teams_section(report: PlaybackReport) -> list[dict[str, Any]]:
    return [
        {
            "team": group.key,
            "label": group.label,
            "plays": group.plays,
            "people": group.people,
            "recordings": group.recordings,
            "denials": group.denials,
            "listened_seconds": round(group.listened_seconds),
        }
        for group in report.groups
    ]


def _totals(period: ReviewPeriod) -> dict[str, int]:
    """Player activity of the whole period, and the period's span of the log: one query."""
    rows = _period_rows(period)
    player = Q(action__in=PLAYER_ACTIONS)
    counted = rows.aggregate(
        rows=Count("id"),
        player_rows=Count("id", filter=player),
        staff_rows=Count("id", filter=~player),
        plays=Count("id", filter=_OPEN),
        people=Count("identity", filter=_OPEN, distinct=True),
        recordings=Count("recording_sid", filter=_OPEN, distinct=True),
        denials=Count("id", filter=player & _DENIED),
        not_found=Count("id", filter=player & Q(reason_code__in=NOT_FOUND_REASONS)),
        errors=Count("id", filter=player & Q(outcome=AccessOutcome.ERROR)),
        first_sequence=Min("sequence"),
        last_sequence=Max("sequence"),
    )
    return {name: value or 0 for name, value in counted.items()}


def _denials_section(period: ReviewPeriod) -> list[dict[str, Any]]:
    """Player denials of the period by reason, commonest first, with how many people."""
    rows = (
        _period_rows(period)
        .filter(_DENIED, action__in=PLAYER_ACTIONS)
        .values("reason_code")
        .annotate(count=Count("id"), people=Count("identity", distinct=True))
        .order_by("-count", "reason_code")
    )
    return [
        {
            "reason_code": row["reason_code"],
            "label": reason_label(row["reason_code"]) or "(no reason given)",
            "count": row["count"],
            "people": row["people"],
        }
        for row in rows
    ]


def _restricted_section(period: ReviewPeriod) -> dict[str, Any]:
    """Attempts on restricted recordings by person (allowed, refused), restrictions placed
    and lifted, and the access requests (four eyes) of the period."""
    rows = _period_rows(period)
    attempts = list(
        rows.filter(action__in=PLAYER_ACTIONS, detail__restricted=True)
        .values("identity")
        .annotate(
            attempts=Count("id"),
            allowed=Count("id", filter=Q(outcome=AccessOutcome.ALLOWED)),
            refused=Count("id", filter=~Q(outcome=AccessOutcome.ALLOWED)),
            recordings=Count("recording_sid", distinct=True),
        )
        .order_by("-attempts", "identity")[: SECTION_LIMIT + 1]
    )
    people = people_describe(identities=[row["identity"] for row in attempts[:SECTION_LIMIT]])
    steps = {
        row["reason_code"]: row["count"]
        for row in rows.filter(
            action__in=(AccessAction.RECORDING_RESTRICT, AccessAction.ACCESS_REQUEST)
        )
        .values("reason_code")
        .annotate(count=Count("id"))
        .order_by()
    }
    return {
        "by_person": [
            {
                "identity": row["identity"],
                "label": people[row["identity"]].label if row["identity"] in people else "",
                "attempts": row["attempts"],
                "allowed": row["allowed"],
                "refused": row["refused"],
                "recordings": row["recordings"],
            }
            for row in attempts[:SECTION_LIMIT]
        ],
        "truncated": len(attempts) > SECTION_LIMIT,
        "attempts": sum(row["attempts"] for row in attempts),
        "refused": sum(row["refused"] for row in attempts),
        "restricted": steps.get("recording_restricted", 0),
        "unrestricted": steps.get("recording_unrestricted", 0),
        "requests": {
            step: steps.get(f"grant_{step}", 0)
            for step in ("requested", "approved", "refused", "revoked")
        },
    }


def _staff_section(period: ReviewPeriod) -> list[dict[str, Any]]:
    """Staff's own activity in the admin (``admin:`` identities): who read or exported the
    log, changed rules or controls, by action."""
    rows = (
        _period_rows(period)
        .filter(identity__startswith="admin:")
        .values("identity", "action")
        .annotate(count=Count("id"))
        .order_by("identity", "action")
    )
    staff: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = staff.setdefault(row["identity"], {"identity": row["identity"], "actions": []})
        entry["actions"].append(
            {"action": row["action"], "label": action_label(row["action"]), "count": row["count"]}
        )
    for entry in staff.values():
        entry["total"] = sum(item["count"] for item in entry["actions"])
    return sorted(staff.values(), key=lambda entry: (-entry["total"], entry["identity"]))[
        :SECTION_LIMIT
    ]


def _hour_text(hour: datetime) -> str:
    return f"{hour:%Y-%m-%d %H:%M} UTC"


def _alerts_section(
    period: ReviewPeriod, *, restricted: dict[str, Any], sealing: dict[str, Any]
) -> list[dict[str, Any]]:
    """What the dashboard would have raised during the period, by the same thresholds: bulk
    listening (an identity opening more than ``AUDIT_ALERT_BULK_ACCESS_PER_HOUR`` recordings
    in a clock hour), denial spikes (an hour above the floor and the factor times the
    period's hourly average), failed verifications of the log, refused attempts on restricted
    recordings, and rows of the period not yet sealed when the review was built."""
    alerts: list[dict[str, Any]] = []
    rows = _period_rows(period)
    threshold = settings.AUDIT_ALERT_BULK_ACCESS_PER_HOUR
    bulk = (
        rows.filter(_OPEN)
        .annotate(hour=TruncHour("occurred_at"))
        .values("identity", "hour")
        .annotate(recordings=Count("recording_sid", distinct=True))
        .filter(recordings__gt=threshold)
        .order_by("-recordings", "identity")[:50]
    )
    for row in bulk:
        alerts.append(
            {
                "level": "error",
                "kind": "bulk_listening",
                "title": f"Bulk listening: {row['identity']}",
                "detail": f"opened {row['recordings']} recordings in the hour from "
                f"{_hour_text(row['hour'])} (threshold {threshold} an hour)",
                "identity": row["identity"],
                "since": _time(row["hour"]),
                "until": _time(row["hour"] + timedelta(hours=1)),
            }
        )
    hours = max(1, int((period.end - period.start).total_seconds() // 3600))
    per_hour = list(
        rows.filter(action=AccessAction.URL_PROVIDER)
        .filter(_DENIED)
        .annotate(hour=TruncHour("occurred_at"))
        .values("hour")
        .annotate(denials=Count("id"))
        .order_by("hour")
    )
    average = sum(row["denials"] for row in per_hour) / hours
    floor = max(
        settings.AUDIT_ALERT_DENIAL_SPIKE_MIN, settings.AUDIT_ALERT_DENIAL_SPIKE_FACTOR * average
    )
    for row in [row for row in per_hour if row["denials"] > floor][:50]:
        alerts.append(
            {
                "level": "error",
                "kind": "denial_spike",
                "title": "Denial spike",
                "detail": f"{row['denials']} denials in the hour from {_hour_text(row['hour'])}, "
                f"against {average:.1f} an hour on average over the period",
                "identity": "",
                "since": _time(row["hour"]),
                "until": _time(row["hour"] + timedelta(hours=1)),
            }
        )
    failed = ChainCheck.objects.filter(
        checked_at__gte=period.start, checked_at__lt=period.end, ok=False
    ).order_by("checked_at")[:50]
    for check in failed:
        alerts.append(
            {
                "level": "error",
                "kind": "broken_chain",
                "title": "The audit log failed a verification",
                "detail": f"{check.problem} at sequence {check.first_bad_sequence}, checked "
                f"{_hour_text(check.checked_at)} ({check.trigger}): {check.message[:300]}",
                "identity": "",
                "since": "",
                "until": "",
            }
        )
    if restricted["refused"]:
        alerts.append(
            {
                "level": "warning",
                "kind": "restricted_refused",
                "title": "Refused attempts on restricted recordings",
                "detail": f"{restricted['refused']} of {restricted['attempts']} attempts on "
                "restricted recordings were refused",
                "identity": "",
                "since": _time(period.start),
                "until": _time(period.end),
            }
        )
    if not sealing["period_sealed"]:
        alerts.append(
            {
                "level": "warning",
                "kind": "unsealed",
                "title": "Rows of the period were not sealed yet",
                "detail": "when the review was built, the period's last rows were not covered "
                "by a seal: the sealer was late or not running",
                "identity": "",
                "since": "",
                "until": "",
            }
        )
    return alerts


def _sealing_section(period: ReviewPeriod, *, totals: dict[str, int], now: datetime) -> dict:
    """Whether the period's rows are sealed and verified, as of building the review."""
    status = sealing_status(now=now)
    last = status.last_seal
    last_sequence = totals["last_sequence"]
    covering = (
        AuditSeal.objects.filter(last_sequence__gte=last_sequence)
        .order_by("number")
        .values_list("number", flat=True)
        .first()
        if last_sequence
        else None
    )
    checks = ChainCheck.objects.filter(checked_at__gte=period.start, checked_at__lt=now)
    counted = checks.aggregate(
        checks=Count("id"),
        failed=Count("id", filter=Q(ok=False)),
        full=Count("id", filter=Q(full=True)),
    )
    verified = (
        covering is not None
        and ChainCheck.objects.filter(ok=True, through_seal__gte=covering).exists()
    )
    last_check = ChainCheck.objects.order_by("-checked_at", "-id").first()
    return {
        "last_seal_number": last.number if last else 0,
        "last_seal_at": _time(last.created_at) if last else "",
        "last_sealed_sequence": last.last_sequence if last else 0,
        "key_fingerprint": last.key_fingerprint[:16] if last else "",
        "period_sealed": last_sequence == 0 or covering is not None,
        "period_covering_seal": covering or 0,
        "period_verified": last_sequence == 0 or verified,
        "unsealed_rows": status.unsealed_rows,
        "sealing_late": status.overdue,
        "anchor_store": status.anchor_store,
        "checks_since_period_start": counted["checks"] or 0,
        "failed_checks": counted["failed"] or 0,
        "full_checks": counted["full"] or 0,
        "last_check_at": _time(last_check.checked_at) if last_check else "",
        "last_check_ok": bool(last_check and last_check.ok),
    }


def review_report(*, period: ReviewPeriod, now: datetime) -> dict[str, Any]:
    """The report of ``period`` as of ``now`` (see the module docstring for its shape)."""
    filters = ReportFilters(since=period.start, until=period.end)
    by_person = playback_report(filters=filters, group_by="person", limit=SECTION_LIMIT)
    by_team = playback_report(filters=filters, group_by="team", limit=SECTION_LIMIT)
    totals = _totals(period)
    restricted = _restricted_section(period)
    sealing = _sealing_section(period, totals=totals, now=now)
    return {
        "version": REPORT_VERSION,
        "schedule": period.schedule,
        "period": {
            "label": period.label(),
            "start": _time(period.start),
            "end": _time(period.end),
        },
        "built_at": _time(now),
        "totals": totals,
        "by_person": _people_section(by_person),
        "by_person_truncated": by_person.truncated,
        "by_team": _teams_section(by_team),
        "by_team_truncated": by_team.truncated,
        "denials": _denials_section(period),
        "restricted": restricted,
        "staff": _staff_section(period),
        "alerts": _alerts_section(period, restricted=restricted, sealing=sealing),
        "sealing": sealing,
    }


review_report_builder_register(review_report)
