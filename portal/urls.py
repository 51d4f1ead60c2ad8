"""URL map. External paths are fixed by ``docs/contract.md``."""

from django.contrib import admin
from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from portal import health
from recordings import api, views, webhooks

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/v1/url-provider", api.url_provider, name="url-provider"),
    path("media/<uuid:link_id>", views.media_stream, name="media-stream"),
    path("demo/player", views.demo_player, name="demo-player"),
    path("twilio/recording-status", webhooks.recording_status, name="recording-status"),
    path("admin/", admin.site.urls),
]
