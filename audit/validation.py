"""Validation of access-rule values, shared by the rules-file import and ``AccessRule.clean()``.

One function checks a rule's values, so a rule typed into the admin and a rule loaded from a file
obey exactly the same constraints. It works on Python values (lists, ints, aware datetimes);
turning file text into those values (parsing dates, checking that a list is a list of strings) is
the file loader's job, and it reports its own errors with the same field names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

RULE_EFFECTS = ("allow", "deny")
# ``handled_by`` values; the model stores "no condition" as "" (the rules file says null).
HANDLED_BY_VALUES = ("caller", "caller_team")

# Subject lists, then recording-scope lists, as they are named on the model.
SUBJECT_LIST_FIELDS = ("identities", "worker_sids", "roles")
SCOPE_LIST_FIELDS = ("account_sids", "sources", "call_sids", "queues", "teams", "workers")
LIST_FIELDS = SUBJECT_LIST_FIELDS + SCOPE_LIST_FIELDS

NAME_MAX_LENGTH = 100
GLOB_MAX_LENGTH = 200
ROLE_MAX_LENGTH = 100
SOURCE_MAX_LENGTH = 64
# Queue and team names as TaskRouter and the worker directory hold them (255-character columns).
HANDLING_NAME_MAX_LENGTH = 255
_TEXT_LIMITS = {
    "roles": ROLE_MAX_LENGTH,
    "sources": SOURCE_MAX_LENGTH,
    "queues": HANDLING_NAME_MAX_LENGTH,
    "teams": HANDLING_NAME_MAX_LENGTH,
}
REASON_MAX_LENGTH = 2000
# A hundred years: beyond that the limit means nothing, and the value must fit every database's
# integer column.
MAX_AGE_DAYS_LIMIT = 36500

# Twilio SIDs are a two-letter prefix and 32 lowercase hex digits. A SID in another shape can never
# equal a real one, so it is rejected rather than silently never matching.
_SID_PATTERNS = {
    "worker_sids": re.compile(r"WK[0-9a-f]{32}"),
    "workers": re.compile(r"WK[0-9a-f]{32}"),
    "account_sids": re.compile(r"AC[0-9a-f]{32}"),
    "call_sids": re.compile(r"CA[0-9a-f]{32}"),
}
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


class AccessRuleInvalid(ValueError):
    """A rule's values break a constraint; ``errors`` maps each bad field to a sentence."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))


