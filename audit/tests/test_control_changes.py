"""Maker/checker for changes that weaken control (``audit.control_changes`` and its kinds):
for each kind, a proposal changes nothing, an approval by a second staff member applies it, a
refusal leaves it unchanged, the proposer can never decide their own change, an approval of a
target that changed meanwhile applies nothing, and with the setting off everything applies at
once; what counts as weakening, rule by rule; every step in the access log."""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import CommandError
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from audit import control_changes as cc
from audit.anchor_switch import anchoring_switch_change
from audit.chain import timestamp_canonical
from audit.control_rules import (
    access_rule_change_propose,
    access_rule_weakening,
    rules_import_weakening,
    rules_load_or_propose,
)
from audit.decisions import access_decide
from audit.models import AccessLog, AccessRule, AuditSeal, ControlChange, ControlChangeStatus
from audit.rules_file import rules_load
from audit.sealer import anchoring_paused, anchors_publish, seal_pending
from audit.services import access_log_append, access_rule_values
from audit.tests.test_decisions import (
    ACCOUNT_A,
    ACCOUNT_B,
    CALL_A,
    CALL_B,
    GLOBS,
    NAMES,
    NOW,
    QUEUES,
    ROLES,
    SOURCES,
    TEAMS,
    WORKER_A,
    WORKER_B,
    callers,
    moments,
    recordings,
    small_list,
)
from audit.validation import LIST_FIELDS
from recordings.admin import control_changes as rc
from recordings.models import LegalHold, PrivateKey, RetentionPolicy

pytestmark = pytest.mark.django_db


def _manager(name: str) -> User:
    user = User.objects.create_user(name, password="pw-not-used", is_staff=True)
    user.groups.add(Group.objects.get(name="compliance manager"))
    return User.objects.get(pk=user.pk)  # fresh permission cache


@pytest.fixture
def on(settings):
    settings.CONTROL_CHANGES_NEED_APPROVAL = True


@pytest.fixture
def maker() -> User:
    return _manager("maker")


@pytest.fixture
def checker() -> User:
    return _manager("checker")


@pytest.fixture
def superuser_checker() -> User:
    """A checker who may make superuser-only changes (retention, keys, anchoring) himself."""
    return User.objects.create_superuser("root-checker", password="pw-not-used")


def _rows(code: str) -> list[AccessLog]:
    return list(AccessLog.objects.filter(action="control_change", reason_code=code))


def _rule(**fields) -> AccessRule:
    values = {"name": "qa", "effect": "allow", "identities": ["qa_*"], "reason": "COMP-1"}
    values.update(fields)
    return AccessRule.objects.create(**values)


def _propose_widening(rule: AccessRule, maker: User) -> ControlChange:
    before = access_rule_values(rule)
    rule.identities = []
    return access_rule_change_propose(rule=rule, before=before, change="updated", proposed_by=maker)


# --- What weakens control -------------------------------------------------------------------


def _values(**fields):
    values = access_rule_values(AccessRule(name="r", effect="allow"))
    for name, value in fields.items():
        values[name] = timestamp_canonical(value) if isinstance(value, datetime) else value
    return values


