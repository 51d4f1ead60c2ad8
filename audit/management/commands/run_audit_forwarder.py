"""``manage.py run_audit_forwarder``: the long-running SIEM forwarder (``audit.forwarder``).

Every ``--interval`` seconds it confirms the batch sent before and sends the rows written since,
as OCSF events in RFC 5424 syslog messages, to ``AUDIT_SYSLOG_HOST``; while there is a backlog
it goes on without waiting. When the collector is down it tries again after 1, 2, 4 … up to 60
seconds, and sends everything it missed once it is back. SIGTERM or SIGINT stops it after the
current round, confirming the last batch when the collector closes the connection cleanly.
``--once`` sends what there is, then stops (cron, tests).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections

from audit.forwarder import (
    AuditForwarder,
    ForwarderUnavailable,
    backoff_delays,
    destination_from_settings,
)


class Command(BaseCommand):
    """Forward the access log to a syslog collector, as OCSF events."""

    help = "Send access-log rows as OCSF events over syslog (RFC 5424, TCP/TLS) to a SIEM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=1.0, help="seconds between rounds")
        parser.add_argument("--once", action="store_true", help="send what there is, then exit")

    def handle(self, *args: Any, interval: float, once: bool, **options: Any) -> None:
        destination = destination_from_settings()
        if destination is None:
            raise CommandError("AUDIT_SYSLOG_HOST is not set: there is nowhere to forward to")
        if interval <= 0:
            raise CommandError("--interval must be above 0")
        stop = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        forwarder = AuditForwarder(destination)
        delays = backoff_delays()
        try:
            while not stop.is_set():
                close_old_connections()
                try:
                    sent = forwarder.forward_round()
                except ForwarderUnavailable as exc:
                    if once:
                        raise CommandError(str(exc)) from exc
                    delay = next(delays)
                    self.stderr.write(f"{exc}; trying again in {delay:.0f} s")
                    stop.wait(delay)
                    continue
                delays = backoff_delays()
                if sent:
                    self.stdout.write(f"{sent} rows sent to {destination.key}")
                elif once:
                    break
                if not sent and stop.wait(interval):
                    break
        finally:
            confirmed = forwarder.close()
            if not confirmed:
                self.stderr.write("the last batch was not confirmed: it is sent again next start")
