"""``analyse_recordings [--since YYYY-MM-DD] [--retry-failed] [--force]``: compute the waveform
and speech activity of recordings that have none yet (``recordings.analysis``), e.g. those made
before the analysis existed, or whose analysis was interrupted by a storage outage.

Runs in this process, one recording after the other: the analysis is CPU-bound and far faster
than real time, and a worker pool would compete with the Celery workers on the same machine.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q, QuerySet
from tqdm import tqdm

from recordings.analysis import service
from recordings.models import AnalysisState, MediaLocation, Recording, RecordingStatus


def analysis_candidates(
    *, since: date | None, retry_failed: bool, force: bool
) -> QuerySet[Recording]:
    """Completed, undeleted recordings with media and without a current analysis (with
    ``retry_failed`` also those whose analysis failed; with ``force`` all of them)."""
    wanted = Recording.objects.filter(
        status=RecordingStatus.COMPLETED, soft_deleted_at__isnull=True
    ).exclude(media_location=MediaLocation.UNKNOWN)
    if since is not None:
        start = datetime(since.year, since.month, since.day, tzinfo=UTC)
        wanted = wanted.filter(
            Q(start_time__gte=start) | Q(start_time__isnull=True, created_at__gte=start)
        )
    if not force:
        current = Q(analysis__algorithm=service.ALGORITHM, analysis__state=AnalysisState.DONE)
        if not retry_failed:
            current |= Q(
                analysis__algorithm=service.ALGORITHM, analysis__state=AnalysisState.FAILED
            )
        wanted = wanted.exclude(current)
    return wanted.order_by("start_time", "id")


class Command(BaseCommand):
    help = "Compute the waveform and speech activity of recordings that have none yet."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", help="only recordings made since YYYY-MM-DD (UTC)")
        parser.add_argument(
            "--retry-failed", action="store_true", help="also retry analyses that failed"
        )
        parser.add_argument("--force", action="store_true", help="analyse every recording again")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(
        self,
        *args,
        since: str | None,
        retry_failed: bool,
        force: bool,
        no_progress: bool,
        **options,
    ) -> None:
        try:
            start = date.fromisoformat(since) if since else None
        except ValueError:
            raise CommandError(f"--since must be YYYY-MM-DD, not {since!r}") from None
        ids = list(
            analysis_candidates(since=start, retry_failed=retry_failed, force=force).values_list(
                "pk", flat=True
            )
        )
        counts = {"done": 0, "failed": 0, "skipped": 0, "missing": 0, "unavailable": 0}
        errors: list[str] = []
        with tqdm(
            total=len(ids), desc="analyse", unit="rec", disable=no_progress, file=self.stderr._out
        ) as bar:
            for pk in ids:
                try:
                    outcome = service.recording_analyse(recording_id=pk, force=force)
                except service.AnalysisUnavailable as exc:
                    outcome = service.AnalysisOutcome("unavailable", str(exc))
                counts[outcome.code] += 1
                if outcome.code in ("failed", "unavailable"):
                    errors.append(f"recording id {pk}: {outcome.reason}")
                bar.update(1)
        self.stdout.write(", ".join(f"{name} {count}" for name, count in counts.items()))
        for error in errors[:20]:
            self.stderr.write(f"  {error}")
        if counts["unavailable"]:
            raise CommandError(
                f"{counts['unavailable']} recordings could not be read now (run again to retry)"
            )
