"""Which Flex conversation (TaskRouter task) each recording belongs to, and who handled it.

A recording belongs to a voice task when its call SID is the task's call or one of its
conference participants' calls (``FlexTaskCall``), or its conference SID is the task's
conference. Links are made from both sides, whichever is known last: when a recording is
synced (:func:`recording_link`, queued by the sync) and when a task's calls or conference
become known from its events (:func:`tasks_link`). A transfer gives one task several
reservations and often several recordings: every one is linked.

Each link is handed to the media attachment (``recordings.flex.attach``, through
``jobs.queue_flex_media_attach``) once the recording is far enough along to be played.

A recording's handling facts (``handled_worker_sids``, ``handled_team_names``,
``handled_queues``, what access rules look at) are recomputed from its links, their tasks'
accepted reservations and the worker directory by :func:`recording_handling_refresh`, in a
transaction of its own that locks the recording first and reads what is committed: whichever
refresh runs last sees every change, so concurrent events and syncs cannot leave stale facts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet

from recordings import jobs
from recordings.lifecycle import restriction_rules
from recordings.models import (
    FlexReservation,
    FlexTask,
    FlexTaskCall,
    FlexTaskQueue,
    FlexWorker,
    MediaAttachState,
    Recording,
    RecordingStatus,
    RecordingTaskLink,
)

logger = logging.getLogger(__name__)

VOICE_CHANNEL = "voice"
"""Only voice tasks link recordings; tasks of other channels are kept for their facts."""

ATTACHABLE_STATUSES = frozenset(
    {
        RecordingStatus.IN_PROGRESS,
        RecordingStatus.PAUSED,
        RecordingStatus.STOPPED,
        RecordingStatus.PROCESSING,
        RecordingStatus.COMPLETED,
    }
)
"""Recordings written into their conversation: from ``in-progress`` on, so the media item is
there before the task completes; never ``absent``, ``failed`` or ``deleted`` ones."""

HANDLED = Q(accepted_at__isnull=False) | Q(status__in=("accepted", "wrapping", "completed"))
"""Reservations whose worker handled the conversation (accepted it)."""


def _initial_attach_state() -> str:
    return MediaAttachState.OFF if settings.FLEX_MEDIA_LEVEL == "off" else MediaAttachState.PENDING


def _matched_by(recording: Recording, task: FlexTask) -> str:
    if recording.call_sid and recording.call_sid == task.call_sid:
        return "call_sid"
    if recording.conference_sid and recording.conference_sid == task.conference_sid:
        return "conference"
    return "participant"


def _link(recording: Recording, task: FlexTask) -> tuple[RecordingTaskLink, bool]:
    """The link between ``recording`` and ``task``, created when new (a concurrent linker may
    create it at the same time: one row either way)."""
    existing = RecordingTaskLink.objects.filter(recording=recording, task=task).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            link = RecordingTaskLink.objects.create(
                recording=recording,
                task=task,
                matched_by=_matched_by(recording, task),
                attach_state=_initial_attach_state(),
            )
    except IntegrityError:
        return RecordingTaskLink.objects.get(recording=recording, task=task), False
    logger.info("recording %s linked to task %s (%s)", recording.sid, task.sid, link.matched_by)
    return link, True


def _queue_attachments(links: Iterable[tuple[RecordingTaskLink, Recording]]) -> list[int]:
    """Hand pending links of playable recordings to the media attachment once this
    transaction commits; answers their ids."""
    ids = sorted(
        {
            link.pk
            for link, recording in links
            if link.attach_state == MediaAttachState.PENDING
            and link.attach_attempts == 0
            and recording.status in ATTACHABLE_STATUSES
        }
    )
    if ids:
        transaction.on_commit(lambda: jobs.queue_flex_media_attach(ids))
    return ids


def tasks_for_recording(recording: Recording) -> QuerySet[FlexTask]:
    """The voice tasks ``recording`` belongs to (by its call or conference SID)."""
    match = Q(pk__in=[])
    if recording.call_sid:
        match |= Q(call_sid=recording.call_sid) | Q(
            pk__in=FlexTaskCall.objects.filter(call_sid=recording.call_sid).values("task_id")
        )
    if recording.conference_sid:
        match |= Q(conference_sid=recording.conference_sid)
    return FlexTask.objects.filter(match, channel=VOICE_CHANNEL).order_by("pk")


def recordings_for_task(task: FlexTask) -> QuerySet[Recording]:
    """The recordings of a voice task: those of its call, its participants' calls, its
    conference (none for tasks of other channels)."""
    if task.channel != VOICE_CHANNEL:
        return Recording.objects.none()
    call_sids = set(task.calls.values_list("call_sid", flat=True))
    if task.call_sid:
        call_sids.add(task.call_sid)
    match = Q(call_sid__in=sorted(call_sids)) if call_sids else Q(pk__in=[])
    if task.conference_sid:
        match |= Q(conference_sid=task.conference_sid)
    return Recording.objects.filter(match).order_by("pk")


def recording_link(*, recording_id: int) -> list[int]:
    """Link a recording to every task it belongs to, refresh its handling facts and queue the
    media attachment of its pending links; answers the ids of the links queued.

    Idempotent: called again (every sync of the recording queues it), it links nothing twice,
    and queues a link again only while it was never tried (the recording may only now have
    become playable). A recording without a task simply has none.
    """
    with transaction.atomic():
        recording = Recording.objects.filter(pk=recording_id).first()
        if recording is None:
            return []
        links = [(_link(recording, task)[0], recording) for task in tasks_for_recording(recording)]
        queued = _queue_attachments(links)
    if links:
        recording_handling_refresh(recording_id=recording_id)
    return queued


def tasks_link(*, task_ids: Iterable[int]) -> tuple[set[int], list[int]]:
    """Link each task to every recording it has (called when a task's calls or conference
    become known); answers the ids of the recordings newly linked and of the links queued for
    attachment. Runs inside the caller's transaction."""
    linked: set[int] = set()
    new_links: list[tuple[RecordingTaskLink, Recording]] = []
    for task in FlexTask.objects.filter(pk__in=sorted(set(task_ids)), channel=VOICE_CHANNEL):
        for recording in recordings_for_task(task):
            link, created = _link(recording, task)
            if created:
                linked.add(recording.pk)
                new_links.append((link, recording))
    return linked, _queue_attachments(new_links)