@pytest.mark.parametrize(
    ("before", "after", "weakens"),
    [
        (None, {"effect": "allow"}, True),
        (None, {"effect": "deny"}, False),
        (None, {"effect": "allow", "enabled": False}, False),
        ({"identities": ["a"]}, {"identities": []}, True),
        ({"identities": ["a"]}, {"identities": ["a", "b"]}, True),
        ({"identities": ["a", "b"]}, {"identities": ["a"]}, False),
        ({"identities": []}, {"identities": ["a"]}, False),
        ({"max_age_days": 30}, {"max_age_days": 60}, True),
        ({"max_age_days": 30}, {"max_age_days": None}, True),
        ({"max_age_days": 30}, {"max_age_days": 10}, False),
        ({"valid_until": datetime(2027, 1, 1, tzinfo=UTC)}, {"valid_until": None}, True),
        (
            {"valid_until": datetime(2027, 1, 1, tzinfo=UTC)},
            {"valid_until": datetime(2028, 1, 1, tzinfo=UTC)},
            True,
        ),
        (
            {"valid_until": datetime(2027, 1, 1, tzinfo=UTC)},
            {"valid_until": datetime(2026, 1, 1, tzinfo=UTC)},
            False,
        ),
        ({"valid_from": datetime(2027, 1, 1, tzinfo=UTC)}, {"valid_from": None}, True),
        ({"enabled": False}, {"enabled": True}, True),
        ({"enabled": True}, {"enabled": False}, False),
        ({"effect": "deny"}, {"effect": "allow"}, True),
        ({"effect": "allow"}, {"effect": "deny"}, False),
        ({"effect": "deny"}, {"effect": "deny", "enabled": False}, True),
        ({"effect": "deny", "roles": []}, {"effect": "deny", "roles": ["x"]}, True),
        ({"effect": "deny", "roles": ["x"]}, {"effect": "deny", "roles": []}, False),
        ({"handled_by": "caller"}, {"handled_by": "caller_team"}, True),
        # Not a narrowing: a caller whose team is unknown matches only "the caller".
        ({"handled_by": "caller_team"}, {"handled_by": "caller"}, True),
        ({"handled_by": ""}, {"handled_by": "caller"}, False),
        ({"reason": "a"}, {"reason": "b"}, False),
        ({"restricted": False}, {"restricted": True}, True),
    ],
)
def test_what_weakens_an_access_rule(before, after, weakens):
    old = None if before is None else _values(**before)
    new = _values(**{**(before or {}), **after})
    assert bool(access_rule_weakening(before=old, after=new)) is weakens


# One field's possible values, from the decision tests' small alphabets (so rules meet).
FIELD_VALUES = {
    "effect": st.sampled_from(["allow", "deny"]),
    "enabled": st.booleans(),
    "identities": st.one_of(small_list(GLOBS), small_list(NAMES[:-1])),
    "worker_sids": small_list([WORKER_A, WORKER_B]),
    "roles": small_list(ROLES),
    "account_sids": small_list([ACCOUNT_A, ACCOUNT_B]),
    "sources": small_list(SOURCES),
    "call_sids": small_list([CALL_A, CALL_B]),
    "max_age_days": st.one_of(st.none(), st.integers(min_value=0, max_value=4)),
    "queues": small_list(QUEUES),
    "teams": small_list(TEAMS),
    "workers": small_list([WORKER_A, WORKER_B]),
    "handled_by": st.sampled_from(["", "caller", "caller_team"]),
    "valid_from": moments,
    "valid_until": moments,
}


def _no_condition(name: str) -> object:
    if name in LIST_FIELDS:
        return []
    return "" if name == "handled_by" else None


def _sparse_rule(draw, rule_id: int, sparseness: int, present: Collection[str] = ()) -> AccessRule:
    """A rule whose conditions are absent ``sparseness`` times in ``sparseness + 1`` (so that
    callers often meet it), but for the fields in ``present``, which get a value of their
    domain."""
    absent = {name: st.just(_no_condition(name)) for name in FIELD_VALUES}
    absent.update(effect=st.just("allow"), enabled=st.just(True))
    values = {
        name: draw(domain if name in present else st.one_of(*[absent[name]] * sparseness, domain))
        for name, domain in FIELD_VALUES.items()
    }
    return AccessRule(id=rule_id, name=f"r{rule_id}", **values)


@st.composite
def rule_edits(draw):
    """One to three sparse rules, one of them, and that rule with one or two fields changed
    (fields the rule had a value in, so that widening and narrowing both happen)."""
    sparseness = draw(st.sampled_from([1, 3, 8]))
    count = draw(st.integers(min_value=1, max_value=3))
    index = draw(st.integers(min_value=0, max_value=count - 1))
    fields = draw(st.lists(st.sampled_from(sorted(FIELD_VALUES)), min_size=1, max_size=2))
    rules = [
        _sparse_rule(draw, number, sparseness, fields if number == index + 1 else ())
        for number in range(1, count + 1)
    ]
    old = rules[index]
    new = AccessRule(**{f.attname: getattr(old, f.attname) for f in AccessRule._meta.fields})
    for name in fields:
        setattr(new, name, draw(FIELD_VALUES[name]))
    return rules, index, new


