"""TaskRouter event callbacks as stored events, and what the portal keeps from them: tasks
with their calls, reservations, workers and task queues.

Stored first, processed later by Celery, exactly like recording status callbacks
(``recordings.ingest.events``): the same event twice lands on one row (``deliveries``), and the
row stays ``pending`` until processed, for the dispatcher when the broker was down.

Processing is idempotent and order-proof, field by field, whatever order TaskRouter's events
arrive in (they are posted concurrently, and retried):

* values that change over a task's life (attributes, queue, assignment status, a worker's
  attributes) are taken from the newest event only (``last_event_ms``);
* values that only ever accumulate (a task's call SIDs) are a union;
* times of things that happen once (accepted, completed, canceled…) are set once and keep the
  earliest value seen;
* a reservation's status only moves forward along its life (``RESERVATION_RANK``), and a task
  that completed or was canceled never becomes open again.

So ``reservation.accepted`` arriving after ``task.completed`` still records that the worker
accepted (and when), but neither reopens the task nor touches its completion.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F, Model, QuerySet
from django.utils import timezone

from portal.sids import (
    ACCOUNT_SID,
    CALL_SID,
    CONFERENCE_SID,
    RESERVATION_SID,
    TASK_QUEUE_SID,
    TASK_SID,
    WORKER_SID,
    WORKSPACE_SID,
)
from recordings import jobs
from recordings.flex import linking
from recordings.models import (
    EventState,
    FlexReservation,
    FlexTask,
    FlexTaskCall,
    FlexTaskQueue,
    FlexWorker,
    TaskRouterEvent,
)

logger = logging.getLogger(__name__)

EVENT_SID_PREFIX = "EV"
"""TaskRouter's Event resources are ``EV…``; a callback's ``Sid`` names its event."""

# Event families the portal learns from; every other type (activity.*, workspace.*, workflow
# timeouts, types Twilio adds later) is stored and marked processed without effect.
_KNOWN_FAMILIES = ("task.", "reservation.", "worker.", "task-queue.", "workflow.")

TERMINAL_TASK_STATUSES = frozenset({"completed", "canceled"})
_FINAL_TASK_EVENTS = {"task.completed": "completed", "task.canceled": "canceled"}

RESERVATION_RANK: dict[str, int] = {
    "pending": 10,
    "accepted": 20,
    "wrapping": 30,
    "completed": 40,
    "rejected": 40,
    "timeout": 40,
    "canceled": 40,
    "rescinded": 40,
}
"""How far along its life a reservation status is: a status never replaces a higher one."""

HANDLED_RESERVATION_STATUSES = frozenset({"accepted", "wrapping", "completed"})
"""A reservation in one of these was accepted: its worker handled the conversation."""

WORKER_ATTRIBUTE_FIELDS = (
    "full_name",
    "email",
    "team_id",
    "team_name",
    "department_name",
    "location",
    "manager",
)
"""The worker attributes Flex Insights reads for agents (besides ``roles``)."""


class TaskRouterEventRejected(ValueError):
    """A TaskRouter callback is malformed; the message says which field and why."""


@dataclass(frozen=True)
class TaskRouterEventFields:
    """The identifying fields of a TaskRouter event callback, validated."""

    event_key: str
    event_type: str
    account_sid: str
    workspace_sid: str
    resource_sid: str
    event_ms: int | None


def _epoch_ms(params: Mapping[str, Any]) -> int | None:
    """The event's time in epoch ms: ``TimestampMs``, else ``Timestamp`` (epoch seconds, as
    TaskRouter sends it); None when neither is sent; raises on an unreadable one."""
    raw_ms = str(params.get("TimestampMs") or "").strip()
    if raw_ms:
        if not raw_ms.isdigit() or len(raw_ms) > 15:
            raise TaskRouterEventRejected("TimestampMs is not epoch milliseconds")
        return int(raw_ms)
    raw = str(params.get("Timestamp") or "").strip()
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        raise TaskRouterEventRejected("Timestamp is not epoch seconds") from None
    if not 0 <= seconds < 10**11:
        raise TaskRouterEventRejected("Timestamp is not epoch seconds")
    return round(seconds * 1000)


_OPTIONAL_SIDS = (
    ("TaskSid", TASK_SID),
    ("ReservationSid", RESERVATION_SID),
    ("WorkerSid", WORKER_SID),
    ("TaskQueueSid", TASK_QUEUE_SID),
)


def event_key_for(params: Mapping[str, Any]) -> str:
    """The event's identity: its ``Sid`` when TaskRouter sends one, else a digest of every
    parameter (a retry or replay of the same callback carries the same parameters)."""
    sid = str(params.get("Sid") or params.get("EventSid") or "")
    if len(sid) == 34 and sid.startswith(EVENT_SID_PREFIX) and sid[2:].isalnum():
        return sid
    canonical = json.dumps(sorted((str(k), str(v)) for k, v in params.items()))
    return hashlib.sha256(canonical.encode()).hexdigest()


def taskrouter_event_validate(params: Mapping[str, Any]) -> TaskRouterEventFields:
    """Check the fields every TaskRouter event must carry well-formed (and the SIDs it may
    carry); raise :class:`TaskRouterEventRejected`. Which account and workspace are served is
    the caller's decision (403, not 400)."""
    account_sid = str(params.get("AccountSid") or "")
    workspace_sid = str(params.get("WorkspaceSid") or "")
    event_type = str(params.get("EventType") or "").strip()
    if not ACCOUNT_SID.fullmatch(account_sid):
        raise TaskRouterEventRejected(
            "AccountSid is missing or is not AC followed by 32 hex digits"
        )
    if not WORKSPACE_SID.fullmatch(workspace_sid):
        raise TaskRouterEventRejected(
            "WorkspaceSid is missing or is not WS followed by 32 hex digits"
        )
    if not event_type or len(event_type) > 64 or not event_type.isascii():
        raise TaskRouterEventRejected("EventType is missing or is not an event type")
    for name, pattern in _OPTIONAL_SIDS:
        value = str(params.get(name) or "")
        if value and not pattern.fullmatch(value):
            raise TaskRouterEventRejected(f"{name} is not {pattern.pattern[:2]} + 32 hex digits")
    resource_sid = str(params.get("ResourceSid") or "")
    if len(resource_sid) > 34:
        raise TaskRouterEventRejected("ResourceSid is not a SID")
    return TaskRouterEventFields(
        event_key=event_key_for(params),
        event_type=event_type,
        account_sid=account_sid,
        workspace_sid=workspace_sid,
        resource_sid=resource_sid,
        event_ms=_epoch_ms(params),
    )


