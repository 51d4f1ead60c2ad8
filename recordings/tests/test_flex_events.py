"""``POST /twilio/taskrouter-events`` and the processing of TaskRouter events: signatures,
account and workspace checks, idempotency, event order, the broker being down."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import OperationalError, connection
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from portal.celery import app
from portal.sealing import seal
from recordings import tasks
from recordings.flex import events as flex_events
from recordings.models import (
    EventState,
    FlexReservation,
    FlexTask,
    FlexTaskCall,
    FlexWorker,
    TaskRouterEvent,
    TwilioSubaccount,
)
from recordings.tests import test_pipeline as pipeline
from recordings.tests.callbacks import new_sid, sign
from recordings.tests.flex_fixtures import (
    TASKROUTER_PATH,
    Conversation,
    forget_flex_state,
    make_recording,
    post_event,
    queued_messages,
    record_and_process,
    snapshot,
    workspace_fixture,  # noqa: F401  (the `workspace` fixture)
)

pytestmark = pytest.mark.django_db


def simple_event(fake_twilio, workspace_sid: str, **extra) -> dict[str, str]:
    queue = fake_twilio.add_task_queue(workspace_sid, friendly_name="Sales")["sid"]
    task = fake_twilio.add_task(
        workspace_sid, attributes={"call_sid": new_sid("CA")}, task_queue_sid=queue
    )["sid"]
    return fake_twilio.taskrouter_event(
        "task.created", workspace_sid=workspace_sid, task_sid=task, **extra
    )


# --- the webhook ----------------------------------------------------------------------------


def test_signed_event_is_stored_answered_204_and_queued(client, fake_twilio, workspace):
    params = simple_event(fake_twilio, workspace)
    response = post_event(client, params)
    assert response.status_code == 204
    event = TaskRouterEvent.objects.get()
    assert event.event_key == params["Sid"]
    assert event.event_type == "task.created"
    assert event.resource_sid == params["TaskSid"]
    assert event.event_ms == int(params["TimestampMs"])
    assert event.payload == params
    assert event.state == EventState.PENDING
    assert queued_messages() == [("recordings.tasks.process_taskrouter_events", [[event.pk]])]
    assert not FlexTask.objects.exists()  # processing happens in the worker, not the request


def test_event_posted_by_the_fake_taskrouter_over_http_is_accepted(
    live_server, fake_twilio, workspace
):
    params = simple_event(fake_twilio, workspace)
    response = fake_twilio.post_taskrouter_event(
        live_server.url + "/twilio/taskrouter-events", params
    )
    assert response.status_code == 204
    assert TaskRouterEvent.objects.filter(event_key=params["Sid"]).exists()


@pytest.mark.parametrize("signature", ["", "bogus", "Zm9vYmFy"])
def test_missing_or_bad_signature_is_refused_and_nothing_stored(
    client, fake_twilio, workspace, signature
):
    response = post_event(client, simple_event(fake_twilio, workspace), signature=signature)
    assert response.status_code == 403
    assert response.json()["error"] == "invalid_signature"
    assert not TaskRouterEvent.objects.exists()


def test_tampered_event_is_refused(client, fake_twilio, workspace):
    params = simple_event(fake_twilio, workspace)
    signed = sign("http://testserver" + TASKROUTER_PATH, params)
    params["TaskAssignmentStatus"] = "canceled"
    assert post_event(client, params, signature=signed).status_code == 403
    assert not TaskRouterEvent.objects.exists()


def test_another_account_is_refused_even_a_known_subaccount(client, fake_twilio, workspace):
    params = simple_event(fake_twilio, workspace)
    stranger = {**params, "AccountSid": new_sid("AC")}
    response = post_event(client, stranger, token="e" * 32)
    assert (response.status_code, response.json()["error"]) == (403, "unknown_account")
    sub_sid, sub_token = new_sid("AC"), "c" * 32
    TwilioSubaccount.objects.create(
        sid=sub_sid,
        sealed_auth_token=seal(sub_token.encode(), purpose=f"subaccount-token:{sub_sid}"),
    )
    response = post_event(client, {**params, "AccountSid": sub_sid}, token=sub_token)
    assert (response.status_code, response.json()["error"]) == (403, "unknown_account")
    assert not TaskRouterEvent.objects.exists()


def test_another_workspace_is_refused(client, fake_twilio, workspace):
    other = fake_twilio.add_workspace(friendly_name="Someone else's")["sid"]
    response = post_event(client, simple_event(fake_twilio, other))
    assert response.status_code == 403
    assert response.json() == {
        "error": "unknown_workspace",
        "detail": "This WorkspaceSid is not served here.",
    }
    assert not TaskRouterEvent.objects.exists()


def test_without_a_configured_workspace_every_event_is_refused(
    client, fake_twilio, workspace, settings
):
    settings.TWILIO_WORKSPACE_SID = ""
    response = post_event(client, simple_event(fake_twilio, workspace))
    assert response.status_code == 403
    assert response.json()["error"] == "flex_linkage_off"
    assert not TaskRouterEvent.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("EventType", ""),
        ("EventType", "x" * 65),
        ("AccountSid", ""),
        ("WorkspaceSid", "WS123"),
        ("WorkspaceSid", None),
        ("TaskSid", "WT" + "z" * 32),
        ("WorkerSid", "WK1"),
        ("TimestampMs", "yesterday"),
        ("Timestamp", "soon"),
    ],
)
def test_malformed_signed_event_is_400_and_nothing_stored(
    client, fake_twilio, workspace, field, value
):
    params = simple_event(fake_twilio, workspace)
    if value is None:
        del params[field]
    else:
        params[field] = value
    if field == "Timestamp":
        del params["TimestampMs"]
    response = post_event(client, params)
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_callback"
    assert field in response.json()["detail"]
    assert not TaskRouterEvent.objects.exists()


@pytest.mark.parametrize(
    "in_autocommit",
    [
        pytest.param(True, marks=pytest.mark.django_db(transaction=True), id="autocommit"),
        pytest.param(False, id="inside-a-transaction"),
    ],
)
def test_retried_event_is_one_row_and_one_message(client, fake_twilio, workspace, in_autocommit):
    params = simple_event(fake_twilio, workspace)
    for _ in range(3):
        assert post_event(client, params).status_code == 204
    event = TaskRouterEvent.objects.get()
    assert event.deliveries == 3
    assert queued_messages() == [("recordings.tasks.process_taskrouter_events", [[event.pk]])]


def test_event_without_a_sid_is_keyed_by_a_digest_of_its_parameters(client, fake_twilio, workspace):
    params = simple_event(fake_twilio, workspace, Sid=None)
    assert "Sid" not in params
    for _ in range(2):
        assert post_event(client, params).status_code == 204
    event = TaskRouterEvent.objects.get()
    assert len(event.event_key) == 64
    assert event.deliveries == 2
    changed = {**params, "TimestampMs": str(int(params["TimestampMs"]) + 1)}
    assert post_event(client, changed).status_code == 204
    assert TaskRouterEvent.objects.count() == 2


# --- processing -----------------------------------------------------------------------------


def test_a_conversation_in_order_is_kept_whole(fake_twilio, workspace):
    talk = Conversation(fake_twilio, workspace).play()
    record_and_process(talk.events)
    task = FlexTask.objects.get(sid=talk.task_sid)
    assert (task.channel, task.assignment_status) == ("voice", "completed")
    assert (task.call_sid, task.conference_sid) == (talk.customer_call, talk.conference_sid)
    assert (task.queue_sid, task.queue_name) == (talk.queue_sid, "Support")
    assert task.attributes["conversations"] == {"conversation_id": "keep-me"}
    assert task.completed_at is not None
    assert task.created_at_twilio is not None
    assert set(FlexTaskCall.objects.filter(task=task).values_list("call_sid", "role")) == {
        (talk.customer_call, "call"),
        (talk.worker_a_call, "worker"),
        (talk.worker_b_call, "worker"),
    }
    first, second = FlexReservation.objects.filter(task=task).order_by("accepted_at")
    assert (first.sid, first.worker_sid, first.team_name) == (
        talk.reservation_a,
        talk.worker_a,
        "Team Blue",
    )
    assert (second.worker_sid, second.team_name) == (talk.worker_b, "Team Green")
    assert first.status == second.status == "completed"
    assert first.accepted_at < first.wrapup_at < first.completed_at
    ann = FlexWorker.objects.get(sid=talk.worker_a)
    assert (ann.friendly_name, ann.full_name, ann.email) == (
        "ann_40example_2Ecom",
        "Ann Example",
        "ann@example.com",
    )
    assert ann.team_name == "Team Red"  # the directory is current; the reservation kept Blue
    assert ann.roles == ["agent"]
    assert set(TaskRouterEvent.objects.values_list("state", flat=True)) == {EventState.PROCESSED}


def test_reservation_accepted_after_task_completed_records_the_worker_without_reopening(
    fake_twilio, workspace
):
    talk = Conversation(fake_twilio, workspace).play(team_change=False)
    accepted_b = next(
        e
        for e in talk.events
        if e["EventType"] == "reservation.accepted" and e["ReservationSid"] == talk.reservation_b
    )
    record_and_process([e for e in talk.events if e is not accepted_b])
    completed_at = FlexTask.objects.get(sid=talk.task_sid).completed_at
    record_and_process([accepted_b])  # arrives last, long after the task completed
    task = FlexTask.objects.get(sid=talk.task_sid)
    assert task.assignment_status == "completed"
    assert task.completed_at == completed_at
    reservation = FlexReservation.objects.get(sid=talk.reservation_b)
    assert reservation.status == "completed"  # not moved back to accepted
    assert reservation.accepted_at is not None  # but the acceptance is recorded
    assert reservation.team_name == "Team Green"


def test_an_offered_reservation_is_pending_and_nobody_handled_the_call_yet(fake_twilio, workspace):
    talk = Conversation(fake_twilio, workspace).play()
    recording = make_recording(call_sid=talk.customer_call)
    offered = [e for e in talk.events if e["EventType"] == "reservation.created"][:1]
    record_and_process(talk.events[:2] + offered)
    reservation = FlexReservation.objects.get(sid=talk.reservation_a)
    assert (reservation.status, reservation.accepted_at) == ("pending", None)
    assert reservation.created_at_twilio is not None
    recording.refresh_from_db()
    assert recording.task_links.exists()
    assert recording.handled_worker_sids == []
    assert recording.handled_queues == sorted([talk.queue_sid, "Support"])


def test_an_older_event_does_not_overwrite_newer_attributes(fake_twilio, workspace):
    talk = Conversation(fake_twilio, workspace).play()
    record_and_process(list(reversed(talk.events)))
    task = FlexTask.objects.get(sid=talk.task_sid)
    last_task_event = [e for e in talk.events if e.get("TaskSid")][-1]
    assert task.attributes == json.loads(last_task_event["TaskAttributes"])
    assert task.last_event_ms == int(last_task_event["TimestampMs"])


def test_shuffled_and_replayed_events_end_in_the_state_of_the_ordered_ones(fake_twilio, workspace):
    """Any order, with replays (TaskRouter's retries: the same ``Sid`` again) and reprocessing
    (a worker running a message twice), gives the state the events give in order."""
    talk = Conversation(fake_twilio, workspace).play()
    make_recording(call_sid=talk.worker_a_call)
    make_recording(call_sid=talk.worker_b_call)
    make_recording(conference_sid=talk.conference_sid)
    record_and_process(talk.events)
    expected = snapshot()
    assert len(expected["links"]) == 3

    @hypothesis_settings(
        max_examples=15,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(data=st.data())
    def any_order(data: st.DataObject) -> None:
        forget_flex_state()
        replays = data.draw(st.lists(st.sampled_from(talk.events), max_size=6), label="replays")
        deliveries = data.draw(st.permutations(talk.events + replays), label="deliveries")
        ids = record_and_process(deliveries)
        for event_id in data.draw(st.lists(st.sampled_from(ids), max_size=4), label="rerun"):
            # At-least-once delivery of a Celery message: the processed event is left alone.
            flex_events.taskrouter_events_process(event_ids=[event_id])
        assert snapshot() == expected
        assert TaskRouterEvent.objects.count() == len(talk.events)

    any_order()


def test_reapplying_an_event_changes_nothing(fake_twilio, workspace):
    talk = Conversation(fake_twilio, workspace).play()
    make_recording(call_sid=talk.worker_a_call)
    ids = record_and_process(talk.events)
    before = snapshot()
    # Even applied again from scratch (a crash after its effects, before it was marked).
    TaskRouterEvent.objects.filter(pk__in=ids).update(state=EventState.PENDING)
    flex_events.taskrouter_events_process(event_ids=ids)
    assert snapshot() == before


def test_unknown_event_types_are_stored_and_marked_processed(client, fake_twilio, workspace):
    params = fake_twilio.taskrouter_event("workspace.updated", workspace_sid=workspace)
    params["EventType"] = "brand-new.thing"
    record_and_process([params])
    event = TaskRouterEvent.objects.get()
    assert event.state == EventState.PROCESSED
    assert not FlexTask.objects.exists()


def test_tasks_of_other_channels_are_kept_but_link_nothing(fake_twilio, workspace):
    talk = Conversation(fake_twilio, workspace).play(channel="chat")
    recording = make_recording(call_sid=talk.customer_call)
    record_and_process(talk.events)
    assert FlexTask.objects.get(sid=talk.task_sid).channel == "chat"
    assert not recording.task_links.exists()


def test_broken_attributes_do_not_stop_the_event(fake_twilio, workspace):
    params = simple_event(fake_twilio, workspace, TaskAttributes="{not json")
    record_and_process([params])
    task = FlexTask.objects.get(sid=params["TaskSid"])
    assert task.attributes == {}
    assert task.queue_name == "Sales"
    assert TaskRouterEvent.objects.get().state == EventState.PROCESSED


# --- the broker being down ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_broker_down_at_event_time_loses_nothing(client, fake_twilio, workspace):
    talk = Conversation(fake_twilio, workspace).play()
    recording = make_recording(call_sid=talk.worker_b_call)
    with pipeline.broker_down():
        started = time.monotonic()
        for params in talk.events:
            assert post_event(client, params).status_code == 204
        assert time.monotonic() - started < 5 * len(talk.events)
        assert TaskRouterEvent.objects.filter(state=EventState.PENDING).count() == len(talk.events)
        TaskRouterEvent.objects.update(next_attempt_at=timezone.now() - timedelta(minutes=10))
        assert tasks.dispatch_pending_taskrouter_events() == 0  # still down: nothing lost
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        assert tasks.dispatch_pending_taskrouter_events() == len(talk.events)
        pipeline.wait_for(
            lambda: not TaskRouterEvent.objects.filter(state=EventState.PENDING).exists()
        )
    assert set(TaskRouterEvent.objects.values_list("state", flat=True)) == {EventState.PROCESSED}
    recording.refresh_from_db()
    assert recording.handled_worker_sids == sorted([talk.worker_a, talk.worker_b])
    assert tasks.dispatch_pending_taskrouter_events() == 0


def test_a_database_failure_leaves_the_event_pending_with_a_retry_time(fake_twilio, workspace):
    params = simple_event(fake_twilio, workspace)
    event_id, _ = flex_events.taskrouter_event_record(
        fields=flex_events.taskrouter_event_validate(params), params=params
    )

    def refuse(execute, sql, params, many, context):
        # What PostgreSQL answers one of two transactions that lock the same rows crosswise.
        if 'FROM "recordings_flextask"' in sql and "FOR NO KEY UPDATE" in sql:
            raise OperationalError("deadlock detected")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(refuse):
        retries = flex_events.taskrouter_events_process(event_ids=[event_id])
    event = TaskRouterEvent.objects.get(pk=event_id)
    assert retries == {event_id: 30}
    assert (event.state, event.attempts) == (EventState.PENDING, 1)
    assert "deadlock" in event.last_error
    assert event.next_attempt_at > timezone.now()
    flex_events.taskrouter_events_process(event_ids=[event_id])
    assert TaskRouterEvent.objects.get(pk=event_id).state == EventState.PROCESSED
