"""What one fake Twilio holds of TaskRouter: workspaces and, inside each, its task queues,
workers, tasks (each with a version, served as its ``ETag``) and the tasks' reservations.

Plain data classes and the operations the Python API, the control API and the REST endpoints
perform on them (:mod:`faketwilio.taskrouter` renders and serves them,
:mod:`faketwilio.taskrouter_events` builds event callbacks from them). The workspaces live in
``State.workspaces`` and are guarded by ``State.lock``: callers hold it around every operation.
Invalid input (an unknown status, a SID of the wrong shape) raises ValueError, an unknown
resource KeyError: both are a test's mistake, never an HTTP error.

Like a Flex account, each workspace has the activities Offline, Available, Unavailable and
Break, one workflow ("Assign to Anyone") and the task channels voice, chat, sms, video, email
and default; their SIDs are derived from the workspace's so that they are stable.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from faketwilio.state import new_sid, now

TASK_STATUSES = ("pending", "reserved", "assigned", "canceled", "completed", "wrapping")
RESERVATION_STATUSES = (
    "pending",
    "accepted",
    "rejected",
    "timeout",
    "canceled",
    "rescinded",
    "wrapping",
    "completed",
)
ACTIVITIES = {"Offline": False, "Available": True, "Unavailable": False, "Break": False}
TASK_CHANNELS = ("voice", "chat", "sms", "video", "email", "default")
WORKFLOW_NAME = "Assign to Anyone"

#: Creation order of every resource (lists show oldest first, ties in a second included).
_created = itertools.count(1)


def derived_sid(prefix: str, *parts: str) -> str:
    """A stable SID for a resource that Flex creates with every workspace (activities, the
    workflow, task channels): ``prefix`` and 32 hex digits derived from ``parts``."""
    return prefix + hashlib.sha256("/".join(parts).encode()).hexdigest()[:32]


def _check_sid(prefix: str, sid: str) -> str:
    if not re.fullmatch(prefix + r"[0-9a-fA-F]{32}", sid or ""):
        raise ValueError(f"a {prefix}… sid is {prefix!r} followed by 32 hex digits, not {sid!r}")
    return sid


def deep_merge(target: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``target`` with ``changes`` merged in: nested objects are merged key by key, any other
    value replaces what was there (how a careful writer changes a task's attributes)."""
    merged = copy.deepcopy(target)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@dataclass
class TaskQueue:
    """A TaskQueue of a workspace."""

    sid: str
    workspace_sid: str
    friendly_name: str
    date_created: datetime
    date_updated: datetime
    ordinal: int = field(default_factory=lambda: next(_created))
    target_workers: str = "1==1"
    task_order: str = "FIFO"
    max_reserved_workers: int = 1


@dataclass
class Worker:
    """A Worker; ``attributes`` is the decoded JSON object (Flex Insights reads ``full_name``,
    ``email``, ``team_id``, ``team_name``, ``roles``… from it)."""

    sid: str
    workspace_sid: str
    friendly_name: str
    attributes: dict[str, Any]
    activity_name: str
    date_created: datetime
    date_updated: datetime
    date_status_changed: datetime
    ordinal: int = field(default_factory=lambda: next(_created))

    @property
    def available(self) -> bool:
        """True when the worker's activity is an available one."""
        return ACTIVITIES.get(self.activity_name, False)


@dataclass
class Reservation:
    """A task's Reservation of one worker."""

    sid: str
    workspace_sid: str
    task_sid: str
    worker_sid: str
    status: str
    date_created: datetime
    date_updated: datetime
    ordinal: int = field(default_factory=lambda: next(_created))


@dataclass
class Race:
    """An injected concurrent writer: before each of the next ``remaining`` conditional POSTs
    to the task, ``changes`` are merged into its attributes (so the POST's ``If-Match`` is
    stale)."""

    changes: dict[str, Any]
    remaining: int


