"""The portal's media endpoint: ranges for seeking, link checks, folded fetch logging, and
storage or Twilio failures; through the real URLs that url_provider hands out."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from audit.chain import chain_verify
from audit.models import AccessLog
from conftest import TEST_BUCKET
from recordings.models import MediaLink, MediaLocation
from recordings.playback.links import media_links_summarize
from recordings.tests.playback_fixtures import (
    FLEX_ORIGIN,
    allow_supervisors,
    ask,
    flex_token,
    local_recording,
    s3_recording,
)

pytestmark = pytest.mark.django_db


def issue(client, fake_twilio, recording) -> str:
    """A media link path (with its token) issued the way the player gets it."""
    if not allow_supervisors_exists():
        allow_supervisors()
    response = ask(client, recording.sid, flex_token(fake_twilio))
    assert response.status_code == 200, response.content
    url = urlsplit(response.json()["media_url"])
    return f"{url.path}?{url.query}"


def allow_supervisors_exists() -> bool:
    from audit.models import AccessRule

    return AccessRule.objects.filter(name="supervisors").exists()


def fetch(client, path: str, range_header: str | None = None, **extra):
    headers = {"HTTP_RANGE": range_header} if range_header else {}
    return client.get(path, **headers, **extra)


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def media_rows(action: str = "media_fetch") -> list[AccessLog]:
    return list(AccessLog.objects.filter(action=action).order_by("sequence"))


def test_whole_file_with_range_support_headers(client, fake_twilio):
    recording, data = local_recording()
    response = fetch(client, issue(client, fake_twilio, recording))
    assert response.status_code == 200
    assert body(response) == data
    assert response["Content-Type"] == "audio/wav"
    assert response["Content-Length"] == str(len(data))
    assert response["Accept-Ranges"] == "bytes"
    assert response["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=10-19", 10, 20), ("bytes=100-", 100, None), ("bytes=-50", -50, None)],
)
def test_ranges_answer_206_with_exactly_those_bytes(client, fake_twilio, header, start, end):
    recording, data = local_recording()
    response = fetch(client, issue(client, fake_twilio, recording), header)
    assert response.status_code == 206
    expected = data[start:end]
    assert body(response) == expected
    first = start if start >= 0 else len(data) + start
    assert response["Content-Range"] == f"bytes {first}-{first + len(expected) - 1}/{len(data)}"
    assert response["Content-Length"] == str(len(expected))


def test_range_past_the_end_is_416_and_audited(client, fake_twilio):
    recording, data = local_recording()
    response = fetch(client, issue(client, fake_twilio, recording), f"bytes={len(data)}-")
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{len(data)}"
    assert response.json()["error"] == "range_not_satisfiable"
    assert media_rows()[-1].outcome == "error"


@pytest.mark.parametrize(
    ("header", "status", "start", "end"),
    [
        ("bytes=" + "9" * 5000 + "-", 416, 0, 0),  # starts past the end
        ("bytes=0-" + "9" * 5000, 206, 0, None),  # ends past the end: up to the end
        ("bytes=-" + "9" * 5000, 206, 0, None),  # a suffix longer than the file: all of it
        ("bytes=" + "0" * 5000 + "10-" + "0" * 5000 + "19", 206, 10, 20),  # leading zeros
    ],
)
def test_ranges_with_thousands_of_digits_are_answered_and_audited(
    client, fake_twilio, header, status, start, end
):
    recording, data = local_recording()
    response = fetch(client, issue(client, fake_twilio, recording), header)
    assert response.status_code == status
    if status == 206:
        assert body(response) == data[start:end]
    assert len(media_rows()) == 1


@given(st.data())
@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_every_range_is_a_slice_of_the_file(client, fake_twilio, data):
    recording, content = local_recording(seconds=0.05)
    path = issue(client, fake_twilio, recording)
    start = data.draw(st.integers(0, len(content) - 1))
    last = data.draw(st.integers(start, len(content) + 10))
    response = fetch(client, path, f"bytes={start}-{last}")
    assert response.status_code == 206
    assert body(response) == content[start : last + 1]


def test_wrong_unknown_and_expired_links_are_403_and_audited(client, fake_twilio):
    recording, _ = local_recording()
    path = issue(client, fake_twilio, recording)
    link_path, token = path.split("?token=")
    other_path = issue(client, fake_twilio, local_recording()[0])
    other_token = other_path.split("?token=")[1]

    assert fetch(client, f"{link_path}?token=guess").json()["error"] == "wrong_token"
    assert fetch(client, f"{link_path}?token={other_token}").status_code == 403  # foreign token
    assert fetch(client, f"{link_path}").status_code == 403
    unknown = "/media/00000000-0000-4000-8000-000000000000?token=" + token
    assert fetch(client, unknown).json()["error"] == "unknown_link"
    MediaLink.objects.filter(recording=recording).update(expires_at=timezone.now())
    assert fetch(client, path).json()["error"] == "expired_link"

    denied = [row.reason_code for row in media_rows() if row.outcome == "denied"]
    assert denied == ["wrong_token", "wrong_token", "wrong_token", "unknown_link", "expired_link"]
    assert media_rows()[0].identity == "alice"  # the link's owner, for a link that exists


def test_seeking_is_one_row_then_one_summary_with_the_bytes(client, fake_twilio):
    recording, _ = local_recording(seconds=2)
    path = issue(client, fake_twilio, recording)
    sizes = []
    for header in ("bytes=0-", "bytes=1000-1999", "bytes=20000-20999", "bytes=-10"):
        sizes.append(len(body(fetch(client, path, header))))
    rows = media_rows()
    assert len(rows) == 1
    assert (rows[0].outcome, rows[0].reason_code) == ("allowed", "playback_started")
    link = MediaLink.objects.get()
    assert (link.fetches, link.bytes_served) == (4, sum(sizes))

    assert media_links_summarize() == 0  # not expired yet
    MediaLink.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert media_links_summarize() == 1
    assert media_links_summarize() == 0
    summary = media_rows("media_playback")[0]
    assert summary.bytes_served == sum(sizes)
    assert summary.detail["fetches"] == 4
    assert summary.link_id == str(link.link_id)
    assert chain_verify().ok


def test_head_gives_the_headers_only(client, fake_twilio):
    recording, data = local_recording()
    response = client.head(issue(client, fake_twilio, recording))
    assert response.status_code == 200
    assert response["Content-Length"] == str(len(data))
    assert response.content == b""


def test_cors_for_the_flex_origin(client, fake_twilio):
    recording, _ = local_recording()
    path = issue(client, fake_twilio, recording)
    response = fetch(client, path, "bytes=0-9", HTTP_ORIGIN=FLEX_ORIGIN)
    assert response["Access-Control-Allow-Origin"] == FLEX_ORIGIN
    assert "Content-Range" in response["Access-Control-Expose-Headers"]
    preflight = client.options(
        path, HTTP_ORIGIN=FLEX_ORIGIN, HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET"
    )
    assert "range" in preflight["Access-Control-Allow-Headers"].lower()


def test_s3_recording_through_the_portal(client, fake_twilio, s3, settings):
    settings.MEDIA_LINKS_VIA_PORTAL = True
    recording, data = s3_recording(s3, TEST_BUCKET)
    path = issue(client, fake_twilio, recording)
    assert body(fetch(client, path)) == data
    assert body(fetch(client, path, "bytes=44-99")) == data[44:100]


def test_s3_object_gone_is_404_and_s3_down_is_503(client, fake_twilio, s3, settings):
    settings.MEDIA_LINKS_VIA_PORTAL = True
    recording, _ = s3_recording(s3, TEST_BUCKET)
    path = issue(client, fake_twilio, recording)
    s3.delete_object(Bucket=TEST_BUCKET, Key=recording.media_key)
    assert fetch(client, path).status_code == 404
    settings.AWS_S3_ENDPOINT_URL = "http://127.0.0.1:1"  # nothing listens there
    response = fetch(client, path)
    assert response.status_code == 503
    assert response.json()["error"] == "storage_unavailable"
    assert [row.reason_code for row in media_rows()] == ["media_not_found", "storage_unavailable"]


def test_media_still_at_twilio_is_proxied_with_ranges(client, fake_twilio):
    recording, data = local_recording()
    recording.media_location = MediaLocation.TWILIO
    recording.save()
    fake_twilio.add_recording(recording.sid, media=data, channels=1)
    path = issue(client, fake_twilio, recording)
    assert body(fetch(client, path)) == data
    partial = fetch(client, path, "bytes=100-199")
    assert partial.status_code == 206
    assert body(partial) == data[100:200]
    assert partial["Content-Range"] == f"bytes 100-199/{len(data)}"


def test_twilio_down_while_proxying_is_503(client, fake_twilio):
    recording, data = local_recording()
    recording.media_location = MediaLocation.TWILIO
    recording.save()
    fake_twilio.add_recording(recording.sid, media=data, channels=1)
    path = issue(client, fake_twilio, recording)
    fake_twilio.fail(503, path_contains=".wav")
    assert fetch(client, path).status_code == 503
