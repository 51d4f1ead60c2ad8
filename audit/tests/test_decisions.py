"""``access_decide``: a property test against a deliberately plain reference of docs/contract.md's
semantics, and one example test per clause."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.decisions import (
    Caller,
    Decision,
    RecordingFacts,
    RuleView,
    access_decide,
    access_explain,
    rules_in_force,
)
from audit.models import AccessRule
from recordings.models import Recording

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
WORKER_A, WORKER_B = "WK" + "a" * 32, "WK" + "b" * 32
ACCOUNT_A, ACCOUNT_B = "AC" + "a" * 32, "AC" + "b" * 32
CALL_A, CALL_B = "CA" + "a" * 32, "CA" + "b" * 32


# --- The reference: the contract's words as plain loops, sharing nothing with the code ------


def reference_glob(pattern: str, text: str) -> bool:
    """Shell-style, case-sensitive: ``*``, ``?``, ``[abc]``, ``[!abc]``, ``[a-z]``."""
    if pattern == "":
        return text == ""
    first = pattern[0]
    if first == "*":
        return any(reference_glob(pattern[1:], text[cut:]) for cut in range(len(text) + 1))
    if text == "":
        return False
    if first == "?":
        return reference_glob(pattern[1:], text[1:])
    if first == "[":
        close = pattern.index("]", 2)
        members = pattern[1:close]
        negate = members.startswith("!")
        if negate:
            members = members[1:]
        hit = False
        position = 0
        while position < len(members):
            if position + 2 < len(members) and members[position + 1] == "-":
                if members[position] <= text[0] <= members[position + 2]:
                    hit = True
                position += 3
            else:
                if members[position] == text[0]:
                    hit = True
                position += 1
        if hit == negate:
            return False
        return reference_glob(pattern[close + 1 :], text[1:])
    return first == text[0] and reference_glob(pattern[1:], text[1:])


def reference_decide(caller, recording, now, rules):
    allows = []
    denies = []
    for rule in rules:
        if not rule.enabled:
            continue
        if rule.valid_from is not None and now < rule.valid_from:
            continue
        if rule.valid_until is not None and now >= rule.valid_until:
            continue
        if len(rule.identities) > 0:
            found = False
            for pattern in rule.identities:
                if caller.identity != "" and reference_glob(pattern, caller.identity):
                    found = True
                if caller.realm_user_id != "" and reference_glob(pattern, caller.realm_user_id):
                    found = True
            if not found:
                continue
        if len(rule.worker_sids) > 0:
            found = False
            for sid in rule.worker_sids:
                if sid == caller.worker_sid:
                    found = True
            if not found:
                continue
        if len(rule.roles) > 0:
            found = False
            for role in rule.roles:
                for held in caller.roles:
                    if role == held:
                        found = True
            if not found:
                continue
        if len(rule.account_sids) > 0 and recording.account_sid not in rule.account_sids:
            continue
        if len(rule.sources) > 0 and recording.source not in rule.sources:
            continue
        if len(rule.call_sids) > 0 and recording.call_sid not in rule.call_sids:
            continue
        if rule.max_age_days is not None:
            started = recording.start_time
            if started is None:
                started = recording.date_created
            if started is None:
                continue
            if (now - started).total_seconds() > rule.max_age_days * 86400:
                continue
        # Who handled it: any listed value among the recording's handling facts.
        skip = False
        for wanted, held in (
            (rule.queues, recording.queues),
            (rule.teams, recording.teams),
            (rule.workers, recording.workers),
        ):
            if len(wanted) > 0:
                found = False
                for value in held:
                    if value in wanted:
                        found = True
                if not found:
                    skip = True
        if skip:
            continue
        if rule.handled_by == "caller" and (
            caller.worker_sid == "" or caller.worker_sid not in recording.workers
        ):
            continue
        if rule.handled_by == "caller_team" and (
            caller.team == "" or caller.team not in recording.teams
        ):
            continue
        if rule.effect == "deny":
            denies.append(rule)
        else:
            allows.append(rule)
    if denies:
        lowest = denies[0]
        for rule in denies:
            if rule.name < lowest.name:
                lowest = rule
        return (False, "denied_by_rule", lowest.name, lowest.id)
    if allows:
        lowest = allows[0]
        for rule in allows:
            if rule.name < lowest.name:
                lowest = rule
        return (True, "allowed_by_rule", lowest.name, lowest.id)
    return (False, "no_matching_rule", None, None)


# --- Strategies over small alphabets, so rules and requests often meet -----------------------

NAMES = ["alice", "bob", "qa_1", "qa_22", "Qa_3", "usr-9", ""]
GLOBS = ["*", "qa_*", "alice", "b?b", "[ab]*", "qa_[12]*", "*2", "[!q]*", "QA_*", "[a-c]?*"]
ROLES = ["supervisor", "admin", "agent", "wfo.full_access", "wfo.quality_manager"]
SOURCES = ["DialVerb", "RecordVerb", "Conference"]
TEAMS = ["Team Blue", "Team Green", "Équipe"]
QUEUES = ["Sales", "Support", "WQ" + "a" * 32]
OFFSETS = [
    timedelta(0),
    timedelta(seconds=1),
    timedelta(hours=12),
    timedelta(days=1),
    timedelta(days=2),
    timedelta(days=3, seconds=1),
    timedelta(days=7),
]


def small_list(values):
    return st.lists(st.sampled_from(values), max_size=2, unique=True)


moments = st.one_of(
    st.none(),
    st.sampled_from(OFFSETS).map(lambda offset: NOW - offset),
    st.sampled_from(OFFSETS[1:4]).map(lambda offset: NOW + offset),
)


@st.composite
def rule_sets(draw):
    count = draw(st.integers(min_value=0, max_value=6))
    names = draw(
        st.lists(
            st.sampled_from([f"r{i}" for i in range(10)]),
            min_size=count,
            max_size=count,
            unique=True,
        )
    )
    rules = []
    for index, name in enumerate(names):
        rules.append(
            AccessRule(
                id=index + 1,
                name=name,
                effect=draw(st.sampled_from(["allow", "deny"])),
                worker_sids=draw(small_list([WORKER_A, WORKER_B])),
                # Literal identities half the time, so the index by identity is exercised.
                identities=draw(st.one_of(small_list(GLOBS), small_list(NAMES[:-1]))),
                roles=draw(small_list(ROLES)),
                account_sids=draw(small_list([ACCOUNT_A, ACCOUNT_B])),
                sources=draw(small_list(SOURCES)),
                call_sids=draw(small_list([CALL_A, CALL_B])),
                max_age_days=draw(st.one_of(st.none(), st.integers(min_value=0, max_value=4))),
                queues=draw(small_list(QUEUES)),
                teams=draw(small_list(TEAMS)),
                workers=draw(small_list([WORKER_A, WORKER_B])),
                handled_by=draw(st.sampled_from(["", "", "caller", "caller_team"])),
                valid_from=draw(moments),
                valid_until=draw(moments),
                enabled=draw(st.booleans()),
            )
        )
    return rules


callers = st.builds(
    Caller,
    # "" twice: a token without the value is common, and is where "*" must not match.
    identity=st.sampled_from(["", *NAMES]),
    realm_user_id=st.sampled_from(["", *NAMES]),
    worker_sid=st.sampled_from(["", WORKER_A, WORKER_B]),
    roles=st.lists(st.sampled_from(ROLES), max_size=3, unique=True).map(tuple),
    team=st.sampled_from(["", *TEAMS]),
)
recordings = st.builds(
    RecordingFacts,
    sid=st.just("RE" + "1" * 32),
    account_sid=st.sampled_from([ACCOUNT_A, ACCOUNT_B]),
    source=st.sampled_from(["", *SOURCES]),
    call_sid=st.sampled_from(["", CALL_A, CALL_B]),
    start_time=moments,
    date_created=moments,
    workers=st.lists(st.sampled_from([WORKER_A, WORKER_B]), max_size=2, unique=True).map(tuple),
    teams=st.lists(st.sampled_from(TEAMS), max_size=2, unique=True).map(tuple),
    queues=st.lists(st.sampled_from(QUEUES), max_size=2, unique=True).map(tuple),
)


@settings(max_examples=300, deadline=None)
@given(caller=callers, recording=recordings, rules=rule_sets())
def test_access_decide_agrees_with_the_plain_reference(caller, recording, rules):
    decision = access_decide(caller=caller, recording=recording, now=NOW, rules=rules)
    expected = reference_decide(caller, recording, NOW, rules)
    assert (
        decision.allowed,
        decision.reason_code,
        decision.rule_name,
        decision.rule_id,
    ) == expected
    # The tester's explanation agrees too: a rule applies exactly when it has no "why not".
    checks = access_explain(caller=caller, recording=recording, now=NOW, rules=rules)
    applying = {check.rule.name for check in checks if check.applies}
    assert all(bool(check.reasons) is not check.applies for check in checks)
    if expected[2] is not None:
        assert expected[2] in applying
    else:
        assert not applying


@settings(max_examples=300, deadline=None)
@given(pattern=st.sampled_from(GLOBS), text=st.sampled_from(NAMES[:-1]))
def test_the_reference_glob_agrees_with_fnmatchcase(pattern, text):
    """Keeps the reference honest: its glob is the contract's "shell-style glob"."""
    from fnmatch import fnmatchcase

    assert reference_glob(pattern, text) == fnmatchcase(text, pattern)


