"""The access log's admin pages: filters, search, cheap pagination, query counts, exports,
timelines and the rows that viewing them leaves in the log."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import timedelta
from types import SimpleNamespace
from urllib.parse import urlencode

import pytest
from celery import current_app
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit import services
from audit.admin import export_jobs, pagination
from audit.admin.export_jobs import export_access_log
from audit.models import AccessLog, AccessLogExport
from audit.services import access_log_append
from recordings.models import MediaLink, RecordingEvent

pytestmark = [pytest.mark.django_db, pytest.mark.urls("audit.tests.urls")]

LIST = "admin:audit_accesslog_changelist"
WORKER = "WK" + "1" * 32


def row(**fields) -> AccessLog:
    values = {"action": "url_provider", "outcome": "allowed", "identity": "alice"}
    values.update(fields)
    return access_log_append(**values)


def listed(response) -> list[int]:
    """The sequences listed, leaving out the staff's own ``admin_view`` rows."""
    return [
        entry.sequence
        for entry in response.context["cl"].result_list
        if not entry.identity.startswith("admin:")
    ]


@pytest.fixture
def log(recording_factory):
    """A small log: two identities, two recordings, allowed/denied, roles and a worker."""
    recording = recording_factory()
    other = recording_factory(call_sid=recording.call_sid)
    rows = SimpleNamespace(recording=recording, other=other)
    rows.a = row(identity="alice", recording_sid=recording.sid, roles=["supervisor"])
    rows.b = row(
        identity="bob",
        outcome="denied",
        reason_code="no_matching_rule",
        recording_sid=other.sid,
        worker_sid=WORKER,
        roles=["agent"],
    )
    rows.c = row(identity="alice", recording_sid=other.sid, action="media_fetch")
    return rows


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["c", "b", "a"]),
        ({"outcome__exact": "denied"}, ["b"]),
        ({"action": "media_fetch"}, ["c"]),
        ({"reason": "no_matching_rule"}, ["b"]),
        ({"identity": "alice"}, ["c", "a"]),
        ({"identity": " alice "}, ["c", "a"]),
        ({"worker": WORKER}, ["b"]),
        ({"role": "supervisor"}, ["a"]),
        ({"role": "super"}, []),
        ({"occurred": "1h"}, ["c", "b", "a"]),
        ({"q": "bob"}, ["b"]),
    ],
)
def test_filters_and_search_match_exactly(admin_client, log, params, expected):
    response = admin_client.get(reverse(LIST), params)
    assert response.status_code == 200
    assert listed(response) == [getattr(log, name).sequence for name in expected]


def test_search_by_recording_call_and_sequence(admin_client, log):
    url = reverse(LIST)
    by_recording = admin_client.get(url, {"q": log.recording.sid})
    assert listed(by_recording) == [log.a.sequence]
    # A call SID finds the rows of every recording of that call.
    by_call = admin_client.get(url, {"q": log.recording.call_sid})
    assert listed(by_call) == [log.c.sequence, log.b.sequence, log.a.sequence]
    by_sequence = admin_client.get(url, {"q": f"#{log.b.sequence}"})
    assert listed(by_sequence) == [log.b.sequence]
    assert admin_client.get(url, {"recording": log.other.sid}).status_code == 200


def test_date_range_takes_dates_and_times(admin_client, log):
    url = reverse(LIST)
    today = timezone.now().date()
    assert len(listed(admin_client.get(url, {"since": str(today), "until": str(today)}))) == 3
    tomorrow = today + timedelta(days=1)
    assert listed(admin_client.get(url, {"since": f"{tomorrow}T00:00"})) == []
    assert listed(admin_client.get(url, {"until": "2001-01-01"})) == []
    # A malformed date is named next to its field and left out; the other filters are kept.
    for bad in ({"since": "yesterday"}, {"until": "9999-12-31"}, {"since": "2026-02-30"}):
        response = admin_client.get(url, {**bad, "identity": "bob"})
        assert response.status_code == 200
        page = response.content.decode()
        assert "is not a date" in page
        assert 'aria-invalid="true"' in page
        assert listed(response) == [log.b.sequence]  # the identity filter still applies
        assert 'name="identity" value="bob"' in page
    assert admin_client.get(url, {"q": "9" * 30}).status_code == 200  # no bigint overflow