def taskrouter_event_record(
    *, fields: TaskRouterEventFields, params: Mapping[str, Any]
) -> tuple[int, bool]:
    """Store an accepted TaskRouter callback; returns ``(event id, created)``.

    A retry or replay of the same event lands on the existing row, counted in ``deliveries``,
    so it has no second effect. The row is committed before TaskRouter gets its answer.
    """
    now = timezone.now()
    values = {
        "event_key": fields.event_key,
        "event_type": fields.event_type,
        "account_sid": fields.account_sid,
        "workspace_sid": fields.workspace_sid,
        "resource_sid": fields.resource_sid,
        "event_ms": fields.event_ms,
        "payload": {str(key): str(value) for key, value in params.items()},
        "received_at": now,
        "next_attempt_at": now,
    }
    try:
        if transaction.get_autocommit():
            event = TaskRouterEvent.objects.create(**values)
        else:
            with transaction.atomic():  # a savepoint, so a duplicate spares the caller's work
                event = TaskRouterEvent.objects.create(**values)
    except IntegrityError:
        same = TaskRouterEvent.objects.filter(event_key=fields.event_key)
        same.update(deliveries=F("deliveries") + 1)
        return same.values_list("pk", flat=True).get(), False
    return event.pk, True


# --- processing -------------------------------------------------------------------------


