"""The playback report (issue 14): figures per person, team and recording aggregated by the
database, the filters, denials by labelled reason, the listening estimate, drill-down links,
CSV and PDF downloads, the audit rows every view and download writes, permissions and pinned
query counts."""

from __future__ import annotations

import base64
import csv
import io
import re
import zlib
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.admin.report_selectors import ReportFilters, duration_text, playback_report
from audit.admin.reports import report_request_parse
from audit.models import AccessLog
from audit.services import access_log_append
from recordings.models import FlexWorker

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
    assert parsed.filters.since == datetime(2026, 4, 10, tzinfo=UTC)  # the default 30 days
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


def test_csv_download_has_every_group_and_is_audited(activity, staff_client):
    client = staff_client("compliance viewer", "officer")
    response = client.get(reverse(CSV), {"since": yesterday(), "by": "team"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    records = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    blue = next(record for record in records if record["key"] == "Blue")
    assert (blue["plays_allowed"], blue["denials"], blue["estimated_seconds_listened"]) == (
        "2",
        "1",
        "60",
    )
    assert blue["denials_by_reason"] == "no_matching_rule: 1"
    logged = last_staff_row()
    assert (logged.action, logged.reason_code) == ("admin_export", "playback_report_csv")
    assert logged.detail["group_by"] == "team"
    assert logged.detail["groups"] == 3


def test_csv_neutralizes_formulas(staff_client):
    row(identity="=HYPERLINK(1)", recording_sid="RE" + "1" * 32)
    response = staff_client("compliance viewer").get(reverse(CSV))
    body = b"".join(response.streaming_content).decode()
    assert '"\'=HYPERLINK(1)"' in body


def test_pdf_download_names_its_producer_filters_and_seal(activity, staff_client):
    from audit.sealer import seal_pending

    seal_pending()
    client = staff_client("compliance viewer", "officer")
    response = client.get(reverse(PDF), {"since": yesterday(), "team": "Blue"})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    content = response.content
    assert content.startswith(b"%PDF-")
    logged = last_staff_row()
    assert (logged.action, logged.reason_code) == ("admin_export", "playback_report_pdf")
    assert logged.detail["team"] == "Blue"
    text = pdf_text(content)
    assert "Produced by officer" in text
    assert f"access-log row {logged.sequence}" in text
    assert "Team: Blue" in text
    assert "Last seal: number 1" in text
    assert "Sam Taylor" in text


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
    # Figures, denials by reason, names (people, or recordings); the team's names need none.
    with django_assert_num_queries(2 if group_by == "team" else 3):
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
