"""Helpers for the Flex linkage tests: a TaskRouter workspace in the fake Twilio, a
conversation with a transfer played as TaskRouter would report it (event callbacks built by the
fake from its own state, step by step), the portal's webhook signed like TaskRouter's, and a
snapshot of everything the portal keeps, to compare outcomes of different event orders."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
import redis
from django.conf import settings
from django.test import Client, TestCase

from recordings.flex import events as flex_events
from recordings.models import (
    FlexReservation,
    FlexTask,
    FlexTaskCall,
    FlexTaskQueue,
    FlexWorker,
    Recording,
    RecordingStatus,
    RecordingTaskLink,
    TaskRouterEvent,
)
from recordings.tests.callbacks import new_sid, sign

TASKROUTER_PATH = "/twilio/taskrouter-events"
T0_MS = 1_764_672_000_000  # 2025-12-02T10:40:00Z, the conversation's first event


def post_event(
    client: Client,
    params: dict[str, str],
    *,
    token: str | None = None,
    signature: str | None = None,
):
    """POST a TaskRouter event form-encoded, signed for ``http://testserver`` + the path
    unless ``signature`` is given; runs what the view queues on commit."""
    sig = (
        signature
        if signature is not None
        else sign("http://testserver" + TASKROUTER_PATH, params, token)
    )
    extra = {"HTTP_X_TWILIO_SIGNATURE": sig} if sig else {}
    with TestCase.captureOnCommitCallbacks(execute=True):
        return client.post(
            TASKROUTER_PATH,
            data=urlencode(params),
            content_type="application/x-www-form-urlencoded",
            **extra,
        )


def queued_messages() -> list[tuple[str, list]]:
    """``(task name, args)`` of every message waiting in the Celery default queue on the real
    Redis broker."""
    found = []
    for raw in redis.Redis.from_url(settings.REDIS_URL).lrange("celery", 0, -1):
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        found.append((message["headers"]["task"], args))
    return found


def record_and_process(events: list[dict[str, str]]) -> list[int]:
    """Store events as the webhook does and process them at once, in the given order."""
    ids = []
    for params in events:
        event_id, _created = flex_events.taskrouter_event_record(
            fields=flex_events.taskrouter_event_validate(params), params=params
        )
        ids.append(event_id)
        flex_events.taskrouter_events_process(event_ids=[event_id])
    return ids


def agent_attributes(name: str, team: str, **more: Any) -> dict[str, Any]:
    """A Flex worker's attributes as Flex Insights reads them."""
    email = f"{name.lower()}@example.com"
    return {
        "full_name": f"{name} Example",
        "email": email,
        "team_id": team.lower().replace(" ", "-"),
        "team_name": team,
        "department_name": "Support",
        "location": "Dublin",
        "manager": "Morgan Reyes",
        "roles": ["agent"],
        "contact_uri": "client:" + email.replace("@", "_40").replace(".", "_2E"),
        **more,
    }


