"""Full re-verification of the access log as a resumable background job.

A full verification reads every row (about a minute per million rows here, see the README), so
it must survive a deploy or a killed worker without starting over, and show how far it got. A
``ChainVerificationRun`` is verified in batches of whole seals (about ``BATCH_ROWS`` rows each):
each batch checks its rows (``audit.chain.chain_verify`` bounded to the batch), its seals and
their anchors (``audit.sealer.seals_verify`` bounded to the batch), and commits the run's
position and counts in the same transaction, holding the run's row lock. A requeued run goes on
after the last committed batch; a second worker that picks up the same run while the first
holds it leaves at once (``skip_locked``), and a partial unique constraint keeps at most one
unfinished run. After the last batch the final step is an incremental check after the last
seal the run verified (the rows written since, every anchor's presence, anchors of seals the
database no longer holds), then the verdict is kept as a ``ChainCheck`` and written to the
access log, as every verification is.

Who moves a run: the Celery task ``verify_audit_log_fully`` (queued by the admin's *Full
re-verification*, the weekly beat entry, or a resume), which works for ``TASK_BUDGET`` and then
queues itself again, so a worker's warm shutdown waits for one short slice, not the whole log;
``full_verification_sweep`` (beat, and when a worker starts) requeues a run nobody has moved
for ``STALE_AFTER``; ``verify_audit_log --progress`` drives it in the command's own process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from celery import current_app
from django.db import IntegrityError, transaction
from django.db.models import F, Max
from django.utils import timezone

from audit.chain import VerifyResult, chain_verify
from audit.models import (
    AccessLog,
    AuditSeal,
    ChainCheck,
    ChainVerificationRun,
    VerificationState,
)
from audit.sealer import SealReport, seals_verify
from audit.services import chain_check_record

logger = logging.getLogger(__name__)

FULL_VERIFY_TASK = "audit.tasks.verify_audit_log_fully"

BATCH_ROWS = 100_000
"""Rows per batch, about: whole seals up to this many rows (at least one seal). Small enough
that a batch commits every few seconds, large enough that the bookkeeping does not show."""

TASK_BUDGET = timedelta(minutes=2)
"""How long one task works on a run before it queues the rest as a new task."""

STALE_AFTER = timedelta(minutes=10)
"""An unfinished run nobody has moved for this long was abandoned (its worker was killed, or
its message lost) and is queued again by the sweep. Far above one batch's time."""

UNFINISHED = (VerificationState.QUEUED, VerificationState.RUNNING, VerificationState.FAILED)


def full_verification_current() -> ChainVerificationRun | None:
    """The unfinished run, if there is one (there is at most one)."""
    return ChainVerificationRun.objects.filter(state__in=UNFINISHED).first()


def full_verification_start(
    *, trigger: str, actor: str = "", queue: bool = True
) -> tuple[ChainVerificationRun, bool]:
    """Begin a full verification, or take up the unfinished one: never two at once. Answers
    the run and whether it is new; ``queue`` has it worked on (at once in embedded mode), or
    an unfinished one resumed when it failed or nobody has moved it for ``STALE_AFTER``.

    The run's targets are the last seal and the highest row number now: the batches go up to
    that seal, and the final step reads whatever was written after it.
    """
    created = False
    try:
        with transaction.atomic():
            run = ChainVerificationRun.objects.create(
                trigger=trigger,
                actor=actor,
                target_seal=AuditSeal.objects.aggregate(last=Max("number"))["last"] or 0,
                target_sequence=AccessLog.objects.aggregate(head=Max("sequence"))["head"] or 0,
            )
            created = True
    except IntegrityError:  # the constraint: another run is unfinished, take it up instead
        current = full_verification_current()
        if current is None:  # it finished in between: start again
            return full_verification_start(trigger=trigger, actor=actor, queue=queue)
        run = current
    if queue:
        if created:
            _queue(run)
        elif run.state == VerificationState.FAILED or run.updated_at < timezone.now() - STALE_AFTER:
            run = full_verification_resume(run_id=run.pk)  # nobody is moving it
    return run, created