def test_opening_the_log_and_a_row_is_logged(admin_client, log):
    admin_client.get(reverse(LIST), {"identity": "bob", "q": "x"}, HTTP_USER_AGENT="officer-ua")
    entry = AccessLog.objects.order_by("-sequence").first()
    assert (entry.action, entry.outcome, entry.reason_code, entry.identity) == (
        "admin_view",
        "allowed",
        "access_log_list",
        "admin:admin",
    )
    assert entry.detail == {"filters": {"identity": "bob", "q": "x"}}
    assert entry.user_agent == "officer-ua"
    admin_client.get(reverse("admin:audit_accesslog_change", args=[log.b.pk]))
    entry = AccessLog.objects.order_by("-sequence").first()
    assert (entry.reason_code, entry.detail) == ("access_log_entry", {"entry_id": log.b.pk})


def test_the_list_never_counts_the_whole_table(admin_client, append_rows):
    append_rows(3)
    with CaptureQueriesContext(connection) as unfiltered:
        response = admin_client.get(reverse(LIST), {"activity": "all"})
    assert response.status_code == 200
    assert response.context["cl"].result_count == 4  # MAX(sequence), gapless
    selects = [q["sql"] for q in unfiltered.captured_queries if "audit_accesslog" in q["sql"]]
    assert not any("COUNT(" in sql for sql in selects)
    assert any('MAX("audit_accesslog"."sequence")' in sql for sql in selects)

    with CaptureQueriesContext(connection) as filtered:
        admin_client.get(reverse(LIST), {"outcome__exact": "denied"})
    counts = [q["sql"] for q in filtered.captured_queries if "COUNT(" in q["sql"]]
    assert counts
    assert all(f"LIMIT {pagination.COUNT_LIMIT + 1}" in sql for sql in counts)


def test_a_large_filtered_count_is_capped(admin_client, append_rows, monkeypatch):
    monkeypatch.setattr(pagination, "COUNT_LIMIT", 2)
    append_rows(8)  # four allowed
    response = admin_client.get(reverse(LIST), {"outcome__exact": "allowed"})
    assert response.context["cl"].paginator.count_capped
    assert b"more than 2 entries" in response.content


def test_changelist_and_detail_query_counts_do_not_grow_with_rows(
    admin_client, append_rows, django_assert_max_num_queries
):
    rows = append_rows(60)  # more than a page
    admin_client.get(reverse("admin:index"))  # the session's first request stamps it once
    # A fixed number, whatever the log holds: session and user; the admin_view row (savepoint,
    # lock, head, insert, release); then the count and the page (the list), or the row and its
    # content type (the detail). No query per row listed.
    with django_assert_max_num_queries(9):
        response = admin_client.get(reverse(LIST))
    assert len(response.context["cl"].result_list) == 50
    with django_assert_max_num_queries(9):
        response = admin_client.get(reverse(LIST), {"identity": "agent_3", "occurred": "24h"})
    assert response.status_code == 200
    with django_assert_max_num_queries(9):
        response = admin_client.get(reverse("admin:audit_accesslog_change", args=[rows[5].pk]))
    assert response.status_code == 200


def export_and_download(client, fmt: str, query: dict) -> tuple[AccessLogExport, bytes]:
    """Queue an export from the list's filter as the officer does, run the worker's task, then
    download the file from the exports page."""
    url = reverse("admin:audit_accesslog_export", args=[fmt])
    response = client.post(f"{url}?{urlencode(query)}")
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:audit_accesslog_exports")
    job = AccessLogExport.objects.latest("id")
    assert job.state == "queued"  # a broker holds it: the request wrote no file
    assert export_access_log(job.pk) == "done"  # what the worker runs
    job.refresh_from_db()
    page = client.get(reverse("admin:audit_accesslog_exports")).content.decode()
    download = reverse("admin:audit_accesslog_export_download", args=[job.pk])
    assert download in page
    response = client.get(download)
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="access-log-')
    content = b"".join(response.streaming_content)
    assert hashlib.sha256(content).hexdigest() == job.sha256
    return job, content


