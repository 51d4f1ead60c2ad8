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
from django.contrib.admin.views.main import ChangeList
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from audit.admin import people as _people_directory  # noqa: F401  (registers the directory)
from audit.admin import reports as _reports  # noqa: F401  (registers the report pages)
from audit.admin import reviews as _reviews  # noqa: F401  (registers access reviews)
from audit.admin import views
from audit.admin.control_changes import (
    PendingChangeAdminMixin,
    pending_change_message,
    staff_context,
)
from audit.admin.display import person_html, utc_time
from audit.admin.filters import (
    ActionFilter,
    ActivityFilter,
    IdentityFilter,
    OccurredFilter,
    ReasonFilter,
    RecordingFilter,
    RoleFilter,
    WorkerFilter,
)
from audit.admin.forms import AccessRuleForm
from audit.admin.grants import RestrictedLogFilter  # (also registers access grants)
from audit.admin.links import recording_timeline_link
from audit.admin.pagination import AccessLogPaginator
from audit.admin.rule_history import rule_history_view
from audit.control_rules import access_rule_change_propose, access_rule_needs_approval
from audit.labels import action_label, reason_label
from audit.models import AccessAction, AccessLog, AccessLogDigest, AccessRule
from audit.people import Person, people_describe, people_match, person_of
from audit.services import access_rule_change_log, access_rule_values
from audit.staff_actions import query_detail, staff_action_log, staff_identity
from portal.http import request_audit_fields
from portal.sids import WORKER_SID, is_sid
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
class AccessRuleAdmin(PendingChangeAdminMixin, admin.ModelAdmin):
    """Rules can be added and edited; they are disabled, never deleted, so the log can name them.

    Every save and every disable writes a ``rule_change`` row with who made it and each changed
    field's old and new value. The list links the rule tester and the rules file import/export.
    """

    list_display = (
        "name",
        "effect",
        "enabled",
        "identities_text",
        "roles_text",
        "valid_from_text",
        "valid_until_text",
        "updated",
    )
    list_filter = ("enabled", "effect")
    search_fields = ("name", "reason")
    ordering = ("name",)
    readonly_fields = ("created", "updated")
    actions = ("disable_rules",)
    change_list_template = "admin/audit/accessrule/change_list.html"
    change_form_template = "admin/audit/accessrule/change_form.html"
    form = AccessRuleForm
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
        (
            "Who handled them (Flex; a recording without handling facts never matches these)",
            {"fields": ("queues", "teams", "workers", "handled_by", "restricted")},
        ),
        ("When", {"fields": ("valid_from", "valid_until", "created", "updated")}),
    )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Nobody deletes a rule: disable it instead."""
        return False

    @admin.display(description="identities", ordering="identities")
    def identities_text(self, rule: AccessRule) -> str:
        """The identities as words (``qa_*, alice@example.com``), not JSON."""
        return ", ".join(rule.identities) or "any"

    @admin.display(description="roles", ordering="roles")
    def roles_text(self, rule: AccessRule) -> str:
        """The roles as words, not JSON."""
        return ", ".join(rule.roles) or "any"

    @admin.display(description="valid from (UTC)", ordering="valid_from")
    def valid_from_text(self, rule: AccessRule) -> str:
        """The start, in UTC with seconds and the zone like every console time."""
        return utc_time(rule.valid_from)

    @admin.display(description="valid until (UTC)", ordering="valid_until")
    def valid_until_text(self, rule: AccessRule) -> str:
        """The end (exclusive), in UTC."""
        return utc_time(rule.valid_until)

    @admin.display(description="created", ordering="created_at")
    def created(self, rule: AccessRule) -> str:
        """When the rule was created, in UTC."""
        return utc_time(rule.created_at)

    @admin.display(description="last changed", ordering="updated_at")
    def updated(self, rule: AccessRule) -> str:
        """When the rule last changed, in UTC."""
        return utc_time(rule.updated_at)

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The rule's real history, from the access log (``audit.admin.rule_history``):
        Django's own reads ``LogEntry``, which rules-file imports never write."""
        return rule_history_view(request, self, object_id)

    def save_model(self, request: HttpRequest, obj: AccessRule, form: Any, change: bool) -> None:
        """Save, and write the change (old and new values) to the access log; a change that
        weakens control waits for a second staff member instead when the setting says so
        (``audit.control_rules``)."""
        before = None
        if change:
            stored = AccessRule.objects.filter(pk=obj.pk).first()
            before = access_rule_values(stored) if stored is not None else None
        if access_rule_needs_approval(before=before, rule=obj):
            proposal = access_rule_change_propose(
                rule=obj,
                before=before,
                change="updated" if change else "created",
                proposed_by=request.user,  # type: ignore[arg-type]
                context=staff_context(request),
            )
            self.pending_change_hold(request, proposal)
            return
        super().save_model(request, obj, form, change)
        _log_rule_change(request, obj, "updated" if change else "created", before)

    @admin.action(description="Disable selected rules", permissions=["change"])
    def disable_rules(self, request: HttpRequest, queryset: QuerySet[AccessRule]) -> None:
        """Disable each selected rule that is enabled, logging each change."""
        disabled = 0
        for rule in queryset.filter(enabled=True):
            before = access_rule_values(rule)
            rule.enabled = False
            if access_rule_needs_approval(before=before, rule=rule):
                proposal = access_rule_change_propose(
                    rule=rule,
                    before=before,
                    change="disabled",
                    proposed_by=request.user,  # type: ignore[arg-type]
                    context=staff_context(request),
                )
                pending_change_message(request, proposal)
                continue
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