def full_verification_resume(*, run_id: int) -> ChainVerificationRun:
    """Queue an unfinished run again (an officer's *Resume*, the sweep, the weekly entry); it
    goes on after its last committed batch. A finished run is answered as it is."""
    resumed = ChainVerificationRun.objects.filter(pk=run_id, state__in=UNFINISHED).update(
        state=VerificationState.QUEUED,
        resumes=F("resumes") + 1,
        error="",
        updated_at=timezone.now(),
    )
    run = ChainVerificationRun.objects.get(pk=run_id)
    if resumed:
        _queue(run)
        run.refresh_from_db()
    return run


def full_verification_sweep(
    *, now: datetime | None = None, stale_after: timedelta = STALE_AFTER
) -> int:
    """Queue again every unfinished, unfailed run that nobody has moved for ``stale_after``
    (its worker was killed mid-run, or its message was lost); answers how many. A failed run
    waits for an officer's *Resume* (or the weekly entry): it failed for a reason to look at."""
    cutoff = (now or timezone.now()) - stale_after
    stale = ChainVerificationRun.objects.filter(
        state__in=(VerificationState.QUEUED, VerificationState.RUNNING), updated_at__lt=cutoff
    ).values_list("pk", flat=True)
    count = 0
    for run_id in list(stale):
        logger.warning("full audit log verification %s was abandoned; queueing it again", run_id)
        full_verification_resume(run_id=run_id)
        count += 1
    return count


def _queue(run: ChainVerificationRun) -> None:
    if current_app.conf.task_always_eager:  # embedded mode: no broker, no worker
        full_verification_work(run_id=run.pk)
        return
    try:
        current_app.send_task(FULL_VERIFY_TASK, args=(run.pk,))
    except Exception:  # the broker is down: the run stays queued and the sweep requeues it
        logger.exception("could not queue full audit log verification %s", run.pk)


def _batch_end(run: ChainVerificationRun, batch_rows: int) -> AuditSeal | None:
    """The last seal of the next batch: whole seals up to ``batch_rows`` rows, at least one."""
    after = AuditSeal.objects.filter(number__gt=run.through_seal, number__lte=run.target_seal)
    within = after.filter(last_sequence__lte=run.through_sequence + batch_rows)
    return within.order_by("-number").first() or after.order_by("number").first()


def _count(run: ChainVerificationRun, *, rows: int, digests: int, seals: SealReport) -> None:
    run.rows_checked += rows
    run.digests_checked += digests
    run.seals_checked += seals.seals
    run.batches += 1


def full_verification_step(
    *, run_id: int, batch_rows: int = BATCH_ROWS, now: datetime | None = None
) -> ChainVerificationRun | None:
    """Verify the next batch of run ``run_id`` and commit its position and counts (or, after
    the last batch, the final step and the verdict); answer the run, or None when another
    worker holds it. A problem ends the run at once with the verdict naming it."""
    with transaction.atomic():
        run = (
            ChainVerificationRun.objects.select_for_update(skip_locked=True)
            .filter(pk=run_id)
            .first()
        )
        if run is None or run.state == VerificationState.DONE:
            return run
        moment = now or timezone.now()
        run.state = VerificationState.RUNNING
        run.started_at = run.started_at or moment
        run.error = ""
        last = _batch_end(run, batch_rows) if run.through_seal < run.target_seal else None
        if last is not None:
            rows = chain_verify(
                after_sequence=run.through_sequence, through_sequence=last.last_sequence
            )
            seals = seals_verify(
                now=moment, after_number=run.through_seal, through_number=last.number
            )
            run.anchors_checked += seals.anchors
            run.through_seal, run.through_sequence = last.number, last.last_sequence
            final = False
        else:  # every batch is done (or the seals up to the target are gone): the final step
            rows = chain_verify(after_sequence=run.through_sequence)
            seals = seals_verify(now=moment, after_number=run.through_seal)
            # Unbounded, the report counts every anchor the store holds.
            run.anchors_checked = max(run.anchors_checked, seals.anchors)
            run.through_seal = max(run.through_seal, seals.through_number)
            final = True
        _count(run, rows=rows.count, digests=rows.digests_checked, seals=seals)
        if rows.last_digest_at and (
            run.last_digest_at is None or rows.last_digest_at > run.last_digest_at
        ):
            run.last_digest_at = rows.last_digest_at
        head = AccessLog.objects.aggregate(head=Max("sequence"))["head"] or 0
        if final:
            run.through_sequence = max(run.through_sequence, head)
        run.target_sequence = max(run.target_sequence, run.through_sequence)
        run.updated_at = timezone.now()
        if final or not (rows.ok and seals.ok):
            _finish(run, rows=rows, seals=seals)
        run.save()
    return run


