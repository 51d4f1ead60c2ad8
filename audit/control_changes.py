"""Maker/checker for changes that weaken control (issue 15, item 3).

With ``CONTROL_CHANGES_NEED_APPROVAL`` on, a change that weakens control is not made when a
staff member saves it: it is kept as a pending :class:`~audit.models.ControlChange` with the
target's old values and the new ones, and takes effect only when a second staff member, holding
``audit.approve_controlchange``, approves it (:func:`control_change_approve`). The proposer can
never approve or refuse their own change: that is enforced here, not just hidden in the admin.
What weakens control, per kind, is decided where each kind lives (``audit.control_rules`` for
access rules and rules files, ``audit.anchor_switch`` for seal anchoring, and
``recordings.admin.control_changes`` for retention policies, legal-hold releases and private
key deletions); changes that only tighten apply at once, as they do with the setting off.

Kinds register here (:func:`control_change_kind_register`): what the target is now
(``current``), and how an approved change is applied (``apply``). The audit core so stays free
of ``recordings``: the recordings kinds register themselves from the recordings admin.

An approval first compares the target now with the values it had when the change was proposed:
if anything changed in between (another edit, another approved change), nothing is applied and
the change is closed as stale; the officer proposes it again against what is there now. The
comparison and the apply run in the approval's transaction, the target locked where the kind
can lock it. Every step is one access-log row (action ``control_change``) with the kind, the
target, the old and new values, the proposer, the approver and their words.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.models import AccessAction, AccessOutcome, ControlChange, ControlChangeStatus
from audit.services import DETAIL_MAX_BYTES, access_log_append

APPROVE_PERMISSION = "audit.approve_controlchange"
NOTE_MAX_LENGTH = 2000
PENDING_MESSAGE = "Saved as pending change #{pk}: needs a second staff member's approval."
_AUDIT_FIELDS = ("client_ip", "user_agent", "request_id")


class ControlChangeInvalid(ValueError):
    """A proposal, approval, refusal or withdrawal that cannot be made; ``errors`` by field."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))


@dataclass(frozen=True)
class ControlChangeKind:
    """One kind of change that can wait for approval.

    ``current(change)`` answers the target's values now, in the shape of ``old_values`` (the
    approval compares the two; lock the target here when it can be locked). ``apply(change,
    context)`` makes the change and answers a sentence saying what it did; ``context`` carries
    the approval request's audit fields (``identity`` of the approver, ``client_ip``...). It
    raises ``ValidationError``, ``ValueError``, ``IntegrityError`` or ``ObjectDoesNotExist``
    when the change cannot be made: the change is then closed as failed, nothing applied.
    ``may_make(user)`` says whether ``user`` may make such a change themselves: the checker
    must hold the privilege the change needs, not only the right to approve (a compliance
    manager may not approve a key deletion that only a superuser may make).
    """

    kind: str
    label: str
    current: Callable[[ControlChange], dict[str, Any]]
    apply: Callable[[ControlChange, Mapping[str, Any]], str]
    may_make: Callable[[User], bool]


_KINDS: dict[str, ControlChangeKind] = {}


def control_change_kind_register(kind: ControlChangeKind) -> None:
    """Make ``kind`` known (idempotent: registering the same kind again replaces it)."""
    _KINDS[kind.kind] = kind


def control_change_kind(kind: str) -> ControlChangeKind:
    """The registered kind ``kind``; ``ControlChangeInvalid`` when none is registered."""
    try:
        return _KINDS[kind]
    except KeyError:
        raise ControlChangeInvalid({"kind": f"no such kind of change: {kind!r}"}) from None


def control_change_kind_label(kind: str) -> str:
    """A kind in words (an unknown one as itself)."""
    found = _KINDS.get(kind)
    return found.label if found else kind


def control_changes_need_approval() -> bool:
    """Whether changes that weaken control wait for a second staff member (the setting)."""
    return bool(getattr(settings, "CONTROL_CHANGES_NEED_APPROVAL", False))


