"""Forms of the audit admin pages: the access rule, the rule tester and the rules-file import.

Each form only turns text into values (and says what is wrong in a sentence); deciding and
writing stay in ``audit.decisions`` and ``audit.rules_file``.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from django import forms
from django.contrib.admin.widgets import AdminRadioSelect
from django.core.exceptions import ValidationError
from django.utils import timezone

from audit.decisions import Caller, RecordingFacts
from audit.models import ACCESS_RULE_FIELDS, AccessRule
from audit.rules_file import RulesFileError, rules_json_parse
from audit.validation import LIST_FIELDS, AccessRuleInvalid, access_rule_validate
from portal.sids import RECORDING_SID
from recordings.models import Recording
from recordings.playback.player_requests import caller_team_of

RULES_FILE_MAX_BYTES = 1024 * 1024
_WORKER_SID = re.compile(r"WK[0-9a-f]{32}")


# The rule form's words: labels and help in the officer's terms, shared with the rule history
# page (``audit.admin.rule_history``) so both name a field the same way.
RULE_FIELD_LABELS = {
    "name": "Name",
    "effect": "Effect",
    "enabled": "Enabled",
    "reason": "Reason",
    "identities": "Identities",
    "worker_sids": "Worker SIDs",
    "roles": "Roles",
    "account_sids": "Recording accounts",
    "sources": "Sources",
    "call_sids": "Call SIDs",
    "max_age_days": "Maximum age (days)",
    "queues": "Queues (SID or name)",
    "teams": "Teams",
    "workers": "Handling workers",
    "handled_by": "Handled by",
    "restricted": "Restricted recordings",
    "valid_from": "Valid from (UTC)",
    "valid_until": "Valid until (UTC)",
}
_ONE_PER_LINE = "One per line; leave empty for no condition."
RULE_FIELD_HELP = {
    "name": "A short, unique name; the access log names the rule that decided by it.",
    "effect": (
        "Allow lets the callers it matches play the recordings it covers. Deny refuses them, "
        "even when another rule allows (a deny always wins)."
    ),
    "enabled": "Rules are disabled, never deleted, so the log can always name them.",
    "reason": "Why the rule exists: a ticket, an approval, who asked.",
    "identities": (
        "Flex identities (or realm user ids) the rule is for; * and ? are wildcards, "
        f"e.g. qa_* or alice@example.com. {_ONE_PER_LINE}"
    ),
    "worker_sids": f"TaskRouter worker SIDs of the callers, WK followed by 32 hex digits. "
    f"{_ONE_PER_LINE}",
    "roles": (
        "Flex roles, e.g. supervisor or wfo.quality_manager; the caller needs at least one. "
        f"{_ONE_PER_LINE}"
    ),
    "account_sids": (f"Twilio accounts (AC…) whose recordings the rule covers. {_ONE_PER_LINE}"),
    "sources": f"How the recording was made, e.g. DialVerb or Trunking. {_ONE_PER_LINE}",
    "call_sids": f"Only the recordings of these calls (CA…). {_ONE_PER_LINE}",
    "max_age_days": "Only recordings at most this many days old; leave empty for any age.",
    "queues": (f"TaskRouter queues the call was handled in, by SID (WQ…) or name. {_ONE_PER_LINE}"),
    "teams": f"Teams of the agent who handled the call. {_ONE_PER_LINE}",
    "workers": f"Worker SIDs (WK…) of the agent who handled the call. {_ONE_PER_LINE}",
    "handled_by": (
        "Only recordings the caller handled, or an agent of the caller's team. A recording "
        "without Flex handling facts never matches this, nor queues, teams or workers."
    ),
    "valid_from": "The rule applies from this moment; leave empty for now.",
    "valid_until": "The rule stops applying at this moment (exclusive); leave empty for never.",
}
HANDLED_BY_CHOICES = (
    ("", "anyone (no condition)"),
    ("caller", "the caller"),
    ("caller_team", "the caller's team"),
)


def _looks_like_json_list(text: str) -> bool:
    """Whether ``text`` is a JSON array: the old way of typing a list, which as a glob would
    quietly mean something else (``["qa_*"]`` is a valid one-character class)."""
    if not text.startswith("["):
        return False
    try:
        return isinstance(json.loads(text), list)
    except ValueError:
        return False


class ListField(forms.Field):
    """A list of strings typed one per line: spaces around each value trimmed, blank lines and
    repeats dropped, and each value checked with the rules file's own validation
    (``audit.validation``), so every bad value is named with its line.

    Written here rather than taken from a package: the value must be validated per field by
    ``audit.validation``, and values may contain commas (queue and team names, glob classes),
    which rules out the comma-separated fields of ``django.contrib.postgres`` and tag widgets.
    """

    widget = forms.Textarea(attrs={"rows": 3, "cols": 60, "spellcheck": "false"})

    def __init__(self, *, rule_field: str, **kwargs: Any) -> None:
        self.rule_field = rule_field
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        """A stored list as one value per line (text the officer typed is shown as typed)."""
        if isinstance(value, list | tuple):
            return "\n".join(str(item) for item in value)
        return value

    def to_python(self, value: Any) -> list[str]:
        """The lines of ``value`` as a list, trimmed, without blanks or repeats."""
        if value in self.empty_values:
            return []
        if isinstance(value, list | tuple):
            lines = [str(item) for item in value]
        else:
            text = str(value).strip()
            if _looks_like_json_list(text):
                raise forms.ValidationError(
                    "Write one value per line, without brackets or quotes.", code="json"
                )
            lines = text.splitlines()
        values: list[str] = []
        for line in lines:
            item = line.strip()
            if item and item not in values:
                values.append(item)
        return values

    def validate(self, value: list[str]) -> None:
        """Each value checked on its own, so that every bad one is named."""
        super().validate(value)
        problems = []
        for item in value:
            try:
                access_rule_validate({self.rule_field: [item]})
            except AccessRuleInvalid as exc:
                problem = exc.errors[self.rule_field]
                # Most of the validation's sentences name the value ('sam' is not a SID…);
                # the others get it in front.
                if repr(item)[:20] not in problem:
                    problem = f"{item[:40]!r}: {problem}"
                problems.append(
                    forms.ValidationError(
                        "%(problem)s.", code="invalid_value", params={"problem": problem}
                    )
                )
        if problems:
            raise forms.ValidationError(problems)

    def has_changed(self, initial: Any, data: Any) -> bool:
        """Changed when the lists differ (not when only the spacing does)."""
        try:
            return self.to_python(initial) != self.to_python(data)
        except forms.ValidationError:
            return True


class AccessRuleForm(forms.ModelForm):
    """The admin's rule form, without JSON: each list is typed one value per line
    (:class:`ListField`), and a blank one means the empty list (no condition), as an omitted
    field does in the rules file; everything else is ``AccessRule.clean``'s.

    ``effect`` has no default: a new rule's author picks allow or deny. A preselected allow
    could grant access nobody decided on, and a preselected deny, on a rule whose lists are
    still empty, would refuse every recording to everyone.
    """

    identities = ListField(rule_field="identities")
    worker_sids = ListField(rule_field="worker_sids")
    roles = ListField(rule_field="roles")
    account_sids = ListField(rule_field="account_sids")
    sources = ListField(rule_field="sources")
    call_sids = ListField(rule_field="call_sids")
    queues = ListField(rule_field="queues")
    teams = ListField(rule_field="teams")
    workers = ListField(rule_field="workers")

    class Meta:
        model = AccessRule
        fields = (*ACCESS_RULE_FIELDS, "enabled")
        labels = RULE_FIELD_LABELS
        help_texts = RULE_FIELD_HELP
        widgets = {
            "effect": AdminRadioSelect(attrs={"class": "radiolist inline"}),
            "handled_by": AdminRadioSelect(attrs={"class": "radiolist"}),
            "reason": forms.Textarea(attrs={"rows": 2, "cols": 60}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A viewer's form has no editable fields at all (the admin shows them read-only).
        for name in LIST_FIELDS:
            if name in self.fields:
                # Labels and help of the declared fields (``Meta`` only reaches generated ones).
                self.fields[name].label = RULE_FIELD_LABELS[name]
                self.fields[name].help_text = RULE_FIELD_HELP[name]
        effect = self.fields.get("effect")
        if isinstance(effect, forms.ChoiceField):
            # No blank choice: the radio starts unselected and must be chosen.
            effect.choices = [("allow", "Allow"), ("deny", "Deny")]
            effect.error_messages["required"] = "Choose allow or deny."
        handled_by = self.fields.get("handled_by")
        if isinstance(handled_by, forms.ChoiceField):
            handled_by.choices = HANDLED_BY_CHOICES

    def clean(self) -> dict[str, Any]:
        """Blank list fields become ``[]`` before the model's own validation runs."""
        super().clean()
        cleaned = self.cleaned_data
        for name in LIST_FIELDS:
            if name in cleaned and cleaned[name] is None:
                cleaned[name] = []
        return cleaned

    def add_error(self, field: str | None, error: Any) -> None:
        """Add ``error``, except the model's errors for fields the form already refused: one
        sentence per problem ("Choose allow or deny.", not also "must be one of allow, deny,
        not ''"). The model's validation reports through here with ``field`` ``None``."""
        if field is None and isinstance(error, ValidationError) and hasattr(error, "error_dict"):
            kept = {
                name: errors for name, errors in error.error_dict.items() if name not in self.errors
            }
            if not kept:
                return
            error = ValidationError(kept)
        super().add_error(field, error)