def recordings_of_tasks(task_ids: Iterable[int]) -> set[int]:
    """Ids of the recordings linked to any of these tasks."""
    ids = sorted(set(task_ids))
    if not ids:
        return set()
    return set(
        RecordingTaskLink.objects.filter(task_id__in=ids).values_list("recording_id", flat=True)
    )


def reservations_fill_team(*, worker_sid: str, team_name: str) -> set[int]:
    """Give accepted reservations of a worker whose team was not known when they were handled
    the worker's team now that the directory knows it; answers the ids of their tasks.

    A team once recorded on a reservation is the team at handling time and is never changed
    afterwards, so moving an agent to another team does not move their past calls with them.
    """
    if not team_name:
        return set()
    unknown = FlexReservation.objects.filter(HANDLED, worker_sid=worker_sid, team_name="")
    task_ids = set(unknown.values_list("task_id", flat=True))
    if task_ids:
        unknown.update(team_name=team_name[:255])
    return task_ids


def _queue_names(tasks: list[FlexTask]) -> dict[str, str]:
    missing = {task.queue_sid for task in tasks if task.queue_sid and not task.queue_name}
    if not missing:
        return {}
    return dict(FlexTaskQueue.objects.filter(sid__in=missing).values_list("sid", "friendly_name"))


def handling_facts(recording_id: int) -> tuple[list[str], list[str], list[str]]:
    """``(worker SIDs, team names, queue SIDs and names)`` of a recording as its links, their
    tasks' accepted reservations and the worker directory say now."""
    tasks = list(FlexTask.objects.filter(recording_links__recording_id=recording_id))
    reservations = list(
        FlexReservation.objects.filter(HANDLED, task__in=tasks).values_list(
            "worker_sid", "team_name"
        )
    )
    workers = sorted({worker for worker, _team in reservations if worker})
    unknown_teams = {worker for worker, team in reservations if worker and not team}
    directory = (
        dict(
            FlexWorker.objects.filter(sid__in=unknown_teams)
            .exclude(team_name="")
            .values_list("sid", "team_name")
        )
        if unknown_teams
        else {}
    )
    teams = sorted({team or directory.get(worker, "") for worker, team in reservations} - {""})
    names = _queue_names(tasks)
    queues: set[str] = set()
    for task in tasks:
        if task.queue_sid:
            queues.add(task.queue_sid)
        name = task.queue_name or names.get(task.queue_sid, "")
        if name:
            queues.add(name)
    return workers, teams, sorted(queues)


def recording_handling_refresh(*, recording_id: int) -> bool:
    """Recompute a recording's handling facts and store them when they changed; answers
    whether they did.

    Its own transaction, the recording locked before anything is read: a refresh that waits
    for a concurrent one reads what that one's transaction committed (see the module
    docstring). Call it after the transaction that changed links, reservations or workers.
    """
    with transaction.atomic():
        recording = (
            Recording.objects.select_for_update(no_key=True)
            .filter(pk=recording_id)
            .only("pk", "handled_worker_sids", "handled_team_names", "handled_queues")
            .first()
        )
        if recording is None:
            return False
        workers, teams, queues = handling_facts(recording_id)
        if (
            list(recording.handled_worker_sids or []) == workers
            and list(recording.handled_team_names or []) == teams
            and list(recording.handled_queues or []) == queues
        ):
            return False
        Recording.objects.filter(pk=recording_id).update(
            handled_worker_sids=workers, handled_team_names=teams, handled_queues=queues
        )
        # Its handling facts are known now: a restriction rule naming its queue, team or
        # worker restricts it at once (recordings.lifecycle.restriction_rules).
        restriction_rules.restriction_rules_apply(
            recording=Recording.objects.only(*restriction_rules.FACT_FIELDS, "restricted_at").get(
                pk=recording_id
            )
        )
    return True


def recordings_handling_refresh(*, recording_ids: Iterable[int]) -> int:
    """Refresh many recordings' handling facts, one transaction each; answers how many
    changed."""
    return sum(
        recording_handling_refresh(recording_id=recording_id)
        for recording_id in sorted(set(recording_ids))
    )


def recordings_link_missing(*, since: datetime) -> int:
    """Link recordings created since ``since`` that belong to a known voice task but have no
    link yet: the safety net for a link message lost with the broker (the sync queues
    :func:`recording_link`). Answers how many recordings it linked. By creation time, which
    is indexed: a recording's syncs follow its creation within the sync's retry window."""
    voice = FlexTask.objects.filter(channel=VOICE_CHANNEL)
    candidates = Recording.objects.filter(created_at__gte=since, task_links__isnull=True).filter(
        Q(call_sid__in=FlexTaskCall.objects.filter(task__in=voice).values("call_sid"))
        | Q(call_sid__in=voice.exclude(call_sid="").values("call_sid"))
        | Q(conference_sid__in=voice.exclude(conference_sid="").values("conference_sid"))
    )
    count = 0
    for recording_id in candidates.values_list("pk", flat=True).distinct()[:1000]:
        recording_link(recording_id=recording_id)
        count += 1
    return count