@hypothesis_settings(max_examples=600, deadline=None)
@given(
    edit=rule_edits(),
    people=st.lists(callers, min_size=12, max_size=12),
    calls=st.lists(recordings, min_size=12, max_size=12),
)
def test_a_change_that_does_not_weaken_never_allows_what_was_denied(edit, people, calls):
    """Property: change one or two fields of any rule in a rule set; when
    ``access_rule_weakening`` finds nothing, no caller may play a recording they could not
    before (the weakening rules agree with the one decision function). Each example tries 144
    callers and recordings, so that the rare pairs an edit lets in are met."""
    rules, index, new = edit
    old = rules[index]
    if access_rule_weakening(before=access_rule_values(old), after=access_rule_values(new)):
        return
    changed = [*rules[:index], new, *rules[index + 1 :]]
    for caller in people:
        for recording in calls:
            before = access_decide(caller=caller, recording=recording, now=NOW, rules=rules)
            after = access_decide(caller=caller, recording=recording, now=NOW, rules=changed)
            assert before.allowed or not after.allowed, json.dumps(
                [access_rule_values(old), access_rule_values(new), repr(caller), repr(recording)]
            )


@pytest.mark.parametrize(
    ("before", "after", "others", "weakens"),
    [
        (None, {"enabled": True}, False, True),
        (None, {"enabled": False}, False, False),
        ({"keep_days": 30}, {"keep_days": 10}, False, True),
        ({"keep_days": 30}, {"keep_days": 60}, False, False),
        ({"hard_delete_grace_days": 7}, {"hard_delete_grace_days": 1}, False, True),
        ({"account_sids": ["AC1"]}, {"account_sids": []}, False, True),
        ({"account_sids": ["AC1", "AC2"]}, {"account_sids": ["AC1"]}, False, False),
        ({"account_sids": ["AC1", "AC2"]}, {"account_sids": ["AC1"]}, True, True),
        ({"enabled": True}, {"enabled": False}, False, False),
        ({"enabled": True}, {"enabled": False}, True, True),
        ({"enabled": True}, None, True, True),
        ({"enabled": False}, {"enabled": True}, False, True),
        ({"name": "a"}, {"name": "b"}, True, False),
        ({"restricted_keep_days": None}, {"restricted_keep_days": 10}, False, True),
        ({"restricted_keep_days": None}, {"restricted_keep_days": 90}, False, False),
        ({"restricted_keep_days": 90}, {"restricted_keep_days": None}, False, True),
        ({"restricted_keep_days": 10}, {"restricted_keep_days": None}, False, False),
    ],
)
def test_what_weakens_a_retention_policy(before, after, others, weakens):
    base = {
        "name": "p",
        "enabled": True,
        "account_sids": [],
        "sources": [],
        "keep_days": 30,
        "restricted_keep_days": None,
        "hard_delete_grace_days": 7,
    }
    old = None if before is None else {**base, **before}
    new = None if after is None else {**(old or base), **after}
    reasons = rc.retention_weakening(before=old, after=new, others_enabled=others)
    assert bool(reasons) is weakens


# --- Access rules ----------------------------------------------------------------------------


def test_rule_widening_waits_then_applies_when_a_second_staff_member_approves(on, maker, checker):
    rule = _rule()
    change = _propose_widening(rule, maker)
    rule.refresh_from_db()
    assert rule.identities == ["qa_*"]  # nothing changed yet
    assert change.status == ControlChangeStatus.PENDING
    proposed = _rows("change_proposed")[0]
    assert proposed.identity == "admin:maker"
    assert proposed.detail["old"]["identities"] == ["qa_*"]
    assert proposed.detail["new"]["identities"] == []

    done = cc.control_change_approve(change=change, approver=checker, note="ok, COMP-2")
    assert done.status == ControlChangeStatus.APPLIED
    rule.refresh_from_db()
    assert rule.identities == []
    approved = _rows("change_approved")[0]
    assert approved.identity == "admin:checker"
    assert approved.detail["proposer"] == "maker"
    assert approved.detail["approver"] == "checker"
    assert approved.detail["note"] == "ok, COMP-2"
    # The rule's own history gets its rule_change row, in the proposer's name.
    row = AccessLog.objects.get(action="rule_change")
    assert row.identity == "admin:maker"
    assert row.detail["via"] == "control_change"


