"""Admin pages of the Flex linkage: read-only lists of Flex tasks (with their recordings) and
workers (with team and e-mail), and the recording page's "Attach to Flex again".

Tasks and workers are TaskRouter's facts as the portal last saw them: nobody edits them here.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import AdminSite
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from audit.models import AccessAction
from audit.staff_actions import staff_action_log
from recordings import jobs
from recordings.flex import attach
from recordings.models import FlexTask, FlexWorker, Recording, RecordingTaskLink


class _ReadOnly(admin.ModelAdmin):
    """Rows to look at, never to add, change or delete."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(FlexTask)
class FlexTaskAdmin(_ReadOnly):
    list_display = (
        "sid",
        "channel",
        "queue_name",
        "assignment_status",
        "created_at_twilio",
        "completed_at",
        "recording_count",
    )
    list_filter = ("assignment_status", "channel", "queue_name")
    search_fields = ("=sid", "=call_sid", "=conference_sid")
    readonly_fields = ("recordings",)
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[FlexTask]:
        """Tasks with their links, so the list does not ask per row."""
        return super().get_queryset(request).prefetch_related("recording_links__recording")

    @admin.display(description="recordings")
    def recording_count(self, obj: FlexTask) -> int:
        return len(obj.recording_links.all())

    @admin.display(description="recordings and their state in Flex")
    def recordings(self, obj: FlexTask) -> str:
        rows = [
            (
                reverse("admin:recordings_recording_change", args=[link.recording.pk]),
                link.recording.sid,
                link.get_attach_state_display(),
            )
            for link in obj.recording_links.all()
        ]
        if not rows:
            return "-"
        return format_html(
            "<ul>{}</ul>", format_html_join("", '<li><a href="{}">{}</a> ({})</li>', rows)
        )


@admin.register(FlexWorker)
class FlexWorkerAdmin(_ReadOnly):
    list_display = ("__str__", "email", "team_name", "department_name", "friendly_name", "sid")
    list_filter = ("team_name", "department_name")
    search_fields = ("full_name", "email", "friendly_name", "=sid")
    exclude = ("attributes",)


def recording_flex_attach(request: HttpRequest, recording_id: int) -> HttpResponse:
    """Queue the recording's links for writing into Flex again (fresh attempts; at once in
    embedded mode) and go back to its page. Needs the change permission on recordings; the
    request is an access-log row of its own, the attachments write theirs."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not request.user.has_perm("recordings.change_recording"):
        raise PermissionDenied
    recording = get_object_or_404(Recording, pk=recording_id)
    link_ids = list(
        RecordingTaskLink.objects.filter(recording=recording).values_list("pk", flat=True)
    )
    page = reverse("admin:recordings_recording_change", args=[recording.pk])
    if not link_ids:
        messages.warning(request, "No Flex task is linked to this recording.")
        return HttpResponseRedirect(page)
    staff_action_log(
        request,
        action=AccessAction.FLEX_MEDIA_ATTACH,
        reason_code="attach_requested",
        recording_sid=recording.sid,
        detail={"links": len(link_ids)},
    )
    attach.flex_media_reset(link_ids=link_ids)
    if jobs.queue_flex_media_attach(link_ids):
        messages.success(request, "Writing the recording into Flex was requested.")
    else:
        messages.warning(
            request, "The broker could not take the request; the periodic sweep will do it."
        )
    return HttpResponseRedirect(page)


def flex_urls(site: AdminSite) -> list[URLPattern]:
    """The recording page's "Attach to Flex again", behind the site's login check."""
    return [
        path(
            "recordings/recording/<int:recording_id>/flex-attach/",
            site.admin_view(recording_flex_attach),
            name="recordings_recording_flex_attach",
        )
    ]