class RuleTestForm(forms.Form):
    """A caller and a recording to run through the rules, as url_provider would."""

    identity = forms.CharField(
        max_length=255, help_text="The Flex token's identity, e.g. alice@example.com."
    )
    realm_user_id = forms.CharField(max_length=255, required=False, label="Realm user id")
    roles = forms.CharField(
        max_length=1000,
        required=False,
        help_text="Comma-separated, e.g. supervisor, wfo.quality_manager.",
    )
    worker_sid = forms.CharField(max_length=34, required=False, label="Worker SID")
    recording_sid = forms.CharField(max_length=34, label="Recording SID")
    at = forms.DateTimeField(
        required=False,
        label="At (UTC)",
        help_text="Leave empty for now; e.g. 2026-07-01 09:00 to test a validity window.",
    )

    # The recording named by ``recording_sid``, found while validating it.
    recording: Recording | None = None

    def clean_worker_sid(self) -> str:
        """Empty, or ``WK`` and 32 lowercase hex digits."""
        value = self.cleaned_data["worker_sid"].strip()
        if value and not _WORKER_SID.fullmatch(value):
            raise forms.ValidationError("A worker SID is WK followed by 32 lowercase hex digits.")
        return value

    def clean_recording_sid(self) -> str:
        """A recording the portal knows (its facts are what the rules look at)."""
        value = self.cleaned_data["recording_sid"].strip()
        if not RECORDING_SID.fullmatch(value):
            raise forms.ValidationError("A recording SID is RE followed by 32 hex digits.")
        self.recording = Recording.objects.filter(sid=value).first()
        if self.recording is None:
            raise forms.ValidationError("The portal has no recording with this SID.")
        return value

    def caller(self) -> Caller:
        """The caller, as a validated Flex token would describe it, with the team the worker
        directory gives its worker SID (what ``handled_by: caller_team`` compares)."""
        data = self.cleaned_data
        roles = tuple(role.strip() for role in data["roles"].split(",") if role.strip())
        return Caller(
            identity=data["identity"].strip(),
            realm_user_id=data["realm_user_id"].strip(),
            worker_sid=data["worker_sid"],
            roles=roles,
            team=caller_team_of(worker_sid=data["worker_sid"]),
        )

    def recording_facts(self) -> RecordingFacts:
        """The recording's facts (of a valid form: it names a recording the portal knows)."""
        if self.recording is None:
            raise ValueError("recording_facts() needs a valid form")
        return self.recording.access_facts()

    def moment(self) -> datetime:
        """When to decide: the given time, or now."""
        return self.cleaned_data["at"] or timezone.now()


