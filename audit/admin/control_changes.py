"""Changes awaiting approval in the admin (maker/checker, ``audit.control_changes``): the list,
and one change's page with its old and new values field by field and the Approve, Refuse and
Withdraw buttons; plus :class:`PendingChangeAdminMixin`, which lets any model admin hold a
save or a delete as a pending change instead of making it.

The pages change nothing themselves: deciding goes through the services, which enforce that the
proposer never decides their own change, check the approver's permission and write the log.
Opening a change's page is logged (``admin_view`` / ``change_page``).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from audit import control_changes
from audit.admin.display import utc_time
from audit.admin.rule_history import values_diff
from audit.anchor_switch import anchoring_switch_change
from audit.models import (
    AccessAction,
    AccessOutcome,
    ControlChange,
    ControlChangeStatus,
    SealAnchorSwitch,
)
from audit.staff_actions import staff_action_log, staff_identity
from portal.http import request_audit_fields

_ATTRIBUTE = "_pending_control_change"


def staff_context(request: HttpRequest) -> dict[str, Any]:
    """The audit fields of a staff request, for services that log (identity, client...)."""
    return {"identity": staff_identity(request), **request_audit_fields(request)}


def pending_change_url(change: ControlChange) -> str:
    """The page of a pending change."""
    return reverse("admin:audit_controlchange_change", args=[change.pk])


def pending_change_message(request: HttpRequest, change: ControlChange) -> None:
    """Tell the staff member their change was kept for approval, linked to its page."""
    messages.warning(
        request,
        format_html(
            '<a href="{}">{}</a> Nothing changes until then.',
            pending_change_url(change),
            control_changes.PENDING_MESSAGE.format(pk=change.pk),
        ),
    )


class PendingChangeAdminMixin(admin.ModelAdmin):
    """For a model admin whose saves or deletes may weaken control: ``save_model`` calls
    :meth:`pending_change_hold` instead of saving, and the add or change page then says
    "Saved as pending change #N" and leads to the change's page (Django's own "changed
    successfully" message and history entry are left out: nothing was saved).
    :meth:`deletion_proposal` does the same for the delete page."""

    def pending_change_hold(self, request: HttpRequest, change: ControlChange) -> None:
        """Mark this request's save as held as ``change``."""
        setattr(request, _ATTRIBUTE, change)

    @staticmethod
    def _held(request: HttpRequest) -> ControlChange | None:
        return getattr(request, _ATTRIBUTE, None)

    def _held_response(self, request: HttpRequest, change: ControlChange) -> HttpResponse:
        pending_change_message(request, change)
        return HttpResponseRedirect(pending_change_url(change))

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        """Django's history entry, unless the save was held (nothing was added)."""
        if self._held(request) is not None:
            return None
        return super().log_addition(request, obj, message)

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        """Django's history entry, unless the save was held (nothing changed)."""
        if self._held(request) is not None:
            return None
        return super().log_change(request, obj, message)

    def response_add(
        self, request: HttpRequest, obj: Any, post_url_continue: str | None = None
    ) -> HttpResponse:
        """The pending change's page when the save was held, else Django's answer."""
        held = self._held(request)
        if held is not None:
            return self._held_response(request, held)
        return super().response_add(request, obj, post_url_continue)

    def response_change(self, request: HttpRequest, obj: Any) -> HttpResponse:
        """The pending change's page when the save was held, else Django's answer."""
        held = self._held(request)
        if held is not None:
            return self._held_response(request, held)
        return super().response_change(request, obj)

    def deletion_proposal(self, request: HttpRequest, obj: Any) -> ControlChange | None:
        """Hold deleting ``obj`` as a pending change and answer it, or ``None`` to delete as
        Django does (the default)."""
        return None

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """Django's delete page; a confirmed delete that :meth:`deletion_proposal` holds is
        kept as a pending change and nothing is deleted."""
        if (
            request.method == "POST"
            and request.POST
            and control_changes.control_changes_need_approval()
        ):
            obj = self.get_object(request, object_id)
            if obj is not None and self.has_delete_permission(request, obj):
                change = self.deletion_proposal(request, obj)
                if change is not None:
                    return self._held_response(request, change)
        return super().delete_view(request, object_id, extra_context)


