"""Maker/checker in the admin: saves that weaken control become pending changes (the object
does not change, the page says so), the change's page shows old → new and lets a second staff
member approve or refuse (never the proposer), permissions, pinned query counts, the
dashboard's box; with the setting off nothing of this shows."""

from __future__ import annotations

import json

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from audit.control_rules import access_rule_change_propose
from audit.models import AccessLog, AccessRule, ControlChange, SealAnchorSwitch
from audit.services import access_rule_values
from audit.tests.test_admin_rules import FORM
from recordings.models import LegalHold, PrivateKey, RetentionPolicy

pytestmark = [pytest.mark.django_db, pytest.mark.urls("audit.tests.urls")]

PENDING = "Saved as pending change #"


@pytest.fixture
def on(settings):
    settings.CONTROL_CHANGES_NEED_APPROVAL = True


@pytest.fixture
def maker(staff_client):
    return staff_client("compliance manager", "maker")


@pytest.fixture
def checker(staff_client):
    return staff_client("compliance manager", "checker")


def _messages(response) -> str:
    return " ".join(str(message) for message in response.context["messages"])


def _page(change: ControlChange) -> str:
    return reverse("admin:audit_controlchange_change", args=[change.pk])


def test_adding_an_allow_rule_waits_and_the_page_says_so(on, maker):
    response = maker.post(reverse("admin:audit_accessrule_add"), FORM, follow=True)
    change = ControlChange.objects.get()
    assert response.redirect_chain[-1][0] == _page(change)
    assert PENDING + str(change.pk) in _messages(response)
    assert "needs a second staff member" in _messages(response)
    assert not AccessRule.objects.exists()
    assert not LogEntry.objects.exists()  # nothing was added
    assert change.kind == "access_rule"
    assert change.new_values["identities"] == ["qa_*"]
    assert AccessLog.objects.filter(reason_code="change_proposed", identity="admin:maker").exists()


def test_a_tightening_edit_applies_at_once(on, maker):
    rule = AccessRule.objects.create(name="qa", effect="allow", identities=["qa_*"])
    form = {**FORM, "identities": "qa_*", "roles": "supervisor"}
    response = maker.post(reverse("admin:audit_accessrule_change", args=[rule.pk]), form)
    assert response.status_code == 302
    rule.refresh_from_db()
    assert rule.roles == ["supervisor"]
    assert not ControlChange.objects.exists()


def test_disabling_a_deny_rule_waits(on, maker):
    rule = AccessRule.objects.create(name="no-pci", effect="deny")
    response = maker.post(
        reverse("admin:audit_accessrule_changelist"),
        {"action": "disable_rules", "_selected_action": [rule.pk]},
        follow=True,
    )
    assert PENDING in _messages(response)
    rule.refresh_from_db()
    assert rule.enabled


def test_checker_approves_on_the_change_page(on, maker, checker, django_assert_num_queries):
    maker.post(reverse("admin:audit_accessrule_add"), FORM)
    change = ControlChange.objects.get()
    page = checker.get(_page(change))
    html = page.content.decode()
    assert 'id="change-approve"' in html
    assert 'data-field="identities"' in html
    assert "+ qa_*" in html
    response = checker.post(_page(change), {"step": "approve", "note": "COMP-2"}, follow=True)
    assert "approved and applied" in _messages(response)
    assert AccessRule.objects.get().identities == ["qa_*"]
    change.refresh_from_db()
    assert change.decided_by_name == "checker"


def test_the_proposer_sees_no_approve_button_and_is_refused(on, maker):
    maker.post(reverse("admin:audit_accessrule_add"), FORM)
    change = ControlChange.objects.get()
    html = maker.get(_page(change)).content.decode()
    assert 'id="change-approve"' not in html
    assert 'id="change-withdraw"' in html
    assert "You proposed this change" in html
    response = maker.post(_page(change), {"step": "approve"}, follow=True)
    assert "you proposed this change" in _messages(response)
    assert not AccessRule.objects.exists()
    denied = AccessLog.objects.get(reason_code="change_denied")
    assert denied.outcome == "denied"
    assert denied.identity == "admin:maker"


def test_refusal_needs_a_note_and_changes_nothing(on, maker, checker):
    maker.post(reverse("admin:audit_accessrule_add"), FORM)
    change = ControlChange.objects.get()
    response = checker.post(_page(change), {"step": "refuse", "note": ""}, follow=True)
    assert "say why" in _messages(response)
    checker.post(_page(change), {"step": "refuse", "note": "too broad"})
    change.refresh_from_db()
    assert change.status == "refused"
    assert not AccessRule.objects.exists()


def test_viewers_see_but_cannot_decide_and_others_are_refused(on, maker, staff_client):
    maker.post(reverse("admin:audit_accessrule_add"), FORM)
    change = ControlChange.objects.get()
    viewer = staff_client("compliance viewer", "viewer")
    page = viewer.get(_page(change))
    assert page.status_code == 200
    assert 'id="change-decide"' not in page.content.decode()
    viewer.post(_page(change), {"step": "approve"})
    change.refresh_from_db()
    assert change.status == "pending"
    nobody = staff_client(None, "nobody")
    assert nobody.get(_page(change)).status_code == 403
    assert nobody.get(reverse("admin:audit_controlchange_changelist")).status_code == 403


