"""Admin pages for recordings, their callbacks and the accepted Twilio subaccounts.

Recordings are Twilio's facts: nobody edits them here. Officers can see sync failures and ask
for a fresh sync.
"""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import ListFilter
from django.contrib.admin.helpers import ActionForm
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html
from django.utils.translation import ngettext

from audit.admin.control_changes import (
    PendingChangeAdminMixin,
    pending_change_message,
    staff_context,
)
from audit.admin.views import recording_change_context
from audit.control_changes import control_changes_need_approval
from audit.staff_actions import staff_action_log, staff_identity
from portal.admin_site import ComplianceAdminSite
from portal.guide import guide_urls
from portal.http import request_audit_fields
from recordings import jobs
from recordings.admin import control_changes
from recordings.admin.date_drilldown import DateSpanDrilldownChangeList
from recordings.admin.deletion import DeletionAdminMixin
from recordings.admin.evidence import EvidencePackageAdminMixin
from recordings.admin.flex import flex_urls
from recordings.admin.hold_cases import HoldCaseAdminMixin, hold_locks_schedule
from recordings.admin.holds import (
    HoldFilter,
    HoldsAdminMixin,
    HoldsOnPageChangeList,
    LegalHoldForm,
    OnHoldFilter,
    hold_coverage,
)
from recordings.admin.restricted import RestrictedAdminMixin, RestrictedFilter
from recordings.admin.restriction_rules import RestrictionRuleAdmin  # noqa: F401 (registers)
from recordings.admin.search import recording_sid_search
from recordings.admin.speech_filters import SpeechFilter
from recordings.admin.twilio_settings import storage_urls
from recordings.custody import keys
from recordings.ingest import sync
from recordings.integrations import twilio_api
from recordings.lifecycle import retention
from recordings.media import encrypted
from recordings.models import (
    ArchivePolicy,
    LegalHold,
    PrivateKey,
    Recording,
    RecordingEvent,
    RetentionPolicy,
    TwilioSubaccount,
    private_key_missing,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """An admin page where rows can be looked at, never added, changed or deleted."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class DateDrillDownChangeList(ChangeList):
    """Django's change list, refusing a date drill-down out of the calendar's range the admin
    way (back to the list with ``?e=1``) instead of answering 500.

    Django turns the ``ValueError`` of a malformed ``start_time__year`` into a refusal, but not
    the ``OverflowError`` of a huge one (``99999999999``), nor the error of stepping past the
    end of year 9999 to find where the range ends. The list it goes back to, without the
    filter, says why (for any filter Django refuses).
    """

    def get_filters(
        self, request: HttpRequest
    ) -> tuple[list[ListFilter], bool, dict[str, bool | str], bool, bool]:
        """Django's filters; a date it cannot build is an incorrect lookup parameter."""
        try:
            return super().get_filters(request)
        except (IncorrectLookupParameters, OverflowError, ValueError) as exc:
            messages.error(request, f"That filter cannot be applied ({exc}); it was left out.")
            raise IncorrectLookupParameters(exc) from exc


class PrivateKeyFilter(admin.SimpleListFilter):
    """Encrypted recordings whose private key the portal holds, or does not (those cannot be
    played: Twilio used a public key the portal has no private half of, e.g. error 16107)."""

    title = "private key"
    parameter_name = "private_key"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        """The two choices: keys missing (the dashboard's alert links here), keys held."""
        return [("missing", "missing (cannot be played)"), ("held", "held")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Recording]) -> QuerySet[Recording]:
        """Encrypted recordings by whether their key is held; everything without a choice."""
        if self.value() == "missing":
            return queryset.filter(private_key_missing())
        if self.value() == "held":
            return queryset.filter(encryption_type="rsa-aes").exclude(private_key_missing())
        return queryset


class RecordingChangeList(
    HoldsOnPageChangeList, DateSpanDrilldownChangeList, DateDrillDownChangeList
):
    """The recordings list: date drill-downs refused safely and listed without a scan
    (:mod:`recordings.admin.date_drilldown`), holds read once per page."""