# --- One example per clause ----------------------------------------------------------------


def rule(name="r", effect="allow", **fields) -> AccessRule:
    return AccessRule(id=fields.pop("id", 1), name=name, effect=effect, **fields)


CALLER = Caller(
    identity="qa_alice",
    realm_user_id="alice@example.com",
    worker_sid=WORKER_A,
    roles=("supervisor",),
)
RECORDING = RecordingFacts(
    sid="RE" + "1" * 32,
    account_sid=ACCOUNT_A,
    source="DialVerb",
    call_sid=CALL_A,
    start_time=NOW - timedelta(days=10),
)


def decide(*rules, caller=CALLER, recording=RECORDING, now=NOW) -> Decision:
    return access_decide(caller=caller, recording=recording, now=now, rules=list(rules))


def test_no_rules_means_deny():
    assert decide() == Decision(False, "no_matching_rule", None, None)


def test_a_rule_with_no_subjects_applies_to_everyone():
    assert decide(rule("everyone", id=7)) == Decision(True, "allowed_by_rule", "everyone", 7)


@pytest.mark.parametrize(
    ("globs", "allowed"),
    [
        (["qa_*"], True),  # matches identity
        (["*@example.com"], True),  # matches realm_user_id
        (["QA_*"], False),  # case-sensitive
        (["bob", "qa_?lice"], True),  # any glob of the list
        (["qa_[!a]*"], False),
    ],
)
def test_identities_are_globs_against_identity_or_realm_user_id(globs, allowed):
    assert decide(rule(identities=globs)).allowed is allowed


