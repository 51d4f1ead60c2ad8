"""The rules file: import, export, round trip, and every kind of bad file changing nothing."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from audit.models import AccessLog, AccessRule
from audit.rules_file import RulesFileError, rules_dump, rules_load, rules_preview
from audit.tests.helpers import command_output

pytestmark = pytest.mark.django_db

WORKER = "WK" + "0123456789abcdef" * 2
ACCOUNT = "AC" + "f" * 32

CONTRACT_EXAMPLE = {
    "rules": [
        {
            "name": "qa-supervisors",
            "effect": "allow",
            "identities": ["qa_*"],
            "worker_sids": [],
            "roles": ["supervisor", "wfo.quality_manager"],
            "recordings": {"account_sids": [], "sources": [], "call_sids": [], "max_age_days": 365},
            "valid_from": None,
            "valid_until": "2027-06-30T00:00:00Z",
            "reason": "Quality review, ticket COMP-12",
        }
    ]
}

SECOND_RULE = {
    "name": "contractor-lockout",
    "effect": "deny",
    "identities": ["ext-*", "[vV]endor_?"],
    "worker_sids": [WORKER],
    "roles": [],
    "recordings": {
        "account_sids": [ACCOUNT],
        "sources": ["DialVerb"],
        "call_sids": [],
        "max_age_days": None,
    },
    "valid_from": "2026-01-01T09:30:00+02:00",
    "valid_until": None,
    "reason": "Contractors never hear customer calls — COMP-7",
}


def two_rules() -> dict:
    data = copy.deepcopy(CONTRACT_EXAMPLE)
    data["rules"].append(copy.deepcopy(SECOND_RULE))
    return data


def export() -> str:
    return command_output("export_access_rules")


def import_file(tmp_path: Path, content: str | bytes, *args: str) -> str:
    path = tmp_path / "rules.json"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return command_output("import_access_rules", str(path), *args)


def database_state() -> tuple:
    rules = list(AccessRule.objects.order_by("name").values())
    return rules, AccessLog.objects.count()


def test_the_contract_example_exports_in_the_contract_format(tmp_path):
    import_file(tmp_path, json.dumps(CONTRACT_EXAMPLE))
    assert json.loads(export()) == CONTRACT_EXAMPLE
    assert export() == json.dumps(CONTRACT_EXAMPLE, indent=2) + "\n"
    assert list(rules_dump()["rules"][0]) == [
        "name",
        "effect",
        "identities",
        "worker_sids",
        "roles",
        "recordings",
        "valid_from",
        "valid_until",
        "reason",
    ]


def test_export_import_export_is_byte_identical(tmp_path):
    import_file(tmp_path, json.dumps(two_rules()))
    first = export()
    assert '"valid_from": "2026-01-01T07:30:00Z"' in first  # offsets come back as UTC Z
    assert "\\u2014" in first  # ASCII output whatever the terminal
    import_file(tmp_path, first, "--replace")
    assert export() == first
    AccessRule.objects.all().update(reason="changed behind our back")
    import_file(tmp_path, first, "--replace")
    assert export() == first


def test_import_upserts_by_name_and_logs_each_change(tmp_path):
    summary = rules_load(two_rules(), replace=False)
    assert sorted(summary.created) == ["contractor-lockout", "qa-supervisors"]
    changed = two_rules()
    changed["rules"][0]["roles"] = ["admin"]
    summary = rules_load(changed, replace=False)
    assert summary.updated == ["qa-supervisors"]
    assert summary.unchanged == ["contractor-lockout"]
    assert AccessRule.objects.get(name="qa-supervisors").roles == ["admin"]
    log = list(AccessLog.objects.order_by("sequence").values_list("reason_code", "rule_name"))
    assert log == [
        ("rule_created", "qa-supervisors"),
        ("rule_created", "contractor-lockout"),
        ("rule_updated", "qa-supervisors"),
    ]
    row = AccessLog.objects.order_by("-sequence").first()
    assert row.action == "rule_change"
    assert row.detail["fields"] == ["roles"]


def test_without_replace_other_rules_stay_and_with_replace_they_are_disabled(tmp_path):
    rules_load(two_rules(), replace=False)
    rules_load(CONTRACT_EXAMPLE, replace=False)
    assert AccessRule.objects.filter(enabled=True).count() == 2
    summary = rules_load(CONTRACT_EXAMPLE, replace=True)
    assert summary.disabled == ["contractor-lockout"]
    lockout = AccessRule.objects.get(name="contractor-lockout")  # kept, never deleted
    assert lockout.enabled is False
    assert [rule["name"] for rule in rules_dump()["rules"]] == ["qa-supervisors"]
    summary = rules_load(two_rules(), replace=True)
    assert summary.updated == ["contractor-lockout"]
    assert AccessRule.objects.get(name="contractor-lockout").enabled is True


def test_import_prints_a_summary(tmp_path):
    assert "1 created, 0 updated, 0 unchanged, 0 disabled" in import_file(
        tmp_path, json.dumps(CONTRACT_EXAMPLE)
    )


def bad(mutate) -> dict:
    data = two_rules()
    mutate(data)
    return data


def first_rule(**changes):
    def mutate(data):
        data["rules"][0].update(changes)

    return mutate


def first_scope(**changes):
    def mutate(data):
        data["rules"][0]["recordings"].update(changes)

    return mutate


BAD_FILES = {
    "unknown top-level field": (
        bad(lambda d: d.update(version=2)),
        "unknown top-level field 'version'",
    ),
    "no rules list": ({"rule": []}, '"rules" list'),
    "unknown rule field": (
        bad(first_rule(note="x")),
        "rule 'qa-supervisors' (#1): unknown field 'note'",
    ),
    "unknown scope field": (
        bad(first_scope(min_age_days=1)),
        "rule 'qa-supervisors' (#1): unknown field 'recordings.min_age_days'",
    ),
    "missing effect": (
        bad(lambda d: d["rules"][1].pop("effect")),
        "rule 'contractor-lockout' (#2): missing field 'effect'",
    ),
    "a later issue's scope field": (
        bad(first_scope(queues=["Sales"])),
        "rule 'qa-supervisors' (#1): field 'recordings.queues' is not supported",
    ),
    "a later issue's handled_by, even null": (
        bad(first_scope(handled_by=None)),
        "field 'recordings.handled_by' is not supported",
    ),
    "unknown field beside omitted ones": (
        {"rules": [{"name": "x", "effect": "allow", "role": ["supervisor"]}]},
        "rule 'x' (#1): unknown field 'role'",
    ),
    "bad glob": (
        bad(first_rule(identities=["qa_[12"])),
        "rule 'qa-supervisors' (#1): field 'identities': unbalanced '['",
    ),
    "date without time zone": (
        bad(first_rule(valid_until="2027-06-30T00:00:00")),
        "rule 'qa-supervisors' (#1): field 'valid_until'",
    ),
    "date that is no date": (
        bad(first_rule(valid_from="next tuesday")),
        "rule 'qa-supervisors' (#1): field 'valid_from'",
    ),
    "date only": (bad(first_rule(valid_from="2026-01-01")), "field 'valid_from'"),
    "bad effect": (bad(first_rule(effect="permit")), "rule 'qa-supervisors' (#1): field 'effect'"),
    "duplicate name": (
        bad(lambda d: d["rules"][1].update(name="qa-supervisors")),
        "rule 'qa-supervisors' (#2): field 'name': duplicate of rule #1",
    ),
    "list as a string": (bad(first_rule(roles="supervisor")), "field 'roles': must be a list"),
    "age as a string": (bad(first_scope(max_age_days="365")), "field 'recordings.max_age_days'"),
    "age as a boolean": (bad(first_scope(max_age_days=True)), "field 'recordings.max_age_days'"),
    "recordings not an object": (bad(first_rule(recordings=[])), "field 'recordings' must be"),
    "rule not an object": (
        bad(lambda d: d["rules"].append("oops")),
        "rule #3: must be a JSON object",
    ),
    "malformed SID": (bad(first_rule(worker_sids=["WK123"])), "field 'worker_sids'"),
    "window that never opens": (
        bad(first_rule(valid_from="2028-01-01T00:00:00Z")),
        "field 'valid_until': must be later",
    ),
    "name missing": (bad(lambda d: d["rules"][0].pop("name")), "rule #1: missing field 'name'"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_file_exits_1_names_the_problem_and_changes_nothing(tmp_path, case):
    rules_load(two_rules(), replace=False)
    AccessRule.objects.filter(name="contractor-lockout").update(reason="before")
    before = database_state()
    data, complaint = BAD_FILES[case]
    with pytest.raises(CommandError) as caught:
        import_file(tmp_path, json.dumps(data), "--replace")
    assert caught.value.returncode == 1
    assert complaint in str(caught.value)
    assert "nothing was changed" in str(caught.value)
    assert database_state() == before


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ('{"rules": [', "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        ('{"rules": [], "rules": []}', "duplicate key 'rules'"),
        ("[]", "must be a JSON object"),
    ],
)
def test_unparseable_files_exit_1_and_change_nothing(tmp_path, content, complaint):
    rules_load(two_rules(), replace=False)
    before = database_state()
    with pytest.raises(CommandError) as caught:
        import_file(tmp_path, content, "--replace")
    assert caught.value.returncode == 1
    assert complaint in str(caught.value)
    assert database_state() == before


def test_an_unreadable_file_exits_1(tmp_path):
    with pytest.raises(CommandError, match="cannot read") as caught:
        call_command("import_access_rules", str(tmp_path / "missing.json"))
    assert caught.value.returncode == 1


def test_all_problems_are_reported_at_once():
    data = two_rules()
    data["rules"][0]["effect"] = "permit"
    data["rules"][1]["identities"] = ["]"]
    with pytest.raises(RulesFileError) as caught:
        rules_load(data, replace=False)
    assert len(caught.value.problems) == 2
    assert AccessRule.objects.count() == 0


def test_an_empty_rules_list_with_replace_disables_everything():
    rules_load(two_rules(), replace=False)
    summary = rules_load({"rules": []}, replace=True)
    assert sorted(summary.disabled) == ["contractor-lockout", "qa-supervisors"]
    assert AccessRule.objects.count() == 2


MINIMAL_RULE = {"name": "x", "effect": "allow", "roles": ["supervisor"]}
FULL_MINIMAL_RULE = {
    "name": "x",
    "effect": "allow",
    "identities": [],
    "worker_sids": [],
    "roles": ["supervisor"],
    "recordings": {"account_sids": [], "sources": [], "call_sids": [], "max_age_days": None},
    "valid_from": None,
    "valid_until": None,
    "reason": "",
}


def test_omitted_optional_fields_take_their_empty_defaults(tmp_path):
    output = import_file(tmp_path, json.dumps({"rules": [MINIMAL_RULE]}))
    assert "1 created" in output
    rule = AccessRule.objects.get(name="x")
    assert (rule.identities, rule.worker_sids, rule.roles) == ([], [], ["supervisor"])
    assert (rule.account_sids, rule.sources, rule.call_sids) == ([], [], [])
    assert (rule.max_age_days, rule.valid_from, rule.valid_until, rule.reason) == (
        None,
        None,
        None,
        "",
    )
    assert json.loads(export()) == {"rules": [FULL_MINIMAL_RULE]}
    # The full form of the same rule changes nothing.
    assert rules_load({"rules": [FULL_MINIMAL_RULE]}, replace=False).unchanged == ["x"]


def test_omitted_scope_fields_default_inside_a_partial_recordings_object():
    rules_load(
        {"rules": [{"name": "recent", "effect": "deny", "recordings": {"max_age_days": 30}}]},
        replace=False,
    )
    rule = AccessRule.objects.get(name="recent")
    assert (rule.account_sids, rule.sources, rule.call_sids, rule.max_age_days) == ([], [], [], 30)
    assert (rule.identities, rule.roles, rule.reason) == ([], [], "")


def test_an_omitted_field_resets_an_existing_rule_to_the_default():
    rules_load(two_rules(), replace=False)
    rules_load({"rules": [{"name": "contractor-lockout", "effect": "deny"}]}, replace=False)
    rule = AccessRule.objects.get(name="contractor-lockout")
    assert (rule.identities, rule.worker_sids, rule.account_sids, rule.sources) == ([], [], [], [])
    assert (rule.valid_from, rule.reason) == (None, "")
    assert AccessLog.objects.order_by("-sequence").first().reason_code == "rule_updated"


def test_the_import_preview_accepts_omitted_fields():
    rules_load(two_rules(), replace=False)
    previews = {
        preview.name: preview
        for preview in rules_preview(
            {"rules": [MINIMAL_RULE, {"name": "qa-supervisors", "effect": "allow"}]},
            replace=False,
        )
    }
    assert previews["x"].change == "created"
    assert ("reason", None, "") in previews["x"].fields
    assert ("recordings.max_age_days", None, None) in previews["x"].fields
    assert previews["qa-supervisors"].change == "updated"
    assert ("valid_until", "2027-06-30T00:00:00Z", None) in previews["qa-supervisors"].fields
    assert AccessRule.objects.count() == 2  # a preview writes nothing
