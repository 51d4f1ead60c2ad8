"""Restriction rules: recordings restricted by their facts, automatically and retroactively.

An officer describes recordings that must be restricted (a ``RestrictionRule``: an HR team's
queue, an account that takes card payments, one call…) with the reason they are. Facts become
known in two places, and each calls :func:`restriction_rules_apply` once they are stored:

- the sync (``recordings.ingest.sync``): account, source, call, duration from Twilio;
- the Flex linkage (``recordings.flex.linking.recording_handling_refresh``): queues, teams and
  workers of the conversation, which arrive later than the recording itself.

A matching recording is restricted through ``recordings.lifecycle.restriction`` (the only
writer), audited as ``recording_restrict``/``restricted_by_rule`` naming the rule. A rule only
ever restricts, and it leaves alone a recording whose restriction an officer lifted by hand
(a ``recording_unrestricted`` row in the log): that release is the later, more specific
decision, and the next sync must not undo it. To restrict such a recording again, mark it by
hand.

:func:`restriction_rule_matches` is the one rule of what a rule matches; :func:`rule_scope`
says it in SQL (exact on PostgreSQL, a superset on SQLite where JSON lists are checked in
Python); a test checks the two agree. From the admin, :func:`restriction_rule_preview` counts
what an existing rule would restrict now and :func:`restriction_rule_apply_existing` does it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection
from django.db.models import Q, QuerySet
from django.utils import timezone

from audit.models import AccessAction, AccessLog
from recordings import jobs
from recordings.lifecycle import restriction
from recordings.models import Recording, RestrictionRule

AUTOMATIC_ACTOR = "system:restriction_rules"
"""Who restricts a recording when a rule matches it at sync or linking (the log's identity)."""

APPLY_BATCH = 500
"""Recordings restricted per transaction when a rule is applied to existing recordings."""

INLINE_LIMIT = 1000
"""Recordings restricted in the officer's request when a rule is applied to existing ones
(each is an access-log row, so the request's time grows with the count); the rest by a queued job
(:func:`restriction_rule_apply_queue`)."""

PREVIEW_SAMPLE = 20

# Recording fields a rule reads: enough to decide without loading the whole row.
FACT_FIELDS = (
    "pk",
    "sid",
    "account_sid",
    "source",
    "call_sid",
    "duration_seconds",
    "handled_queues",
    "handled_team_names",
    "handled_worker_sids",
)
# A rule's list and the recording's fact it is compared with; a JSON list of facts matches
# when they share a value.
_SCALARS = (("account_sids", "account_sid"), ("sources", "source"), ("call_sids", "call_sid"))
_LISTS = (
    ("queues", "handled_queues"),
    ("teams", "handled_team_names"),
    ("workers", "handled_worker_sids"),
)


def _strings(value: object) -> set[str]:
    return {v for v in value if isinstance(v, str)} if isinstance(value, list) else set()


def restriction_rule_matches(*, rule: RestrictionRule, recording: Recording) -> bool:
    """True when every fact ``rule`` names matches ``recording``: its account, source or call
    is one of the rule's, its conversation's queues, teams or workers share one with the
    rule's, and it is at least ``min_duration_seconds`` long (an unknown duration does not
    match). A rule naming no fact matches nothing."""
    named = False
    for rule_field, fact in _SCALARS:
        wanted = _strings(getattr(rule, rule_field))
        if wanted:
            named = True
            if (getattr(recording, fact) or "") not in wanted:
                return False
    for rule_field, fact in _LISTS:
        wanted = _strings(getattr(rule, rule_field))
        if wanted:
            named = True
            if not wanted & _strings(getattr(recording, fact)):
                return False
    if rule.min_duration_seconds is not None:
        named = True
        duration = recording.duration_seconds
        if duration is None or duration < rule.min_duration_seconds:
            return False
    return named


def rule_scope(rule: RestrictionRule) -> Q:
    """:func:`restriction_rule_matches` in SQL: exact on PostgreSQL (``?|`` on the JSON lists);
    on SQLite (embedded mode) the JSON lists are left to Python, so a superset."""
    scope = Q()
    named = False
    for rule_field, fact in _SCALARS:
        wanted = sorted(_strings(getattr(rule, rule_field)))
        if wanted:
            named = True
            scope &= Q(**{f"{fact}__in": wanted})
    for rule_field, fact in _LISTS:
        wanted = sorted(_strings(getattr(rule, rule_field)))
        if wanted:
            named = True
            if connection.vendor == "postgresql":
                scope &= Q(**{f"{fact}__has_any_keys": wanted})
    if rule.min_duration_seconds is not None:
        named = True
        scope &= Q(duration_seconds__gte=rule.min_duration_seconds)
    return scope if named else Q(pk__in=[])


def _released_by_hand() -> QuerySet[AccessLog]:
    """The log's rows of restrictions an officer lifted (read by reason code, which is
    indexed): rules leave their recordings alone."""
    return AccessLog.objects.filter(
        action=AccessAction.RECORDING_RESTRICT, reason_code=restriction.UNRESTRICTED
    )


def _restrictable(rule: RestrictionRule) -> QuerySet[Recording]:
    """Recordings ``rule``'s SQL scope covers, not restricted and never released by hand."""
    return Recording.objects.filter(rule_scope(rule), restricted_at__isnull=True).exclude(
        sid__in=_released_by_hand().values("recording_sid")
    )


def _unrestricted_matches(rule: RestrictionRule) -> Iterator[Recording]:
    """The recordings ``rule`` matches that are not restricted yet (and were never released
    by hand), oldest first."""
    candidates = _restrictable(rule).only(*FACT_FIELDS).order_by("pk")
    for recording in candidates.iterator(chunk_size=2000):
        if restriction_rule_matches(rule=rule, recording=recording):
            yield recording


@dataclass
class RulePreview:
    """What applying a rule to existing recordings would restrict now: how many, and a
    sample of their SIDs."""

    count: int = 0
    sample: list[str] = field(default_factory=list)


def restriction_rule_preview(*, rule: RestrictionRule) -> RulePreview:
    """Count the recordings ``rule`` would restrict if applied now (those it matches that are
    not restricted yet), with the first :data:`PREVIEW_SAMPLE` SIDs. Nothing changes."""
    preview = RulePreview()
    if connection.vendor == "postgresql":
        # The SQL scope is exact here: PostgreSQL counts, Python reads only the sample.
        matching = _restrictable(rule)
        preview.count = matching.count()
        preview.sample = list(
            matching.order_by("pk").values_list("sid", flat=True)[:PREVIEW_SAMPLE]
        )
        return preview
    for recording in _unrestricted_matches(rule):
        preview.count += 1
        if len(preview.sample) < PREVIEW_SAMPLE:
            preview.sample.append(recording.sid)
    return preview


def restriction_rule_apply_existing(
    *, rule: RestrictionRule, actor: str, now: datetime | None = None, limit: int | None = None
) -> list[str]:
    """Restrict every existing recording ``rule`` matches that is not restricted yet (an
    officer's decision after the preview, ``actor`` in each row), in batches of
    :data:`APPLY_BATCH`, at most ``limit`` of them; answers the SIDs restricted. A disabled
    rule is applied too: the officer asked for this rule by name."""
    when = now or timezone.now()
    changed: list[str] = []
    batch: list[Recording] = []
    for recording in _unrestricted_matches(rule):
        if limit is not None and len(changed) + len(batch) >= limit:
            break
        batch.append(recording)
        if len(batch) >= APPLY_BATCH:
            changed += _restrict(batch, rule, actor=actor, now=when)
            batch = []
    if batch:
        changed += _restrict(batch, rule, actor=actor, now=when)
    return changed


def restriction_rule_apply_queue(*, rule: RestrictionRule, actor: str) -> bool:
    """Have the rest of a rule's existing recordings restricted in the background, in
    ``actor``'s name (after :data:`INLINE_LIMIT` were restricted in the request); False when
    the broker could not take it. Nothing is lost then: the rule's preview still counts what
    is left, and applying it again restricts them."""
    return jobs.queue_restriction_rule_apply(rule.pk, actor)


def restriction_rule_apply_job(*, rule_id: int, actor: str) -> int:
    """The queued job: apply the rule ``rule_id`` to every existing recording it still
    matches; answers how many it restricted (0 for a rule deleted since)."""
    rule = RestrictionRule.objects.filter(pk=rule_id).first()
    if rule is None:
        return 0
    return len(restriction_rule_apply_existing(rule=rule, actor=actor))


def _restrict(
    recordings: list[Recording], rule: RestrictionRule, *, actor: str, now: datetime
) -> list[str]:
    return restriction.recordings_restrict(
        recordings=recordings, reason=rule.reason, actor=actor, now=now, rule=rule.name
    )


def restriction_rules_apply(*, recording: Recording) -> str | None:
    """Restrict ``recording`` when an enabled rule matches its facts as stored now (the first
    by name; its reason becomes the restriction's); answers that rule's name, or None when
    none matches, the recording is already restricted or an officer lifted its restriction.
    Called after the sync stores a recording and after its Flex handling facts change; runs
    in the caller's transaction."""
    if recording.restricted_at is not None:
        return None
    for rule in RestrictionRule.objects.filter(enabled=True).order_by("name", "pk"):
        if restriction_rule_matches(rule=rule, recording=recording):
            if _released_by_hand().filter(recording_sid=recording.sid).exists():
                return None
            changed = restriction.recordings_restrict(
                recordings=[recording],
                reason=rule.reason,
                actor=AUTOMATIC_ACTOR,
                now=timezone.now(),
                rule=rule.name,
            )
            return rule.name if changed else None
    return None
