"""The access-rules file of CONTRACT.md: load it into ``AccessRule`` rows, dump the rows back.

A file lists the rules in force. ``rules_load`` checks the whole file before writing anything
(unknown or missing fields at any level, wrong types, bad globs, dates, effects, duplicate names)
and then writes in one transaction; every rule it names ends up enabled. With ``replace=True``,
enabled rules the file does not name are disabled, never deleted. ``rules_dump`` writes the
enabled rules, by name, in exactly the file's format, so export → import → export is
byte-identical. Each change is written to the access log as a ``rule_change`` row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import transaction

from audit.models import AccessAction, AccessOutcome, AccessRule
from audit.services import access_log_append
from audit.validation import AccessRuleInvalid, access_rule_validate

# Field order of a rule in the file, as in CONTRACT.md.
RULE_KEYS = (
    "name",
    "effect",
    "identities",
    "worker_sids",
    "roles",
    "recordings",
    "valid_from",
    "valid_until",
    "reason",
)
RECORDING_KEYS = ("account_sids", "sources", "call_sids", "max_age_days")
# The model fields a file sets (everything but the bookkeeping fields).
MODEL_FIELDS = (
    "effect",
    "identities",
    "worker_sids",
    "roles",
    "account_sids",
    "sources",
    "call_sids",
    "max_age_days",
    "valid_from",
    "valid_until",
    "reason",
)


class RulesFileError(ValueError):
    """The file is not a valid rules file; ``problems`` lists each problem, rule and field named."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid access rules file:\n  " + "\n  ".join(problems))


@dataclass
class ImportSummary:
    """What ``rules_load`` did, by rule name."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.disabled)} disabled"
        )


def rules_json_parse(text: str | bytes) -> Any:
    """Parse a rules file's JSON text, refusing duplicate keys (JSON would keep the last one)."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise RulesFileError([f"duplicate key {key!r} in one JSON object"])
            result[key] = value
        return result

    if isinstance(text, bytes):
        try:
            # Explicitly UTF-8 (a BOM is tolerated): json.loads would guess UTF-16 or -32.
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise RulesFileError([f"the file is not UTF-8 text: {exc}"]) from exc
    try:
        return json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise RulesFileError([f"the file is not valid JSON: {exc}"]) from exc


def _datetime_parse(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str) or "T" not in value:
        raise ValueError("must be null or an ISO 8601 date and time, e.g. 2027-06-30T00:00:00Z")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an ISO 8601 date and time") from exc
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone (add Z for UTC)")
    return parsed


def _rule_values(raw: Any, label: str, problems: list[str]) -> dict[str, Any] | None:
    """The model values of one rule from the file, or ``None`` after adding its problems."""
    if not isinstance(raw, dict):
        problems.append(f"{label}: must be a JSON object")
        return None
    count_before = len(problems)
    for key in raw:
        if key not in RULE_KEYS:
            problems.append(f"{label}: unknown field {key!r}")
    for key in RULE_KEYS:
        if key not in raw:
            problems.append(f"{label}: missing field {key!r}")
    scope = raw.get("recordings")
    if "recordings" in raw:
        if not isinstance(scope, dict):
            problems.append(f"{label}: field 'recordings' must be a JSON object")
            scope = None
        else:
            for key in scope:
                if key not in RECORDING_KEYS:
                    problems.append(f"{label}: unknown field 'recordings.{key}'")
            for key in RECORDING_KEYS:
                if key not in scope:
                    problems.append(f"{label}: missing field 'recordings.{key}'")
    if len(problems) > count_before:
        return None

    values: dict[str, Any] = {key: raw[key] for key in RULE_KEYS if key != "recordings"}
    values.update(scope or {})
    file_names = {key: key for key in values}
    file_names.update({key: f"recordings.{key}" for key in RECORDING_KEYS})
    for key in ("valid_from", "valid_until"):
        try:
            values[key] = _datetime_parse(values[key])
        except ValueError as exc:
            problems.append(f"{label}: field {key!r}: {exc}")
    if len(problems) > count_before:
        return None
    try:
        return access_rule_validate(values)
    except AccessRuleInvalid as exc:
        for key, message in exc.errors.items():
            problems.append(f"{label}: field {file_names.get(key, key)!r}: {message}")
        return None


