"""Legal holds on locked storage: every recording object a legal hold covers in the portal's S3
gets an S3 Object Lock legal hold, so that S3 itself refuses to delete that object version, not
only the portal (issue 15, item 4).

A :class:`~recordings.models.HoldObjectLock` row per hold and recording says where its lock
stands: ``locked`` (with the version it names), ``released``, ``failed`` (S3 down or refusing:
the error is kept, shown on the case page and retried) or ``not_enabled`` (the bucket has no
Object Lock: the hold is enforced by the portal only, and said so). Every change of a row's
state is a ``legal_hold`` access-log row naming bucket, key, version and status.

- :func:`hold_locks_apply` sets the locks a hold still owes (missing, failed, or on a bucket
  that has since gained Object Lock): after a hold is placed, and by the reconcile for
  recordings that arrive or are archived after the hold (a hold by call or date range covers
  them as they come).
- :func:`hold_locks_release` clears a released hold's locks, except on objects another active
  hold still covers (those stay locked, and the row says which hold keeps them).
- :func:`hold_locks_reconcile` does both for every hold: the periodic safety net.
- :func:`hold_lock_readback` reads the status back from S3 (``GetObjectLegalHold``) for one
  page of a case, so the case page shows what S3 says, not what the portal believes.

What a hold covers is :func:`recordings.lifecycle.retention.hold_covers`' rule (here in its SQL
form); which objects the portal controls: recordings stored in S3 (``media_location`` S3 with a
key). Local files (embedded mode) and media still at Twilio have no lock to set; the case page
says so. The held recordings' derived files (waveform peaks and speech segments) are locked and
released in the same passes by ``recordings.lifecycle.hold_derived_locks``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, QuerySet
from django.utils import timezone

from audit.models import AccessOutcome
from recordings import jobs
from recordings.integrations import storage
from recordings.lifecycle import hold_derived_locks, retention
from recordings.lifecycle.lock_release import lock_release
from recordings.models import (
    HoldDerivedLock,
    HoldLockState,
    HoldObjectLock,
    LegalHold,
    MediaLocation,
    Recording,
)

logger = logging.getLogger(__name__)

INLINE_LIMIT = 200
"""Objects locked in the request that places a hold; a bigger hold's remaining locks are set by
the queued job (and, whatever happens to it, by the reconcile)."""

RECONCILE_BATCH = 2_000
"""Objects one hold's reconcile pass handles; the next pass goes on from there."""

S3_THREADS = 8
"""Parallel S3 calls: a page of 50 read back costs about seven round trips instead of fifty,
and a lock pass sets eight objects' locks at a time (boto3's clients are thread-safe)."""

CHUNK = 64
"""Objects whose S3 calls go out together before their outcomes are recorded; after a chunk
in which S3 did not answer, the pass stops."""

NOT_ENABLED_NOTE = "Object Lock not enabled on bucket {bucket}: hold is enforced by the portal only"


