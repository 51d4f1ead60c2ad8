"""The officer finds people the way they know them (issue 13) and the log speaks plainly (issue
14): search by e-mail, name, worker SID or part of an identity, the person beside Flex's
identity in the list, the identity page and the exports, the player/staff activity filter, the
identity page's date range and its count of denials, and the dashboard naming who was denied."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.admin import selectors
from audit.admin.export_jobs import export_access_log
from audit.models import AccessLog, AccessLogExport
from audit.people import (
    flex_identity_decode,
    flex_identity_encode,
    people_describe,
    people_match,
)
from audit.services import access_log_append
from audit.tests.helpers import command_output
from recordings.models import FlexWorker

pytestmark = [pytest.mark.django_db, pytest.mark.urls("audit.tests.urls")]

LIST = "admin:audit_accesslog_changelist"
IDENTITY_PAGE = "admin:audit_accesslog_identity"
SAM = "sam_40example_2Ecom"
SAM_SID = "WK" + "5" * 32
ALEX = "alex_40example_2Ecom"


def row(**fields) -> AccessLog:
    values = {"action": "url_provider", "outcome": "allowed", "reason_code": "allowed_by_rule"}
    values.update(fields)
    return access_log_append(**values)


def listed(response) -> list[int]:
    return [entry.sequence for entry in response.context["cl"].result_list]


@pytest.fixture
def people(recording_factory):
    """Sam (in the directory), Alex (not in it), and an officer's own page view."""
    FlexWorker.objects.create(
        sid=SAM_SID,
        workspace_sid="WS" + "0" * 32,
        friendly_name=SAM,
        full_name="Sam Taylor",
        email="sam@example.com",
        team_name="Blue",
    )
    recording = recording_factory()
    return {
        "recording": recording,
        "sam": row(identity=SAM, worker_sid=SAM_SID, recording_sid=recording.sid),
        "alex": row(identity=ALEX, recording_sid=recording.sid),
        "bob": row(identity="bob", outcome="denied", reason_code="no_matching_rule"),
        "staff": row(action="admin_view", identity="admin:officer", reason_code="dashboard"),
    }


# --- Flex's identity encoding ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "identity"),
    [
        ("sam@example.com", "sam_40example_2Ecom"),
        ("user@example-com", "user_40example_2Dcom"),
        ("jürgen@x.de", "j_C3_BCrgen_40x_2Ede"),
        ("plain", "plain"),
    ],
)
def test_flex_identity_encoding_round_trips(text, identity):
    assert flex_identity_encode(text) == identity
    assert flex_identity_decode(identity) == (text if text != identity else "")


@pytest.mark.parametrize("identity", ["john_doe", "ab_cd_ef", "a_0A", "", "admin:officer"])
def test_what_is_not_flex_encoding_is_not_decoded(identity):
    assert flex_identity_decode(identity) == ""


def test_people_match_without_and_with_the_directory(people):
    # Without a directory entry the encoded form still matches.
    assert "alex_40example_2Ecom" in people_match(term="alex@example.com").identities
    assert "alex_40example_2Ecom" in people_match(term="Alex@Example.com").identities
    for term in ("sam@example.com", "Sam Taylor", "taylor", SAM_SID, "sam_40ex"):
        found = people_match(term=term)
        assert SAM in found.identities, term
    assert people_match(term="  ").identities == set()
    described = people_describe(identities=[SAM, ALEX, "bob"])
    assert described[SAM].label == "Sam Taylor <sam@example.com>"
    assert described[ALEX].label == "alex@example.com"
    assert "bob" not in described


# --- The access log ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("sam@example.com", ["sam"]),
        ("SAM@example.com", ["sam"]),
        ("Sam Taylor", ["sam"]),
        ("taylor", ["sam"]),
        (SAM_SID, ["sam"]),
        ("sam_40exa", ["sam"]),  # part of an identity the directory knows
        ("alex@example.com", ["alex"]),  # no directory entry: Flex's encoding
        ("bob", ["bob"]),
        ("nobody@example.com", []),
    ],
)
def test_the_log_search_finds_people_the_way_officers_know_them(
    admin_client, people, term, expected
):
    response = admin_client.get(reverse(LIST), {"q": term})
    assert response.status_code == 200
    assert listed(response) == [people[name].sequence for name in expected]


