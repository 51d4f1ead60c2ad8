"""Retention and legal holds: which recordings are due for deletion, and deleting them safely.

A :class:`~recordings.models.RetentionPolicy` keeps the recordings in its scope for ``keep_days``
after they started (when several apply, the longest wins); a restricted recording is kept for
the policy's ``restricted_keep_days`` instead when it has one (:func:`policy_keep_days`).
Deletion has two steps:

1. **soft**: the recording is hidden at once (url_provider and the media endpoint answer 404
   ``recording_deleted``); nothing is destroyed, so a mistake can still be undone by hand.
2. **hard**, ``hard_delete_grace_days`` later: the stored media is deleted from the bucket (or
   the local folder), then the recording at Twilio (``DELETE``; Twilio's 404 means it is already
   gone), and only then is the row marked ``deleted``. The row and its audit history stay.

Each step is idempotent, so a run that crashed between the storage delete and the Twilio delete
is finished by the next one; a failure (S3 refusing, Twilio down) is kept in
``retention_error`` and the recording stays soft-deleted until a later run succeeds.

:func:`hold_covers` is the one rule of what a legal hold covers: :func:`recording_is_held` asks
it for one recording, :func:`holds_by_recording` for a page or a selection (the holds read once),
and :func:`recordings_on_hold` says the same rule in SQL for list filters (a test checks the two
agree). A held recording is never deleted, by a policy, an admin action or any other caller of
these services; every refused attempt writes a ``denied`` access-log row with reason
``legal_hold``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import BooleanField, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce
from django.utils import timezone

from audit.models import AccessLog, AccessOutcome
from audit.services import access_log_append
from recordings.analysis import service as analysis_service
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


def _named(hold: LegalHold, field_name: str) -> frozenset[str]:
    """The SIDs a hold names in ``field_name``, as a set kept on the instance: a page of 100
    recordings against twenty holds of 1,000 SIDs is then 2,000 lookups, not 2,000,000."""
    cache: dict[str, tuple[list[str], frozenset[str]]] = hold.__dict__.setdefault("_named_sids", {})
    value = getattr(hold, field_name) or []
    cached = cache.get(field_name)
    if cached is None or cached[0] is not value:  # reassigned since: read again
        cached = (value, frozenset(v for v in value if isinstance(v, str)))
        cache[field_name] = cached
    return cached[1]


def hold_covers(*, hold: LegalHold, recording: Recording) -> bool:
    """True when ``hold`` names the recording, its call, or a date range it started in
    (whether or not the hold is still active)."""
    if recording.sid in _named(hold, "recording_sids"):
        return True
    if recording.call_sid and recording.call_sid in _named(hold, "call_sids"):
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


def holds_by_recording(
    recordings: Iterable[Recording], *, holds: Iterable[LegalHold] | None = None
) -> dict[int, list[LegalHold]]:
    """The active holds covering each of ``recordings`` (by primary key; a recording no hold
    covers is absent), oldest hold first: :func:`hold_covers` for a whole page or selection
    at once, with the active holds read in one query instead of one per recording."""
    active = _active_holds() if holds is None else [h for h in holds if h.released_at is None]
    found: dict[int, list[LegalHold]] = {}
    if not active:
        return found
    for recording in recordings:
        covering = [hold for hold in active if hold_covers(hold=hold, recording=recording)]
        if covering:
            found[recording.pk] = covering
    return found


def _named_by_holds(column: str, field_name: str, hold_ids: list[int]) -> Q:
    """``column`` is one of the SIDs the holds ``hold_ids`` name in ``field_name``, as a
    subquery over the holds' JSON lists. Not ``__in`` with the SIDs as parameters: twenty
    holds of 1,000 SIDs make a query of 20,000 parameters, which takes Django and psycopg
    longer to build than PostgreSQL to answer, and which PostgreSQL compares row by row,
    where the subquery is one hashed semi-join."""
    # Only table and column names are interpolated (ours, from the models); the ids are
    # parameters.
    holds = LegalHold._meta.db_table
    recordings = Recording._meta.db_table
    if connection.vendor == "postgresql":
        elements = f'SELECT jsonb_array_elements_text(h."{field_name}") FROM "{holds}" h'  # noqa: S608
    else:  # SQLite, embedded mode
        elements = f'SELECT j.value FROM "{holds}" h, json_each(h."{field_name}") j'  # noqa: S608
    marks = ", ".join(["%s"] * len(hold_ids))
    sql = f'"{recordings}"."{column}" IN ({elements} WHERE h."id" IN ({marks}))'
    return Q(RawSQL(sql, list(hold_ids), output_field=BooleanField()))  # noqa: S611


def recordings_on_hold(
    queryset: QuerySet[Recording], *, held: bool, holds: Iterable[LegalHold] | None = None
) -> QuerySet[Recording]:
    """``queryset`` narrowed to the recordings an active hold covers (``held``) or none
    covers: :func:`hold_covers` said in SQL, for list filters over any number of rows. The
    test suite checks both say the same for every kind of hold. ``holds`` (released ones
    too) asks about those holds instead, e.g. what one hold covers."""
    active = _active_holds() if holds is None else list(holds)
    covered = Q(pk__in=[])
    naming_recordings = [hold.pk for hold in active if hold.recording_sids]
    if naming_recordings:
        covered |= _named_by_holds("sid", "recording_sids", naming_recordings)
    naming_calls = [hold.pk for hold in active if hold.call_sids]
    if naming_calls:
        covered |= _named_by_holds("call_sid", "call_sids", naming_calls)
    for hold in active:
        if hold.started_from is None and hold.started_until is None:
            continue
        in_range = Q()
        if hold.started_from is not None:
            in_range &= Q(hold_started__gte=hold.started_from)
        if hold.started_until is not None:
            in_range &= Q(hold_started__lt=hold.started_until)
        covered |= in_range
    queryset = queryset.annotate(hold_started=Coalesce("start_time", "date_created", "created_at"))
    return queryset.filter(covered) if held else queryset.exclude(covered)


def _audit_held(
    recording: Recording,
    hold: LegalHold,
    *,
    attempted: str,
    context: Mapping[str, Any],
    reason: str = "",
) -> None:
    detail: dict[str, Any] = {
        "hold": hold.pk,
        "case": hold.case_reference[:100],
        "attempted": attempted,
    }
    if reason:
        detail["reason"] = reason[:500]
    access_log_append(
        action=ACTION,
        outcome=AccessOutcome.DENIED,
        reason_code="legal_hold",
        recording_sid=recording.sid,
        detail=detail,
        **context,
    )


@transaction.atomic
def legal_hold_place(
    *,
    hold: LegalHold,
    created_by: str,
    source: str = "form",
    context: Mapping[str, Any] | None = None,
) -> LegalHold:
    """Place ``hold`` (a new, unsaved one, validated as the model says: a reason and something
    to hold) and audit it as ``legal_hold``/``created`` with its scope and where it was placed
    from (``form``, ``selection`` or ``search``). From then on no deletion path touches what
    it covers until it is released."""
    if hold.pk is not None:
        raise ValueError("a placed hold is released, never placed again")
    if not hold.reason.strip():
        raise ValueError("a reason is required to place a hold")
    hold.created_by = created_by[:150]
    hold.full_clean()
    hold.save()
    access_log_append(
        action=HOLD_ACTION,
        outcome=AccessOutcome.ALLOWED,
        reason_code="created",
        detail={
            "hold": hold.pk,
            "case": hold.case_reference[:100],
            "recordings": len(hold.recording_sids),
            "calls": len(hold.call_sids),
            "range": [
                hold.started_from.isoformat() if hold.started_from else None,
                hold.started_until.isoformat() if hold.started_until else None,
            ],
            "source": source,
        },
        **(context or {}),
    )
    return hold


def hold_recording_audit(
    *,
    hold: LegalHold,
    recording: Recording,
    reason_code: str,
    detail: Mapping[str, Any],
    context: Mapping[str, Any] | None,
    outcome: str = AccessOutcome.ALLOWED,
) -> None:
    """One ``legal_hold`` access-log row about what ``hold`` did to one recording (its S3
    locks, on the media and on derived files), naming the hold and its case."""
    access_log_append(
        action=HOLD_ACTION,
        outcome=outcome,
        reason_code=reason_code,
        recording_sid=recording.sid,
        detail={"hold": hold.pk, "case": hold.case_reference[:100], **detail},
        **(context or {}),
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


def policy_keep_days(policy: RetentionPolicy, recording: Recording) -> int:
    """The days ``policy`` keeps ``recording``: its ``restricted_keep_days`` for a restricted
    recording when it has one, else ``keep_days``."""
    if recording.restricted_at is not None and policy.restricted_keep_days is not None:
        return policy.restricted_keep_days
    return policy.keep_days


def _policy_due(policy: RetentionPolicy, *, now: datetime) -> Q:
    """:func:`policy_keep_days` in SQL: the recordings past ``policy``'s keep at ``now``."""
    past = Q(started__lte=now - timedelta(days=policy.keep_days))
    if policy.restricted_keep_days is None:
        return past
    restricted_past = Q(started__lte=now - timedelta(days=policy.restricted_keep_days))
    return (Q(restricted_at__isnull=True) & past) | (
        Q(restricted_at__isnull=False) & restricted_past
    )


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
            due |= _policy_scope(policy) & _policy_due(policy, now=now)
        for recording in live.filter(due, soft_deleted_at__isnull=True).order_by("started", "pk"):
            covering = [p for p in policies if _policy_covers(p, recording)]
            # Where several policies apply, the longest keep wins: deleting is the one-way door.
            keeper = max(covering, key=lambda p: (policy_keep_days(p, recording), p.name))
            if _started(recording) <= now - timedelta(days=policy_keep_days(keeper, recording)):
                found.append(
                    (RetentionStep(recording.pk, recording.sid, SOFT, keeper.name), recording)
                )
    for recording in live.filter(
        soft_deleted_at__isnull=False, hard_deleted_at__isnull=True
    ).order_by("soft_deleted_at", "pk"):
        purge_at = hard_delete_due(recording=recording, policies=by_name)
        if purge_at is not None and purge_at <= now:
            found.append(
                (
                    RetentionStep(recording.pk, recording.sid, HARD, recording.deleted_by_policy),
                    recording,
                )
            )
    return found


