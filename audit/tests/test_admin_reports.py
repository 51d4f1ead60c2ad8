"""The playback report (issue 14): figures per person, team and recording aggregated by the
database, the filters, denials by labelled reason, the listening estimate, drill-down links,
CSV and PDF downloads, the audit rows every view and download writes, permissions and pinned
query counts."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import re
import zlib
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from celery import current_app
from django.conf import settings
from django.db import connection
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.admin import export_jobs
from audit.admin.report_selectors import ReportFilters, duration_text, playback_report
from audit.admin.reports import report_request_parse
from audit.models import AccessLog, AccessLogExport
from audit.services import access_log_append
from recordings.models import FlexWorker, MediaLink, Recording
from recordings.playback.links import media_links_summarize, playback_ms_sent

pytestmark = [pytest.mark.django_db, pytest.mark.urls("audit.tests.urls")]

PAGE = "admin:audit_playback_report"
CSV = "admin:audit_playback_report_csv"
PDF = "admin:audit_playback_report_pdf"
SAM = "sam_40example_2Ecom"
SAM_SID = "WK" + "5" * 32
ALEX = "alex_40example_2Ecom"
ALEX_SID = "WK" + "6" * 32


def row(**fields) -> AccessLog:
    values = {"action": "url_provider", "outcome": "allowed", "reason_code": "allowed_by_rule"}
    values.update(fields)
    return access_log_append(**values)


def yesterday() -> str:
    return (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%d")


@pytest.fixture
def activity(recording_factory):
    """Sam (Team Blue) opened recording ``one`` twice and the media endpoint sent half of it
    once; Sam was denied ``two`` once; Alex (Team Green) opened ``one`` and was denied twice by
    a rule; Bob asked for a recording that does not exist; an officer's own page view."""
    for sid, identity, name, email, team in (
        (SAM_SID, SAM, "Sam Taylor", "sam@example.com", "Blue"),
        (ALEX_SID, ALEX, "Alex Kim", "alex@example.com", "Green"),
    ):
        FlexWorker.objects.create(
            sid=sid,
            workspace_sid="WS" + "0" * 32,
            friendly_name=identity,
            full_name=name,
            email=email,
            team_name=team,
        )
    one = recording_factory(duration_seconds=120, media_size=1_200_000, handled_team_names=["Blue"])
    two = recording_factory(duration_seconds=60)
    row(identity=SAM, worker_sid=SAM_SID, recording_sid=one.sid)
    row(identity=SAM, worker_sid=SAM_SID, recording_sid=one.sid)
    row(
        action="media_playback",
        reason_code="playback_summary",
        identity=SAM,
        worker_sid=SAM_SID,
        recording_sid=one.sid,
        bytes_served=600_000,
        detail={"fetches": 3},
    )
    row(
        identity=SAM,
        worker_sid=SAM_SID,
        recording_sid=two.sid,
        outcome="denied",
        reason_code="no_matching_rule",
    )
    row(identity=ALEX, recording_sid=one.sid)
    for _ in range(2):
        row(identity=ALEX, recording_sid=two.sid, outcome="denied", reason_code="denied_by_rule")
    row(
        identity="bob",
        recording_sid="RE" + "f" * 32,
        outcome="denied",
        reason_code="recording_not_found",
    )
    row(action="admin_view", identity="admin:officer", reason_code="dashboard")
    return {"one": one, "two": two}


def report(group_by: str = "person", **filters) -> dict:
    filters.setdefault("since", timezone.now() - timedelta(days=1))
    found = playback_report(filters=ReportFilters(**filters), group_by=group_by)
    return {group.key: group for group in found.groups}


# --- The figures -------------------------------------------------------------------------------