@admin.register(ControlChange)
class ControlChangeAdmin(admin.ModelAdmin):
    """Changes that weaken control, pending and decided; read-only, decided on their page."""

    list_display = (
        "id",
        "kind_text",
        "target",
        "status",
        "proposed_by_name",
        "proposed",
        "decided_by_name",
        "decided",
    )
    list_display_links = ("id", "target")
    list_filter = ("status", "kind")
    search_fields = ("=proposed_by_name", "=decided_by_name", "target")
    ordering = ("-proposed_at", "-id")
    show_full_result_count = False
    actions = None

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Changes are proposed by saving what they change, never added here."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Nothing is edited: a change is approved, refused or withdrawn on its page."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Changes are kept (the log names them)."""
        return False

    @admin.display(description="kind", ordering="kind")
    def kind_text(self, change: ControlChange) -> str:
        """The kind in words."""
        return control_changes.control_change_kind_label(change.kind)

    @admin.display(description="proposed (UTC)", ordering="proposed_at")
    def proposed(self, change: ControlChange) -> str:
        """When it was proposed."""
        return utc_time(change.proposed_at)

    @admin.display(description="decided (UTC)", ordering="decided_at")
    def decided(self, change: ControlChange) -> str:
        """When it was decided."""
        return utc_time(change.decided_at)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """One change: old and new values field by field, and (POST) approve, refuse or
        withdraw it through ``audit.control_changes``."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if not object_id.isdigit():
            raise Http404("No such change.")
        change = ControlChange.objects.filter(pk=int(object_id)).first()
        if change is None:
            raise Http404("No such change.")
        if request.method == "POST":
            return self._decide(request, change)
        staff_action_log(
            request,
            action=AccessAction.ADMIN_VIEW,
            reason_code="change_page",
            detail={"change_id": change.pk},
        )
        user = request.user
        pending = change.status == ControlChangeStatus.PENDING
        conflict = control_changes.approver_conflict(change=change, user=user)  # type: ignore[arg-type]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Change #{change.pk}: {change.target}",
            "change": change,
            "original": change,
            "kind_label": control_changes.control_change_kind_label(change.kind),
            "diff": values_diff(old=change.old_values, new=change.new_values),
            "created": not change.old_values,
            "can_decide": pending
            and conflict is None
            and user.has_perm(control_changes.APPROVE_PERMISSION),
            # Refusing only keeps things as they are; approving needs the change's own privilege.
            "can_approve": control_changes.approver_may_make(
                change=change,
                user=user,  # type: ignore[arg-type]
            ),
            "conflict": conflict if pending else None,
            "can_withdraw": pending and change.proposed_by_id == user.pk,
        }
        return TemplateResponse(request, "admin/audit/controlchange/change.html", context)

    def _decide(self, request: HttpRequest, change: ControlChange) -> HttpResponse:
        step = request.POST.get("step", "")
        note = request.POST.get("note", "")[: control_changes.NOTE_MAX_LENGTH]
        user = request.user
        context = staff_context(request)
        try:
            if step == "approve":
                done = control_changes.control_change_approve(
                    change=change,
                    approver=user,  # type: ignore[arg-type]
                    note=note,
                    context=context,
                )
                if done.status == ControlChangeStatus.APPLIED:
                    messages.success(request, f"Change #{done.pk} approved and applied.")
                else:
                    messages.error(
                        request, f"Change #{done.pk} not applied: {done.get_status_display()}."
                    )
            elif step == "refuse":
                control_changes.control_change_refuse(
                    change=change,
                    approver=user,  # type: ignore[arg-type]
                    note=note,
                    context=context,
                )
                messages.success(request, f"Change #{change.pk} refused; nothing was changed.")
            elif step == "withdraw":
                control_changes.control_change_withdraw(
                    change=change,
                    user=user,  # type: ignore[arg-type]
                    note=note,
                    context=context,
                )
                messages.success(request, f"Change #{change.pk} withdrawn; nothing was changed.")
            else:
                messages.error(request, "Choose approve, refuse or withdraw.")
        except control_changes.ControlChangeInvalid as exc:
            staff_action_log(
                request,
                action=AccessAction.CONTROL_CHANGE,
                outcome=AccessOutcome.DENIED,
                reason_code="change_denied",
                detail={"change_id": change.pk, "step": step[:20], "why": str(exc)[:300]},
            )
            messages.error(request, f"Change #{change.pk}: {exc}")
        return HttpResponseRedirect(pending_change_url(change))


@admin.register(SealAnchorSwitch)
class SealAnchorSwitchAdmin(PendingChangeAdminMixin, admin.ModelAdmin):
    """The switch that pauses seal anchoring (``audit.anchor_switch``): pausing waits for a
    second staff member when the setting says so, resuming applies at once. Never deleted.
    There is one switch (``id`` 1): saving an "add" form turns it, whether or not it exists
    yet (asking whether it exists to hide the add button would cost every admin page a query
    in the navigation)."""

    list_display = ("__str__", "anchoring_paused", "changed_by", "changed_at", "reason")
    # One switch, so the model's plural is its singular; the list's count still reads right.
    count_nouns = ("switch", "switches")
    fields = ("anchoring_paused", "reason", "changed_by", "changed_at")
    readonly_fields = ("changed_by", "changed_at")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """The switch is turned, never deleted (its history is in the log)."""
        return False

    def save_model(
        self, request: HttpRequest, obj: SealAnchorSwitch, form: Any, change: bool
    ) -> None:
        """Pause or resume through ``audit.anchor_switch`` (logged), or hold a pause."""
        result = anchoring_switch_change(
            paused=obj.anchoring_paused,
            reason=obj.reason,
            user=request.user,  # type: ignore[arg-type]
            context=staff_context(request),
        )
        if isinstance(result, ControlChange):
            self.pending_change_hold(request, result)
            return
        obj.pk = result.pk