@dataclass
class LockRun:
    """What one pass did: counts by outcome, and whether it stopped early because S3 was
    unreachable (the rest stays owed, for the job or the reconcile)."""

    locked: int = 0
    released: int = 0
    kept: int = 0
    failed: int = 0
    not_enabled: int = 0
    remaining: int = 0
    stopped: str = ""
    buckets_without_lock: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The counts, for logs and task results."""
        return {
            "locked": self.locked,
            "released": self.released,
            "kept": self.kept,
            "failed": self.failed,
            "not_enabled": self.not_enabled,
            "remaining": self.remaining,
            "stopped": self.stopped,
        }


def _bucket(recording: Recording) -> str:
    return recording.media_bucket or settings.AWS_STORAGE_BUCKET_NAME


def stored_in_s3(queryset: QuerySet[Recording]) -> QuerySet[Recording]:
    """The recordings of ``queryset`` whose media the portal keeps in S3: the objects a hold
    can lock."""
    return queryset.filter(media_location=MediaLocation.S3).exclude(media_key="")


def hold_covered(hold: LegalHold) -> QuerySet[Recording]:
    """Every recording ``hold`` covers now (released or not), by the one rule."""
    return retention.recordings_on_hold(Recording.objects.all(), held=True, holds=[hold])


def _owed(hold: LegalHold, *, skip_buckets: Iterable[str] = ()) -> QuerySet[Recording]:
    """Covered S3 recordings without a ``locked`` row for this hold, oldest first; those
    already found on a bucket in ``skip_buckets`` (still without Object Lock) left out."""
    locked = HoldObjectLock.objects.filter(
        hold=hold, recording=OuterRef("pk"), state=HoldLockState.LOCKED
    )
    owed = stored_in_s3(hold_covered(hold)).filter(~Exists(locked))
    skip = list(skip_buckets)
    if skip:
        said = HoldObjectLock.objects.filter(
            hold=hold,
            recording=OuterRef("pk"),
            state=HoldLockState.NOT_ENABLED,
            bucket__in=skip,
        )
        owed = owed.filter(~Exists(said))
    return owed.order_by("pk")


def _untried(hold: LegalHold) -> int:
    """Covered S3 recordings this hold has not tried to lock at all."""
    tried = HoldObjectLock.objects.filter(hold=hold, recording=OuterRef("pk"))
    return stored_in_s3(hold_covered(hold)).filter(~Exists(tried)).count()


def _record(
    *,
    hold: LegalHold,
    recording: Recording,
    state: str,
    version_id: str = "",
    error: str = "",
    failed: bool = False,
) -> tuple[HoldObjectLock, str]:
    """Write the row's new state; answers it and the state it had ("" for a new row)."""
    with transaction.atomic():
        row, created = HoldObjectLock.objects.select_for_update().get_or_create(
            hold=hold,
            recording=recording,
            defaults={
                "bucket": _bucket(recording),
                "key": recording.media_key,
                "state": state,
            },
        )
        before = "" if created else row.state
        row.bucket = _bucket(recording)
        row.key = recording.media_key
        row.state = state
        if version_id:
            row.version_id = version_id
        row.error = error[:2000]
        row.attempts = row.attempts + 1 if failed else 0
        row.updated_at = timezone.now()
        row.save()
    return row, before


def _set_on(recording: Recording, version_id: str) -> str | storage.StorageError:
    """One object's S3 call (run in the pool): the version locked, or the error."""
    try:
        return storage.object_legal_hold_set(
            bucket=_bucket(recording), key=recording.media_key, on=True, version_id=version_id
        )
    except storage.StorageError as exc:
        return exc


def _lock_failed(
    *,
    hold: LegalHold,
    recording: Recording,
    run: LockRun,
    exc: storage.StorageError,
    context: Mapping[str, Any] | None,
) -> None:
    run.failed += 1
    _record(hold=hold, recording=recording, state=HoldLockState.FAILED, error=str(exc), failed=True)
    retention.hold_recording_audit(
        hold=hold,
        recording=recording,
        reason_code="lock_failed",
        outcome=AccessOutcome.ERROR,
        detail={
            "bucket": _bucket(recording),
            "object": recording.media_key,
            "status": "ON",
            "error": storage.storage_error_reason(exc),
        },
        context=context,
    )


def _lock_chunk(
    *,
    hold: LegalHold,
    recordings: list[Recording],
    run: LockRun,
    lock_enabled: dict[str, bool],
    pool: ThreadPoolExecutor,
    context: Mapping[str, Any] | None,
) -> None:
    """Lock a chunk of objects: S3's calls side by side in ``pool`` (each object is a
    ``HEAD`` and a ``PutObjectLegalHold``, so a case of 10,000 is not 20,000 round trips in a
    row), then each outcome recorded and audited here, in order. Raises
    :class:`~recordings.integrations.storage.StorageUnavailable` after recording when S3 did
    not answer, so the pass stops."""
    for recording in recordings:
        bucket = _bucket(recording)
        if bucket in lock_enabled:
            continue
        try:
            lock_enabled[bucket] = storage.bucket_object_lock_enabled(bucket=bucket)
        except storage.StorageError as exc:
            _lock_failed(hold=hold, recording=recording, run=run, exc=exc, context=context)
            raise
    versions = dict(
        HoldObjectLock.objects.filter(
            hold=hold, recording_id__in=[r.pk for r in recordings]
        ).values_list("recording_id", "version_id")
    )
    asked = [r for r in recordings if lock_enabled[_bucket(r)]]
    answers = dict(
        zip(
            [r.pk for r in asked],
            pool.map(lambda r: _set_on(r, versions.get(r.pk, "")), asked),
            strict=True,
        )
    )
    unavailable: storage.StorageError | None = None
    for recording in recordings:
        bucket = _bucket(recording)
        where = {"bucket": bucket, "object": recording.media_key}
        answer = answers.get(recording.pk)
        if isinstance(answer, storage.ObjectLockNotEnabled):
            lock_enabled[bucket] = False  # the configuration said yes, the bucket says no
        if not lock_enabled[bucket]:
            run.not_enabled += 1
            if bucket not in run.buckets_without_lock:
                run.buckets_without_lock.append(bucket)
            note = NOT_ENABLED_NOTE.format(bucket=bucket)
            _, before = _record(
                hold=hold, recording=recording, state=HoldLockState.NOT_ENABLED, error=note
            )
            if before != HoldLockState.NOT_ENABLED:  # said once, not on every reconcile
                retention.hold_recording_audit(
                    hold=hold,
                    recording=recording,
                    reason_code="lock_not_enabled",
                    outcome=AccessOutcome.ERROR,
                    detail={**where, "status": "portal_only"},
                    context=context,
                )
            continue
        if isinstance(answer, storage.StorageError):
            _lock_failed(hold=hold, recording=recording, run=run, exc=answer, context=context)
            if isinstance(answer, storage.StorageUnavailable):
                unavailable = answer
            continue
        version = str(answer or "")
        run.locked += 1
        _record(hold=hold, recording=recording, state=HoldLockState.LOCKED, version_id=version)
        retention.hold_recording_audit(
            hold=hold,
            recording=recording,
            reason_code="lock_on",
            detail={**where, "version": version, "status": "ON"},
            context=context,
        )
    if unavailable is not None:
        raise unavailable


