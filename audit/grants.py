"""Access requests with a second approver (four eyes), and the time-boxed grants they become.

A Flex user who may not play a recording (or a call's, or a team's recordings) asks for it with a
reason and a duration (:func:`access_request_create`, from the portal's ``/access-requests/``
page or by staff on their behalf in the admin); a staff member holding
``audit.approve_accessgrant`` who is not the requester approves (:func:`access_request_approve`)
or refuses (:func:`access_request_refuse`) it. An approval is a grant from the approval's instant
for the requested duration: ``audit.decisions.access_decide`` reads it (``GrantView``), so it
expires on its own; :func:`access_grant_revoke` ends it early. Every step is one access-log row
(action ``access_request``) naming requester, approver and reason; the grant's use is the
url_provider row (``allowed_by_grant``, with the grant in its detail).

Requester ≠ approver is enforced here, not just shown: the staff member who filed the request
cannot approve it, nor can one whose e-mail is the requester's Flex identity (decoded the way
Flex encodes e-mails, ``audit.people``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count, Q

from audit.labels import PLAYER_ACTIONS
from audit.models import AccessGrant, AccessLog, AccessOutcome, GrantScope, GrantStatus
from audit.people import flex_identity_decode
from audit.services import access_log_append

ACTION = "access_request"
MAX_DURATION_HOURS = 24 * 30
REASON_MAX_LENGTH = 2000
APPROVE_PERMISSION = "audit.approve_accessgrant"
_SCOPE_PATTERNS = {
    GrantScope.RECORDING: re.compile(r"RE[0-9a-fA-F]{32}"),
    GrantScope.CALL: re.compile(r"CA[0-9a-fA-F]{32}"),
    GrantScope.TEAM: re.compile(r"\S(?:.{0,253}\S)?"),
}


class AccessRequestInvalid(ValueError):
    """A request, approval, refusal or revocation that cannot be made; ``errors`` by field."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))


def _log_text(value: str, limit: int = 500) -> str:
    """Free text for the log's detail, which refuses anything that reads as a link."""
    return value.replace("://", ":/ /")[:limit]


def _staff_name(user: User | None) -> str:
    return user.get_username() if user is not None else ""


def _log(grant: AccessGrant, reason_code: str, outcome: str, **extra: Any) -> None:
    requester = _staff_name(grant.requested_by) or grant.grantee_identity
    access_log_append(
        action=ACTION,
        outcome=outcome,
        reason_code=reason_code,
        identity=grant.grantee_identity,
        worker_sid=grant.grantee_worker_sid,
        recording_sid=grant.scope_value if grant.scope == GrantScope.RECORDING else "",
        detail={
            "grant_id": grant.pk,
            "requester": requester,
            "on_behalf_of": grant.grantee_identity if grant.requested_by_id else "",
            "approver": _staff_name(grant.decided_by),
            "scope": grant.scope,
            "scope_value": _log_text(grant.scope_value),
            "reason": _log_text(grant.reason),
            "duration_hours": grant.duration_hours,
            **extra,
        },
    )


def access_request_check(
    *, identity: str, scope: str, scope_value: str, reason: str, duration_hours: int
) -> tuple[str, str]:
    """Check a request's fields; answer the scope value and reason trimmed, or raise
    :class:`AccessRequestInvalid` naming each bad field (the page and the admin show them)."""
    errors: dict[str, str] = {}
    scope_value = scope_value.strip()
    reason = reason.strip()
    if not identity:
        errors["identity"] = "the requester's Flex identity is unknown"
    if scope not in GrantScope.values:
        errors["scope"] = f"must be one of {', '.join(GrantScope.values)}"
    elif not _SCOPE_PATTERNS[GrantScope(scope)].fullmatch(scope_value):
        errors["scope_value"] = {
            GrantScope.RECORDING: "a recording SID is RE and 32 hex digits",
            GrantScope.CALL: "a call SID is CA and 32 hex digits",
            GrantScope.TEAM: "a team name of 1 to 255 characters",
        }[GrantScope(scope)]
    if not reason:
        errors["reason"] = "say why you need the access"
    elif len(reason) > REASON_MAX_LENGTH or "\x00" in reason:
        errors["reason"] = f"at most {REASON_MAX_LENGTH} characters, no NUL"
    if (
        isinstance(duration_hours, bool)
        or not isinstance(duration_hours, int)
        or not 1 <= duration_hours <= MAX_DURATION_HOURS
    ):
        errors["duration_hours"] = f"a whole number of hours from 1 to {MAX_DURATION_HOURS}"
    if errors:
        raise AccessRequestInvalid(errors)
    return scope_value, reason


def access_request_create(
    *,
    identity: str,
    worker_sid: str = "",
    scope: str,
    scope_value: str,
    reason: str,
    duration_hours: int,
    now: datetime,
    requested_by: User | None = None,
) -> AccessGrant:
    """File an access request for the Flex user ``identity`` (``requested_by``: the staff member
    who files it on their behalf, who then may not approve it), and log it.

    Raises :class:`AccessRequestInvalid` naming each bad field; nothing is written then.
    """
    scope_value, reason = access_request_check(
        identity=identity,
        scope=scope,
        scope_value=scope_value,
        reason=reason,
        duration_hours=duration_hours,
    )
    with transaction.atomic():
        grant = AccessGrant.objects.create(
            grantee_identity=identity[:255],
            grantee_worker_sid=worker_sid[:34],
            scope=scope,
            scope_value=scope_value,
            reason=reason,
            duration_hours=duration_hours,
            requested_at=now,
            requested_by=requested_by,
        )
        _log(grant, "grant_requested", AccessOutcome.ALLOWED)
    return grant


