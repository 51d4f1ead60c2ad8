"""``assign_public_key_sid FINGERPRINT CR…``: record the SID Twilio gave a public key that was
uploaded by hand (a key made with ``generate_keypair`` without ``--register``)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from recordings.custody import keys


class Command(BaseCommand):
    help = (
        "Record the CR… SID of a key pair generated without --register, once its public key "
        "was uploaded to Twilio by hand. A key that already has a SID keeps it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "fingerprint", help="the key's fingerprint, as generate_keypair printed"
        )
        parser.add_argument("public_key_sid", help="the CR… SID Twilio shows for the public key")

    def handle(self, *args, fingerprint: str, public_key_sid: str, **options) -> None:
        try:
            key = keys.private_key_assign_sid(
                fingerprint=fingerprint, public_key_sid=public_key_sid
            )
        except keys.KeyCustodyError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"key {key.fingerprint} is now {key.public_key_sid}")