def test_a_new_allow_rule_is_created_on_approval(on, maker, checker):
    rule = AccessRule(name="new-allow", effect="allow", roles=["supervisor"])
    change = access_rule_change_propose(rule=rule, before=None, change="created", proposed_by=maker)
    assert not AccessRule.objects.filter(name="new-allow").exists()
    cc.control_change_approve(change=change, approver=checker)
    assert AccessRule.objects.get(name="new-allow").roles == ["supervisor"]


def test_refusal_leaves_the_rule_and_needs_a_note(on, maker, checker):
    rule = _rule()
    change = _propose_widening(rule, maker)
    with pytest.raises(cc.ControlChangeInvalid, match="note"):
        cc.control_change_refuse(change=change, approver=checker, note=" ")
    done = cc.control_change_refuse(change=change, approver=checker, note="too broad")
    assert done.status == ControlChangeStatus.REFUSED
    rule.refresh_from_db()
    assert rule.identities == ["qa_*"]
    assert _rows("change_refused")[0].detail["note"] == "too broad"
    with pytest.raises(cc.ControlChangeInvalid, match="already refused"):
        cc.control_change_approve(change=change, approver=checker)


def test_the_proposer_can_never_decide_their_own_change(on, maker, checker):
    rule = _rule()
    change = _propose_widening(rule, maker)
    with pytest.raises(cc.ControlChangeInvalid, match="you proposed this change"):
        cc.control_change_approve(change=change, approver=maker)
    with pytest.raises(cc.ControlChangeInvalid, match="you proposed this change"):
        cc.control_change_refuse(change=change, approver=maker, note="hmm")
    maker.is_superuser = True
    maker.save()
    with pytest.raises(cc.ControlChangeInvalid, match="you proposed this change"):
        cc.control_change_approve(change=change, approver=User.objects.get(pk=maker.pk))
    change.refresh_from_db()
    assert change.status == ControlChangeStatus.PENDING
    rule.refresh_from_db()
    assert rule.identities == ["qa_*"]


def test_an_approver_needs_the_permission(on, maker):
    viewer = User.objects.create_user("viewer", is_staff=True)
    viewer.groups.add(Group.objects.get(name="compliance viewer"))
    change = _propose_widening(_rule(), maker)
    with pytest.raises(cc.ControlChangeInvalid, match="permission"):
        cc.control_change_approve(change=change, approver=User.objects.get(pk=viewer.pk))


def test_a_stale_change_is_not_applied(on, maker, checker):
    rule = _rule()
    change = _propose_widening(rule, maker)
    AccessRule.objects.filter(pk=rule.pk).update(roles=["supervisor"])  # edited meanwhile
    done = cc.control_change_approve(change=change, approver=checker)
    assert done.status == ControlChangeStatus.STALE
    rule.refresh_from_db()
    assert rule.identities == ["qa_*"]
    stale = _rows("change_stale")[0]
    assert stale.outcome == "denied"
    assert stale.detail["changed_since"] == ["roles"]
    assert not _rows("change_approved")


def test_two_pending_changes_of_one_rule_the_second_is_stale(on, maker, checker):
    rule = _rule()
    first = _propose_widening(rule, maker)
    rule.refresh_from_db()
    before = access_rule_values(rule)
    rule.max_age_days = None
    rule.identities = ["qa_*", "ops_*"]
    second = access_rule_change_propose(
        rule=rule, before=before, change="updated", proposed_by=maker
    )
    assert cc.control_change_approve(change=first, approver=checker).status == "applied"
    assert cc.control_change_approve(change=second, approver=checker).status == "stale"


