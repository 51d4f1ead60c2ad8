"""URL map. External paths are fixed by ``docs/contract.md``."""

from django.contrib import admin
from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView

from portal import health
from recordings import api, views, webhooks

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/v1/url-provider", api.url_provider, name="url-provider"),
    # Any value reaches the view, which answers a malformed SID with a JSON 400.
    re_path(
        r"^api/v1/recordings/(?P<recording_sid>[\s\S]*)/waveform$",
        api.recording_waveform,
        name="recording-waveform",
    ),
    path("media/<uuid:link_id>", views.media_stream, name="media-stream"),
    path("demo/player", views.demo_player, name="demo-player"),
    path("access-requests/", views.access_requests_page, name="access-requests"),
    path("twilio/recording-status", webhooks.recording_status, name="recording-status"),
    path("twilio/taskrouter-events", webhooks.taskrouter_events, name="taskrouter-events"),
    path("admin/", admin.site.urls),
]