def test_by_person_counts_plays_denials_recordings_and_listening(activity):
    groups = report("person")
    assert set(groups) == {SAM, ALEX, "bob"}  # staff's own rows are not player activity
    sam = groups[SAM]
    assert (sam.plays, sam.recordings, sam.denials, sam.not_found) == (2, 1, 1, 0)
    assert sam.label == "Sam Taylor <sam@example.com>"
    assert sam.team == "Blue"
    # 600,000 of 1,200,000 bytes of a 120 s recording: about 60 s sent.
    assert sam.listened_seconds == pytest.approx(60.0)
    assert (sam.playbacks_measured, sam.bytes_served) == (1, 600_000)
    assert [(d.reason_code, d.label, d.count) for d in sam.denial_reasons] == [
        ("no_matching_rule", "no rule allows it", 1)
    ]
    alex = groups[ALEX]
    assert (alex.plays, alex.denials, alex.listened_seconds) == (1, 2, 0.0)
    assert [(d.label, d.count) for d in alex.denial_reasons] == [("a rule denies it", 2)]
    # A request for a recording that does not exist refused nobody anything.
    assert (groups["bob"].denials, groups["bob"].not_found) == (0, 1)
    assert sam.first_at <= sam.last_at


def test_listening_is_capped_at_the_duration_and_unknown_without_a_size(recording_factory):
    whole = recording_factory(duration_seconds=30, media_size=1000)
    sizeless = recording_factory(duration_seconds=30)
    for recording, sent in ((whole, 5000), (sizeless, 500)):
        row(
            action="media_playback",
            reason_code="playback_summary",
            identity=SAM,
            recording_sid=recording.sid,
            bytes_served=sent,
        )
    groups = report("recording")
    assert groups[whole.sid].listened_seconds == pytest.approx(30.0)  # re-fetched ranges
    assert groups[sizeless.sid].listened_seconds == 0.0
    assert groups[sizeless.sid].playbacks_measured == 1


def test_summaries_keep_the_seconds_sent_and_the_report_sums_them(recording_factory):
    """The summary of a link keeps the seconds its bytes amount to; the report sums that
    figure, even once the recording's size is no longer known."""
    recording = recording_factory(duration_seconds=120, media_size=1_200_000)
    MediaLink.objects.create(
        token_hash="1" * 64,
        recording=recording,
        identity=SAM,
        expires_at=timezone.now() - timedelta(seconds=1),
        fetches=2,
        bytes_served=600_000,
    )
    assert media_links_summarize() == 1
    summary = AccessLog.objects.get(action="media_playback")
    assert summary.detail["audio_ms_sent"] == 60_000
    Recording.objects.filter(pk=recording.pk).update(media_size=None)
    assert report()[SAM].listened_seconds == 60.0
    assert playback_ms_sent(bytes_sent=10, recording=Recording(duration_seconds=5)) is None
    capped = Recording(duration_seconds=5, media_size=100)
    assert playback_ms_sent(bytes_sent=1000, recording=capped) == 5000
    assert playback_ms_sent(bytes_sent=1, recording=capped) == 50


def test_by_team_uses_the_listeners_team_from_the_directory(activity):
    groups = report("team")
    assert set(groups) == {"Blue", "Green", ""}
    assert (groups["Blue"].plays, groups["Blue"].denials, groups["Blue"].people) == (2, 1, 1)
    assert groups["Green"].denial_reasons[0].count == 2
    assert groups[""].label == "(no team known)"


def test_by_recording_counts_people_and_names_the_handling_team(activity):
    groups = report("recording")
    one = groups[activity["one"].sid]
    assert (one.plays, one.people, one.recordings) == (3, 2, 1)
    assert one.team == "Blue"
    assert one.recording == activity["one"]
    assert groups[activity["two"].sid].denials == 3


def test_filters_person_team_recording_and_period(activity):
    assert set(report(person="sam@example.com")) == {SAM}
    assert set(report(person="Alex Kim")) == {ALEX}
    assert set(report(person=SAM_SID)) == {SAM}
    assert set(report(team="green")) == {ALEX}
    assert set(report(recording_sid=activity["two"].sid)) == {SAM, ALEX}
    tomorrow = timezone.now() + timedelta(days=1)
    assert report(since=tomorrow) == {}
    assert report(until=timezone.now() - timedelta(hours=1)) == {}