def hold_locks_apply(
    *, hold_id: int, limit: int | None = RECONCILE_BATCH, context: Mapping[str, Any] | None = None
) -> LockRun:
    """Set the S3 Object Lock legal hold on every object ``hold_id`` covers and has not locked
    yet (at most ``limit``; ``remaining`` says how many are still owed). A released hold's locks
    are cleared instead. One object's failure is recorded on its row and audited; an S3 that
    does not answer stops the pass (the rest stays owed, not half-tried)."""
    hold = LegalHold.objects.get(pk=hold_id)
    if hold.released_at is not None:
        return hold_locks_release(hold_id=hold_id, limit=limit, context=context)
    run = LockRun()
    lock_enabled: dict[str, bool] = {}
    # Objects already found on a bucket without Object Lock are asked about again only once
    # the bucket has it: a 10,000-recording case there costs one call per pass, not 10,000.
    said = HoldObjectLock.objects.filter(hold=hold, state=HoldLockState.NOT_ENABLED)
    try:
        for bucket in said.values_list("bucket", flat=True).distinct():
            lock_enabled[bucket] = storage.bucket_object_lock_enabled(bucket=bucket)
    except storage.StorageError as exc:
        run.stopped = str(exc)
        run.remaining = _untried(hold)
        return run
    skip = [bucket for bucket, enabled in lock_enabled.items() if not enabled]
    owed = _owed(hold, skip_buckets=skip)
    batch = list(owed[:limit] if limit is not None else owed)
    with ThreadPoolExecutor(max_workers=S3_THREADS) as pool:
        for first in range(0, len(batch), CHUNK):
            try:
                _lock_chunk(
                    hold=hold,
                    recordings=batch[first : first + CHUNK],
                    run=run,
                    lock_enabled=lock_enabled,
                    pool=pool,
                    context=context,
                )
            except storage.StorageError as exc:
                run.stopped = str(exc)  # S3 did not answer: the rest stays owed, untried
                break
    if not run.stopped:
        # The held recordings' waveform and speech files, locked the same way.
        derived = hold_derived_locks.derived_locks_apply(hold_id=hold.pk, context=context)
        run.locked += derived.locked
        run.failed += derived.failed
        run.not_enabled += derived.not_enabled
        run.stopped = derived.stopped
    run.remaining = _untried(hold)
    logger.info("legal hold %s locks: %s", hold.pk, run.as_dict())
    return run


