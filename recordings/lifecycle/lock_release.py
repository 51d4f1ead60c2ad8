"""Clearing one S3 Object Lock legal hold that a released hold set: the step the media's
locks (``recordings.lifecycle.hold_locks``) and the derived files' locks
(``recordings.lifecycle.hold_derived_locks``) share, so that both keep a lock another active
hold still needs, record failures for the retry, stop when S3 does not answer, and write the
same ``legal_hold`` access-log rows."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from audit.models import AccessOutcome
from recordings.integrations import storage
from recordings.lifecycle import retention
from recordings.models import HoldDerivedLock, HoldLockState, HoldObjectLock, LegalHold, Recording


class ReleaseCounts(Protocol):
    """What a release pass counts (``LockRun``, ``DerivedRun``)."""

    released: int
    kept: int
    failed: int
    stopped: str


def lock_release(
    *,
    hold: LegalHold,
    row: HoldObjectLock | HoldDerivedLock,
    recording: Recording,
    keeper: LegalHold | None,
    where: Mapping[str, Any],
    record: Callable[..., object],
    run: ReleaseCounts,
    context: Mapping[str, Any] | None,
) -> bool:
    """Clear ``row``'s lock (``OFF`` on the version it locked) unless ``keeper``, another
    active hold, still covers it; write its new state with ``record(state=, error=,
    failed=)``, count it in ``run`` and audit it against ``recording`` (``where`` names the
    object). False when S3 did not answer: the pass stops there (``run.stopped``)."""
    if keeper is not None:
        run.kept += 1
        record(state=HoldLockState.RELEASED, error=f"S3 lock kept: still held by {keeper}")
        retention.hold_recording_audit(
            hold=hold,
            recording=recording,
            reason_code="lock_kept",
            detail={**where, "status": "ON", "kept_by": keeper.pk},
            context=context,
        )
        return True
    try:
        storage.object_legal_hold_set(
            bucket=row.bucket, key=row.key, on=False, version_id=row.version_id
        )
    except storage.StorageError as exc:
        run.failed += 1
        record(state=HoldLockState.FAILED, error=f"clearing the lock: {exc}", failed=True)
        retention.hold_recording_audit(
            hold=hold,
            recording=recording,
            reason_code="lock_failed",
            outcome=AccessOutcome.ERROR,
            detail={**where, "status": "OFF", "error": storage.storage_error_reason(exc)},
            context=context,
        )
        if isinstance(exc, storage.StorageUnavailable):
            run.stopped = str(exc)
            return False
        return True
    run.released += 1
    record(state=HoldLockState.RELEASED)
    retention.hold_recording_audit(
        hold=hold,
        recording=recording,
        reason_code="lock_off",
        detail={**where, "status": "OFF"},
        context=context,
    )
    return True
