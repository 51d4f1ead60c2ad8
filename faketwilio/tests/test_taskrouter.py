"""TaskRouter (:mod:`faketwilio.taskrouter`, ``taskrouter_state``, ``taskrouter_events``) as the
official ``twilio`` client and ``requests`` see it: tasks with ETag and If-Match, the injected
concurrent writer, removal, paging, reservations, signed event callbacks, faults, the control
API, reset, and the demo's Flex workspace.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from faketwilio import DEMO_WORKSPACE_SID, FakeTwilio, demo_flex_sids, demo_sid, seed_demo
from faketwilio.tests.helpers import ACCOUNT_SID, AUTH_TOKEN, SUB_SID, SUB_TOKEN

WS = "WS" + "a" * 32
WT = "WT" + "b" * 32
BASE = f"/taskrouter/v1/Workspaces/{WS}"


def flex(fake: FakeTwilio, attributes: dict[str, Any] | None = None) -> dict[str, str]:
    """A workspace with a queue, a worker and one voice task; their SIDs."""
    fake.add_workspace(WS)
    queue = fake.add_task_queue(WS, friendly_name="Support")
    worker = fake.add_worker(
        WS, friendly_name="sam_40example_2Ecom", attributes={"full_name": "Sam Taylor"}
    )
    fake.add_task(
        WS,
        sid=WT,
        attributes=attributes or {"call_sid": "CA" + "1" * 32},
        task_queue_sid=queue["sid"],
    )
    return {"queue": queue["sid"], "worker": worker["sid"]}


def test_every_write_gives_a_new_etag(fake: FakeTwilio, client: Client) -> None:
    """GET answers the task's ETag; a POST with the current one succeeds and moves it; a write
    by another party moves it too; every other attribute survives a read-merge-write."""
    flex(fake, {"call_sid": "CA" + "1" * 32, "keep": {"me": 1}})
    task = client.taskrouter.v1.workspaces(WS).tasks(WT)

    first = task.fetch_with_http_info()
    etag = first.headers["ETag"]
    attributes = json.loads(first.data.attributes)
    attributes["conversations"] = {"media": [{"type": "VoiceRecording"}]}
    updated = task.update_with_http_info(attributes=json.dumps(attributes), if_match=etag)
    after_ours = task.fetch_with_http_info().headers["ETag"]
    fake.update_task(WS, WT, assignment_status="assigned")
    after_theirs = fake.get_task(WS, WT)

    assert first.status_code == 200
    assert first.data.task_queue_friendly_name == "Support"
    assert first.data.task_channel_unique_name == "voice"
    assert updated.headers["ETag"] == after_ours != etag
    assert after_theirs is not None
    assert after_theirs["etag"] not in (etag, after_ours)
    assert after_theirs["assignment_status"] == "assigned"
    assert after_theirs["attributes"] == {
        "call_sid": "CA" + "1" * 32,
        "keep": {"me": 1},
        "conversations": {"media": [{"type": "VoiceRecording"}]},
    }


def test_stale_if_match_answers_412_and_changes_nothing(fake: FakeTwilio, client: Client) -> None:
    """An If-Match that is not the current version: 412 with a Twilio error body, nothing
    written (DELETE too); without If-Match the write is unconditional."""
    flex(fake)
    task = client.taskrouter.v1.workspaces(WS).tasks(WT)
    stale = task.fetch_with_http_info().headers["ETag"]
    fake.update_task(WS, WT, attributes={"call_sid": "CA" + "2" * 32})
    before = fake.get_task(WS, WT)

    with pytest.raises(TwilioRestException) as failed:
        task.update(attributes=json.dumps({"x": 1}), if_match=stale)
    deleted = requests.delete(
        f"{fake.url}{BASE}/Tasks/{WT}",
        headers={"If-Match": stale},
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=5,
    )
    unchanged = fake.get_task(WS, WT)
    task.update(attributes=json.dumps({"x": 2}))

    assert failed.value.status == 412
    assert failed.value.code == 20412
    assert deleted.status_code == 412
    assert deleted.json()["status"] == 412
    assert stored(unchanged) == stored(before)
    assert (fake.get_task(WS, WT) or {})["attributes"] == {"x": 2}


def test_race_fault_gives_one_412_then_success_after_reread(
    fake: FakeTwilio, client: Client
) -> None:
    """race_task_attributes: the next conditional POST meets another writer's change (412);
    reading again, merging and writing succeeds, and both changes are kept."""
    flex(fake)
    fake.race_task_attributes(WS, WT, {"conversations": {"segment_link": "https://x"}})
    task = client.taskrouter.v1.workspaces(WS).tasks(WT)

    outcomes = []
    for _attempt in range(3):
        read = task.fetch_with_http_info()
        attributes = json.loads(read.data.attributes)
        conversations = attributes.setdefault("conversations", {})
        conversations["media"] = [{"type": "VoiceRecording"}]
        try:
            task.update(attributes=json.dumps(attributes), if_match=read.headers["ETag"])
        except TwilioRestException as exc:
            outcomes.append(exc.status)
            continue
        outcomes.append(200)
        break
    plain = task.update(attributes=json.dumps({"call_sid": "CA" + "1" * 32}))  # no If-Match

    assert outcomes == [412, 200]
    assert plain.sid == WT
    assert fake.count("POST", f"/Tasks/{WT}") == 3


def test_removed_task_answers_404(fake: FakeTwilio, client: Client) -> None:
    """After remove_task, GET and POST answer 404 with error 20404; get_task is None."""
    flex(fake)
    fake.remove_task(WS, WT)
    task = client.taskrouter.v1.workspaces(WS).tasks(WT)

    errors = []
    for call in (task.fetch, lambda: task.update(attributes="{}")):
        with pytest.raises(TwilioRestException) as failed:
            call()
        errors.append((failed.value.status, failed.value.code))
    unknown_workspace = requests.get(
        f"{fake.url}/taskrouter/v1/Workspaces/WS{'9' * 32}/Tasks/{WT}",
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=5,
    )

    assert errors == [(404, 20404), (404, 20404)]
    assert fake.get_task(WS, WT) is None
    assert unknown_workspace.status_code == 404
    assert unknown_workspace.json()["message"] == (
        f"The requested resource /v1/Workspaces/WS{'9' * 32}/Tasks/{WT} was not found"
    )


def stored(task: dict | None) -> dict:
    """A task as stored: without ``age``, which is counted when the task is read (seconds
    since it was created), so two reads a second apart differ there."""
    assert task is not None
    return {name: value for name, value in task.items() if name != "age"}


def test_attributes_must_be_a_json_object(fake: FakeTwilio) -> None:
    """Attributes that are not a JSON object, or a bad AssignmentStatus: 400, nothing changed;
    other credentials than the account's: 401."""
    flex(fake)
    before = fake.get_task(WS, WT)
    url = f"{fake.url}{BASE}/Tasks/{WT}"
    auth = (ACCOUNT_SID, AUTH_TOKEN)

    answers = [
        requests.post(url, data=data, auth=auth, timeout=5)
        for data in (
            {"Attributes": "[1, 2]"},
            {"Attributes": "not json"},
            {"AssignmentStatus": "finished"},
        )
    ]
    fake.add_subaccount(SUB_SID, SUB_TOKEN)
    other = requests.get(url, auth=(SUB_SID, SUB_TOKEN), timeout=5)

    assert [a.status_code for a in answers] == [400, 400, 400]
    assert answers[0].json()["code"] == 20001
    assert stored(fake.get_task(WS, WT)) == stored(before)
    assert other.status_code == 401