def test_drill_down_links_filter_the_access_log(activity):
    sam = report("person")[SAM]
    link = urlsplit(sam.log_link)
    assert link.path == reverse("admin:audit_accesslog_changelist")
    assert parse_qs(link.query)["identity"] == [SAM]
    denial = parse_qs(urlsplit(sam.denial_reasons[0].log_link).query)
    assert denial["reason"] == ["no_matching_rule"]
    assert denial["outcome__exact"] == ["denied"]


def test_the_limit_truncates(activity):
    found = playback_report(
        filters=ReportFilters(since=timezone.now() - timedelta(days=1)), group_by="person", limit=1
    )
    assert found.truncated
    assert [group.key for group in found.groups] == [SAM]


def test_query_parsing_names_bad_fields_and_keeps_the_others():
    now = datetime(2026, 5, 10, 15, 30, tzinfo=UTC)
    parsed = report_request_parse(
        query=QueryDict("since=nope&person=sam&recording=RE123&by=bogus"), now=now
    )
    assert set(parsed.errors) == {"since", "recording"}
    # The default: the dashboard's last 30 days, up to now.
    assert parsed.filters.since == datetime(2026, 4, 10, 15, 30, tzinfo=UTC)
    assert parsed.filters.person == "sam"
    assert parsed.filters.recording_sid == ""
    assert parsed.group_by == "person"
    backwards = report_request_parse(query=QueryDict("since=2026-05-02&until=2026-05-01"), now=now)
    assert "until" in backwards.errors
    assert backwards.filters.until is None
    day = report_request_parse(query=QueryDict("since=2026-05-01&until=2026-05-01"), now=now)
    assert day.filters.until == datetime(2026, 5, 2, tzinfo=UTC)
    assert not day.errors


def test_duration_text():
    assert [duration_text(s) for s in (44.6, 200, 3725)] == [
        "45 s",
        "3 min 20 s",
        "1 h 02 min 05 s",
    ]


# --- The page and downloads --------------------------------------------------------------------


def last_staff_row() -> AccessLog:
    return AccessLog.objects.filter(identity__startswith="admin:").order_by("-sequence").first()


def test_page_shows_the_groups_and_is_audited(activity, staff_client):
    client = staff_client("compliance viewer", "officer")
    response = client.get(reverse(PAGE), {"since": yesterday(), "person": "sam@example.com"})
    assert response.status_code == 200
    text = response.content.decode()
    assert "Sam Taylor &lt;sam@example.com&gt;" in text
    assert "1 x no rule allows it" in text
    assert "1 min 00 s" in text
    logged = last_staff_row()
    assert (logged.action, logged.reason_code, logged.identity) == (
        "admin_view",
        "playback_report",
        "admin:officer",
    )
    assert logged.detail["person"] == "sam@example.com"
    assert logged.detail["group_by"] == "person"


def test_page_names_a_bad_field(staff_client):
    response = staff_client("compliance viewer").get(reverse(PAGE), {"since": "31/02"})
    assert response.status_code == 200
    assert "is not a date" in response.content.decode()


@pytest.fixture
def eager():
    """Export jobs written at once, as in embedded mode (no broker)."""
    current_app.conf.task_always_eager = True
    yield
    current_app.conf.task_always_eager = False


def exported(client, name: str, query: dict[str, str]) -> tuple[AccessLogExport, bytes]:
    """Ask for the report's file as the page's button does, follow the job to the exports
    page and download it there; answers the job and the file's bytes."""
    response = client.post(reverse(name) + "?" + urlencode(query))
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:audit_accesslog_exports")
    job = AccessLogExport.objects.order_by("-pk").first()
    assert (job.kind, job.state) == ("playback_report", "done"), job.error
    page = client.get(reverse("admin:audit_accesslog_exports")).content.decode()
    assert "playback report" in page
    download = client.get(reverse("admin:audit_accesslog_export_download", args=[job.pk]))
    assert download.status_code == 200
    content = b"".join(download.streaming_content)
    assert hashlib.sha256(content).hexdigest() == job.sha256
    assert f"playback-report-{job.pk}." in download["Content-Disposition"]
    return job, content


