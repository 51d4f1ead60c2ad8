"""The one place that decides whether a caller may play a recording.

``access_decide`` takes facts (who is asking, which recording, when) and the access rules, and
answers a ``Decision`` value that the caller both enforces and writes to the access log. Nothing
else in the portal interprets rules. The semantics are those of docs/contract.md's rules file:

* A rule applies to a caller when each of its NON-EMPTY subject lists matches:
  ``identities`` (a shell-style glob, case-sensitive, matched against the caller's ``identity``
  or ``realm_user_id``), ``worker_sids`` (exact), ``roles`` (the caller holds at least one).
  A rule whose three subject lists are all empty therefore applies to every caller; that is the
  contract's literal meaning and the way to write "nobody may play recordings of account X".
  An empty caller value (no ``realm_user_id``, say) never matches a glob, not even ``*``.
* It applies to a recording when each non-empty scope field matches: ``account_sids``,
  ``sources``, ``call_sids`` (exact) and ``max_age_days`` (the recording's age, ``now`` minus its
  ``start_time`` or, failing that, Twilio's ``date_created``, is at most that many days). A
  recording whose age is unknown does not match a rule that limits age.
* A rule applies only while enabled and within ``valid_from <= now < valid_until`` (either bound
  may be absent).
* An applying ``deny`` wins (``denied_by_rule``); otherwise an applying ``allow`` grants
  (``allowed_by_rule``); otherwise the answer is deny (``no_matching_rule``). When several rules
  of the deciding kind apply, the one with the lowest name is reported, so the answer is
  deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase

from audit.models import AccessRule, RuleEffect


class ReasonCode:
    """The reason codes a ``Decision`` carries (also written to the access log)."""

    ALLOWED_BY_RULE = "allowed_by_rule"
    DENIED_BY_RULE = "denied_by_rule"
    NO_MATCHING_RULE = "no_matching_rule"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking, as established from a validated Flex token.

    ``roles`` holds the Flex and Flex Insights roles of the token (``supervisor``, ``admin``,
    ``wfo.full_access``…). ``team`` is the caller's team name as the portal's worker directory
    knows the token's ``worker_sid`` (``handled_by: caller_team``). Empty strings mean "not
    known".
    """

    identity: str
    realm_user_id: str = ""
    worker_sid: str = ""
    roles: tuple[str, ...] = ()
    team: str = ""


@dataclass(frozen=True, slots=True)
class RecordingFacts:
    """The facts about a recording that rules may look at. The caller takes them from its own
    records (``recordings.models.Recording.access_facts``): the audit core decides on facts and
    imports nothing of ``recordings``.

    ``start_time`` is when the recording started; ``date_created`` is Twilio's creation time, used
    for the age when ``start_time`` is unknown. ``workers``, ``teams`` and ``queues`` are the
    handling facts from the Flex linkage (worker SIDs that handled the conversation, their team
    names, TaskQueue SIDs and names); empty when no task is known.
    """

    sid: str
    account_sid: str
    source: str = ""
    call_sid: str = ""
    start_time: datetime | None = None
    date_created: datetime | None = None
    workers: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()

    @property
    def reference_time(self) -> datetime | None:
        """The instant the recording's age is counted from, or ``None`` when unknown."""
        return self.start_time or self.date_created


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer of ``access_decide``: enforced by the caller and written to the access log."""

    allowed: bool
    reason_code: str
    rule_name: str | None = None
    rule_id: int | None = None


def rules_in_force() -> list[AccessRule]:
    """All enabled rules, in one query (validity windows are checked by ``access_decide``)."""
    return list(AccessRule.objects.filter(enabled=True).order_by("name"))


def _subject_matches(rule: AccessRule, caller: Caller) -> bool:
    if rule.identities:
        names = [value for value in (caller.identity, caller.realm_user_id) if value]
        if not any(fnmatchcase(name, glob) for glob in rule.identities for name in names):
            return False
    if rule.worker_sids and caller.worker_sid not in rule.worker_sids:
        return False
    return not rule.roles or any(role in rule.roles for role in caller.roles)


def _scope_matches(rule: AccessRule, recording: RecordingFacts, now: datetime) -> bool:
    if rule.account_sids and recording.account_sid not in rule.account_sids:
        return False
    if rule.sources and recording.source not in rule.sources:
        return False
    if rule.call_sids and recording.call_sid not in rule.call_sids:
        return False
    if rule.max_age_days is not None:
        reference = recording.reference_time
        if reference is None or now - reference > timedelta(days=rule.max_age_days):
            return False
    return True


def _in_force(rule: AccessRule, now: datetime) -> bool:
    if not rule.enabled:
        return False
    if rule.valid_from is not None and now < rule.valid_from:
        return False
    return rule.valid_until is None or now < rule.valid_until


def access_decide(
    *,
    caller: Caller,
    recording: RecordingFacts,
    now: datetime,
    rules: Sequence[AccessRule] | None = None,
) -> Decision:
    """Decide whether ``caller`` may play ``recording`` at ``now``; see the module docstring.

    ``rules`` defaults to the enabled rules in the database (one query); pass them to decide
    against a given set (tests, previews). ``now`` must be timezone-aware.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("access_decide needs a timezone-aware 'now'")
    if rules is None:
        rules = rules_in_force()
    deciding_deny: AccessRule | None = None
    deciding_allow: AccessRule | None = None
    for rule in rules:
        if not (
            _in_force(rule, now)
            and _subject_matches(rule, caller)
            and _scope_matches(rule, recording, now)
        ):
            continue
        if rule.effect == RuleEffect.DENY:
            if deciding_deny is None or rule.name < deciding_deny.name:
                deciding_deny = rule
        elif rule.effect == RuleEffect.ALLOW and (
            deciding_allow is None or rule.name < deciding_allow.name
        ):
            deciding_allow = rule
    if deciding_deny is not None:
        return Decision(False, ReasonCode.DENIED_BY_RULE, deciding_deny.name, deciding_deny.pk)
    if deciding_allow is not None:
        return Decision(True, ReasonCode.ALLOWED_BY_RULE, deciding_allow.name, deciding_allow.pk)
    return Decision(False, ReasonCode.NO_MATCHING_RULE)


@dataclass(frozen=True, slots=True)
class RuleCheck:
    """Why one rule does or does not apply to a request (the admin's rule tester shows it).

    ``applies`` is true when the rule is in force at ``now`` and both its subject and its
    recording scope match; it is computed by the same predicates ``access_decide`` uses.
    """

    rule: AccessRule
    in_force: bool
    subject_matches: bool
    scope_matches: bool

    @property
    def applies(self) -> bool:
        """True when the rule takes part in the decision."""
        return self.in_force and self.subject_matches and self.scope_matches


def access_explain(
    *,
    caller: Caller,
    recording: RecordingFacts,
    now: datetime,
    rules: Sequence[AccessRule],
) -> list[RuleCheck]:
    """For each of ``rules`` (disabled ones included), whether it applies and why not.

    An explanation only: the decision is always :func:`access_decide`'s.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("access_explain needs a timezone-aware 'now'")
    return [
        RuleCheck(
            rule=rule,
            in_force=_in_force(rule, now),
            subject_matches=_subject_matches(rule, caller),
            scope_matches=_scope_matches(rule, recording, now),
        )
        for rule in rules
    ]
