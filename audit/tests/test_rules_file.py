"""The rules file: import, export, round trip, and every kind of bad file changing nothing."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.models import AccessLog, AccessRule
from audit.rules_file import (
    RulesFileError,
    rules_dump,
    rules_dump_text,
    rules_load,
    rules_preview,
)
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


# What the export spells out beyond the contract's example: the handling scope fields at their
# empty defaults, and this portal's optional "enabled" flag.
HANDLING_DEFAULTS = {"queues": [], "teams": [], "workers": [], "handled_by": None}


def spelled_out(rule: dict) -> dict:
    """A rule as the export writes it: every field, in the file's order."""
    full = {key: value for key, value in rule.items() if key != "recordings"}
    full["recordings"] = {**rule["recordings"], **HANDLING_DEFAULTS}
    full.setdefault("enabled", True)
    order = [*list(rule), "enabled"]
    return {key: full[key] for key in dict.fromkeys(order)}


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
    expected = {"rules": [spelled_out(CONTRACT_EXAMPLE["rules"][0])]}
    assert json.loads(export()) == expected
    assert export() == json.dumps(expected, indent=2) + "\n"
    assert list(rules_dump()["rules"][0]["recordings"]) == [
        "account_sids",
        "sources",
        "call_sids",
        "max_age_days",
        "queues",
        "teams",
        "workers",
        "handled_by",
    ]
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
        "enabled",
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
    assert [(rule["name"], rule["enabled"]) for rule in rules_dump()["rules"]] == [
        ("contractor-lockout", False),
        ("qa-supervisors", True),
    ]
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
    "unknown handled_by": (
        bad(first_scope(handled_by="team")),
        "rule 'qa-supervisors' (#1): field 'recordings.handled_by': must be null, caller or"
        " caller_team, not 'team'",
    ),
    "handled_by empty string": (bad(first_scope(handled_by="")), "field 'recordings.handled_by'"),
    "queues as a string": (
        bad(first_scope(queues="Sales")),
        "field 'recordings.queues': must be a list",
    ),
    "team that is not a string": (
        bad(first_scope(teams=["Team Blue", 7])),
        "field 'recordings.teams': must be a list of strings",
    ),
    "blank team": (bad(first_scope(teams=[" "])), "field 'recordings.teams'"),
    "handling worker that is no SID": (
        bad(first_scope(workers=["sam@example.com"])),
        "field 'recordings.workers': 'sam@example.com' is not a SID",
    ),
    "enabled as a string": (bad(first_rule(enabled="yes")), "field 'enabled': must be true"),
    "unknown field inside a rule with omitted ones": (
        {"rules": [{"name": "x", "effect": "allow", "recordings": {"team": ["A"]}}]},
        "rule 'x' (#1): unknown field 'recordings.team'",
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
    "recordings": {
        "account_sids": [],
        "sources": [],
        "call_sids": [],
        "max_age_days": None,
        **HANDLING_DEFAULTS,
    },
    "valid_from": None,
    "valid_until": None,
    "reason": "",
    "enabled": True,
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


WORKER_B = "WK" + "b" * 32
HANDLING_RULE = {
    "name": "team-blue-supervisors",
    "effect": "allow",
    "roles": ["supervisor"],
    "recordings": {
        "queues": ["WQ" + "c" * 32, "Sales"],
        "teams": ["Team Blue"],
        "workers": [WORKER_B],
        "handled_by": "caller_team",
    },
}


def test_handling_fields_load_export_and_preview():
    rules_load({"rules": [HANDLING_RULE]}, replace=False)
    rule = AccessRule.objects.get(name="team-blue-supervisors")
    assert (rule.queues, rule.teams, rule.workers, rule.handled_by) == (
        ["WQ" + "c" * 32, "Sales"],
        ["Team Blue"],
        [WORKER_B],
        "caller_team",
    )
    scope = rules_dump()["rules"][0]["recordings"]
    assert scope == {
        "account_sids": [],
        "sources": [],
        "call_sids": [],
        "max_age_days": None,
        **HANDLING_RULE["recordings"],
    }
    changed = copy.deepcopy(HANDLING_RULE)
    changed["recordings"]["handled_by"] = None
    changed["recordings"]["teams"] = ["Team Blue", "Team Green"]
    (preview,) = rules_preview({"rules": [changed]}, replace=False)
    assert preview.change == "updated"
    assert preview.fields == (
        ("recordings.teams", ["Team Blue"], ["Team Blue", "Team Green"]),
        ("recordings.handled_by", "caller_team", None),
    )
    rules_load({"rules": [changed]}, replace=False)
    assert AccessRule.objects.get(name="team-blue-supervisors").handled_by == ""
    row = AccessLog.objects.order_by("-sequence").first()
    assert sorted(row.detail["fields"]) == ["handled_by", "teams"]


def test_a_disabled_rule_is_exported_and_loads_back_disabled(tmp_path):
    rules_load(two_rules(), replace=False)
    rules_load(CONTRACT_EXAMPLE, replace=True)  # disables contractor-lockout
    text = export()
    assert '"enabled": false' in text
    summary = rules_load(json.loads(text), replace=True)
    assert summary.unchanged == ["contractor-lockout", "qa-supervisors"]
    assert AccessRule.objects.get(name="contractor-lockout").enabled is False
    data = json.loads(text)
    data["rules"][0]["enabled"] = True
    (preview,) = [p for p in rules_preview(data, replace=True) if p.name == "contractor-lockout"]
    assert preview.fields == (("enabled", False, True),)


# --- Round trip: a property over generated rule sets ------------------------------------------

SIDS = {prefix: ["".join([prefix, digit * 32]) for digit in "0a7"] for prefix in ("WK", "AC", "CA")}
TEXTS = ["supervisor", "agent", "DialVerb", "Team Blue", "Équipe Verte", "Sales", "WQ" + "d" * 32]
ZONES = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]


