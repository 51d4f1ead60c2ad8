"""Retention and legal holds: which recordings are due for deletion, and deleting them safely.

A :class:`~recordings.models.RetentionPolicy` keeps the recordings in its scope for ``keep_days``
after they started (when several apply, the longest wins). Deletion has two steps:

1. **soft**: the recording is hidden at once (url_provider and the media endpoint answer 404
   ``recording_deleted``); nothing is destroyed, so a mistake can still be undone by hand.
2. **hard**, ``hard_delete_grace_days`` later: the stored media is deleted from the bucket (or
   the local folder), then the recording at Twilio (``DELETE``; Twilio's 404 means it is already
   gone), and only then is the row marked ``deleted``. The row and its audit history stay.

Each step is idempotent, so a run that crashed between the storage delete and the Twilio delete
is finished by the next one; a failure (S3 refusing, Twilio down) is kept in
``retention_error`` and the recording stays soft-deleted until a later run succeeds.

:func:`recording_is_held` is the one place that decides legal holds. A held recording is never
deleted, by a policy, an admin action or any other caller of these services; every refused
attempt writes a ``denied`` access-log row with reason ``legal_hold``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from audit.models import AccessOutcome
from audit.services import access_log_append
from recordings.integrations import storage, twilio_api
from recordings.models import (
    LegalHold,
    MediaLocation,
    Recording,
    RecordingStatus,
    RetentionPolicy,
)

logger = logging.getLogger(__name__)

ACTION = "retention_delete"
HOLD_ACTION = "legal_hold"
DEFAULT_GRACE_DAYS = 7
SOFT = "soft"
HARD = "hard"


class RecordingHeld(Exception):
    """The recording is under an active legal hold and must not be deleted."""

    def __init__(self, recording: Recording, hold: LegalHold) -> None:
        super().__init__(f"{recording.sid} is under legal hold {hold}")
        self.recording = recording
        self.hold = hold


@dataclass(frozen=True)
class RetentionStep:
    """One deletion a run would make: ``kind`` is ``soft`` or ``hard``."""

    recording_id: int
    recording_sid: str
    kind: str
    policy: str


@dataclass
class RetentionSummary:
    """What :func:`retention_apply` did (or, with ``dry_run``, would do)."""

    dry_run: bool
    planned: list[RetentionStep] = field(default_factory=list)
    soft_deleted: list[str] = field(default_factory=list)
    hard_deleted: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        """The counts, for logs and the task's result."""
        return {
            "planned": len(self.planned),
            "soft_deleted": len(self.soft_deleted),
            "hard_deleted": len(self.hard_deleted),
            "held": len(self.held),
            "failed": len(self.failed),
        }


# --- holds --------------------------------------------------------------------------------------


def _started(recording: Recording) -> datetime:
    """When the recording started, as best known (start, else creation at Twilio, else here)."""
    return recording.start_time or recording.date_created or recording.created_at


def hold_covers(*, hold: LegalHold, recording: Recording) -> bool:
    """True when ``hold`` names the recording, its call, or a date range it started in
    (whether or not the hold is still active)."""
    if recording.sid in (hold.recording_sids or []):
        return True
    if recording.call_sid and recording.call_sid in (hold.call_sids or []):
        return True
    if hold.started_from is None and hold.started_until is None:
        return False
    started = _started(recording)
    if hold.started_from is not None and started < hold.started_from:
        return False
    return hold.started_until is None or started < hold.started_until


def _active_holds() -> list[LegalHold]:
    return list(LegalHold.objects.filter(released_at__isnull=True).order_by("created_at", "pk"))


def recording_is_held(
    recording: Recording, *, holds: Iterable[LegalHold] | None = None
) -> LegalHold | None:
    """The active legal hold that covers ``recording``, else None: the one place that decides,
    asked by every deletion path before it destroys or hides anything. ``holds`` lets a batch
    pass the active holds it already loaded."""
    for hold in _active_holds() if holds is None else holds:
        if hold.released_at is None and hold_covers(hold=hold, recording=recording):
            return hold
    return None


def _audit_held(
    recording: Recording, hold: LegalHold, *, attempted: str, context: Mapping[str, Any]
) -> None:
    access_log_append(
        action=ACTION,
        outcome=AccessOutcome.DENIED,
        reason_code="legal_hold",
        recording_sid=recording.sid,
        detail={"hold": hold.pk, "case": hold.case_reference[:100], "attempted": attempted},
        **context,
    )