def test_task_list_hides_attributes_and_filters(fake: FakeTwilio, client: Client) -> None:
    """The task list shows attributes as null (only a fetch shows them) and filters by
    AssignmentStatus and TaskQueueSid."""
    sids = flex(fake)
    other = fake.add_task(WS, attributes={"a": 1}, assignment_status="completed")

    listed = client.taskrouter.v1.workspaces(WS).tasks.list()
    completed = client.taskrouter.v1.workspaces(WS).tasks.list(assignment_status=["completed"])
    queued = client.taskrouter.v1.workspaces(WS).tasks.list(task_queue_sid=sids["queue"])

    assert {t.sid for t in listed} == {WT, other["sid"]}
    assert all(t.attributes is None for t in listed)
    assert [t.sid for t in completed] == [other["sid"]]
    assert [t.sid for t in queued] == [WT]


def test_workers_page_through_several_pages(fake: FakeTwilio, client: Client) -> None:
    """Workers come PageSize at a time with meta.next_page_url; the client follows it."""
    fake.add_workspace(WS)
    added = [
        fake.add_worker(WS, friendly_name=f"agent{n}", attributes={"team_name": f"T{n % 2}"})
        for n in range(7)
    ]
    url = f"{fake.url}{BASE}/Workers"

    first = requests.get(url, params={"PageSize": 3}, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5)
    workers = client.taskrouter.v1.workspaces(WS).workers.list(page_size=3)
    fetched = client.taskrouter.v1.workspaces(WS).workers(added[0]["sid"]).fetch()

    meta = first.json()["meta"]
    assert len(first.json()["workers"]) == 3
    assert meta["key"] == "workers"
    assert meta["page_size"] == 3
    assert meta["next_page_url"].startswith(
        f"https://taskrouter.twilio.com/v1/Workspaces/{WS}/Workers?"
    )
    assert [w.sid for w in workers] == [w["sid"] for w in added]
    assert fake.count("GET", "/Workers") == 1 + 3 + 1
    assert json.loads(fetched.attributes) == {"team_name": "T0"}
    assert fetched.activity_name == "Available"
    assert fetched.available is True
    assert added[0]["attributes"] == {"team_name": "T0"}  # the Python API decodes them