def hard_delete_due(
    *, recording: Recording, policies: Mapping[str, RetentionPolicy] | None = None
) -> datetime | None:
    """When a soft-deleted recording's media is deleted for good: the grace period of the
    policy that deleted it (:data:`DEFAULT_GRACE_DAYS` for a deletion by hand or by a policy
    since removed) after its soft deletion. None when it is not soft-deleted, or already
    hard-deleted. ``policies`` (by name) lets a batch pass the policies it already loaded."""
    if recording.soft_deleted_at is None or recording.hard_deleted_at is not None:
        return None
    if policies is None:
        deleting_policy = RetentionPolicy.objects.filter(name=recording.deleted_by_policy).first()
    else:
        deleting_policy = policies.get(recording.deleted_by_policy)
    grace = deleting_policy.hard_delete_grace_days if deleting_policy else DEFAULT_GRACE_DAYS
    return recording.soft_deleted_at + timedelta(days=grace)


@dataclass(frozen=True)
class Deletion:
    """What an officer needs to know about a recording's deletion: when it was hidden, by
    which policy or staff member (``by``, the audit row's identity when there is one), why
    (the reason typed at a deletion by hand), and when its media goes (``hard_delete_at``,
    None once it has gone: then ``hard_deleted_at`` says when)."""

    soft_deleted_at: datetime
    by: str
    reason: str
    hard_delete_at: datetime | None
    hard_deleted_at: datetime | None
    error: str


