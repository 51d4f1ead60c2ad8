"""Admin for compliance officers: access rules (editable, disabled rather than deleted) and the
access log with its digests (read-only for everyone, superusers included).

The access log's list stays fast on millions of rows: newest first down the unique ``sequence``
index, typed filters instead of ``DISTINCT`` scans (``audit.admin.filters``), exact-match search,
and a paginator that never counts the whole table (``audit.admin.pagination``). Opening the log, a
row, a recording's timeline or an identity's activity, and exporting, each append an ``admin_view``
or ``admin_export`` row (``audit.staff_actions``). Rule changes made here are written to the log as
``rule_change`` rows with their old and new values, like imports.

The pages beyond Django's own (dashboard, chain verification, exports, timelines, the rule
tester, rules import/export) are in ``audit.admin.views``; this module wires their URLs.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from audit.admin import views
from audit.admin.filters import (
    ActionFilter,
    IdentityFilter,
    OccurredFilter,
    ReasonFilter,
    RecordingFilter,
    RoleFilter,
    WorkerFilter,
)
from audit.admin.links import recording_timeline_link
from audit.admin.pagination import AccessLogPaginator
from audit.models import AccessAction, AccessLog, AccessLogDigest, AccessRule
from audit.services import access_rule_change_log, access_rule_values
from audit.staff_actions import query_detail, staff_action_log, staff_identity
from portal.http import request_audit_fields
from recordings.models import Recording


def _log_rule_change(
    request: HttpRequest, rule: AccessRule, change: str, before: dict[str, Any] | None
) -> None:
    access_rule_change_log(
        rule=rule,
        change=change,
        before=before,
        actor=staff_identity(request),
        via="admin",
        **request_audit_fields(request),
    )


@admin.register(AccessRule)
class AccessRuleAdmin(admin.ModelAdmin):
    """Rules can be added and edited; they are disabled, never deleted, so the log can name them.

    Every save and every disable writes a ``rule_change`` row with who made it and each changed
    field's old and new value. The list links the rule tester and the rules file import/export.
    """

    list_display = (
        "name",
        "effect",
        "enabled",
        "identities",
        "roles",
        "valid_from",
        "valid_until",
        "updated_at",
    )
    list_filter = ("enabled", "effect")
    search_fields = ("name", "reason")
    ordering = ("name",)
    readonly_fields = ("created_at", "updated_at")
    actions = ("disable_rules",)
    change_list_template = "admin/audit/accessrule/change_list.html"
    change_form_template = "admin/audit/accessrule/change_form.html"
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
        """Save, and write the change (old and new values) to the access log."""
        before = None
        if change:
            stored = AccessRule.objects.filter(pk=obj.pk).first()
            before = access_rule_values(stored) if stored is not None else None
        super().save_model(request, obj, form, change)
        _log_rule_change(request, obj, "updated" if change else "created", before)

    @admin.action(description="Disable selected rules", permissions=["change"])
    def disable_rules(self, request: HttpRequest, queryset: QuerySet[AccessRule]) -> None:
        """Disable each selected rule that is enabled, logging each change."""
        disabled = 0
        for rule in queryset.filter(enabled=True):
            before = access_rule_values(rule)
            rule.enabled = False
            rule.save(update_fields=["enabled", "updated_at"])
            _log_rule_change(request, rule, "disabled", before)
            disabled += 1
        self.message_user(request, f"{disabled} rule(s) disabled.", messages.SUCCESS)

    def get_urls(self) -> list[URLPattern]:
        """The rule tester and the rules file's import and export, before Django's URLs."""
        view = self.admin_site.admin_view
        return [
            path("test/", view(self.rule_test_view), name="audit_accessrule_test"),
            path("import/", view(self.rules_import_view), name="audit_accessrule_import"),
            path("export/", view(self.rules_export_view), name="audit_accessrule_export"),
            *super().get_urls(),
        ]

    def rule_test_view(self, request: HttpRequest) -> HttpResponse:
        """Run a caller and a recording through the rules (``audit.admin.views.rule_test``)."""
        return views.rule_test(request, self)

    def rules_import_view(self, request: HttpRequest) -> HttpResponse:
        """Preview, then load, a rules file (``audit.admin.views.rules_import``)."""
        return views.rules_import(request, self)

    def rules_export_view(self, request: HttpRequest) -> HttpResponse:
        """Download the rules in force as a rules file."""
        return views.rules_export(request, self)


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
    """The access log, newest first, read-only; see the module docstring for why it is fast.

    Search takes an identity, a recording SID (``RE…``), a call SID (``CA…``: the rows of that
    call's recordings) or a sequence number, each matched exactly through an index.
    """

    list_display = (
        "sequence",
        "occurred",
        "action",
        "outcome",
        "reason_code",
        "identity_link",
        "recording_link",
        "rule_name",
        "client_ip",
    )
    list_display_links = ("sequence",)
    list_filter = (
        OccurredFilter,
        "outcome",
        ActionFilter,
        ReasonFilter,
        IdentityFilter,
        WorkerFilter,
        RoleFilter,
        RecordingFilter,
    )
    search_fields = ("identity", "recording_sid")
    search_help_text = (
        "Exact identity, recording SID (RE…), call SID (CA…: its recordings) or sequence number."
    )
    ordering = ("-sequence",)
    paginator = AccessLogPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    # The log has no foreign keys (it owes nothing to other tables), so there is nothing to join.
    list_select_related = False
    change_list_template = "admin/audit/accesslog/change_list.html"
    fieldsets = (
        (None, {"fields": ("sequence", "occurred_at", "action", "outcome", "reason_code")}),
        ("Who", {"fields": ("identity", "realm_user_id", "worker_sid", "roles")}),
        ("What", {"fields": ("recording_sid", "rule_name", "link_id", "bytes_served", "detail")}),
        ("Request", {"fields": ("client_ip", "user_agent", "request_id")}),
        ("Hash chain", {"fields": ("prev_hash", "row_hash")}),
    )

    @admin.display(description="occurred (UTC)", ordering="occurred_at")
    def occurred(self, row: AccessLog) -> str:
        """The time to the second, in UTC, sortable as text."""
        return f"{row.occurred_at:%Y-%m-%d %H:%M:%S}"

    @admin.display(description="identity", ordering="identity")
    def identity_link(self, row: AccessLog) -> str:
        """The identity, linked to everything it opened."""
        if not row.identity:
            return "-"
        url = reverse("admin:audit_accesslog_identity") + "?" + _query(identity=row.identity)
        return format_html('<a href="{}">{}</a>', url, row.identity)

    @admin.display(description="recording", ordering="recording_sid")
    def recording_link(self, row: AccessLog) -> str:
        """The recording SID, linked to its timeline; what a caller sent that is not a SID is
        shown as text (``audit.admin.links``)."""
        if not row.recording_sid:
            return "-"
        return recording_timeline_link(row.recording_sid)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[AccessLog], search_term: str
    ) -> tuple[QuerySet[AccessLog], bool]:
        """Exact, indexed matches only (see the class docstring), never a substring scan."""
        term = search_term.strip()
        if not term:
            return queryset, False
        condition = Q(identity=term) | Q(recording_sid=term)
        if term.startswith("CA"):
            sids = Recording.objects.filter(call_sid=term).values_list("sid", flat=True)
            condition |= Q(recording_sid__in=list(sids[:1000]))
        number = term.removeprefix("#")
        if number.isdigit() and int(number) < 2**63:
            condition |= Q(sequence=int(number))
        return queryset.filter(condition), False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The list; opening it (with its filters) is itself written to the log."""
        if self.has_view_permission(request):
            staff_action_log(
                request,
                action=AccessAction.ADMIN_VIEW,
                reason_code="access_log_list",
                detail={"filters": _filters(request)},
            )
        return super().changelist_view(request, extra_context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """One row; opening it is itself written to the log."""
        if self.has_view_permission(request) and object_id.isdigit():
            staff_action_log(
                request,
                action=AccessAction.ADMIN_VIEW,
                reason_code="access_log_entry",
                detail={"entry_id": int(object_id)},
            )
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self) -> list[URLPattern]:
        """The dashboard, chain verification, exports and the two activity pages."""
        view = self.admin_site.admin_view
        return [
            path("dashboard/", view(self.dashboard_view), name="audit_accesslog_dashboard"),
            path("verify/", view(self.verify_view), name="audit_accesslog_verify"),
            path("export/<str:fmt>/", view(self.export_view), name="audit_accesslog_export"),
            path("exports/", view(self.exports_view), name="audit_accesslog_exports"),
            path(
                "exports/<int:export_id>/download/",
                view(self.export_download_view),
                name="audit_accesslog_export_download",
            ),
            path("identity/", view(self.identity_view), name="audit_accesslog_identity"),
            path(
                "recording/<str:sid>/",
                view(self.recording_view),
                name="audit_accesslog_recording",
            ),
            *super().get_urls(),
        ]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        """Accesses and denials per day, top identities, widely opened recordings, alerts."""
        return views.dashboard(request, self)

    def verify_view(self, request: HttpRequest) -> HttpResponse:
        """Verify the audit chain now, and show the last verifications."""
        return views.verify(request, self)

    def export_view(self, request: HttpRequest, fmt: str) -> HttpResponseBase:
        """Queue an export of the current filter's rows as CSV or JSON Lines."""
        return views.export(request, self, fmt)

    def exports_view(self, request: HttpRequest) -> HttpResponse:
        """The officer's exports and their state."""
        return views.exports(request, self)

    def export_download_view(self, request: HttpRequest, export_id: int) -> HttpResponseBase:
        """Download one finished export."""
        return views.export_download(request, self, export_id)
    def identity_view(self, request: HttpRequest) -> HttpResponse:
        """Everything one identity opened."""
        return views.identity(request, self)

    def recording_view(self, request: HttpRequest, sid: str) -> HttpResponse:
        """Everything that happened to one recording SID."""
        return views.recording_timeline(request, self, sid)


def _query(**params: str) -> str:
    return urlencode(params)


def _filters(request: HttpRequest) -> dict[str, str]:
    return query_detail(request.GET)


@admin.register(AccessLogDigest)
class AccessLogDigestAdmin(_ReadOnlyAdmin):
    """Signed checkpoints of the access log's head."""

    list_display = ("created_at", "head_sequence", "head_hash", "key_id")
    ordering = ("-created_at", "-id")
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
