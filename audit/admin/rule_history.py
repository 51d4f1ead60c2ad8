"""A rule's history, read from the access log: every ``rule_change`` row for one rule, oldest
first, each as a field-by-field diff in words.

The access log is the rule's real history: admin saves, disables and rules-file imports (from
the admin or ``import_access_rules``) all append a ``rule_change`` row with each changed field's
old and new value (``audit.services.access_rule_change_log``), chained and sealed like every
row. Django's own History page reads ``LogEntry`` instead, which imports never write, so the
rule admin's History button leads here. Opening the page is itself logged (``admin_view``).

The rows are matched by ``detail.rule_id``, which a rename does not change, among the rows
whose action is ``rule_change``: the log's action index (``accesslog_action_idx``) narrows a log
of millions of rows to the rule changes, one row per change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from audit.admin.display import utc_text
from audit.admin.forms import RULE_FIELD_LABELS
from audit.models import AccessAction, AccessLog, AccessOutcome, AccessRule
from audit.services import RULE_AUDITED_FIELDS
from audit.staff_actions import staff_action_log
from audit.validation import LIST_FIELDS

HISTORY_PERMISSIONS = ("audit.view_accessrule", "audit.view_accesslog")

_CHANGE_WORDS = {
    "rule_created": "created",
    "rule_updated": "changed",
    "rule_disabled": "disabled",
}
_VIA_WORDS = {
    "admin": "in the admin",
    "rules_file": "by a rules-file import",
    "control_change": "by an approved change (maker/checker)",
}
# What an empty value means, per field, in the words of the rule form.
_EMPTY_WORDS = {
    "handled_by": "anyone (no condition)",
    "max_age_days": "any age",
    "valid_from": "not set",
    "valid_until": "not set",
    "reason": "empty",
}


@dataclass(frozen=True)
class FieldChange:
    """One field of one change: a list's ``added`` and ``removed`` values, or any other
    field's ``old`` and ``new`` value in words; ``digest`` when the row kept only hashes of
    values too large for it."""

    field: str
    label: str
    is_list: bool
    old: str = ""
    new: str = ""
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    digest: bool = False


@dataclass(frozen=True)
class RuleHistoryEntry:
    """One ``rule_change`` row: what happened, who did it, when, from where and how."""

    entry: AccessLog
    change: str
    via: str
    rule_name: str
    fields: tuple[FieldChange, ...]


def _words(field: str, value: Any) -> str:
    """A logged value as the rule form would show it."""
    if value is None or value == "":
        return _EMPTY_WORDS.get(field, "none")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if field in ("valid_from", "valid_until") and isinstance(value, str):
        try:
            return utc_text(datetime.fromisoformat(value))
        except ValueError:
            return value
    if field == "handled_by":
        return {"caller": "the caller", "caller_team": "the caller's team"}.get(value, value)
    return str(value)


def _as_list(value: Any) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else []


def _field_change(field: str, pair: Any, created: bool) -> FieldChange | None:
    """One field's change in words; ``None`` for a new rule's field left empty."""
    label = RULE_FIELD_LABELS.get(field, field.replace("_", " "))
    is_list = field in LIST_FIELDS
    if not isinstance(pair, dict):
        return None
    if "old_sha256" in pair or "new_sha256" in pair:
        return FieldChange(
            field,
            label,
            is_list,
            old=str(pair.get("old_sha256", "")),
            new=str(pair.get("new_sha256", "")),
            digest=True,
        )
    old, new = pair.get("old"), pair.get("new")
    if created and new in (None, "", []):
        return None
    if is_list:
        before, after = _as_list(old), _as_list(new)
        return FieldChange(
            field,
            label,
            True,
            added=tuple(item for item in after if item not in before),
            removed=tuple(item for item in before if item not in after),
        )
    return FieldChange(field, label, False, old=_words(field, old), new=_words(field, new))


def _field_order(field: str) -> int:
    try:
        return RULE_AUDITED_FIELDS.index(field)
    except ValueError:
        return len(RULE_AUDITED_FIELDS)


def rule_history_entry(entry: AccessLog) -> RuleHistoryEntry:
    """One ``rule_change`` row read as a diff, its fields in the rule form's order."""
    detail = entry.detail if isinstance(entry.detail, dict) else {}
    changes = detail.get("changes")
    changes = changes if isinstance(changes, dict) else {}
    created = entry.reason_code == "rule_created"
    fields = [
        change
        for name in sorted(changes, key=_field_order)
        if (change := _field_change(name, changes[name], created)) is not None
    ]
    via = str(detail.get("via", ""))
    return RuleHistoryEntry(
        entry=entry,
        change=_CHANGE_WORDS.get(entry.reason_code, entry.reason_code),
        via=_VIA_WORDS.get(via, via),
        rule_name=entry.rule_name,
        fields=tuple(fields),
    )


def values_diff(*, old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[FieldChange, ...]:
    """Two sets of values read as a diff in the rule form's words, the rule's fields in the
    form's order and others after them; only fields that differ (changes awaiting approval,
    ``audit.admin.control_changes``, show theirs this way)."""
    created = not old
    pairs = {
        name: {"old": old.get(name), "new": new.get(name)}
        for name in {*old, *new}
        if old.get(name) != new.get(name)
    }
    return tuple(
        change
        for name in sorted(pairs, key=lambda field: (_field_order(field), field))
        if (change := _field_change(name, pairs[name], created)) is not None
    )


def rule_history(*, rule_id: int) -> list[RuleHistoryEntry]:
    """Every ``rule_change`` row of the rule ``rule_id`` (across renames), oldest first, as
    field-by-field diffs."""
    rows = AccessLog.objects.filter(
        action=AccessAction.RULE_CHANGE, detail__rule_id=rule_id
    ).order_by("sequence")
    return [rule_history_entry(row) for row in rows]


def rule_history_view(
    request: HttpRequest, model_admin: admin.ModelAdmin, object_id: str
) -> HttpResponse:
    """The history page of one rule (for staff who may see both the rules and the log, as the
    page shows log rows); opening it, or being refused it, is written to the log."""
    if not request.user.has_perms(HISTORY_PERMISSIONS):
        staff_action_log(
            request,
            action=AccessAction.ADMIN_VIEW,
            outcome=AccessOutcome.DENIED,
            reason_code="permission",
            detail={"page": "rule_history", "rule_id": object_id[:20]},
        )
        raise PermissionDenied
    if not object_id.isdigit():
        raise Http404("No such rule.")
    rule = AccessRule.objects.filter(pk=int(object_id)).first()
    if rule is None:
        raise Http404("No such rule.")
    staff_action_log(
        request,
        action=AccessAction.ADMIN_VIEW,
        reason_code="rule_history",
        detail={"rule_id": rule.pk},
    )
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": AccessRule._meta,
        "title": f"History of rule {rule.name}",
        "rule": rule,
        "original": rule,
        "history": rule_history(rule_id=rule.pk),
    }
    return TemplateResponse(request, "admin/audit/accessrule/history.html", context)