def test_an_empty_realm_user_id_matches_no_glob_not_even_star():
    caller = Caller(identity="", realm_user_id="", roles=("supervisor",))
    assert not decide(rule(identities=["*"]), caller=caller).allowed
    assert decide(rule(identities=["*"])).allowed


def test_worker_sids_match_exactly():
    assert decide(rule(worker_sids=[WORKER_A])).allowed
    assert not decide(rule(worker_sids=[WORKER_B])).allowed
    assert not decide(rule(worker_sids=[WORKER_A]), caller=Caller(identity="qa_alice")).allowed


def test_roles_need_at_least_one_held():
    assert decide(rule(roles=["admin", "supervisor"])).allowed
    assert not decide(rule(roles=["admin"])).allowed


def test_every_non_empty_subject_list_must_match():
    assert decide(rule(identities=["qa_*"], roles=["supervisor"], worker_sids=[WORKER_A])).allowed
    assert not decide(rule(identities=["qa_*"], roles=["admin"])).allowed


@pytest.mark.parametrize(
    ("scope", "allowed"),
    [
        ({"account_sids": [ACCOUNT_A]}, True),
        ({"account_sids": [ACCOUNT_B]}, False),
        ({"sources": ["DialVerb", "Conference"]}, True),
        ({"sources": ["RecordVerb"]}, False),
        ({"call_sids": [CALL_A]}, True),
        ({"call_sids": [CALL_B]}, False),
        ({"account_sids": [ACCOUNT_A], "sources": ["RecordVerb"]}, False),
    ],
)
def test_scope_fields_match_exactly(scope, allowed):
    assert decide(rule(**scope)).allowed is allowed


def test_max_age_counts_from_start_time_inclusive():
    exactly = RecordingFacts(sid="RE1", account_sid=ACCOUNT_A, start_time=NOW - timedelta(days=10))
    older = RecordingFacts(
        sid="RE1", account_sid=ACCOUNT_A, start_time=NOW - timedelta(days=10, microseconds=1)
    )
    assert decide(rule(max_age_days=10), recording=exactly).allowed
    assert not decide(rule(max_age_days=10), recording=older).allowed
    assert decide(
        rule(max_age_days=0), recording=RecordingFacts("RE1", ACCOUNT_A, start_time=NOW)
    ).allowed


