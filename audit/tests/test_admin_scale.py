"""What keeps the console fast on a large log (``bench/admin_scale.py`` measures it): the
unfiltered log paged by ``sequence`` instead of ``OFFSET``, the recordings search through the
SID indexes instead of ``UPPER()``, and each page's query count pinned."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.admin.pagination import AccessLogPaginator
from audit.models import AccessLog
from audit.services import access_log_append
from recordings.admin.search import recording_sid_search
from recordings.models import Recording

pytestmark = [pytest.mark.django_db, pytest.mark.urls("audit.tests.urls")]

LOG = "admin:audit_accesslog_changelist"
RECORDINGS = "admin:recordings_recording_changelist"


def _burn_a_sequence_number() -> None:
    """What an append that rolled back leaves: a number no row has."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval('audit_accesslog_position')")


def _sequences(response) -> list[int]:
    return [entry.sequence for entry in response.context["cl"].result_list]


def test_unfiltered_pages_seek_by_sequence_and_hold_every_row_once(append_rows):
    append_rows(60)
    _burn_a_sequence_number()
    append_rows(70)
    paginator = AccessLogPaginator(AccessLog.objects.order_by("-sequence"), 50)
    assert paginator.count == 131  # the head's number, the missing one included
    pages = [[row.sequence for row in paginator.page(n)] for n in paginator.page_range]
    assert [len(page) for page in pages] == [50, 49, 31]
    seen = [sequence for page in pages for sequence in page]
    assert seen == [n for n in range(131, 0, -1) if n != 61]
    with CaptureQueriesContext(connection) as captured:
        list(paginator.page(3))
    assert "OFFSET" not in captured[-1]["sql"]
    assert "sequence" in captured[-1]["sql"]


def test_last_page_of_the_whole_log_is_a_seek(admin_client, append_rows):
    append_rows(120)
    url = reverse(LOG)
    with CaptureQueriesContext(connection) as captured:
        last = admin_client.get(url, {"activity": "all", "p": 3})
    assert last.status_code == 200
    # The view writes its own admin_view row (121) before the list is read.
    assert _sequences(last) == list(range(21, 0, -1))
    sqls = [query["sql"] for query in captured if "audit_accesslog" in query["sql"]]
    assert not any("OFFSET" in sql for sql in sqls), sqls


def test_sorted_or_filtered_lists_page_as_django_does(admin_client, append_rows):
    append_rows(60)
    url = reverse(LOG)
    by_identity = admin_client.get(url, {"activity": "all", "o": "6", "p": 2})
    assert by_identity.status_code == 200
    denied = admin_client.get(url, {"outcome__exact": "denied"})
    assert {entry.outcome for entry in denied.context["cl"].result_list} == {"denied"}


@pytest.mark.parametrize(
    ("params", "queries"),
    [
        ({}, 10),
        ({"activity": "all", "p": 2}, 10),
        # An empty page looks nobody up in the directory: one query fewer.
        ({"activity": "all", "action": "legal_hold"}, 9),
        ({"activity": "all", "reason": "no_matching_rule"}, 10),
        ({"worker": "WK" + "1" * 32}, 9),
        ({"activity": "all", "role": "supervisor"}, 10),
        ({"q": "RE" + "a" * 32}, 10),
    ],
)
def test_access_log_query_counts(
    admin_client, append_rows, django_assert_num_queries, params, queries
):
    append_rows(120)
    with django_assert_num_queries(queries):
        assert admin_client.get(reverse(LOG), params).status_code == 200


def test_dashboard_and_identity_query_counts(admin_client, append_rows, django_assert_num_queries):
    append_rows(40)
    # 22: the restricted-recordings box (attempts, refusals, pending access requests) adds two;
    # 23: the access reviews' alert (open reviews with their reviewers) one.
    # 24: the daily rollup's days and their counts add two, the two boxes of opens share one
    # (test_dashboard_rollup pins the page with a rollup: one more, the span of whole days).
    with django_assert_num_queries(24):
        assert admin_client.get(reverse("admin:audit_accesslog_dashboard")).status_code == 200
    with django_assert_num_queries(10):
        page = admin_client.get(reverse("admin:audit_accesslog_identity"), {"identity": "agent_2"})
        assert page.status_code == 200


def test_recordings_search_finds_a_sid_in_any_case_without_upper(
    admin_client, recording_factory, django_assert_num_queries
):
    recording = recording_factory()
    other = recording_factory()
    for term in (recording.sid, recording.sid.upper(), f"  {recording.sid.lower()} "):
        with CaptureQueriesContext(connection) as captured:
            page = admin_client.get(reverse(RECORDINGS), {"q": term})
        assert [row.pk for row in page.context["cl"].result_list] == [recording.pk]
        assert not any("UPPER(" in query["sql"] for query in captured), term
    by_call = admin_client.get(reverse(RECORDINGS), {"q": other.call_sid.upper()})
    assert [row.pk for row in by_call.context["cl"].result_list] == [other.pk]
    by_account = admin_client.get(reverse(RECORDINGS), {"q": other.account_sid})
    assert {row.pk for row in by_account.context["cl"].result_list} == {recording.pk, other.pk}
    nothing = admin_client.get(reverse(RECORDINGS), {"q": "RE-not-a-sid"})
    assert list(nothing.context["cl"].result_list) == []


def test_recording_sid_search_names_one_column_per_prefix():
    sid = "RE" + "ab" * 16
    assert Recording.objects.filter(recording_sid_search(sid.upper())).query.where is not None
    where = str(Recording.objects.filter(recording_sid_search("CA" + "CD" * 16)).query)
    assert where.split("WHERE")[1].count("call_sid") == 1
    assert "UPPER" not in str(Recording.objects.filter(recording_sid_search("anything")).query)


def test_recordings_list_query_counts(admin_client, recording_factory, django_assert_num_queries):
    recording = recording_factory()
    access_log_append(action="url_provider", outcome="allowed", identity="alice")
    # 10: no DISTINCT for the source and encryption filters or the dates (one MIN/MAX).
    with django_assert_num_queries(10):
        assert admin_client.get(reverse(RECORDINGS)).status_code == 200
    # The session was saved by the first view: three queries fewer.
    with django_assert_num_queries(7):
        assert admin_client.get(reverse(RECORDINGS), {"q": recording.sid}).status_code == 200