@admin.register(Recording)
class RecordingAdmin(
    RestrictedAdminMixin,
    EvidencePackageAdminMixin,
    HoldsAdminMixin,
    DeletionAdminMixin,
    ReadOnlyAdmin,
):
    list_display = (
        "sid",
        "status_shown",
        "legal_hold",
        "restricted_shown",
        "sync_state",
        "start_time",
        "duration_seconds",
        "channels",
        "source_shown",
        "media_location",
        "archive_state",
        "is_encrypted",
        "account_sid",
    )
    list_filter = (
        "sync_state",
        "status",
        "media_location",
        "archive_state",
        "source",
        "encryption_type",
        PrivateKeyFilter,
        OnHoldFilter,
        HoldFilter,
        SpeechFilter,
        RestrictedFilter,
    )
    search_fields = ("=sid", "=call_sid", "=account_sid")
    # Years, months and days from the first to the last start (one MIN/MAX on the index; the
    # template shows recordings.admin.date_drilldown's choices, not Django's DISTINCT scan).
    date_hierarchy = "start_time"
    # A filtered list shows its own count only: Django's "(N total)" would count every
    # recording again on each filtered click.
    show_full_result_count = False
    actions = (
        "sync_now",
        "archive_now",
        "place_legal_hold",
        "delete_now",
        "export_evidence_package",
        "restrict_recordings",
        "unrestrict_recordings",
    )
    exclude = ("encryption_cek",)
    # The page ends with the recording's timeline (``audit.admin.selectors.recording_timeline``).
    change_form_template = "admin/recordings/recording/change_form.html"

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        """The list, refusing an impossible date drill-down (:class:`DateDrillDownChangeList`)
        and reading the holds of a page at once (:class:`HoldsOnPageChangeList`)."""
        return RecordingChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Recording], search_term: str
    ) -> tuple[QuerySet[Recording], bool]:
        """Indexed equality on the SID columns, never ``UPPER()`` (``recordings.admin.search``)."""
        if not search_term.strip():
            return queryset, False
        return queryset.filter(recording_sid_search(search_term)), False

    def change_view(self, request: HttpRequest, object_id: str, form_url="", extra_context=None):
        """The recording's page with its timeline; viewing it is written to the access log."""
        recording = self.get_object(request, object_id)
        if recording is not None and self.has_view_or_change_permission(request, recording):
            timeline = recording_change_context(request, recording)
            extra_context = {**(extra_context or {}), **timeline}
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(boolean=True, description="encrypted")
    def is_encrypted(self, obj: Recording) -> bool:
        return obj.is_encrypted

    def has_sync_permission(self, request: HttpRequest) -> bool:
        """Asking Twilio again changes nothing by hand, but is still an operator's action."""
        return request.user.has_perm("recordings.change_recording")

    @admin.action(description="Sync the selected recordings from Twilio now", permissions=["sync"])
    def sync_now(self, request: HttpRequest, queryset: QuerySet[Recording]) -> None:
        done = 0
        for recording in queryset[:100]:
            try:
                sync.recording_sync(sid=recording.sid, account_sid=recording.account_sid)
                done += 1
            except twilio_api.TwilioError as exc:
                self.message_user(request, f"{recording.sid}: {exc}", messages.ERROR)
        if done:
            synced = ngettext("%(n)d recording synced.", "%(n)d recordings synced.", done)
            self.message_user(request, synced % {"n": done}, messages.SUCCESS)

    @admin.display(description="source", ordering="source")
    def source_shown(self, obj: Recording) -> str:
        """Twilio's own name for what recorded the call, the filter's words on hover: the
        words are too wide for a list that must fit 1280 px."""
        if not obj.source:
            return "-"
        return format_html('<span title="{}">{}</span>', obj.get_source_display(), obj.source)

    @admin.action(
        description="Archive the selected recordings from Twilio now (queued)",
        permissions=["sync"],
    )
    def archive_now(self, request: HttpRequest, queryset: QuerySet[Recording]) -> None:
        """Queue the archive of recordings still at Twilio, e.g. after fixing what made one
        fail; the archive policy still decides whether and where."""
        queued = jobs.queue_recording_archives(queryset.values_list("pk", flat=True)[:1000])
        text = ngettext(
            "%(n)d recording queued for archiving.",
            "%(n)d recordings queued for archiving.",
            queued,
        )
        self.message_user(request, text % {"n": queued}, messages.SUCCESS)


