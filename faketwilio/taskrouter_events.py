"""TaskRouter's event callbacks: the form parameters TaskRouter POSTs to a Workspace's
``EventCallbackUrl``, built from the fake's current state, and a signed POST of them.

Every event carries ``EventType``, ``AccountSid``, ``WorkspaceSid``, ``WorkspaceName``,
``EventDescription``, ``ResourceType``, ``ResourceSid``, ``Timestamp`` (the TaskRouter Events
reference), ``TimestampMs`` (TaskRouter changelog, 2018-01-18) and the event's own ``Sid``
(``EV…``). Then, as the reference lists them per event type, the fields of the resources it
names: a task's (``TaskSid``, ``TaskAttributes`` as a JSON string, ``TaskAge``,
``TaskPriority``, ``TaskAssignmentStatus``, ``TaskChannelSid``, ``TaskChannelUniqueName``,
``TaskDateCreated``, ``TaskQueueEnteredDate``, ``WorkflowSid``, ``WorkflowName``), its queue's
(``TaskQueueSid``, ``TaskQueueName``, ``TaskQueueTargetExpression``), a worker's
(``WorkerSid``, ``WorkerName``, ``WorkerAttributes``, ``WorkerActivitySid``,
``WorkerActivityName``) and a reservation's (``ReservationSid``). Times in seconds since the
epoch, as callbacks send them. Every value is a string, as a form field is.
"""

from __future__ import annotations

import json
import time
from typing import Any

import requests
from twilio.request_validator import RequestValidator

from faketwilio.state import State, new_sid, now
from faketwilio.taskrouter_state import WORKFLOW_NAME, Workspace

#: The ``ResourceType`` of an event, from the first part of its ``EventType``.
RESOURCE_TYPES = {
    "task": "Task",
    "reservation": "Reservation",
    "worker": "Worker",
    "task-queue": "TaskQueue",
    "workflow": "Workflow",
    "workspace": "Workspace",
    "activity": "Activity",
}


def event_params(
    state: State,
    event_type: str,
    *,
    workspace_sid: str,
    task_sid: str | None = None,
    worker_sid: str | None = None,
    reservation_sid: str | None = None,
    task_queue_sid: str | None = None,
    timestamp_ms: int | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The form parameters of one ``event_type`` event (e.g. ``reservation.accepted``).

    A reservation names its task and worker, a task its queue, so only the most specific SID
    is needed. ``timestamp_ms`` defaults to now; ``extra`` adds or replaces parameters (e.g.
    ``TaskCanceledReason``), a None value removes one. Raises KeyError for an unknown
    workspace or resource, ValueError for an unknown kind of event.
    """
    kind = event_type.split(".", 1)[0]
    if kind not in RESOURCE_TYPES or "." not in event_type:
        raise ValueError(f"unknown TaskRouter event type {event_type!r}")
    millis = int(time.time() * 1000) if timestamp_ms is None else int(timestamp_ms)
    with state.lock:
        workspace: Workspace = state.workspaces[workspace_sid]
        params: dict[str, str] = {
            "Sid": new_sid("EV"),
            "EventType": event_type,
            "AccountSid": workspace.account_sid,
            "WorkspaceSid": workspace.sid,
            "WorkspaceName": workspace.friendly_name,
            "Timestamp": str(millis // 1000),
            "TimestampMs": str(millis),
        }
        if reservation_sid is not None:
            reservation = workspace.find_reservation(reservation_sid)
            task_sid = task_sid or reservation.task_sid
            worker_sid = worker_sid or reservation.worker_sid
            params["ReservationSid"] = reservation.sid
        if task_sid is not None:
            params.update(_task_fields(workspace, task_sid))
            task_queue_sid = task_queue_sid or params.get("TaskQueueSid")
        if task_queue_sid:
            queue = workspace.task_queues[task_queue_sid]
            params["TaskQueueSid"] = queue.sid
            params["TaskQueueName"] = queue.friendly_name
            params["TaskQueueTargetExpression"] = queue.target_workers
        if worker_sid is not None:
            params.update(_worker_fields(workspace, worker_sid))
    resource_type = RESOURCE_TYPES[kind]
    resource_sid = {
        "Task": params.get("TaskSid"),
        "Reservation": params.get("ReservationSid"),
        "Worker": params.get("WorkerSid"),
        "TaskQueue": params.get("TaskQueueSid"),
        "Workflow": workspace.workflow_sid,
        "Workspace": workspace.sid,
    }.get(resource_type)
    params["ResourceType"] = resource_type
    params["ResourceSid"] = resource_sid or ""
    params["EventDescription"] = (
        f"{resource_type} {resource_sid or ''} {event_type.split('.', 1)[1]}".replace("  ", " ")
    )
    for name, value in (extra or {}).items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value if isinstance(value, str) else json.dumps(value)
    return params


def _task_fields(workspace: Workspace, task_sid: str) -> dict[str, str]:
    task = workspace.tasks[task_sid]
    created = int(task.date_created.timestamp())
    fields = {
        "TaskSid": task.sid,
        "TaskAttributes": json.dumps(task.attributes),
        "TaskAge": str(max(0, int((now() - task.date_created).total_seconds()))),
        "TaskPriority": str(task.priority),
        "TaskAssignmentStatus": task.assignment_status,
        "TaskChannelSid": workspace.channel_sid(task.channel),
        "TaskChannelUniqueName": task.channel,
        "TaskDateCreated": str(created),
        "WorkflowSid": workspace.workflow_sid,
        "WorkflowName": WORKFLOW_NAME,
    }
    if task.task_queue_sid:
        fields["TaskQueueSid"] = task.task_queue_sid
        fields["TaskQueueEnteredDate"] = str(created)
    return fields


def _worker_fields(workspace: Workspace, worker_sid: str) -> dict[str, str]:
    worker = workspace.workers[worker_sid]
    return {
        "WorkerSid": worker.sid,
        "WorkerName": worker.friendly_name,
        "WorkerAttributes": json.dumps(worker.attributes),
        "WorkerActivitySid": workspace.activity_sid(worker.activity_name),
        "WorkerActivityName": worker.activity_name,
    }


def signature(url: str, params: dict[str, str], auth_token: str) -> str:
    """The ``X-Twilio-Signature`` Twilio sends with a form POST of ``params`` to ``url``."""
    return str(RequestValidator(auth_token).compute_signature(url, params))


def post_event(url: str, params: dict[str, str], auth_token: str) -> requests.Response:
    """POST ``params`` form-encoded to ``url`` as TaskRouter does, signed with
    ``auth_token``; TaskRouter waits at most 15 seconds for the answer."""
    return requests.post(
        url,
        data=params,
        headers={
            "X-Twilio-Signature": signature(url, params, auth_token),
            "User-Agent": "TwilioProxy/1.1",
        },
        timeout=15,
    )
