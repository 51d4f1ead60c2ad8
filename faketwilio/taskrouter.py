"""TaskRouter v1 (``taskrouter.twilio.com``): a Workspace, its Tasks (fetch, list, update,
delete, with ``ETag``/``If-Match``), Workers, TaskQueues, and a Task's Reservations.

As Twilio documents it: every answer about a task carries its version in an ``ETag`` header; a
``POST`` or ``DELETE`` with an ``If-Match`` header that is not the current version answers 412
and changes nothing; ``Attributes`` must be a JSON object (400 otherwise) and replaces the whole
object; a task's ``attributes`` are shown only when it is fetched on its own (``null`` in the
task list, per the Task resource's reference). Lists use the v1 ``meta`` envelope with
``PageSize`` and ``next_page_url``. The state is :mod:`faketwilio.taskrouter_state`; event
callbacks are :mod:`faketwilio.taskrouter_events`.

The error code of the 412 answer is not documented: the fake answers 20412, its convention
for an HTTP status without a documented code.
"""

from __future__ import annotations

import json
from typing import Any

from faketwilio.httpserver import (
    HttpError,
    Request,
    Response,
    bad_request,
    boolean,
    iso,
    not_found,
    paginate,
    twilio_path,
)
from faketwilio.routing import routes
from faketwilio.state import State, now
from faketwilio.taskrouter_state import (
    TASK_STATUSES,
    WORKFLOW_NAME,
    Reservation,
    Task,
    TaskQueue,
    Worker,
    Workspace,
)

TASKROUTER_BASE = "https://taskrouter.twilio.com/v1"


# ---------------------------------------------------------------------- resources as JSON


def workspace_json(workspace: Workspace) -> dict[str, Any]:
    """A Workspace resource as Twilio serves it."""
    url = f"{TASKROUTER_BASE}/Workspaces/{workspace.sid}"
    return {
        "account_sid": workspace.account_sid,
        "date_created": iso(workspace.date_created),
        "date_updated": iso(workspace.date_updated),
        "default_activity_name": "Offline",
        "default_activity_sid": workspace.activity_sid("Offline"),
        "event_callback_url": workspace.event_callback_url or None,
        "events_filter": None,
        "friendly_name": workspace.friendly_name,
        "multi_task_enabled": True,
        "sid": workspace.sid,
        "timeout_activity_name": "Offline",
        "timeout_activity_sid": workspace.activity_sid("Offline"),
        "prioritize_queue_order": "FIFO",
        "url": url,
        "links": {
            name.lower(): f"{url}/{name}"
            for name in ("Activities", "Events", "Tasks", "TaskQueues", "Workers", "Workflows")
        }
        | {"task_channels": f"{url}/TaskChannels", "statistics": f"{url}/Statistics"},
    }


def task_json(workspace: Workspace, task: Task, *, with_attributes: bool = True) -> dict[str, Any]:
    """A Task resource as Twilio serves it (``attributes`` as a JSON string, or None in a
    list)."""
    url = f"{TASKROUTER_BASE}/Workspaces/{workspace.sid}/Tasks/{task.sid}"
    queue = workspace.task_queues.get(task.task_queue_sid or "")
    return {
        "account_sid": workspace.account_sid,
        "age": max(0, int((now() - task.date_created).total_seconds())),
        "assignment_status": task.assignment_status,
        "attributes": json.dumps(task.attributes) if with_attributes else None,
        "addons": "{}",
        "date_created": iso(task.date_created),
        "date_updated": iso(task.date_updated),
        "task_queue_entered_date": iso(task.date_created) if queue else None,
        "priority": task.priority,
        "reason": task.reason,
        "sid": task.sid,
        "task_queue_sid": queue.sid if queue else None,
        "task_queue_friendly_name": queue.friendly_name if queue else None,
        "task_channel_sid": workspace.channel_sid(task.channel),
        "task_channel_unique_name": task.channel,
        "timeout": task.timeout,
        "workflow_sid": workspace.workflow_sid,
        "workflow_friendly_name": WORKFLOW_NAME,
        "workspace_sid": workspace.sid,
        "url": url,
        "links": {
            "task_queue": (
                f"{TASKROUTER_BASE}/Workspaces/{workspace.sid}/TaskQueues/{queue.sid}"
                if queue
                else None
            ),
            "workflow": f"{TASKROUTER_BASE}/Workspaces/{workspace.sid}/Workflows/"
            + workspace.workflow_sid,
            "workspace": f"{TASKROUTER_BASE}/Workspaces/{workspace.sid}",
            "reservations": f"{url}/Reservations",
        },
        "virtual_start_time": iso(task.date_created),
        "ignore_capacity": None,
        "routing_target": None,
    }


