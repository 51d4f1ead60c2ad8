"""``manage.py enroll_totp USERNAME``: give a staff member a TOTP device for the admin's second
factor, and print what their authenticator app needs.

In production the admin asks every staff member for a TOTP code, so the first one (and anyone
whose phone was lost) is enrolled from the command line. The secret is printed once, here, and
never shown again (``OTP_ADMIN_HIDE_SENSITIVE_DATA``).
"""

from __future__ import annotations

from base64 import b32encode
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice


class Command(BaseCommand):
    """Create (or, with ``--replace``, renew) a confirmed TOTP device for a user."""

    help = "Enroll a staff member for the admin's TOTP second factor; prints the otpauth URI."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--name", default="authenticator", help="device name (default: %(default)s)"
        )
        parser.add_argument(
            "--replace",
            action="store_true",
            help="delete the user's existing TOTP devices first (a lost phone)",
        )

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"no user named {options['username']!r}")
        if not user.is_staff:
            raise CommandError(f"{user.get_username()} is not staff: the admin would refuse them")
        devices = TOTPDevice.objects.devices_for_user(user, confirmed=None)
        if devices.exists() and not options["replace"]:
            raise CommandError(
                f"{user.get_username()} already has a TOTP device; use --replace to renew it"
            )
        devices.delete()
        device = TOTPDevice.objects.create(user=user, name=options["name"], confirmed=True)
        self.stdout.write(f"TOTP device created for {user.get_username()}.")
        self.stdout.write("Add it to an authenticator app with this URI (or scan it as a QR code):")
        self.stdout.write(device.config_url)
        self.stdout.write(f"or type the secret by hand: {b32encode(device.bin_key).decode()}")