def glob_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not an acceptable identity glob, or ``None`` when it is.

    Globs use :func:`fnmatch.fnmatchcase` syntax (``*``, ``?``, ``[seq]``, ``[!seq]``). fnmatch
    itself never fails: it quietly treats an unclosed ``[`` as a literal character, so ``qa_[12``
    would match only the literal text ``qa_[12``, which is almost certainly a typo in a rule
    that grants or refuses access. So an unclosed ``[``, a stray ``]`` (write ``[]]`` for a
    literal one), an empty class and a reversed range (``[z-a]``, which matches nothing) are
    refused here.
    """
    if not pattern:
        return "a glob must not be empty"
    if len(pattern) > GLOB_MAX_LENGTH:
        return f"a glob must be at most {GLOB_MAX_LENGTH} characters"
    if _CONTROL_CHARACTERS.search(pattern):
        return "a glob must not contain control characters"
    index, length = 0, len(pattern)
    while index < length:
        char = pattern[index]
        index += 1
        if char == "]":
            return (
                f"unbalanced ']' at position {index} in {pattern!r} (write '[]]' for a literal ])"
            )
        if char != "[":
            continue
        # The same scan as fnmatch.translate: an optional '!', then a ']' that is literal
        # because it comes first, then everything up to the closing ']'.
        end = index
        if end < length and pattern[end] == "!":
            end += 1
        if end < length and pattern[end] == "]":
            end += 1
        while end < length and pattern[end] != "]":
            end += 1
        if end >= length:
            return f"unbalanced '[' at position {index} in {pattern!r}"
        body = pattern[index:end]
        if body.startswith("!"):
            body = body[1:]
        if not body:
            return f"empty character class at position {index} in {pattern!r}"
        position = 0
        while position < len(body):
            if position + 2 < len(body) and body[position + 1] == "-":
                low, high = body[position], body[position + 2]
                if low > high:
                    return f"reversed range '{low}-{high}' in {pattern!r}"
                position += 3
            else:
                position += 1
        index = end + 1
    return None


def _string_list_problem(field: str, values: Any) -> str | None:
    if not isinstance(values, list | tuple):
        return "must be a list of strings"
    for value in values:
        if not isinstance(value, str):
            return f"must be a list of strings, found {value!r}"
        if field == "identities":
            problem = glob_problem(value)
            if problem:
                return problem
            continue
        if field in _SID_PATTERNS:
            if not _SID_PATTERNS[field].fullmatch(value):
                prefix = _SID_PATTERNS[field].pattern[:2]
                return f"{value!r} is not a SID ({prefix} followed by 32 lowercase hex digits)"
            continue
        limit = _TEXT_LIMITS[field]
        if not value or value != value.strip() or _CONTROL_CHARACTERS.search(value):
            return f"{value!r} must be non-empty, without surrounding spaces or control characters"
        if len(value) > limit:
            return f"{value[:20]!r}… is longer than {limit} characters"
    return None


def _datetime_problem(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        return "must be a date and time or null"
    if value.tzinfo is None or value.utcoffset() is None:
        return "must include a time zone (e.g. 2027-06-30T00:00:00Z)"
    return None


def access_rule_validate(values: Mapping[str, Any]) -> dict[str, Any]:
    """Check one rule's values and answer them normalized, or raise :class:`AccessRuleInvalid`.

    ``values`` uses the model's field names (``name``, ``effect``, the nine lists,
    ``max_age_days``, ``handled_by``, ``valid_from``, ``valid_until``, ``reason``, ``enabled``);
    fields that are absent are not checked, so the admin's partial forms and the full file
    import share this function.

    Normalization: lists become lists, ``handled_by`` ``None`` becomes ``""`` (the model's "no
    condition"), datetimes become UTC and lose sub-second digits (the rules file has whole
    seconds, and export must reproduce what import stored).
    """
    errors: dict[str, str] = {}
    cleaned: dict[str, Any] = dict(values)

    if "name" in values:
        name = values["name"]
        if not isinstance(name, str) or not name:
            errors["name"] = "must be a non-empty string"
        elif name != name.strip() or _CONTROL_CHARACTERS.search(name):
            errors["name"] = "must not have surrounding spaces or control characters"
        elif len(name) > NAME_MAX_LENGTH:
            errors["name"] = f"must be at most {NAME_MAX_LENGTH} characters"

    if "effect" in values and values["effect"] not in RULE_EFFECTS:
        errors["effect"] = f"must be one of {', '.join(RULE_EFFECTS)}, not {values['effect']!r}"

    for field in LIST_FIELDS:
        if field in values:
            problem = _string_list_problem(field, values[field])
            if problem:
                errors[field] = problem
            else:
                cleaned[field] = list(values[field])

    if "max_age_days" in values:
        days = values["max_age_days"]
        if days is not None and (
            isinstance(days, bool)
            or not isinstance(days, int)
            or not 0 <= days <= MAX_AGE_DAYS_LIMIT
        ):
            errors["max_age_days"] = (
                f"must be null or a whole number from 0 to {MAX_AGE_DAYS_LIMIT}"
            )

    for field in ("valid_from", "valid_until"):
        if field in values:
            problem = _datetime_problem(values[field])
            if problem:
                errors[field] = problem
            elif values[field] is not None:
                cleaned[field] = values[field].astimezone(UTC).replace(microsecond=0)
    start, end = cleaned.get("valid_from"), cleaned.get("valid_until")
    if (
        "valid_from" not in errors
        and "valid_until" not in errors
        and isinstance(start, datetime)
        and isinstance(end, datetime)
        and start >= end
    ):
        errors["valid_until"] = "must be later than valid_from (the rule would never apply)"

    if "handled_by" in values:
        handled_by = values["handled_by"]
        if handled_by is None or handled_by == "":
            cleaned["handled_by"] = ""
        elif handled_by not in HANDLED_BY_VALUES:
            errors["handled_by"] = (
                f"must be null, {' or '.join(HANDLED_BY_VALUES)}, not {handled_by!r}"
            )

    if "restricted" in values and not isinstance(values["restricted"], bool):
        errors["restricted"] = "must be true or false"

    if "enabled" in values and not isinstance(values["enabled"], bool):
        errors["enabled"] = "must be true or false"

    if "reason" in values:
        reason = values["reason"]
        if not isinstance(reason, str):
            errors["reason"] = "must be a string"
        elif len(reason) > REASON_MAX_LENGTH:
            errors["reason"] = f"must be at most {REASON_MAX_LENGTH} characters"
        elif "\x00" in reason:
            # PostgreSQL text cannot hold NUL: refused here with words, not by the database.
            errors["reason"] = "must not contain NUL characters"

    if errors:
        raise AccessRuleInvalid(errors)
    return cleaned