def test_max_age_falls_back_to_date_created_and_unknown_age_never_matches():
    created_only = RecordingFacts("RE1", ACCOUNT_A, date_created=NOW - timedelta(days=2))
    unknown = RecordingFacts("RE1", ACCOUNT_A)
    assert decide(rule(max_age_days=3), recording=created_only).allowed
    assert not decide(rule(max_age_days=1), recording=created_only).allowed
    assert not decide(rule(max_age_days=3650), recording=unknown).allowed
    assert decide(rule(), recording=unknown).allowed  # no age limit, no age needed


def test_a_deny_with_an_unknown_age_limit_does_not_apply_either():
    unknown = RecordingFacts("RE1", ACCOUNT_A)
    assert decide(rule("a"), rule("d", "deny", max_age_days=1), recording=unknown).allowed


def test_validity_window_is_from_inclusive_until_exclusive():
    assert decide(rule(valid_from=NOW)).allowed
    assert not decide(rule(valid_from=NOW + timedelta(seconds=1))).allowed
    assert decide(rule(valid_until=NOW + timedelta(seconds=1))).allowed
    assert not decide(rule(valid_until=NOW)).allowed


def test_disabled_rules_do_not_apply():
    assert not decide(rule(enabled=False)).allowed
    assert decide(rule("a"), rule("d", "deny", enabled=False)).allowed


def test_deny_wins_and_names_the_lowest_applying_deny():
    decision = decide(
        rule("a-allow", id=1),
        rule("z-deny", "deny", id=2),
        rule("m-deny", "deny", id=3),
        rule("b-deny-elsewhere", "deny", id=4, account_sids=[ACCOUNT_B]),
    )
    assert decision == Decision(False, "denied_by_rule", "m-deny", 3)


def test_the_lowest_named_allow_is_reported():
    decision = decide(rule("zeta", id=1), rule("alpha", id=2), rule("beta", id=3, roles=["x"]))
    assert decision == Decision(True, "allowed_by_rule", "alpha", 2)


def test_now_must_be_aware():
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(now=NOW.replace(tzinfo=None))


@pytest.mark.django_db
def test_rules_come_from_the_database_enabled_only_then_from_the_cache(
    django_assert_num_queries,
):
    AccessRule.objects.create(name="off", effect="allow", enabled=False)
    on = AccessRule.objects.create(name="on", effect="allow", roles=["supervisor"])
    with django_assert_num_queries(2):  # the version token, then the rules
        decision = access_decide(caller=CALLER, recording=RECORDING, now=NOW)
    assert decision == Decision(True, "allowed_by_rule", "on", on.pk)
    with django_assert_num_queries(1):  # the version token only
        assert access_decide(caller=CALLER, recording=RECORDING, now=NOW) == decision


def test_facts_from_a_recording_row():
    started = NOW - timedelta(days=1)
    recording = Recording(
        sid="RE" + "2" * 32,
        account_sid=ACCOUNT_A,
        call_sid=CALL_A,
        source="RecordVerb",
        start_time=started,
        date_created=NOW,
    )
    facts = recording.access_facts()
    assert facts == RecordingFacts(
        sid="RE" + "2" * 32,
        account_sid=ACCOUNT_A,
        source="RecordVerb",
        call_sid=CALL_A,
        start_time=started,
        date_created=NOW,
    )
    assert facts.reference_time == started


# --- Who handled it ------------------------------------------------------------------------

HANDLED = RecordingFacts(
    sid="RE" + "3" * 32,
    account_sid=ACCOUNT_A,
    workers=(WORKER_B,),
    teams=("Team Green",),
    queues=("WQ" + "a" * 32, "Sales"),
)
UNHANDLED = RecordingFacts(sid="RE" + "4" * 32, account_sid=ACCOUNT_A)
BLUE_AGENT = Caller(identity="sam", worker_sid=WORKER_A, roles=("agent",), team="Team Blue")
GREEN_AGENT = Caller(identity="kim", worker_sid=WORKER_B, roles=("agent",), team="Team Green")


