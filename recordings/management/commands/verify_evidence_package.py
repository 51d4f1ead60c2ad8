"""``verify_evidence_package FILE --public-key PEM``: check an evidence package offline
(``recordings.lifecycle.evidence_verify``; no database is read). Outside the portal the same
check runs as ``python -m recordings.lifecycle.evidence_verify FILE --public-key PEM``.
Exit 0 printing what was checked; exit 1 naming every file at fault."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from recordings.lifecycle import evidence_verify


class Command(BaseCommand):
    """Verify an evidence package with the audit public key alone."""

    help = "Verify an evidence package offline (signature, every file's SHA-256, seals, proofs)."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("package", help="the package's ZIP file")
        parser.add_argument("--public-key", required=True, help="PEM file of the audit key(s)")

    def handle(self, *args: Any, **options: Any) -> None:
        code = evidence_verify.main([options["package"], "--public-key", options["public_key"]])
        if code:
            raise CommandError("evidence package NOT intact (see above)", returncode=code)
