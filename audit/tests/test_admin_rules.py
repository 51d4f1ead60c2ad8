"""The access-rule admin: changes audited with old and new values, the rule tester, and the
rules file's import (with a preview) and export."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from audit.models import AccessLog, AccessRule
from audit.rules_file import rules_dump_text
from recordings.models import FlexWorker

pytestmark = [pytest.mark.django_db, pytest.mark.urls("audit.tests.urls")]

FORM = {
    "name": "qa",
    "effect": "allow",
    "enabled": "on",
    "reason": "COMP-1",
    "identities": "qa_*",
    "worker_sids": "",
    "roles": "supervisor",
    "account_sids": "",
    "sources": "",
    "call_sids": "",
}


def rule_changes() -> list[AccessLog]:
    return list(AccessLog.objects.filter(action="rule_change").order_by("sequence"))


def test_changes_are_audited_with_old_and_new_values(admin_client):
    admin_client.post(reverse("admin:audit_accessrule_add"), FORM)
    rule = AccessRule.objects.get()
    created = rule_changes()[-1]
    assert created.reason_code == "rule_created"
    assert created.detail["changes"]["roles"] == {"old": None, "new": ["supervisor"]}

    response = admin_client.post(
        reverse("admin:audit_accessrule_change", args=[rule.pk]),
        {
            **FORM,
            "roles": "supervisor\nadmin",
            "reason": "COMP-2 https://tickets.example.com/COMP-2",
            "valid_until_0": "2027-06-30",
            "valid_until_1": "00:00:00",
        },
    )
    assert response.status_code == 302
    updated = rule_changes()[-1]
    assert (updated.reason_code, updated.identity) == ("rule_updated", "admin:admin")
    assert updated.detail["via"] == "admin"
    assert sorted(updated.detail["fields"]) == ["reason", "roles", "valid_until"]
    changes = updated.detail["changes"]
    assert changes["roles"] == {"old": ["supervisor"], "new": ["supervisor", "admin"]}
    assert changes["valid_until"] == {"old": None, "new": "2027-06-30T00:00:00.000000Z"}
    # The log holds no links: the ticket URL is kept, without its scheme.
    assert changes["reason"]["new"] == "COMP-2 tickets.example.com/COMP-2"


def test_disabling_is_audited_and_rules_are_never_deleted(admin_client):
    rule = AccessRule.objects.create(name="qa", effect="allow", roles=["supervisor"])
    admin_client.post(
        reverse("admin:audit_accessrule_changelist"),
        {"action": "disable_rules", "_selected_action": [rule.pk]},
    )
    disabled = rule_changes()[-1]
    assert disabled.detail["changes"] == {"enabled": {"old": True, "new": False}}
    assert (
        admin_client.post(reverse("admin:audit_accessrule_delete", args=[rule.pk])).status_code
        == 403
    )
    assert AccessRule.objects.filter(pk=rule.pk).exists()


def test_huge_values_are_logged_as_digests(admin_client):
    rule = AccessRule.objects.create(name="big", effect="allow")
    many = "\n".join(f"user_{n:04d}_*" for n in range(400))
    response = admin_client.post(
        reverse("admin:audit_accessrule_change", args=[rule.pk]),
        {**FORM, "name": "big", "identities": many},
    )
    assert response.status_code == 302
    change = rule_changes()[-1].detail["changes"]["identities"]
    assert set(change) == {"old_sha256", "new_sha256"}


@pytest.fixture
def rules(recording_factory):
    recording = recording_factory(source="DialVerb")
    allow = AccessRule.objects.create(
        name="qa-supervisors", effect="allow", identities=["qa_*"], roles=["supervisor"]
    )
    deny = AccessRule.objects.create(
        name="no-trunk", effect="deny", sources=["Trunking"], identities=["qa_*"]
    )
    later = AccessRule.objects.create(
        name="from-2030",
        effect="allow",
        identities=["*"],
        valid_from=datetime(2030, 1, 1, tzinfo=UTC),
    )
    return recording, allow, deny, later


def test_rule_tester_decides_like_url_provider(admin_client, rules):
    recording = rules[0]
    url = reverse("admin:audit_accessrule_test")
    query = {"identity": "qa_alice", "roles": "agent, supervisor", "recording_sid": recording.sid}
    response = admin_client.get(url, query)
    assert response.status_code == 200
    decision = response.context["decision"]
    assert (decision.allowed, decision.reason_code, decision.rule_name) == (
        True,
        "allowed_by_rule",
        "qa-supervisors",
    )
    checks = {check.rule.name: check for check in response.context["checks"]}
    assert checks["qa-supervisors"].applies
    assert not checks["no-trunk"].scope_matches
    assert not checks["from-2030"].in_force
    assert b"decided by rule" in response.content

    denied = admin_client.get(url, {**query, "roles": "agent"}).context["decision"]
    assert (denied.allowed, denied.reason_code) == (False, "no_matching_rule")

    future = admin_client.get(url, {**query, "roles": "", "at": "2031-01-01 00:00"})
    assert future.context["decision"].rule_name == "from-2030"


def test_rule_tester_explains_bad_input(admin_client, rules):
    url = reverse("admin:audit_accessrule_test")
    response = admin_client.get(
        url, {"identity": "x", "recording_sid": "RE" + "0" * 32, "worker_sid": "WK1"}
    )
    errors = response.context["form"].errors
    assert "no recording" in errors["recording_sid"][0]
    assert "WK followed by 32" in errors["worker_sid"][0]
    assert response.context["decision"] is None
    assert admin_client.get(url, {"rule": "qa-supervisors"}).context["focus"] == "qa-supervisors"


RULES_FILE = {
    "rules": [
        {
            "name": "qa-supervisors",
            "effect": "allow",
            "identities": ["qa_*"],
            "worker_sids": [],
            "roles": ["supervisor", "wfo.quality_manager"],
            "recordings": {"account_sids": [], "sources": [], "call_sids": [], "max_age_days": 90},
            "valid_from": None,
            "valid_until": None,
            "reason": "",
        },
        {
            "name": "auditors",
            "effect": "allow",
            "identities": [],
            "worker_sids": [],
            "roles": ["wfo.full_access"],
            "recordings": {
                "account_sids": [],
                "sources": [],
                "call_sids": [],
                "max_age_days": None,
            },
            "valid_from": None,
            "valid_until": "2027-06-30T00:00:00Z",
            "reason": "Audit 2027",
        },
    ]
}


def test_import_previews_then_loads_on_confirmation(admin_client, rules):
    url = reverse("admin:audit_accessrule_import")
    text = json.dumps(RULES_FILE)
    response = admin_client.post(url, {"content": text, "replace": "on"})
    assert response.status_code == 200
    preview = {item["name"]: item for item in response.context["preview"]}
    assert preview["auditors"]["change"] == "created"
    assert preview["qa-supervisors"]["change"] == "updated"
    assert ("roles", '["supervisor"]', '["supervisor", "wfo.quality_manager"]') in preview[
        "qa-supervisors"
    ]["fields"]
    assert ("recordings.max_age_days", "null", "90") in preview["qa-supervisors"]["fields"]
    assert {preview["no-trunk"]["change"], preview["from-2030"]["change"]} == {"disabled"}
    assert not AccessRule.objects.filter(name="auditors").exists()  # nothing written yet
    fingerprint = response.context["form"]["fingerprint"].value()

    response = admin_client.post(
        url, {"content": text, "replace": "on", "fingerprint": fingerprint, "confirm": "1"}
    )
    assert response.status_code == 302
    assert AccessRule.objects.get(name="auditors").roles == ["wfo.full_access"]
    assert not AccessRule.objects.get(name="no-trunk").enabled
    loaded = rule_changes()
    assert {entry.identity for entry in loaded} == {"admin:admin"}
    assert {entry.detail["via"] for entry in loaded} == {"rules_file"}


def test_import_refuses_a_stale_or_edited_preview(admin_client, rules):
    url = reverse("admin:audit_accessrule_import")
    text = json.dumps(RULES_FILE)
    response = admin_client.post(url, {"content": text})
    fingerprint = response.context["form"]["fingerprint"].value()
    AccessRule.objects.filter(name="no-trunk").update(reason="changed meanwhile")
    response = admin_client.post(url, {"content": text, "fingerprint": fingerprint, "confirm": "1"})
    assert response.status_code == 200
    assert response.context["stale"]
    assert not AccessRule.objects.filter(name="auditors").exists()
    fresh = response.context["form"]["fingerprint"].value()
    edited = text.replace("Audit 2027", "Audit 2028")
    response = admin_client.post(url, {"content": edited, "fingerprint": fresh, "confirm": "1"})
    assert response.context["stale"]
    assert not AccessRule.objects.filter(name="auditors").exists()


def test_import_shows_the_problems_of_a_bad_file(admin_client):
    url = reverse("admin:audit_accessrule_import")
    bad = {"rules": [{**RULES_FILE["rules"][0], "identities": ["qa_[12"], "colour": "red"}]}
    upload = SimpleUploadedFile("rules.json", json.dumps(bad).encode(), "application/json")
    response = admin_client.post(url, {"file": upload})
    errors = " ".join(response.context["form"].non_field_errors())
    assert "unknown field 'colour'" in errors
    assert response.context["preview"] is None
    assert "Choose a rules file" in " ".join(
        admin_client.post(url, {}).context["form"].non_field_errors()
    )
    not_json = admin_client.post(url, {"content": "{"})
    assert "not valid JSON" in " ".join(not_json.context["form"].non_field_errors())


def test_export_downloads_the_rules_file(admin_client, rules):
    response = admin_client.get(reverse("admin:audit_accessrule_export"))
    assert response["Content-Disposition"] == 'attachment; filename="access-rules.json"'
    assert response.content.decode() == rules_dump_text()


def test_the_admin_form_takes_the_handling_fields_and_blank_lists(admin_client):
    form = {
        **FORM,
        "queues": "Sales",
        "teams": "",  # blank: no condition, like an omitted field in the rules file
        "workers": "WK" + "b" * 32,
        "handled_by": "caller_team",
    }
    response = admin_client.post(reverse("admin:audit_accessrule_add"), form)
    assert response.status_code == 302
    rule = AccessRule.objects.get()
    assert (rule.queues, rule.teams, rule.workers, rule.handled_by) == (
        ["Sales"],
        [],
        ["WK" + "b" * 32],
        "caller_team",
    )
    assert rule_changes()[-1].detail["changes"]["handled_by"] == {
        "old": None,
        "new": "caller_team",
    }
    bad = admin_client.post(
        reverse("admin:audit_accessrule_add"), {**form, "name": "bad", "workers": "sam"}
    )
    assert "is not a SID" in str(bad.context["adminform"].form.errors["workers"])


def test_rule_tester_says_why_with_the_callers_team(admin_client, recording_factory):
    worker_sid = "WK" + "c" * 32
    FlexWorker.objects.create(sid=worker_sid, workspace_sid="WS" + "0" * 32, team_name="Team Blue")
    recording = recording_factory(
        handled_worker_sids=["WK" + "d" * 32], handled_team_names=["Team Green"]
    )
    AccessRule.objects.create(
        name="own-team", effect="allow", roles=["supervisor"], handled_by="caller_team"
    )
    AccessRule.objects.create(name="supervisors", effect="allow", roles=["supervisor"])
    query = {
        "identity": "sam",
        "roles": "agent",
        "worker_sid": worker_sid,
        "recording_sid": recording.sid,
    }
    response = admin_client.get(reverse("admin:audit_accessrule_test"), query)
    assert response.context["caller"].team == "Team Blue"
    checks = {check.rule.name: check for check in response.context["checks"]}
    assert checks["own-team"].reasons == (
        "needs role supervisor, caller has agent",
        "needs team Team Blue, the recording was handled by Team Green",
    )
    content = response.content.decode()
    assert "needs team Team Blue, the recording was handled by Team Green" in content
    assert "Team Blue" in content


def test_import_preview_shows_the_handling_fields(admin_client):
    data = {
        "rules": [
            {
                "name": "team",
                "effect": "allow",
                "recordings": {"teams": ["Team Blue"], "handled_by": "caller"},
                "enabled": False,
            }
        ]
    }
    response = admin_client.post(
        reverse("admin:audit_accessrule_import"), {"content": json.dumps(data)}
    )
    fields = response.context["preview"][0]["fields"]
    assert ("recordings.teams", "null", '["Team Blue"]') in fields
    assert ("recordings.handled_by", "null", '"caller"') in fields
    assert ("enabled", "null", "false") in fields


def test_lists_are_typed_one_per_line_and_round_trip(admin_client):
    rule = AccessRule.objects.create(
        name="qa", effect="allow", identities=["qa_*", "alice@example.com"], roles=["supervisor"]
    )
    url = reverse("admin:audit_accessrule_change", args=[rule.pk])
    page = admin_client.get(url).content.decode()
    assert "qa_*\nalice@example.com</textarea>" in page
    assert '["qa_*"' not in page  # no JSON brackets or quotes
    for label in ("Worker SIDs", "Queues (SID or name)", "Recording accounts", "Valid until (UTC)"):
        assert label in page

    response = admin_client.post(
        url,
        {
            **FORM,
            # Spaces trimmed, blank lines and repeats dropped, commas kept inside a value.
            "identities": "  qa_*  \r\n\r\nqa_*\r\nbob@example.com\r\n",
            "teams": "Sales, EMEA\nSupport",
            "call_sids": "",
        },
    )
    assert response.status_code == 302
    rule.refresh_from_db()
    assert rule.identities == ["qa_*", "bob@example.com"]
    assert rule.teams == ["Sales, EMEA", "Support"]
    assert rule.call_sids == []
    assert rule_changes()[-1].detail["changes"]["identities"] == {
        "old": ["qa_*", "alice@example.com"],
        "new": ["qa_*", "bob@example.com"],
    }
    # Saving the page unchanged changes nothing.
    admin_client.post(
        url, {**FORM, "identities": "qa_*\nbob@example.com", "teams": "Sales, EMEA\nSupport"}
    )
    assert rule_changes()[-1].detail["fields"] == []


def test_each_bad_value_is_named(admin_client):
    response = admin_client.post(
        reverse("admin:audit_accessrule_add"),
        {
            **FORM,
            "workers": "WK" + "b" * 32 + "\nsam\nWK123",
            "identities": "qa_[12",
            "call_sids": '["CA' + "0" * 32 + '"]',
        },
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["workers"] == [
        "'sam' is not a SID (WK followed by 32 lowercase hex digits).",
        "'WK123' is not a SID (WK followed by 32 lowercase hex digits).",
    ]
    assert "unbalanced '['" in errors["identities"][0]
    assert errors["call_sids"] == ["Write one value per line, without brackets or quotes."]
    assert not AccessRule.objects.exists()


def test_a_new_rule_must_choose_its_effect(admin_client):
    page = admin_client.get(reverse("admin:audit_accessrule_add")).content.decode()
    assert 'type="radio" name="effect" value="allow"' in page
    assert "checked" not in page.split('name="effect"')[1].split(">")[0]
    response = admin_client.post(reverse("admin:audit_accessrule_add"), {**FORM, "effect": ""})
    assert response.context["adminform"].form.errors["effect"] == ["Choose allow or deny."]
    assert not AccessRule.objects.exists()