def test_the_list_shows_the_person_beside_the_identity_and_labels(admin_client, people):
    page = admin_client.get(reverse(LIST)).content.decode()
    assert "Sam Taylor &lt;sam@example.com&gt;" in page
    assert "alex@example.com" in page
    assert "no rule allows it" in page
    assert "Player asked for a recording" in page
    assert " UTC</time>" in page
    assert 'class="portal-time"' in page


def test_the_activity_filter_keeps_staff_apart(admin_client, people):
    url = reverse(LIST)
    player = [people[name].sequence for name in ("bob", "alex", "sam")]
    assert listed(admin_client.get(url)) == player  # the default: players only
    assert listed(admin_client.get(url, {"activity": "player"})) == player
    staff = listed(admin_client.get(url, {"activity": "staff"}))
    assert people["staff"].sequence in staff
    assert not set(player) & set(staff)
    everything = listed(admin_client.get(url, {"activity": "all"}))
    assert set(player) | {people["staff"].sequence} <= set(everything)
    page = admin_client.get(url, {"activity": "staff"}).content.decode()
    assert "Staff and system" in page


def test_every_action_and_reason_is_offered_and_an_old_code_shows_as_itself(admin_client):
    row(action="url_provider", outcome="denied", reason_code="a_code_from_2019", identity="old")
    response = admin_client.get(reverse(LIST), {"reason": "a_code_from_2019"})
    page = response.content.decode()
    assert listed(response)
    assert "a_code_from_2019" in page
    assert '<option value="legal_hold"' in page
    assert '<option value="retention_delete"' in page
    assert '<option value="no_matching_rule"' in page


def test_a_bad_date_on_an_export_is_refused_and_the_filters_kept(admin_client, people):
    url = reverse("admin:audit_accesslog_export", args=["csv"])
    response = admin_client.post(f"{url}?since=yesterday&q=bob")
    assert response.status_code == 302
    assert "since=yesterday" in response["Location"]
    assert "q=bob" in response["Location"]
    assert not AccessLogExport.objects.exists()


def test_list_query_count_is_pinned_with_people(
    admin_client, people, django_assert_max_num_queries
):
    for index in range(60):
        row(identity=f"agent_{index}_40example_2Ecom")
    admin_client.get(reverse("admin:index"))
    # session, user, the admin_view row (5), the count, the page, one directory lookup.
    with django_assert_max_num_queries(10):
        response = admin_client.get(reverse(LIST))
    assert len(listed(response)) == 50
    with django_assert_max_num_queries(12):
        response = admin_client.get(reverse(LIST), {"q": "Sam Taylor"})
    assert listed(response) == [people["sam"].sequence]


# --- Exports -------------------------------------------------------------------------------


def test_admin_exports_match_a_person_and_carry_who_they_are(admin_client, people):
    url = reverse("admin:audit_accesslog_export", args=["csv"])
    admin_client.post(f"{url}?q=sam%40example.com")
    job = AccessLogExport.objects.latest("id")
    assert export_access_log(job.pk) == "done"
    download = reverse("admin:audit_accesslog_export_download", args=[job.pk])
    text = b"".join(admin_client.get(download).streaming_content).decode()
    records = list(csv.DictReader(io.StringIO(text)))
    assert [(r["identity"], r["identity_email"], r["agent_name"]) for r in records] == [
        (SAM, "sam@example.com", "Sam Taylor")
    ]
    header = text.splitlines()[0].split(",")
    assert header[:2] == ["sequence", "occurred_at"]
    assert header[-4:] == ["prev_hash", "row_hash", "identity_email", "agent_name"]


def test_the_export_command_takes_a_person(people):
    lines = command_output("export_audit_log", "--format", "jsonl", "--person", "Sam Taylor")
    records = [json.loads(line) for line in lines.splitlines()]
    assert [(r["identity"], r["identity_email"], r["agent_name"]) for r in records] == [
        (SAM, "sam@example.com", "Sam Taylor")
    ]
    alex = command_output("export_audit_log", "--format", "csv", "--person", "alex@example.com")
    rows = list(csv.DictReader(io.StringIO(alex)))
    assert [(r["identity"], r["identity_email"], r["agent_name"]) for r in rows] == [
        (ALEX, "alex@example.com", "")
    ]