def _json_object(value: Any) -> dict[str, Any]:
    """A JSON object parameter (``TaskAttributes``, ``WorkerAttributes``), or {} when it is
    absent or not an object: a broken attribute string must not stop the rest of the event."""
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value) if value else {}
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _text(value: Any, limit: int = 255) -> str:
    return value.strip()[:limit] if isinstance(value, str) else ""


def _when(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC) if ms is not None else None


def _earliest(current: datetime | None, candidate: datetime | None) -> datetime | None:
    """Set-once times keep the earliest value seen, whichever event brought it first."""
    if candidate is None:
        return current
    return candidate if current is None or candidate < current else current


def _seconds_to_datetime(value: Any) -> datetime | None:
    """``TaskDateCreated`` and friends: epoch seconds as text, or ISO 8601."""
    text = str(value or "").strip()
    if not text:
        return None
    try:
        return datetime.fromtimestamp(float(text), tz=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def task_calls_from_attributes(attributes: Mapping[str, Any]) -> dict[str, str]:
    """The call SIDs a task's attributes name, each with its role: the task's own call
    (``call_sid``) and every conference participant's (``conference.participants``, which Flex
    keeps as ``{"customer": "CA…", "worker": "CA…"}``; after a transfer the new worker's call
    replaces the old one there, which is why the portal keeps the union over events)."""
    calls: dict[str, str] = {}
    call_sid = attributes.get("call_sid")
    if isinstance(call_sid, str) and CALL_SID.fullmatch(call_sid):
        calls[call_sid] = "call"
    conference = attributes.get("conference")
    participants = conference.get("participants") if isinstance(conference, dict) else None

    def walk(value: Any, role: str) -> None:
        if isinstance(value, str):
            if CALL_SID.fullmatch(value):
                calls.setdefault(value, role[:64])
        elif isinstance(value, dict):
            for key, inner in value.items():
                walk(inner, str(key) if role == "participant" else role)
        elif isinstance(value, list):
            for inner in value:
                walk(inner, role)

    walk(participants, "participant")
    return calls


def conference_sid_from_attributes(attributes: Mapping[str, Any]) -> str:
    """``conference.sid`` of a task's attributes, when it is a conference SID."""
    conference = attributes.get("conference")
    sid = conference.get("sid") if isinstance(conference, dict) else None
    return sid if isinstance(sid, str) and CONFERENCE_SID.fullmatch(sid) else ""


@dataclass
class _Effects:
    """What one event changed: tasks whose recordings' handling facts may have moved, and
    tasks whose calls or conference are newly known (to be linked to their recordings)."""

    tasks: set[int] = field(default_factory=set)
    tasks_with_new_calls: set[int] = field(default_factory=set)


def _locked(model: type[Model], sid: str, defaults: Mapping[str, Any]) -> Any:
    """The row of ``model`` with ``sid``, locked for this transaction (``FOR NO KEY UPDATE``:
    rows that reference it may still be inserted by others); created when it is new."""
    manager = model._default_manager
    row = manager.select_for_update(no_key=True).filter(sid=sid).first()
    if row is not None:
        return row
    try:
        with transaction.atomic():
            return manager.create(sid=sid, **defaults)
    except IntegrityError:  # created by a concurrent event in the meantime
        return manager.select_for_update(no_key=True).get(sid=sid)


def _apply_task(event: TaskRouterEvent, effects: _Effects) -> FlexTask | None:
    """Upsert the task an event is about (every task.* and reservation.* event carries the
    task's fields)."""
    params = event.payload
    task_sid = str(params.get("TaskSid") or "")
    if not task_sid:
        if event.event_type.startswith("task.") and TASK_SID.fullmatch(event.resource_sid):
            task_sid = event.resource_sid
        else:
            return None
    ms = event.event_ms or 0
    task: FlexTask = _locked(FlexTask, task_sid, {"workspace_sid": event.workspace_sid})
    known_conference = task.conference_sid
    attributes = _json_object(params.get("TaskAttributes")) if "TaskAttributes" in params else None
    newest = ms >= task.last_event_ms
    if newest:
        if attributes is not None:
            task.attributes = attributes
        channel = _text(params.get("TaskChannelUniqueName"), 64)
        if channel:
            task.channel = channel
        queue_sid = str(params.get("TaskQueueSid") or "")
        if queue_sid:
            if queue_sid != task.queue_sid:
                task.queue_name = ""
            task.queue_sid = queue_sid
        queue_name = _text(params.get("TaskQueueName"))
        if queue_name and queue_sid in ("", task.queue_sid):
            task.queue_name = queue_name
        task.last_event_ms = ms
    elif not task.channel:
        task.channel = _text(params.get("TaskChannelUniqueName"), 64)
    status = _FINAL_TASK_EVENTS.get(event.event_type) or _text(
        params.get("TaskAssignmentStatus"), 32
    )
    # Completed and canceled are final: an older event that says so still counts (it was
    # overtaken by a later update of the same task), and nothing makes the task open again.
    if status in TERMINAL_TASK_STATUSES:
        if newest or task.assignment_status not in TERMINAL_TASK_STATUSES:
            task.assignment_status = status
    elif status and newest and task.assignment_status not in TERMINAL_TASK_STATUSES:
        task.assignment_status = status
    if attributes is not None:
        # A task has one conference and one call of its own: kept once known, so a newer
        # event without them does not erase them, and an older one fills them in.
        conference_sid = conference_sid_from_attributes(attributes)
        if conference_sid and (newest or not task.conference_sid):
            task.conference_sid = conference_sid
        call_sid = attributes.get("call_sid")
        has_call = isinstance(call_sid, str) and CALL_SID.fullmatch(call_sid)
        if has_call and (newest or not task.call_sid):
            task.call_sid = str(call_sid)
    when = _when(event.event_ms)
    task.created_at_twilio = _earliest(
        task.created_at_twilio,
        _seconds_to_datetime(params.get("TaskDateCreated"))
        or (when if event.event_type == "task.created" else None),
    )
    if event.event_type == "task.completed":
        task.completed_at = _earliest(task.completed_at, when or timezone.now())
    elif event.event_type == "task.canceled":
        task.canceled_at = _earliest(task.canceled_at, when or timezone.now())
    elif event.event_type == "task.deleted":
        task.deleted_at = _earliest(task.deleted_at, when or timezone.now())
    if not task.workspace_sid:
        task.workspace_sid = event.workspace_sid
    task.save()
    effects.tasks.add(task.pk)
    if attributes is not None:
        known = set(task.calls.values_list("call_sid", flat=True))
        new_calls = [
            FlexTaskCall(task=task, call_sid=call_sid, role=role)
            for call_sid, role in task_calls_from_attributes(attributes).items()
            if call_sid not in known
        ]
        if new_calls:
            FlexTaskCall.objects.bulk_create(new_calls, ignore_conflicts=True)
        if new_calls:
            effects.tasks_with_new_calls.add(task.pk)
    if task.conference_sid != known_conference:
        effects.tasks_with_new_calls.add(task.pk)
    return task


def _apply_queue(params: Mapping[str, Any], workspace_sid: str) -> None:
    """Remember a task queue's name as events name it."""
    queue_sid = str(params.get("TaskQueueSid") or "")
    name = _text(params.get("TaskQueueName"))
    if not queue_sid:
        return
    queue, created = FlexTaskQueue.objects.get_or_create(
        sid=queue_sid, defaults={"workspace_sid": workspace_sid, "friendly_name": name}
    )
    if not created and name and queue.friendly_name != name:
        FlexTaskQueue.objects.filter(pk=queue.pk).update(friendly_name=name)


def worker_fields_from_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The FlexWorker fields Flex Insights' agent attributes give, cut to the column sizes."""
    values: dict[str, Any] = {name: _text(attributes.get(name)) for name in WORKER_ATTRIBUTE_FIELDS}
    roles = attributes.get("roles")
    if isinstance(roles, str):
        roles = [roles]
    values["roles"] = (
        [role[:100] for role in roles if isinstance(role, str)] if isinstance(roles, list) else []
    )
    values["attributes"] = dict(attributes)
    return values


def _apply_worker(event: TaskRouterEvent, effects: _Effects) -> None:
    """Upsert the worker an event names, from its ``WorkerAttributes`` when they are sent."""
    params = event.payload
    worker_sid = str(params.get("WorkerSid") or "")
    if not worker_sid and event.event_type.startswith("worker."):
        worker_sid = event.resource_sid if WORKER_SID.fullmatch(event.resource_sid) else ""
    if not worker_sid:
        return
    ms = event.event_ms or 0
    worker: FlexWorker = _locked(FlexWorker, worker_sid, {"workspace_sid": event.workspace_sid})
    if ms >= worker.last_event_ms:
        name = _text(params.get("WorkerName"))
        if name:
            worker.friendly_name = name
        if "WorkerAttributes" in params:
            for key, value in worker_fields_from_attributes(
                _json_object(params.get("WorkerAttributes"))
            ).items():
                setattr(worker, key, value)
        worker.last_event_ms = ms
    if event.event_type == "worker.deleted":
        worker.deleted_at = _earliest(worker.deleted_at, _when(event.event_ms) or timezone.now())
    worker.save()
    # A team first known now is the team of the calls the worker handled without one known.
    effects.tasks |= linking.reservations_fill_team(
        worker_sid=worker.sid, team_name=worker.team_name
    )


def _apply_reservation(event: TaskRouterEvent, task: FlexTask, effects: _Effects) -> None:
    """Upsert the reservation a reservation.* event is about."""
    params = event.payload
    reservation_sid = str(params.get("ReservationSid") or "")
    if not reservation_sid and RESERVATION_SID.fullmatch(event.resource_sid):
        reservation_sid = event.resource_sid
    if not reservation_sid:
        return
    ms = event.event_ms or 0
    worker_sid = str(params.get("WorkerSid") or "")
    reservation: FlexReservation = _locked(
        FlexReservation, reservation_sid, {"task": task, "worker_sid": worker_sid}
    )
    if worker_sid:
        reservation.worker_sid = worker_sid
    name = _text(params.get("WorkerName"))
    if name and (ms >= reservation.last_event_ms or not reservation.worker_name):
        reservation.worker_name = name
    status = event.event_type.removeprefix("reservation.")
    status = {"created": "pending", "wrapup": "wrapping"}.get(status, status)
    if status in RESERVATION_RANK:
        current = RESERVATION_RANK.get(reservation.status, 0)
        rank = RESERVATION_RANK[status]
        if rank > current or (rank == current and ms >= reservation.last_event_ms):
            reservation.status = status
    when = _when(event.event_ms) or timezone.now()
    if status == "pending":
        reservation.created_at_twilio = _earliest(reservation.created_at_twilio, when)
    elif status == "accepted":
        reservation.accepted_at = _earliest(reservation.accepted_at, when)
    elif status == "wrapping":
        reservation.wrapup_at = _earliest(reservation.wrapup_at, when)
    elif status == "completed":
        reservation.completed_at = _earliest(reservation.completed_at, when)
    # The team at handling time: the worker's attributes as the acceptance carried them win;
    # any other event of the reservation only fills a team still unknown.
    team = _text(_json_object(params.get("WorkerAttributes")).get("team_name"))
    if team and (status == "accepted" or not reservation.team_name):
        reservation.team_name = team
    elif not reservation.team_name and reservation.worker_sid:
        reservation.team_name = (
            FlexWorker.objects.filter(sid=reservation.worker_sid)
            .values_list("team_name", flat=True)
            .first()
            or ""
        )
    reservation.last_event_ms = max(reservation.last_event_ms, ms)
    reservation.save()
    effects.tasks.add(task.pk)


def _apply(event: TaskRouterEvent, effects: _Effects) -> None:
    """Everything one event tells, in one transaction with the links and handling facts it
    changes."""
    if not event.event_type.startswith(_KNOWN_FAMILIES):
        return
    params = event.payload
    _apply_queue(params, event.workspace_sid)
    _apply_worker(event, effects)
    task = _apply_task(event, effects)
    if task is not None and event.event_type.startswith("reservation."):
        _apply_reservation(event, task, effects)


def taskrouter_event_process(*, event_id: int) -> TaskRouterEvent:
    """Apply one stored TaskRouter event, link recordings to its task and refresh their
    handling facts; idempotent (a processed event is left alone).

    A database failure (deadlock, lost connection) leaves the event ``pending`` with the
    attempt counted, and is raised for the caller (the Celery task) to retry; any other
    failure marks it ``failed`` with the error, visible in the admin.
    """
    event = TaskRouterEvent.objects.get(pk=event_id)
    if event.state != EventState.PENDING:
        return event
    try:
        with transaction.atomic():
            effects = _Effects()
            _apply(event, effects)
            linking.tasks_link(task_ids=effects.tasks_with_new_calls)
        # After the commit, each recording in a transaction of its own (linking's docstring):
        # a crash before the event is marked processed only means it is applied again.
        linking.recordings_handling_refresh(
            recording_ids=linking.recordings_of_tasks(effects.tasks)
        )
        TaskRouterEvent.objects.filter(pk=event.pk).update(
            state=EventState.PROCESSED,
            attempts=F("attempts") + 1,
            last_error="",
            processed_at=timezone.now(),
        )
    except DatabaseError as exc:
        attempts = event.attempts + 1
        TaskRouterEvent.objects.filter(pk=event.pk).update(
            attempts=attempts,
            last_error=f"{type(exc).__name__}: {exc}"[:2000],
            next_attempt_at=timezone.now() + timedelta(seconds=jobs.retry_delay(attempts)),
        )
        raise
    except Exception as exc:  # a bug or data the code did not expect: stop, visibly
        logger.exception(
            "TaskRouter event %s (%s) could not be processed", event.pk, event.event_type
        )
        taskrouter_event_give_up(event_id=event.pk, error=f"{type(exc).__name__}: {exc}")
    return TaskRouterEvent.objects.get(pk=event.pk)


def taskrouter_events_process(*, event_ids: Iterable[int]) -> dict[int, int | None]:
    """Apply stored TaskRouter events, oldest event time first (order only saves work: every
    order ends in the same state). Answers, per event, the seconds to wait before it is tried
    again when the database failed it (None: processed, failed for good, or nothing to do)."""
    ordered = TaskRouterEvent.objects.filter(pk__in=list(event_ids)).order_by(
        F("event_ms").asc(nulls_last=True), "id"
    )
    retry: dict[int, int | None] = {}
    for event_id in ordered.values_list("pk", flat=True):
        try:
            taskrouter_event_process(event_id=event_id)
        except DatabaseError:
            attempts = TaskRouterEvent.objects.values_list("attempts", flat=True).get(pk=event_id)
            if attempts > jobs.MAX_RETRIES:
                taskrouter_event_give_up(
                    event_id=event_id, error=f"gave up after {attempts} attempts"
                )
                retry[event_id] = None
            else:
                retry[event_id] = jobs.retry_delay(attempts)
        else:
            retry[event_id] = None
    return retry


def taskrouter_event_give_up(*, event_id: int, error: str) -> None:
    """Stop trying an event: ``failed``, with the error, for the admin to see."""
    TaskRouterEvent.objects.filter(pk=event_id).update(
        state=EventState.FAILED, last_error=error[:2000], processed_at=timezone.now()
    )
    logger.error("gave up processing TaskRouter event %s: %s", event_id, error[:300])


def taskrouter_events_due(
    *, now: datetime | None = None, grace: timedelta = timedelta(minutes=5)
) -> QuerySet[TaskRouterEvent]:
    """Pending events whose next attempt is overdue by more than ``grace``: their message was
    never sent (broker down) or was lost. The grace keeps normal, already queued work out."""
    now = now or timezone.now()
    return TaskRouterEvent.objects.filter(
        state=EventState.PENDING, next_attempt_at__lte=now - grace
    ).order_by("next_attempt_at", "id")


def linkage_configured() -> bool:
    """True when the portal handles a Flex workspace (``TWILIO_WORKSPACE_SID``)."""
    return bool(settings.TWILIO_WORKSPACE_SID)