def hold_locks_release(
    *, hold_id: int, limit: int | None = RECONCILE_BATCH, context: Mapping[str, Any] | None = None
) -> LockRun:
    """Clear the locks a released hold set (``OFF`` on the version it locked), except where
    another active hold still covers the recording: that object stays locked and the row says
    which hold keeps it. Failures are recorded and retried like placing."""
    hold = LegalHold.objects.get(pk=hold_id)
    run = LockRun()
    if hold.released_at is None:
        raise ValueError("only a released hold's locks are cleared")
    others = [h for h in retention._active_holds() if h.pk != hold.pk]
    rows = (
        HoldObjectLock.objects.filter(
            hold=hold, state__in=[HoldLockState.LOCKED, HoldLockState.FAILED]
        )
        .select_related("recording")
        .order_by("pk")
    )
    batch = list(rows[:limit] if limit is not None else rows)
    for row in batch:
        recording = row.recording
        where = {"bucket": row.bucket, "object": row.key, "version": row.version_id}
        keeper = retention.recording_is_held(recording, holds=others)
        record = partial(_record, hold=hold, recording=recording)
        if not lock_release(
            hold=hold,
            row=row,
            recording=recording,
            keeper=keeper,
            where=where,
            record=record,
            run=run,
            context=context,
        ):
            break
    if not run.stopped:
        derived = hold_derived_locks.derived_locks_release(hold_id=hold.pk, context=context)
        run.released += derived.released
        run.kept += derived.kept
        run.failed += derived.failed
        run.stopped = derived.stopped
    logger.info("legal hold %s locks cleared: %s", hold.pk, run.as_dict())
    return run


def hold_locks_after_change(
    *, hold_id: int, context: Mapping[str, Any] | None = None, inline_limit: int = INLINE_LIMIT
) -> LockRun:
    """Right after a hold is placed or released: do up to ``inline_limit`` objects now, so the
    officer sees the result on the case page, and queue the rest (the reconcile is the safety
    net if the queue is down)."""
    run = hold_locks_apply(hold_id=hold_id, limit=inline_limit, context=context)
    if run.remaining and not run.stopped:
        jobs.queue_hold_locks(hold_id)
    return run


def hold_locks_reconcile(*, limit: int = RECONCILE_BATCH) -> dict[str, int]:
    """Apply every lock an active hold owes (recordings synced or archived since it was placed,
    earlier failures, buckets that gained Object Lock) and clear those a released hold still
    has; each hold is handled on its own, so one S3 outage is recorded, not spread."""
    totals: dict[str, int] = {"holds": 0, "locked": 0, "released": 0, "kept": 0, "failed": 0}
    pending_release = HoldObjectLock.objects.filter(
        hold=OuterRef("pk"), state__in=[HoldLockState.LOCKED, HoldLockState.FAILED]
    )
    holds = (
        LegalHold.objects.filter(released_at__isnull=True)
        | LegalHold.objects.filter(Exists(pending_release), released_at__isnull=False)
        | LegalHold.objects.filter(
            hold_derived_locks.released_holds_owing_derived(), released_at__isnull=False
        )
    )
    for hold in holds.order_by("pk"):
        totals["holds"] += 1
        run = hold_locks_apply(hold_id=hold.pk, limit=limit)
        for name in ("locked", "released", "kept", "failed"):
            totals[name] += getattr(run, name)
    return totals


# --- the case page: read back from S3 ----------------------------------------------------------


@dataclass(frozen=True)
class DerivedLockView:
    """One derived file's lock (a waveform's ``peaks.json`` or ``segments.json``) on a case
    page: what the portal recorded and what S3 answers now, as for the media."""

    name: str
    state: str
    s3_status: str
    readback_error: str

    @property
    def summary(self) -> str:
        """The words an officer reads, e.g. ``peaks.json ON``."""
        if self.state == HoldLockState.NOT_ENABLED:
            return f"{self.name}: bucket without Object Lock"
        if self.readback_error:
            return f"{self.name}: unknown ({self.readback_error})"
        return f"{self.name} {self.s3_status or 'not asked'}"


@dataclass(frozen=True)
class LockView:
    """One recording's line on a case page: where its media is, what the portal recorded for
    its lock, and what S3 answers now (``s3_status``: ``ON``, ``OFF``, or empty when not asked;
    ``readback_error`` when S3 could not say)."""

    recording: Recording
    location: str
    state: str
    error: str
    bucket: str
    key: str
    version_id: str
    s3_status: str
    readback_error: str
    # The recording's derived files this hold locked (``hold_derived_locks``), read back too.
    derived: tuple[DerivedLockView, ...] = ()

    @property
    def locked(self) -> bool:
        """True when S3 itself reports the legal hold ON for the object."""
        return self.s3_status == "ON"

    @property
    def summary(self) -> str:
        """The line an officer reads."""
        if self.location == "local":
            return "local file: hold enforced by the portal only"
        if self.location != "s3":
            return "media not in the portal's storage: hold enforced by the portal only"
        if self.state == HoldLockState.NOT_ENABLED:
            return self.error
        if self.readback_error:
            return f"lock status unknown: {self.readback_error}"
        if self.locked:
            return "locked (read back from S3)"
        if self.state == HoldLockState.FAILED:
            return f"NOT locked: {self.error} (retried by the reconcile)"
        if self.state == HoldLockState.RELEASED:
            return f"released; S3 reports {self.s3_status}" + (
                f" ({self.error})" if self.error else ""
            )
        if not self.state:
            return "NOT locked yet: pending (the reconcile applies it)"
        return f"NOT locked: S3 reports {self.s3_status}"


