"""Restricted recordings: mark and unmark, each change audited.

A restricted recording (PCI segment not paused, HR matter, caller declined QA use, or any reason
the officer gives) is played only under an approved access request or a rule that names
restricted recordings (``audit.decisions``). Marking is by hand or from a search in the admin
(``recordings.admin.restricted``), or by a rule on its facts
(``recordings.lifecycle.restriction_rules``); each recording changed is one
``recording_restrict`` row in the access log with the reason, who did it and the rule if any.
The fields live on ``Recording`` (``restricted_at``, ``restricted_reason``,
``restricted_by``); this module is the only writer.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import transaction

from audit.models import AccessAction, AccessOutcome
from audit.services import access_log_append
from recordings.models import Recording

REASON_MAX_LENGTH = 2000
RESTRICTED = "recording_restricted"
RESTRICTED_BY_RULE = "restricted_by_rule"
UNRESTRICTED = "recording_unrestricted"


class RestrictionInvalid(ValueError):
    """A restriction that cannot be made (no reason, say)."""


def _log(
    recording: Recording, reason_code: str, *, actor: str, reason: str, rule: str | None = None
) -> None:
    detail: dict[str, object] = {"restricted": True, "reason": reason.replace("://", ":/ /")[:500]}
    if rule is not None:
        detail["rule"] = rule[:100]
    access_log_append(
        action=AccessAction.RECORDING_RESTRICT,
        outcome=AccessOutcome.ALLOWED,
        reason_code=reason_code,
        identity=actor,
        recording_sid=recording.sid,
        detail=detail,
    )


def recordings_restrict(
    *,
    recordings: Iterable[Recording],
    reason: str,
    actor: str,
    now: datetime,
    rule: str | None = None,
) -> list[str]:
    """Mark ``recordings`` restricted with ``reason`` (required); answer the SIDs that changed.
    Already-restricted recordings keep their first restriction (and are not logged again).
    ``rule`` names the restriction rule that matched them (``restricted_by_rule`` in the log,
    and ``restricted_by`` says "rule <name>" beside the actor)."""
    reason = reason.strip()
    if not reason:
        raise RestrictionInvalid("give the reason for the restriction")
    if len(reason) > REASON_MAX_LENGTH or "\x00" in reason:
        raise RestrictionInvalid(f"the reason has at most {REASON_MAX_LENGTH} characters, no NUL")
    changed: list[str] = []
    with transaction.atomic():
        ids = [recording.pk for recording in recordings]
        for recording in Recording.objects.select_for_update().filter(
            pk__in=ids, restricted_at__isnull=True
        ):
            recording.restricted_at = now
            recording.restricted_reason = reason
            recording.restricted_by = (actor if rule is None else f"{actor} (rule {rule})")[:255]
            recording.save(update_fields=["restricted_at", "restricted_reason", "restricted_by"])
            code = RESTRICTED if rule is None else RESTRICTED_BY_RULE
            _log(recording, code, actor=actor, reason=reason, rule=rule)
            changed.append(recording.sid)
    return changed


def recordings_unrestrict(*, recordings: Iterable[Recording], reason: str, actor: str) -> list[str]:
    """Lift the restriction of ``recordings`` with ``reason`` (required); answer the SIDs that
    changed."""
    reason = reason.strip()
    if not reason:
        raise RestrictionInvalid("give the reason for lifting the restriction")
    changed: list[str] = []
    with transaction.atomic():
        ids = [recording.pk for recording in recordings]
        for recording in Recording.objects.select_for_update().filter(
            pk__in=ids, restricted_at__isnull=False
        ):
            recording.restricted_at = None
            recording.restricted_reason = ""
            recording.restricted_by = ""
            recording.save(update_fields=["restricted_at", "restricted_reason", "restricted_by"])
            _log(recording, UNRESTRICTED, actor=actor, reason=reason)
            changed.append(recording.sid)
    return changed