def _maybe(draw, key, strategy, into):
    """Set ``key`` in ``into`` from ``strategy``, or leave it out (its default applies)."""
    if draw(st.booleans()):
        into[key] = draw(strategy)


@st.composite
def rule_files(draw):
    names = draw(
        st.lists(
            st.sampled_from(["a", "b-rule", "Zeta", "räume", "qa team", "x" * 100]),
            unique=True,
            max_size=4,
        )
    )
    rules = []
    for name in names:
        rule = {"name": name, "effect": draw(st.sampled_from(["allow", "deny"]))}
        lists = st.lists
        _maybe(
            draw, "identities", lists(st.sampled_from(["qa_*", "alice", "[ab]?"]), max_size=2), rule
        )
        _maybe(draw, "worker_sids", lists(st.sampled_from(SIDS["WK"]), max_size=2), rule)
        _maybe(draw, "roles", lists(st.sampled_from(TEXTS), max_size=2), rule)
        scope = {}
        _maybe(draw, "account_sids", lists(st.sampled_from(SIDS["AC"]), max_size=2), scope)
        _maybe(draw, "sources", lists(st.sampled_from(TEXTS), max_size=2), scope)
        _maybe(draw, "call_sids", lists(st.sampled_from(SIDS["CA"]), max_size=2), scope)
        _maybe(draw, "max_age_days", st.one_of(st.none(), st.integers(0, 36500)), scope)
        _maybe(draw, "queues", lists(st.sampled_from(TEXTS), max_size=2), scope)
        _maybe(draw, "teams", lists(st.sampled_from(TEXTS), max_size=2), scope)
        _maybe(draw, "workers", lists(st.sampled_from(SIDS["WK"]), max_size=2), scope)
        _maybe(draw, "handled_by", st.sampled_from([None, "caller", "caller_team"]), scope)
        if scope or draw(st.booleans()):
            rule["recordings"] = scope
        start = draw(st.one_of(st.none(), st.integers(0, 10**9)))
        end = draw(st.one_of(st.none(), st.integers(1, 10**9)))
        if start is not None and end is not None:
            end = start + end
        for key, seconds in (("valid_from", start), ("valid_until", end)):
            if seconds is not None or draw(st.booleans()):
                moment = None
                if seconds is not None:
                    base = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
                    moment = base.astimezone(draw(st.sampled_from(ZONES))).isoformat()
                rule[key] = moment
        _maybe(
            draw,
            "reason",
            st.text(
                st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=30
            ),
            rule,
        )
        _maybe(draw, "enabled", st.booleans(), rule)
        rules.append(rule)
    return {"rules": rules}


def _state() -> list[dict]:
    return list(AccessRule.objects.order_by("pk").values())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=rule_files(), earlier=rule_files())
def test_import_of_an_export_gives_back_exactly_the_rules(data, earlier):
    with transaction.atomic():
        rules_load(earlier, replace=False)
        rules_load(data, replace=True)
        before = _state()
        text = rules_dump_text()
        summary = rules_load(json.loads(text), replace=True)
        assert summary.created == summary.updated == summary.disabled == []
        assert _state() == before
        assert rules_dump_text() == text
        # And what the file said is what the export says, every omitted field spelled out.
        exported = {rule["name"]: rule for rule in json.loads(text)["rules"]}
        for rule in data["rules"]:
            out = exported[rule["name"]]
            assert out["enabled"] is rule.get("enabled", True)
            for key in ("identities", "worker_sids", "roles", "reason"):
                assert out[key] == rule.get(key, [] if key != "reason" else "")
            for key, value in rule.get("recordings", {}).items():
                assert out["recordings"][key] == value
            for key in ("valid_from", "valid_until"):
                if rule.get(key) is not None:
                    assert datetime.fromisoformat(out[key]) == datetime.fromisoformat(rule[key])
                else:
                    assert out[key] is None
        transaction.set_rollback(True)