def worker_json(workspace: Workspace, worker: Worker) -> dict[str, Any]:
    """A Worker resource as Twilio serves it (``attributes`` as a JSON string)."""
    url = f"{TASKROUTER_BASE}/Workspaces/{workspace.sid}/Workers/{worker.sid}"
    return {
        "account_sid": workspace.account_sid,
        "activity_name": worker.activity_name,
        "activity_sid": workspace.activity_sid(worker.activity_name),
        "attributes": json.dumps(worker.attributes),
        "available": worker.available,
        "date_created": iso(worker.date_created),
        "date_status_changed": iso(worker.date_status_changed),
        "date_updated": iso(worker.date_updated),
        "friendly_name": worker.friendly_name,
        "sid": worker.sid,
        "workspace_sid": workspace.sid,
        "url": url,
        "links": {
            "channels": f"{url}/Channels",
            "reservations": f"{url}/Reservations",
            "statistics": f"{url}/Statistics",
            "workspace": f"{TASKROUTER_BASE}/Workspaces/{workspace.sid}",
        },
    }


def task_queue_json(workspace: Workspace, queue: TaskQueue) -> dict[str, Any]:
    """A TaskQueue resource as Twilio serves it."""
    url = f"{TASKROUTER_BASE}/Workspaces/{workspace.sid}/TaskQueues/{queue.sid}"
    return {
        "account_sid": workspace.account_sid,
        "assignment_activity_sid": None,
        "assignment_activity_name": None,
        "date_created": iso(queue.date_created),
        "date_updated": iso(queue.date_updated),
        "friendly_name": queue.friendly_name,
        "max_reserved_workers": queue.max_reserved_workers,
        "reservation_activity_sid": None,
        "reservation_activity_name": None,
        "sid": queue.sid,
        "target_workers": queue.target_workers,
        "task_order": queue.task_order,
        "url": url,
        "workspace_sid": workspace.sid,
        "links": {
            "statistics": f"{url}/Statistics",
            "workspace": f"{TASKROUTER_BASE}/Workspaces/{workspace.sid}",
        },
    }


def reservation_json(workspace: Workspace, reservation: Reservation) -> dict[str, Any]:
    """A task's Reservation resource as Twilio serves it."""
    task_url = f"{TASKROUTER_BASE}/Workspaces/{workspace.sid}/Tasks/{reservation.task_sid}"
    worker = workspace.workers.get(reservation.worker_sid)
    return {
        "account_sid": workspace.account_sid,
        "date_created": iso(reservation.date_created),
        "date_updated": iso(reservation.date_updated),
        "reservation_status": reservation.status,
        "sid": reservation.sid,
        "task_sid": reservation.task_sid,
        "worker_name": worker.friendly_name if worker else None,
        "worker_sid": reservation.worker_sid,
        "workspace_sid": workspace.sid,
        "url": f"{task_url}/Reservations/{reservation.sid}",
        "links": {
            "task": task_url,
            "worker": f"{TASKROUTER_BASE}/Workspaces/{workspace.sid}/Workers/"
            + reservation.worker_sid,
            "workspace": f"{TASKROUTER_BASE}/Workspaces/{workspace.sid}",
        },
    }


def task_view(workspace: Workspace, task: Task) -> dict[str, Any]:
    """What the fake's Python API answers for a task: its JSON with ``attributes`` decoded,
    plus its current ``etag``."""
    return {
        **task_json(workspace, task),
        "attributes": json.loads(json.dumps(task.attributes)),
        "etag": task.etag,
    }


def worker_view(workspace: Workspace, worker: Worker) -> dict[str, Any]:
    """What the fake's Python API answers for a worker: its JSON with ``attributes``
    decoded."""
    return {
        **worker_json(workspace, worker),
        "attributes": json.loads(json.dumps(worker.attributes)),
    }


# ---------------------------------------------------------------------- endpoints


def _workspace(state: State, request: Request, match: dict[str, str]) -> Workspace:
    """The workspace named in the path, if it is the caller's (404 otherwise)."""
    principal = request.principal
    assert principal is not None
    workspace: Workspace | None = state.workspaces.get(match["ws"])
    if workspace is None or workspace.account_sid != principal.sid:
        raise not_found(twilio_path(request.path))
    return workspace