@transaction.atomic
def legal_hold_release(
    *, hold_id: int, released_by: str, reason: str, context: Mapping[str, Any] | None = None
) -> LegalHold:
    """Release a hold (recordings it covered become deletable again by their policies) and
    audit it; a hold is released, never deleted, so who held what and why stays on record.
    ``context`` passes the request fields (identity, client_ip…) to the audit row."""
    if not reason.strip():
        raise ValueError("a release reason is required")
    hold = LegalHold.objects.select_for_update().get(pk=hold_id)
    if hold.released_at is not None:
        return hold
    hold.released_at = timezone.now()
    hold.released_by = released_by[:150]
    hold.release_reason = reason
    hold.save(update_fields=["released_at", "released_by", "release_reason"])
    access_log_append(
        action=HOLD_ACTION,
        outcome=AccessOutcome.ALLOWED,
        reason_code="released",
        detail={"hold": hold.pk, "case": hold.case_reference[:100], "reason": reason[:500]},
        **(context or {}),
    )
    return hold


# --- the plan -----------------------------------------------------------------------------------


def _policy_covers(policy: RetentionPolicy, recording: Recording) -> bool:
    if policy.account_sids and recording.account_sid not in policy.account_sids:
        return False
    return not policy.sources or recording.source in policy.sources


def _policy_scope(policy: RetentionPolicy) -> Q:
    scope = Q()
    if policy.account_sids:
        scope &= Q(account_sid__in=policy.account_sids)
    if policy.sources:
        scope &= Q(source__in=policy.sources)
    return scope


def _candidates(*, now: datetime) -> list[tuple[RetentionStep, Recording]]:
    """Every deletion due at ``now``, held or not, with its recording."""
    policies = list(RetentionPolicy.objects.filter(enabled=True))
    by_name = {policy.name: policy for policy in RetentionPolicy.objects.all()}
    found: list[tuple[RetentionStep, Recording]] = []
    live = Recording.objects.exclude(status=RecordingStatus.DELETED).annotate(
        started=Coalesce("start_time", "date_created", "created_at")
    )
    if policies:
        due = Q()
        for policy in policies:
            due |= _policy_scope(policy) & Q(started__lte=now - timedelta(days=policy.keep_days))
        for recording in live.filter(due, soft_deleted_at__isnull=True).order_by("started", "pk"):
            covering = [p for p in policies if _policy_covers(p, recording)]
            # Where several policies apply, the longest keep wins: deleting is the one-way door.
            keeper = max(covering, key=lambda p: (p.keep_days, p.name))
            if _started(recording) <= now - timedelta(days=keeper.keep_days):
                found.append(
                    (RetentionStep(recording.pk, recording.sid, SOFT, keeper.name), recording)
                )
    for recording in live.filter(
        soft_deleted_at__isnull=False, hard_deleted_at__isnull=True
    ).order_by("soft_deleted_at", "pk"):
        deleting_policy = by_name.get(recording.deleted_by_policy)
        grace = deleting_policy.hard_delete_grace_days if deleting_policy else DEFAULT_GRACE_DAYS
        soft_deleted_at = recording.soft_deleted_at  # not null: filtered above
        if soft_deleted_at is not None and soft_deleted_at <= now - timedelta(days=grace):
            found.append(
                (
                    RetentionStep(recording.pk, recording.sid, HARD, recording.deleted_by_policy),
                    recording,
                )
            )
    return found


def retention_plan(*, now: datetime) -> list[RetentionStep]:
    """The deletions due at ``now``: soft for recordings past their policy's ``keep_days``,
    hard for soft-deleted ones past the grace period; never held or already deleted ones.
    Reads only, so ``apply_retention --dry-run`` and the admin can show it."""
    holds = _active_holds()
    return [
        step
        for step, recording in _candidates(now=now)
        if recording_is_held(recording, holds=holds) is None
    ]


# --- deleting -----------------------------------------------------------------------------------


def recording_soft_delete(
    *,
    recording_id: int,
    policy: str,
    now: datetime | None = None,
    context: Mapping[str, Any] | None = None,
) -> Recording:
    """Hide a recording from playback at once (the first step of a deletion), audited with the
    policy (or ``admin``) that caused it; a no-op for one already hidden. Raises
    :class:`RecordingHeld` (after auditing the refusal) when a legal hold covers it."""
    context = dict(context or {})
    with transaction.atomic():
        recording = Recording.objects.select_for_update().get(pk=recording_id)
        hold = recording_is_held(recording)
        if hold is None and recording.soft_deleted_at is None:
            recording.soft_deleted_at = now or timezone.now()
            recording.deleted_by_policy = policy[:100]
            recording.retention_error = ""
            recording.save(
                update_fields=[
                    "soft_deleted_at",
                    "deleted_by_policy",
                    "retention_error",
                    "updated_at",
                ]
            )
            access_log_append(
                action=ACTION,
                outcome=AccessOutcome.ALLOWED,
                reason_code=SOFT,
                recording_sid=recording.sid,
                detail={"policy": policy[:100]},
                **context,
            )
            logger.info("recording %s soft-deleted (policy %s)", recording.sid, policy)
    if hold is not None:
        # Written outside the refused transaction so the refusal's row survives it.
        _audit_held(recording, hold, attempted=SOFT, context=context)
        raise RecordingHeld(recording, hold)
    return recording