def staff_rows(reason: str) -> list[AccessLog]:
    return list(AccessLog.objects.filter(reason_code=reason).order_by("sequence"))


def test_csv_export_has_every_group_and_is_audited(activity, staff_client, eager):
    client = staff_client("compliance viewer", "officer")
    job, content = exported(client, CSV, {"since": yesterday(), "by": "team"})
    assert job.format == "csv"
    records = list(csv.DictReader(io.StringIO(content.decode())))
    assert job.rows == len(records) == 3
    blue = next(record for record in records if record["key"] == "Blue")
    assert (blue["plays_allowed"], blue["denials"], blue["estimated_seconds_listened"]) == (
        "2",
        "1",
        "60",
    )
    assert blue["denials_by_reason"] == "no_matching_rule: 1"
    (asked,) = staff_rows("playback_report_csv")
    assert (asked.action, asked.identity) == ("admin_export", "admin:officer")
    assert (asked.detail["group_by"], asked.detail["export_id"]) == ("team", job.pk)
    assert job.audit_sequence == asked.sequence
    (downloaded,) = staff_rows("playback_report_download")
    assert (downloaded.action, downloaded.detail["export_id"]) == ("admin_export", job.pk)
    assert downloaded.detail["sha256"] == job.sha256


def test_csv_neutralizes_formulas(staff_client, eager):
    row(identity="=HYPERLINK(1)", recording_sid="RE" + "1" * 32)
    _, content = exported(staff_client("compliance viewer"), CSV, {})
    assert '"\'=HYPERLINK(1)"' in content.decode()


def test_pdf_export_names_its_producer_filters_and_seal(activity, staff_client, eager):
    from audit.sealer import seal_pending

    seal_pending()
    client = staff_client("compliance viewer", "officer")
    job, content = exported(client, PDF, {"since": yesterday(), "team": "Blue"})
    assert (job.format, job.rows) == ("pdf", 1)
    assert content.startswith(b"%PDF-")
    (asked,) = staff_rows("playback_report_pdf")
    assert asked.detail["team"] == "Blue"
    text = pdf_text(content)
    assert "Produced by officer" in text
    assert f"access-log row {asked.sequence}" in text
    assert "Team: Blue" in text
    assert "Last seal: number 1" in text
    assert "Sam Taylor" in text


def test_the_job_reads_the_period_as_of_the_request(activity, staff_client):
    """Queued without a "from" date, the job covers the 30 days before the request, as the
    page showed them, whenever it runs."""
    client = staff_client("compliance viewer")
    assert client.post(reverse(CSV)).status_code == 302
    job = AccessLogExport.objects.get()
    assert job.state == "queued"
    assert export_jobs.export_run(job_id=job.pk).rows == 3
    # Asked for 40 days from now: the 30 days before that hold none of today's activity.
    again = AccessLogExport.objects.create(
        kind="playback_report",
        requested_by=job.requested_by,
        query=job.query,
        format="csv",
        requested_at=timezone.now() + timedelta(days=40),
    )
    assert export_jobs.export_run(job_id=again.pk).rows == 0


def test_a_report_with_a_bad_field_is_not_queued(staff_client, eager):
    client = staff_client("compliance viewer")
    response = client.post(reverse(PDF) + "?since=31/02&person=sam")
    assert response.status_code == 302
    assert response["Location"] == reverse(PAGE) + "?since=31%2F02&person=sam"
    assert not AccessLogExport.objects.exists()
    assert not AccessLog.objects.filter(reason_code="playback_report_pdf").exists()


def test_a_report_job_that_cannot_be_written_fails_visibly(staff_client):
    job = AccessLogExport.objects.create(
        kind="playback_report", requested_by="officer", query="by=team", format="xlsx"
    )
    job = export_jobs.export_run(job_id=job.pk)
    assert job.state == "failed"
    assert "csv or pdf, not 'xlsx'" in job.error
    assert not job.file_name


