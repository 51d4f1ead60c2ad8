"""``seed_demo``: demo data for embedded mode, so a newcomer sees a working portal at once."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from audit.rules_file import rules_load
from faketwilio.recording_formats import make_wav
from recordings.integrations import storage
from recordings.models import MediaLocation, Recording, RecordingStatus, SyncState

DEMO_ACCOUNT_SID = "AC" + "d" * 32
DEMO_USERNAME = "demo"


def demo_sid(prefix: str, n: int) -> str:
    """A stable SID for demo object ``n``, so seeding twice updates rather than duplicates."""
    return prefix + hashlib.sha256(f"portal-demo-{prefix}-{n}".encode()).hexdigest()[:32]


class Command(BaseCommand):
    help = "Create the demo login and a few demo recordings stored in the local media folder."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force", action="store_true", help="seed even in production mode (DJANGO_DEBUG=0)"
        )

    @transaction.atomic
    def handle(self, *args, force: bool, **options) -> None:
        if not settings.DEBUG and not force:
            raise CommandError("seed_demo is for embedded mode; refusing with DJANGO_DEBUG=0")
        password = secrets.token_urlsafe(12)
        user, _ = get_user_model().objects.get_or_create(
            username=DEMO_USERNAME, defaults={"email": "demo@example.com"}
        )
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()

        now = timezone.now()
        for n, (seconds, channels) in enumerate([(6, 1), (9, 2), (4, 1)], start=1):
            sid = demo_sid("RE", n)
            start = now - timedelta(days=n, hours=n)
            key = f"{DEMO_ACCOUNT_SID}/{start:%Y}/{start:%m}/{sid}.wav"
            path = storage.local_root() / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(make_wav(seconds, channels=channels))
            Recording.objects.update_or_create(
                sid=sid,
                defaults={
                    "account_sid": DEMO_ACCOUNT_SID,
                    "call_sid": demo_sid("CA", n),
                    "status": RecordingStatus.COMPLETED,
                    "source": "DialVerb",
                    "channels": channels,
                    "track": "both",
                    "duration_seconds": seconds,
                    "start_time": start,
                    "date_created": start,
                    "date_updated": start + timedelta(seconds=seconds),
                    "media_location": MediaLocation.LOCAL,
                    "media_key": key,
                    "sync_state": SyncState.SYNCED,
                    "synced_at": now,
                },
            )
        rules_load(
            {
                "rules": [
                    {
                        "name": "demo-supervisors",
                        "effect": "allow",
                        "identities": [],
                        "worker_sids": [],
                        "roles": ["supervisor", "wfo.full_access", "wfo.quality_manager"],
                        "recordings": {
                            "account_sids": [],
                            "sources": [],
                            "call_sids": [],
                            "max_age_days": 365,
                        },
                        "valid_from": None,
                        "valid_until": None,
                        "reason": "Demo: supervisors and quality managers may listen.",
                    }
                ]
            },
            replace=False,
            actor="seed_demo",
        )
        self.stdout.write(self.style.SUCCESS("Demo data ready."))
        self.stdout.write(
            f"  Admin:     http://127.0.0.1:8000/admin/  user {DEMO_USERNAME!r}  "
            f"password {password!r}"
        )
        self.stdout.write(f"  Recordings: {', '.join(demo_sid('RE', n) for n in (1, 2, 3))}")
        self.stdout.write(
            "  Player:    http://127.0.0.1:8000/demo/player?token=demo-supervisor-token"
            f"&recording_sid={demo_sid('RE', 1)}  (demo-agent-token is denied)"
        )
