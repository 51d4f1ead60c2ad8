"""The access-rules file of docs/contract.md: load it into ``AccessRule`` rows, dump the rows back.

A file lists rules. ``rules_load`` checks the whole file before writing anything (unknown
fields at any level, a missing ``name`` or ``effect``, wrong types, bad globs, SIDs, dates,
effects, duplicate names) and then writes in one transaction; every rule it names ends up with
every field the file leaves out at its empty default (lists empty; ``max_age_days``,
``handled_by``, dates null; no reason; ``enabled`` true), as docs/contract.md says. With
``replace=True``, enabled rules the file does not name are disabled, never deleted.
``rules_dump`` writes every rule, disabled ones included with ``"enabled": false`` (an optional
field this portal adds to the contract's format), by name, every field spelled out, so
importing an export changes nothing (``import(export(x)) == x``, a property test) and export →
import → export is byte-identical. Each change is written to the access log as a
``rule_change`` row, with its old and new values. ``rules_preview`` answers what a load would
change without writing anything (the admin's import shows it before the officer confirms).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import transaction

from audit.models import ACCESS_RULE_FIELDS, AccessRule
from audit.services import access_rule_change_log, access_rule_values
from audit.validation import HANDLED_BY_VALUES, AccessRuleInvalid, access_rule_validate

# Field order of a rule in the file, as in docs/contract.md.
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
    "enabled",
)
RECORDING_KEYS = (
    "account_sids",
    "sources",
    "call_sids",
    "max_age_days",
    "queues",
    "teams",
    "workers",
    "handled_by",
    "restricted",
)
# Fields a rule must name; every other field may be left out and takes its empty default.
REQUIRED_RULE_KEYS = ("name", "effect")
# What an omitted field means (docs/contract.md): lists empty; the age, handled_by and dates
# null; no reason; and (this portal's addition) enabled.
DEFAULTS: dict[str, Any] = {
    "identities": [],
    "worker_sids": [],
    "roles": [],
    "account_sids": [],
    "sources": [],
    "call_sids": [],
    "max_age_days": None,
    "queues": [],
    "teams": [],
    "workers": [],
    "handled_by": None,
    "restricted": False,
    "valid_from": None,
    "valid_until": None,
    "reason": "",
    "enabled": True,
}
# The model fields a file sets (everything but the name and the bookkeeping fields).
MODEL_FIELDS = (*(field for field in ACCESS_RULE_FIELDS if field != "name"), "enabled")


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
    for key in REQUIRED_RULE_KEYS:
        if key not in raw:
            problems.append(f"{label}: missing field {key!r}")
    scope = raw.get("recordings", {})
    if not isinstance(scope, dict):
        problems.append(f"{label}: field 'recordings' must be a JSON object")
        scope = {}
    for key in scope:
        if key not in RECORDING_KEYS:
            problems.append(f"{label}: unknown field 'recordings.{key}'")
    if len(problems) > count_before:
        return None

    # Omitted fields take their empty defaults (copied: a default list is never shared).
    values: dict[str, Any] = {
        key: raw[key] if key in raw else copy.deepcopy(DEFAULTS[key])
        for key in RULE_KEYS
        if key != "recordings"
    }
    values.update(
        {
            key: scope[key] if key in scope else copy.deepcopy(DEFAULTS[key])
            for key in RECORDING_KEYS
        }
    )
    file_names = {key: key for key in values}
    file_names.update({key: f"recordings.{key}" for key in RECORDING_KEYS})
    if values["handled_by"] == "":
        # The model's "no condition" is "", but the file says null: "" there is a typo.
        problems.append(
            f"{label}: field 'recordings.handled_by': must be null, "
            f"{' or '.join(HANDLED_BY_VALUES)}, not ''"
        )
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


def _rule_change_log(
    *, rule: AccessRule, change: str, before: dict[str, Any] | None, actor: str
) -> None:
    access_rule_change_log(rule=rule, change=change, before=before, actor=actor, via="rules_file")


def _changed_fields(rule: AccessRule, values: Mapping[str, Any]) -> list[str]:
    """The fields loading ``values`` would change on ``rule``."""
    return [key for key in MODEL_FIELDS if getattr(rule, key) != values[key]]


@dataclass(frozen=True)
class RulePreview:
    """What loading a file would do to one rule: ``change`` is ``created``, ``updated``,
    ``unchanged`` or ``disabled``; ``fields`` lists ``(field, old, new)`` for each value that
    would change, in the file's terms (``recordings.max_age_days``, ISO times)."""

    name: str
    change: str
    fields: tuple[tuple[str, Any, Any], ...] = ()


