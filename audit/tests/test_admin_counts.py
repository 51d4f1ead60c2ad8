"""Every admin list counts its rows in words that agree with the number (issue 14: "28 access
log", "1 recordings"): ``audit.templatetags.admin_counts`` and the paginator templates."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.urls import NoReverseMatch, reverse

from audit.templatetags.admin_counts import count_nouns, count_text

pytestmark = [pytest.mark.django_db, pytest.mark.urls("audit.tests.urls")]

LOG = "admin:audit_accesslog_changelist"
RECORDINGS = "admin:recordings_recording_changelist"


def _paginator_line(response) -> str:
    html = response.content.decode()
    found = re.search(r'<p class="paginator">(.*?)</p>', html, re.S)
    assert found, "no paginator line"
    text = re.sub(r"<[^>]+>", " ", found.group(1))
    return " ".join(text.replace("Show all", "").split())


def test_count_text_agrees_with_the_number():
    nouns = ("entry", "entries")
    assert count_text(0, nouns) == "0 entries"
    assert count_text(1, nouns) == "1 entry"
    assert count_text(10, nouns) == "10 entries"
    assert count_text(12345, nouns) == "12,345 entries"


def test_access_log_counts_entries(admin_client, append_rows):
    append_rows(1)
    assert _paginator_line(admin_client.get(reverse(LOG))) == "1 entry"
    append_rows(9)
    assert _paginator_line(admin_client.get(reverse(LOG))) == "10 entries"


def test_access_log_capped_count_says_entries(admin_client, append_rows, monkeypatch):
    monkeypatch.setattr("audit.admin.pagination.COUNT_LIMIT", 3)
    append_rows(10)  # five allowed, two more than the limit
    line = _paginator_line(admin_client.get(reverse(LOG), {"outcome__exact": "allowed"}))
    assert line == "more than 3 entries: narrow the filter to see them all"


def test_recordings_list_counts_recordings(admin_client, recording_factory):
    recording_factory()
    assert _paginator_line(admin_client.get(reverse(RECORDINGS))) == "1 recording"
    recording_factory()
    assert _paginator_line(admin_client.get(reverse(RECORDINGS))) == "2 recordings"


def test_every_admin_list_counts_in_a_singular_and_a_plural(admin_client):
    """Each registered list's paginator line is "0 <plural>", and its singular differs from
    its plural (a model whose plural names the page, as the access log's does, must say what
    its rows are called with ``count_nouns``)."""
    checked = 0
    same = []
    for model, model_admin in admin.site._registry.items():
        singular, plural = count_nouns(model_admin)
        if singular == plural:
            same.append(
                f"{model.__name__}: '1 {singular}', '2 {plural}' (give the model a plural "
                "verbose_name_plural, or its ModelAdmin count_nouns)"
            )
        opts = model._meta
        try:
            url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        except NoReverseMatch:
            continue
        response = admin_client.get(url)
        if response.status_code != 200 or b'class="paginator"' not in response.content:
            continue
        count = response.context["cl"].result_count
        assert _paginator_line(response).endswith(count_text(count, (singular, plural))), url
        checked += 1
    assert checked >= 15
    assert not same, same
