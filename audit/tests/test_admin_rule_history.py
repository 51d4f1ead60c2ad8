"""A rule's history page (issue 14): every ``rule_change`` row of one rule, imported or made in
the admin, as a field-by-field diff; Django's History button leads there; opening it is
audited; permissions and the query count are pinned."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from audit.admin.rule_history import rule_history
from audit.models import AccessLog, AccessRule
from audit.rules_file import rules_load

pytestmark = [pytest.mark.django_db, pytest.mark.urls("audit.tests.urls")]

# The history page's queries, whatever the number of changes it shows (see the test below).
QUERIES = 6

IMPORTED = {
    "rules": [
        {
            "name": "qa-supervisors",
            "effect": "allow",
            "identities": ["qa_*"],
            "roles": ["supervisor", "wfo.quality_manager"],
            "recordings": {"max_age_days": 90},
            "reason": "COMP-1",
        }
    ]
}
EDIT = {
    "name": "qa-leads",
    "effect": "allow",
    "enabled": "on",
    "reason": "COMP-2",
    "identities": "qa_*",
    "worker_sids": "",
    "roles": "supervisor\nqa_lead",
    "account_sids": "",
    "sources": "",
    "call_sids": "",
    "max_age_days": "30",
    "queues": "",
    "teams": "",
    "workers": "",
    "handled_by": "caller_team",
    "valid_until_0": "2027-06-30",
    "valid_until_1": "00:00:00",
}


@pytest.fixture
def imported_then_edited(admin_client) -> AccessRule:
    """A rule loaded by ``import_access_rules``, then edited (and renamed) in the admin."""
    rules_load(IMPORTED, replace=False, actor="cli:import_access_rules")
    rule = AccessRule.objects.get(name="qa-supervisors")
    response = admin_client.post(reverse("admin:audit_accessrule_change", args=[rule.pk]), EDIT)
    assert response.status_code == 302
    rule.refresh_from_db()
    return rule


def _fields(entry) -> dict:
    return {field.field: field for field in entry.fields}


def test_history_reads_the_import_and_the_edit_field_by_field(admin_client, imported_then_edited):
    rule = imported_then_edited
    response = admin_client.get(reverse("admin:audit_accessrule_history", args=[rule.pk]))
    assert response.status_code == 200
    created, edited = response.context["history"]

    assert (created.change, created.via, created.entry.identity) == (
        "created",
        "by a rules-file import",
        "cli:import_access_rules",
    )
    assert created.rule_name == "qa-supervisors"
    made = _fields(created)
    assert made["roles"].added == ("supervisor", "wfo.quality_manager")
    assert made["max_age_days"].new == "90"
    assert "worker_sids" not in made  # left empty on creation: nothing to say

    assert (edited.change, edited.via, edited.entry.identity) == (
        "changed",
        "in the admin",
        "admin:admin",
    )
    changed = _fields(edited)
    assert list(changed) == [
        "name",
        "roles",
        "max_age_days",
        "handled_by",
        "valid_until",
        "reason",
    ]  # the rule form's order, only what changed
    assert (changed["name"].old, changed["name"].new) == ("qa-supervisors", "qa-leads")
    assert (changed["roles"].added, changed["roles"].removed) == (
        ("qa_lead",),
        ("wfo.quality_manager",),
    )
    assert (changed["max_age_days"].old, changed["max_age_days"].new) == ("90", "30")
    assert (changed["handled_by"].old, changed["handled_by"].new) == (
        "anyone (no condition)",
        "the caller's team",
    )
    assert (changed["valid_until"].old, changed["valid_until"].new) == (
        "not set",
        "2027-06-30 00:00:00 UTC",
    )
    assert changed["valid_until"].label == "Valid until (UTC)"

    content = response.content.decode()
    for row in (created.entry, edited.entry):
        assert reverse("admin:audit_accesslog_change", args=[row.pk]) in content
    assert "(then named qa-supervisors)" in content
    assert "+ qa_lead" in content
    assert "wfo.quality_manager" in content
    assert '{"old"' not in content  # no raw JSON


def test_the_history_button_leads_there_and_opening_it_is_audited(
    admin_client, imported_then_edited
):
    rule = imported_then_edited
    history_url = reverse("admin:audit_accessrule_history", args=[rule.pk])
    change_page = admin_client.get(reverse("admin:audit_accessrule_change", args=[rule.pk]))
    assert f'href="{history_url}"' in change_page.content.decode()
    admin_client.get(history_url)
    row = AccessLog.objects.filter(reason_code="rule_history").get()
    assert (row.action, row.outcome, row.identity) == ("admin_view", "allowed", "admin:admin")
    assert row.detail == {"rule_id": rule.pk}


def test_the_history_of_a_rule_without_changes_says_so(admin_client):
    rule = AccessRule.objects.create(name="bare", effect="deny")  # e.g. made by a migration
    response = admin_client.get(reverse("admin:audit_accessrule_history", args=[rule.pk]))
    assert response.context["history"] == []
    assert "holds no change to this rule" in response.content.decode()
    assert (
        admin_client.get(reverse("admin:audit_accessrule_history", args=[999999])).status_code
        == 404
    )


def test_oversized_values_show_as_digests(admin_client):
    rule = AccessRule.objects.create(name="big", effect="allow")
    many = "\n".join(f"user_{n:04d}_*" for n in range(400))
    admin_client.post(
        reverse("admin:audit_accessrule_change", args=[rule.pk]),
        {**EDIT, "name": "big", "identities": many},
    )
    (entry,) = rule_history(rule_id=rule.pk)
    identities = _fields(entry)["identities"]
    assert identities.digest
    assert len(identities.new) == 16


@pytest.mark.parametrize(
    ("group", "permissions", "status"),
    [
        (None, (), 403),
        (None, ("view_accessrule",), 403),  # the page shows log rows: the log's permission too
        (None, ("view_accesslog",), 403),
        ("compliance viewer", (), 200),
        ("compliance manager", (), 200),
    ],
)
def test_permissions(staff_client, imported_then_edited, group, permissions, status):
    client = staff_client(group)
    for codename in permissions:
        client.user.user_permissions.add(
            Permission.objects.get(content_type__app_label="audit", codename=codename)
        )
    url = reverse("admin:audit_accessrule_history", args=[imported_then_edited.pk])
    assert client.get(url).status_code == status
    if status == 403:
        refused = AccessLog.objects.filter(reason_code="permission").get()
        assert (refused.outcome, refused.detail["page"]) == ("denied", "rule_history")


def test_query_count_does_not_grow_with_the_history(
    admin_client, imported_then_edited, django_assert_num_queries
):
    rule = imported_then_edited
    url = reverse("admin:audit_accessrule_history", args=[rule.pk])
    admin_client.get(url)  # warm the session and content types
    # Session and user; the rule; its history rows in one query; the admin_view row (the
    # chain's head, then the insert). Not one more per change shown.
    with django_assert_num_queries(QUERIES):
        admin_client.get(url)
    for days in range(31, 41):
        admin_client.post(
            reverse("admin:audit_accessrule_change", args=[rule.pk]),
            {**EDIT, "max_age_days": str(days)},
        )
    assert len(rule_history(rule_id=rule.pk)) == 12
    with django_assert_num_queries(QUERIES):
        admin_client.get(url)