@pytest.mark.parametrize("name", [CSV, PDF])
def test_exports_are_posted(name, staff_client):
    assert staff_client("compliance viewer").get(reverse(name)).status_code == 405
    assert not AccessLogExport.objects.exists()


def test_report_files_expire_like_every_export(activity, staff_client, eager):
    client = staff_client("compliance viewer")
    job, _ = exported(client, CSV, {"since": yesterday()})
    later = job.finished_at + timedelta(hours=settings.AUDIT_EXPORT_RETENTION_HOURS, seconds=1)
    assert export_jobs.exports_expire(now=later) == 1
    job.refresh_from_db()
    assert (job.state, job.file_name) == ("expired", "")
    download = reverse("admin:audit_accesslog_export_download", args=[job.pk])
    assert client.get(download).status_code == 404


def test_another_officers_report_is_not_theirs_to_download(activity, staff_client, eager):
    job, _ = exported(staff_client("compliance viewer", "officer"), CSV, {})
    other = staff_client("compliance viewer", "other")
    download = reverse("admin:audit_accesslog_export_download", args=[job.pk])
    assert other.get(download).status_code == 404


def pdf_text(content: bytes) -> str:
    """The words a PDF shows, read from ReportLab's page streams (ASCII85, then Flate) and
    their text operators, so the test needs no PDF reader of its own: ``(text) Tj``."""
    words: list[str] = []
    for data in re.findall(rb"stream\r?\n(.*?)endstream", content, flags=re.S):
        body = zlib.decompress(base64.a85decode(data.strip().removesuffix(b"~>")))
        for text in re.findall(rb"\(((?:[^()\\]|\\.)*)\) Tj", body):
            words.append(re.sub(rb"\\(.)", rb"\1", text).decode("latin-1"))
    return " ".join(" ".join(words).split())


@pytest.mark.parametrize("name", [PAGE, CSV, PDF])
def test_without_the_log_permission_403(name, staff_client):
    client = staff_client(None)
    assert client.get(reverse(name)).status_code == 403
    assert not AccessLog.objects.filter(reason_code__startswith="playback_report").exists()


@pytest.mark.parametrize("name", [PAGE, CSV, PDF])
def test_anonymous_goes_to_the_login(name, client):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert "login" in response["Location"]


@pytest.mark.urls("portal.urls")  # the index links pages outside the admin too
def test_the_index_links_the_report(staff_client):
    response = staff_client("compliance viewer").get(reverse("admin:index"))
    assert reverse(PAGE) in response.content.decode()


# --- Query counts --------------------------------------------------------------------------------


def more_activity(count: int) -> None:
    for index in range(count):
        sid = "RE" + f"{index:032x}"
        row(identity=f"agent_{index}", recording_sid=sid)
        row(
            identity=f"agent_{index}",
            recording_sid=sid,
            outcome="denied",
            reason_code="no_matching_rule",
        )
        row(
            action="media_playback",
            reason_code="playback_summary",
            identity=f"agent_{index}",
            recording_sid=sid,
            bytes_served=100,
        )


@pytest.mark.parametrize("group_by", ["person", "team", "recording"])
def test_the_report_costs_three_queries_however_many_rows(
    activity, group_by, django_assert_num_queries
):
    more_activity(5)
    filters = ReportFilters(since=timezone.now() - timedelta(days=1))
    # Figures, denials by reason, names (people, or recordings; a team's need none, but its
    # grouping reads the directory's teams once). Four more: the transaction's savepoint, its
    # release, the statement that sets JIT and memory (PostgreSQL) and the look for rolled-up days
    # (none here: the report reads the log).
    with django_assert_num_queries(3 + 4):
        found = playback_report(filters=filters, group_by=group_by)
    assert len(found.groups) >= 3


def test_the_page_costs_the_same_queries_for_more_groups(activity, staff_client):
    client = staff_client("compliance viewer")
    url = reverse(PAGE)

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        return len(queries)

    count()  # warm the session and permission caches
    before = count()
    more_activity(20)
    assert count() == before
