"""Admin for compliance officers: access rules (editable, disabled rather than deleted) and the
access log with its digests (read-only for everyone, superusers included).

Rule changes made here are written to the access log as ``rule_change`` rows, like imports.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from audit.models import AccessAction, AccessLog, AccessLogDigest, AccessOutcome, AccessRule
from audit.services import access_log_append


def _log_rule_change(
    request: HttpRequest, rule: AccessRule, change: str, fields: list[str]
) -> None:
    access_log_append(
        action=AccessAction.RULE_CHANGE,
        outcome=AccessOutcome.ALLOWED,
        reason_code=f"rule_{change}",
        identity=f"admin:{request.user.get_username()}",
        rule_name=rule.name,
        client_ip=request.META.get("REMOTE_ADDR") or None,
        user_agent=request.headers.get("User-Agent", ""),
        request_id=getattr(request, "request_id", ""),
        detail={"via": "admin", "rule_id": rule.pk, "fields": fields},
    )


@admin.register(AccessRule)
class AccessRuleAdmin(admin.ModelAdmin):
    """Rules can be added and edited; they are disabled, never deleted, so the log can name them."""

    list_display = ("name", "effect", "enabled", "identities", "roles", "valid_until", "updated_at")
    list_filter = ("enabled", "effect")
    search_fields = ("name", "reason")
    ordering = ("name",)
    readonly_fields = ("created_at", "updated_at")
    actions = ("disable_rules",)
    fieldsets = (
        (None, {"fields": ("name", "effect", "enabled", "reason")}),
        (
            "Who (an empty list places no condition)",
            {"fields": ("identities", "worker_sids", "roles")},
        ),
        (
            "Which recordings (empty places no condition)",
            {"fields": ("account_sids", "sources", "call_sids", "max_age_days")},
        ),
        ("When", {"fields": ("valid_from", "valid_until", "created_at", "updated_at")}),
    )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Nobody deletes a rule: disable it instead."""
        return False

    def save_model(self, request: HttpRequest, obj: AccessRule, form: Any, change: bool) -> None:
        """Save, and write the change to the access log in the same transaction."""
        super().save_model(request, obj, form, change)
        _log_rule_change(request, obj, "updated" if change else "created", list(form.changed_data))

    @admin.action(description="Disable selected rules", permissions=["change"])
    def disable_rules(self, request: HttpRequest, queryset: QuerySet[AccessRule]) -> None:
        """Disable each selected rule that is enabled, logging each change."""
        disabled = 0
        for rule in queryset.filter(enabled=True):
            rule.enabled = False
            rule.save(update_fields=["enabled", "updated_at"])
            _log_rule_change(request, rule, "disabled", ["enabled"])
            disabled += 1
        self.message_user(request, f"{disabled} rule(s) disabled.", messages.SUCCESS)


class _ReadOnlyAdmin(admin.ModelAdmin):
    """Viewing only: no add, change, delete or actions, whatever the user's permissions."""

    actions = None

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Rows are written by the portal only."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Audit rows are never changed."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Audit rows are never deleted."""
        return False


@admin.register(AccessLog)
class AccessLogAdmin(_ReadOnlyAdmin):
    """The access log, newest first. Search matches an identity or a recording SID exactly, so
    it uses the indexes however large the log grows."""

    list_display = (
        "sequence",
        "occurred_at",
        "action",
        "outcome",
        "reason_code",
        "identity",
        "recording_sid",
        "rule_name",
        "client_ip",
    )
    list_filter = ("outcome", "action", "reason_code")
    search_fields = ("identity", "recording_sid")
    search_help_text = "Exact identity or recording SID (RE…)."
    ordering = ("-sequence",)
    show_full_result_count = False
    list_per_page = 50

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[AccessLog], search_term: str
    ) -> tuple[QuerySet[AccessLog], bool]:
        """Exact match on identity or recording SID (indexed), instead of a substring scan."""
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(Q(identity=term) | Q(recording_sid=term)), False


@admin.register(AccessLogDigest)
class AccessLogDigestAdmin(_ReadOnlyAdmin):
    """Signed checkpoints of the access log's head."""

    list_display = ("created_at", "head_sequence", "head_hash", "key_id")
    ordering = ("-created_at", "-id")
    show_full_result_count = False