class AccessLogChangeList(ChangeList):
    """The list, with the people behind the page's identities looked up once for the page."""

    people: dict[str, Person]

    def get_results(self, request: HttpRequest) -> None:
        """The page's rows, then one directory lookup for all their identities."""
        super().get_results(request)
        rows = list(self.result_list)
        self.people = people_describe(
            identities={row.identity for row in rows},
            worker_sids={row.worker_sid for row in rows},
        )
        for row in rows:
            row.person = person_of(self.people, identity=row.identity, worker_sid=row.worker_sid)


@admin.register(AccessLog)
class AccessLogAdmin(_ReadOnlyAdmin):
    """The access log, newest first, read-only; see the module docstring for why it is fast.

    Search takes a person the way the officer knows them (an e-mail, a name, a worker SID,
    Flex's identity or part of it: ``audit.people.people_match``), a recording SID (``RE…``),
    a call SID (``CA…``: the rows of that call's recordings) or a sequence number, each
    matched exactly through an index. The default view shows player and media activity; the
    activity filter shows staff's (``audit.admin.filters.ActivityFilter``).
    """

    list_display = (
        "sequence",
        "occurred",
        "action_text",
        "outcome",
        "reason_text",
        "identity_link",
        "recording_link",
        "rule_name",
        "client_ip",
    )
    list_display_links = ("sequence",)
    # The paginator counts entries: the model's plural is the page's title, "access log".
    count_nouns = ("entry", "entries")
    list_filter = (
        ActivityFilter,
        OccurredFilter,
        "outcome",
        ActionFilter,
        ReasonFilter,
        IdentityFilter,
        WorkerFilter,
        RoleFilter,
        RecordingFilter,
        RestrictedLogFilter,
    )
    search_fields = ("identity", "recording_sid")
    search_help_text = (
        "A person (e-mail, name, worker SID WK…, Flex identity or part of it), a recording SID "
        "(RE…), a call SID (CA…: its recordings) or a sequence number."
    )
    ordering = ("-sequence",)
    paginator = AccessLogPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    # The log has no foreign keys (it owes nothing to other tables), so there is nothing to join.
    list_select_related = False
    change_list_template = "admin/audit/accesslog/change_list.html"
    readonly_fields = ("occurred", "action_text", "reason_text", "person")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "sequence",
                    "occurred",
                    "action",
                    "action_text",
                    "outcome",
                    "reason_code",
                    "reason_text",
                )
            },
        ),
        ("Who", {"fields": ("identity", "person", "realm_user_id", "worker_sid", "roles")}),
        ("What", {"fields": ("recording_sid", "rule_name", "link_id", "bytes_served", "detail")}),
        ("Request", {"fields": ("client_ip", "user_agent", "request_id")}),
        ("Hash chain", {"fields": ("prev_hash", "row_hash")}),
    )

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        """The list that looks up the page's people in one query."""
        return AccessLogChangeList

    @admin.display(description="occurred", ordering="occurred_at")
    def occurred(self, row: AccessLog) -> str:
        """The time to the second, in UTC with the zone (local time on hover)."""
        return utc_time(row.occurred_at)

    @admin.display(description="action", ordering="action")
    def action_text(self, row: AccessLog) -> str:
        """The action's label (an unknown code as itself)."""
        return action_label(row.action)

    @admin.display(description="reason", ordering="reason_code")
    def reason_text(self, row: AccessLog) -> str:
        """The reason's label (an unknown code as itself)."""
        return reason_label(row.reason_code) or "-"

    @admin.display(description="person")
    def person(self, row: AccessLog) -> str:
        """The agent's name and e-mail, from the worker directory or Flex's encoding."""
        found = person_of(
            people_describe(identities=[row.identity], worker_sids=[row.worker_sid]),
            identity=row.identity,
            worker_sid=row.worker_sid,
        )
        return found.label if found else "-"

    @admin.display(description="identity", ordering="identity")
    def identity_link(self, row: AccessLog) -> str:
        """The identity, linked to everything it opened, with the person's name and e-mail."""
        if not row.identity:
            return "-"
        url = reverse("admin:audit_accesslog_identity") + "?" + _query(identity=row.identity)
        return format_html(
            '<a href="{}">{}</a>{}', url, row.identity, person_html(getattr(row, "person", None))
        )

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
        """Exact, indexed matches only (see the class docstring), never a substring scan of
        the log: a name or part of an identity is looked up in the worker directory."""
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(access_log_search(term)), False

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


def access_log_search(term: str) -> Q:
    """The log rows an officer's search ``term`` names: a person (``audit.people``: the
    identities and worker SIDs it resolves to), a recording SID, a call SID's recordings or a
    sequence number. Rows by worker SID are matched only for a typed SID (the column has no
    index; the directory's SIDs are reached through their identities)."""
    found = people_match(term=term)
    condition = Q(identity__in=sorted(found.identities)) | Q(recording_sid=term)
    if is_sid(WORKER_SID, term):
        condition |= Q(worker_sid=term)
    if term.startswith("CA"):
        sids = Recording.objects.filter(call_sid=term).values_list("sid", flat=True)
        condition |= Q(recording_sid__in=list(sids[:1000]))
    number = term.removeprefix("#")
    if number.isdigit() and int(number) < 2**63:
        condition |= Q(sequence=int(number))
    return condition


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
