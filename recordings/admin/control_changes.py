"""The recordings' changes that weaken control (maker/checker, ``audit.control_changes``):
retention policies that delete sooner, legal-hold releases (hold cases included: a case is a
hold) and private-key deletions. This module decides which changes weaken control, proposes
them, and registers how an approved one is applied; the audit core knows none of these models.

A retention change weakens control when recordings may be deleted sooner afterwards: a new or
newly enabled policy, a shorter ``keep_days``, ``restricted_keep_days`` (restricted recordings
are kept as ``keep_days`` when it is empty) or ``hard_delete_grace_days``, a scope that covers
more (an account or source list emptied or given an entry). Because the longest policy wins,
narrowing, disabling or deleting an enabled policy weakens too while another enabled policy
exists (its recordings may fall to a shorter one). Releasing a hold and deleting a key always
weaken control. Everything else applies at once, as it does with the setting off.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib.auth.models import User

from audit.control_changes import (
    ControlChangeKind,
    control_change_kind_register,
    control_change_propose,
    control_changes_need_approval,
)
from audit.models import AccessOutcome, ControlChange
from audit.services import access_log_append
from recordings.admin.hold_cases import hold_locks_schedule_with
from recordings.custody import keys
from recordings.lifecycle import retention
from recordings.media import encrypted
from recordings.models import LegalHold, PrivateKey, RetentionPolicy

RETENTION_KIND = "retention_policy"
HOLD_RELEASE_KIND = "legal_hold_release"
KEY_DELETE_KIND = "private_key_delete"
POLICY_FIELDS = (
    "name",
    "enabled",
    "account_sids",
    "sources",
    "keep_days",
    "restricted_keep_days",
    "hard_delete_grace_days",
)
_AUDIT_FIELDS = ("identity", "client_ip", "user_agent", "request_id")


def _audit_context(context: Mapping[str, Any]) -> dict[str, Any]:
    return {key: context[key] for key in _AUDIT_FIELDS if key in context}


# --- Retention policies ------------------------------------------------------------------


def policy_values(policy: RetentionPolicy | None) -> dict[str, Any] | None:
    """A policy's fields as JSON values (``None`` for no policy)."""
    if policy is None:
        return None
    return {name: getattr(policy, name) for name in POLICY_FIELDS}


def _scope_wider(old: list[Any], new: list[Any]) -> bool:
    return bool(old) and (not new or bool(set(new) - set(old)))


def _restricted_days(values: Mapping[str, Any]) -> int:
    """How long a policy keeps restricted recordings: its own days, else ``keep_days``."""
    own = values.get("restricted_keep_days")
    return int(values["keep_days"] if own is None else own)


def retention_weakening(
    *, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, others_enabled: bool
) -> list[str]:
    """Why changing a policy from ``before`` to ``after`` (``None``: no policy, i.e. new or
    deleted) may delete recordings sooner, in words; empty when it cannot. ``others_enabled``:
    another enabled policy exists (see the module docstring)."""
    was_on = bool(before and before["enabled"])
    is_on = bool(after and after["enabled"])
    if is_on and not was_on:
        return ["a new policy deletes recordings" if before is None else "a policy is enabled"]
    if was_on and not is_on:
        if not others_enabled:
            return []
        return [
            ("a policy is deleted" if after is None else "a policy is disabled")
            + ": another policy may delete its recordings sooner"
        ]
    if not (was_on and is_on and before and after):
        return []
    reasons: list[str] = []
    if after["keep_days"] < before["keep_days"]:
        reasons.append(f"kept {before['keep_days']} days, now {after['keep_days']}")
    if _restricted_days(after) < _restricted_days(before):
        reasons.append(
            f"restricted recordings kept {_restricted_days(before)} days, "
            f"now {_restricted_days(after)}"
        )
    if after["hard_delete_grace_days"] < before["hard_delete_grace_days"]:
        reasons.append("a shorter grace before media is deleted")
    for name in ("account_sids", "sources"):
        old, new = list(before[name] or []), list(after[name] or [])
        if _scope_wider(old, new):
            reasons.append(f"covers more recordings ({name})")
        elif old != new and others_enabled:
            reasons.append(f"covers fewer recordings ({name}): another policy may apply sooner")
    return reasons


def _others_enabled(policy_id: int | None) -> bool:
    enabled = RetentionPolicy.objects.filter(enabled=True)
    return (enabled.exclude(pk=policy_id) if policy_id is not None else enabled).exists()


def retention_change_propose(
    *,
    policy: RetentionPolicy,
    delete: bool = False,
    user: User,
    context: Mapping[str, Any],
) -> ControlChange | None:
    """Keep the edit (or, with ``delete``, the deletion) of ``policy`` as a pending change when
    the setting is on and it may delete recordings sooner; answer it, or ``None`` to go on as
    without the setting."""
    if not control_changes_need_approval():
        return None
    stored = RetentionPolicy.objects.filter(pk=policy.pk).first() if policy.pk else None
    before = policy_values(stored)
    after = None if delete else policy_values(policy)
    reasons = retention_weakening(
        before=before, after=after, others_enabled=_others_enabled(policy.pk)
    )
    if not reasons:
        return None
    return control_change_propose(
        kind=RETENTION_KIND,
        target=f"retention policy {policy.name}",
        target_id=str(policy.pk or ""),
        old_values=before or {},
        new_values=after or {"deleted": True},
        payload={"name": policy.name},
        reason="; ".join(reasons),
        proposed_by=user,
        context=context,
    )