def test_export_writes_the_current_filter_as_csv_and_jsonl_in_the_background(admin_client, log):
    job, content = export_and_download(admin_client, "jsonl", {"identity": "alice"})
    records = [json.loads(line) for line in content.splitlines()]
    assert [r["sequence"] for r in records] == [log.a.sequence, log.c.sequence]  # oldest first
    assert records[0]["row_hash"] == log.a.row_hash
    assert job.rows == 2
    requested = AccessLog.objects.get(action="admin_export", reason_code="access_log_jsonl")
    assert requested.detail == {"filters": {"identity": "alice"}, "export_id": job.pk}
    assert AccessLog.objects.filter(reason_code="access_log_download").count() == 1

    row(identity="=HYPERLINK(1)", outcome="denied")
    job, content = export_and_download(admin_client, "csv", {"outcome__exact": "denied"})
    lines = list(csv.DictReader(io.StringIO(content.decode())))
    assert [line["identity"] for line in lines] == ["bob", "'=HYPERLINK(1)"]  # no formulas
    assert job.rows == 2


def test_export_refuses_a_bad_filter_an_unknown_format_and_a_get(admin_client):
    url = reverse("admin:audit_accesslog_export", args=["csv"])
    response = admin_client.post(f"{url}?since=not+a+date")
    assert response.status_code == 302
    assert not AccessLog.objects.filter(action="admin_export").exists()
    assert not AccessLogExport.objects.exists()
    unknown = reverse("admin:audit_accesslog_export", args=["xml"])
    assert admin_client.post(unknown).status_code == 404
    assert admin_client.get(url).status_code == 405  # a link cannot start an export


def test_a_failed_export_says_so_and_offers_no_file(admin_client, log, monkeypatch):
    def storage_refuses(*args, **kwargs):
        raise OSError("the bucket refused the write")

    monkeypatch.setattr(export_jobs.default_storage, "save", storage_refuses)
    url = reverse("admin:audit_accesslog_export", args=["csv"])
    admin_client.post(url)
    job = AccessLogExport.objects.get()
    assert export_access_log(job.pk) == "failed"
    job.refresh_from_db()
    assert "the bucket refused the write" in job.error
    page = admin_client.get(reverse("admin:audit_accesslog_exports")).content.decode()
    assert "failed: OSError: the bucket refused the write" in page
    download = reverse("admin:audit_accesslog_export_download", args=[job.pk])
    assert download not in page
    assert admin_client.get(download).status_code == 404


def test_an_officer_downloads_only_their_own_exports(admin_client, staff_client, log):
    url = reverse("admin:audit_accesslog_export", args=["jsonl"])
    admin_client.post(url)
    job = AccessLogExport.objects.get()
    export_access_log(job.pk)
    officer = staff_client("compliance viewer", username="olivia")
    download = reverse("admin:audit_accesslog_export_download", args=[job.pk])
    assert officer.get(download).status_code == 404
    page = officer.get(reverse("admin:audit_accesslog_exports"))
    assert list(page.context["exports"]) == []


def test_export_files_are_deleted_after_the_retention(admin_client, log, settings):
    admin_client.post(reverse("admin:audit_accesslog_export", args=["jsonl"]))
    job = AccessLogExport.objects.get()
    export_access_log(job.pk)
    job.refresh_from_db()
    assert export_jobs.default_storage.exists(job.file_name)
    soon = job.finished_at + timedelta(hours=settings.AUDIT_EXPORT_RETENTION_HOURS - 1)
    assert export_jobs.exports_expire(now=soon) == 0
    later = job.finished_at + timedelta(hours=settings.AUDIT_EXPORT_RETENTION_HOURS + 1)
    assert export_jobs.exports_expire(now=later) == 1
    assert not export_jobs.default_storage.exists(job.file_name)
    job.refresh_from_db()
    assert (job.state, job.file_name) == ("expired", "")
    download = reverse("admin:audit_accesslog_export_download", args=[job.pk])
    assert admin_client.get(download).status_code == 404
    assert "expired" in admin_client.get(reverse("admin:audit_accesslog_exports")).content.decode()