def approver_conflict(*, grant: AccessGrant, approver: User) -> str | None:
    """Why ``approver`` may not decide ``grant`` (four eyes), or ``None`` when they may."""
    if grant.requested_by_id is not None and grant.requested_by_id == approver.pk:
        return "you filed this request; another compliance manager must decide it"
    email = (getattr(approver, "email", "") or "").strip().lower()
    if email:
        requester = {grant.grantee_identity.lower(), flex_identity_decode(grant.grantee_identity)}
        if email in {name.lower() for name in requester}:
            return "you are the requester (your e-mail is the requester's Flex identity)"
    return None


def _decidable(grant: AccessGrant, approver: User) -> AccessGrant:
    locked = AccessGrant.objects.select_for_update().get(pk=grant.pk)
    if not approver.has_perm(APPROVE_PERMISSION):
        raise AccessRequestInvalid({"approver": "needs the permission to approve access requests"})
    if locked.status != GrantStatus.REQUESTED:
        raise AccessRequestInvalid({"status": f"the request is already {locked.status}"})
    conflict = approver_conflict(grant=locked, approver=approver)
    if conflict:
        raise AccessRequestInvalid({"approver": conflict})
    return locked


@transaction.atomic
def access_request_approve(
    *, grant: AccessGrant, approver: User, now: datetime, note: str = ""
) -> AccessGrant:
    """Approve a pending request: it becomes a grant from ``now`` for its duration. Refused
    (``AccessRequestInvalid``) for the requester, without the permission, or when decided."""
    locked = _decidable(grant, approver)
    locked.status = GrantStatus.APPROVED
    locked.decided_by = approver
    locked.decided_at = now
    locked.decision_note = note.strip()
    locked.valid_from = now
    locked.valid_until = now + timedelta(hours=locked.duration_hours)
    locked.save()
    _log(
        locked,
        "grant_approved",
        AccessOutcome.ALLOWED,
        valid_until=locked.valid_until.isoformat(),
        note=_log_text(locked.decision_note),
    )
    return locked


@transaction.atomic
def access_request_refuse(
    *, grant: AccessGrant, approver: User, now: datetime, note: str = ""
) -> AccessGrant:
    """Refuse a pending request (same four-eyes checks as an approval)."""
    locked = _decidable(grant, approver)
    locked.status = GrantStatus.REFUSED
    locked.decided_by = approver
    locked.decided_at = now
    locked.decision_note = note.strip()
    locked.save()
    _log(locked, "grant_refused", AccessOutcome.DENIED, note=_log_text(locked.decision_note))
    return locked


@transaction.atomic
def access_grant_revoke(
    *, grant: AccessGrant, user: User, now: datetime, reason: str
) -> AccessGrant:
    """End an approved grant at ``now`` (anyone with the approval permission may: revoking only
    takes access away). Refused for a grant that is not approved or already revoked."""
    locked = AccessGrant.objects.select_for_update().get(pk=grant.pk)
    if not user.has_perm(APPROVE_PERMISSION):
        raise AccessRequestInvalid({"user": "needs the permission to approve access requests"})
    if locked.status != GrantStatus.APPROVED or locked.revoked_at is not None:
        raise AccessRequestInvalid({"status": "only an approved, unrevoked grant can be revoked"})
    locked.revoked_at = now
    locked.revoked_by = user
    locked.revoke_reason = reason.strip()
    locked.save()
    _log(
        locked,
        "grant_revoked",
        AccessOutcome.ALLOWED,
        revoked_by=_staff_name(user),
        revoke_reason=_log_text(locked.revoke_reason),
    )
    return locked


def access_requests_of(*, identity: str) -> list[AccessGrant]:
    """The requests a Flex user filed or were filed for them, newest first (their page)."""
    return list(AccessGrant.objects.filter(grantee_identity=identity).select_related("decided_by"))


@dataclass(frozen=True)
class RestrictedActivity:
    """The dashboard's counts: attempts on restricted recordings since a moment (allowed and
    refused), and the access requests waiting for a decision."""

    attempts: int
    refused: int
    pending_requests: int


def restricted_activity(*, since: datetime) -> RestrictedActivity:
    """Count player attempts on restricted recordings since ``since`` (rows whose detail says
    ``restricted``; the occurred-at index bounds the scan) and pending requests."""
    rows = AccessLog.objects.filter(
        occurred_at__gte=since, action__in=PLAYER_ACTIONS, detail__restricted=True
    )
    counts = rows.aggregate(
        attempts=Count("pk"), refused=Count("pk", filter=~Q(outcome=AccessOutcome.ALLOWED))
    )
    return RestrictedActivity(
        attempts=counts["attempts"] or 0,
        refused=counts["refused"] or 0,
        pending_requests=AccessGrant.objects.filter(status=GrantStatus.REQUESTED).count(),
    )
