"""``manage.py audit_public_key``: print the seal-signing public key(s) and fingerprint(s).

Give the PEM to auditors: with it alone they verify an evidence bundle
(``verify_audit_log --bundle DIR --public-key FILE``, or the README's ``openssl`` procedure).
The first key signs new seals; the others (rotation) still verify older ones.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from audit import evidence
from audit.sealer import seal_signing_keys


class Command(BaseCommand):
    """Print the public half of every configured seal key."""

    help = "Print the audit seal-signing public key (PEM) and its SHA-256 fingerprint."

    def handle(self, *args: Any, **options: Any) -> None:
        for index, key in enumerate(seal_signing_keys()):
            public = key.public_key()
            role = "signs new seals" if index == 0 else "verifies older seals"
            self.stdout.write(
                f"# fingerprint {evidence.public_key_fingerprint(public)} ({role})\n"
                + evidence.public_key_pem(public)
            )
