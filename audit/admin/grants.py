"""Access requests and grants in the admin (four eyes): compliance managers approve, refuse and
revoke; staff may file a request on a Flex user's behalf (and then cannot approve it).

Every change goes through ``audit.grants``, which enforces requester ≠ approver and writes the
access log; the page itself edits nothing directly (all fields are read-only once filed).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from audit import grants
from audit.models import AccessGrant, GrantStatus


class GrantActionForm(ActionForm):
    """The note an approval, refusal or revocation carries (required to refuse or revoke)."""

    note = forms.CharField(
        required=False,
        max_length=grants.REASON_MAX_LENGTH,
        label="Note / reason",
        widget=forms.TextInput(attrs={"size": 40}),
    )


class AccessGrantAddForm(forms.ModelForm):
    """Filing a request on a Flex user's behalf: who, what, why and for how long."""

    class Meta:
        model = AccessGrant
        fields = (
            "grantee_identity",
            "grantee_worker_sid",
            "scope",
            "scope_value",
            "reason",
            "duration_hours",
        )

    def clean(self) -> dict[str, Any]:
        """The same checks as the Flex user's page (``audit.grants``), field by field."""
        cleaned = super().clean() or {}
        try:
            grants.access_request_check(
                identity=cleaned.get("grantee_identity") or "",
                scope=cleaned.get("scope") or "",
                scope_value=cleaned.get("scope_value") or "",
                reason=cleaned.get("reason") or "",
                duration_hours=cleaned.get("duration_hours") or 0,
            )
        except grants.AccessRequestInvalid as exc:
            field_names = {"identity": "grantee_identity"}
            raise ValidationError(
                {field_names.get(key, key): message for key, message in exc.errors.items()}
            ) from exc
        return cleaned


@admin.register(AccessGrant)
class AccessGrantAdmin(admin.ModelAdmin):
    """Access requests and the grants they became."""

    list_display = (
        "id",
        "grantee_identity",
        "scope",
        "scope_value",
        "status",
        "state_shown",
        "requested_at",
        "requested_by",
        "decided_by",
        "valid_until",
    )
    list_filter = ("status", "scope")
    search_fields = ("=grantee_identity", "=grantee_worker_sid", "=scope_value")
    action_form = GrantActionForm
    actions = ("approve_requests", "refuse_requests", "revoke_grants")
    readonly_fields = (
        "status",
        "grantee_identity",
        "grantee_worker_sid",
        "scope",
        "scope_value",
        "reason",
        "duration_hours",
        "requested_at",
        "requested_by",
        "decided_by",
        "decided_at",
        "decision_note",
        "valid_from",
        "valid_until",
        "revoked_at",
        "revoked_by",
        "revoke_reason",
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        """Everything once filed; the add form's fields while filing."""
        return self.readonly_fields if obj is not None else ()

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):
        """The add form when filing (validated by ``audit.grants``)."""
        if obj is None:
            kwargs["form"] = AccessGrantAddForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        """The add form's fields, or every field read-only."""
        return AccessGrantAddForm.Meta.fields if obj is None else self.readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Compliance managers may file a request on someone's behalf."""
        return request.user.has_perm(grants.APPROVE_PERMISSION)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Nothing is edited by hand: only approved, refused or revoked (the actions)."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Requests and grants are kept (the log names them)."""
        return False

    def has_approve_permission(self, request: HttpRequest) -> bool:
        """Deciding needs ``audit.approve_accessgrant``."""
        return request.user.has_perm(grants.APPROVE_PERMISSION)

    def save_model(self, request: HttpRequest, obj: AccessGrant, form: Any, change: bool) -> None:
        """File through ``audit.grants`` (logged, with this staff member as the filer)."""
        filed = grants.access_request_create(
            identity=obj.grantee_identity,
            worker_sid=obj.grantee_worker_sid,
            scope=obj.scope,
            scope_value=obj.scope_value,
            reason=obj.reason,
            duration_hours=obj.duration_hours,
            now=timezone.now(),
            requested_by=request.user,  # type: ignore[arg-type]
        )
        obj.pk = filed.pk

    @admin.display(description="in force")
    def state_shown(self, obj: AccessGrant) -> str:
        """Whether the grant lets its grantee play now (pending, in force, expired, revoked)."""
        now = timezone.now()
        if obj.status != GrantStatus.APPROVED:
            return obj.get_status_display()
        if obj.revoked_at is not None:
            return "revoked"
        if obj.valid_until is not None and obj.valid_until <= now:
            return "expired"
        return format_html('<strong class="grant-in-force">{}</strong>', "in force")

    def _decide(self, request: HttpRequest, queryset: QuerySet[AccessGrant], step: str) -> None:
        note = request.POST.get("note", "").strip()
        if step in ("refuse", "revoke") and not note:
            self.message_user(request, f"Give the reason to {step} in the note.", messages.ERROR)
            return
        done = 0
        now = timezone.now()
        for grant in queryset.order_by("pk")[:200]:
            try:
                if step == "approve":
                    grants.access_request_approve(
                        grant=grant,
                        approver=request.user,  # type: ignore[arg-type]
                        now=now,
                        note=note,
                    )
                elif step == "refuse":
                    grants.access_request_refuse(
                        grant=grant,
                        approver=request.user,  # type: ignore[arg-type]
                        now=now,
                        note=note,
                    )
                else:
                    grants.access_grant_revoke(
                        grant=grant,
                        user=request.user,  # type: ignore[arg-type]
                        now=now,
                        reason=note,
                    )
                done += 1
            except grants.AccessRequestInvalid as exc:
                self.message_user(request, f"#{grant.pk}: {exc}", messages.ERROR)
        if done:
            verb = {"approve": "approved", "refuse": "refused", "revoke": "revoked"}[step]
            self.message_user(request, f"{done} {verb}.", messages.SUCCESS)

    @admin.action(description="Approve the selected requests", permissions=["approve"])
    def approve_requests(self, request: HttpRequest, queryset: QuerySet[AccessGrant]) -> None:
        """Approve: each becomes a grant from now for its duration (never by its requester)."""
        self._decide(request, queryset, "approve")

    @admin.action(
        description="Refuse the selected requests (reason in the note)", permissions=["approve"]
    )
    def refuse_requests(self, request: HttpRequest, queryset: QuerySet[AccessGrant]) -> None:
        """Refuse, with the reason given in the note."""
        self._decide(request, queryset, "refuse")

    @admin.action(
        description="Revoke the selected grants (reason in the note)", permissions=["approve"]
    )
    def revoke_grants(self, request: HttpRequest, queryset: QuerySet[AccessGrant]) -> None:
        """End approved grants now, with the reason given in the note."""
        self._decide(request, queryset, "revoke")


class RestrictedLogFilter(admin.SimpleListFilter):
    """The access log's rows about restricted recordings (``"restricted": true`` in the detail:
    every player attempt on one, and each restriction placed or lifted)."""

    title = "restricted recordings"
    parameter_name = "restricted"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        """Only one choice: the rows about restricted recordings."""
        return [("1", "about restricted recordings")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        """Rows whose detail says ``restricted``."""
        if self.value() == "1":
            return queryset.filter(detail__restricted=True)
        return queryset
