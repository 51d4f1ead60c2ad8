"""Restricted recordings and access grants in ``access_decide``: property tests that a restricted
recording is never played without a grant or a rule that names restricted recordings, against a
plain reference, and one example per clause."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.decisions import (
    Caller,
    GrantView,
    RecordingFacts,
    RuleView,
    access_decide,
    access_explain,
)
from audit.models import AccessRule
from audit.rules_file import RulesFileError, rules_dump, rules_load
from audit.tests.test_decisions import (
    CALL_A,
    CALL_B,
    NAMES,
    NOW,
    TEAMS,
    WORKER_A,
    WORKER_B,
    callers,
    recordings,
    reference_decide,
    rule_sets,
)

RECORDING_SID = "RE" + "1" * 32
OTHER_SID = "RE" + "2" * 32
HOUR = timedelta(hours=1)


@st.composite
def restricted_rule_sets(draw):
    """The decision tests' rules, each naming restricted recordings or not."""
    return [
        dataclasses.replace(RuleView.of(rule), restricted=draw(st.booleans()))
        for rule in draw(rule_sets())
    ]


@st.composite
def grant_lists(draw):
    grants = []
    for index in range(draw(st.integers(min_value=0, max_value=3))):
        scope = draw(st.sampled_from(["recording", "call", "team"]))
        value = draw(
            {
                "recording": st.sampled_from([RECORDING_SID, OTHER_SID]),
                "call": st.sampled_from([CALL_A, CALL_B]),
                "team": st.sampled_from(TEAMS),
            }[scope]
        )
        start = NOW + draw(st.sampled_from([-2 * HOUR, -HOUR, timedelta(0), HOUR]))
        grants.append(
            GrantView(
                id=index + 1,
                grantee_identity=draw(st.sampled_from(NAMES[:-1])),
                grantee_worker_sid=draw(st.sampled_from(["", WORKER_A, WORKER_B])),
                scope=scope,
                scope_value=value,
                valid_from=start,
                valid_until=start + draw(st.sampled_from([HOUR, 2 * HOUR, 3 * HOUR])),
                revoked_at=draw(st.sampled_from([None, NOW - HOUR, NOW, NOW + HOUR])),
            )
        )
    return grants


restricted_recordings = st.builds(
    lambda facts, restricted: dataclasses.replace(facts, restricted=restricted),
    recordings,
    st.booleans(),
)


def reference_grant(caller, recording, grants):
    """The first grant (by id) in force at NOW, given to the caller, covering the recording."""
    for grant in sorted(grants, key=lambda g: g.id):
        if grant.revoked_at is not None and grant.revoked_at <= NOW:
            continue
        if not grant.valid_from <= NOW < grant.valid_until:
            continue
        names = [name for name in (caller.identity, caller.realm_user_id) if name != ""]
        mine = grant.grantee_identity in names or (
            grant.grantee_worker_sid != "" and grant.grantee_worker_sid == caller.worker_sid
        )
        if not mine:
            continue
        if grant.scope == "recording" and grant.scope_value == recording.sid:
            return grant
        if grant.scope == "call" and recording.call_sid and grant.scope_value == recording.call_sid:
            return grant
        if grant.scope == "team" and grant.scope_value in recording.teams:
            return grant
    return None


def reference_restricted_decide(caller, recording, rules, grants):
    """docs/contract.md's words: a rule naming restricted recordings applies only to them; a
    general allow never applies to a restricted one; deny rules still win; then grants."""
    if recording.restricted:
        kept = [rule for rule in rules if rule.restricted or rule.effect == "deny"]
    else:
        kept = [rule for rule in rules if not rule.restricted]
    allowed, reason, name, _rule_id = reference_decide(caller, recording, NOW, kept)
    if reason != "no_matching_rule":
        return allowed, reason, name
    grant = reference_grant(caller, recording, grants)
    if grant is not None:
        return True, "allowed_by_grant", None
    return False, "restricted_no_grant" if recording.restricted else "no_matching_rule", None


@settings(max_examples=200, deadline=None)
@given(
    caller=callers,
    recording=restricted_recordings,
    rules=restricted_rule_sets(),
    grants=grant_lists(),
)
def test_access_decide_agrees_with_the_restricted_reference(caller, recording, rules, grants):
    decision = access_decide(
        caller=caller, recording=recording, now=NOW, rules=rules, grants=grants
    )
    expected = reference_restricted_decide(caller, recording, rules, grants)
    assert (decision.allowed, decision.reason_code, decision.rule_name) == expected
    checks = access_explain(caller=caller, recording=recording, now=NOW, rules=rules)
    assert all(bool(check.reasons) is not check.applies for check in checks)


@settings(max_examples=200, deadline=None)
@given(
    caller=callers,
    recording=recordings,
    rules=restricted_rule_sets(),
    grants=grant_lists(),
)
def test_a_restricted_recording_is_never_played_without_a_grant_or_a_naming_rule(
    caller, recording, rules, grants
):
    restricted = dataclasses.replace(recording, restricted=True)
    decision = access_decide(
        caller=caller, recording=restricted, now=NOW, rules=rules, grants=grants
    )
    if not decision.allowed:
        return
    if decision.reason_code == "allowed_by_rule":
        named = next(rule for rule in rules if rule.name == decision.rule_name)
        assert named.restricted
        assert named.effect == "allow"
    else:
        assert decision.reason_code == "allowed_by_grant"
        grant = decision.grant
        assert grant is not None
        assert grant.in_force(NOW)
        assert grant.is_callers(caller)
        assert grant.covers(restricted)
    # Without the grants and the naming rules, the same request is refused.
    general = [rule for rule in rules if not rule.restricted]
    refused = access_decide(caller=caller, recording=restricted, now=NOW, rules=general, grants=[])
    assert not refused.allowed


