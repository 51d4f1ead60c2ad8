"""The portal's directory of Flex agents (TaskRouter workers) and task queues, read from
TaskRouter's REST API: what a portal that missed events, or starts fresh, knows of every agent.

Events keep the directory current between syncs (``recordings.flex.events``); a sync is the
full picture at one moment. Twilio is read completely before anything is written, and
everything is written in one transaction, so a Twilio failure halfway through the pages leaves
the directory as it was. Each run, successful or not, is one ``flex_directory_sync`` row in
the access log: the directory decides who counts as which team for access rules.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.models import AccessAction, AccessOutcome
from audit.services import access_log_append
from recordings.flex import linking
from recordings.flex.events import worker_fields_from_attributes
from recordings.integrations import twilio_api
from recordings.models import FlexTaskQueue, FlexWorker

logger = logging.getLogger(__name__)


class FlexNotConfigured(ValueError):
    """No workspace to read: ``TWILIO_WORKSPACE_SID`` is not set."""


@dataclass(frozen=True)
class DirectorySummary:
    """What one directory sync found and changed."""

    workers: int
    queues: int
    removed: int
    teams_filled: int

    def as_dict(self) -> dict[str, int]:
        """The summary as plain numbers (a Celery result, an audit detail)."""
        return asdict(self)


def _read(
    workspace_sid: str, on_progress: Callable[[str], None] | None, page_size: int
) -> tuple[list[twilio_api.TaskRouterQueue], list[twilio_api.TaskRouterWorker]]:
    """Every queue and worker of the workspace, all pages read before anything is written."""
    queues: list[twilio_api.TaskRouterQueue] = []
    workers: list[twilio_api.TaskRouterWorker] = []
    for queue in twilio_api.taskrouter_queues_list(
        workspace_sid=workspace_sid, page_size=page_size
    ):
        queues.append(queue)
        if on_progress:
            on_progress("queue")
    for worker in twilio_api.taskrouter_workers_list(
        workspace_sid=workspace_sid, page_size=page_size
    ):
        workers.append(worker)
        if on_progress:
            on_progress("worker")
    return queues, workers


def _store(
    workspace_sid: str,
    queues: list[twilio_api.TaskRouterQueue],
    workers: list[twilio_api.TaskRouterWorker],
    read_ms: int,
) -> tuple[int, set[int]]:
    """Upsert what was read; answers how many workers were marked deleted and the tasks whose
    reservations got a team. Runs in the caller's transaction."""
    now = timezone.now()
    for queue in queues:
        FlexTaskQueue.objects.update_or_create(
            sid=queue.sid,
            defaults={
                "workspace_sid": workspace_sid,
                "friendly_name": queue.friendly_name[:255],
                "synced_at": now,
            },
        )
    listed: set[str] = set()
    tasks: set[int] = set()
    for worker in sorted(workers, key=lambda w: w.sid):  # one lock order for every sync
        listed.add(worker.sid)
        row = FlexWorker.objects.select_for_update(no_key=True).filter(sid=worker.sid).first()
        if row is None:
            row = FlexWorker(sid=worker.sid, workspace_sid=workspace_sid)
        # An event newer than this read (delivered while the pages were being read) is kept.
        if read_ms >= row.last_event_ms:
            row.friendly_name = worker.friendly_name[:255]
            for name, value in worker_fields_from_attributes(worker.attributes).items():
                setattr(row, name, value)
            row.last_event_ms = read_ms
        row.workspace_sid = workspace_sid
        row.deleted_at = None
        row.synced_at = now
        row.save()
        tasks |= linking.reservations_fill_team(worker_sid=row.sid, team_name=row.team_name)
    removed = (
        FlexWorker.objects.filter(
            Q(workspace_sid=workspace_sid) | Q(workspace_sid=""), deleted_at__isnull=True
        )
        .exclude(sid__in=listed)
        .update(deleted_at=now, synced_at=now)
    )
    return removed, tasks


def flex_directory_sync(
    *,
    workspace_sid: str | None = None,
    actor: str = "",
    on_progress: Callable[[str], None] | None = None,
    page_size: int = 1000,
) -> DirectorySummary:
    """Read every worker and task queue of the workspace (``TWILIO_WORKSPACE_SID`` by
    default) from TaskRouter and store them: new and changed ones upserted, workers no longer
    listed marked deleted (kept: past recordings name them). Answers a summary.

    Raises :class:`FlexNotConfigured` without a workspace, and ``twilio_api.TwilioError``
    (the directory unchanged) when Twilio cannot be read. ``on_progress`` is called with
    ``"queue"`` or ``"worker"`` for each one read; ``page_size`` is TaskRouter's
    ``PageSize``.
    """
    workspace_sid = workspace_sid or settings.TWILIO_WORKSPACE_SID
    if not workspace_sid:
        raise FlexNotConfigured("TWILIO_WORKSPACE_SID is not set: there is no workspace to read")
    read_ms = int(time.time() * 1000)
    try:
        queues, workers = _read(workspace_sid, on_progress, page_size)
    except twilio_api.TwilioError as exc:
        access_log_append(
            action=AccessAction.FLEX_DIRECTORY_SYNC,
            outcome=AccessOutcome.ERROR,
            reason_code="twilio_unavailable"
            if isinstance(exc, twilio_api.TwilioUnavailable)
            else "twilio_rejected",
            identity=actor,
            detail={"workspace_sid": workspace_sid, "error": str(exc)[:300]},
        )
        logger.error("Flex directory sync of %s failed: %s", workspace_sid, exc)
        raise
    with transaction.atomic():
        removed, tasks = _store(workspace_sid, queues, workers, read_ms)
        summary = DirectorySummary(
            workers=len(workers), queues=len(queues), removed=removed, teams_filled=len(tasks)
        )
        access_log_append(
            action=AccessAction.FLEX_DIRECTORY_SYNC,
            outcome=AccessOutcome.ALLOWED,
            identity=actor,
            detail={"workspace_sid": workspace_sid, **summary.as_dict()},
        )
    linking.recordings_handling_refresh(recording_ids=linking.recordings_of_tasks(tasks))
    logger.info(
        "Flex directory of %s synced: %s workers (%s removed), %s queues",
        workspace_sid,
        summary.workers,
        summary.removed,
        summary.queues,
    )
    return summary
