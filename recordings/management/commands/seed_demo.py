"""``seed_demo``: demo data for embedded mode, so a newcomer sees a working portal at once."""

from __future__ import annotations

import copy
import hashlib
import secrets
import socket
import time
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from audit.rules_file import rules_load
from faketwilio import FakeTwilio
from faketwilio.demo import DEMO_WORKSPACE_SID, seed_demo_flex
from faketwilio.recording_formats import make_wav
from recordings.flex import directory
from recordings.flex import events as flex_events
from recordings.integrations import storage, twilio_api
from recordings.models import MediaLocation, Recording, RecordingStatus, SyncState

DEMO_ACCOUNT_SID = "AC" + "d" * 32
DEMO_USERNAME = "demo"
# The demo's access rules; seed_demo prints each one's name and reason.
DEMO_RULES: list[dict[str, Any]] = [
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
    },
    {
        "name": "demo-own-team",
        "effect": "allow",
        "roles": ["agent"],
        "recordings": {"handled_by": "caller_team"},
        "reason": "Demo: agents may play the calls their own team handled.",
    },
]


def demo_sid(prefix: str, n: int) -> str:
    """A stable SID for demo object ``n``, so seeding twice updates rather than duplicates."""
    return prefix + hashlib.sha256(f"portal-demo-{prefix}-{n}".encode()).hexdigest()[:32]


class Command(BaseCommand):
    help = "Create the demo login and a few demo recordings stored in the local media folder."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force", action="store_true", help="seed even in production mode (DJANGO_DEBUG=0)"
        )
        parser.add_argument(
            "--wait-for-twilio",
            type=float,
            default=0,
            metavar="SECONDS",
            help="wait this long for the fake Twilio (TWILIO_API_OVERRIDE) to listen first",
        )

    def handle(self, *args, force: bool, wait_for_twilio: float, **options) -> None:
        if not settings.DEBUG and not force:
            raise CommandError("seed_demo is for embedded mode; refusing with DJANGO_DEBUG=0")
        if wait_for_twilio > 0 and not _fake_twilio_listening(wait_for_twilio):
            self.stderr.write(
                f"the fake Twilio at {settings.TWILIO_API_OVERRIDE or '(unset)'} is not "
                "listening: the demo's Flex directory and attachment are left for later"
            )
        self._seed()

    @transaction.atomic
    def _seed(self) -> None:
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
        rules_load({"rules": copy.deepcopy(DEMO_RULES)}, replace=False, actor="seed_demo")
        flex = self._seed_flex(start_of_first=now - timedelta(days=1, hours=1))
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
        for n, rule in enumerate(DEMO_RULES):
            label = "  Rules:" if n == 0 else ""
            self.stdout.write(f"{label:<13}{rule['name']} ({rule['effect']}): {rule['reason']}")
        if flex:
            self.stdout.write(
                f"  Flex:      recording {demo_sid('RE', 1)} was handled by Sam Taylor "
                f"(Team Blue) in task {flex['task_sid']} of workspace {flex['workspace_sid']}"
            )

    def _seed_flex(self, *, start_of_first: datetime) -> dict[str, Any] | None:
        """The demo's Flex conversation, as a portal pointed at the demo workspace learns it:
        the directory read from the fake Twilio (when it listens), and the events of the task
        that handled demo recording 1's call processed like TaskRouter's callbacks. Linking
        the recording hands it to the media attachment, which writes it into the task at the
        fake once this transaction commits."""
        if settings.TWILIO_WORKSPACE_SID != DEMO_WORKSPACE_SID:
            return None
        # A twin of the running fake's demo workspace, never started: it only builds the
        # event callbacks the demo task would have sent, with the same SIDs and attributes.
        twin = FakeTwilio(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN)
        sids = seed_demo_flex(twin)
        workspace, task = sids["workspace_sid"], sids["task_sid"]
        t0 = int(start_of_first.timestamp() * 1000) - 5000
        created = {"TaskDateCreated": str(t0 // 1000)}
        steps: list[tuple[str, dict[str, Any]]] = [
            *[("worker.created", {"worker_sid": sid}) for sid in sids["workers"].values()],
            ("task.created", {"task_sid": task, **created}),
            ("reservation.created", {"reservation_sid": sids["reservation_sid"], **created}),
            ("reservation.accepted", {"reservation_sid": sids["reservation_sid"], **created}),
        ]
        for n, (event_type, named) in enumerate(steps):
            params = twin.taskrouter_event(
                event_type, workspace_sid=workspace, timestamp_ms=t0 + 1000 * n, **named
            )
            # A stable Sid, so seeding again lands on the same events.
            params["Sid"] = demo_sid("EV", n)
            fields = flex_events.taskrouter_event_validate(params)
            event_id, _ = flex_events.taskrouter_event_record(fields=fields, params=params)
            flex_events.taskrouter_events_process(event_ids=[event_id])
        try:
            directory.flex_directory_sync(actor="seed_demo")
        except twilio_api.TwilioError as exc:
            self.stderr.write(f"demo Flex directory not read from the fake Twilio: {exc}")
        return sids


def _fake_twilio_listening(seconds: float) -> bool:
    """Wait up to ``seconds`` for ``TWILIO_API_OVERRIDE`` (the demo's fake Twilio) to accept
    connections; True once it does."""
    target = urlsplit(settings.TWILIO_API_OVERRIDE or "")
    if not target.hostname:
        return False
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection((target.hostname, target.port or 80), timeout=0.5):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
