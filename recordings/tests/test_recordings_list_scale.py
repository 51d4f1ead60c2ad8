"""The recordings list at a contact centre's size (issue 14; ``bench/admin_scale.py`` times
it): no filter lists its choices with a ``DISTINCT`` over the table, the date drill-down is
one ``MIN``/``MAX`` instead of a ``DISTINCT date_trunc`` over the matching rows, each filtered
field has an index, and the page's query count is pinned. Against PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from recordings.models import EncryptionType, Recording, RecordingSource

pytestmark = pytest.mark.django_db

LIST = "admin:recordings_recording_changelist"


def _titles(response) -> list[str]:
    """The drill-down's choices as the page shows them (Django's own template)."""
    drill = response.context["cl"].date_drilldown
    return [choice["title"] for choice in drill["choices"]]


def _sqls(captured) -> list[str]:
    return [query["sql"] for query in captured if "recordings_recording" in query["sql"]]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"start_time__year": "2026"},
        {"start_time__year": "2026", "start_time__month": "10"},
        {"source__exact": "Conference"},
        {"encryption_type__exact": ""},
    ],
)
def test_no_query_reads_distinct_values_of_the_table(admin_client, recording_make, params):
    recording_make(start_time=datetime(2025, 3, 1, tzinfo=UTC))
    recording_make(start_time=datetime(2026, 10, 2, tzinfo=UTC), source="Conference")
    with CaptureQueriesContext(connection) as captured:
        page = admin_client.get(reverse(LIST), params)
    assert page.status_code == 200
    sqls = _sqls(captured)
    assert not [sql for sql in sqls if "DISTINCT" in sql or "DATE_TRUNC" in sql], sqls


def test_filters_list_the_models_choices_with_their_labels(admin_client, recording_make):
    recording_make(source="Conference", encryption_type="rsa-aes")
    page = admin_client.get(reverse(LIST))
    html = page.content.decode()
    for choice in (*RecordingSource, *EncryptionType):
        assert str(choice.label).replace("<", "&lt;").replace(">", "&gt;") in html, choice
    # A value Twilio may add later is stored as sent and found by its own filter value.
    odd = recording_make(source="SomethingNew")
    listed = admin_client.get(reverse(LIST), {"source__exact": "SomethingNew"})
    assert [row.pk for row in listed.context["cl"].result_list] == [odd.pk]


def test_filters_select_what_they_say(admin_client, recording_make):
    plain = recording_make(source="DialVerb")
    encrypted = recording_make(source="Conference", encryption_type="rsa-aes")
    by_source = admin_client.get(reverse(LIST), {"source__exact": "Conference"})
    assert [row.pk for row in by_source.context["cl"].result_list] == [encrypted.pk]
    not_encrypted = admin_client.get(reverse(LIST), {"encryption_type__exact": ""})
    assert [row.pk for row in not_encrypted.context["cl"].result_list] == [plain.pk]
    rsa = admin_client.get(reverse(LIST), {"encryption_type__exact": "rsa-aes"})
    assert [row.pk for row in rsa.context["cl"].result_list] == [encrypted.pk]


def test_drilldown_spans_first_to_last_start_at_each_level(admin_client, recording_make):
    for at in (
        datetime(2024, 11, 30, 23, 0, tzinfo=UTC),
        datetime(2026, 2, 3, tzinfo=UTC),
        datetime(2026, 4, 28, tzinfo=UTC),
        datetime(2026, 4, 30, tzinfo=UTC),
    ):
        recording_make(start_time=at)
    url = reverse(LIST)
    # 2025 holds no recording but lies between two years that do: listed, and empty.
    assert _titles(admin_client.get(url)) == ["2024", "2025", "2026"]
    year = admin_client.get(url, {"start_time__year": "2026"})
    assert _titles(year) == ["February 2026", "March 2026", "April 2026"]
    assert year.context["cl"].date_drilldown["back"]["title"] == "All dates"
    month = admin_client.get(url, {"start_time__year": "2026", "start_time__month": "4"})
    assert _titles(month) == ["April 28", "April 29", "April 30"]
    assert 'href="?start_time__day=29&amp;start_time__month=4&amp;start_time__year=2026"' in (
        month.content.decode()
    )
    day = admin_client.get(
        url, {"start_time__year": "2026", "start_time__month": "4", "start_time__day": "30"}
    )
    assert _titles(day) == ["April 30"]
    assert len(day.context["cl"].result_list) == 1
    empty = admin_client.get(url, {"start_time__year": "2025"})
    assert _titles(empty) == []
    assert len(empty.context["cl"].result_list) == 0


def test_drilldown_starts_where_django_does_and_follows_the_filters(admin_client, recording_make):
    recording_make(start_time=datetime(2026, 5, 2, tzinfo=UTC))
    recording_make(start_time=datetime(2026, 5, 9, tzinfo=UTC), source="Conference")
    recording_make(start_time=datetime(2026, 7, 1, tzinfo=UTC), source="RecordVerb")
    url = reverse(LIST)
    # One year: its months; one month: its days (as Django's own tag starts).
    assert _titles(admin_client.get(url)) == ["May 2026", "June 2026", "July 2026"]
    assert _titles(admin_client.get(url, {"source__exact": "DialVerb"})) == ["May 2"]
    assert _titles(admin_client.get(url, {"source__exact": "Conference"})) == ["May 9"]
    assert _titles(admin_client.get(url, {"source__exact": "Trunking"})) == []


def test_drilldown_out_of_range_is_still_refused(admin_client, recording_make):
    recording_make()
    page = admin_client.get(reverse(LIST), {"start_time__year": "99999999999"})
    assert page.status_code == 302
    assert "e=1" in page["Location"]


@pytest.mark.parametrize(
    ("params", "queries"),
    [
        # Session and user, the hold filter's choices, the count, the page, the page's holds,
        # the drill-down's MIN/MAX, the session's save (three): no filter reads the table.
        ({}, 10),
        ({"start_time__year": "2026"}, 10),
        ({"start_time__year": "2026", "start_time__month": "10"}, 10),
        # A chosen day needs no span: one query fewer.
        ({"start_time__year": "2026", "start_time__month": "10", "start_time__day": "1"}, 9),
        ({"source__exact": "Conference", "encryption_type__exact": ""}, 10),
        ({"status__exact": "failed"}, 10),
    ],
)
def test_recordings_list_query_counts(
    admin_client, recording_make, django_assert_num_queries, params, queries
):
    for _ in range(3):
        recording_make(source="Conference")
    with django_assert_num_queries(queries):
        assert admin_client.get(reverse(LIST), params).status_code == 200


def test_each_filtered_field_has_an_index_with_the_start_time():
    with connection.cursor() as cursor:
        indexes = connection.introspection.get_constraints(cursor, Recording._meta.db_table)
    columns = {tuple(index["columns"]) for index in indexes.values() if index["index"]}
    for name in ("status", "source", "encryption_type", "media_location", "archive_state"):
        assert (name, "start_time") in columns, name
