"""The admin: rules editable but never deleted; the access log read-only for everyone."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse

from audit.models import AccessLog, AccessLogDigest, AccessRule

pytestmark = [pytest.mark.django_db, pytest.mark.urls("audit.tests.urls")]


@pytest.fixture
def superuser_request(rf, admin_user):
    request = rf.get("/admin/")
    request.user = admin_user
    return request


@pytest.mark.parametrize("model", [AccessLog, AccessLogDigest])
def test_the_log_is_read_only_even_for_superusers(superuser_request, model):
    model_admin = admin.site._registry[model]
    assert not model_admin.has_add_permission(superuser_request)
    assert not model_admin.has_change_permission(superuser_request)
    assert not model_admin.has_delete_permission(superuser_request)
    assert model_admin.has_view_permission(superuser_request)
    assert model_admin.get_actions(superuser_request) == {}


def test_access_log_changelist_searches_exactly_and_newest_first(admin_client, append_rows):
    append_rows(3)
    url = reverse("admin:audit_accesslog_changelist")
    response = admin_client.get(url, {"activity": "all"})
    assert response.status_code == 200
    listed = [row.sequence for row in response.context["cl"].result_list]
    assert listed == [4, 3, 2, 1]  # 4: opening the log is itself logged, before the list
    assert response.context["cl"].result_list[0].identity == "admin:admin"
    response = admin_client.get(url, {"q": "agent_1"})
    assert [row.identity for row in response.context["cl"].result_list] == ["agent_1"]
    response = admin_client.get(url, {"q": "agent"})
    assert list(response.context["cl"].result_list) == []
    response = admin_client.get(url, {"outcome__exact": "denied"})
    assert [row.sequence for row in response.context["cl"].result_list] == [2]


def test_the_log_entry_page_shows_no_save_or_delete(admin_client, append_rows):
    (row,) = append_rows(1)
    response = admin_client.get(reverse("admin:audit_accesslog_change", args=[row.pk]))
    assert response.status_code == 200
    assert b'name="_save"' not in response.content
    assert admin_client.get(reverse("admin:audit_accesslog_add")).status_code == 403
    assert (
        admin_client.post(reverse("admin:audit_accesslog_delete", args=[row.pk])).status_code == 403
    )


def test_rules_cannot_be_deleted_only_disabled(admin_client, superuser_request):
    rule = AccessRule.objects.create(name="qa", effect="allow", roles=["supervisor"])
    rule_admin = admin.site._registry[AccessRule]
    assert not rule_admin.has_delete_permission(superuser_request)
    assert set(rule_admin.get_actions(superuser_request)) == {"disable_rules"}
    assert (
        admin_client.post(reverse("admin:audit_accessrule_delete", args=[rule.pk])).status_code
        == 403
    )

    response = admin_client.post(
        reverse("admin:audit_accessrule_changelist"),
        {"action": "disable_rules", "_selected_action": [rule.pk]},
    )
    assert response.status_code == 302
    rule.refresh_from_db()
    assert rule.enabled is False
    entry = AccessLog.objects.get(action="rule_change")
    assert (entry.action, entry.reason_code, entry.rule_name, entry.identity) == (
        "rule_change",
        "rule_disabled",
        "qa",
        "admin:admin",
    )


def test_adding_a_rule_validates_globs_and_logs_the_change(admin_client):
    url = reverse("admin:audit_accessrule_add")
    form = {
        "name": "qa",
        "effect": "allow",
        "enabled": "on",
        "reason": "COMP-1",
        "identities": "qa_[12",  # one value per line (issue 14: no JSON)
        "worker_sids": "",
        "roles": "supervisor",
        "account_sids": "",
        "sources": "",
        "call_sids": "",
    }
    response = admin_client.post(url, form)
    assert response.status_code == 200
    assert "unbalanced" in str(response.context["adminform"].form.errors["identities"])
    assert not AccessRule.objects.exists()

    response = admin_client.post(url, {**form, "identities": "qa_[12]*"})
    assert response.status_code == 302
    assert AccessRule.objects.get().identities == ["qa_[12]*"]
    assert AccessLog.objects.get().reason_code == "rule_created"
