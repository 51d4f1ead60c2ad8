"""Legal holds on locked storage for the files derived from held recordings: the waveform's
``peaks.json`` and the speech segments' ``segments.json`` (``recordings.analysis``) get the
same S3 Object Lock legal hold as the media (``recordings.lifecycle.hold_locks``, which calls
this module from each of its passes), so a held recording's waveform cannot be deleted from
S3 either while the hold lasts.

Derived files live in the portal's bucket (``AWS_STORAGE_BUCKET_NAME``, under ``derived/``)
and are named by the audio's SHA-256, so one file may serve several recordings: a
``HoldDerivedLock`` row is per hold and object. Releasing a hold keeps the lock of a file
another active hold still covers through any recording with the same audio. Each change is a
``legal_hold`` access-log row like the media's, with ``derived`` naming the file. Embedded
mode (local files) has nothing to lock.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from audit.models import AccessOutcome
from recordings.analysis import store
from recordings.integrations import storage
from recordings.lifecycle import retention
from recordings.lifecycle.lock_release import lock_release
from recordings.models import (
    AnalysisState,
    HoldDerivedLock,
    HoldLockState,
    LegalHold,
    Recording,
    RecordingAnalysis,
)

logger = logging.getLogger(__name__)


@dataclass
class DerivedRun:
    """What one pass over a hold's derived files did."""

    locked: int = 0
    released: int = 0
    kept: int = 0
    failed: int = 0
    not_enabled: int = 0
    stopped: str = ""


@dataclass(frozen=True)
class _Derived:
    recording: Recording
    media_sha256: str
    name: str
    key: str


def _derived_objects(hold: LegalHold) -> dict[str, _Derived]:
    """The derived files of every recording ``hold`` covers that has a finished analysis, by
    their S3 key (a file shared by several recordings once, for the first of them)."""
    covered = retention.recordings_on_hold(Recording.objects.all(), held=True, holds=[hold])
    analyses = (
        RecordingAnalysis.objects.filter(
            recording__in=covered.values("pk"), state=AnalysisState.DONE
        )
        .exclude(media_sha256="")
        .select_related("recording")
        .order_by("recording_id")
    )
    found: dict[str, _Derived] = {}
    for analysis in analyses:
        keys = store.analysis_file_keys(
            media_sha256=analysis.media_sha256, algorithm=analysis.algorithm
        )
        for name, key in keys.items():
            full = storage.DERIVED_PREFIX + key
            found.setdefault(full, _Derived(analysis.recording, analysis.media_sha256, name, full))
    return found


def _record(
    *,
    hold: LegalHold,
    item: _Derived,
    bucket: str,
    state: str,
    version_id: str = "",
    error: str = "",
    failed: bool = False,
) -> str:
    """Write the row's new state; answers the state it had ("" for a new row)."""
    with transaction.atomic():
        row, created = HoldDerivedLock.objects.select_for_update().get_or_create(
            hold=hold,
            bucket=bucket,
            key=item.key,
            defaults={
                "recording": item.recording,
                "media_sha256": item.media_sha256,
                "state": state,
            },
        )
        before = "" if created else row.state
        row.state = state
        if version_id:
            row.version_id = version_id
        row.error = error[:2000]
        row.attempts = row.attempts + 1 if failed else 0
        row.updated_at = timezone.now()
        row.save()
    return before


