"""``manage.py verify_audit_log``: check that the access log is complete and unaltered.

In the database: every row's hash, link and MAC and the older signed digests
(``audit.chain.chain_verify``), then every seal's signature, Merkle root and link, rows left
unsealed past the delay, and the seals against their anchors outside the database
(``audit.sealer.seals_verify``). With ``--bundle DIR --public-key FILE``: an exported evidence
bundle, offline, with nothing but the public key (``audit.evidence.bundle_verify``).

With ``--progress`` the same checks run as the resumable full verification the admin and the
weekly task start (``audit.verification``: in batches of seals, each committed), in this
process, printing each batch; an interrupted command run again goes on where it stopped, and
its verdict is kept and shown on the admin's verification page.

Exit 0 printing what was checked; exit 1 naming every problem found.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.chain import chain_verify, timestamp_canonical
from audit.evidence import bundle_verify, public_keys_from_pem
from audit.models import ChainVerificationRun
from audit.sealer import seals_verify
from audit.verification import BATCH_ROWS, full_verification_continue, full_verification_start


class Command(BaseCommand):
    """Verify the access log, its seals and anchors, or an evidence bundle."""

    help = "Verify the access log (rows, seals, anchors), or an evidence bundle offline."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bundle", help="an evidence bundle folder (offline check)")
        parser.add_argument("--public-key", help="PEM file of the seal public key(s)")
        parser.add_argument(
            "--progress",
            action="store_true",
            help="verify as a resumable run in batches, printing each one",
        )
        parser.add_argument(
            "--batch-rows",
            type=int,
            default=BATCH_ROWS,
            help=f"rows per batch with --progress (whole seals; default {BATCH_ROWS})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["bundle"] or options["public_key"]:
            self._bundle(options["bundle"], options["public_key"])
            return
        if options["progress"]:
            self._resumable(max(1, options["batch_rows"]))
            return
        chain = chain_verify()
        seals = seals_verify()
        sealed = (
            f"sealed from {timestamp_canonical(seals.first_sealed_at)} to "
            f"{timestamp_canonical(seals.last_sealed_at)}"
            if seals.first_sealed_at and seals.last_sealed_at
            else "nothing sealed yet"
        )
        waiting = (
            f"; not yet anchored: seals {', '.join(map(str, seals.not_yet_anchored))}"
            if seals.not_yet_anchored
            else ""
        )
        summary = (
            f"{chain.count} rows, {chain.digests_checked} digests, {seals.seals} seals over "
            f"{seals.sealed_rows} rows ({seals.unsealed_rows} not sealed yet), "
            f"{seals.anchors} anchors in {seals.anchor_store}; {sealed}{waiting}"
        )
        problems = list(seals.problems)
        if not chain.ok:
            problems.insert(
                0, f"{chain.problem} at sequence {chain.first_bad_sequence}: {chain.message}"
            )
        if not problems:
            self.stdout.write(f"OK: {summary}")
            return
        raise CommandError(
            "audit log NOT intact:\n  - " + "\n  - ".join(problems) + f"\nChecked: {summary}",
            returncode=1,
        )

    def _resumable(self, batch_rows: int) -> None:
        run, created = full_verification_start(trigger="command", actor="command", queue=False)
        if not created:
            self.stderr.write(
                f"going on with full verification {run.pk} after seal {run.through_seal}"
            )

        def report(step: ChainVerificationRun) -> None:
            self.stderr.write(
                f"{step.percent:3d} %  seal {step.through_seal} of {step.target_seal}, "
                f"row {step.through_sequence} of {step.target_sequence}: "
                f"{step.rows_checked} rows, {step.seals_checked} seals checked"
            )

        done = full_verification_continue(run_id=run.pk, batch_rows=batch_rows, progress=report)
        if done is None or done.verdict is None:
            raise CommandError(
                f"full verification {run.pk} is being worked on by another process", returncode=2
            )
        if done.verdict.ok:
            self.stdout.write(f"OK: {done.verdict.message}")
            return
        raise CommandError(f"audit log NOT intact: {done.verdict.message}", returncode=1)

    def _bundle(self, bundle: str | None, public_key: str | None) -> None:
        if not bundle or not public_key:
            raise CommandError("--bundle and --public-key go together", returncode=2)
        try:
            keys = public_keys_from_pem(Path(public_key).read_text())
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read the public key: {exc}", returncode=1) from exc
        report = bundle_verify(Path(bundle), keys)
        if report.ok:
            self.stdout.write(f"OK: bundle of {report.rows} rows and {report.seals} seals verified")
            return
        raise CommandError(
            "bundle NOT verified:\n  - " + "\n  - ".join(report.problems), returncode=1
        )
