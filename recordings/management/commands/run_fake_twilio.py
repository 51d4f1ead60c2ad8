"""``run_fake_twilio``: run the fake Twilio (``faketwilio``) in the foreground for the demo.

The same as ``python -m faketwilio``, with the account SID, auth token and API key taken from
the portal's settings, so a demo portal and its fake agree on the credentials without retyping.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from faketwilio.server import FakeTwilio, serve_forever


class Command(BaseCommand):
    """Serve a fake Twilio REST API on loopback until Ctrl-C (demo and local benchmarks)."""

    help = "Run the fake Twilio HTTP server (set TWILIO_API_OVERRIDE to the URL it prints)."

    def add_arguments(self, parser) -> None:
        """Where to listen, which account to impersonate, and whether to seed demo data."""
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
        parser.add_argument("--port", type=int, default=8799, help="port (0: any free port)")
        parser.add_argument(
            "--account-sid",
            default=settings.TWILIO_ACCOUNT_SID,
            help="main account SID (default: settings.TWILIO_ACCOUNT_SID)",
        )
        parser.add_argument(
            "--auth-token",
            default=settings.TWILIO_AUTH_TOKEN,
            help="main account auth token (default: settings.TWILIO_AUTH_TOKEN)",
        )
        parser.add_argument(
            "--api-key-sid",
            default=settings.TWILIO_API_KEY_SID,
            help="an API key of the main account the fake accepts too "
            "(default: settings.TWILIO_API_KEY_SID)",
        )
        parser.add_argument(
            "--api-key-secret",
            default=settings.TWILIO_API_KEY_SECRET,
            help="its secret (default: settings.TWILIO_API_KEY_SECRET)",
        )
        parser.add_argument(
            "--demo", action="store_true", help="seed demo recordings and Flex tokens"
        )
        parser.add_argument("--verbose", action="store_true", help="log every request")

    def handle(self, *args, **options) -> None:
        """Start the fake and block until interrupted."""
        try:
            fake = FakeTwilio(
                account_sid=options["account_sid"],
                auth_token=options["auth_token"],
                host=options["host"],
                port=options["port"],
                verbose=options["verbose"],
            )
        except ValueError as exc:
            raise CommandError(f"{exc} (set TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN)") from None
        key_sid, key_secret = options["api_key_sid"], options["api_key_secret"]
        if key_sid or key_secret:
            if not (key_sid and key_secret):
                raise CommandError("--api-key-sid and --api-key-secret go together")
            try:
                fake.add_api_key(key_sid, key_secret, main=True)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
        try:
            serve_forever(fake, demo=options["demo"], out=self.stdout)
        except OSError as exc:
            raise CommandError(
                f"cannot listen on {options['host']}:{options['port']}: {exc}"
            ) from None
