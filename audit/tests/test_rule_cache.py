"""The per-process rule cache of ``audit.decisions``: whatever changes a rule (admin, import, ORM
``save`` or ``update``, raw SQL, a rollback, a test framework's flush, another connection), the
next decision sees it; while nothing changes, a decision costs one query."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.urls import reverse

from audit.decisions import Caller, RecordingFacts, access_decide, rules_cache_clear
from audit.models import AccessRule, AccessRuleSetVersion
from audit.rules_file import rules_load

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CALLER = Caller(identity="alice", roles=("supervisor",))
RECORDING = RecordingFacts(sid="RE" + "1" * 32, account_sid="AC" + "a" * 32)


def allowed() -> bool:
    return access_decide(caller=CALLER, recording=RECORDING, now=NOW).allowed


@pytest.fixture
def rule(db):
    rule = AccessRule.objects.create(name="supervisors", effect="allow", roles=["supervisor"])
    assert allowed()  # cached from here on
    return rule


def test_while_nothing_changes_a_decision_costs_one_query(rule, django_assert_num_queries):
    with django_assert_num_queries(1):
        assert allowed()


def test_an_orm_save_is_seen(rule):
    rule.roles = ["admin"]
    rule.save()
    assert not allowed()


def test_a_queryset_update_is_seen(rule):
    # update() does not touch updated_at: a version taken from the timestamps would miss it.
    AccessRule.objects.filter(pk=rule.pk).update(enabled=False)
    assert not allowed()


def test_raw_sql_is_seen(rule):
    with connection.cursor() as cursor:
        cursor.execute("UPDATE audit_accessrule SET effect = 'deny' WHERE id = %s", [rule.pk])
    assert not allowed()


def test_a_delete_and_a_new_rule_are_seen(rule):
    AccessRule.objects.filter(pk=rule.pk).delete()
    assert not allowed()
    AccessRule.objects.create(name="supervisors", effect="allow", roles=["supervisor"])
    assert allowed()


def test_an_import_is_seen(rule):
    rules_load({"rules": [{"name": "supervisors", "effect": "deny"}]}, replace=False)
    assert not allowed()


def test_a_rolled_back_change_is_forgotten(rule):
    with transaction.atomic():
        AccessRule.objects.filter(pk=rule.pk).update(effect="deny")
        assert not allowed()  # this transaction's own change, cached
        transaction.set_rollback(True)
    assert allowed()
    # The next change gets a new token, never the rolled-back one.
    AccessRule.objects.filter(pk=rule.pk).update(reason="x")
    assert allowed()


def test_rolled_back_tokens_never_come_back(rule):
    seen = set()
    for _ in range(3):
        with transaction.atomic():
            AccessRule.objects.filter(pk=rule.pk).update(reason="x")
            seen.add(AccessRuleSetVersion.objects.get().token)
            transaction.set_rollback(True)
    assert len(seen) == 3


@pytest.mark.urls("audit.tests.urls")
def test_an_admin_change_is_seen(rule, admin_client):
    response = admin_client.post(
        reverse("admin:audit_accessrule_changelist"),
        {"action": "disable_rules", "_selected_action": [rule.pk]},
    )
    assert response.status_code == 302
    assert not allowed()


def test_without_a_version_row_nothing_is_reused(rule, django_assert_num_queries):
    AccessRuleSetVersion.objects.all().delete()
    with django_assert_num_queries(2):
        assert allowed()
    with django_assert_num_queries(2):
        assert allowed()


@pytest.mark.django_db(transaction=True)
def test_a_flush_and_another_connections_commit_are_seen():
    rules_cache_clear()
    AccessRule.objects.create(name="supervisors", effect="allow", roles=["supervisor"])
    assert allowed()
    call_command("flush", interactive=False, verbosity=0)
    assert not allowed()

    def other_process() -> None:
        try:
            AccessRule.objects.create(name="again", effect="allow", roles=["supervisor"])
        finally:
            connections.close_all()

    thread = threading.Thread(target=other_process)
    thread.start()
    thread.join()
    assert allowed()
