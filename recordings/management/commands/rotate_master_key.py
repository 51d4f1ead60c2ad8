"""``rotate_master_key``: reseal every secret under the first key listed in
``PORTAL_MASTER_KEY``, so the older ones can then be removed from the list."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from portal.sealing import SealingError, current_master_key_id
from recordings.custody import keys


class Command(BaseCommand):
    help = (
        "Reseal private keys and subaccount tokens under the current master key (the first in "
        "PORTAL_MASTER_KEY). All or nothing: if one secret cannot be opened, nothing changes."
    )

    def handle(self, *args, **options) -> None:
        try:
            current = current_master_key_id()
            count = keys.master_key_rotate()
        except (keys.KeyCustodyError, SealingError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"resealed {count} secrets; everything is now sealed under master key {current}. "
            "Older keys can be removed from PORTAL_MASTER_KEY (keep them while AUDIT_SIGNING_KEY "
            "is unset: they still verify older audit digests)."
        )