def test_withdraw_only_by_the_proposer(on, maker, checker):
    change = _propose_widening(_rule(), maker)
    with pytest.raises(cc.ControlChangeInvalid, match="only the proposer"):
        cc.control_change_withdraw(change=change, user=checker)
    done = cc.control_change_withdraw(change=change, user=maker, note="wrong rule")
    assert done.status == ControlChangeStatus.WITHDRAWN
    assert _rows("change_withdrawn")


def test_a_change_that_cannot_be_applied_is_closed_as_failed(on, maker, checker):
    hold = LegalHold.objects.create(reason="litigation", recording_sids=["RE" + "1" * 32])
    # No release reason: legal_hold_release refuses it when the change is applied.
    change = rc.hold_release_propose(hold=hold, reason="", user=maker, context={})
    done = cc.control_change_approve(change=change, approver=checker)
    assert done.status == ControlChangeStatus.FAILED
    hold.refresh_from_db()
    assert hold.released_at is None
    failed = _rows("change_failed")[0]
    assert failed.outcome == "error"
    assert "release reason is required" in failed.detail["error"]
    assert not AccessLog.objects.filter(action="legal_hold").exists()


def test_a_new_rule_whose_name_was_taken_meanwhile_is_stale(on, maker, checker):
    rule = AccessRule(name="taken-later", effect="allow")
    change = access_rule_change_propose(rule=rule, before=None, change="created", proposed_by=maker)
    # The name is taken by the time of approval: stale (not an error page, nothing applied).
    _rule(name="taken-later")
    assert cc.control_change_approve(change=change, approver=checker).status == "stale"
    assert AccessRule.objects.filter(name="taken-later").count() == 1


def test_large_values_are_logged_as_digests(on, maker, checker):
    rule = _rule(identities=[f"agent_{n:04d}@example.com" for n in range(300)])
    change = _propose_widening(rule, maker)
    detail = _rows("change_proposed")[0].detail
    assert set(detail) >= {"old_sha256", "new_sha256"}
    assert cc.control_change_approve(change=change, approver=checker).status == "applied"


def test_unknown_kind_refused(maker):
    with pytest.raises(cc.ControlChangeInvalid, match="no such kind"):
        cc.control_change_propose(
            kind="nope", target="x", old_values={}, new_values={}, proposed_by=maker
        )


# --- Rules files ---------------------------------------------------------------------------

WIDE_FILE = {"rules": [{"name": "everyone", "effect": "allow", "reason": "oops"}]}
DENY_FILE = {
    "rules": [{"name": "no-pci", "effect": "deny", "recordings": {"sources": ["DialVerb"]}}]
}


def test_a_weakening_rules_file_waits_and_loads_whole_on_approval(on, maker, checker):
    outcome = rules_load_or_propose(
        WIDE_FILE, replace=False, actor="admin:maker", proposed_by=maker
    )
    assert isinstance(outcome, ControlChange)
    assert not AccessRule.objects.exists()
    assert "everyone: a new allow rule" in outcome.reason
    cc.control_change_approve(change=outcome, approver=checker)
    assert AccessRule.objects.get().name == "everyone"


def test_a_tightening_rules_file_loads_at_once(on, maker):
    outcome = rules_load_or_propose(
        DENY_FILE, replace=False, actor="admin:maker", proposed_by=maker
    )
    assert not isinstance(outcome, ControlChange)
    assert AccessRule.objects.get().effect == "deny"


def test_a_replacing_file_that_disables_a_deny_rule_weakens(on):
    rules_load(DENY_FILE, replace=False)
    assert rules_import_weakening({"rules": []}, replace=True) == [
        "no-pci: a deny rule is disabled"
    ]
    assert rules_import_weakening({"rules": []}, replace=False) == []


def test_a_rules_file_is_stale_once_any_rule_changed(on, maker, checker):
    change = rules_load_or_propose(WIDE_FILE, replace=False, actor="a", proposed_by=maker)
    rules_load(DENY_FILE, replace=False)
    assert cc.control_change_approve(change=change, approver=checker).status == "stale"
    assert not AccessRule.objects.filter(name="everyone").exists()


