"""The worker and task queue directory read from TaskRouter's REST API (``sync_flex_directory``
and the hourly task), against the fake Twilio over HTTP."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from audit.models import AccessLog
from recordings import tasks
from recordings.flex import directory
from recordings.integrations import twilio_api
from recordings.models import FlexReservation, FlexTask, FlexTaskQueue, FlexWorker
from recordings.tests.flex_fixtures import (
    Conversation,
    agent_attributes,
    make_recording,
    record_and_process,
    workspace_fixture,  # noqa: F401  (the `workspace` fixture)
)

pytestmark = pytest.mark.django_db


def add_agents(fake, workspace: str, count: int) -> list[str]:
    return [
        fake.add_worker(
            workspace,
            friendly_name=f"agent{n}_40example_2Ecom",
            attributes=agent_attributes(f"Agent{n}", f"Team {n % 2}", roles=["agent", "x"]),
        )["sid"]
        for n in range(count)
    ]


def sync_rows() -> list[AccessLog]:
    return list(AccessLog.objects.filter(action="flex_directory_sync").order_by("sequence"))


def test_every_page_of_workers_and_queues_is_stored(fake_twilio, workspace):
    sids = add_agents(fake_twilio, workspace, 5)
    queues = [
        fake_twilio.add_task_queue(workspace, friendly_name=f"Q{n}")["sid"] for n in (1, 2, 3)
    ]
    fake_twilio.clear_requests()
    seen: list[str] = []
    summary = directory.flex_directory_sync(actor="test", on_progress=seen.append, page_size=2)
    assert summary.as_dict() == {"workers": 5, "queues": 3, "removed": 0, "teams_filled": 0}
    assert fake_twilio.count("GET", "/Workers") == 3  # pages of 2, 2 and 1
    assert fake_twilio.count("GET", "/TaskQueues") == 2
    assert seen.count("worker") == 5
    assert seen.count("queue") == 3
    assert set(FlexWorker.objects.values_list("sid", flat=True)) == set(sids)
    worker = FlexWorker.objects.get(sid=sids[1])
    assert (worker.friendly_name, worker.full_name, worker.email) == (
        "agent1_40example_2Ecom",
        "Agent1 Example",
        "agent1@example.com",
    )
    assert (worker.team_id, worker.team_name, worker.manager) == (
        "team-1",
        "Team 1",
        "Morgan Reyes",
    )
    assert worker.roles == ["agent", "x"]
    assert worker.workspace_sid == workspace
    assert set(FlexTaskQueue.objects.values_list("sid", "friendly_name")) == {
        (sid, f"Q{n}") for n, sid in zip((1, 2, 3), queues, strict=True)
    }
    (row,) = sync_rows()
    assert (row.outcome, row.identity) == ("allowed", "test")
    assert row.detail["workers"] == 5


def test_a_worker_gone_at_twilio_is_marked_deleted_and_kept(fake_twilio, workspace):
    sids = add_agents(fake_twilio, workspace, 3)
    directory.flex_directory_sync()
    with fake_twilio._state.lock:  # TaskRouter deletes the worker
        del fake_twilio._state.workspaces[workspace].workers[sids[0]]
    summary = directory.flex_directory_sync()
    assert summary.removed == 1
    gone = FlexWorker.objects.get(sid=sids[0])
    assert gone.deleted_at is not None
    assert gone.email == "agent0@example.com"  # still known by name for past recordings
    assert not FlexWorker.objects.filter(sid__in=sids[1:], deleted_at__isnull=False).exists()
    assert directory.flex_directory_sync().removed == 0  # already marked


@pytest.mark.parametrize(("failing", "kind"), [("/Workers", "worker"), ("/TaskQueues", "queue")])
def test_twilio_failing_halfway_changes_nothing(fake_twilio, workspace, failing, kind):
    add_agents(fake_twilio, workspace, 5)
    for n in (1, 2, 3):
        fake_twilio.add_task_queue(workspace, friendly_name=f"Q{n}")
    read: list[str] = []

    def twilio_goes_down_after_the_first_page(what: str) -> None:
        read.append(what)
        if read.count(kind) == 2:  # the first page of 2 is in; the next one will fail
            fake_twilio.fail(503, path_contains=failing)

    with pytest.raises(twilio_api.TwilioUnavailable, match="503"):
        directory.flex_directory_sync(
            actor="test", page_size=2, on_progress=twilio_goes_down_after_the_first_page
        )
    assert read.count(kind) == 2
    assert not FlexWorker.objects.exists()
    assert not FlexTaskQueue.objects.exists()
    (row,) = sync_rows()
    assert (row.outcome, row.reason_code) == ("error", "twilio_unavailable")
    assert "503" in row.detail["error"]


def test_the_command_shows_a_summary_and_a_clear_error(fake_twilio, workspace):
    add_agents(fake_twilio, workspace, 2)
    out = io.StringIO()
    call_command("sync_flex_directory", "--no-progress", stdout=out)
    assert (
        out.getvalue().strip() == "2 workers (0 no longer at Twilio, marked deleted), 0 task queues"
    )
    fake_twilio.fail(503)
    with pytest.raises(CommandError, match=r"directory sync failed, nothing changed: .*503"):
        call_command("sync_flex_directory", "--no-progress", stdout=io.StringIO())


def test_without_a_workspace_the_command_says_what_to_set(settings):
    settings.TWILIO_WORKSPACE_SID = ""
    with pytest.raises(CommandError, match="TWILIO_WORKSPACE_SID"):
        call_command("sync_flex_directory", "--no-progress")
    assert tasks.sync_flex_directory.apply().get() == {}


def test_the_directory_gives_teams_to_calls_handled_before_it_knew_the_agents(
    fake_twilio, workspace
):
    talk = Conversation(fake_twilio, workspace).play(team_change=False)
    recording = make_recording(call_sid=talk.worker_a_call)
    for params in talk.events:  # events without the agents' attributes
        params.pop("WorkerAttributes", None)
    record_and_process(talk.events)
    recording.refresh_from_db()
    assert recording.handled_team_names == []
    summary = tasks.sync_flex_directory.apply().get()
    assert summary["teams_filled"] == 1  # the one task, through both its reservations
    recording.refresh_from_db()
    assert recording.handled_team_names == ["Team Blue", "Team Green"]
    assert set(FlexReservation.objects.values_list("team_name", flat=True)) == {
        "Team Blue",
        "Team Green",
    }
    # An event older than the sync does not undo what the sync read.
    stale = dict(talk.events[0])
    stale.update(
        Sid="EV" + "f" * 32,
        EventType="worker.attributes.update",
        WorkerSid=talk.worker_a,
        WorkerAttributes='{"team_name": "Old Team"}',
    )
    record_and_process([stale])
    assert FlexWorker.objects.get(sid=talk.worker_a).team_name == "Team Blue"
    assert FlexTask.objects.count() == 1