def _set_error(recording: Recording, error: str) -> None:
    Recording.objects.filter(pk=recording.pk).update(
        retention_error=error[:2000], updated_at=timezone.now()
    )
    logger.warning("recording %s not deleted yet: %s", recording.sid, error)


def recording_hard_delete(
    *, recording_id: int, now: datetime | None = None, context: Mapping[str, Any] | None = None
) -> Recording:
    """Delete a soft-deleted recording's media for good: from storage, then at Twilio, then
    mark the row ``deleted`` (kept, with its audit history) and audit it.

    Every step is repeatable: an object already gone and Twilio's 404 count as done, and what
    a step achieved is recorded before the next starts, so a rerun after a crash finishes the
    job. Raises :class:`RecordingHeld` (audited) under a legal hold, ``StorageError`` or
    ``TwilioError`` when a step fails (kept in ``retention_error``; the recording stays hidden
    and the next run tries again).
    """
    context = dict(context or {})
    recording = Recording.objects.get(pk=recording_id)
    if recording.status == RecordingStatus.DELETED and recording.hard_deleted_at:
        return recording
    if recording.soft_deleted_at is None:
        raise ValueError(f"{recording.sid} must be soft-deleted before its media is deleted")
    hold = recording_is_held(recording)
    if hold is not None:
        _audit_held(recording, hold, attempted=HARD, context=context)
        raise RecordingHeld(recording, hold)

    if recording.media_location in (MediaLocation.S3, MediaLocation.LOCAL) and recording.media_key:
        try:
            storage.object_delete(
                local=recording.media_location == MediaLocation.LOCAL,
                bucket=recording.media_bucket,
                key=recording.media_key,
            )
        except storage.StorageError as exc:
            _set_error(recording, f"storage delete: {exc}")
            raise
        # Remembered before Twilio is asked, so a crash in between never plays a deleted file.
        Recording.objects.filter(pk=recording.pk).update(
            media_location=MediaLocation.UNKNOWN, updated_at=timezone.now()
        )
    if recording.twilio_media_deleted_at is None:
        try:
            twilio_api.recording_delete(sid=recording.sid, account_sid=recording.account_sid)
        except twilio_api.TwilioRejected as exc:
            if exc.status != 404:
                _set_error(recording, f"delete at Twilio refused ({exc.status}): {exc}")
                raise
            logger.info("recording %s was already deleted at Twilio", recording.sid)
        except twilio_api.TwilioError as exc:
            _set_error(recording, f"delete at Twilio: {exc}")
            raise
        Recording.objects.filter(pk=recording.pk).update(
            twilio_media_deleted_at=timezone.now(), updated_at=timezone.now()
        )

    with transaction.atomic():
        recording = Recording.objects.select_for_update().get(pk=recording_id)
        recording.status = RecordingStatus.DELETED
        recording.media_location = MediaLocation.UNKNOWN
        recording.hard_deleted_at = now or timezone.now()
        recording.retention_error = ""
        recording.save(
            update_fields=[
                "status",
                "media_location",
                "hard_deleted_at",
                "retention_error",
                "updated_at",
            ]
        )
        access_log_append(
            action=ACTION,
            outcome=AccessOutcome.ALLOWED,
            reason_code=HARD,
            recording_sid=recording.sid,
            detail={"policy": recording.deleted_by_policy[:100]},
            **context,
        )
    logger.info("recording %s hard-deleted (policy %s)", recording.sid, recording.deleted_by_policy)
    return recording


def retention_apply(*, now: datetime | None = None, dry_run: bool = False) -> RetentionSummary:
    """Apply every enabled policy at ``now``: soft-delete what is past its keep, hard-delete
    what is past its grace, refuse (and audit) what a legal hold covers. With ``dry_run``,
    only answers the plan. One recording's failure never stops the others; it is kept on the
    recording and retried on the next run."""
    now = now or timezone.now()
    summary = RetentionSummary(dry_run=dry_run)
    holds = _active_holds()
    for step, recording in _candidates(now=now):
        hold = recording_is_held(recording, holds=holds)
        if hold is not None:
            summary.held.append(step.recording_sid)
            if not dry_run:
                _audit_held(recording, hold, attempted=step.kind, context={})
            continue
        summary.planned.append(step)
        if dry_run:
            continue
        try:
            if step.kind == SOFT:
                recording_soft_delete(recording_id=step.recording_id, policy=step.policy, now=now)
                summary.soft_deleted.append(step.recording_sid)
            else:
                recording_hard_delete(recording_id=step.recording_id, now=now)
                summary.hard_deleted.append(step.recording_sid)
        except RecordingHeld:  # a hold placed since the plan was made
            summary.held.append(step.recording_sid)
        except (storage.StorageError, twilio_api.TwilioError) as exc:
            summary.failed[step.recording_sid] = str(exc)
    if not dry_run:
        logger.info("retention applied: %s", summary.as_dict())
    return summary
