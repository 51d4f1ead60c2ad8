"""``sync_recording RE…``: fetch one recording from Twilio now and store it."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.sids import RECORDING_SID
from recordings.ingest import sync
from recordings.integrations import twilio_api


class Command(BaseCommand):
    help = "Sync one recording's metadata from Twilio's REST API now."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("recording_sid", help="RE followed by 32 hex digits")
        parser.add_argument("--account-sid", help="the subaccount that owns it, if not the main")

    def handle(self, *args, recording_sid: str, account_sid: str | None, **options) -> None:
        if not RECORDING_SID.fullmatch(recording_sid):
            raise CommandError(f"{recording_sid!r} is not a recording SID (RE + 32 hex digits)")
        try:
            recording = sync.recording_sync(sid=recording_sid, account_sid=account_sid)
        except twilio_api.TwilioError as exc:
            raise CommandError(f"sync failed: {exc}") from None
        where = recording.media_location
        if recording.media_bucket:
            where += f" s3://{recording.media_bucket}/{recording.media_key}"
        self.stdout.write(
            f"{recording.sid}: {recording.status}, {recording.duration_seconds or 0} s, "
            f"media at {where}"
        )