def test_import_command_proposes_and_keeps_its_contract(on, tmp_path, capsys):
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(WIDE_FILE))
    call_command("import_access_rules", str(path))
    assert "pending change #" in capsys.readouterr().out
    change = ControlChange.objects.get()
    assert change.proposed_by is None
    assert change.proposed_by_name == "cli:import_access_rules"
    assert not AccessRule.objects.exists()
    # An invalid file still exits 1 and changes nothing.
    path.write_text('{"rules": [{"name": "x"}]}')
    with pytest.raises(CommandError) as raised:
        call_command("import_access_rules", str(path))
    assert raised.value.returncode == 1
    assert ControlChange.objects.count() == 1


def test_setting_off_applies_at_once(maker):
    outcome = rules_load_or_propose(WIDE_FILE, replace=False, actor="a", proposed_by=maker)
    assert not isinstance(outcome, ControlChange)
    assert AccessRule.objects.get().name == "everyone"
    assert not ControlChange.objects.exists()


# --- Retention, holds, keys, seal anchoring ------------------------------------------------


def _policy(**fields) -> RetentionPolicy:
    values = {"name": "calls", "keep_days": 365, "hard_delete_grace_days": 7}
    values.update(fields)
    return RetentionPolicy.objects.create(**values)


def test_shorter_retention_waits_for_approval(on, maker, superuser_checker):
    policy = _policy()
    policy.keep_days = 30
    change = rc.retention_change_propose(policy=policy, user=maker, context={})
    assert change is not None
    assert RetentionPolicy.objects.get().keep_days == 365
    assert cc.control_change_approve(change=change, approver=superuser_checker).status == "applied"
    assert RetentionPolicy.objects.get().keep_days == 30
    row = AccessLog.objects.get(action="retention_policy")
    assert row.detail["changes"]["keep_days"] == {"old": 365, "new": 30}


def test_longer_retention_applies_at_once(on, maker):
    policy = _policy()
    policy.keep_days = 400
    assert rc.retention_change_propose(policy=policy, user=maker, context={}) is None


def test_new_policy_and_deletion_of_a_policy(on, maker, superuser_checker):
    new = RetentionPolicy(name="short", keep_days=10, hard_delete_grace_days=1)
    change = rc.retention_change_propose(policy=new, user=maker, context={})
    assert change is not None
    assert not RetentionPolicy.objects.exists()
    cc.control_change_approve(change=change, approver=superuser_checker)
    short = RetentionPolicy.objects.get(name="short")
    longer = _policy(name="long")
    deletion = rc.retention_change_propose(policy=longer, delete=True, user=maker, context={})
    assert deletion is not None
    refused = cc.control_change_refuse(change=deletion, approver=superuser_checker, note="keep it")
    assert refused.status == "refused"
    assert RetentionPolicy.objects.filter(pk=longer.pk).exists()
    deletion = rc.retention_change_propose(policy=longer, delete=True, user=maker, context={})
    cc.control_change_approve(change=deletion, approver=superuser_checker)
    assert list(RetentionPolicy.objects.all()) == [short]


def test_stale_retention_change(on, maker, superuser_checker):
    policy = _policy()
    policy.keep_days = 30
    change = rc.retention_change_propose(policy=policy, user=maker, context={})
    RetentionPolicy.objects.filter(pk=policy.pk).update(keep_days=200)
    assert cc.control_change_approve(change=change, approver=superuser_checker).status == "stale"
    assert RetentionPolicy.objects.get().keep_days == 200


