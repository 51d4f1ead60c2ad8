"""``sync_flex_directory``: read TaskRouter's workers and task queues into the portal now."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from recordings.flex import directory
from recordings.integrations import twilio_api


class Command(BaseCommand):
    help = (
        "Read every worker (Flex agent, with the team and other attributes Flex Insights uses) "
        "and task queue of TWILIO_WORKSPACE_SID from TaskRouter (also runs hourly)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, no_progress: bool, **options) -> None:
        with tqdm(
            desc="workers and queues", unit="", disable=no_progress, file=self.stderr._out
        ) as bar:
            try:
                summary = directory.flex_directory_sync(
                    actor="command:sync_flex_directory", on_progress=lambda _kind: bar.update(1)
                )
            except directory.FlexNotConfigured as exc:
                raise CommandError(str(exc)) from None
            except twilio_api.TwilioError as exc:
                raise CommandError(f"directory sync failed, nothing changed: {exc}") from None
        self.stdout.write(
            f"{summary.workers} workers ({summary.removed} no longer at Twilio, marked deleted), "
            f"{summary.queues} task queues"
        )