def test_task_queues_and_reservations(fake: FakeTwilio, client: Client) -> None:
    """Task queues list and fetch; a task's reservations list and fetch, with the worker's
    name and the status set through the Python API."""
    sids = flex(fake)
    reservation = fake.add_reservation(WS, WT, worker_sid=sids["worker"])
    fake.update_reservation(WS, WT, reservation["sid"], status="accepted")
    other = fake.add_worker(WS, friendly_name="alex_40example_2Ecom")
    fake.add_reservation(WS, WT, worker_sid=other["sid"], status="rejected")
    workspace = client.taskrouter.v1.workspaces(WS)

    queues = workspace.task_queues.list()
    queue = workspace.task_queues(sids["queue"]).fetch()
    reservations = workspace.tasks(WT).reservations.list()
    accepted = workspace.tasks(WT).reservations.list(reservation_status="accepted")
    fetched = workspace.tasks(WT).reservations(reservation["sid"]).fetch()
    fetched_workspace = workspace.fetch()

    assert [q.friendly_name for q in queues] == ["Support"]
    assert queue.sid == sids["queue"]
    assert len(reservations) == 2
    assert [r.sid for r in accepted] == [reservation["sid"]]
    assert fetched.reservation_status == "accepted"
    assert fetched.worker_name == "sam_40example_2Ecom"
    assert fetched.worker_sid == sids["worker"]
    assert fetched.task_sid == WT
    assert fetched_workspace.friendly_name == "Flex Task Assignment"
    assert fetched_workspace.account_sid == ACCOUNT_SID


