"""Writing the portal's url_provider into Flex conversations (``recordings.flex.attach``), against
the fake Twilio's TaskRouter over HTTP: transfers, concurrent writers (412), retries, a task
gone, both levels, the access log, the admin section and the command; plus a property test of
the merge itself."""

from __future__ import annotations

import threading
from datetime import timedelta
from io import StringIO

import pytest
from celery import current_app
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from audit.models import AccessLog
from recordings import jobs
from recordings.flex import attach
from recordings.integrations import twilio_api
from recordings.models import (
    FlexReservation,
    FlexTask,
    FlexWorker,
    MediaAttachState,
    Recording,
    RecordingStatus,
    RecordingTaskLink,
    SyncState,
)
from recordings.tests.callbacks import new_sid

BASE = "https://portal.example.com"
FOREIGN = {"type": "Referenced", "url": "https://crm.example.com/case/1", "title": "CRM case"}
OTHER_ATTRIBUTES = {
    "from": "+15551230000",
    "direction": "inbound",
    "customers": {"name": "Ann", "tags": ["vip", 3, None]},
    "conversations": {"abandoned": "No", "media": [FOREIGN]},
}


@pytest.fixture
def flex(fake_twilio, settings):
    """A Flex workspace at the fake Twilio, the portal configured for it."""
    workspace = fake_twilio.add_workspace()
    settings.TWILIO_WORKSPACE_SID = workspace["sid"]
    settings.PUBLIC_BASE_URL = BASE
    settings.FLEX_MEDIA_LEVEL = "task"
    return workspace["sid"]


@pytest.fixture
def eager():
    """Queued work runs at once, as in embedded mode."""
    current_app.conf.task_always_eager = True
    yield
    current_app.conf.task_always_eager = False


def recording(*, start, channels: int = 2) -> Recording:
    return Recording.objects.create(
        sid=new_sid("RE"),
        account_sid="AC" + "a" * 32,
        call_sid=new_sid("CA"),
        status=RecordingStatus.COMPLETED,
        source="StartConferenceRecordingAPI",
        channels=channels,
        start_time=start,
        sync_state=SyncState.SYNCED,
    )


class Conversation:
    """A transfer: one task, two accepted reservations (Sam, then Kim), two recordings."""

    def __init__(self, fake_twilio, workspace_sid: str, attributes=None):
        self.fake, self.ws = fake_twilio, workspace_sid
        self.t0 = timezone.now().replace(microsecond=0) - timedelta(hours=1)
        queue = fake_twilio.add_task_queue(workspace_sid, friendly_name="Support")
        self.sid = fake_twilio.add_task(
            workspace_sid,
            attributes=attributes if attributes is not None else OTHER_ATTRIBUTES,
            task_queue_sid=queue["sid"],
            assignment_status="assigned",
        )["sid"]
        self.task = FlexTask.objects.create(
            sid=self.sid,
            workspace_sid=workspace_sid,
            channel="voice",
            queue_sid=queue["sid"],
            queue_name="Support",
            assignment_status="assigned",
            created_at_twilio=self.t0,
        )
        self.workers = [
            FlexWorker.objects.create(
                sid=new_sid("WK"),
                workspace_sid=workspace_sid,
                friendly_name=f"{name}_40example_2Ecom",
                full_name=name.title(),
                email=f"{name}@example.com",
                team_name=team,
            )
            for name, team in (("sam", "Billing"), ("kim", "Retention"))
        ]
        self.reservations = [
            FlexReservation.objects.create(
                sid=new_sid("WR"),
                task=self.task,
                worker_sid=self.workers[0].sid,
                status="completed",
                accepted_at=self.t0,
                completed_at=self.t0 + timedelta(minutes=4),
            ),
            FlexReservation.objects.create(
                sid=new_sid("WR"),
                task=self.task,
                worker_sid=self.workers[1].sid,
                status="accepted",
                accepted_at=self.t0 + timedelta(minutes=4),
            ),
        ]
        self.recordings = [
            recording(start=self.t0 + timedelta(seconds=5), channels=2),
            recording(start=self.t0 + timedelta(minutes=4, seconds=5), channels=1),
        ]
        self.links = [
            RecordingTaskLink.objects.create(recording=r, task=self.task, matched_by="conference")
            for r in self.recordings
        ]

    @property
    def attributes(self) -> dict:
        return self.fake.get_task(self.ws, self.sid)["attributes"]

    def item(self, index: int) -> dict:
        return attach.media_item(self.recordings[index], BASE)

    def link(self, index: int) -> RecordingTaskLink:
        return RecordingTaskLink.objects.get(pk=self.links[index].pk)

    def posts(self) -> int:
        return self.fake.count("POST", path_contains=f"/Tasks/{self.sid}")