@settings(max_examples=200, deadline=None)
@given(
    caller=callers,
    recording=recordings,
    rules=restricted_rule_sets(),
    grants=grant_lists(),
)
def test_restricting_only_takes_access_away_and_deny_rules_win_over_grants(
    caller, recording, rules, grants
):
    open_ = dataclasses.replace(recording, restricted=False)
    general = [rule for rule in rules if not rule.restricted]
    before = access_decide(caller=caller, recording=open_, now=NOW, rules=general, grants=grants)
    after = access_decide(
        caller=caller,
        recording=dataclasses.replace(recording, restricted=True),
        now=NOW,
        rules=general,
        grants=grants,
    )
    if after.allowed:
        assert before.allowed
    if before.reason_code == "denied_by_rule":
        assert after.reason_code == "denied_by_rule"


# --- Examples -------------------------------------------------------------------------------


def facts(**fields) -> RecordingFacts:
    return RecordingFacts(sid=RECORDING_SID, account_sid="AC" + "a" * 32, **fields)


def rule(name="r", effect="allow", **fields) -> RuleView:
    return RuleView(id=1, name=name, effect=effect, **fields)


def grant(**fields) -> GrantView:
    values = {
        "id": 7,
        "grantee_identity": "alice",
        "scope": "recording",
        "scope_value": RECORDING_SID,
        "valid_from": NOW - HOUR,
        "valid_until": NOW + HOUR,
    }
    return GrantView(**{**values, **fields})


def test_a_general_allow_does_not_play_a_restricted_recording():
    alice = Caller(identity="alice", roles=("supervisor",))
    everyone = rule(roles=["supervisor"])
    assert access_decide(caller=alice, recording=facts(), now=NOW, rules=[everyone]).allowed
    refused = access_decide(
        caller=alice, recording=facts(restricted=True), now=NOW, rules=[everyone]
    )
    assert (refused.allowed, refused.reason_code) == (False, "restricted_no_grant")
    words = access_explain(
        caller=alice, recording=facts(restricted=True), now=NOW, rules=[everyone]
    )[0].reasons
    assert any("restricted" in reason for reason in words)


def test_a_rule_naming_restricted_recordings_plays_only_them():
    alice = Caller(identity="alice", roles=("supervisor",))
    naming = rule(name="pci", roles=["supervisor"], restricted=True)
    allowed = access_decide(caller=alice, recording=facts(restricted=True), now=NOW, rules=[naming])
    assert (allowed.allowed, allowed.rule_name) == (True, "pci")
    assert not access_decide(caller=alice, recording=facts(), now=NOW, rules=[naming]).allowed


def test_a_grant_plays_its_scope_for_its_grantee_until_it_expires_or_is_revoked():
    alice, bob = Caller(identity="alice"), Caller(identity="bob")
    restricted = facts(restricted=True, call_sid=CALL_A, teams=("Team Blue",))
    for given_grant in (
        grant(),
        grant(scope="call", scope_value=CALL_A),
        grant(scope="team", scope_value="Team Blue"),
        grant(grantee_identity="nobody", grantee_worker_sid=WORKER_A),
    ):
        caller = (
            alice
            if given_grant.grantee_identity == "alice"
            else Caller(identity="carol", worker_sid=WORKER_A)
        )
        decision = access_decide(
            caller=caller, recording=restricted, now=NOW, rules=[], grants=[given_grant]
        )
        assert (decision.allowed, decision.reason_code) == (True, "allowed_by_grant")
        assert decision.grant == given_grant
    for refused, who in (
        (grant(), bob),
        (grant(scope_value=OTHER_SID), alice),
        (grant(scope="call", scope_value=CALL_B), alice),
        (grant(valid_until=NOW), alice),
        (grant(valid_from=NOW + timedelta(seconds=1)), alice),
        (grant(revoked_at=NOW), alice),
    ):
        decision = access_decide(
            caller=who, recording=restricted, now=NOW, rules=[], grants=[refused]
        )
        assert (decision.allowed, decision.reason_code) == (False, "restricted_no_grant")


def test_a_deny_rule_wins_over_a_grant():
    alice = Caller(identity="alice")
    decision = access_decide(
        caller=alice,
        recording=facts(restricted=True),
        now=NOW,
        rules=[rule(name="nobody", effect="deny")],
        grants=[grant()],
    )
    assert (decision.allowed, decision.reason_code) == (False, "denied_by_rule")


@pytest.mark.django_db
def test_the_rules_file_names_restricted_recordings_and_exports_it_only_when_set():
    data = {
        "rules": [
            {"name": "pci", "effect": "allow", "roles": ["qa"], "recordings": {"restricted": True}},
            {"name": "plain", "effect": "allow", "roles": ["qa"]},
        ]
    }
    rules_load(data, replace=False)
    assert AccessRule.objects.get(name="pci").restricted
    assert not AccessRule.objects.get(name="plain").restricted
    dumped = {rule["name"]: rule["recordings"] for rule in rules_dump()["rules"]}
    assert dumped["pci"]["restricted"] is True
    assert "restricted" not in dumped["plain"]
    assert (
        str(rules_load(rules_dump(), replace=True))
        == "0 created, 0 updated, 2 unchanged, 0 disabled"
    )
    with pytest.raises(RulesFileError, match=r"recordings\.restricted"):
        rules_load(
            {"rules": [{"name": "x", "effect": "allow", "recordings": {"restricted": "yes"}}]},
            replace=False,
        )
