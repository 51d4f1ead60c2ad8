"""Property test: a recording restricted by a restriction rule on its facts (as the sync and
the Flex linkage apply them) is never played without an approved grant or an access rule that
names restricted recordings. Restriction rules, recording facts, callers, access rules and
grants are drawn at random; the expected answers come from plain references that share nothing
with the code (``audit.tests.test_decisions`` and ``test_restricted_grants``)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from audit.decisions import access_decide
from audit.tests.test_decisions import (
    ACCOUNT_A,
    ACCOUNT_B,
    CALL_A,
    CALL_B,
    NOW,
    QUEUES,
    SOURCES,
    TEAMS,
    WORKER_A,
    WORKER_B,
    callers,
    recordings,
)
from audit.tests.test_restricted_grants import (
    RECORDING_SID,
    grant_lists,
    reference_grant,
    reference_restricted_decide,
    restricted_rule_sets,
)
from recordings.lifecycle import restriction_rules
from recordings.models import Recording, RestrictionRule
from recordings.tests.callbacks import new_sid

pytestmark = pytest.mark.django_db


def some(values):
    """Mostly nothing (a rule names a fact or two, not all seven), else one or two values."""
    return st.one_of(
        st.just([]),
        st.just([]),
        st.just([]),
        st.lists(st.sampled_from(values), min_size=1, max_size=2, unique=True),
    )


restriction_rule_specs = st.lists(
    st.fixed_dictionaries(
        {
            "enabled": st.sampled_from([True, True, True, False]),
            "account_sids": some([ACCOUNT_A, ACCOUNT_B]),
            "sources": some(SOURCES),
            "call_sids": some([CALL_A, CALL_B]),
            "queues": some(QUEUES),
            "teams": some(TEAMS),
            "workers": some([WORKER_A, WORKER_B]),
            "min_duration_seconds": st.sampled_from([None, None, None, 10, 100]),
        }
    ),
    min_size=1,
    max_size=3,
)


def reference_restricts(spec: dict, facts, duration: int | None) -> bool:
    """An enabled rule restricts when it names a fact and every fact it names matches."""
    if not spec["enabled"]:
        return False
    checks = []
    for name, value in (
        ("account_sids", facts.account_sid),
        ("sources", facts.source),
        ("call_sids", facts.call_sid),
    ):
        if spec[name]:
            checks.append(value in spec[name])
    for name, values in (
        ("queues", facts.queues),
        ("teams", facts.teams),
        ("workers", facts.workers),
    ):
        if spec[name]:
            checks.append(any(value in spec[name] for value in values))
    if spec["min_duration_seconds"] is not None:
        checks.append(duration is not None and duration >= spec["min_duration_seconds"])
    return bool(checks) and all(checks)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    facts=recordings,
    duration=st.sampled_from([None, 5, 50, 500]),
    specs=restriction_rule_specs,
    caller=callers,
    rules=restricted_rule_sets(),
    grants=grant_lists(),
)
def test_an_auto_restricted_recording_is_never_played_without_a_grant_or_a_naming_rule(
    facts, duration, specs, caller, rules, grants
):
    RestrictionRule.objects.all().delete()
    for index, spec in enumerate(specs):
        RestrictionRule.objects.create(name=f"rule-{index}", reason=f"reason {index}", **spec)
    recording = Recording.objects.create(
        sid=new_sid("RE"),
        account_sid=facts.account_sid,
        source=facts.source,
        call_sid=facts.call_sid,
        start_time=facts.start_time,
        date_created=facts.date_created,
        duration_seconds=duration,
        handled_queues=list(facts.queues),
        handled_team_names=list(facts.teams),
        handled_worker_sids=list(facts.workers),
    )

    restriction_rules.restriction_rules_apply(recording=recording)

    recording.refresh_from_db()
    expected = any(reference_restricts(spec, facts, duration) for spec in specs)
    event("restricted by a rule" if expected else "not restricted")
    assert (recording.restricted_at is not None) is expected
    # The facts the decision reads, under the SID the drawn grants name.
    stored = dataclasses.replace(recording.access_facts(), sid=RECORDING_SID)
    assert stored.restricted is expected
    decision = access_decide(caller=caller, recording=stored, now=NOW, rules=rules, grants=grants)
    assert (decision.allowed, decision.reason_code, decision.rule_name) == (
        reference_restricted_decide(caller, stored, rules, grants)
    )
    if expected and decision.allowed:
        if decision.reason_code == "allowed_by_rule":
            assert next(rule for rule in rules if rule.name == decision.rule_name).restricted
        else:
            assert decision.reason_code == "allowed_by_grant"
            assert reference_grant(caller, stored, grants) is not None