class RulesImportForm(forms.Form):
    """A rules file, uploaded or pasted, and whether it replaces the rules it does not name."""

    file = forms.FileField(required=False, help_text="A rules file (JSON, as exported).")
    content = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 12, "cols": 90, "spellcheck": "false"}),
        label="…or paste it",
    )
    replace = forms.BooleanField(
        required=False,
        help_text="Disable enabled rules the file does not name (they are never deleted).",
    )
    fingerprint = forms.CharField(required=False, widget=forms.HiddenInput)

    def clean(self) -> dict[str, Any]:
        """Read the file (or the pasted text) and parse it; problems become form errors."""
        super().clean()
        cleaned = self.cleaned_data
        upload = cleaned.get("file")
        if upload is not None:
            if upload.size > RULES_FILE_MAX_BYTES:
                raise forms.ValidationError("The file is larger than 1 MiB.")
            raw: bytes | str = upload.read()
        else:
            raw = cleaned.get("content") or ""
        if not raw:
            raise forms.ValidationError("Choose a rules file or paste one.")
        if isinstance(raw, str) and len(raw.encode()) > RULES_FILE_MAX_BYTES:
            raise forms.ValidationError("The text is larger than 1 MiB.")
        try:
            cleaned["parsed"] = rules_json_parse(raw)
        except RulesFileError as exc:
            raise forms.ValidationError(exc.problems) from exc
        cleaned["text"] = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
        return cleaned