@dataclass
class Conversation:
    """A voice conversation in the fake's workspace: a customer's call into a conference,
    accepted by agent A (Team Blue), transferred to agent B (Team Green); ``events`` holds
    TaskRouter's callbacks in the order they happened, one second apart."""

    fake: Any
    workspace_sid: str
    queue_sid: str = ""
    worker_a: str = ""
    worker_b: str = ""
    task_sid: str = ""
    customer_call: str = field(default_factory=lambda: new_sid("CA"))
    worker_a_call: str = field(default_factory=lambda: new_sid("CA"))
    worker_b_call: str = field(default_factory=lambda: new_sid("CA"))
    conference_sid: str = field(default_factory=lambda: new_sid("CF"))
    reservation_a: str = ""
    reservation_b: str = ""
    events: list[dict[str, str]] = field(default_factory=list)
    clock_ms: int = T0_MS

    def event(self, event_type: str, **sids: Any) -> dict[str, str]:
        """Build the next event from the fake's current state, one second after the last."""
        self.clock_ms += 1000
        params = self.fake.taskrouter_event(
            event_type, workspace_sid=self.workspace_sid, timestamp_ms=self.clock_ms, **sids
        )
        self.events.append(params)
        return params

    def attributes(self, worker_call: str | None) -> dict[str, Any]:
        conference: dict[str, Any] = {"sid": self.conference_sid, "participants": {}}
        conference["participants"]["customer"] = self.customer_call
        if worker_call:
            conference["participants"]["worker"] = worker_call
        return {
            "type": "inbound",
            "call_sid": self.customer_call,
            "from": "+15550100",
            "conference": conference,
            "conversations": {"conversation_id": "keep-me"},
        }

    def play(self, *, channel: str = "voice", team_change: bool = True) -> Conversation:
        """Play the whole conversation; ``events`` then holds every callback."""
        fake, ws = self.fake, self.workspace_sid
        self.queue_sid = fake.add_task_queue(ws, friendly_name="Support")["sid"]
        self.worker_a = fake.add_worker(
            ws, friendly_name="ann_40example_2Ecom", attributes=agent_attributes("Ann", "Team Blue")
        )["sid"]
        self.worker_b = fake.add_worker(
            ws,
            friendly_name="bob_40example_2Ecom",
            attributes=agent_attributes("Bob", "Team Green"),
        )["sid"]
        initial = {"type": "inbound", "call_sid": self.customer_call, "from": "+15550100"}
        self.task_sid = fake.add_task(
            ws,
            attributes=initial,
            task_queue_sid=self.queue_sid,
            task_channel_unique_name=channel,
        )["sid"]
        task = self.task_sid
        self.event("task.created", task_sid=task)
        self.event("task-queue.entered", task_sid=task)
        fake.update_task(ws, task, assignment_status="reserved")
        self.reservation_a = fake.add_reservation(ws, task, worker_sid=self.worker_a)["sid"]
        self.event("reservation.created", reservation_sid=self.reservation_a)
        fake.update_reservation(ws, task, self.reservation_a, status="accepted")
        fake.update_task(ws, task, assignment_status="assigned")
        self.event("reservation.accepted", reservation_sid=self.reservation_a)
        fake.update_task(ws, task, attributes=self.attributes(self.worker_a_call))
        self.event("task.updated", task_sid=task)
        # The transfer: a second reservation, for agent B, whose leg replaces A's.
        self.reservation_b = fake.add_reservation(ws, task, worker_sid=self.worker_b)["sid"]
        self.event("reservation.created", reservation_sid=self.reservation_b)
        fake.update_reservation(ws, task, self.reservation_b, status="accepted")
        fake.update_task(ws, task, attributes=self.attributes(self.worker_b_call))
        self.event("reservation.accepted", reservation_sid=self.reservation_b)
        fake.update_reservation(ws, task, self.reservation_a, status="wrapping")
        self.event("reservation.wrapup", reservation_sid=self.reservation_a)
        fake.update_reservation(ws, task, self.reservation_a, status="completed")
        self.event("reservation.completed", reservation_sid=self.reservation_a)
        fake.update_task(ws, task, assignment_status="wrapping")
        fake.update_reservation(ws, task, self.reservation_b, status="wrapping")
        self.event("reservation.wrapup", reservation_sid=self.reservation_b)
        self.event("task.wrapup", task_sid=task)
        fake.update_reservation(ws, task, self.reservation_b, status="completed")
        self.event("reservation.completed", reservation_sid=self.reservation_b)
        fake.update_task(ws, task, assignment_status="completed")
        self.event("task.completed", task_sid=task)
        if team_change:
            # Later, agent A moves to another team: their past call stays Team Blue's.
            fake.update_worker(ws, self.worker_a, attributes=agent_attributes("Ann", "Team Red"))
            self.event("worker.attributes.update", worker_sid=self.worker_a)
        self.event("activity.created")  # a type the portal does not use
        return self


@pytest.fixture(name="workspace")
def workspace_fixture(fake_twilio, settings) -> str:
    """A TaskRouter workspace in the fake, configured as the portal's."""
    sid = fake_twilio.add_workspace(friendly_name="Flex Task Assignment")["sid"]
    settings.TWILIO_WORKSPACE_SID = sid
    return sid


def make_recording(
    *, call_sid: str = "", conference_sid: str = "", status: str = RecordingStatus.COMPLETED
) -> Recording:
    """A synced recording of a call leg or a conference."""
    return Recording.objects.create(
        sid=new_sid("RE"),
        account_sid="AC" + "a" * 32,
        call_sid=call_sid,
        conference_sid=conference_sid,
        status=status,
        source="Conference" if conference_sid else "DialVerb",
    )


def snapshot() -> dict[str, Any]:
    """Everything the portal keeps from TaskRouter, and the handling facts of recordings."""
    tasks = {
        task["sid"]: task
        for task in FlexTask.objects.values(
            "sid",
            "channel",
            "call_sid",
            "conference_sid",
            "queue_sid",
            "queue_name",
            "assignment_status",
            "attributes",
            "created_at_twilio",
            "completed_at",
            "canceled_at",
            "deleted_at",
            "last_event_ms",
        )
    }
    return {
        "tasks": tasks,
        "calls": sorted(FlexTaskCall.objects.values_list("task__sid", "call_sid", "role")),
        "reservations": sorted(
            FlexReservation.objects.values_list(
                "sid",
                "task__sid",
                "worker_sid",
                "worker_name",
                "team_name",
                "status",
                "created_at_twilio",
                "accepted_at",
                "wrapup_at",
                "completed_at",
                "last_event_ms",
            )
        ),
        "workers": sorted(
            FlexWorker.objects.values_list(
                "sid",
                "friendly_name",
                "full_name",
                "email",
                "team_id",
                "team_name",
                "department_name",
                "location",
                "manager",
                "roles",
                "deleted_at",
                "last_event_ms",
            )
        ),
        "queues": sorted(FlexTaskQueue.objects.values_list("sid", "friendly_name")),
        "links": sorted(
            RecordingTaskLink.objects.values_list(
                "recording__sid", "task__sid", "matched_by", "attach_state"
            )
        ),
        "facts": sorted(
            Recording.objects.values_list(
                "sid", "handled_worker_sids", "handled_team_names", "handled_queues"
            )
        ),
    }


def forget_flex_state() -> None:
    """Empty what TaskRouter taught the portal (recordings stay, without handling facts)."""
    RecordingTaskLink.objects.all().delete()
    FlexTask.objects.all().delete()  # with its calls and reservations
    FlexWorker.objects.all().delete()
    FlexTaskQueue.objects.all().delete()
    TaskRouterEvent.objects.all().delete()
    Recording.objects.update(handled_worker_sids=[], handled_team_names=[], handled_queues=[])