def flex_rows(**filters) -> list[AccessLog]:
    return list(
        AccessLog.objects.filter(action="flex_media_attach", **filters).order_by("sequence")
    )


# --- The item and the merge ----------------------------------------------------------------------


def test_the_media_item_is_what_flex_insights_reads():
    start = timezone.now().replace(microsecond=123000)
    dual = Recording(sid="RE" + "1" * 32, channels=2, start_time=start)
    assert attach.media_item(dual, BASE + "/") == {
        "type": "VoiceRecording",
        "url_provider": f"{BASE}/api/v1/url-provider?recording_sid={dual.sid}",
        "start_time": int(start.timestamp()) * 1000 + 123,
        "channels": ["customer", "others"],
    }
    mono = Recording(sid="RE" + "2" * 32, channels=1, start_time=start)
    assert "channels" not in attach.media_item(mono, BASE)


def test_the_merge_refuses_shapes_it_cannot_add_to_without_loss():
    item = {
        "type": "VoiceRecording",
        "url_provider": f"{BASE}/api/v1/url-provider?x",
        "start_time": 1,
    }
    for attributes in ({"conversations": []}, {"conversations": {"media": {"a": 1}}}):
        with pytest.raises(attach.MediaMergeError):
            attach.attributes_with_media(attributes, [item], level="task")
    with pytest.raises(attach.MediaMergeError):
        attach.attributes_with_media(
            {"reservation_attributes": {"WR1": []}},
            [item],
            level="reservation",
            reservation_sids=["WR1"],
        )
    assert attach.attributes_with_media({"a": 1}, [item], level="off") == {"a": 1}


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5))
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
foreign_item = st.one_of(
    json_value,
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["VoiceRecording", "Referenced", "Raw"]),
            "url_provider": st.sampled_from(["https://other.example/up?recording_sid=RE1", "x"]),
        }
    ),
)
portal_item = st.builds(
    lambda sid, start: {
        "type": "VoiceRecording",
        "url_provider": attach.url_provider_url(recording_sid=f"RE{sid:032x}", base_url=BASE),
        "start_time": start,
    },
    st.integers(0, 6),
    st.integers(0, 10**13),
)


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    others=st.dictionaries(
        st.text(max_size=6).filter(lambda k: k != "conversations"), json_value, max_size=4
    ),
    conversation_extra=st.dictionaries(
        st.text(max_size=6).filter(lambda k: k != "media"), json_value, max_size=3
    ),
    existing=st.lists(st.one_of(foreign_item, portal_item), max_size=6),
    new=st.lists(portal_item, max_size=4),
)
def test_merge_keeps_everything_else_never_duplicates_and_keeps_start_order(
    others, conversation_extra, existing, new
):
    attributes = {**others, "conversations": {**conversation_extra, "media": existing}}
    before = repr(attributes)
    merged = attach.attributes_with_media(attributes, new, level="task")
    assert repr(attributes) == before  # the input is not changed

    # Every other attribute, and the conversation's other keys, exactly as they were.
    assert {k: v for k, v in merged.items() if k != "conversations"} == others
    assert {k: v for k, v in merged["conversations"].items() if k != "media"} == conversation_extra

    media = merged["conversations"]["media"]
    prefix = f"{BASE}/api/v1/url-provider?"

    def ours(item):
        return isinstance(item, dict) and str(item.get("url_provider", "")).startswith(prefix)

    # Items the portal did not write: all kept, unchanged, in their order.
    if new:
        assert [i for i in media if not ours(i)] == [i for i in existing if not ours(i)]
        providers = [i["url_provider"] for i in media if ours(i)]
        # Each recording once; every recording listed before, and every new one, is there.
        assert len(providers) == len(set(providers))
        assert set(providers) == {i["url_provider"] for i in existing + new if ours(i)}
        # The new items win for their recording, and the portal's items are in start order.
        for item in new:
            latest = [n for n in new if n["url_provider"] == item["url_provider"]][-1]
            assert latest in media
        starts = [i["start_time"] for i in media if ours(i)]
        assert starts == sorted(starts)
        # Idempotent: merging the same items again changes nothing.
        assert attach.attributes_with_media(merged, new, level="task") == merged
    else:
        assert media == existing