def _task(state: State, request: Request, match: dict[str, str]) -> tuple[Workspace, Task]:
    workspace = _workspace(state, request, match)
    task = workspace.tasks.get(match["wt"])
    if task is None:
        raise not_found(twilio_path(request.path))
    return workspace, task


def _etag(task: Task) -> dict[str, str]:
    return {"ETag": task.etag}


def _if_match(request: Request, workspace: Workspace, task: Task) -> None:
    """Check ``If-Match`` against the task's version (before a ``POST``, an injected race runs
    first); 412 when it is stale."""
    expected = request.headers.get("If-Match")
    if expected is None:
        return
    if request.method == "POST":
        workspace.run_race(task)
    candidates = {value.strip().removeprefix("W/").strip('"') for value in expected.split(",")}
    if "*" not in candidates and task.etag not in candidates:
        raise HttpError(
            412,
            20412,
            f"Task {task.sid} was modified: the If-Match version does not match "
            f"the current version {task.etag}",
            _etag(task),
        )


def fetch_workspace(state: State, request: Request, match: dict[str, str]) -> Response:
    """``GET /v1/Workspaces/{WS}``."""
    with state.lock:
        return Response.json(200, workspace_json(_workspace(state, request, match)))


def task_resource(state: State, request: Request, match: dict[str, str]) -> Response:
    """``GET``, ``POST`` and ``DELETE /v1/Workspaces/{WS}/Tasks/{WT}``."""
    with state.lock:
        workspace, task = _task(state, request, match)
        if request.method == "GET":
            return Response.json(200, task_json(workspace, task), _etag(task))
        form = request.form() if request.method == "POST" else {}
        attributes = _attributes(form)
        status = form.get("AssignmentStatus")
        if status is not None and status not in TASK_STATUSES:
            raise bad_request(f"AssignmentStatus must be one of {', '.join(TASK_STATUSES)}")
        priority = form.get("Priority")
        if priority is not None and not priority.lstrip("-").isdigit():
            raise bad_request("Priority must be an integer")
        _if_match(request, workspace, task)
        if request.method == "DELETE":
            workspace.remove_task(task.sid)
            return Response(204)
        workspace.update_task(
            task.sid,
            attributes=attributes,
            assignment_status=status,
            reason=form.get("Reason"),
            priority=int(priority) if priority is not None else None,
        )
        return Response.json(200, task_json(workspace, task), _etag(task))


def _attributes(form: dict[str, str]) -> dict[str, Any] | None:
    """The ``Attributes`` parameter as an object (None when absent); 400 unless it is a JSON
    object."""
    if "Attributes" not in form:
        return None
    try:
        value = json.loads(form["Attributes"])
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise bad_request("Attributes must be a valid JSON object")
    return value


def list_tasks(state: State, request: Request, match: dict[str, str]) -> Response:
    """``GET /v1/Workspaces/{WS}/Tasks``, oldest first, filtered by ``AssignmentStatus``
    (one or more, comma-separated), ``TaskQueueSid``, ``TaskQueueName`` and ``WorkflowSid``."""
    query = request.query
    statuses = {s for s in query.get("AssignmentStatus", "").split(",") if s}
    with state.lock:
        workspace = _workspace(state, request, match)
        items = []
        for task in workspace.tasks.values():
            queue = workspace.task_queues.get(task.task_queue_sid or "")
            if (
                (statuses and task.assignment_status not in statuses)
                or query.get("TaskQueueSid", task.task_queue_sid) != task.task_queue_sid
                or (
                    "TaskQueueName" in query
                    and (queue is None or queue.friendly_name != query["TaskQueueName"])
                )
                or query.get("WorkflowSid", workspace.workflow_sid) != workspace.workflow_sid
            ):
                continue
            key = (task.ordinal,)
            items.append((key, task_json(workspace, task, with_attributes=False)))
        url = f"{TASKROUTER_BASE}/Workspaces/{workspace.sid}/Tasks"
    return Response.json(200, paginate(items, query, reverse=False).v1("tasks", url))


