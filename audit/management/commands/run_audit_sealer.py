"""``manage.py run_audit_sealer``: the long-running sealer of the access log (production).

Every ``--interval`` seconds it seals the committed rows after the last seal and anchors every
seal not yet anchored (``audit.sealer.seal_and_anchor``). Running two at once is safe: a seal's
number and rows are unique, so the slower one writes nothing. ``--once`` does one round (cron,
tests). The interval must stay well under ``AUDIT_SEAL_MAX_DELAY_SECONDS``.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections

from audit.sealer import seal_and_anchor


class Command(BaseCommand):
    """Seal and anchor the access log, now and then every few seconds."""

    help = "Seal committed access-log rows and anchor the seals, every --interval seconds."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=5.0, help="seconds between rounds")
        parser.add_argument("--once", action="store_true", help="one round, then exit")

    def handle(self, *args: Any, interval: float, once: bool, **options: Any) -> None:
        if interval <= 0 or interval >= settings.AUDIT_SEAL_MAX_DELAY_SECONDS:
            raise CommandError("--interval must be above 0 and below AUDIT_SEAL_MAX_DELAY_SECONDS")
        stop = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        while True:
            close_old_connections()
            seals, anchors = seal_and_anchor()
            if seals or anchors or once:
                self.stdout.write(f"{seals} seals written, {anchors} anchored")
            if once or stop.wait(interval):
                return