def _finish(run: ChainVerificationRun, *, rows: VerifyResult, seals: SealReport) -> None:
    """End ``run`` with its verdict: kept as a ``ChainCheck`` and written to the access log in
    the batch's own transaction, so a run is never done without its verdict."""
    ok = rows.ok and seals.ok
    problem = rows.problem or ("seals" if not seals.ok else "")
    summary = (
        f"{run.rows_checked} rows, {run.digests_checked} digests verified, "
        f"{run.seals_checked} seals, {run.anchors_checked} anchors, in {run.batches} batches"
    )
    findings = [rows.message] if not rows.ok else []
    message = "; ".join([*findings, *seals.problems] if not ok else [summary])
    check = chain_check_record(
        check=ChainCheck(
            trigger=run.trigger,
            actor=run.actor,
            ok=ok,
            count=run.rows_checked,
            digests_checked=run.digests_checked,
            first_bad_sequence=rows.first_bad_sequence,
            bad_row_id=rows.bad_row_id,
            problem=problem,
            message=message if ok else f"{message} (after {summary})",
            bad_row_time=rows.bad_row_time,
            last_digest_at=run.last_digest_at,
            full=True,
            through_seal=run.through_seal if ok else 0,
        ),
        seals_checked=run.seals_checked,
        anchors_checked=run.anchors_checked,
        extra={"run_id": run.pk, "batches": run.batches, "resumes": run.resumes},
    )
    run.verdict = check
    run.state = VerificationState.DONE
    run.finished_at = timezone.now()


def full_verification_continue(
    *,
    run_id: int,
    budget: timedelta | None = None,
    batch_rows: int = BATCH_ROWS,
    progress: Callable[[ChainVerificationRun], None] | None = None,
) -> ChainVerificationRun | None:
    """Verify batches of run ``run_id`` until it is done, or ``budget`` is spent (then the run
    is answered unfinished); ``progress`` sees the run after each committed batch. Answers None
    when another worker holds the run."""
    began = time.monotonic()
    while True:
        run = full_verification_step(run_id=run_id, batch_rows=batch_rows)
        if run is None or run.state == VerificationState.DONE:
            return run
        if progress is not None:
            progress(run)
        if budget is not None and time.monotonic() - began > budget.total_seconds():
            return run


def full_verification_work(*, run_id: int) -> ChainVerificationRun | None:
    """One task's share of a run: batches for ``TASK_BUDGET`` (to the end in embedded mode),
    then the rest queued as a new task. An error stops the run as ``failed`` with the reason,
    its committed batches kept for a resume; it is recorded, not raised."""
    eager = bool(current_app.conf.task_always_eager)
    try:
        run = full_verification_continue(run_id=run_id, budget=None if eager else TASK_BUDGET)
    except Exception as exc:  # recorded on the run and shown on the page, resumable
        logger.exception("full audit log verification %s failed", run_id)
        ChainVerificationRun.objects.filter(pk=run_id, state__in=UNFINISHED).update(
            state=VerificationState.FAILED,
            error=f"{type(exc).__name__}: {exc}"[:2000],
            updated_at=timezone.now(),
        )
        return ChainVerificationRun.objects.filter(pk=run_id).first()
    if run is not None and run.state != VerificationState.DONE:
        _queue(run)  # the rest, as a new task
    return run
