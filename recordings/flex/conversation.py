"""What the portal knows of a recording's Flex conversation, for the recording's admin page: the
task(s) it is linked to, their reservations with the handling agents as the worker directory
knows them, the queue, the team, and where writing the recording into Flex stands."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from recordings.models import (
    FlexReservation,
    FlexTask,
    FlexWorker,
    MediaAttachState,
    Recording,
    RecordingTaskLink,
)


@dataclass(frozen=True)
class HandlingAgent:
    """One reservation of the task and the agent it offered the task to."""

    reservation_sid: str
    status: str
    accepted_at: datetime | None
    completed_at: datetime | None
    worker_sid: str
    name: str
    email: str
    team_name: str


@dataclass(frozen=True)
class ConversationLink:
    """One task the recording belongs to, and the state of its attachment."""

    link_id: int
    task: FlexTask
    matched_by: str
    queue: str
    agents: list[HandlingAgent]
    teams: list[str]
    attach_state: str
    attach_state_label: str
    attach_attempts: int
    attach_error: str
    attached_at: datetime | None
    next_attempt_at: datetime | None


def _agent(reservation: FlexReservation, worker: FlexWorker | None) -> HandlingAgent:
    return HandlingAgent(
        reservation_sid=reservation.sid,
        status=reservation.status,
        accepted_at=reservation.accepted_at,
        completed_at=reservation.completed_at,
        worker_sid=reservation.worker_sid,
        name=(worker.full_name or worker.friendly_name) if worker else reservation.worker_name,
        email=worker.email if worker else "",
        team_name=worker.team_name if worker else "",
    )


def recording_conversations(*, recording: Recording) -> list[ConversationLink]:
    """The recording's tasks, oldest link first, each with its reservations (in the order they
    were offered) and their agents; a query per kind of row, not per row."""
    links = list(
        RecordingTaskLink.objects.filter(recording=recording)
        .select_related("task")
        .prefetch_related("task__reservations")
        .order_by("linked_at", "pk")
    )
    worker_sids = {
        reservation.worker_sid
        for link in links
        for reservation in link.task.reservations.all()
        if reservation.worker_sid
    }
    workers = {worker.sid: worker for worker in FlexWorker.objects.filter(sid__in=worker_sids)}
    labels = dict(MediaAttachState.choices)
    result = []
    for link in links:
        agents = [
            _agent(reservation, workers.get(reservation.worker_sid))
            for reservation in link.task.reservations.all()
        ]
        result.append(
            ConversationLink(
                link_id=link.pk,
                task=link.task,
                matched_by=link.matched_by,
                queue=link.task.queue_name or link.task.queue_sid,
                agents=agents,
                teams=sorted({agent.team_name for agent in agents if agent.team_name}),
                attach_state=link.attach_state,
                attach_state_label=labels.get(link.attach_state, link.attach_state),
                attach_attempts=link.attach_attempts,
                attach_error=link.attach_error,
                attached_at=link.attached_at,
                next_attempt_at=(
                    link.next_attempt_at if link.attach_state == MediaAttachState.PENDING else None
                ),
            )
        )
    return result