def recording_deletion(*, recording: Recording) -> Deletion | None:
    """The deletion of ``recording`` as its banner tells it, None when it is not deleted.
    The reason lives only in the ``retention_delete``/``soft`` audit row (the recording has
    no field for it), so that row is read back (an indexed lookup by recording SID)."""
    if recording.soft_deleted_at is None:
        return None
    row = (
        AccessLog.objects.filter(
            recording_sid=recording.sid,
            action=ACTION,
            outcome=AccessOutcome.ALLOWED,
            reason_code=SOFT,
        )
        .order_by("-sequence")
        .first()
    )
    detail = row.detail if row is not None and isinstance(row.detail, dict) else {}
    # A policy's run has no identity; a deletion by hand has the staff member's.
    if row is not None and row.identity:
        by = row.identity
    elif recording.deleted_by_policy.startswith("admin:"):
        by = recording.deleted_by_policy
    else:
        by = f"retention policy {recording.deleted_by_policy or '-'}"
    return Deletion(
        soft_deleted_at=recording.soft_deleted_at,
        by=by,
        reason=str(detail.get("reason", "")),
        hard_delete_at=hard_delete_due(recording=recording),
        hard_deleted_at=recording.hard_deleted_at,
        error=recording.retention_error,
    )


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
    reason: str = "",
) -> Recording:
    """Hide a recording from playback at once (the first step of a deletion), audited with the
    policy (or ``admin``) that caused it and the ``reason`` given for a deletion by hand; a
    no-op for one already hidden. Raises :class:`RecordingHeld` (after auditing the refusal)
    when a legal hold covers it."""
    context = dict(context or {})
    detail: dict[str, Any] = {"policy": policy[:100]}
    if reason:
        detail["reason"] = reason[:500]
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
                detail=detail,
                **context,
            )
            logger.info("recording %s soft-deleted (policy %s)", recording.sid, policy)
    if hold is not None:
        # Written outside the refused transaction so the refusal's row survives it.
        _audit_held(recording, hold, attempted=SOFT, context=context, reason=reason)
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
    # The waveform and speech activity are derived from the audio and go with it.
    try:
        analysis_service.recording_analysis_forget(recording_id=recording.pk)
    except analysis_service.AnalysisUnavailable as exc:
        _set_error(recording, f"derived data delete: {exc}")
        raise storage.StorageError(f"derived data delete: {exc}") from exc
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
