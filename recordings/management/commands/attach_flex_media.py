"""``attach_flex_media --since YYYY-MM-DD``: write ``conversations.media`` for recordings made
before the Flex linkage was set up (or whose attachment failed), task by task, now."""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from recordings.flex import attach
from recordings.management.arguments import since_date


class Command(BaseCommand):
    help = (
        "Write the portal's url_provider into the Flex tasks of recordings made since a date "
        "whose links are not attached yet (pending, failed, task gone, off)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", required=True, help="YYYY-MM-DD (UTC)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, since: str, no_progress: bool, **options) -> None:
        start = datetime.combine(since_date(since), datetime.min.time(), tzinfo=UTC)
        if settings.FLEX_MEDIA_LEVEL == "off":
            raise CommandError("FLEX_MEDIA_LEVEL is off: nothing is written into Flex")
        try:
            attach.public_base_url()
        except attach.FlexMediaNotConfigured as exc:
            raise CommandError(str(exc)) from None
        # One task's links go in one call: one read-merge-write per task.
        by_task: dict[int, list[int]] = {}
        for link_id, task_id in attach.links_not_attached(since=start).values_list("pk", "task_id"):
            by_task.setdefault(task_id, []).append(link_id)
        totals = attach.AttachSummary()
        with tqdm(
            total=sum(len(ids) for ids in by_task.values()),
            desc="recordings",
            unit="rec",
            disable=no_progress,
            file=self.stderr._out,
        ) as bar:
            for link_ids in by_task.values():
                attach.flex_media_reset(link_ids=link_ids)
                summary = attach.flex_media_attach(link_ids=link_ids)
                totals.attached += summary.attached
                totals.pending += summary.pending
                totals.task_gone += summary.task_gone
                totals.failed += summary.failed
                bar.update(len(link_ids))
        self.stdout.write(
            f"attached {len(totals.attached)}, task gone {len(totals.task_gone)}, "
            f"to retry {len(totals.pending)}, failed {len(totals.failed)}"
        )
        if totals.failed or totals.pending:
            raise CommandError(
                f"{len(totals.failed) + len(totals.pending)} recordings are not in Flex yet "
                "(see each recording's Flex section in the admin)"
            )