# --- The identity page ---------------------------------------------------------------------


def test_the_identity_page_takes_an_email_and_a_date_range(admin_client, people):
    url = reverse(IDENTITY_PAGE)
    response = admin_client.get(url, {"identity": "sam@example.com"})
    assert response.status_code == 200
    activity = response.context["activity"]
    assert [item.recording_sid for item in activity.opened] == [people["recording"].sid]
    page = response.content.decode()
    assert "Sam Taylor" in page
    assert SAM_SID in page
    assert "1 recording opened" in page
    tomorrow = (timezone.now() + timedelta(days=1)).date()
    later = admin_client.get(url, {"identity": "sam@example.com", "since": str(tomorrow)})
    assert later.context["activity"].opened == []
    bad = admin_client.get(url, {"identity": "sam@example.com", "since": "yesterday"})
    assert bad.status_code == 200
    assert "is not a date" in bad.content.decode()
    assert len(bad.context["activity"].opened) == 1  # the bad bound is left out, named


def test_the_identity_page_does_not_count_a_404_as_a_denial(admin_client, people):
    row(identity=SAM, outcome="denied", reason_code="recording_not_found")
    row(identity=SAM, outcome="denied", reason_code="no_matching_rule")
    activity = admin_client.get(reverse(IDENTITY_PAGE), {"identity": SAM}).context["activity"]
    assert (activity.denied, activity.not_found, activity.errors) == (1, 1, 0)


def test_identity_page_query_count_and_permissions(
    admin_client, staff_client, people, django_assert_max_num_queries
):
    admin_client.get(reverse("admin:index"))
    with django_assert_max_num_queries(14):
        assert admin_client.get(reverse(IDENTITY_PAGE), {"identity": "Sam"}).status_code == 200
    nobody = staff_client(None)
    assert nobody.get(reverse(IDENTITY_PAGE), {"identity": SAM}).status_code == 403
    assert nobody.get(reverse(LIST), {"q": SAM}).status_code == 403
    viewer = staff_client("compliance viewer")
    assert viewer.get(reverse(IDENTITY_PAGE), {"identity": SAM}).status_code == 200


# --- The dashboard -------------------------------------------------------------------------


def test_the_dashboard_counts_activity_apart_and_names_who_was_denied(
    admin_client, people, django_assert_max_num_queries
):
    for _ in range(2):
        row(identity=SAM, outcome="denied", reason_code="no_matching_rule")
    row(identity=SAM, outcome="denied", reason_code="recording_not_found")  # not a refusal
    data = selectors.dashboard(now=timezone.now())
    assert data.activity.player >= 5
    assert data.activity.staff >= 1
    denied = {entry.identity: entry for entry in data.denied}
    assert denied[SAM].denials == 2
    assert denied[SAM].reason == "no rule allows it"
    assert denied[SAM].person.name == "Sam Taylor"
    assert f"identity={SAM}" in denied[SAM].link
    assert "outcome__exact=denied" in denied[SAM].link
    admin_client.get(reverse("admin:index"))
    with django_assert_max_num_queries(24):
        page = admin_client.get(reverse("admin:audit_accesslog_dashboard")).content.decode()
    assert "Sam Taylor &lt;sam@example.com&gt;" in page
    assert 'id="activity-counts"' in page


def test_the_bulk_listening_alert_names_the_person(people, settings, recording_factory):
    settings.AUDIT_ALERT_BULK_ACCESS_PER_HOUR = 2
    for _ in range(3):
        row(identity=SAM, recording_sid=recording_factory().sid)
    alerts = selectors.dashboard(now=timezone.now()).alerts
    bulk = [alert for alert in alerts if alert.title.startswith("Bulk listening")]
    assert bulk[0].title == f"Bulk listening: {SAM} (Sam Taylor <sam@example.com>)"
    assert " UTC" in bulk[0].detail
    assert "identity=" + SAM in bulk[0].link