def rules_file_validate(data: Any) -> list[dict[str, Any]]:
    """Check a parsed rules file completely; answer each rule's model values, in file order.

    Raises :class:`RulesFileError` listing every problem found, each naming the rule (by name,
    or by position when the name itself is unusable) and the field.
    """
    if not isinstance(data, dict):
        raise RulesFileError(['the file must be a JSON object with a "rules" list'])
    problems = [f"unknown top-level field {key!r}" for key in data if key != "rules"]
    rules = data.get("rules")
    if not isinstance(rules, list):
        raise RulesFileError([*problems, 'the file must have a "rules" list'])
    parsed: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for position, raw in enumerate(rules, start=1):
        name = raw.get("name") if isinstance(raw, dict) else None
        label = (
            f"rule {name!r} (#{position})"
            if isinstance(name, str) and name
            else f"rule #{position}"
        )
        if isinstance(name, str) and name:
            if name in seen:
                problems.append(f"{label}: field 'name': duplicate of rule #{seen[name]}")
            seen.setdefault(name, position)
        values = _rule_values(raw, label, problems)
        if values is not None:
            parsed.append(values)
    if problems:
        raise RulesFileError(problems)
    return parsed


def _rule_change_log(*, rule: AccessRule, change: str, fields: list[str], actor: str) -> None:
    access_log_append(
        action=AccessAction.RULE_CHANGE,
        outcome=AccessOutcome.ALLOWED,
        reason_code=f"rule_{change}",
        identity=actor,
        rule_name=rule.name,
        detail={"via": "rules_file", "rule_id": rule.pk, "fields": fields},
    )


@transaction.atomic
def rules_load(data: Mapping[str, Any], *, replace: bool, actor: str = "cli") -> ImportSummary:
    """Validate a parsed rules file, then write it in one transaction; answer what changed.

    Rules are matched by ``name``: new ones are created, existing ones updated (and enabled).
    With ``replace``, enabled rules absent from the file are disabled. Nothing is ever deleted.
    ``actor`` is recorded as the identity of the ``rule_change`` log rows.
    """
    parsed = rules_file_validate(data)
    summary = ImportSummary()
    existing = {rule.name: rule for rule in AccessRule.objects.select_for_update()}
    for values in parsed:
        rule = existing.get(values["name"])
        if rule is None:
            rule = AccessRule(name=values["name"], **{key: values[key] for key in MODEL_FIELDS})
            rule.save()
            summary.created.append(rule.name)
            _rule_change_log(rule=rule, change="created", fields=list(MODEL_FIELDS), actor=actor)
            continue
        changed = [key for key in MODEL_FIELDS if getattr(rule, key) != values[key]]
        if not rule.enabled:
            changed.append("enabled")
        if not changed:
            summary.unchanged.append(rule.name)
            continue
        for key in MODEL_FIELDS:
            setattr(rule, key, values[key])
        rule.enabled = True
        rule.save()
        summary.updated.append(rule.name)
        _rule_change_log(rule=rule, change="updated", fields=changed, actor=actor)
    if replace:
        named = {values["name"] for values in parsed}
        for rule in existing.values():
            if rule.enabled and rule.name not in named:
                rule.enabled = False
                rule.save(update_fields=["enabled", "updated_at"])
                summary.disabled.append(rule.name)
                _rule_change_log(rule=rule, change="disabled", fields=["enabled"], actor=actor)
    return summary


def _timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rules_dump() -> dict[str, Any]:
    """The enabled rules, ordered by name, in the rules-file format of CONTRACT.md.

    Disabled rules are left out: the file lists the rules in force, and importing it must not
    bring a disabled rule back.
    """
    return {
        "rules": [
            {
                "name": rule.name,
                "effect": rule.effect,
                "identities": list(rule.identities),
                "worker_sids": list(rule.worker_sids),
                "roles": list(rule.roles),
                "recordings": {
                    "account_sids": list(rule.account_sids),
                    "sources": list(rule.sources),
                    "call_sids": list(rule.call_sids),
                    "max_age_days": rule.max_age_days,
                },
                "valid_from": _timestamp(rule.valid_from),
                "valid_until": _timestamp(rule.valid_until),
                "reason": rule.reason,
            }
            # Sorted in Python: database collations order names differently.
            for rule in sorted(AccessRule.objects.filter(enabled=True), key=lambda r: r.name)
        ]
    }


def rules_dump_text() -> str:
    """:func:`rules_dump` as the text ``export_access_rules`` prints (2-space indent, ASCII)."""
    return json.dumps(rules_dump(), indent=2, ensure_ascii=True) + "\n"