def derived_locks_apply(*, hold_id: int, context: Mapping[str, Any] | None = None) -> DerivedRun:
    """Set the Object Lock legal hold on every derived file of the recordings an active hold
    covers that is not locked yet (analyses finished after the hold are found by the next
    reconcile). A bucket without Object Lock is said once per file; an S3 that does not
    answer stops the pass (the rest stays owed)."""
    run = DerivedRun()
    hold = LegalHold.objects.get(pk=hold_id)
    if hold.released_at is not None or not storage.uses_s3():
        return run
    bucket = settings.AWS_STORAGE_BUCKET_NAME
    rows = dict(
        HoldDerivedLock.objects.filter(hold=hold, bucket=bucket).values_list("key", "state")
    )
    owed = [
        item
        for key, item in _derived_objects(hold).items()
        if rows.get(key) != HoldLockState.LOCKED
    ]
    if not owed:
        return run
    try:
        enabled = storage.bucket_object_lock_enabled(bucket=bucket)
    except storage.StorageError as exc:
        run.stopped = str(exc)
        return run
    for item in owed:
        where = {"bucket": bucket, "object": item.key, "derived": item.name}
        if not enabled:
            run.not_enabled += 1
            note = (
                f"Object Lock not enabled on bucket {bucket}: hold is enforced by the portal only"
            )
            before = _record(
                hold=hold, item=item, bucket=bucket, state=HoldLockState.NOT_ENABLED, error=note
            )
            if before != HoldLockState.NOT_ENABLED:
                retention.hold_recording_audit(
                    hold=hold,
                    recording=item.recording,
                    reason_code="lock_not_enabled",
                    outcome=AccessOutcome.ERROR,
                    detail={**where, "status": "portal_only"},
                    context=context,
                )
            continue
        try:
            version = storage.object_legal_hold_set(bucket=bucket, key=item.key, on=True)
        except storage.StorageError as exc:
            run.failed += 1
            _record(
                hold=hold,
                item=item,
                bucket=bucket,
                state=HoldLockState.FAILED,
                error=str(exc),
                failed=True,
            )
            retention.hold_recording_audit(
                hold=hold,
                recording=item.recording,
                reason_code="lock_failed",
                outcome=AccessOutcome.ERROR,
                detail={**where, "status": "ON", "error": storage.storage_error_reason(exc)},
                context=context,
            )
            if isinstance(exc, storage.StorageUnavailable):
                run.stopped = str(exc)
                break
            continue
        run.locked += 1
        _record(hold=hold, item=item, bucket=bucket, state=HoldLockState.LOCKED, version_id=version)
        retention.hold_recording_audit(
            hold=hold,
            recording=item.recording,
            reason_code="lock_on",
            detail={**where, "version": version, "status": "ON"},
            context=context,
        )
    logger.info("legal hold %s derived locks: %s", hold.pk, run)
    return run


def _kept_by(row: HoldDerivedLock, others: list[LegalHold]) -> LegalHold | None:
    """The other active hold that still covers a recording with this file's audio."""
    sharing = Recording.objects.filter(
        analysis__media_sha256=row.media_sha256, analysis__state=AnalysisState.DONE
    )
    for recording in sharing:
        keeper = retention.recording_is_held(recording, holds=others)
        if keeper is not None:
            return keeper
    return None


def derived_locks_release(*, hold_id: int, context: Mapping[str, Any] | None = None) -> DerivedRun:
    """Clear the derived files' locks a released hold set, except those another active hold
    still covers (through any recording with the same audio): those stay locked, and the row
    says which hold keeps them."""
    run = DerivedRun()
    hold = LegalHold.objects.get(pk=hold_id)
    if hold.released_at is None:
        raise ValueError("only a released hold's locks are cleared")
    others = [h for h in retention._active_holds() if h.pk != hold.pk]
    rows = HoldDerivedLock.objects.filter(
        hold=hold, state__in=[HoldLockState.LOCKED, HoldLockState.FAILED]
    ).select_related("recording")
    for row in rows.order_by("pk"):
        item = _Derived(row.recording, row.media_sha256, row.key.rsplit("/", 1)[-1], row.key)
        where = {
            "bucket": row.bucket,
            "object": row.key,
            "version": row.version_id,
            "derived": item.name,
        }
        record = partial(_record, hold=hold, item=item, bucket=row.bucket)
        if not lock_release(
            hold=hold,
            row=row,
            recording=row.recording,
            keeper=_kept_by(row, others),
            where=where,
            record=record,
            run=run,
            context=context,
        ):
            break
    return run


def released_holds_owing_derived() -> Exists:
    """For the reconcile: a released hold that still has derived locks to clear."""
    return Exists(
        HoldDerivedLock.objects.filter(
            hold=OuterRef("pk"), state__in=[HoldLockState.LOCKED, HoldLockState.FAILED]
        )
    )