@pytest.mark.parametrize(
    ("scope", "allowed"),
    [
        ({"queues": ["Sales"]}, True),  # by name
        ({"queues": ["WQ" + "a" * 32]}, True),  # by SID
        ({"queues": ["Support"]}, False),
        ({"teams": ["Team Green", "Team Red"]}, True),
        ({"teams": ["Team Blue"]}, False),
        ({"workers": [WORKER_B]}, True),
        ({"workers": [WORKER_A]}, False),
        ({"teams": ["Team Green"], "queues": ["Support"]}, False),
    ],
)
def test_handling_scope_matches_any_handling_fact(scope, allowed):
    assert decide(rule(**scope), recording=HANDLED).allowed is allowed
    # A recording without handling facts never matches a rule that needs them.
    assert not decide(rule(**scope), recording=UNHANDLED).allowed


def test_handled_by_caller_needs_the_callers_own_worker():
    own = rule(handled_by="caller", roles=["agent"])
    assert decide(own, caller=GREEN_AGENT, recording=HANDLED).allowed
    assert not decide(own, caller=BLUE_AGENT, recording=HANDLED).allowed
    assert not decide(own, caller=GREEN_AGENT, recording=UNHANDLED).allowed
    no_worker = Caller(identity="kim", roles=("agent",), team="Team Green")
    assert not decide(own, caller=no_worker, recording=HANDLED).allowed


def test_handled_by_caller_team_needs_a_known_team():
    team = rule(handled_by="caller_team")
    assert decide(team, caller=GREEN_AGENT, recording=HANDLED).allowed
    assert not decide(team, caller=BLUE_AGENT, recording=HANDLED).allowed
    assert not decide(team, caller=GREEN_AGENT, recording=UNHANDLED).allowed
    # An empty team never matches, not even a recording whose team is empty too.
    teamless = Caller(identity="kim", worker_sid=WORKER_B)
    blank_team = RecordingFacts("RE1", ACCOUNT_A, workers=(WORKER_B,), teams=("",))
    assert not decide(team, caller=teamless, recording=blank_team).allowed


def test_the_explanation_says_why_in_words():
    rules = [
        rule("blue", id=1, teams=["Team Blue"]),
        rule("supervisors", id=2, roles=["supervisor"]),
        rule("own", id=3, handled_by="caller_team"),
        rule("later", id=4, valid_from=NOW + timedelta(days=1)),
        rule("green", id=5, teams=["Team Green"]),
    ]
    checks = {
        check.rule.name: check
        for check in access_explain(caller=BLUE_AGENT, recording=HANDLED, now=NOW, rules=rules)
    }
    assert checks["blue"].reasons == (
        "needs team Team Blue, the recording was handled by Team Green",
    )
    assert checks["supervisors"].reasons == ("needs role supervisor, caller has agent",)
    assert checks["own"].reasons == (
        "needs team Team Blue, the recording was handled by Team Green",
    )
    assert checks["later"].reasons[0].startswith("the rule applies from 2026-06-02")
    assert checks["green"].applies
    assert checks["green"].reasons == ()
    unhandled = access_explain(caller=BLUE_AGENT, recording=UNHANDLED, now=NOW, rules=rules[:1])
    assert unhandled[0].reasons == ("needs team Team Blue, the recording has no handling facts",)


def test_rule_views_and_model_rules_decide_alike():
    model = rule("r", id=9, teams=["Team Green"], handled_by="caller")
    view = RuleView.of(model)
    assert view.teams == ("Team Green",)
    assert view.pk == 9
    assert decide(model, caller=GREEN_AGENT, recording=HANDLED) == decide(
        view, caller=GREEN_AGENT, recording=HANDLED
    )


@pytest.mark.django_db
def test_expired_and_future_rules_are_left_out_of_the_cached_set():
    AccessRule.objects.create(name="expired", effect="allow", valid_until=NOW)
    AccessRule.objects.create(name="later", effect="allow", valid_from=NOW + timedelta(hours=1))
    AccessRule.objects.create(name="now", effect="deny", valid_until=NOW + timedelta(hours=2))
    assert [view.name for view in rules_in_force(now=NOW).rules] == ["now"]
    # At the next boundary the set is read again: "later" starts to apply.
    later = NOW + timedelta(hours=1)
    assert [view.name for view in rules_in_force(now=later).rules] == ["later", "now"]
    # Past "now"'s end only "later" is left, and it allows.
    after = NOW + timedelta(hours=3)
    assert access_decide(caller=CALLER, recording=RECORDING, now=after).rule_name == "later"