def test_query_counts(on, checker, staff_client, django_assert_num_queries):
    maker = staff_client("compliance manager", "maker").user
    for index in range(5):
        rule = AccessRule(name=f"r{index}", effect="allow")
        access_rule_change_propose(rule=rule, before=None, change="created", proposed_by=maker)
    change = ControlChange.objects.first()
    checker.get(reverse("admin:audit_controlchange_changelist"))  # the session settles
    # Session, user, permissions (2), count, page, the kind filter's choices.
    with django_assert_num_queries(7):
        listed = checker.get(reverse("admin:audit_controlchange_changelist"))
        assert listed.status_code == 200
    # Session, user, permissions (2), the change, and its admin_view row (2).
    with django_assert_num_queries(7):
        assert checker.get(_page(change)).status_code == 200


def test_rules_import_that_weakens_waits(on, maker):
    url = reverse("admin:audit_accessrule_import")
    text = json.dumps({"rules": [{"name": "everyone", "effect": "allow"}]})
    preview = maker.post(url, {"content": text})
    fingerprint = preview.context["form"]["fingerprint"].value()
    response = maker.post(url, {"content": text, "fingerprint": fingerprint, "confirm": "1"})
    change = ControlChange.objects.get()
    assert response.url == _page(change)
    assert change.kind == "access_rules_import"
    assert not AccessRule.objects.exists()


def test_retention_policy_edit_and_delete_wait(on, staff_client):
    officer = staff_client("superuser", "officer")
    policy = RetentionPolicy.objects.create(name="calls", keep_days=365)
    form = {
        "name": "calls",
        "enabled": "on",
        "account_sids": "[]",
        "sources": "[]",
        "keep_days": "30",
        "hard_delete_grace_days": "7",
    }
    response = officer.post(
        reverse("admin:recordings_retentionpolicy_change", args=[policy.pk]), form
    )
    change = ControlChange.objects.get()
    assert response.url == _page(change)
    assert RetentionPolicy.objects.get().keep_days == 365
    assert change.old_values["keep_days"] == 365
    assert change.new_values["keep_days"] == 30
    # Deleting the only policy keeps recordings longer: at once. With another, it waits.
    RetentionPolicy.objects.create(name="short", keep_days=10)
    delete = reverse("admin:recordings_retentionpolicy_delete", args=[policy.pk])
    response = officer.post(delete, {"post": "yes"})
    assert response.url == _page(ControlChange.objects.order_by("-pk").first())
    assert RetentionPolicy.objects.filter(pk=policy.pk).exists()


def test_hold_release_waits(on, maker):
    hold = LegalHold.objects.create(reason="litigation", recording_sids=["RE" + "1" * 32])
    response = maker.post(
        reverse("admin:recordings_legalhold_changelist"),
        {"action": "release", "_selected_action": [hold.pk], "release_reason": "closed"},
        follow=True,
    )
    assert PENDING in _messages(response)
    assert "0 holds released" in _messages(response)
    hold.refresh_from_db()
    assert hold.released_at is None
    assert ControlChange.objects.get().kind == "legal_hold_release"


def test_key_delete_waits(on, staff_client):
    officer = staff_client("superuser", "officer")
    key = PrivateKey.objects.create(
        public_key_sid="CR" + "1" * 32,
        fingerprint="f" * 64,
        key_size=2048,
        public_key_pem="pem",
        sealed_private_key="sealed",
        master_key_id="k1",
    )
    delete = reverse("admin:recordings_privatekey_delete", args=[key.pk])
    response = officer.post(delete, {"post": "yes"})
    assert response.url == _page(ControlChange.objects.get())
    assert PrivateKey.objects.filter(pk=key.pk).exists()


def test_pausing_anchoring_waits(on, staff_client):
    officer = staff_client("superuser", "officer")
    response = officer.post(
        reverse("admin:audit_sealanchorswitch_add"),
        {"anchoring_paused": "on", "reason": "moving the bucket"},
    )
    change = ControlChange.objects.get()
    assert response.url == _page(change)
    assert not SealAnchorSwitch.objects.filter(anchoring_paused=True).exists()


def test_dashboard_box_only_with_the_setting(settings, admin_client, maker):
    url = reverse("admin:audit_accesslog_dashboard")
    assert 'id="pending-control-changes"' not in admin_client.get(url).content.decode()
    settings.CONTROL_CHANGES_NEED_APPROVAL = True
    rule = AccessRule(name="x", effect="allow")
    access_rule_change_propose(rule=rule, before=None, change="created", proposed_by=maker.user)
    html = admin_client.get(url).content.decode()
    assert (
        '<strong id="pending-control-changes-count">1</strong> change that weakens control' in html
    )


def test_setting_off_saves_at_once(maker):
    maker.post(reverse("admin:audit_accessrule_add"), FORM)
    assert AccessRule.objects.get().identities == ["qa_*"]
    assert not ControlChange.objects.exists()
    rule = AccessRule.objects.get()
    assert access_rule_values(rule)["enabled"] is True
