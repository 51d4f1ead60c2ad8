"""Forms of the audit admin pages: the access rule, the rule tester and the rules-file import.

Each form only turns text into values (and says what is wrong in a sentence); deciding and
writing stay in ``audit.decisions`` and ``audit.rules_file``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from django import forms
from django.utils import timezone

from audit.decisions import Caller, RecordingFacts
from audit.models import ACCESS_RULE_FIELDS, AccessRule
from audit.rules_file import RulesFileError, rules_json_parse
from audit.validation import LIST_FIELDS
from portal.sids import RECORDING_SID
from recordings.models import Recording
from recordings.playback.player_requests import caller_team_of

RULES_FILE_MAX_BYTES = 1024 * 1024
_WORKER_SID = re.compile(r"WK[0-9a-f]{32}")


class AccessRuleForm(forms.ModelForm):
    """The admin's rule form: a list left blank means the empty list (no condition), as an
    omitted field does in the rules file; everything else is ``AccessRule.clean``'s."""

    class Meta:
        model = AccessRule
        fields = (*ACCESS_RULE_FIELDS, "enabled")

    def clean(self) -> dict[str, Any]:
        """Blank list fields become ``[]`` before the model's own validation runs."""
        super().clean()
        cleaned = self.cleaned_data
        for name in LIST_FIELDS:
            if name in cleaned and cleaned[name] is None:
                cleaned[name] = []
        return cleaned


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
