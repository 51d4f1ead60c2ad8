"""Linking recordings to their Flex conversations, from both sides, and the handling facts
(workers, teams, queues) access rules read."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import TestCase
from django.utils import timezone

from audit.models import AccessRule
from faketwilio.demo import DEMO_WORKSPACE_SID, demo_flex_sids
from faketwilio.demo import seed_demo as seed_fake_demo
from recordings import tasks
from recordings.flex import linking
from recordings.ingest import sync
from recordings.models import (
    FlexReservation,
    FlexWorker,
    MediaAttachState,
    Recording,
    RecordingStatus,
    RecordingTaskLink,
)
from recordings.tests.callbacks import new_sid
from recordings.tests.flex_fixtures import (
    Conversation,
    agent_attributes,
    make_recording,
    post_event,
    queued_messages,
    record_and_process,
    workspace_fixture,  # noqa: F401  (the `workspace` fixture)
)

pytestmark = pytest.mark.django_db

ATTACH = "recordings.tasks.attach_flex_media"


def attach_queued() -> list[int]:
    """Link ids handed to the media attachment (messages on the real Redis broker)."""
    return sorted(i for name, args in queued_messages() if name == ATTACH for i in args[0])


def test_a_transfer_links_both_recordings_with_both_agents_and_teams(
    client, fake_twilio, workspace
):
    """Through the webhook, as TaskRouter posts them: the first agent's leg, the second
    agent's leg and the conference recording all belong to the one task."""
    talk = Conversation(fake_twilio, workspace).play()
    first = make_recording(call_sid=talk.worker_a_call)
    second = make_recording(call_sid=talk.worker_b_call, status=RecordingStatus.IN_PROGRESS)
    whole = make_recording(conference_sid=talk.conference_sid)
    for params in talk.events:
        assert post_event(client, params).status_code == 204
    # The view only stored them; the worker's part, run here:
    stored = [i for name, args in queued_messages() if name.endswith("events") for i in args[0]]
    assert len(stored) == len(talk.events)
    with TestCase.captureOnCommitCallbacks(execute=True):
        tasks.process_taskrouter_events.apply((stored,))
    links = {link.recording_id: link for link in RecordingTaskLink.objects.all()}
    assert set(links) == {first.pk, second.pk, whole.pk}
    assert links[first.pk].matched_by == "participant"
    assert links[whole.pk].matched_by == "conference"
    assert {link.attach_state for link in links.values()} == {MediaAttachState.PENDING}
    assert attach_queued() == sorted(link.pk for link in links.values())
    for recording in (first, second, whole):
        recording.refresh_from_db()
        assert recording.handled_worker_sids == sorted([talk.worker_a, talk.worker_b])
        # Ann moved to Team Red after the call: the call stays Team Blue's.
        assert recording.handled_team_names == ["Team Blue", "Team Green"]
        assert recording.handled_queues == sorted([talk.queue_sid, "Support"])
        facts = recording.access_facts()
        assert facts.teams == ("Team Blue", "Team Green")


def test_recording_of_the_customer_call_is_matched_by_the_task_call_sid(fake_twilio, workspace):
    talk = Conversation(fake_twilio, workspace).play()
    recording = make_recording(call_sid=talk.customer_call)
    record_and_process(talk.events)
    assert recording.task_links.get().matched_by == "call_sid"


def test_recording_synced_after_its_task_is_linked_through_the_sync(fake_twilio, workspace):
    talk = Conversation(fake_twilio, workspace).play()
    record_and_process(talk.events)
    sid = new_sid("RE")
    fake_twilio.add_recording(sid, call_sid=talk.worker_b_call, duration="42", channels=2)
    with TestCase.captureOnCommitCallbacks(execute=True):
        recording = sync.recording_sync(sid=sid)
    link_messages = [a for n, a in queued_messages() if n.endswith("link_recording_tasks")]
    assert link_messages == [[recording.pk]]
    assert not recording.task_links.exists()  # the sync only queued it
    with TestCase.captureOnCommitCallbacks(execute=True):
        queued = tasks.link_recording_tasks.apply((recording.pk,)).get()
    link = recording.task_links.get()
    assert queued == [link.pk]
    assert attach_queued() == [link.pk]
    recording.refresh_from_db()
    assert recording.handled_worker_sids == sorted([talk.worker_a, talk.worker_b])
    # Linked again (every sync queues it): nothing new, nothing queued twice once tried.
    RecordingTaskLink.objects.filter(pk=link.pk).update(attach_attempts=1)
    assert linking.recording_link(recording_id=recording.pk) == []
    assert RecordingTaskLink.objects.count() == 1


def test_without_a_workspace_the_sync_queues_no_linking(fake_twilio, settings):
    settings.TWILIO_WORKSPACE_SID = ""
    sid = new_sid("RE")
    fake_twilio.add_recording(sid, call_sid=new_sid("CA"), duration="4", channels=1)
    with TestCase.captureOnCommitCallbacks(execute=True):
        sync.recording_sync(sid=sid)
    assert not [n for n, _ in queued_messages() if n.endswith("link_recording_tasks")]