@dataclass
class Task:
    """A Task; ``version`` moves on every change and is served as the ``ETag``."""

    sid: str
    workspace_sid: str
    attributes: dict[str, Any]
    assignment_status: str
    task_queue_sid: str | None
    channel: str
    date_created: datetime
    date_updated: datetime
    ordinal: int = field(default_factory=lambda: next(_created))
    priority: int = 0
    reason: str | None = None
    timeout: int = 86400
    version: int = 1
    reservations: dict[str, Reservation] = field(default_factory=dict)
    races: list[Race] = field(default_factory=list)

    @property
    def etag(self) -> str:
        """The task's current version, as its ``ETag`` header carries it."""
        return str(self.version)

    def touch(self) -> None:
        """Record a change: a new version (ETag) and ``date_updated``."""
        self.version += 1
        self.date_updated = now()


@dataclass
class Workspace:
    """A TaskRouter Workspace of the main account, with everything inside it."""

    sid: str
    account_sid: str
    friendly_name: str
    event_callback_url: str
    date_created: datetime
    date_updated: datetime
    task_queues: dict[str, TaskQueue] = field(default_factory=dict)
    workers: dict[str, Worker] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)

    # ------------------------------------------------------------------ fixed parts

    def activity_sid(self, name: str) -> str:
        """The SID of one of the workspace's activities."""
        return derived_sid("WA", self.sid, name)

    @property
    def workflow_sid(self) -> str:
        """The SID of the workspace's one workflow."""
        return derived_sid("WW", self.sid, WORKFLOW_NAME)

    def channel_sid(self, unique_name: str) -> str:
        """The SID of one of the workspace's task channels."""
        return derived_sid("TC", self.sid, unique_name)

    # ------------------------------------------------------------------ queues and workers

    def add_task_queue(self, sid: str | None, friendly_name: str) -> TaskQueue:
        """Create (or replace) a task queue."""
        if not friendly_name:
            raise ValueError("a task queue needs a friendly_name")
        created = now()
        queue = TaskQueue(
            _check_sid("WQ", sid or new_sid("WQ")), self.sid, friendly_name, created, created
        )
        self.task_queues[queue.sid] = queue
        return queue

    def add_worker(
        self,
        sid: str | None,
        friendly_name: str,
        attributes: dict[str, Any] | None,
        activity_name: str,
    ) -> Worker:
        """Create (or replace) a worker."""
        if not friendly_name:
            raise ValueError("a worker needs a friendly_name")
        if activity_name not in ACTIVITIES:
            raise ValueError(f"activity_name must be one of {sorted(ACTIVITIES)}")
        created = now()
        worker = Worker(
            sid=_check_sid("WK", sid or new_sid("WK")),
            workspace_sid=self.sid,
            friendly_name=friendly_name,
            attributes=copy.deepcopy(attributes or {}),
            activity_name=activity_name,
            date_created=created,
            date_updated=created,
            date_status_changed=created,
        )
        self.workers[worker.sid] = worker
        return worker

    def update_worker(
        self,
        sid: str,
        *,
        attributes: dict[str, Any] | None,
        friendly_name: str | None,
        activity_name: str | None,
    ) -> Worker:
        """Replace a worker's attributes, name or activity (those given)."""
        worker = self.workers[sid]
        if attributes is not None:
            worker.attributes = copy.deepcopy(attributes)
        if friendly_name is not None:
            worker.friendly_name = friendly_name
        if activity_name is not None:
            if activity_name not in ACTIVITIES:
                raise ValueError(f"activity_name must be one of {sorted(ACTIVITIES)}")
            worker.activity_name = activity_name
            worker.date_status_changed = now()
        worker.date_updated = now()
        return worker

    # ------------------------------------------------------------------ tasks

    def add_task(
        self,
        sid: str | None,
        *,
        attributes: dict[str, Any],
        task_queue_sid: str | None,
        channel: str,
        assignment_status: str,
    ) -> Task:
        """Create (or replace) a task; ``task_queue_sid`` must be one of this workspace's."""
        if not isinstance(attributes, dict):
            raise ValueError("task attributes must be a dict (a JSON object)")
        if assignment_status not in TASK_STATUSES:
            raise ValueError(f"assignment_status must be one of {TASK_STATUSES}")
        if channel not in TASK_CHANNELS:
            raise ValueError(f"task_channel_unique_name must be one of {TASK_CHANNELS}")
        if task_queue_sid is not None and task_queue_sid not in self.task_queues:
            raise KeyError(f"unknown task queue {task_queue_sid}: add_task_queue() it first")
        created = now()
        task = Task(
            sid=_check_sid("WT", sid or new_sid("WT")),
            workspace_sid=self.sid,
            attributes=copy.deepcopy(attributes),
            assignment_status=assignment_status,
            task_queue_sid=task_queue_sid,
            channel=channel,
            date_created=created,
            date_updated=created,
        )
        self.tasks[task.sid] = task
        return task

    def update_task(
        self,
        sid: str,
        *,
        attributes: dict[str, Any] | None = None,
        assignment_status: str | None = None,
        reason: str | None = None,
        priority: int | None = None,
    ) -> Task:
        """Change a task as any writer would (``attributes`` replaces the whole object);
        every change is a new version."""
        task = self.tasks[sid]
        if attributes is not None and not isinstance(attributes, dict):
            raise ValueError("task attributes must be a dict (a JSON object)")
        if assignment_status is not None and assignment_status not in TASK_STATUSES:
            raise ValueError(f"assignment_status must be one of {TASK_STATUSES}")
        if attributes is not None:
            task.attributes = copy.deepcopy(attributes)
        if assignment_status is not None:
            task.assignment_status = assignment_status
        if reason is not None:
            task.reason = reason
        if priority is not None:
            task.priority = int(priority)
        task.touch()
        return task

    def remove_task(self, sid: str) -> None:
        """Forget a task and its reservations (as TaskRouter does some time after a task is
        canceled or deleted); no-op if absent."""
        self.tasks.pop(sid, None)

    def race(self, task_sid: str, changes: dict[str, Any], count: int) -> None:
        """Let another writer merge ``changes`` into the task's attributes just before each
        of its next ``count`` POSTs that carry ``If-Match``."""
        if count < 1:
            raise ValueError("count must be at least 1")
        if not isinstance(changes, dict):
            raise ValueError("changes must be a dict")
        self.tasks[task_sid].races.append(Race(copy.deepcopy(changes), count))

    def run_race(self, task: Task) -> bool:
        """Apply the task's next pending race, if any (a conditional POST is arriving);
        True when one ran."""
        if not task.races:
            return False
        race = task.races[0]
        task.attributes = deep_merge(task.attributes, race.changes)
        task.touch()
        race.remaining -= 1
        if race.remaining <= 0:
            task.races.pop(0)
        return True

    # ------------------------------------------------------------------ reservations

    def add_reservation(
        self, task_sid: str, *, worker_sid: str, sid: str | None, status: str
    ) -> Reservation:
        """Create (or replace) a reservation of ``worker_sid`` for a task."""
        task = self.tasks[task_sid]
        if worker_sid not in self.workers:
            raise KeyError(f"unknown worker {worker_sid}: add_worker() it first")
        if status not in RESERVATION_STATUSES:
            raise ValueError(f"status must be one of {RESERVATION_STATUSES}")
        created = now()
        reservation = Reservation(
            sid=_check_sid("WR", sid or new_sid("WR")),
            workspace_sid=self.sid,
            task_sid=task_sid,
            worker_sid=worker_sid,
            status=status,
            date_created=created,
            date_updated=created,
        )
        task.reservations[reservation.sid] = reservation
        return reservation

    def update_reservation(self, task_sid: str, sid: str, *, status: str) -> Reservation:
        """Move a reservation to ``status``."""
        if status not in RESERVATION_STATUSES:
            raise ValueError(f"status must be one of {RESERVATION_STATUSES}")
        reservation = self.tasks[task_sid].reservations[sid]
        reservation.status = status
        reservation.date_updated = now()
        return reservation

    def find_reservation(self, sid: str) -> Reservation:
        """The reservation ``sid`` of any task of the workspace (KeyError when none)."""
        for task in self.tasks.values():
            if sid in task.reservations:
                return task.reservations[sid]
        raise KeyError(f"unknown reservation {sid}")


def new_workspace(
    sid: str | None, *, account_sid: str, friendly_name: str, event_callback_url: str
) -> Workspace:
    """A new, empty workspace of ``account_sid``."""
    created = now()
    return Workspace(
        sid=_check_sid("WS", sid or new_sid("WS")),
        account_sid=account_sid,
        friendly_name=friendly_name,
        event_callback_url=event_callback_url,
        date_created=created,
        date_updated=created,
    )
