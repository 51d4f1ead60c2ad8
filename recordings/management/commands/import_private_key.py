"""``import_private_key --public-key-sid CR… FILE``: store an existing RSA private key (PEM,
PKCS#1 or PKCS#8, unencrypted) sealed at rest, under the SID Twilio gave its public key."""

from __future__ import annotations

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from recordings.custody import keys

MAX_PEM_BYTES = 64 * 1024  # a 16384-bit PEM key is about 12 KiB


class Command(BaseCommand):
    help = (
        "Import an RSA private key (PEM, PKCS#1 or PKCS#8, unencrypted, at least 2048 bits) for "
        "the public key Twilio knows as CR…; it is stored sealed and never shown again. "
        "FILE '-' reads standard input."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="PEM file with the private key, or - for stdin")
        parser.add_argument(
            "--public-key-sid", required=True, help="the CR… SID of the public key at Twilio"
        )
        parser.add_argument("--friendly-name", default="", help="a label shown in the admin")

    def handle(self, *args, file: str, public_key_sid: str, friendly_name: str, **options) -> None:
        pem = self._read(file)
        try:
            key = keys.private_key_import(
                pem=pem, public_key_sid=public_key_sid, friendly_name=friendly_name
            )
        except keys.KeyCustodyError as exc:
            raise CommandError(f"not imported: {exc}") from None
        self.stdout.write(
            f"imported {key.key_size}-bit key for {key.public_key_sid} "
            f"(fingerprint {key.fingerprint}), sealed under master key {key.master_key_id}"
        )

    def _read(self, file: str) -> bytes:
        try:
            if file == "-":
                data = sys.stdin.buffer.read(MAX_PEM_BYTES + 1)
            else:
                with Path(file).open("rb") as handle:
                    data = handle.read(MAX_PEM_BYTES + 1)
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror or exc}") from None
        if len(data) > MAX_PEM_BYTES:
            raise CommandError(f"{file} is larger than a PEM private key can be")
        return data