@pytest.mark.parametrize(
    ("status", "queued"),
    [
        (RecordingStatus.IN_PROGRESS, True),
        (RecordingStatus.PROCESSING, True),
        (RecordingStatus.COMPLETED, True),
        (RecordingStatus.ABSENT, False),
        (RecordingStatus.FAILED, False),
        ("", False),
    ],
)
def test_only_playable_recordings_are_handed_to_the_attachment(
    fake_twilio, workspace, status, queued
):
    talk = Conversation(fake_twilio, workspace).play()
    recording = make_recording(call_sid=talk.customer_call, status=status)
    with TestCase.captureOnCommitCallbacks(execute=True):
        record_and_process(talk.events)
    link = recording.task_links.get()  # linked either way: it has handling facts
    assert attach_queued() == ([link.pk] if queued else [])
    if not queued:
        # The recording becomes playable later: its next sync hands the link over.
        Recording.objects.filter(pk=recording.pk).update(status=RecordingStatus.COMPLETED)
        with TestCase.captureOnCommitCallbacks(execute=True):
            assert linking.recording_link(recording_id=recording.pk) == [link.pk]


def test_flex_media_level_off_links_without_attaching(fake_twilio, workspace, settings):
    settings.FLEX_MEDIA_LEVEL = "off"
    talk = Conversation(fake_twilio, workspace).play()
    recording = make_recording(call_sid=talk.customer_call)
    with TestCase.captureOnCommitCallbacks(execute=True):
        record_and_process(talk.events)
    assert recording.task_links.get().attach_state == MediaAttachState.OFF
    assert attach_queued() == []
    recording.refresh_from_db()
    assert recording.handled_worker_sids  # the facts are there all the same


def test_a_recording_without_a_task_has_no_handling_facts(fake_twilio, workspace):
    talk = Conversation(fake_twilio, workspace).play()
    record_and_process(talk.events)
    stranger = make_recording(call_sid=new_sid("CA"), conference_sid=new_sid("CF"))
    assert linking.recording_link(recording_id=stranger.pk) == []
    stranger.refresh_from_db()
    assert not stranger.task_links.exists()
    assert stranger.access_facts().workers == ()
    assert (stranger.handled_team_names, stranger.handled_queues) == ([], [])


def test_a_worker_first_known_later_gives_the_calls_their_team(fake_twilio, workspace):
    talk = Conversation(fake_twilio, workspace).play(team_change=False)
    recording = make_recording(call_sid=talk.worker_a_call)
    # The events did not carry the agents' teams (attributes without them)...
    for params in talk.events:
        if "WorkerAttributes" in params:
            params["WorkerAttributes"] = "{}"
    record_and_process(talk.events)
    recording.refresh_from_db()
    assert recording.handled_worker_sids == sorted([talk.worker_a, talk.worker_b])
    assert recording.handled_team_names == []
    # ...then the agent's attributes are updated: the team is filled in, once.
    fake_twilio.update_worker(workspace, talk.worker_a, attributes=agent_attributes("Ann", "Blue"))
    talk.event("worker.attributes.update", worker_sid=talk.worker_a)
    record_and_process(talk.events[-1:])
    recording.refresh_from_db()
    assert recording.handled_team_names == ["Blue"]
    fake_twilio.update_worker(workspace, talk.worker_a, attributes=agent_attributes("Ann", "Red"))
    talk.event("worker.attributes.update", worker_sid=talk.worker_a)
    record_and_process(talk.events[-1:])
    recording.refresh_from_db()
    assert recording.handled_team_names == ["Blue"]
    assert FlexWorker.objects.get(sid=talk.worker_a).team_name == "Red"
    assert FlexReservation.objects.get(sid=talk.reservation_a).team_name == "Blue"


def test_the_sweep_links_recordings_whose_link_message_was_lost(fake_twilio, workspace):
    talk = Conversation(fake_twilio, workspace).play()
    record_and_process(talk.events)
    # Synced after the events, its link message lost with the broker:
    lost = make_recording(call_sid=talk.worker_a_call)
    unrelated = make_recording(call_sid=new_sid("CA"))
    assert tasks.link_flex_recordings.apply().get() == 1
    assert lost.task_links.exists()
    assert not unrelated.task_links.exists()
    assert linking.recordings_link_missing(since=timezone.now() - timedelta(hours=1)) == 0


def test_the_demo_portal_knows_the_demo_conversation(fake_twilio, settings):
    """``seed_demo`` against the demo workspace of the fake (as ``make run`` does): the
    directory is read, the task's events are processed, recording 1 is linked to Sam Taylor
    of Team Blue and handed to the media attachment; seeding again changes nothing."""
    settings.TWILIO_WORKSPACE_SID = DEMO_WORKSPACE_SID
    seed_fake_demo(fake_twilio)
    sids = demo_flex_sids()
    with TestCase.captureOnCommitCallbacks(execute=True):
        call_command("seed_demo", "--force", stdout=StringIO())
    recording = Recording.objects.get(sid=sids["recording_sid"])
    link = recording.task_links.get()
    assert (link.task.sid, link.matched_by) == (sids["task_sid"], "call_sid")
    assert attach_queued() == [link.pk]
    assert recording.handled_worker_sids == [sids["workers"]["sam"]]
    assert recording.handled_team_names == ["Team Blue"]
    assert recording.handled_queues == sorted([sids["task_queue_sid"], "Support"])
    jordan = FlexWorker.objects.get(sid=sids["workers"]["jordan"])
    assert (jordan.full_name, jordan.team_name) == ("Jordan Lee", "Team Blue")
    assert AccessRule.objects.get(name="demo-own-team").handled_by == "caller_team"
    call_command("seed_demo", "--force", stdout=StringIO())
    assert RecordingTaskLink.objects.count() == 1
