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
* Who handled the recording (the Flex linkage's facts) is scope too: ``queues`` matches when any
  of the recording's TaskQueue SIDs or names is listed, ``teams`` when any team that handled it
  is listed, ``workers`` when any worker SID that handled it is listed; ``handled_by: caller``
  when the caller's ``worker_sid`` is among the recording's handling workers, ``caller_team``
  when the caller's team (from the portal's worker directory) is among its handling teams. A
  recording without handling facts never matches a rule that needs them, and an empty caller
  worker SID or team never matches ``handled_by``.
* Restricted recordings (``RecordingFacts.restricted``): a rule with ``restricted`` set names
  them explicitly and applies only to them; an allow rule without it (a general allow) never
  applies to a restricted recording; a deny rule without it applies to every recording, so deny
  rules still win.
* A rule applies only while enabled and within ``valid_from <= now < valid_until`` (either bound
  may be absent).
* An applying ``deny`` wins (``denied_by_rule``); otherwise an applying ``allow`` grants
  (``allowed_by_rule``); otherwise an access grant in force for the caller and the recording
  (an approved access request, ``GrantView``) grants (``allowed_by_grant``); otherwise the
  answer is deny (``restricted_no_grant`` for a restricted recording, else
  ``no_matching_rule``). When several rules of the deciding kind apply, the one with the
  lowest name is reported (the grant with the lowest id), so the answer is deterministic.
