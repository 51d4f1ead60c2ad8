"""Subaccounts: the list of the configured account's subaccounts, whose callbacks the portal
accepts, with their auth tokens sealed at rest (the token signs their webhooks).
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from portal.logging import register_secret
from portal.sealing import seal
from recordings.integrations import twilio_api
from recordings.models import TwilioSubaccount


@transaction.atomic
def subaccounts_refresh() -> int:
    """Replace the stored list of subaccounts with Twilio's; returns how many there are."""
    listed = twilio_api.subaccounts_list()
    keep: list[str] = []
    for info in listed:
        keep.append(info.sid)
        register_secret(info.auth_token)
        TwilioSubaccount.objects.update_or_create(
            sid=info.sid,
            defaults={
                "friendly_name": info.friendly_name[:128],
                "status": info.status[:16],
                "sealed_auth_token": (
                    seal(info.auth_token.encode(), purpose=f"subaccount-token:{info.sid}")
                    if info.auth_token
                    else ""
                ),
                "refreshed_at": timezone.now(),
            },
        )
    TwilioSubaccount.objects.exclude(sid__in=keep).delete()
    return len(keep)
