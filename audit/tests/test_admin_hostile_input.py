"""Nothing a caller sends breaks an officer's page or export (issue 17, items 1, 2 and the admin
part of 6): odd values that reached the access log through url_provider, line breaks in the CSV
exports, NUL in admin parameters and impossible dates in the recordings list's drill-down."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from django.test import Client
from django.urls import reverse

from audit.admin.export_jobs import export_access_log
from audit.admin.links import recording_timeline_link
from audit.export import COLUMNS, EXPORT_COLUMNS, csv_lines
from audit.models import AccessLog, AccessLogExport
from audit.services import access_log_append
from audit.tests.helpers import command_output
from portal.admin_site import NUL_REFUSED
from recordings.tests.playback_fixtures import URL_PROVIDER

pytestmark = pytest.mark.django_db

NOT_A_SID = "x/y"
HTML_SID = "<b>RE</b>"
FORMULA = "=cmd|' /C calc'!A0"
LINE_BREAKS = ["\r", "\n", "\r\n", "\u2028", "\x00"]
# Every column of the export that holds text (``roles`` and ``detail`` go out as JSON).
TEXT_COLUMNS = [
    "reason_code",
    "identity",
    "realm_user_id",
    "worker_sid",
    "roles",
    "recording_sid",
    "rule_name",
    "user_agent",
    "request_id",
    "link_id",
    "detail",
]
# What the spreadsheet guard leaves in front of a cell a spreadsheet would run as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def player_asks_for(recording_sid: str) -> None:
    """The anonymous request of the issue, through the real url_provider view."""
    response = Client().get(URL_PROVIDER, {"recording_sid": recording_sid})
    assert response.status_code == 400, response.content


# --- 1. A recording SID that is not one is shown as text, never reversed --------------------


def test_the_access_log_lists_a_caller_sent_sid_as_escaped_text(staff_client):
    player_asks_for(NOT_A_SID)
    player_asks_for(HTML_SID)
    # url_provider keeps no malformed value as a recording SID (cut to the column's size, one
    # could read as a real SID); rows written before that, or by other writers, still may hold
    # anything, and the pages must survive them.
    assert set(AccessLog.objects.values_list("recording_sid", flat=True)) == {""}
    for sid in (NOT_A_SID, HTML_SID):
        access_log_append(action="url_provider", outcome="error", recording_sid=sid)
    officer = staff_client("superuser")
    response = officer.get(reverse("admin:audit_accesslog_changelist"))
    assert response.status_code == 200
    page = response.content.decode()
    assert f'<td class="field-recording_link">{NOT_A_SID}</td>' in page
    assert "&lt;b&gt;RE&lt;/b&gt;" in page
    assert HTML_SID not in page
    for row in AccessLog.objects.filter(recording_sid__in=[NOT_A_SID, HTML_SID]):
        detail = officer.get(reverse("admin:audit_accesslog_change", args=[row.pk]))
        assert detail.status_code == 200
        assert HTML_SID not in detail.content.decode()


def test_a_real_sid_is_still_linked_to_its_timeline():
    sid = "RE" + "a" * 32
    link = recording_timeline_link(sid)
    assert link == f'<a href="/admin/audit/accesslog/recording/{sid}/">{sid}</a>'
    assert recording_timeline_link("RE" + "a" * 32 + "\n") == "RE" + "a" * 32 + "\n"


@pytest.fixture
def opened_odd_sids():
    """``allowed`` url_provider rows naming SIDs that are not SIDs, opened by two identities
    (what the identity page and the dashboard's "opened by many" list link)."""
    for identity in ("alice", "bob"):
        for sid in (NOT_A_SID, HTML_SID, ""):
            access_log_append(
                action="url_provider", outcome="allowed", identity=identity, recording_sid=sid
            )


def test_identity_page_and_dashboard_show_odd_sids_as_text(staff_client, opened_odd_sids):
    officer = staff_client("superuser")
    identity = officer.get(reverse("admin:audit_accesslog_identity"), {"identity": "alice"})
    dashboard = officer.get(reverse("admin:audit_accesslog_dashboard"))
    for response in (identity, dashboard):
        assert response.status_code == 200
        page = response.content.decode()
        assert f"<td>{NOT_A_SID}</td>" in page
        assert "<td>&lt;b&gt;RE&lt;/b&gt;</td>" in page
        assert HTML_SID not in page


# --- 2. Line breaks never split a record of the CSV exports ---------------------------------


def export_row(sequence: int, column: str, value: str) -> tuple:
    """A row as the exports read it (``values_list(*COLUMNS)``), ``value`` in ``column``."""
    record = dict.fromkeys(COLUMNS, "")
    record.update(
        sequence=sequence,
        occurred_at=datetime(2026, 3, 1, tzinfo=UTC),
        action="url_provider",
        outcome="denied",
        roles=[],
        detail={},
        client_ip=None,
        bytes_served=None,
    )
    if column == "roles":
        record[column] = [value]
    elif column == "detail":
        record[column] = {"v": value}
    else:
        record[column] = value
    return tuple(record[name] for name in COLUMNS)


def hostile_values() -> list[str]:
    """The issue's value for each line break, in the middle of a cell and at its start."""
    return [
        value for brk in LINE_BREAKS for value in (f"x{brk}{FORMULA}", f"{brk}{FORMULA}", f"a{brk}")
    ]


@pytest.mark.parametrize("spreadsheet_safe", [False, True])
@pytest.mark.parametrize("column", TEXT_COLUMNS)
def test_csv_reads_back_one_record_per_row(column, spreadsheet_safe):
    values = hostile_values()
    rows = [export_row(number, column, value) for number, value in enumerate(values, 1)]
    text = "".join(csv_lines(rows, spreadsheet_safe=spreadsheet_safe))
    records = list(csv.reader(io.StringIO(text, newline="")))
    assert len(records) == len(values) + 1
    assert records[0] == list(COLUMNS)
    index = COLUMNS.index(column)
    for value, record in zip(values, records[1:], strict=True):
        assert len(record) == len(COLUMNS)
        cell = record[index]
        if column in ("roles", "detail"):
            assert "\r" not in cell  # JSON escapes it
            assert "\n" not in cell
            continue
        if spreadsheet_safe and value.startswith(FORMULA_STARTS):
            assert cell == "'" + value
        else:
            assert cell == value
        if spreadsheet_safe:
            assert not any(c.startswith(FORMULA_STARTS) for c in record)


def test_plain_rows_keep_their_minimal_quoting():
    row = export_row(1, "user_agent", 'quote " and, comma')
    lines = list(csv_lines([row]))
    assert lines[1].startswith("1,2026-03-01T00:00:00")
    assert '"quote "" and, comma"' in lines[1]


@pytest.fixture
def hostile_log():
    """The issue's request through url_provider (audited without the malformed SID), its value
    as an older row held it, then a row with each line break in every text column (NUL is
    stored as U+FFFD: PostgreSQL refuses it in text)."""
    player_asks_for(f"x\r{FORMULA}")
    access_log_append(
        action="url_provider", outcome="error", recording_sid=f"x\r{FORMULA}"[:34]
    )
    for brk in LINE_BREAKS:
        value = f"x{brk}{FORMULA}"[:30]
        access_log_append(
            action="url_provider",
            outcome="denied",
            reason_code="no_matching_rule",
            identity=value,
            realm_user_id=value,
            worker_sid=value,
            roles=[value],
            recording_sid=value,
            rule_name=value,
            user_agent=value,
            request_id=value,
            link_id=value,
            detail={"value": value.replace("\x00", "\ufffd")},  # refused in JSON
        )
    return AccessLog.objects.count()


def read_csv(text: str) -> list[list[str]]:
    records = list(csv.reader(io.StringIO(text, newline="")))
    assert records[0] == list(EXPORT_COLUMNS)
    return records[1:]


def assert_one_record_per_row(records: list[list[str]], rows: int) -> None:
    assert len(records) == rows
    # The log's columns in their order, then who the identity is (audit.export.PERSON_COLUMNS).
    assert all(len(record) == len(EXPORT_COLUMNS) for record in records)
    recording = COLUMNS.index("recording_sid")
    assert records[0][recording] == ""  # the request itself: no malformed SID kept
    assert records[1][recording] == f"x\r{FORMULA}"[:34]
    stored = {f"x{brk}{FORMULA}"[:30].replace("\x00", "\ufffd") for brk in LINE_BREAKS}
    assert stored <= {record[recording] for record in records}


def test_admin_csv_export_keeps_each_row_one_record(staff_client, hostile_log):
    officer = staff_client("superuser")
    officer.post(reverse("admin:audit_accesslog_export", args=["csv"]))
    job = AccessLogExport.objects.get()
    assert export_access_log(job.pk) == "done"  # what the worker runs
    response = officer.get(reverse("admin:audit_accesslog_export_download", args=[job.pk]))
    assert response.status_code == 200
    records = read_csv(b"".join(response.streaming_content).decode())
    assert_one_record_per_row(records[:hostile_log], hostile_log)
    assert not any(cell.startswith(FORMULA_STARTS) for record in records for cell in record)


def test_export_command_csv_keeps_each_row_one_record(hostile_log):
    records = read_csv(command_output("export_audit_log", "--format", "csv"))
    assert_one_record_per_row(records, hostile_log)


# --- 6. NUL in admin parameters, impossible dates in the drill-down -------------------------

NUL = quote("\x00")
NUL_URLS = [
    f"/admin/audit/accesslog/?q=a{NUL}b",
    f"/admin/audit/accesslog/?identity=a{NUL}b",
    f"/admin/audit/accesslog/?worker=a{NUL}b",
    f"/admin/audit/accesslog/?role=a{NUL}b",
    f"/admin/audit/accesslog/?reason=a{NUL}b",
    f"/admin/audit/accesslog/?recording=a{NUL}b",
    f"/admin/audit/accesslog/?action=a{NUL}b",
    f"/admin/audit/accesslog/?outcome__exact=a{NUL}b",
    f"/admin/audit/accesslog/?since=a{NUL}b",
    f"/admin/audit/accesslog/?occurred=a{NUL}b",
    f"/admin/audit/accesslog/?a{NUL}b=1",
    f"/admin/audit/accesslog/identity/?identity=a{NUL}b",
    f"/admin/audit/accesslog/export/csv/?identity=a{NUL}b",
    f"/admin/audit/accesslog/export/jsonl/?role=a{NUL}b",
    f"/admin/audit/accesslog/export/csv/?q=a{NUL}b",
    f"/admin/audit/accesslog/recording/RE{NUL}/",
    f"/admin/audit/accessrule/?q=a{NUL}b",
    f"/admin/audit/accessrule/test/?identity=a{NUL}b",
    f"/admin/recordings/recording/?q=a{NUL}b",
    f"/admin/recordings/recording/?sync_state__exact=a{NUL}b",
    f"/admin/recordings/recording/?start_time__year=2026{NUL}",
    f"/admin/recordings/recordingevent/?state__exact=a{NUL}b",
    f"/admin/recordings/legalhold/?q=a{NUL}b",
    f"/admin/auth/user/?q=a{NUL}b",
]


@pytest.mark.parametrize("url", NUL_URLS)
def test_nul_in_an_admin_parameter_is_a_clear_400(staff_client, url):
    officer = staff_client("superuser")
    before = AccessLog.objects.count()
    response = officer.get(url)
    assert response.status_code == 400
    assert response.content.decode() == NUL_REFUSED
    assert AccessLog.objects.count() == before  # refused before anything ran


@pytest.mark.parametrize(
    "query",
    [
        "start_time__year=99999999999",
        "start_time__year=2026&start_time__month=99999999999",
        "start_time__year=2026&start_time__month=1&start_time__day=99999999999",
        "start_time__year=9999",
        "start_time__year=9999&start_time__month=12",
        "start_time__year=9999&start_time__month=12&start_time__day=31",
        "start_time__year=-1",
    ],
)
def test_an_impossible_date_drill_down_is_refused_the_admin_way(staff_client, query):
    officer = staff_client("superuser")
    response = officer.get(f"/admin/recordings/recording/?{query}")
    assert response.status_code == 302
    assert response["Location"] == "/admin/recordings/recording/?e=1"  # the date left out
    listed = officer.get(response["Location"])
    assert listed.status_code == 200
    assert "That filter cannot be applied" in listed.content.decode()
    assert officer.get("/admin/recordings/recording/?e=1&" + query).status_code == 200


def test_a_date_drill_down_in_range_still_works(staff_client, recording_factory):
    recording = recording_factory(start_time=datetime(2026, 2, 3, 4, tzinfo=UTC))
    officer = staff_client("superuser")
    response = officer.get(
        "/admin/recordings/recording/",
        {"start_time__year": 2026, "start_time__month": 2, "start_time__day": 3},
    )
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [recording]
