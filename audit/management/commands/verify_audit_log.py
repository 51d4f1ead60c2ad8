"""``manage.py verify_audit_log``: recompute the access log's hash chain and check its digests.

Exit 0 printing the number of rows when the chain is intact; exit 1 naming the first bad row.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.chain import chain_verify, timestamp_canonical


class Command(BaseCommand):
    """Verify the access log (see ``audit.chain.chain_verify``)."""

    help = "Verify the access log's hash chain and signed digests."

    def handle(self, *args: Any, **options: Any) -> None:
        result = chain_verify()
        last = (
            f"last digest {timestamp_canonical(result.last_digest_at)}"
            if result.last_digest_at
            else "no digests"
        )
        if result.ok:
            self.stdout.write(
                f"OK: {result.count} rows intact, "
                f"{result.digests_checked} digests verified ({last})"
            )
            return
        raise CommandError(
            f"audit log NOT intact: {result.problem} at sequence {result.first_bad_sequence}: "
            f"{result.message} ({result.count} rows verified before it, {last})",
            returncode=1,
        )