def test_in_embedded_mode_the_export_is_written_at_once(admin_client, log):
    current_app.conf.task_always_eager = True
    try:
        admin_client.post(reverse("admin:audit_accesslog_export", args=["csv"]))
    finally:
        current_app.conf.task_always_eager = False
    assert AccessLogExport.objects.get().state == "done"


def test_recording_timeline_shows_everything_in_order(admin_client, log, recording_factory):
    recording = log.recording
    RecordingEvent.objects.create(
        recording_sid=recording.sid,
        account_sid=recording.account_sid,
        recording_status="completed",
        payload={},
        received_at=timezone.now() - timedelta(hours=21),
        state="processed",
    )
    MediaLink.objects.create(
        token_hash="0" * 64,
        recording=recording,
        identity="alice",
        expires_at=timezone.now() + timedelta(minutes=5),
        fetches=3,
        bytes_served=4096,
    )
    response = admin_client.get(reverse("admin:audit_accesslog_recording", args=[recording.sid]))
    assert response.status_code == 200
    timeline = response.context["timeline"]
    kinds = [event.kind for event in timeline.events]
    assert kinds[:3] == ["recording", "callback", "recording"]  # started, callback, synced
    assert {"link", "log"} <= set(kinds)
    assert [event.at for event in timeline.events] == sorted(e.at for e in timeline.events)
    assert b"Media link issued" in response.content
    viewed = AccessLog.objects.order_by("-sequence").first()
    assert (viewed.action, viewed.reason_code, viewed.recording_sid) == (
        "admin_view",
        "recording_page",
        recording.sid,
    )
    # A SID the portal has no row for still shows its log rows; garbage is a 404.
    gone = "RE" + "f" * 32
    row(recording_sid=gone, outcome="denied", reason_code="recording_not_found")
    response = admin_client.get(reverse("admin:audit_accesslog_recording", args=[gone]))
    assert response.context["timeline"].recording is None
    assert [e.title for e in response.context["timeline"].events] == [
        "Player asked for a recording: denied",
        "Admin page viewed: allowed",  # this very view
    ]
    bad = admin_client.get(reverse("admin:audit_accesslog_recording", args=["RE123"]))
    assert bad.status_code == 404


def test_the_recording_admin_page_embeds_the_timeline(admin_client, log):
    url = reverse("admin:recordings_recording_change", args=[log.recording.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    assert b'id="recording-timeline"' in response.content
    assert AccessLog.objects.filter(
        reason_code="recording_page", recording_sid=log.recording.sid
    ).exists()


def test_identity_page_lists_what_the_person_opened(admin_client, log, recording_factory):
    row(identity="alice", recording_sid=log.recording.sid)  # opened twice
    row(identity="alice", outcome="denied", recording_sid=log.other.sid)
    response = admin_client.get(reverse("admin:audit_accesslog_identity"), {"identity": "alice"})
    assert response.status_code == 200
    activity = response.context["activity"]
    assert [(item.recording_sid, item.times) for item in activity.opened] == [
        (log.recording.sid, 2)
    ]
    assert activity.opened[0].recording == log.recording
    assert (activity.denied, activity.errors) == (1, 0)
    viewed = AccessLog.objects.order_by("-sequence").first()
    assert (viewed.reason_code, viewed.detail) == ("identity_activity", {"subject": "alice"})
    empty = admin_client.get(reverse("admin:audit_accesslog_identity"))
    assert empty.context["activity"] is None


def test_old_rows_fall_out_of_a_preset(admin_client, monkeypatch):
    times = iter([timezone.now() - timedelta(hours=2)])
    monkeypatch.setattr(services, "timezone", SimpleNamespace(now=lambda: next(times)))
    old = row(identity="early")
    monkeypatch.undo()
    recent = row(identity="late")
    response = admin_client.get(reverse(LIST), {"occurred": "1h"})
    assert listed(response) == [recent.sequence]
    response = admin_client.get(reverse(LIST), {"occurred": "24h"})
    assert listed(response) == [recent.sequence, old.sequence]