def _policy_current(change: ControlChange) -> dict[str, Any]:
    if change.target_id:
        policy = RetentionPolicy.objects.select_for_update().filter(pk=int(change.target_id))
        return policy_values(policy.first()) or {"deleted": True}
    name = change.payload["name"]
    return {"name_taken": name} if RetentionPolicy.objects.filter(name=name).exists() else {}


def _policy_apply(change: ControlChange, context: Mapping[str, Any]) -> str:
    policy = (
        RetentionPolicy.objects.select_for_update().get(pk=int(change.target_id))
        if change.target_id
        else RetentionPolicy()
    )
    before = policy_values(policy) if policy.pk else {}
    if change.new_values.get("deleted"):
        what, changes = "deleted", {}
        name = policy.name
        policy.delete()
    else:
        for name_, value in change.new_values.items():
            setattr(policy, name_, value)
        policy.full_clean()
        policy.save()
        what = "changed" if before else "created"
        name = policy.name
        changes = {
            field: {"old": (before or {}).get(field), "new": change.new_values[field]}
            for field in POLICY_FIELDS
            if (before or {}).get(field) != change.new_values[field]
        }
    access_log_append(
        action="retention_policy",
        outcome=AccessOutcome.ALLOWED,
        reason_code=what,
        detail={"policy": name[:100], "changes": changes, "change_id": change.pk},
        **_audit_context(context),
    )
    return f"retention policy {name} {what}"


# --- Legal holds ----------------------------------------------------------------------------


def hold_release_propose(
    *, hold: LegalHold, reason: str, user: User, context: Mapping[str, Any]
) -> ControlChange:
    """Keep releasing ``hold`` (with the release ``reason``) as a pending change."""
    return control_change_propose(
        kind=HOLD_RELEASE_KIND,
        target=f"legal hold {hold}"[:200],
        target_id=str(hold.pk),
        old_values={"released": False},
        new_values={"released": True, "release_reason": reason.strip()[:500]},
        reason=reason,
        proposed_by=user,
        context=context,
    )


def _hold_current(change: ControlChange) -> dict[str, Any]:
    hold = LegalHold.objects.select_for_update().filter(pk=int(change.target_id)).first()
    return {"released": hold is None or hold.released_at is not None}


def _hold_apply(change: ControlChange, context: Mapping[str, Any]) -> str:
    hold = retention.legal_hold_release(
        hold_id=int(change.target_id),
        released_by=change.proposed_by_name,
        reason=change.reason or str(change.new_values.get("release_reason", "")),
        context=_audit_context(context),
    )
    hold_locks_schedule_with(hold_id=hold.pk, context=_audit_context(context))
    return f"legal hold {hold.pk} released"


# --- Private keys ---------------------------------------------------------------------------


def _key_values(key: PrivateKey | None) -> dict[str, Any]:
    if key is None:
        return {"deleted": True}
    return {"fingerprint": key.fingerprint, "public_key_sid": key.public_key_sid or ""}


def private_key_delete_propose(
    *, key: PrivateKey, user: User, context: Mapping[str, Any]
) -> ControlChange:
    """Keep deleting the private key ``key`` as a pending change."""
    return control_change_propose(
        kind=KEY_DELETE_KIND,
        target=f"private key {key}"[:200],
        target_id=str(key.pk),
        old_values=_key_values(key),
        new_values={"deleted": True},
        reason="deleting a private key makes the recordings encrypted for it unplayable",
        proposed_by=user,
        context=context,
    )


def private_key_delete(*, key: PrivateKey, context: Mapping[str, Any]) -> None:
    """Delete ``key``, forget it in every cache, and log it (``private_key_delete``)."""
    described = {"fingerprint": key.fingerprint, "public_key_sid": key.public_key_sid or ""}
    row_id = key.pk
    key.delete()
    keys.key_caches_clear(private_key_id=row_id)
    encrypted.content_key_caches_clear()
    access_log_append(
        action="private_key_delete",
        outcome=AccessOutcome.ALLOWED,
        reason_code="admin",
        detail=described,
        **_audit_context(context),
    )


def _key_current(change: ControlChange) -> dict[str, Any]:
    return _key_values(
        PrivateKey.objects.select_for_update().filter(pk=int(change.target_id)).first()
    )


def _key_apply(change: ControlChange, context: Mapping[str, Any]) -> str:
    key = PrivateKey.objects.select_for_update().get(pk=int(change.target_id))
    private_key_delete(key=key, context=context)
    return f"private key {change.old_values.get('fingerprint', '')[:16]} deleted"


def _superuser(user: User) -> bool:
    """Retention policies and private keys are changed by superusers only (their admins)."""
    return bool(user.is_active and user.is_superuser)


for _kind in (
    ControlChangeKind(
        kind=RETENTION_KIND,
        label="retention policy",
        current=_policy_current,
        apply=_policy_apply,
        may_make=_superuser,  # as RetentionPolicyAdmin
    ),
    ControlChangeKind(
        kind=HOLD_RELEASE_KIND,
        label="legal hold release",
        current=_hold_current,
        apply=_hold_apply,
        may_make=lambda user: user.is_active and user.has_perm("recordings.change_legalhold"),
    ),
    ControlChangeKind(
        kind=KEY_DELETE_KIND,
        label="private key deletion",
        current=_key_current,
        apply=_key_apply,
        may_make=_superuser,  # as PrivateKeyAdmin
    ),
):
    control_change_kind_register(_kind)
