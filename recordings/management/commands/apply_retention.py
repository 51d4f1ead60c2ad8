"""``apply_retention [--dry-run]``: apply the retention policies now
(``recordings.lifecycle.retention``), printing each deletion that is (or, with ``--dry-run``, would
be) made and a summary."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from recordings.lifecycle import retention


class Command(BaseCommand):
    help = (
        "Apply the retention policies: soft-delete recordings past their keep, delete the "
        "media of those past their grace period; recordings under a legal hold are kept."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Show what would be deleted; change nothing."
        )

    def handle(self, *args: object, **options: object) -> None:
        dry_run = bool(options["dry_run"])
        summary = retention.retention_apply(now=timezone.now(), dry_run=dry_run)
        done = set(summary.soft_deleted) | set(summary.hard_deleted)
        for step in summary.planned:
            if dry_run:
                state = "would delete"
            elif step.recording_sid in done:
                state = "deleted"
            else:
                state = f"FAILED ({summary.failed.get(step.recording_sid, 'unknown')})"
            self.stdout.write(f"{step.recording_sid}  {step.kind:<4}  {step.policy}  {state}")
        for sid in summary.held:
            self.stdout.write(f"{sid}  held  (legal hold: not deleted)")
        counts = summary.as_dict()
        prefix = "dry run: " if dry_run else ""
        self.stdout.write(
            f"{prefix}{counts['planned']} due, {counts['soft_deleted']} soft-deleted, "
            f"{counts['hard_deleted']} hard-deleted, {counts['held']} held, "
            f"{counts['failed']} failed"
        )
