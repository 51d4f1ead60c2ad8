"""Admin pages for recordings, their callbacks and the accepted Twilio subaccounts.

Recordings are Twilio's facts: nobody edits them here. Officers can see sync failures and ask
for a fresh sync.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from recordings import services, twilio_client
from recordings.models import (
    ArchivePolicy,
    PrivateKey,
    Recording,
    RecordingEvent,
    TwilioSubaccount,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """An admin page where rows can be looked at, never added, changed or deleted."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Recording)
class RecordingAdmin(ReadOnlyAdmin):
    list_display = (
        "sid",
        "status",
        "sync_state",
        "start_time",
        "duration_seconds",
        "channels",
        "source",
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
    )
    search_fields = ("=sid", "=call_sid", "=account_sid")
    date_hierarchy = "start_time"
    show_full_result_count = False
    actions = ("sync_now", "archive_now")
    exclude = ("encryption_cek",)
    # The page ends with the recording's timeline (``audit.selectors.recording_timeline``).
    change_form_template = "admin/recordings/recording/change_form.html"

    def change_view(self, request: HttpRequest, object_id: str, form_url="", extra_context=None):
        """The recording's page with its timeline; viewing it is written to the access log."""
        from audit.admin_views import recording_change_context

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
                services.recording_sync(sid=recording.sid, account_sid=recording.account_sid)
                done += 1
            except twilio_client.TwilioError as exc:
                self.message_user(request, f"{recording.sid}: {exc}", messages.ERROR)
        if done:
            self.message_user(request, f"{done} recordings synced.", messages.SUCCESS)

    @admin.action(
        description="Archive the selected recordings from Twilio now (queued)",
        permissions=["sync"],
    )
    def archive_now(self, request: HttpRequest, queryset: QuerySet[Recording]) -> None:
        """Queue the archive of recordings still at Twilio, e.g. after fixing what made one
        fail; the archive policy still decides whether and where."""
        from recordings.tasks import queue_recording_archive

        queued = 0
        for recording_id in queryset.values_list("pk", flat=True)[:1000]:
            queue_recording_archive(recording_id)
            queued += 1
        self.message_user(request, f"{queued} recordings queued for archiving.", messages.SUCCESS)


@admin.register(ArchivePolicy)
class ArchivePolicyAdmin(admin.ModelAdmin):
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
    _audited = ("account_sid", "enabled", "bucket", "key_prefix", "delete_at_twilio_after_archive")

    def save_model(self, request: HttpRequest, obj: ArchivePolicy, form: Any, change: bool) -> None:
        """Save, and write who changed which setting from what to what to the access log
        (a policy decides whether recordings are deleted at Twilio)."""
        before = ArchivePolicy.objects.filter(pk=obj.pk).values(*self._audited).first() or {}
        super().save_model(request, obj, form, change)
        changes = {
            name: {"old": before.get(name), "new": getattr(obj, name)}
            for name in self._audited
            if before.get(name) != getattr(obj, name)
        }
        self._log(request, obj, "changed" if change else "created", changes)

    def delete_model(self, request: HttpRequest, obj: ArchivePolicy) -> None:
        """Delete, and write it to the access log."""
        super().delete_model(request, obj)
        self._log(request, obj, "deleted", {})

    @staticmethod
    def _log(request: HttpRequest, obj: ArchivePolicy, what: str, changes: dict[str, Any]) -> None:
        from audit.admin_audit import staff_action_log

        staff_action_log(
            request,
            action="twilio_config",
            reason_code="archive_policy",
            detail={"policy": str(obj), "what": what, "changes": changes},
        )


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
class PrivateKeyAdmin(ReadOnlyAdmin):
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
        from audit.admin_audit import staff_action_log
        from recordings import encrypted_media, keys

        described = {"fingerprint": obj.fingerprint, "public_key_sid": obj.public_key_sid or ""}
        row_id = obj.pk
        super().delete_model(request, obj)
        keys.key_caches_clear(private_key_id=row_id)
        encrypted_media.content_key_caches_clear()
        staff_action_log(
            request, action="private_key_delete", reason_code="admin", detail=described
        )
