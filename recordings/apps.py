"""App configuration for recordings."""

from django.apps import AppConfig


class RecordingsConfig(AppConfig):
    """Recordings synced from Twilio and the callbacks that announce them."""

    name = "recordings"
    default_auto_field = "django.db.models.BigAutoField"
