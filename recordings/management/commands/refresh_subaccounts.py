"""``refresh_subaccounts``: fetch the list of subaccounts whose callbacks are accepted."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from recordings.custody import subaccounts
from recordings.integrations import twilio_api


class Command(BaseCommand):
    help = "Refresh the subaccounts of the configured Twilio account (also runs hourly)."

    def handle(self, *args, **options) -> None:
        try:
            count = subaccounts.subaccounts_refresh()
        except twilio_api.TwilioError as exc:
            raise CommandError(f"refresh failed: {exc}") from None
        self.stdout.write(f"{count} subaccounts")
