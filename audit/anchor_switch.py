"""The staff switch that pauses seal anchoring, and why pausing is a change that needs approval.

Where seals are anchored is deployment configuration (``AUDIT_ANCHOR_BUCKET`` or
``AUDIT_ANCHOR_DIR``, ``audit.anchors``): the environment, which no staff member changes from
the admin and which maker/checker cannot hold back. What staff *can* do is pause anchoring: an
anchor bucket being moved, or a WORM volume being replaced, would otherwise fail every sealer
round. That switch (:class:`~audit.models.SealAnchorSwitch`) is what "disabling the seal anchor"
means in this portal. While it is paused the sealer still seals every row in the database but
writes nothing to the anchor store, so a rewrite of the database and its seals would no longer
be caught against the anchors: pausing weakens the evidence, and with
``CONTROL_CHANGES_NEED_APPROVAL`` it takes effect only once a second staff member approves it
(kind ``seal_anchor``). Resuming only restores protection and applies at once; the next round
anchors every seal that waited (``audit.sealer.anchors_publish`` walks back from the newest).
Verification keeps reporting seals not anchored after ``AUDIT_SEAL_MAX_DELAY_SECONDS`` while
paused, so a pause never hides.

Every switch is a ``control_change`` row (``anchoring_paused`` or ``anchoring_resumed``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from audit.control_changes import (
    ControlChangeKind,
    control_change_kind_register,
    control_change_propose,
    control_changes_need_approval,
)
from audit.models import AccessAction, AccessOutcome, ControlChange, SealAnchorSwitch
from audit.sealer import anchoring_paused
from audit.services import access_log_append

KIND = "seal_anchor"
_AUDIT_FIELDS = ("client_ip", "user_agent", "request_id")


def _values(switch: SealAnchorSwitch | None) -> dict[str, Any]:
    return {"anchoring_paused": bool(switch and switch.anchoring_paused)}


@transaction.atomic
def anchoring_switch_set(
    *, paused: bool, reason: str, changed_by: str, context: Mapping[str, Any] | None = None
) -> SealAnchorSwitch:
    """Pause or resume seal anchoring now and log it (``control_change`` /
    ``anchoring_paused`` or ``anchoring_resumed``); setting the state it has changes nothing."""
    switch, _ = SealAnchorSwitch.objects.select_for_update().get_or_create(pk=1)
    if switch.anchoring_paused == paused:
        return switch
    switch.anchoring_paused = paused
    switch.reason = reason.strip()[:2000]
    switch.changed_by = changed_by[:150]
    switch.changed_at = timezone.now()
    switch.save()
    context = context or {}
    access_log_append(
        action=AccessAction.CONTROL_CHANGE,
        outcome=AccessOutcome.ALLOWED,
        reason_code="anchoring_paused" if paused else "anchoring_resumed",
        identity=str(context.get("identity") or changed_by)[:255],
        detail={"by": changed_by[:150], "reason": switch.reason[:300].replace("://", ":/ /")},
        **{key: context[key] for key in _AUDIT_FIELDS if key in context},
    )
    return switch


def anchoring_switch_change(
    *,
    paused: bool,
    reason: str,
    user: User,
    context: Mapping[str, Any] | None = None,
) -> SealAnchorSwitch | ControlChange:
    """What the admin's switch does: resume at once; pause at once with the setting off, else
    keep the pause as a pending change (answered instead of the switch)."""
    if paused and control_changes_need_approval() and not anchoring_paused():
        return control_change_propose(
            kind=KIND,
            target="seal anchoring",
            target_id="1",
            old_values={"anchoring_paused": False},
            new_values={"anchoring_paused": True},
            reason=reason,
            proposed_by=user,
            context=context,
        )
    return anchoring_switch_set(
        paused=paused,
        reason=reason,
        changed_by=user.get_username(),
        context=context,
    )


def _current(change: ControlChange) -> dict[str, Any]:
    return _values(SealAnchorSwitch.objects.select_for_update().filter(pk=1).first())


def _apply(change: ControlChange, context: Mapping[str, Any]) -> str:
    anchoring_switch_set(
        paused=bool(change.new_values["anchoring_paused"]),
        reason=change.reason,
        changed_by=change.proposed_by_name,
        context=context,
    )
    return "seal anchoring paused" if change.new_values["anchoring_paused"] else "resumed"


control_change_kind_register(
    ControlChangeKind(
        kind=KIND,
        label="seal anchoring",
        current=_current,
        apply=_apply,
        may_make=lambda user: user.is_active and user.has_perm("audit.change_sealanchorswitch"),
    )
)