def _readback(row: HoldObjectLock | None, recording: Recording) -> tuple[str, str]:
    bucket = row.bucket if row else _bucket(recording)
    key = row.key if row else recording.media_key
    try:
        return (
            storage.object_legal_hold_status(
                bucket=bucket, key=key, version_id=row.version_id if row else ""
            ),
            "",
        )
    except storage.ObjectLockNotEnabled:
        return "OFF", NOT_ENABLED_NOTE.format(bucket=bucket)
    except storage.StorageError as exc:
        return "", str(exc)


def _derived_readback(row: HoldDerivedLock) -> DerivedLockView:
    name = row.key.rsplit("/", 1)[-1]
    if row.state == HoldLockState.NOT_ENABLED:
        return DerivedLockView(name, row.state, "", "")
    try:
        status = storage.object_legal_hold_status(
            bucket=row.bucket, key=row.key, version_id=row.version_id
        )
    except storage.ObjectLockNotEnabled:
        return DerivedLockView(name, row.state, "OFF", NOT_ENABLED_NOTE.format(bucket=row.bucket))
    except storage.StorageError as exc:
        return DerivedLockView(name, row.state, "", str(exc))
    return DerivedLockView(name, row.state, status, "")


def hold_lock_readback(*, hold: LegalHold, recordings: Iterable[Recording]) -> list[LockView]:
    """The lock of each of ``recordings`` (one page of a case) as S3 reports it now, beside
    what the portal recorded, with the locks of their derived files (waveforms). S3 is asked
    only for objects in S3 (a few calls at a time), and not for buckets the portal found
    without Object Lock."""
    recordings = list(recordings)
    derived_rows = list(
        HoldDerivedLock.objects.filter(
            hold=hold, recording_id__in=[r.pk for r in recordings]
        ).order_by("recording_id", "key")
    )
    rows = {
        row.recording_id: row
        for row in HoldObjectLock.objects.filter(
            hold=hold, recording_id__in=[r.pk for r in recordings]
        )
    }
    asked = [
        r
        for r in recordings
        if r.media_location == MediaLocation.S3
        and r.media_key
        and not (r.pk in rows and rows[r.pk].state == HoldLockState.NOT_ENABLED)
    ]
    with ThreadPoolExecutor(max_workers=S3_THREADS) as pool:
        answers = dict(
            zip(
                [r.pk for r in asked],
                pool.map(lambda r: _readback(rows.get(r.pk), r), asked),
                strict=True,
            )
        )
        derived_views = list(pool.map(_derived_readback, derived_rows))
    derived: dict[int, list[DerivedLockView]] = {}
    for derived_row, view in zip(derived_rows, derived_views, strict=True):
        derived.setdefault(derived_row.recording_id, []).append(view)
    views = []
    for recording in recordings:
        row = rows.get(recording.pk)
        if recording.media_location == MediaLocation.S3 and recording.media_key:
            location = "s3"
        elif recording.media_location == MediaLocation.LOCAL:
            location = "local"
        else:
            location = str(recording.media_location)
        status, problem = answers.get(recording.pk, ("", ""))
        views.append(
            LockView(
                recording=recording,
                location=location,
                state=row.state if row else "",
                error=row.error if row else "",
                bucket=row.bucket if row else _bucket(recording),
                key=row.key if row else recording.media_key,
                version_id=row.version_id if row else "",
                s3_status=status,
                readback_error=problem,
                derived=tuple(derived.get(recording.pk, ())),
            )
        )
    return views


def hold_lock_counts(*, hold: LegalHold) -> dict[str, int]:
    """How many of the hold's objects are in each recorded state, plus ``owed`` (covered S3
    objects with no ``locked`` row): the case page's summary, from the database only."""
    counts = dict.fromkeys(HoldLockState.values, 0)
    by_state = HoldObjectLock.objects.filter(hold=hold).values("state").annotate(n=Count("pk"))
    for item in by_state:
        counts[item["state"]] = item["n"]
    counts["in_s3"] = stored_in_s3(hold_covered(hold)).count()
    counts["owed"] = _owed(hold).count() if hold.released_at is None else 0
    return counts