def test_hold_release_waits_for_approval(on, maker, checker, recording_factory):
    recording = recording_factory()
    hold = LegalHold.objects.create(reason="litigation", recording_sids=[recording.sid])
    change = rc.hold_release_propose(hold=hold, reason="matter closed", user=maker, context={})
    hold.refresh_from_db()
    assert hold.released_at is None
    with pytest.raises(cc.ControlChangeInvalid):
        cc.control_change_approve(change=change, approver=maker)
    assert cc.control_change_approve(change=change, approver=checker).status == "applied"
    hold.refresh_from_db()
    assert hold.released_at is not None
    assert hold.released_by == "maker"
    assert hold.release_reason == "matter closed"
    assert AccessLog.objects.filter(action="legal_hold", reason_code="released").exists()


def test_hold_released_meanwhile_is_stale(on, maker, checker):
    hold = LegalHold.objects.create(reason="litigation", recording_sids=["RE" + "1" * 32])
    change = rc.hold_release_propose(hold=hold, reason="closed", user=maker, context={})
    refused = rc.hold_release_propose(hold=hold, reason="closed", user=maker, context={})
    cc.control_change_approve(change=change, approver=checker)
    assert cc.control_change_approve(change=refused, approver=checker).status == "stale"


def _key() -> PrivateKey:
    return PrivateKey.objects.create(
        public_key_sid="CR" + "1" * 32,
        fingerprint="f" * 64,
        key_size=2048,
        public_key_pem="-----BEGIN PUBLIC KEY-----",
        sealed_private_key="sealed",
        master_key_id="k1",
    )


def test_key_deletion_waits_for_approval(on, maker, superuser_checker):
    key = _key()
    change = rc.private_key_delete_propose(key=key, user=maker, context={})
    assert PrivateKey.objects.filter(pk=key.pk).exists()
    refused = cc.control_change_refuse(
        change=change, approver=superuser_checker, note="still needed"
    )
    assert refused.status == "refused"
    assert PrivateKey.objects.filter(pk=key.pk).exists()
    change = rc.private_key_delete_propose(key=key, user=maker, context={})
    assert cc.control_change_approve(change=change, approver=superuser_checker).status == "applied"
    assert not PrivateKey.objects.filter(pk=key.pk).exists()
    row = AccessLog.objects.get(action="private_key_delete")
    assert row.detail["fingerprint"] == "f" * 64


def test_pausing_seal_anchoring_waits_resuming_does_not(on, maker, superuser_checker):
    access_log_append(action="url_provider", outcome="allowed", identity="a")
    change = anchoring_switch_change(paused=True, reason="moving the bucket", user=maker)
    assert isinstance(change, ControlChange)
    assert not anchoring_paused()
    cc.control_change_approve(change=change, approver=superuser_checker)
    assert anchoring_paused()
    assert _rows("anchoring_paused")
    seal_pending()
    assert AuditSeal.objects.exists()
    assert anchors_publish() == 0  # sealed, not anchored while paused
    anchoring_switch_change(paused=False, reason="bucket moved", user=maker)
    assert not anchoring_paused()
    assert _rows("anchoring_resumed")
    assert anchors_publish() == 1


def test_setting_off_pausing_is_immediate(maker):
    anchoring_switch_change(paused=True, reason="maintenance", user=maker)
    assert anchoring_paused()
    assert not ControlChange.objects.exists()


def test_pending_count(on, maker, checker):
    assert cc.control_changes_pending_count() == 0
    change = _propose_widening(_rule(), maker)
    assert cc.control_changes_pending_count() == 1
    cc.control_change_approve(change=change, approver=checker)
    assert cc.control_changes_pending_count() == 0


def test_a_checker_without_the_changes_privilege_may_refuse_but_not_approve(on, maker, checker):
    """Maker/checker is no way around privileges: a compliance manager may not approve a key
    deletion only a superuser may make; the key stays and nothing is logged as approved."""
    key = _key()
    change = rc.private_key_delete_propose(key=key, user=maker, context={})
    with pytest.raises(cc.ControlChangeInvalid, match="may not make this kind of change"):
        cc.control_change_approve(change=change, approver=checker)
    change.refresh_from_db()
    assert change.status == "pending"
    assert PrivateKey.objects.filter(pk=key.pk).exists()
    assert not _rows("change_approved")
    assert cc.control_change_refuse(change=change, approver=checker, note="no").status == "refused"
