"""The demo conversation played the way Flex Insights finds it: the portal writes its url_provider
into the demo task's attributes at the (fake) Twilio, and headless Chromium, on another origin,
takes ``conversations.media[0].url_provider`` from those attributes and plays through it."""

from __future__ import annotations

from io import StringIO
from urllib.parse import parse_qs, urlsplit

import pytest
from celery import current_app
from django.core.management import call_command

from audit.models import AccessLog
from faketwilio.demo import DEMO_WORKSPACE_SID, demo_flex_sids
from faketwilio.demo import seed_demo as seed_fake_demo
from recordings.models import MediaAttachState, Recording, RecordingTaskLink

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def eager():
    """Queued work runs at once, as in embedded mode (``make run``)."""
    current_app.conf.task_always_eager = True
    yield
    current_app.conf.task_always_eager = False


def test_flex_insights_plays_the_demo_call_through_the_url_provider_in_its_task(
    live_server, settings, fake_twilio, page, eager
):
    player_origin = live_server.url  # http://localhost:PORT: the "Flex" page
    portal_origin = player_origin.replace("localhost", "127.0.0.1")
    settings.DEMO_PLAYER_ENABLED = True
    settings.CORS_ALLOWED_ORIGINS = [player_origin]
    settings.PUBLIC_BASE_URL = portal_origin
    settings.TWILIO_WORKSPACE_SID = DEMO_WORKSPACE_SID
    settings.FLEX_MEDIA_LEVEL = "task"

    seed_fake_demo(fake_twilio)  # Twilio's side: the demo workspace, task, tokens
    # The portal's side: seed_demo reads the demo directory, processes the demo task's events,
    # links demo recording 1 to its task, and the attachment (eager here) writes into the task.
    call_command("seed_demo", "--force", stdout=StringIO())
    sids = demo_flex_sids()
    demo_task = fake_twilio.get_task(DEMO_WORKSPACE_SID, sids["task_sid"])
    recording = Recording.objects.get(sid=sids["recording_sid"])
    link = RecordingTaskLink.objects.get(recording=recording)
    assert link.task.sid == sids["task_sid"]
    assert link.attach_state == MediaAttachState.ATTACHED

    # Flex Insights' view: the task's attributes at Twilio.
    attributes = fake_twilio.get_task(DEMO_WORKSPACE_SID, sids["task_sid"])["attributes"]
    assert attributes["call_sid"] == demo_task["attributes"]["call_sid"]  # the rest kept
    url_provider = attributes["conversations"]["media"][0]["url_provider"]
    parts = urlsplit(url_provider)
    assert f"{parts.scheme}://{parts.netloc}" == portal_origin
    (recording_sid,) = parse_qs(parts.query)["recording_sid"]

    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    page.goto(f"{player_origin}/demo/player?portal={parts.scheme}://{parts.netloc}")
    page.fill("#token", "demo-supervisor-token")
    page.fill("#recording", recording_sid)
    page.click("#play")
    page.wait_for_selector('#status[data-state="ended"]', timeout=20_000)

    assert url_provider in asked  # the player called exactly what the task names
    played = AccessLog.objects.get(action="url_provider", outcome="allowed")
    assert played.recording_sid == recording.sid
    attached = AccessLog.objects.get(action="flex_media_attach")
    assert (attached.identity, attached.detail["task_sid"]) == ("system:flex", sids["task_sid"])