class AuditedSettingsAdmin(admin.ModelAdmin):
    """An admin whose saves and deletes are written to the access log with the old and new
    value of each field in ``audited_fields``; subclasses say how (``_log``)."""

    audited_fields: tuple[str, ...] = ()

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Save, and log who changed which setting from what to what."""
        model = type(obj)
        before = model.objects.filter(pk=obj.pk).values(*self.audited_fields).first() or {}
        super().save_model(request, obj, form, change)
        changes = {
            name: {"old": before.get(name), "new": getattr(obj, name)}
            for name in self.audited_fields
            if before.get(name) != getattr(obj, name)
        }
        self._log(request, obj, "changed" if change else "created", changes)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        """Delete, and log it."""
        super().delete_model(request, obj)
        self._log(request, obj, "deleted", {})

    @staticmethod
    def _log(request: HttpRequest, obj: Any, what: str, changes: dict[str, Any]) -> None:
        raise NotImplementedError


@admin.register(ArchivePolicy)
class ArchivePolicyAdmin(AuditedSettingsAdmin):
    """Per-account archive settings: where recordings Twilio holds are copied, and whether
    they are then deleted at Twilio."""

    list_display = (
        "__str__",
        "enabled",
        "bucket",
        "key_prefix",
        "delete_at_twilio_after_archive",
        "updated_at",
    )
    list_filter = ("enabled", "delete_at_twilio_after_archive")
    search_fields = ("=account_sid",)
    # A policy decides whether recordings are deleted at Twilio: every change is logged.
    audited_fields = (
        "account_sid",
        "enabled",
        "bucket",
        "key_prefix",
        "delete_at_twilio_after_archive",
    )

    @staticmethod
    def _log(request: HttpRequest, obj: ArchivePolicy, what: str, changes: dict[str, Any]) -> None:
        staff_action_log(
            request,
            action="twilio_config",
            reason_code="archive_policy",
            detail={"policy": str(obj), "what": what, "changes": changes},
        )


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(PendingChangeAdminMixin, AuditedSettingsAdmin):
    """How long recordings are kept: superusers change policies, viewers read them; every
    change is written to the access log with its old and new values. A change that may delete
    recordings sooner waits for a second staff member when the setting says so
    (``recordings.admin.control_changes``)."""

    list_display = (
        "name",
        "enabled",
        "keep_days",
        "restricted_keep_days",
        "hard_delete_grace_days",
        "account_sids",
        "sources",
        "updated_at",
    )
    list_filter = ("enabled",)
    search_fields = ("name",)
    audited_fields = (
        "name",
        "enabled",
        "account_sids",
        "sources",
        "keep_days",
        "restricted_keep_days",
        "hard_delete_grace_days",
    )

    def _superuser(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def save_model(
        self, request: HttpRequest, obj: RetentionPolicy, form: Any, change: bool
    ) -> None:
        """Save and log, or hold a change that may delete recordings sooner."""
        proposal = control_changes.retention_change_propose(
            policy=obj,
            user=request.user,  # type: ignore[arg-type]
            context=staff_context(request),
        )
        if proposal is not None:
            self.pending_change_hold(request, proposal)
            return
        super().save_model(request, obj, form, change)

    def deletion_proposal(self, request: HttpRequest, obj: RetentionPolicy) -> Any:
        """Hold deleting a policy when its recordings may fall to a shorter one."""
        return control_changes.retention_change_propose(
            policy=obj,
            delete=True,
            user=request.user,  # type: ignore[arg-type]
            context=staff_context(request),
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._superuser(request)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._superuser(request)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._superuser(request)

    @staticmethod
    def _log(
        request: HttpRequest, obj: RetentionPolicy, what: str, changes: dict[str, Any]
    ) -> None:
        staff_action_log(
            request,
            action="retention_policy",
            reason_code=what,
            detail={"policy": obj.name[:100], "changes": changes},
        )


class ReleaseActionForm(ActionForm):
    """The action bar of the legal-hold list, with the release reason the release asks for."""

    release_reason = forms.CharField(required=False, label="Release reason")


@admin.register(LegalHold)
class LegalHoldAdmin(HoldCaseAdminMixin, admin.ModelAdmin):
    """Legal holds: placed with a reason and a case reference, then read-only until released
    (the release action asks for a reason); never deleted. Placing and releasing are audited."""

    list_display = (
        "__str__",
        "matter_name",
        "reason",
        "created_by",
        "created_at",
        "released_at",
        "released_by",
    )
    list_filter = (("released_at", admin.EmptyFieldListFilter),)
    search_fields = ("case_reference", "matter_name", "reason", "custodians")
    fields = (
        "matter_name",
        "case_reference",
        "reason",
        "custodians",
        "notes",
        "recording_sids",
        "call_sids",
        "started_from",
        "started_until",
        "covers",
        "object_locks",
        "created_by",
        "created_at",
        "released_at",
        "released_by",
        "release_reason",
    )
    readonly_fields = (
        "covers",
        "object_locks",
        "created_by",
        "created_at",
        "released_at",
        "released_by",
        "release_reason",
    )
    actions = ("release",)
    action_form = ReleaseActionForm
    # SIDs as plain text (one per line), not JSON: see ``recordings.admin.holds``.
    form = LegalHoldForm

    @admin.display(description="covers now")
    def covers(self, obj: LegalHold | None) -> str:
        """How many recordings the hold covers, linked to them."""
        return hold_coverage(obj)

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> tuple[str, ...]:
        # A placed hold is evidence: it is released, never edited.
        return self.fields if obj is not None else self.readonly_fields

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: LegalHold, form: Any, change: bool) -> None:
        """Place the hold (a new one only: placed holds are read-only), and audit it."""
        if change:
            return
        retention.legal_hold_place(
            hold=obj,
            created_by=request.user.get_username(),
            source="form",
            context={"identity": staff_identity(request), **request_audit_fields(request)},
        )
        hold_locks_schedule(hold_id=obj.pk, request=request)

    @admin.action(description="Release the selected holds (give a reason)", permissions=["change"])
    def release(self, request: HttpRequest, queryset: QuerySet[LegalHold]) -> None:
        """Release holds with the reason typed beside the action, each audited."""
        reason = request.POST.get("release_reason", "").strip()
        if not reason:
            self.message_user(request, "Give a release reason to release a hold.", messages.ERROR)
            return
        context = {"identity": staff_identity(request), **request_audit_fields(request)}
        released = 0
        for hold in queryset.filter(released_at__isnull=True):
            if control_changes_need_approval():
                proposal = control_changes.hold_release_propose(
                    hold=hold,
                    reason=reason,
                    user=request.user,  # type: ignore[arg-type]
                    context=context,
                )
                pending_change_message(request, proposal)
                continue
            retention.legal_hold_release(
                hold_id=hold.pk,
                released_by=request.user.get_username(),
                reason=reason,
                context=context,
            )
            hold_locks_schedule(hold_id=hold.pk, request=request)
            released += 1
        text = ngettext("%(n)d hold released.", "%(n)d holds released.", released)
        self.message_user(request, text % {"n": released}, messages.SUCCESS)


@admin.register(RecordingEvent)
class RecordingEventAdmin(ReadOnlyAdmin):
    list_display = (
        "recording_sid",
        "recording_status",
        "state",
        "received_at",
        "deliveries",
        "attempts",
        "next_attempt_at",
        "last_error",
    )
    list_filter = ("state", "recording_status")
    search_fields = ("=recording_sid", "=account_sid")
    show_full_result_count = False


@admin.register(TwilioSubaccount)
class TwilioSubaccountAdmin(ReadOnlyAdmin):
    list_display = ("sid", "friendly_name", "status", "refreshed_at")
    exclude = ("sealed_auth_token",)


@admin.register(PrivateKey)
class PrivateKeyAdmin(PendingChangeAdminMixin, ReadOnlyAdmin):
    """The private keys the portal holds, described, never shown: no field of the form, list
    or export carries the private key or its sealed text. Keys come in through the
    ``generate_keypair`` and ``import_private_key`` commands; only a superuser may delete one,
    after a warning that the recordings encrypted for it become unplayable."""

    list_display = (
        "public_key_sid",
        "friendly_name",
        "fingerprint",
        "key_size",
        "created_at",
        "last_used_at",
        "master_key_id",
    )
    fields = (
        "public_key_sid",
        "friendly_name",
        "fingerprint",
        "key_size",
        "public_key_pem",
        "master_key_id",
        "created_at",
        "last_used_at",
    )
    readonly_fields = fields
    search_fields = ("=public_key_sid", "fingerprint", "friendly_name")
    show_full_result_count = False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # One key at a time, each through the warning below.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if request.method == "GET" and self.has_delete_permission(request):
            key = self.get_object(request, object_id)
            if key is not None:
                messages.warning(request, self.deletion_warning(key))
        return super().delete_view(request, object_id, extra_context)

    def deletion_proposal(self, request: HttpRequest, obj: PrivateKey) -> Any:
        """With the setting on, deleting a key waits for a second staff member."""
        return control_changes.private_key_delete_propose(
            key=obj,
            user=request.user,  # type: ignore[arg-type]
            context=staff_context(request),
        )

    @staticmethod
    def deletion_warning(key: PrivateKey) -> str:
        """What deleting this key destroys, said before the confirmation button."""
        affected = (
            Recording.objects.filter(encryption_public_key_sid=key.public_key_sid).count()
            if key.public_key_sid
            else 0
        )
        return (
            f"Deleting this private key cannot be undone. The {affected} recordings Twilio "
            f"encrypted for {key} (and any video encrypted for it) become unplayable for good: "
            "no one, Twilio included, can decrypt them without it. If Twilio still has this "
            "public key registered, delete it there first so no new recording is encrypted "
            "for it."
        )

    def delete_model(self, request: HttpRequest, obj: PrivateKey) -> None:
        described = {"fingerprint": obj.fingerprint, "public_key_sid": obj.public_key_sid or ""}
        row_id = obj.pk
        super().delete_model(request, obj)
        keys.key_caches_clear(private_key_id=row_id)
        encrypted.content_key_caches_clear()
        staff_action_log(
            request, action="private_key_delete", reason_code="admin", detail=described
        )


# The Twilio storage settings pages belong to no model (see ``portal.admin_site``).
cast(ComplianceAdminSite, admin.site).register_urls(storage_urls)
cast(ComplianceAdminSite, admin.site).register_urls(flex_urls)
cast(ComplianceAdminSite, admin.site).register_urls(guide_urls)