def _file_value(key: str, value: Any) -> Any:
    """A model value as the file spells it."""
    if key in ("valid_from", "valid_until"):
        return _timestamp(value)
    if key == "handled_by":
        return value or None
    return list(value) if isinstance(value, list | tuple) else value


def _file_name(key: str) -> str:
    return f"recordings.{key}" if key in RECORDING_KEYS else key


def rules_preview(data: Mapping[str, Any], *, replace: bool) -> list[RulePreview]:
    """What :func:`rules_load` would do with ``data``, without writing anything.

    Validates exactly as ``rules_load`` does (raising :class:`RulesFileError`), then compares
    with the rules in the database: one :class:`RulePreview` per rule named in the file (file
    order), then, with ``replace``, one per enabled rule the file would disable (by name).
    """
    parsed = rules_file_validate(data)
    existing = {rule.name: rule for rule in AccessRule.objects.all()}
    previews: list[RulePreview] = []
    for values in parsed:
        rule = existing.get(values["name"])
        fields: tuple[tuple[str, Any, Any], ...]
        if rule is None:
            fields = tuple(
                (_file_name(key), None, _file_value(key, values[key])) for key in MODEL_FIELDS
            )
            previews.append(RulePreview(values["name"], "created", fields))
            continue
        changed = _changed_fields(rule, values)
        fields = tuple(
            (_file_name(key), _file_value(key, getattr(rule, key)), _file_value(key, values[key]))
            for key in changed
        )
        previews.append(RulePreview(rule.name, "updated" if changed else "unchanged", fields))
    if replace:
        named = {values["name"] for values in parsed}
        previews.extend(
            RulePreview(name, "disabled", (("enabled", True, False),))
            for name, rule in sorted(existing.items())
            if rule.enabled and name not in named
        )
    return previews


def rules_state_fingerprint() -> str:
    """A SHA-256 over every rule's id and values, disabled rules included: it differs as soon
    as any rule changes, so a preview shown to an officer can be refused once out of date."""
    state = [[rule.pk, access_rule_values(rule)] for rule in AccessRule.objects.order_by("pk")]
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


@transaction.atomic
def rules_load(data: Mapping[str, Any], *, replace: bool, actor: str = "cli") -> ImportSummary:
    """Validate a parsed rules file, then write it in one transaction; answer what changed.

    Rules are matched by ``name``: new ones are created, existing ones updated (and enabled,
    unless the file says ``"enabled": false``). With ``replace``, enabled rules absent from the
    file are disabled. Nothing is ever deleted.
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
            _rule_change_log(rule=rule, change="created", before=None, actor=actor)
            continue
        if not _changed_fields(rule, values):
            summary.unchanged.append(rule.name)
            continue
        before = access_rule_values(rule)
        for key in MODEL_FIELDS:
            setattr(rule, key, values[key])
        rule.save()
        summary.updated.append(rule.name)
        _rule_change_log(rule=rule, change="updated", before=before, actor=actor)
    if replace:
        named = {values["name"] for values in parsed}
        for rule in existing.values():
            if rule.enabled and rule.name not in named:
                before = access_rule_values(rule)
                rule.enabled = False
                rule.save(update_fields=["enabled", "updated_at"])
                summary.disabled.append(rule.name)
                _rule_change_log(rule=rule, change="disabled", before=before, actor=actor)
    return summary


def _timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rule_dump(rule: AccessRule) -> dict[str, Any]:
    """One rule in the file's format, every field spelled out, in docs/contract.md's order."""
    scope = {key: _file_value(key, getattr(rule, key)) for key in RECORDING_KEYS}
    if not scope["restricted"]:
        # Optional and false by default: left out, so rules that do not name restricted
        # recordings export exactly as before the field existed.
        del scope["restricted"]
    return {
        key: scope if key == "recordings" else _file_value(key, getattr(rule, key))
        for key in RULE_KEYS
    }


def rules_dump() -> dict[str, Any]:
    """Every rule, disabled ones included (``"enabled": false``), ordered by name, in the
    rules-file format of docs/contract.md: loading it (with ``replace``) gives back exactly the
    rules it was made from."""
    # Sorted in Python: database collations order names differently.
    rules = sorted(AccessRule.objects.all(), key=lambda rule: rule.name)
    return {"rules": [_rule_dump(rule) for rule in rules]}


def rules_dump_text() -> str:
    """:func:`rules_dump` as the text ``export_access_rules`` prints (2-space indent, ASCII)."""
    return json.dumps(rules_dump(), indent=2, ensure_ascii=True) + "\n"
