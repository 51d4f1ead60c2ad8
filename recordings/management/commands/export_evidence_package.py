"""``export_evidence_package --recordings RE… [--case ID] --reason TEXT --output FILE
[--decrypted]``: write an evidence package (``recordings.lifecycle.evidence_package``) to a
file, here and now, and record the export in the access log. ``--case`` names a legal hold:
alone, it packages everything the hold covers; with ``--recordings``, those recordings, with
the case named in the manifest. Verify the file with ``verify_evidence_package``."""

from __future__ import annotations

import getpass
import os
import tempfile
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from recordings.lifecycle import evidence_package
from recordings.lifecycle.retention import recordings_on_hold
from recordings.models import LegalHold, Recording


class Command(BaseCommand):
    """Write an evidence package of recordings, or of a legal hold's case, to a file."""

    help = "Write a signed evidence package (media, manifest, access-log rows and seals)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--recordings", nargs="+", default=[], help="recording SIDs (RE…)")
        parser.add_argument("--case", type=int, help="a legal hold's id: the case to package")
        parser.add_argument("--reason", required=True, help="why the package is made")
        parser.add_argument("--output", required=True, help="the ZIP file to write (new)")
        parser.add_argument(
            "--decrypted", action="store_true", help="also include the decrypted audio"
        )
        parser.add_argument(
            "--exporter",
            default="",
            help="who exports, for the manifest and the log (default: this machine's user)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        output = Path(options["output"])
        if output.exists():
            raise CommandError(f"{output} exists; name a new file")
        case = None
        if options["case"] is not None:
            case = LegalHold.objects.filter(pk=options["case"]).first()
            if case is None:
                raise CommandError(f"no legal hold {options['case']}")
        sids: list[str] = list(dict.fromkeys(options["recordings"]))
        if not sids and case is not None:
            covered = recordings_on_hold(Recording.objects.all(), held=True, holds=[case])
            sids = list(covered.order_by("start_time", "pk").values_list("sid", flat=True))
        by_sid = {r.sid: r for r in Recording.objects.filter(sid__in=sids)}
        unknown = [sid for sid in sids if sid not in by_sid]
        if unknown:
            raise CommandError(f"no such recording: {', '.join(unknown)}")
        if len(sids) > evidence_package.MAX_RECORDINGS:
            raise CommandError(
                f"{len(sids)} recordings: at most {evidence_package.MAX_RECORDINGS} per package"
            )
        recordings = [by_sid[sid] for sid in sids]
        exporter = f"command:{options['exporter'] or getpass.getuser()}"
        # Written beside the target and renamed at the end: a failed run leaves no file that
        # looks like a package.
        handle, partial = tempfile.mkstemp(dir=output.parent or Path.cwd(), suffix=".partial")
        try:
            with os.fdopen(handle, "w+b") as spool:
                summary = evidence_package.evidence_package_write(
                    recordings=recordings,
                    reason=options["reason"],
                    exporter=exporter,
                    include_decrypted=options["decrypted"],
                    output=spool,
                    case=case,
                )
            os.replace(partial, output)
        except evidence_package.PackageError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
        evidence_package.evidence_package_record(
            summary=summary,
            recordings=recordings,
            reason=options["reason"].strip(),
            exporter=exporter,
            include_decrypted=options["decrypted"],
            case=case,
        )
        self.stdout.write(
            f"{output}: {summary.recordings} recordings, {summary.files} files, "
            f"{summary.rows} access-log rows in {summary.seals} seals"
            + (
                f" ({summary.unsealed_rows_left_out} rows not sealed yet left out)"
                if summary.unsealed_rows_left_out
                else ""
            )
            + f", {summary.size} bytes, SHA-256 {summary.sha256}"
        )
        for note in summary.notes:
            self.stdout.write(f"note: {note}")