def list_workers(state: State, request: Request, match: dict[str, str]) -> Response:
    """``GET /v1/Workspaces/{WS}/Workers``, oldest first, filtered by ``FriendlyName``,
    ``ActivityName``, ``ActivitySid`` and ``Available``."""
    query = request.query
    available = boolean(query, "Available")
    with state.lock:
        workspace = _workspace(state, request, match)
        items = [
            ((w.ordinal,), worker_json(workspace, w))
            for w in workspace.workers.values()
            if query.get("FriendlyName", w.friendly_name) == w.friendly_name
            and query.get("ActivityName", w.activity_name) == w.activity_name
            and query.get("ActivitySid", workspace.activity_sid(w.activity_name))
            == workspace.activity_sid(w.activity_name)
            and (available is None or available == w.available)
        ]
        url = f"{TASKROUTER_BASE}/Workspaces/{workspace.sid}/Workers"
    return Response.json(200, paginate(items, query, reverse=False).v1("workers", url))


def fetch_worker(state: State, request: Request, match: dict[str, str]) -> Response:
    """``GET /v1/Workspaces/{WS}/Workers/{WK}``."""
    with state.lock:
        workspace = _workspace(state, request, match)
        worker = workspace.workers.get(match["wk"])
        if worker is None:
            raise not_found(twilio_path(request.path))
        return Response.json(200, worker_json(workspace, worker))


def list_task_queues(state: State, request: Request, match: dict[str, str]) -> Response:
    """``GET /v1/Workspaces/{WS}/TaskQueues``, oldest first, filtered by ``FriendlyName``."""
    query = request.query
    with state.lock:
        workspace = _workspace(state, request, match)
        items = [
            ((q.ordinal,), task_queue_json(workspace, q))
            for q in workspace.task_queues.values()
            if query.get("FriendlyName", q.friendly_name) == q.friendly_name
        ]
        url = f"{TASKROUTER_BASE}/Workspaces/{workspace.sid}/TaskQueues"
    return Response.json(200, paginate(items, query, reverse=False).v1("task_queues", url))


def fetch_task_queue(state: State, request: Request, match: dict[str, str]) -> Response:
    """``GET /v1/Workspaces/{WS}/TaskQueues/{WQ}``."""
    with state.lock:
        workspace = _workspace(state, request, match)
        queue = workspace.task_queues.get(match["wq"])
        if queue is None:
            raise not_found(twilio_path(request.path))
        return Response.json(200, task_queue_json(workspace, queue))


def list_reservations(state: State, request: Request, match: dict[str, str]) -> Response:
    """``GET /v1/Workspaces/{WS}/Tasks/{WT}/Reservations``, filtered by ``ReservationStatus``
    and ``WorkerSid``."""
    query = request.query
    with state.lock:
        workspace, task = _task(state, request, match)
        items = [
            ((r.ordinal,), reservation_json(workspace, r))
            for r in task.reservations.values()
            if query.get("ReservationStatus", r.status) == r.status
            and query.get("WorkerSid", r.worker_sid) == r.worker_sid
        ]
        url = f"{TASKROUTER_BASE}/Workspaces/{workspace.sid}/Tasks/{task.sid}/Reservations"
    return Response.json(200, paginate(items, query, reverse=False).v1("reservations", url))


def fetch_reservation(state: State, request: Request, match: dict[str, str]) -> Response:
    """``GET /v1/Workspaces/{WS}/Tasks/{WT}/Reservations/{WR}``."""
    with state.lock:
        workspace, task = _task(state, request, match)
        reservation = task.reservations.get(match["wr"])
        if reservation is None:
            raise not_found(twilio_path(request.path))
        return Response.json(200, reservation_json(workspace, reservation))


_WORKSPACE = r"/taskrouter/v1/Workspaces/(?P<ws>[^/]+)"
_TASK = _WORKSPACE + r"/Tasks/(?P<wt>[^/]+)"

ROUTES = routes(
    ("GET", _WORKSPACE, fetch_workspace),
    ("GET", _WORKSPACE + r"/Tasks", list_tasks),
    ("GET POST DELETE", _TASK, task_resource),
    ("GET", _TASK + r"/Reservations", list_reservations),
    ("GET", _TASK + r"/Reservations/(?P<wr>[^/]+)", fetch_reservation),
    ("GET", _WORKSPACE + r"/Workers", list_workers),
    ("GET", _WORKSPACE + r"/Workers/(?P<wk>[^/]+)", fetch_worker),
    ("GET", _WORKSPACE + r"/TaskQueues", list_task_queues),
    ("GET", _WORKSPACE + r"/TaskQueues/(?P<wq>[^/]+)", fetch_task_queue),
)