# --- Against the fake Twilio ----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_transfer_ends_with_both_recordings_in_start_order_and_nothing_else_touched(
    fake_twilio, flex
):
    conversation = Conversation(fake_twilio, flex)
    # The later recording is written first: the earlier one must still come first.
    assert attach.flex_media_attach(link_ids=[conversation.links[1].pk]).attached == [
        conversation.links[1].pk
    ]
    summary = attach.flex_media_attach(link_ids=[conversation.links[0].pk])
    assert summary.attached == [conversation.links[0].pk]

    attributes = conversation.attributes
    assert attributes["conversations"]["media"] == [
        FOREIGN,
        conversation.item(0),
        conversation.item(1),
    ]
    expected = {**OTHER_ATTRIBUTES, "conversations": {**OTHER_ATTRIBUTES["conversations"]}}
    expected["conversations"]["media"] = attributes["conversations"]["media"]
    assert attributes == expected
    for index in (0, 1):
        link = conversation.link(index)
        assert link.attach_state == MediaAttachState.ATTACHED
        assert link.attached_at is not None
        assert link.attach_error == ""

    rows = flex_rows()
    assert [(r.recording_sid, r.outcome, r.reason_code, r.identity) for r in rows] == [
        (conversation.recordings[1].sid, "allowed", "attached", "system:flex"),
        (conversation.recordings[0].sid, "allowed", "attached", "system:flex"),
    ]
    assert rows[0].detail["task_sid"] == conversation.sid


@pytest.mark.django_db
def test_a_change_between_read_and_write_is_merged_not_lost(fake_twilio, flex):
    conversation = Conversation(fake_twilio, flex)
    fake_twilio.race_task_attributes(
        flex, conversation.sid, {"crm": {"ticket": "T-1"}, "conversations": {"outcome": "sale"}}
    )
    summary = attach.flex_media_attach(link_ids=[link.pk for link in conversation.links])
    assert sorted(summary.attached) == sorted(link.pk for link in conversation.links)

    attributes = conversation.attributes
    assert attributes["crm"] == {"ticket": "T-1"}  # the other writer's change survived
    assert attributes["conversations"]["outcome"] == "sale"
    assert attributes["conversations"]["media"] == [
        FOREIGN,
        conversation.item(0),
        conversation.item(1),
    ]
    assert conversation.posts() == 2  # the 412, then the write after reading again
    assert {r.detail["conflicts"] for r in flex_rows()} == {1}


@pytest.mark.django_db(transaction=True)
def test_two_workers_attaching_two_recordings_at_once_both_end_up_in_the_list(
    fake_twilio, flex, monkeypatch
):
    conversation = Conversation(fake_twilio, flex)
    # Both workers read the task before either writes (the race If-Match exists for).
    both_read = threading.Barrier(2, timeout=10)
    waited: set[int] = set()
    fetch = twilio_api.taskrouter_task_fetch

    def fetch_then_meet(**kwargs):
        snapshot = fetch(**kwargs)
        if threading.get_ident() not in waited:
            waited.add(threading.get_ident())
            both_read.wait()
        return snapshot

    monkeypatch.setattr(twilio_api, "taskrouter_task_fetch", fetch_then_meet)
    errors: list[BaseException] = []

    def worker(link_id: int) -> None:
        try:
            attach.flex_media_attach(link_ids=[link_id])
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(link.pk,)) for link in conversation.links]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors

    assert conversation.attributes["conversations"]["media"] == [
        FOREIGN,
        conversation.item(0),
        conversation.item(1),
    ]
    assert conversation.posts() == 3  # one of the two writes met a 412 and was done again
    assert {conversation.link(i).attach_state for i in (0, 1)} == {MediaAttachState.ATTACHED}


@pytest.mark.django_db
def test_running_again_writes_nothing_new(fake_twilio, flex):
    conversation = Conversation(fake_twilio, flex)
    link_ids = [link.pk for link in conversation.links]
    attach.flex_media_attach(link_ids=link_ids)
    first = conversation.attributes
    posts = conversation.posts()

    summary = attach.flex_media_attach(link_ids=link_ids)
    assert sorted(summary.attached) == sorted(link_ids)
    assert conversation.attributes == first
    assert conversation.posts() == posts  # read, found complete, not written
    assert [r.reason_code for r in flex_rows()][-2:] == ["already_present", "already_present"]