def test_event_params_are_signed_and_filled_from_state(fake: FakeTwilio) -> None:
    """taskrouter_event fills an event's fields from the named resources (a reservation names
    its task and worker), each with a fresh Sid; post_taskrouter_event signs it so that
    RequestValidator accepts it."""
    sids = flex(fake)
    reservation = fake.add_reservation(WS, WT, worker_sid=sids["worker"], status="accepted")
    params = fake.taskrouter_event(
        "reservation.accepted",
        workspace_sid=WS,
        reservation_sid=reservation["sid"],
        timestamp_ms=1_764_672_000_123,
    )
    again = fake.taskrouter_event(
        "task.canceled", workspace_sid=WS, task_sid=WT, TaskCanceledReason="hangup"
    )
    url = f"{fake.url}/portal/twilio/taskrouter-events"

    answer = fake.post_taskrouter_event(url, params)
    received = fake.requests[-1]

    assert params["EventType"] == "reservation.accepted"
    assert params["AccountSid"] == ACCOUNT_SID
    assert params["WorkspaceSid"] == WS
    assert params["WorkspaceName"] == "Flex Task Assignment"
    assert params["ResourceType"] == "Reservation"
    assert params["ResourceSid"] == params["ReservationSid"] == reservation["sid"]
    assert params["TaskSid"] == WT
    assert json.loads(params["TaskAttributes"]) == {"call_sid": "CA" + "1" * 32}
    assert params["TaskQueueSid"] == sids["queue"]
    assert params["TaskQueueName"] == "Support"
    assert params["TaskChannelUniqueName"] == "voice"
    assert params["TaskAssignmentStatus"] == "pending"
    assert params["WorkerSid"] == sids["worker"]
    assert params["WorkerName"] == "sam_40example_2Ecom"
    assert json.loads(params["WorkerAttributes"]) == {"full_name": "Sam Taylor"}
    assert params["Timestamp"] == "1764672000"
    assert params["TimestampMs"] == "1764672000123"
    assert params["EventDescription"]
    assert params["Sid"].startswith("EV")
    assert params["Sid"] != again["Sid"]
    assert again["ResourceType"] == "Task"
    assert again["ResourceSid"] == WT
    assert again["TaskCanceledReason"] == "hangup"
    assert "WorkerSid" not in again
    assert answer.status_code == 404  # the fake is no portal; it only records the POST
    assert received.form() == params
    assert RequestValidator(AUTH_TOKEN).validate(
        url, received.form(), received.headers["X-Twilio-Signature"]
    )
    assert not RequestValidator("another-token").validate(
        url, received.form(), received.headers["X-Twilio-Signature"]
    )


def test_faults_hit_taskrouter_paths(fake: FakeTwilio, client: Client) -> None:
    """fail(429) and fail(503) answer TaskRouter requests with Twilio error bodies."""
    flex(fake)
    fake.fail(429, count=1, path_contains="/Tasks/")
    fake.fail(503, count=1, path_contains="/taskrouter/")
    task = client.taskrouter.v1.workspaces(WS).tasks(WT)

    statuses = []
    for _ in range(2):
        with pytest.raises(TwilioRestException) as failed:
            task.fetch()
        statuses.append((failed.value.status, failed.value.code))

    assert statuses == [(429, 20429), (503, 20503)]
    assert task.fetch().sid == WT


def test_control_api_drives_taskrouter(fake: FakeTwilio) -> None:
    """The /_fake/taskrouter/ routes mirror the Python API."""
    base = f"{fake.url}/_fake/taskrouter"

    def post(path: str, body: dict[str, Any]) -> requests.Response:
        return requests.post(f"{base}/{path}", json=body, timeout=5)

    workspace = post("workspaces", {"sid": WS, "friendly_name": "Flex"})
    queue = post("task_queues", {"workspace_sid": WS, "friendly_name": "Support"}).json()
    worker = post("workers", {"workspace_sid": WS, "friendly_name": "sam", "attributes": {}})
    renamed = post(
        f"workers/{worker.json()['sid']}", {"workspace_sid": WS, "attributes": {"team_id": "b"}}
    )
    task = post(
        "tasks",
        {
            "workspace_sid": WS,
            "sid": WT,
            "attributes": {"call_sid": "CA1"},
            "task_queue_sid": queue["sid"],
        },
    )
    got = requests.get(f"{base}/tasks/{WT}", params={"workspace_sid": WS}, timeout=5)
    updated = post(f"tasks/{WT}", {"workspace_sid": WS, "attributes": {"call_sid": "CA2"}})
    reservation = post(
        "reservations",
        {"workspace_sid": WS, "task_sid": WT, "worker_sid": worker.json()["sid"]},
    )
    accepted = post(
        f"reservations/{reservation.json()['sid']}",
        {"workspace_sid": WS, "task_sid": WT, "status": "accepted"},
    )
    race = post("race", {"workspace_sid": WS, "task_sid": WT, "changes": {"x": 1}})
    event = post(
        "events",
        {
            "workspace_sid": WS,
            "event_type": "reservation.accepted",
            "reservation_sid": reservation.json()["sid"],
            "url": "https://portal.example.com/twilio/taskrouter-events",
            "extra": {"Custom": "yes"},
        },
    ).json()
    bad = post("tasks", {"workspace_sid": WS})  # attributes missing
    deleted = requests.delete(f"{base}/tasks/{WT}", params={"workspace_sid": WS}, timeout=5)
    gone = requests.get(f"{base}/tasks/{WT}", params={"workspace_sid": WS}, timeout=5)

    assert workspace.status_code == 201
    assert workspace.json()["friendly_name"] == "Flex"
    assert renamed.json()["attributes"] == {"team_id": "b"}
    assert task.status_code == 201
    assert got.json()["attributes"] == {"call_sid": "CA1"}
    assert updated.json()["attributes"] == {"call_sid": "CA2"}
    assert updated.json()["etag"] != got.json()["etag"]
    assert accepted.json()["reservation_status"] == "accepted"
    assert race.status_code == 200
    assert event["params"]["WorkerName"] == "sam"
    assert event["params"]["Custom"] == "yes"
    assert RequestValidator(AUTH_TOKEN).validate(
        "https://portal.example.com/twilio/taskrouter-events",
        event["params"],
        event["signature"],
    )
    assert bad.status_code == 400
    assert deleted.status_code == 204
    assert gone.status_code == 404


