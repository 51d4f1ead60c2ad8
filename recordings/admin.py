"""Admin pages for recordings, their callbacks and the accepted Twilio subaccounts.

Recordings are Twilio's facts: nobody edits them here. Officers can see sync failures and ask
for a fresh sync.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from recordings import services, twilio_client
from recordings.models import Recording, RecordingEvent, TwilioSubaccount


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
        "is_encrypted",
        "account_sid",
    )
    list_filter = ("sync_state", "status", "media_location", "source", "encryption_type")
    search_fields = ("=sid", "=call_sid", "=account_sid")
    date_hierarchy = "start_time"
    show_full_result_count = False
    actions = ("sync_now",)
    exclude = ("encryption_cek",)

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