@pytest.mark.django_db
def test_an_item_another_writer_dropped_is_put_back_with_the_next_recording(fake_twilio, flex):
    conversation = Conversation(fake_twilio, flex)
    attach.flex_media_attach(link_ids=[conversation.links[0].pk])
    # A Flex plugin overwrites the attributes without a check, dropping the portal's item.
    fake_twilio.update_task(flex, conversation.sid, attributes={"conversations": {"media": []}})
    attach.flex_media_attach(link_ids=[conversation.links[1].pk])
    assert conversation.attributes["conversations"]["media"] == [
        conversation.item(0),
        conversation.item(1),
    ]


@pytest.mark.django_db
def test_a_task_gone_at_twilio_is_recorded_shown_and_not_retried(fake_twilio, flex):
    conversation = Conversation(fake_twilio, flex)
    fake_twilio.remove_task(flex, conversation.sid)
    summary = attach.flex_media_attach(link_ids=[conversation.links[0].pk])
    assert summary.task_gone == [conversation.links[0].pk]
    assert summary.retry_in is None

    link = conversation.link(0)
    assert link.attach_state == MediaAttachState.TASK_GONE
    assert "404" in link.attach_error
    assert FlexTask.objects.get(pk=conversation.task.pk).deleted_at is not None
    (row,) = flex_rows()
    assert (row.outcome, row.reason_code, row.detail["task_sid"]) == (
        "error",
        "task_gone",
        conversation.sid,
    )
    # Not due for the sweep, and asking again does not call Twilio again.
    assert not attach.links_due(now=timezone.now() + timedelta(days=1)).filter(pk=link.pk).exists()
    requests = fake_twilio.count(path_contains=conversation.sid)
    attach.flex_media_attach(link_ids=[link.pk])
    assert fake_twilio.count(path_contains=conversation.sid) == requests


@pytest.mark.django_db
@pytest.mark.parametrize("status", [429, 503])
def test_twilio_busy_is_retried_later_with_backoff(fake_twilio, flex, status, monkeypatch):
    conversation = Conversation(fake_twilio, flex)
    fake_twilio.fail(status, count=1, path_contains=f"/Tasks/{conversation.sid}")
    queued: list[tuple[list[int], int | None]] = []
    monkeypatch.setattr(
        jobs,
        "queue_flex_media_attach",
        lambda ids, countdown=None: queued.append((list(ids), countdown)) or True,
    )
    # As a worker runs it (not eagerly): the links Twilio did not take are queued again.
    from recordings import tasks as recording_tasks

    result = recording_tasks.attach_flex_media.run([conversation.links[0].pk])
    assert result["pending"] == 1
    assert queued == [([conversation.links[0].pk], jobs.retry_delay(1))]

    link = conversation.link(0)
    assert link.attach_state == MediaAttachState.PENDING
    assert link.attach_attempts == 1
    assert str(status) in link.attach_error
    assert link.next_attempt_at > timezone.now() + timedelta(seconds=jobs.retry_delay(1) - 5)
    (row,) = flex_rows()
    assert (row.outcome, row.reason_code, row.detail["retry_in"]) == (
        "error",
        "retry_later",
        jobs.retry_delay(1),
    )
    assert "media" not in conversation.attributes["conversations"] or conversation.attributes[
        "conversations"
    ]["media"] == [FOREIGN]

    # Not due yet; when it is, the sweep takes it and Twilio, back, takes the write.
    assert not attach.links_due().filter(pk=link.pk).exists()
    RecordingTaskLink.objects.filter(pk=link.pk).update(next_attempt_at=timezone.now())
    assert attach.flex_media_sweep() == 2  # with the conversation's other link, never tried
    assert link.pk in queued[-1][0]
    assert queued[-1][1] is None
    assert attach.flex_media_attach(link_ids=[link.pk]).attached == [link.pk]
    assert conversation.item(0) in conversation.attributes["conversations"]["media"]


@pytest.mark.django_db
def test_busy_for_too_long_gives_up_as_failed(fake_twilio, flex):
    conversation = Conversation(fake_twilio, flex)
    RecordingTaskLink.objects.filter(pk=conversation.links[0].pk).update(
        attach_attempts=jobs.MAX_RETRIES
    )
    fake_twilio.fail(503, count=1, path_contains=f"/Tasks/{conversation.sid}")
    assert attach.flex_media_attach(link_ids=[conversation.links[0].pk]).failed
    link = conversation.link(0)
    assert link.attach_state == MediaAttachState.FAILED
    assert "gave up after" in link.attach_error
    assert flex_rows()[-1].reason_code == "gave_up"