def test_reset_empties_taskrouter(fake: FakeTwilio, client: Client) -> None:
    """reset() forgets workspaces, tasks and pending races; reset_faults() forgets races."""
    flex(fake)
    fake.race_task_attributes(WS, WT, {"x": 1})
    fake.reset_faults()
    etag = client.taskrouter.v1.workspaces(WS).tasks(WT).fetch_with_http_info().headers["ETag"]
    client.taskrouter.v1.workspaces(WS).tasks(WT).update(attributes="{}", if_match=etag)
    fake.reset()

    with pytest.raises(TwilioRestException) as failed:
        client.taskrouter.v1.workspaces(WS).fetch()

    assert failed.value.status == 404
    assert fake.get_task(WS, WT) is None
    with pytest.raises(KeyError):
        fake.add_task(WS, attributes={})


def test_demo_flex_workspace(fake: FakeTwilio, client: Client) -> None:
    """The demo's workspace has a fixed SID, the Support queue, three agents with Flex
    Insights attributes, and a voice task for the call of demo recording 1, accepted by Sam."""
    seeded = seed_demo(fake)
    sids = demo_flex_sids()
    workspace = client.taskrouter.v1.workspaces(DEMO_WORKSPACE_SID)

    task = workspace.tasks(sids["task_sid"]).fetch()
    attributes = json.loads(task.attributes)
    workers = {w.friendly_name: json.loads(w.attributes) for w in workspace.workers.list()}
    reservations = workspace.tasks(sids["task_sid"]).reservations.list()
    recording = fake.get_recording(sids["recording_sid"])
    token = requests.post(
        f"{fake.url}/iam/v1/Accounts/{ACCOUNT_SID}/Tokens/validate",
        json={"token": "demo-supervisor-token"},
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=5,
    ).json()

    assert seeded["flex"] == sids
    assert sids["workspace_sid"] == DEMO_WORKSPACE_SID
    assert [q.friendly_name for q in workspace.task_queues.list()] == ["Support"]
    assert task.task_channel_unique_name == "voice"
    assert attributes["call_sid"] == sids["call_sid"] == demo_sid("CA", 1)
    assert attributes["conference"] == {
        "sid": sids["conference_sid"],
        "participants": {"customer": sids["call_sid"], "worker": sids["worker_call_sid"]},
    }
    assert recording is not None
    assert recording["call_sid"] == sids["call_sid"]
    sam = workers["sam_40example_2Ecom"]
    assert sam["full_name"] == "Sam Taylor"
    assert sam["email"] == "sam@example.com"
    assert sam["team_name"] == "Team Blue"
    assert {"team_id", "department_name", "location", "manager", "roles", "contact_uri"} <= set(sam)
    assert workers["alex_40example_2Ecom"]["team_name"] == "Team Green"
    assert workers["jordan_40example_2Ecom"]["team_name"] == "Team Blue"
    assert "supervisor" in workers["jordan_40example_2Ecom"]["roles"]
    assert [(r.worker_sid, r.reservation_status) for r in reservations] == [
        (sids["workers"]["sam"], "accepted")
    ]
    assert token["worker_sid"] == sids["workers"]["jordan"]
