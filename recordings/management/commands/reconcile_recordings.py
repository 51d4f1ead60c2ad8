"""``reconcile_recordings --since YYYY-MM-DD``: sync what callbacks missed."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from recordings.ingest import reconcile
from recordings.integrations import twilio_api
from recordings.management.arguments import since_date


class Command(BaseCommand):
    help = (
        "List recordings at Twilio created since a date (main account and subaccounts) and "
        "sync those that are missing here or stale."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", required=True, help="YYYY-MM-DD (UTC)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, since: str, no_progress: bool, **options) -> None:
        start = since_date(since)
        with tqdm(desc="recordings", unit="rec", disable=no_progress, file=self.stderr._out) as bar:
            try:
                summary = reconcile.recordings_reconcile(
                    since=start, on_progress=lambda _resource: bar.update(1)
                )
            except twilio_api.TwilioError as exc:
                raise CommandError(f"reconciliation stopped: {exc}") from None
        self.stdout.write(
            f"seen {summary.seen}, synced {summary.synced}, "
            f"up to date {summary.up_to_date}, failed {summary.failed}"
        )
        for error in summary.errors[:20]:
            self.stderr.write(f"  {error}")
        if summary.failed:
            raise CommandError(f"{summary.failed} recordings could not be stored")