@pytest.mark.django_db
def test_a_refusal_fails_with_twilios_error(fake_twilio, flex):
    conversation = Conversation(fake_twilio, flex)
    fake_twilio.fail(400, count=1, path_contains=f"/Tasks/{conversation.sid}")
    assert attach.flex_media_attach(link_ids=[conversation.links[0].pk]).failed
    link = conversation.link(0)
    assert link.attach_state == MediaAttachState.FAILED
    assert "400" in link.attach_error
    assert "20400" in link.attach_error
    row = flex_rows()[-1]
    assert (row.outcome, row.reason_code) == ("error", "twilio_rejected")


@pytest.mark.django_db
def test_attributes_of_an_unexpected_shape_are_left_alone(fake_twilio, flex):
    odd = {"conversations": {"media": {"not": "a list"}}}
    conversation = Conversation(fake_twilio, flex, attributes=odd)
    attach.flex_media_attach(link_ids=[conversation.links[0].pk])
    assert conversation.attributes == odd
    assert conversation.posts() == 0
    link = conversation.link(0)
    assert link.attach_state == MediaAttachState.FAILED
    assert "conversations.media is a dict" in link.attach_error


@pytest.mark.django_db
def test_without_public_base_url_nothing_is_written_and_it_says_why(fake_twilio, flex, settings):
    settings.PUBLIC_BASE_URL = ""
    conversation = Conversation(fake_twilio, flex)
    attach.flex_media_attach(link_ids=[conversation.links[0].pk])
    assert fake_twilio.count(path_contains=conversation.sid) == 0
    link = conversation.link(0)
    assert link.attach_state == MediaAttachState.FAILED
    assert "PUBLIC_BASE_URL is not set" in link.attach_error
    with pytest.raises(CommandError, match="PUBLIC_BASE_URL"):
        call_command("attach_flex_media", "--since", "2020-01-01", "--no-progress")


@pytest.mark.django_db
def test_reservation_level_writes_each_recording_under_the_reservation_that_handled_it(
    fake_twilio, flex, settings
):
    settings.FLEX_MEDIA_LEVEL = "reservation"
    conversation = Conversation(fake_twilio, flex)
    attach.flex_media_attach(link_ids=[link.pk for link in conversation.links])
    attributes = conversation.attributes
    first, second = (r.sid for r in conversation.reservations)
    assert attributes["reservation_attributes"] == {
        first: {"media": [conversation.item(0)]},
        second: {"media": [conversation.item(1)]},
    }
    assert attributes["conversations"] == OTHER_ATTRIBUTES["conversations"]


@pytest.mark.django_db
def test_reservation_level_waits_for_an_accepted_reservation(fake_twilio, flex, settings):
    settings.FLEX_MEDIA_LEVEL = "reservation"
    conversation = Conversation(fake_twilio, flex)
    FlexReservation.objects.filter(task=conversation.task).update(
        status="pending", accepted_at=None
    )
    summary = attach.flex_media_attach(link_ids=[conversation.links[0].pk])
    assert summary.pending == [conversation.links[0].pk]
    assert attach.NO_RESERVATION in conversation.link(0).attach_error
    assert conversation.posts() == 0


@pytest.mark.django_db
def test_level_off_writes_nothing(fake_twilio, flex, settings):
    settings.FLEX_MEDIA_LEVEL = "off"
    conversation = Conversation(fake_twilio, flex)
    summary = attach.flex_media_attach(link_ids=[link.pk for link in conversation.links])
    assert len(summary.off) == 2
    assert fake_twilio.count(path_contains=conversation.sid) == 0
    assert conversation.link(0).attach_state == MediaAttachState.OFF
    assert flex_rows() == []
    assert attach.flex_media_sweep() == 0


@pytest.mark.django_db
def test_the_command_attaches_recordings_made_before_the_linkage(fake_twilio, flex):
    conversation = Conversation(fake_twilio, flex)
    old = Conversation(fake_twilio, flex)
    Recording.objects.filter(pk__in=[r.pk for r in old.recordings]).update(
        start_time=timezone.now() - timedelta(days=400)
    )
    RecordingTaskLink.objects.filter(pk=conversation.links[1].pk).update(
        attach_state=MediaAttachState.FAILED, attach_error="earlier failure"
    )
    out = StringIO()
    since = (timezone.now() - timedelta(days=30)).date().isoformat()
    call_command("attach_flex_media", "--since", since, "--no-progress", stdout=out)
    assert "attached 2" in out.getvalue()
    assert conversation.attributes["conversations"]["media"][1:] == [
        conversation.item(0),
        conversation.item(1),
    ]
    assert old.attributes == OTHER_ATTRIBUTES  # before --since: left alone
    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        call_command("attach_flex_media", "--since", "yesterday", "--no-progress")

    fake_twilio.remove_task(flex, old.sid)
    call_command("attach_flex_media", "--since", "2000-01-01", "--no-progress", stdout=out)
    assert old.link(0).attach_state == MediaAttachState.TASK_GONE