* A grant is in force while ``valid_from <= now < valid_until`` and not revoked at ``now``; it
  is the caller's when its identity is the caller's ``identity`` or ``realm_user_id``, or its
  worker SID (non-empty) is the caller's; it covers the recording when its scope is the
  recording's SID, its call SID, or a team that handled it. Grants are read only when no rule
  decided (one indexed query on the caller's identities, never on the allow path), so they
  cost nothing to the requests the rules allow.

Each condition is one predicate in ``_PARTS``, paired with the words that say why it failed:
``access_decide`` runs the predicates, ``access_explain`` (the admin's rule tester) runs the same
predicates and, for each one that fails, its words ("needs team Team Blue, the recording was
handled by Team Green").

Rules cost O(1) per request, whatever their number:

* ``rules_in_force`` keeps, per process, the rules in force as plain frozen ``RuleView`` values
  (no model objects per request) in a ``RuleSet`` that indexes each rule under one of its
  subject lists (worker SIDs, else literal identities, else roles): a request only checks the
  rules indexed under its caller's worker SID, identity, realm user and roles, plus the few
  rules that cannot be indexed (glob identities, no subject). The index only narrows which
  rules are checked; every check is the full predicate, and the property test in
  ``audit/tests/test_decisions.py`` holds the result to a plain reference over all rules.
* The cached set is reused while ``AccessRuleSetVersion.token`` is unchanged: one primary-key
  read per request. Database triggers (migration ``0015``) write a fresh random token in the
  same transaction as every write to the rules, whatever made it (admin, import, ORM ``save`` or
  ``update``, raw SQL, a test framework's flush). That is why a version row and not
  ``Max(updated_at)`` + ``Count``: ``QuerySet.update()`` does not touch ``updated_at``, two
  changes can share a clock tick, and a delete plus an insert keep the count. And why a random
  token and not a counter: a rolled-back change resets a counter to a value the next change
  reuses, with other rules, so a process that cached the rolled-back rules would keep them. The
  token is read before the rules, so a change committed in between leaves a set newer than its
  token (reloaded once more), never an older one. No row (a flushed table, a database without
  the triggers) means "unknown": nothing is reused.
* Only rules in force when loaded are kept (the query leaves out disabled and expired ones), and
  the set is reloaded when the earliest ``valid_from`` or ``valid_until`` after the load passes,
  or for a ``now`` earlier than the load. Decisions still check each rule's window, so a
  boundary never depends on the cache's timing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fnmatch import translate
from typing import Any, Literal

from django.db.models import Q, Subquery

from audit.models import (
    ACCESS_RULE_FIELDS,
    AccessGrant,
    AccessRule,
    AccessRuleSetVersion,
    GrantScope,
    GrantStatus,
    RuleEffect,
)


class ReasonCode:
    """The reason codes a ``Decision`` carries (also written to the access log)."""

    ALLOWED_BY_RULE = "allowed_by_rule"
    DENIED_BY_RULE = "denied_by_rule"
    NO_MATCHING_RULE = "no_matching_rule"
    ALLOWED_BY_GRANT = "allowed_by_grant"
    RESTRICTED_NO_GRANT = "restricted_no_grant"


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
    names, TaskQueue SIDs and names); empty when no task is known. ``restricted`` is true for a
    recording an officer (or a rule on its facts) marked restricted.
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
    restricted: bool = False

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
    grant: GrantView | None = None


@dataclass(frozen=True, slots=True)
class GrantView:
    """An approved ``AccessGrant`` as ``access_decide`` reads it (see the module docstring):
    who it is for, what it covers, when, and who asked and approved (for the log)."""

    id: int | None
    grantee_identity: str
    scope: str
    scope_value: str
    valid_from: datetime
    valid_until: datetime
    grantee_worker_sid: str = ""
    revoked_at: datetime | None = None
    requester: str = ""
    approver: str = ""
    reason: str = ""

    def is_callers(self, caller: Caller) -> bool:
        """Whether the grant was given to ``caller``."""
        names = {name for name in (caller.identity, caller.realm_user_id) if name}
        return self.grantee_identity in names or (
            bool(self.grantee_worker_sid) and self.grantee_worker_sid == caller.worker_sid
        )

    def covers(self, recording: RecordingFacts) -> bool:
        """Whether the grant's scope includes ``recording``."""
        if self.scope == GrantScope.RECORDING:
            return recording.sid == self.scope_value
        if self.scope == GrantScope.CALL:
            return bool(recording.call_sid) and recording.call_sid == self.scope_value
        if self.scope == GrantScope.TEAM:
            return self.scope_value in recording.teams
        return False  # an unknown scope (a hand-made row): fail closed

    def in_force(self, now: datetime) -> bool:
        """Whether the grant applies at ``now`` (started, not expired, not revoked)."""
        if self.revoked_at is not None and self.revoked_at <= now:
            return False
        return self.valid_from <= now < self.valid_until


@dataclass(frozen=True, slots=True)
class RuleView:
    """An ``AccessRule``'s values as ``access_decide`` reads them: frozen, so one set can be
    shared by every request of a process, and cheap to read (no model machinery)."""

    id: int | None
    name: str
    effect: str
    enabled: bool = True
    identities: tuple[str, ...] = ()
    worker_sids: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    account_sids: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    call_sids: tuple[str, ...] = ()
    max_age_days: int | None = None
    queues: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()
    workers: tuple[str, ...] = ()
    handled_by: str = ""
    restricted: bool = False
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    # The identity globs as one compiled expression (fnmatch's own translation), made once per
    # view instead of once per request.
    identity_pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.identities and self.identity_pattern is None:
            pattern = "|".join(f"(?:{translate(glob)})" for glob in self.identities)
            object.__setattr__(self, "identity_pattern", re.compile(pattern))

    @property
    def pk(self) -> int | None:
        """The rule's id, under the name the admin's templates use for a model's."""
        return self.id

    @classmethod
    def of(cls, rule: AccessRule | RuleView | dict[str, Any]) -> RuleView:
        """The view of a rule (a model instance, or a row of ``AccessRule.objects.values()``)."""
        if isinstance(rule, RuleView):
            return rule
        values = (
            rule if isinstance(rule, dict) else {name: getattr(rule, name) for name in _VIEW_FIELDS}
        )
        return cls(
            id=values["id"],
            name=values["name"],
            effect=values["effect"],
            enabled=bool(values["enabled"]),
            identities=tuple(values["identities"] or ()),
            worker_sids=tuple(values["worker_sids"] or ()),
            roles=tuple(values["roles"] or ()),
            account_sids=tuple(values["account_sids"] or ()),
            sources=tuple(values["sources"] or ()),
            call_sids=tuple(values["call_sids"] or ()),
            max_age_days=values["max_age_days"],
            queues=tuple(values["queues"] or ()),
            teams=tuple(values["teams"] or ()),
            workers=tuple(values["workers"] or ()),
            handled_by=values["handled_by"] or "",
            restricted=bool(values["restricted"]),
            valid_from=values["valid_from"],
            valid_until=values["valid_until"],
        )


_VIEW_FIELDS = ("id", "enabled", *(name for name in ACCESS_RULE_FIELDS if name != "reason"))
_GLOB_CHARACTERS = frozenset("*?[")


def _is_literal(pattern: str) -> bool:
    """Whether a glob matches only itself (then ``fnmatchcase(x, p)`` is ``x == p``)."""
    return not _GLOB_CHARACTERS.intersection(pattern)


class RuleSet:
    """Rules to decide with, indexed by the subject value a caller must have for each to apply.

    Each rule is indexed under one of its subject lists: its worker SIDs when it has any, else
    its identities when all are literal (no ``*``, ``?``, ``[``), else its roles; a rule with
    none of these (glob identities only, or no subject) is checked for every caller. A rule
    applies only when every non-empty subject list matches, so a caller who has none of the
    values it is indexed under cannot match it: skipping it changes no decision.
    """

    __slots__ = ("_always", "_by_identity", "_by_role", "_by_worker", "needs_caller_team", "rules")

    def __init__(self, rules: Iterable[AccessRule | RuleView]) -> None:
        self.rules: tuple[RuleView, ...] = tuple(RuleView.of(rule) for rule in rules)
        # Whether the caller's team must be looked up (url_provider does it only then).
        self.needs_caller_team = any(rule.handled_by == "caller_team" for rule in self.rules)
        self._by_worker: dict[str, list[RuleView]] = {}
        self._by_identity: dict[str, list[RuleView]] = {}
        self._by_role: dict[str, list[RuleView]] = {}
        always: list[RuleView] = []
        for rule in self.rules:
            if rule.worker_sids:
                index, keys = self._by_worker, rule.worker_sids
            elif rule.identities and all(_is_literal(glob) for glob in rule.identities):
                index, keys = self._by_identity, rule.identities
            elif rule.roles:
                index, keys = self._by_role, rule.roles
            else:
                always.append(rule)
                continue
            for key in set(keys):
                index.setdefault(key, []).append(rule)
        self._always = tuple(always)

    def __len__(self) -> int:
        return len(self.rules)

    def candidates(self, caller: Caller) -> list[RuleView]:
        """The rules that may apply to ``caller`` (a superset of those that do)."""
        found = list(self._always)
        found += self._by_worker.get(caller.worker_sid, ())
        for name in {caller.identity, caller.realm_user_id}:
            if name:
                found += self._by_identity.get(name, ())
        for role in set(caller.roles):
            found += self._by_role.get(role, ())
        return found


# --- The conditions: one predicate each, and the words for when it fails ---------------------


def _listed(values: Iterable[str]) -> str:
    return ", ".join(values) or "none"


def _identity_matches(
    rule: RuleView, caller: Caller, recording: RecordingFacts, now: datetime
) -> bool:
    pattern = rule.identity_pattern
    return pattern is not None and any(
        pattern.match(name) for name in (caller.identity, caller.realm_user_id) if name
    )


def _identity_words(
    rule: RuleView, caller: Caller, recording: RecordingFacts, now: datetime
) -> str:
    names = [value for value in (caller.identity, caller.realm_user_id) if value]
    return (
        f"needs identity {_listed(rule.identities)}, caller is {' / '.join(names) or 'anonymous'}"
    )


def _worker_sid_matches(
    rule: RuleView, caller: Caller, recording: RecordingFacts, now: datetime
) -> bool:
    return caller.worker_sid in rule.worker_sids


def _worker_sid_words(
    rule: RuleView, caller: Caller, recording: RecordingFacts, now: datetime
) -> str:
    return (
        f"needs worker {_listed(rule.worker_sids)}, "
        f"caller has {caller.worker_sid or 'no worker SID'}"
    )


def _role_matches(rule: RuleView, caller: Caller, recording: RecordingFacts, now: datetime) -> bool:
    return any(role in rule.roles for role in caller.roles)


def _role_words(rule: RuleView, caller: Caller, recording: RecordingFacts, now: datetime) -> str:
    return f"needs role {_listed(rule.roles)}, caller has {_listed(caller.roles)}"


def _account_matches(
    rule: RuleView, caller: Caller, recording: RecordingFacts, now: datetime
) -> bool:
    return recording.account_sid in rule.account_sids


def _account_words(rule: RuleView, caller: Caller, recording: RecordingFacts, now: datetime) -> str:
    return (
        f"needs account {_listed(rule.account_sids)}, "
        f"the recording is in {recording.account_sid or 'no account'}"
    )


def _source_matches(
    rule: RuleView, caller: Caller, recording: RecordingFacts, now: datetime
) -> bool:
    return recording.source in rule.sources


def _source_words(rule: RuleView, caller: Caller, recording: RecordingFacts, now: datetime) -> str:
    return (
        f"needs source {_listed(rule.sources)}, "
        f"the recording's source is {recording.source or 'unknown'}"
    )


def _call_matches(rule: RuleView, caller: Caller, recording: RecordingFacts, now: datetime) -> bool:
    return recording.call_sid in rule.call_sids


def _call_words(rule: RuleView, caller: Caller, recording: RecordingFacts, now: datetime) -> str:
    return (
        f"needs call {_listed(rule.call_sids)}, "
        f"the recording is of {recording.call_sid or 'no known call'}"
    )


def _age_matches(rule: RuleView, caller: Caller, recording: RecordingFacts, now: datetime) -> bool:
    reference = recording.reference_time
    return reference is not None and now - reference <= timedelta(days=rule.max_age_days or 0)


def _age_words(rule: RuleView, caller: Caller, recording: RecordingFacts, now: datetime) -> str:
    reference = recording.reference_time
    age = "of unknown age" if reference is None else f"{(now - reference).days} days old"
    return f"needs a recording at most {rule.max_age_days} days old, the recording is {age}"


def _handled_words(needs: str, values: tuple[str, ...], held: tuple[str, ...], what: str) -> str:
    if not held:
        return f"needs {needs} {_listed(values)}, the recording has no handling facts"
    return f"needs {needs} {_listed(values)}, the recording was {what} {_listed(held)}"


def _queue_matches(
    rule: RuleView, caller: Caller, recording: RecordingFacts, now: datetime
) -> bool:
    return any(queue in rule.queues for queue in recording.queues)


def _queue_words(rule: RuleView, caller: Caller, recording: RecordingFacts, now: datetime) -> str:
    return _handled_words("queue", rule.queues, recording.queues, "handled in")


def _team_matches(rule: RuleView, caller: Caller, recording: RecordingFacts, now: datetime) -> bool:
    return any(team in rule.teams for team in recording.teams)


def _team_words(rule: RuleView, caller: Caller, recording: RecordingFacts, now: datetime) -> str:
    return _handled_words("team", rule.teams, recording.teams, "handled by")


def _worker_matches(
    rule: RuleView, caller: Caller, recording: RecordingFacts, now: datetime
) -> bool:
    return any(worker in rule.workers for worker in recording.workers)


def _worker_words(rule: RuleView, caller: Caller, recording: RecordingFacts, now: datetime) -> str:
    return _handled_words("handling worker", rule.workers, recording.workers, "handled by")


def _handled_by_matches(
    rule: RuleView, caller: Caller, recording: RecordingFacts, now: datetime
) -> bool:
    if rule.handled_by == "caller":
        return bool(caller.worker_sid) and caller.worker_sid in recording.workers
    if rule.handled_by == "caller_team":
        return bool(caller.team) and caller.team in recording.teams
    # A value the validation refuses (a hand-made row): fail closed.
    return False


def _handled_by_words(
    rule: RuleView, caller: Caller, recording: RecordingFacts, now: datetime
) -> str:
    if rule.handled_by == "caller":
        if not caller.worker_sid:
            return "needs a recording the caller handled, the caller has no worker SID"
        return _handled_words(
            "a recording handled by the caller's worker",
            (caller.worker_sid,),
            recording.workers,
            "handled by",
        )
    if rule.handled_by == "caller_team":
        if not caller.team:
            return (
                "needs a recording handled by the caller's team, the caller's team is unknown"
                " (no worker SID, or the worker directory has no team for it)"
            )
        return _handled_words("team", (caller.team,), recording.teams, "handled by")
    return f"handled_by {rule.handled_by!r} is not a valid value (never matches)"


def _restricted_matches(
    rule: RuleView, caller: Caller, recording: RecordingFacts, now: datetime
) -> bool:
    if rule.restricted:
        return recording.restricted
    # A general allow never plays a restricted recording; a general deny still applies.
    return rule.effect != RuleEffect.ALLOW or not recording.restricted


def _restricted_words(
    rule: RuleView, caller: Caller, recording: RecordingFacts, now: datetime
) -> str:
    if rule.restricted:
        return "names restricted recordings only, the recording is not restricted"
    return (
        "the recording is restricted: a general allow does not play it "
        "(only a rule naming restricted recordings, or an approved access request)"
    )


@dataclass(frozen=True, slots=True)
class _Part:
    """One condition of a rule: whether it is set, whether it matches, and why not."""

    name: str
    subject: bool
    is_set: Callable[[RuleView], bool]
    matches: Callable[[RuleView, Caller, RecordingFacts, datetime], bool]
    words: Callable[[RuleView, Caller, RecordingFacts, datetime], str]


_PARTS = (
    _Part("identities", True, lambda r: bool(r.identities), _identity_matches, _identity_words),
    _Part(
        "worker_sids", True, lambda r: bool(r.worker_sids), _worker_sid_matches, _worker_sid_words
    ),
    _Part("roles", True, lambda r: bool(r.roles), _role_matches, _role_words),
    _Part("account_sids", False, lambda r: bool(r.account_sids), _account_matches, _account_words),
    _Part("sources", False, lambda r: bool(r.sources), _source_matches, _source_words),
    _Part("call_sids", False, lambda r: bool(r.call_sids), _call_matches, _call_words),
    _Part("max_age_days", False, lambda r: r.max_age_days is not None, _age_matches, _age_words),
    _Part("queues", False, lambda r: bool(r.queues), _queue_matches, _queue_words),
    _Part("teams", False, lambda r: bool(r.teams), _team_matches, _team_words),
    _Part("workers", False, lambda r: bool(r.workers), _worker_matches, _worker_words),
    _Part(
        "handled_by", False, lambda r: bool(r.handled_by), _handled_by_matches, _handled_by_words
    ),
    # Always checked: it holds for every rule but a general allow on a restricted recording.
    _Part("restricted", False, lambda r: True, _restricted_matches, _restricted_words),
)
_SUBJECT_PARTS = tuple(part for part in _PARTS if part.subject)
_SCOPE_PARTS = tuple(part for part in _PARTS if not part.subject)


def _holds(
    parts: tuple[_Part, ...],
    rule: RuleView,
    caller: Caller,
    recording: RecordingFacts,
    now: datetime,
) -> bool:
    return all(
        not part.is_set(rule) or part.matches(rule, caller, recording, now) for part in parts
    )


def _applies(rule: RuleView, caller: Caller, recording: RecordingFacts, now: datetime) -> bool:
    """``_in_force`` and every set part of ``_PARTS`` matches: the same predicates, called
    directly (this runs for every candidate rule of every request)."""
    return (
        _in_force(rule, now)
        and (not rule.identities or _identity_matches(rule, caller, recording, now))
        and (not rule.worker_sids or caller.worker_sid in rule.worker_sids)
        and (not rule.roles or _role_matches(rule, caller, recording, now))
        and (not rule.account_sids or recording.account_sid in rule.account_sids)
        and (not rule.sources or recording.source in rule.sources)
        and (not rule.call_sids or recording.call_sid in rule.call_sids)
        and (rule.max_age_days is None or _age_matches(rule, caller, recording, now))
        and (not rule.queues or _queue_matches(rule, caller, recording, now))
        and (not rule.teams or _team_matches(rule, caller, recording, now))
        and (not rule.workers or _worker_matches(rule, caller, recording, now))
        and (not rule.handled_by or _handled_by_matches(rule, caller, recording, now))
        and _restricted_matches(rule, caller, recording, now)
    )


def _in_force(rule: RuleView, now: datetime) -> bool:
    if not rule.enabled:
        return False
    if rule.valid_from is not None and now < rule.valid_from:
        return False
    return rule.valid_until is None or now < rule.valid_until


def _in_force_words(rule: RuleView, now: datetime) -> str:
    if not rule.enabled:
        return "the rule is disabled"
    if rule.valid_from is not None and now < rule.valid_from:
        return f"the rule applies from {rule.valid_from.isoformat()}"
    return (
        f"the rule stopped applying at {rule.valid_until.isoformat() if rule.valid_until else ''}"
    )


# --- The rules in force, cached per process ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Cached:
    token: str
    loaded_at: datetime
    # The earliest validity boundary after ``loaded_at``: the set is exact until then.
    refresh_at: datetime | None
    rules: RuleSet


_cached: _Cached | None = None


def rule_set_token() -> str | None:
    """The current ``AccessRuleSetVersion`` token, or ``None`` when there is none (one query)."""
    return AccessRuleSetVersion.objects.filter(pk=1).values_list("token", flat=True).first()


def rule_set_token_subquery() -> Subquery:
    """The version token as a subquery, to annotate onto a query the caller makes anyway
    (url_provider's recording read): one round trip fewer per decision than
    :func:`rule_set_token`, the same answer."""
    return Subquery(AccessRuleSetVersion.objects.filter(pk=1).values("token")[:1])


def rules_in_force(*, now: datetime) -> RuleSet:
    """The enabled rules in force at ``now``, as a cached :class:`RuleSet` (see the module
    docstring): one query while nothing changed, two when the rules must be read again."""
    return rules_in_force_at_token(now=now, token=rule_set_token())


def rules_in_force_at_token(*, now: datetime, token: str | None) -> RuleSet:
    """:func:`rules_in_force` for a caller that already read the rule set's version token
    (``rule_set_token_subquery`` in the same query as something else it needed): no query
    while nothing changed. ``token`` must have been read at or before ``now``."""
    global _cached
    cached = _cached
    if (
        token is not None
        and cached is not None
        and cached.token == token
        and cached.loaded_at <= now
        and (cached.refresh_at is None or now < cached.refresh_at)
    ):
        return cached.rules
    rows = AccessRule.objects.filter(enabled=True).filter(
        Q(valid_until__isnull=True) | Q(valid_until__gt=now)
    )
    views = [RuleView.of(row) for row in rows.values(*_VIEW_FIELDS)]
    boundaries = [
        moment
        for view in views
        for moment in (view.valid_from, view.valid_until)
        if moment is not None and moment > now
    ]
    rule_set = RuleSet(view for view in views if _in_force(view, now))
    if token is not None:
        _cached = _Cached(token, now, min(boundaries, default=None), rule_set)
    return rule_set


def rules_cache_clear() -> None:
    """Forget the cached rule set (the next decision reads the rules again)."""
    global _cached
    _cached = None


def _as_rule_set(rules: RuleSet | Iterable[AccessRule | RuleView]) -> RuleSet:
    return rules if isinstance(rules, RuleSet) else RuleSet(rules)


def grants_for_caller(*, caller: Caller, now: datetime) -> list[GrantView]:
    """The approved, unrevoked, unexpired grants given to ``caller`` at ``now`` (one query on
    the grantee columns' indexes); their scope is checked by ``access_decide``."""
    names = [name for name in {caller.identity, caller.realm_user_id} if name]
    who = Q(grantee_identity__in=names)
    if caller.worker_sid:
        who |= Q(grantee_worker_sid=caller.worker_sid)
    if not names and not caller.worker_sid:
        return []
    rows = (
        AccessGrant.objects.filter(who, status=GrantStatus.APPROVED, revoked_at__isnull=True)
        .filter(valid_from__lte=now, valid_until__gt=now)
        .select_related("requested_by", "decided_by")
        .order_by("id")
    )
    return [
        GrantView(
            id=row.pk,
            grantee_identity=row.grantee_identity,
            grantee_worker_sid=row.grantee_worker_sid,
            scope=row.scope,
            scope_value=row.scope_value,
            valid_from=row.valid_from,
            valid_until=row.valid_until,
            revoked_at=row.revoked_at,
            requester=row.requested_by.get_username() if row.requested_by else row.grantee_identity,
            approver=row.decided_by.get_username() if row.decided_by else "",
            reason=row.reason,
        )
        for row in rows
        if row.valid_from is not None and row.valid_until is not None
    ]


def access_decide(
    *,
    caller: Caller,
    recording: RecordingFacts,
    now: datetime,
    rules: RuleSet | Iterable[AccessRule | RuleView] | None = None,
    grants: Iterable[GrantView] | Literal["database"] | None = None,
) -> Decision:
    """Decide whether ``caller`` may play ``recording`` at ``now``; see the module docstring.

    ``rules`` defaults to the rules in force in the database (:func:`rules_in_force`, cached);
    pass them to decide against a given set (tests, previews). ``grants`` defaults to the
    caller's grants in the database (:func:`grants_for_caller`, read only when no rule decided)
    when ``rules`` is not given either, and to none when only ``rules`` is (a preview of
    rules); ``grants="database"`` reads them with given rules (url_provider, which fetched the
    rules itself). ``now`` must be timezone-aware.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("access_decide needs a timezone-aware 'now'")
    rule_set = rules_in_force(now=now) if rules is None else _as_rule_set(rules)
    deciding_deny: RuleView | None = None
    deciding_allow: RuleView | None = None
    for rule in rule_set.candidates(caller):
        if not _applies(rule, caller, recording, now):
            continue
        if rule.effect == RuleEffect.DENY:
            if deciding_deny is None or rule.name < deciding_deny.name:
                deciding_deny = rule
        elif rule.effect == RuleEffect.ALLOW and (
            deciding_allow is None or rule.name < deciding_allow.name
        ):
            deciding_allow = rule
    if deciding_deny is not None:
        return Decision(False, ReasonCode.DENIED_BY_RULE, deciding_deny.name, deciding_deny.id)
    if deciding_allow is not None:
        return Decision(True, ReasonCode.ALLOWED_BY_RULE, deciding_allow.name, deciding_allow.id)
    if grants == "database" or (grants is None and rules is None):
        grants = grants_for_caller(caller=caller, now=now)
    for grant in sorted(grants or (), key=lambda g: (g.id is None, g.id or 0)):
        if grant.in_force(now) and grant.is_callers(caller) and grant.covers(recording):
            return Decision(True, ReasonCode.ALLOWED_BY_GRANT, grant=grant)
    if recording.restricted:
        return Decision(False, ReasonCode.RESTRICTED_NO_GRANT)
    return Decision(False, ReasonCode.NO_MATCHING_RULE)


@dataclass(frozen=True, slots=True)
class RuleCheck:
    """Why one rule does or does not apply to a request (the admin's rule tester shows it).

    ``applies`` is true when the rule is in force at ``now`` and both its subject and its
    recording scope match; it is computed by the same predicates ``access_decide`` uses.
    ``reasons`` says in words why each failing part failed ("needs role supervisor, caller has
    agent"), in the order of the rules file; empty when the rule applies.
    """

    rule: RuleView
    in_force: bool
    subject_matches: bool
    scope_matches: bool
    reasons: tuple[str, ...] = field(default=())

    @property
    def applies(self) -> bool:
        """True when the rule takes part in the decision."""
        return self.in_force and self.subject_matches and self.scope_matches


def access_explain(
    *,
    caller: Caller,
    recording: RecordingFacts,
    now: datetime,
    rules: Iterable[AccessRule | RuleView],
) -> list[RuleCheck]:
    """For each of ``rules`` (disabled ones included), whether it applies and why not.

    An explanation only: the decision is always :func:`access_decide`'s.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("access_explain needs a timezone-aware 'now'")
    checks = []
    for rule in map(RuleView.of, rules):
        in_force = _in_force(rule, now)
        reasons = [] if in_force else [_in_force_words(rule, now)]
        reasons += [
            part.words(rule, caller, recording, now)
            for part in _PARTS
            if part.is_set(rule) and not part.matches(rule, caller, recording, now)
        ]
        checks.append(
            RuleCheck(
                rule=rule,
                in_force=in_force,
                subject_matches=_holds(_SUBJECT_PARTS, rule, caller, recording, now),
                scope_matches=_holds(_SCOPE_PARTS, rule, caller, recording, now),
                reasons=tuple(reasons),
            )
        )
    return checks
