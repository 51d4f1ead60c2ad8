"""``generate_keypair [--bits N] [--register] [--friendly-name X]``: make an RSA key pair for
Twilio's recording encryption; the private key is stored sealed and never printed."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from recordings.custody import keys
from recordings.integrations import twilio_api


class Command(BaseCommand):
    help = (
        "Generate an RSA key pair whose public key Twilio encrypts recordings for. The private "
        "key is stored sealed under PORTAL_MASTER_KEY and never shown; the public key is printed "
        "(and, with --register, uploaded to Twilio's Credentials API)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--bits",
            type=int,
            default=keys.DEFAULT_KEY_BITS,
            help=f"key size (default {keys.DEFAULT_KEY_BITS}, at least {keys.MIN_KEY_BITS})",
        )
        parser.add_argument(
            "--register",
            action="store_true",
            help="upload the public key to Twilio and store the CR… SID it answers",
        )
        parser.add_argument(
            "--friendly-name", default="", help="a label, shown in the admin and at Twilio"
        )

    def handle(self, *args, bits: int, register: bool, friendly_name: str, **options) -> None:
        try:
            key = keys.private_key_generate(
                bits=bits, register=register, friendly_name=friendly_name
            )
        except (keys.KeyCustodyError, twilio_api.TwilioError) as exc:
            raise CommandError(str(exc)) from None
        if key.public_key_sid:
            self.stdout.write(f"public key SID: {key.public_key_sid}")
        self.stdout.write(f"fingerprint:    {key.fingerprint}")
        self.stdout.write(f"size:           {key.key_size} bits")
        self.stdout.write(key.public_key_pem.rstrip("\n"))
        if not key.public_key_sid:
            self.stdout.write(
                "Not registered with Twilio. Upload the public key above (Console, or the "
                "Credentials API), then record the CR… SID Twilio gives it with:\n"
                f"  manage.py assign_public_key_sid {key.fingerprint} CR…"
            )
