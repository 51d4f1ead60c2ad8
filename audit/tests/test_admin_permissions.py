"""Who may open each admin page: anonymous visitors are sent to the login page, a "compliance
viewer" reads, a "compliance manager" also changes rules, other staff get 403, and the Twilio
storage pages are for superusers only."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from audit.models import AccessRule
from audit.services import access_log_append

pytestmark = [pytest.mark.django_db, pytest.mark.urls("audit.tests.urls")]

OK, DENIED = 200, 403
# page name → expected status for (viewer, manager, staff in no group)
PAGES = {
    "log_list": (OK, OK, DENIED),
    "log_entry": (OK, OK, DENIED),
    "digests": (OK, OK, DENIED),
    "dashboard": (OK, OK, DENIED),
    "verify": (OK, OK, DENIED),
    "export": (OK, OK, DENIED),
    "identity": (OK, OK, DENIED),
    "timeline": (OK, OK, DENIED),
    "recording": (OK, OK, DENIED),
    "rule_list": (OK, OK, DENIED),
    "rule_change": (OK, OK, DENIED),
    "rule_add": (DENIED, OK, DENIED),
    "rule_test": (OK, OK, DENIED),
    "rules_import": (DENIED, OK, DENIED),
    "rules_export": (OK, OK, DENIED),
    "twilio_video": (DENIED, DENIED, DENIED),
    "twilio_credentials": (DENIED, DENIED, DENIED),
    "iam_policy": (DENIED, DENIED, DENIED),
}


@pytest.fixture
def urls(recording_factory) -> dict[str, str]:
    recording = recording_factory()
    row = access_log_append(
        action="url_provider", outcome="allowed", identity="alice", recording_sid=recording.sid
    )
    rule = AccessRule.objects.create(name="qa", effect="allow", roles=["supervisor"])
    return {
        "log_list": reverse("admin:audit_accesslog_changelist"),
        "log_entry": reverse("admin:audit_accesslog_change", args=[row.pk]),
        "digests": reverse("admin:audit_accesslogdigest_changelist"),
        "dashboard": reverse("admin:audit_accesslog_dashboard"),
        "verify": reverse("admin:audit_accesslog_verify"),
        "export": reverse("admin:audit_accesslog_exports"),
        "identity": reverse("admin:audit_accesslog_identity") + "?identity=alice",
        "timeline": reverse("admin:audit_accesslog_recording", args=[recording.sid]),
        "recording": reverse("admin:recordings_recording_change", args=[recording.pk]),
        "rule_list": reverse("admin:audit_accessrule_changelist"),
        "rule_change": reverse("admin:audit_accessrule_change", args=[rule.pk]),
        "rule_add": reverse("admin:audit_accessrule_add"),
        "rule_test": reverse("admin:audit_accessrule_test"),
        "rules_import": reverse("admin:audit_accessrule_import"),
        "rules_export": reverse("admin:audit_accessrule_export"),
        "twilio_video": reverse("admin:twilio_storage_video"),
        "twilio_credentials": reverse("admin:twilio_storage_credentials"),
        "iam_policy": reverse("admin:twilio_storage_iam_policy"),
    }


def test_the_groups_exist_with_their_permissions():
    viewer = set(
        Group.objects.get(name="compliance viewer").permissions.values_list("codename", flat=True)
    )
    manager = set(
        Group.objects.get(name="compliance manager").permissions.values_list("codename", flat=True)
    )
    assert viewer == {
        "view_accesslog",
        "view_accesslogdigest",
        "view_accessrule",
        "view_recording",
        "view_recordingevent",
        "view_retentionpolicy",
        "view_legalhold",
        "view_accessgrant",
        "view_controlchange",
        "view_accessreview",
    }
    assert manager == viewer | {
        "add_accessrule",
        "change_accessrule",
        "add_legalhold",
        "change_legalhold",
        "approve_accessgrant",
        "restrict_recording",
        "approve_controlchange",
        "review_accessreview",
        "assign_accessreview",
    }
    assert not any(code.startswith("delete_") for code in manager)


@pytest.mark.parametrize("page", sorted(PAGES))
def test_each_page_answers_each_role(urls, staff_client, page):
    clients = [
        staff_client("compliance viewer"),
        staff_client("compliance manager"),
        staff_client(None),
    ]
    for client, expected in zip(clients, PAGES[page], strict=True):
        status = client.get(urls[page]).status_code
        assert status == expected, f"{client.user.username} on {page}: {status}"


@pytest.mark.parametrize("page", sorted(PAGES))
def test_anonymous_and_non_staff_are_sent_to_the_login_page(urls, django_user_model, page):
    anonymous = Client()
    response = anonymous.get(urls[page])
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    member = django_user_model.objects.create_user("member", password="pw", is_staff=False)
    logged_in = Client()
    logged_in.force_login(member)
    assert logged_in.get(urls[page]).status_code == 302


def test_a_viewer_changes_nothing(urls, staff_client):
    viewer = staff_client("compliance viewer")
    page = viewer.get(urls["rule_change"])
    assert b'name="_save"' not in page.content
    rule = AccessRule.objects.get()
    response = viewer.post(urls["rule_change"], {"name": "renamed", "effect": "deny"})
    assert response.status_code == 403
    response = viewer.post(
        urls["rule_list"], {"action": "disable_rules", "_selected_action": [rule.pk]}
    )
    rule.refresh_from_db()
    assert (rule.name, rule.enabled) == ("qa", True)
    assert viewer.post(urls["rules_import"], {"content": "{}"}).status_code == 403
    # Verifying the chain changes no data; a viewer may run it.
    assert viewer.post(urls["verify"]).status_code == 302


def test_a_manager_changes_rules_but_not_the_log(urls, staff_client):
    manager = staff_client("compliance manager")
    response = manager.post(
        urls["rule_list"],
        {"action": "disable_rules", "_selected_action": [AccessRule.objects.get().pk]},
    )
    assert response.status_code == 302
    assert not AccessRule.objects.get().enabled
    assert manager.get(reverse("admin:audit_accesslog_add")).status_code == 403
    assert b"Import access rules" in manager.get(reverse("admin:index")).content
