"""Which access-rule changes weaken control, and holding them for a second staff member
(``audit.control_changes``) when ``CONTROL_CHANGES_NEED_APPROVAL`` is on.

A change weakens control when the rules may allow more afterwards:

* an enabled **allow** rule that is new, newly enabled, turned from deny, or can match more: a
  subject or scope list made empty (no condition) or given an entry it did not have,
  ``max_age_days`` raised or cleared, the validity started earlier or ended later (or either
  bound cleared), the handling condition cleared or switched (the caller's team is no superset
  of the caller: a caller whose team is unknown matches only "the caller"), or ``restricted``
  switched (the rule then applies to other recordings);
* an enabled **deny** rule that is disabled, turned into an allow, or can match less (the same
  tests the other way round);
* a rules-file import (from the admin or ``import_access_rules``) that does any of these to any
  rule: the whole file waits, and is loaded as one when approved, if the rules are still what
  they were when it was proposed.

A rule's name or reason alone, a new deny rule, a disabled allow rule or a narrower allow rule
only tighten (or change nothing), and apply at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from audit.control_changes import (
    ControlChangeKind,
    control_change_kind_register,
    control_change_propose,
    control_changes_need_approval,
)
from audit.models import ACCESS_RULE_FIELDS, AccessRule, ControlChange, RuleEffect
from audit.rules_file import (
    MODEL_FIELDS,
    ImportSummary,
    rules_file_validate,
    rules_load,
    rules_state_fingerprint,
)
from audit.services import access_rule_change_log, access_rule_values
from audit.validation import LIST_FIELDS

RULE_KIND = "access_rule"
IMPORT_KIND = "access_rules_import"
_RULE_VALUE_FIELDS = (*ACCESS_RULE_FIELDS, "enabled")


def _moment(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _list_wider(old: list[Any], new: list[Any]) -> bool:
    """An empty list places no condition: dropping every entry, or adding one, matches more."""
    if not old:
        return False
    return not new or bool(set(new) - set(old))


def _widened(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """The fields in which ``after`` can match recordings or callers ``before`` could not."""
    wider = [name for name in LIST_FIELDS if _list_wider(before[name] or [], after[name] or [])]
    old_age, new_age = before["max_age_days"], after["max_age_days"]
    if old_age is not None and (new_age is None or new_age > old_age):
        wider.append("max_age_days")
    old_from, new_from = _moment(before["valid_from"]), _moment(after["valid_from"])
    if old_from is not None and (new_from is None or new_from < old_from):
        wider.append("valid_from")
    old_until, new_until = _moment(before["valid_until"]), _moment(after["valid_until"])
    if old_until is not None and (new_until is None or new_until > old_until):
        wider.append("valid_until")
    old_handling, new_handling = before["handled_by"] or "", after["handled_by"] or ""
    # "The caller's team" is no superset of "the caller": a caller whose team is unknown
    # matches only the latter. Any switch between them, or dropping the condition, is wider.
    if old_handling and new_handling != old_handling:
        wider.append("handled_by")
    if bool(before["restricted"]) != bool(after["restricted"]):
        wider.append("restricted")
    return wider


def access_rule_weakening(
    *, before: Mapping[str, Any] | None, after: Mapping[str, Any]
) -> list[str]:
    """Why changing a rule from ``before`` (``access_rule_values``; ``None`` for a new rule) to
    ``after`` weakens control, in words; empty when it does not (see the module docstring)."""
    was_allow = before is not None and before["enabled"] and before["effect"] == RuleEffect.ALLOW
    was_deny = before is not None and before["enabled"] and before["effect"] == RuleEffect.DENY
    is_allow = after["enabled"] and after["effect"] == RuleEffect.ALLOW
    is_deny = after["enabled"] and after["effect"] == RuleEffect.DENY
    reasons: list[str] = []
    if is_allow and before is None:
        reasons.append("a new allow rule")
    elif is_allow and not was_allow:
        reasons.append(
            "a deny rule becomes an allow rule"
            if before is not None and before["effect"] == RuleEffect.DENY
            else "an allow rule is enabled"
        )
    elif is_allow and before is not None:
        reasons.extend(f"the allow rule matches more ({name})" for name in _widened(before, after))
    if was_deny and not is_deny and before is not None:
        reasons.append(
            "a deny rule is disabled" if not after["enabled"] else "a deny rule becomes an allow"
        )
    elif was_deny and before is not None:
        reasons.extend(f"the deny rule matches less ({name})" for name in _widened(after, before))
    return reasons


def _payload_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _rule_payload(rule: AccessRule) -> dict[str, Any]:
    """The rule's own values as stored, for applying them later (``access_rule_values`` strips
    links from text for the log; these keep the text as typed)."""
    return {name: _payload_value(getattr(rule, name)) for name in _RULE_VALUE_FIELDS}


def access_rule_change_propose(
    *,
    rule: AccessRule,
    before: Mapping[str, Any] | None,
    change: str,
    proposed_by: User,
    context: Mapping[str, Any] | None = None,
) -> ControlChange:
    """Keep the edit of ``rule`` (changed in memory, not saved; a new rule has no ``pk``) as a
    pending change; ``before`` is :func:`access_rule_values` of the stored rule. ``change`` is
    the ``rule_change`` word the approval logs (``created``, ``updated``, ``disabled``)."""
    after = access_rule_values(rule)
    return control_change_propose(
        kind=RULE_KIND,
        target=f"access rule {rule.name}",
        target_id=str(rule.pk or ""),
        old_values=dict(before) if before is not None else {},
        new_values=after,
        payload={"values": _rule_payload(rule), "change": change},
        reason="; ".join(access_rule_weakening(before=before, after=after)),
        proposed_by=proposed_by,
        context=context,
    )


def access_rule_needs_approval(*, before: Mapping[str, Any] | None, rule: AccessRule) -> bool:
    """Whether saving ``rule`` (changed in memory) must wait for a second staff member."""
    return control_changes_need_approval() and bool(
        access_rule_weakening(before=before, after=access_rule_values(rule))
    )


def _rule_current(change: ControlChange) -> dict[str, Any]:
    if change.target_id:
        rule = AccessRule.objects.select_for_update().filter(pk=int(change.target_id)).first()
        return access_rule_values(rule) if rule is not None else {"deleted": True}
    name = change.payload["values"]["name"]
    return {"name_taken": name} if AccessRule.objects.filter(name=name).exists() else {}


def _rule_apply(change: ControlChange, context: Mapping[str, Any]) -> str:
    values = dict(change.payload["values"])
    for name in ("valid_from", "valid_until"):
        values[name] = _moment(values[name])
    stored = (
        AccessRule.objects.select_for_update().get(pk=int(change.target_id))
        if change.target_id
        else AccessRule()
    )
    before = access_rule_values(stored) if stored.pk else None
    for name, value in values.items():
        setattr(stored, name, value)
    stored.full_clean()
    stored.save()
    word = str(change.payload.get("change") or ("updated" if before else "created"))
    access_rule_change_log(
        rule=stored,
        change=word,
        before=before,
        actor=f"admin:{change.proposed_by_name}",
        via="control_change",
        client_ip=context.get("client_ip"),
        user_agent=str(context.get("user_agent", "")),
        request_id=str(context.get("request_id", "")),
    )
    return f"access rule {stored.name} {word}"


# --- Rules files -------------------------------------------------------------------------


def rules_import_weakening(data: Mapping[str, Any], *, replace: bool) -> list[str]:
    """Why loading the rules file ``data`` weakens control, rule by rule (empty: it does not).
    Raises ``RulesFileError`` for an invalid file, as loading it would."""
    parsed = rules_file_validate(data)
    existing = {rule.name: rule for rule in AccessRule.objects.all()}
    reasons: list[str] = []
    for values in parsed:
        rule = existing.get(values["name"])
        before = access_rule_values(rule) if rule is not None else None
        after = access_rule_values(
            AccessRule(name=values["name"], **{key: values[key] for key in MODEL_FIELDS})
        )
        reasons.extend(
            f"{values['name']}: {why}" for why in access_rule_weakening(before=before, after=after)
        )
    if replace:
        named = {values["name"] for values in parsed}
        for name, rule in sorted(existing.items()):
            if rule.enabled and name not in named and rule.effect == RuleEffect.DENY:
                reasons.append(f"{name}: a deny rule is disabled")
    return reasons


def rules_load_or_propose(
    data: Mapping[str, Any],
    *,
    replace: bool,
    actor: str,
    proposed_by: User | None,
    proposer_name: str = "",
    context: Mapping[str, Any] | None = None,
) -> ImportSummary | ControlChange:
    """Load a rules file (``audit.rules_file.rules_load``), or, when it weakens control and the
    setting is on, keep it as one pending change and load nothing: answer the summary or the
    pending change. An invalid file raises ``RulesFileError`` either way, nothing written."""
    reasons = (
        rules_import_weakening(data, replace=replace) if control_changes_need_approval() else []
    )
    if not reasons:
        return rules_load(data, replace=replace, actor=actor)
    with transaction.atomic():
        return control_change_propose(
            kind=IMPORT_KIND,
            target=f"rules file of {len(data.get('rules') or [])} rules"
            + (" (replacing)" if replace else ""),
            old_values={"rules_state": rules_state_fingerprint()},
            new_values={"weakens": reasons[:50], "replace": replace},
            payload={"data": dict(data), "replace": replace, "actor": actor},
            reason="; ".join(reasons)[:2000],
            proposed_by=proposed_by,
            proposer_name=proposer_name,
            context=context,
        )


def _import_current(change: ControlChange) -> dict[str, Any]:
    list(AccessRule.objects.select_for_update().values_list("pk", flat=True))
    return {"rules_state": rules_state_fingerprint()}


def _import_apply(change: ControlChange, context: Mapping[str, Any]) -> str:
    summary = rules_load(
        change.payload["data"],
        replace=bool(change.payload["replace"]),
        actor=str(change.payload.get("actor") or change.proposed_by_name),
    )
    return f"rules file loaded: {summary}"


control_change_kind_register(
    ControlChangeKind(
        kind=RULE_KIND,
        label="access rule",
        current=_rule_current,
        apply=_rule_apply,
        may_make=lambda user: user.is_active and user.has_perm("audit.change_accessrule"),
    )
)
control_change_kind_register(
    ControlChangeKind(
        kind=IMPORT_KIND,
        label="access rules file import",
        current=_import_current,
        apply=_import_apply,
        # What the admin's rules-file import asks of whoever loads a file.
        may_make=lambda user: user.is_active
        and user.has_perms(("audit.add_accessrule", "audit.change_accessrule")),
    )
)