def _log_safe(value: Any) -> Any:
    """``value`` as the log's detail accepts it: no ``scheme://`` or NUL in any string, no
    floats, string keys."""
    if isinstance(value, str):
        return value.replace("://", ":/ /").replace("\x00", "\ufffd")
    if isinstance(value, float):
        return str(value)
    if isinstance(value, list | tuple):
        return [_log_safe(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _log_safe(item) for key, item in value.items()}
    return value


def _digest(value: Any) -> str:
    encoded = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def _size(value: Any) -> int:
    """The size ``access_log_append`` measures a detail by."""
    return len(json.dumps(value, sort_keys=True, separators=(",", ":")))


def _log(
    change: ControlChange,
    reason_code: str,
    outcome: str,
    context: Mapping[str, Any] | None,
    *,
    identity: str,
    **extra: Any,
) -> None:
    """One ``control_change`` row. The old and new values go in when the row has room for
    them, else their 16-hex SHA-256 digests (the change's page keeps the values)."""
    context = context or {}
    detail: dict[str, Any] = {
        "change_id": change.pk,
        "kind": change.kind,
        "target": _log_safe(change.target[:200]),
        "target_id": change.target_id,
        "proposer": change.proposed_by_name,
        "approver": change.decided_by_name,
        "reason": _log_safe(change.reason[:300]),
        **{key: _log_safe(value) for key, value in extra.items()},
    }
    values = {"old": _log_safe(change.old_values), "new": _log_safe(change.new_values)}
    if _size({**detail, **values}) <= DETAIL_MAX_BYTES:
        detail.update(values)
    else:
        detail["old_sha256"] = _digest(change.old_values)
        detail["new_sha256"] = _digest(change.new_values)
    access_log_append(
        action=AccessAction.CONTROL_CHANGE,
        outcome=outcome,
        reason_code=reason_code,
        identity=identity[:255],
        detail=detail,
        **{key: context[key] for key in _AUDIT_FIELDS if key in context},
    )


def _actor(user: User | None, context: Mapping[str, Any] | None, fallback: str) -> str:
    identity = (context or {}).get("identity")
    if identity:
        return str(identity)
    return f"admin:{user.get_username()}" if user is not None else fallback


@transaction.atomic
def control_change_propose(
    *,
    kind: str,
    target: str,
    target_id: str = "",
    old_values: Mapping[str, Any],
    new_values: Mapping[str, Any],
    payload: Mapping[str, Any] | None = None,
    reason: str = "",
    proposed_by: User | None,
    proposer_name: str = "",
    context: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> ControlChange:
    """Keep a change to ``target`` as pending (nothing is changed yet) and log it as
    ``change_proposed`` with the old and new values.

    ``proposed_by`` is the staff member; a command proposes with ``None`` and its name in
    ``proposer_name``. ``old_values`` must be what the kind's ``current`` answers now: the
    approval applies nothing if the target no longer has them.
    """
    control_change_kind(kind)
    name = proposed_by.get_username() if proposed_by is not None else proposer_name.strip()
    if not name:
        raise ControlChangeInvalid({"proposed_by": "say who proposes the change"})
    change = ControlChange.objects.create(
        kind=kind,
        target=target[:200],
        target_id=str(target_id)[:64],
        old_values=dict(old_values),
        new_values=dict(new_values),
        payload=dict(payload or {}),
        reason=reason.strip()[:NOTE_MAX_LENGTH],
        proposed_at=now or timezone.now(),
        proposed_by=proposed_by,
        proposed_by_name=name[:150],
    )
    _log(
        change,
        "change_proposed",
        AccessOutcome.ALLOWED,
        context,
        identity=_actor(proposed_by, context, name),
    )
    return change


def approver_may_make(*, change: ControlChange, user: User) -> bool:
    """Whether ``user`` holds the privilege ``change`` needs (its kind's ``may_make``)."""
    kind = _KINDS.get(change.kind)
    return kind is not None and kind.may_make(user)


def approver_conflict(*, change: ControlChange, user: User) -> str | None:
    """Why ``user`` may not decide ``change`` (maker/checker), or ``None`` when they may."""
    if change.proposed_by_id is not None and change.proposed_by_id == user.pk:
        return "you proposed this change; a second staff member must decide it"
    if change.proposed_by_id is None and change.proposed_by_name == user.get_username():
        return "you proposed this change; a second staff member must decide it"
    return None


def _decidable(change: ControlChange, user: User) -> ControlChange:
    locked = ControlChange.objects.select_for_update().get(pk=change.pk)
    if not user.is_active or not user.has_perm(APPROVE_PERMISSION):
        raise ControlChangeInvalid({"approver": "needs the permission to approve changes"})
    if locked.status != ControlChangeStatus.PENDING:
        raise ControlChangeInvalid({"status": f"the change is already {locked.status}"})
    conflict = approver_conflict(change=locked, user=user)
    if conflict:
        raise ControlChangeInvalid({"approver": conflict})
    return locked


def _may_make(change: ControlChange, user: User) -> None:
    """Refuse an approver who could not make the change themselves (see ``may_make``)."""
    if not approver_may_make(change=change, user=user):
        raise ControlChangeInvalid(
            {"approver": "may not make this kind of change, so may not approve it either"}
        )


def _decide(locked: ControlChange, user: User, status: str, note: str, now: datetime) -> None:
    locked.status = status
    locked.decided_by = user
    locked.decided_by_name = user.get_username()[:150]
    locked.decided_at = now
    locked.decision_note = note.strip()[:NOTE_MAX_LENGTH]
    locked.save()


@transaction.atomic
def control_change_approve(
    *,
    change: ControlChange,
    approver: User,
    note: str = "",
    context: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> ControlChange:
    """Approve a pending change and apply it in the same transaction; answer the change.

    Refused (``ControlChangeInvalid``, nothing written) for the proposer, without the
    permission, for someone who could not make the change themselves, or when already
    decided. When the target changed since the proposal the
    change is closed as ``stale`` and nothing is applied; when applying fails it is closed as
    ``failed``. Check the answer's ``status``: only ``applied`` means the change took effect.
    """
    locked = _decidable(change, approver)
    _may_make(locked, approver)
    kind = control_change_kind(locked.kind)
    now = now or timezone.now()
    identity = _actor(approver, context, approver.get_username())
    current = kind.current(locked)
    if current != locked.old_values:
        _decide(locked, approver, ControlChangeStatus.STALE, note, now)
        _log(
            locked,
            "change_stale",
            AccessOutcome.DENIED,
            context,
            identity=identity,
            note=note[:300],
            changed_since=sorted(
                key[:64]
                for key in {*current, *locked.old_values}
                if current.get(key) != locked.old_values.get(key)
            )[:20],
        )
        return locked
    try:
        with transaction.atomic():
            done = kind.apply(locked, {**(context or {}), "identity": identity})
    except (ValidationError, ValueError, IntegrityError, ObjectDoesNotExist) as exc:
        _decide(locked, approver, ControlChangeStatus.FAILED, note, now)
        _log(
            locked,
            "change_failed",
            AccessOutcome.ERROR,
            context,
            identity=identity,
            note=note[:300],
            error=str(exc)[:500],
        )
        return locked
    _decide(locked, approver, ControlChangeStatus.APPLIED, note, now)
    _log(
        locked,
        "change_approved",
        AccessOutcome.ALLOWED,
        context,
        identity=identity,
        note=note[:300],
        applied=done[:300],
    )
    return locked


@transaction.atomic
def control_change_refuse(
    *,
    change: ControlChange,
    approver: User,
    note: str,
    context: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> ControlChange:
    """Refuse a pending change with the reason in ``note`` (required); nothing is applied.
    The same maker/checker checks as an approval."""
    if not note.strip():
        raise ControlChangeInvalid({"note": "say why the change is refused"})
    locked = _decidable(change, approver)
    _decide(locked, approver, ControlChangeStatus.REFUSED, note, now or timezone.now())
    _log(
        locked,
        "change_refused",
        AccessOutcome.DENIED,
        context,
        identity=_actor(approver, context, approver.get_username()),
        note=note[:300],
    )
    return locked


@transaction.atomic
def control_change_withdraw(
    *,
    change: ControlChange,
    user: User,
    note: str = "",
    context: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> ControlChange:
    """The proposer takes back their pending change; nothing is applied. Nobody else may."""
    locked = ControlChange.objects.select_for_update().get(pk=change.pk)
    if locked.status != ControlChangeStatus.PENDING:
        raise ControlChangeInvalid({"status": f"the change is already {locked.status}"})
    if locked.proposed_by_id != user.pk:
        raise ControlChangeInvalid({"user": "only the proposer can withdraw a change"})
    _decide(locked, user, ControlChangeStatus.WITHDRAWN, note, now or timezone.now())
    _log(
        locked,
        "change_withdrawn",
        AccessOutcome.ALLOWED,
        context,
        identity=_actor(user, context, user.get_username()),
        note=note[:300],
    )
    return locked


def control_changes_pending_count() -> int:
    """How many changes await a second staff member (the dashboard's box)."""
    return ControlChange.objects.filter(status=ControlChangeStatus.PENDING).count()
