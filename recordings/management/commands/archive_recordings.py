"""``archive_recordings --since YYYY-MM-DD [--dry-run]``: copy recordings whose media Twilio still
holds to the archive bucket, in bulk (``recordings.lifecycle.archive``), e.g. those made before the
portal existed."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, date, datetime

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.db.models import Q, QuerySet
from tqdm import tqdm

from recordings.ingest import reconcile
from recordings.integrations import twilio_api
from recordings.lifecycle import archive
from recordings.management.arguments import since_date
from recordings.models import ArchivePolicy, MediaLocation, Recording, RecordingStatus


def archive_candidates(*, since: date) -> QuerySet[Recording]:
    """Recordings made since ``since`` (UTC) with something left to do: media still at
    Twilio, or an archived copy whose account's policy deletes at Twilio and that is not
    deleted there yet."""
    start = datetime(since.year, since.month, since.day, tzinfo=UTC)
    made_since = Q(start_time__gte=start) | Q(start_time__isnull=True, created_at__gte=start)
    deleting: set[str] = set()
    keeping: set[str] = set()
    for policy in ArchivePolicy.objects.all():
        wants = policy.enabled and policy.delete_at_twilio_after_archive
        (deleting if wants else keeping).add(policy.account_sid)
    awaiting_delete = Q(archived_at__isnull=False, twilio_media_deleted_at__isnull=True)
    if "" in deleting:  # the default deletes, except for accounts whose own policy does not
        awaiting_delete &= ~Q(account_sid__in=keeping - {""})
    else:
        awaiting_delete &= Q(account_sid__in=deleting)
    left = Q(media_location=MediaLocation.TWILIO, archived_at__isnull=True) | awaiting_delete
    return Recording.objects.filter(made_since & left).order_by("start_time", "id")


def _archive_one(recording_id: int) -> archive.ArchiveOutcome:
    """One recording, in a worker thread, which closes its own database connection."""
    try:
        return archive.recording_archive(recording_id=recording_id)
    finally:
        connection.close()


class Command(BaseCommand):
    help = (
        "Copy the media of recordings made since a date from Twilio to the archive bucket of "
        "their account's archive policy (verified; deleted at Twilio when the policy says so)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", required=True, help="YYYY-MM-DD (UTC)")
        parser.add_argument(
            "--dry-run", action="store_true", help="list what would be copied; change nothing"
        )
        parser.add_argument(
            "--workers", type=int, default=4, help="recordings copied at once (default 4)"
        )
        parser.add_argument(
            "--no-reconcile",
            action="store_true",
            help="do not first pull recordings the portal does not know yet from Twilio",
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(
        self,
        *args,
        since: str,
        dry_run: bool,
        workers: int,
        no_reconcile: bool,
        no_progress: bool,
        **options,
    ) -> None:
        start = since_date(since)
        if not 1 <= workers <= 32:
            raise CommandError("--workers must be between 1 and 32")
        if not dry_run and not no_reconcile:
            # Recordings made before the portal existed are known only to Twilio.
            try:
                found = reconcile.recordings_reconcile(since=start)
            except twilio_api.TwilioError as exc:
                raise CommandError(f"could not list recordings at Twilio: {exc}") from None
            self.stderr.write(f"reconciled: seen {found.seen}, synced {found.synced}")
        candidates = archive_candidates(since=start)
        if dry_run:
            self._dry_run(candidates)
            return
        ids = list(candidates.values_list("pk", flat=True))
        copied = skipped = failed = size = deleted = 0
        errors: list[str] = []
        with (
            tqdm(
                total=len(ids),
                desc="archive",
                unit="rec",
                disable=no_progress,
                file=self.stderr._out,
            ) as bar,
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="archive") as pool,
        ):
            futures = {pool.submit(_archive_one, pk): pk for pk in ids}
            for future in as_completed(futures):
                try:
                    outcome = future.result()
                except Exception as exc:  # one bad recording must not stop the sweep
                    outcome = archive.ArchiveOutcome(
                        archive.ArchiveCode.FAILED, f"{type(exc).__name__}: {exc}"
                    )
                deleted += outcome.deleted_at_twilio
                if outcome.code == archive.ArchiveCode.COPIED:
                    copied += 1
                    size += outcome.bytes_copied
                elif outcome.code in (archive.ArchiveCode.RETRY, archive.ArchiveCode.FAILED):
                    failed += 1
                    errors.append(f"recording id {futures[future]}: {outcome.detail}")
                else:
                    skipped += 1
                bar.update(1)
        self.stdout.write(
            f"copied {copied}, skipped {skipped}, failed {failed}, bytes {size}, "
            f"deleted at Twilio {deleted}"
        )
        for error in errors[:20]:
            self.stderr.write(f"  {error}")
        if failed:
            raise CommandError(f"{failed} recordings were not archived (run again to retry)")

    def _dry_run(self, candidates: Iterable[Recording]) -> None:
        would = skipped = 0
        for recording in candidates:
            policy = archive.archive_policy_for(account_sid=recording.account_sid)
            ready = recording.status == RecordingStatus.COMPLETED
            if policy is None or not policy.enabled or not ready:
                skipped += 1
                continue
            if recording.archived_at is not None:
                if not policy.delete_at_twilio_after_archive:
                    skipped += 1
                    continue
                self.stdout.write(f"{recording.sid}: delete at Twilio (already archived)")
            else:
                key = archive.archive_key(recording=recording, prefix=policy.key_prefix)
                self.stdout.write(f"{recording.sid} -> {key}")
            would += 1
        self.stdout.write(f"dry run: would archive {would}, skip {skipped}; nothing changed")