# --- The recording's admin page -------------------------------------------------------------------


def staff(django_user_model, name: str, *perms: str) -> Client:
    user = django_user_model.objects.create_user(name, password="unused", is_staff=True)
    for perm in perms:
        app, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app, codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_the_recording_page_shows_the_conversation_and_attaches_again(
    fake_twilio, flex, django_user_model, eager
):
    conversation = Conversation(fake_twilio, flex)
    fake_twilio.remove_task(flex, conversation.sid)
    attach.flex_media_attach(link_ids=[conversation.links[0].pk])
    page_url = reverse("admin:recordings_recording_change", args=[conversation.recordings[0].pk])
    attach_url = reverse(
        "admin:recordings_recording_flex_attach", args=[conversation.recordings[0].pk]
    )

    viewer = staff(django_user_model, "viewer", "recordings.view_recording")
    page = viewer.get(page_url)
    assert page.status_code == 200
    html = page.content.decode()
    for shown in (
        conversation.sid,
        "Support",
        "Billing, Retention",
        "Sam &lt;sam@example.com&gt;",
        "Kim &lt;kim@example.com&gt;",
        conversation.reservations[0].sid,
        "task gone",
        "404",
    ):
        assert shown in html
    assert 'id="flex-attach-again"' not in html  # viewing only
    assert viewer.post(attach_url).status_code == 403

    officer = staff(
        django_user_model, "officer", "recordings.view_recording", "recordings.change_recording"
    )
    assert 'id="flex-attach-again"' in officer.get(page_url).content.decode()
    # The task is back (say, the workspace was restored): attaching again writes it.
    fake_twilio.add_task(flex, sid=conversation.sid, attributes={"kept": True})
    assert officer.get(attach_url).status_code == 405
    response = officer.post(attach_url)
    assert response.status_code == 302
    assert response["Location"] == page_url
    assert conversation.link(0).attach_state == MediaAttachState.ATTACHED
    assert conversation.attributes == {
        "kept": True,
        "conversations": {"media": [conversation.item(0)]},
    }
    html = officer.get(page_url).content.decode()
    assert "attached</span> at" in html
    requested = flex_rows(reason_code="attach_requested")
    assert [(r.identity, r.recording_sid) for r in requested] == [
        ("admin:officer", conversation.recordings[0].sid)
    ]


@pytest.mark.django_db
def test_a_recording_without_a_task_says_so(django_user_model, fake_twilio, flex):
    alone = recording(start=timezone.now())
    viewer = staff(django_user_model, "viewer", "recordings.view_recording")
    html = viewer.get(reverse("admin:recordings_recording_change", args=[alone.pk])).content
    assert b"No Flex task is linked to this recording" in html


@pytest.mark.django_db
def test_flex_task_and_worker_lists(fake_twilio, flex, django_user_model):
    conversation = Conversation(fake_twilio, flex)
    viewer = staff(
        django_user_model, "viewer", "recordings.view_flextask", "recordings.view_flexworker"
    )
    tasks_page = viewer.get(
        reverse("admin:recordings_flextask_change", args=[conversation.task.pk])
    )
    assert conversation.recordings[1].sid in tasks_page.content.decode()
    workers = viewer.get(reverse("admin:recordings_flexworker_changelist")).content.decode()
    assert "sam@example.com" in workers
    assert "Retention" in workers


@pytest.mark.django_db
def test_a_recording_the_portal_cannot_serve_is_not_written(fake_twilio, flex):
    conversation = Conversation(fake_twilio, flex)
    Recording.objects.filter(pk=conversation.recordings[0].pk).update(status=RecordingStatus.ABSENT)
    attach.flex_media_attach(link_ids=[conversation.links[0].pk])
    assert conversation.posts() == 0
    link = conversation.link(0)
    assert link.attach_state == MediaAttachState.FAILED
    assert link.attach_error == attach.NOT_PLAYABLE
    assert flex_rows()[-1].reason_code == "no_media"
