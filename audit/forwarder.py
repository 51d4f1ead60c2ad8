"""The live SIEM forwarder: every access-log row, as an OCSF event (``audit.ocsf``), in an RFC 5424
syslog message over TCP, TLS by default (RFC 5425), to the collector ``AUDIT_SYSLOG_HOST``
names; ``manage.py run_audit_forwarder`` runs it.

Framing is octet counting (RFC 6587 section 3.4.1, the only framing RFC 5425 allows):
``MSG-LEN SP SYSLOG-MSG``, so a message may hold any byte. Each message names its row twice
for deduplication: MSGID is the row's sequence, and the structured data element
``[audit@32473 sequence="…" rowHash="…"]`` carries it with the row's hash (32473 is the private
enterprise number RFC 5612 reserves for documentation: the portal has no number of its own).

Delivery is at least once, never less. Rows go in sequence order, after the last sequence the
destination is known to hold (``ForwarderPosition``, one per ``host:port``). Syslog over TCP has
no acknowledgement, and a write that returned only means the bytes reached this machine's
kernel, so a sent batch is recorded as delivered only later: when the next round finds the
connection still open (a collector that went away with unread bytes resets it, and the batch is
sent again), or, when the forwarder stops, after it closed its side and the collector read
everything and closed too. A forwarder killed in between sends the last batch again when it
starts: the SIEM sees those sequences twice, never a gap. A collector that accepted the bytes
and then lost them itself cannot be detected by any syslog transport.

Appends take sequence numbers without a lock (``audit.services``), so a lower number can
commit after a higher one is visible. Like the sealer, a round stops before a gap whose next
row is younger than ``audit.sealer.GAP_GRACE``; an older gap is a number whose append rolled
back, and is passed.

Standard-library ``socket`` and ``ssl`` rather than ``logging.handlers.SysLogHandler`` (which
frames TCP by a trailing newline or NUL, has no TLS, and swallows errors) or a syslog package:
the forwarder must know whether each write failed, and nothing else here needs a dependency.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.export import COLUMNS, rows_with_people
from audit.models import AccessLog, ForwarderPosition
from audit.ocsf import ocsf_event
from audit.sealer import GAP_GRACE

logger = logging.getLogger(__name__)

APP_NAME = "recordings-portal"
SD_ID = "audit@32473"
FACILITY_LOG_AUDIT = 13
# OCSF severity_id -> syslog severity (RFC 5424 section 6.2.1).
SYSLOG_SEVERITY = {0: 5, 1: 6, 2: 5, 3: 4, 4: 3, 5: 2, 6: 1}
BATCH_ROWS = 500
CLOSE_WAIT_SECONDS = 5.0


class ForwarderUnavailable(Exception):
    """The collector cannot be reached, refused the connection or dropped it."""


@dataclass(frozen=True)
class SyslogDestination:
    """Where the forwarder sends: a collector's host and port, over TLS or plain TCP."""

    host: str
    port: int
    tls: bool = True
    ca_file: str = ""

    @property
    def key(self) -> str:
        """The destination's name in ``ForwarderPosition``."""
        return f"{self.host}:{self.port}"


def destination_from_settings() -> SyslogDestination | None:
    """The destination the ``AUDIT_SYSLOG_*`` settings name; None without a host."""
    if not settings.AUDIT_SYSLOG_HOST:
        return None
    return SyslogDestination(
        host=settings.AUDIT_SYSLOG_HOST,
        port=settings.AUDIT_SYSLOG_PORT,
        tls=settings.AUDIT_SYSLOG_TLS,
        ca_file=settings.AUDIT_SYSLOG_CA_FILE,
    )


def _sd_value(value: str) -> str:
    """An SD-PARAM value with ``"``, ``\\`` and ``]`` escaped (RFC 5424 section 6.3.3)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _header_field(value: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, at most ``limit`` characters, or
    the NILVALUE ``-``."""
    kept = "".join(char for char in value if 33 <= ord(char) <= 126)[:limit]
    return kept or "-"


def syslog_frame(
    *, event: dict[str, Any], sequence: int, row_hash: str, occurred_at: datetime, hostname: str
) -> bytes:
    """One octet-counted RFC 5424 message for an OCSF ``event``: facility log audit, the
    severity the event's ``severity_id`` maps to, the row's time, MSGID = ``sequence``, the
    row's sequence and hash as structured data, and the event as JSON (ASCII) for MSG."""
    priority = FACILITY_LOG_AUDIT * 8 + SYSLOG_SEVERITY.get(int(event.get("severity_id", 0)), 5)
    stamp = occurred_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    structured = f'[{SD_ID} sequence="{sequence}" rowHash="{_sd_value(row_hash)}"]'
    message = (
        f"<{priority}>1 {stamp} {_header_field(hostname, 255)} {APP_NAME} - {sequence} "
        f"{structured} {json.dumps(event, separators=(',', ':'))}"
    ).encode("ascii")
    return str(len(message)).encode("ascii") + b" " + message


def syslog_connect(destination: SyslogDestination, *, timeout: float = 10.0) -> socket.socket:
    """A connection to the collector; over TLS (1.2 or later) the collector's certificate must
    chain to ``ca_file`` (or the system's CAs) and name the host. Raises
    ``ForwarderUnavailable``."""
    try:
        raw = socket.create_connection((destination.host, destination.port), timeout=timeout)
    except OSError as exc:
        raise ForwarderUnavailable(f"cannot connect to {destination.key}: {exc}") from exc
    if not destination.tls:
        return raw
    context = ssl.create_default_context(cafile=destination.ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        return context.wrap_socket(raw, server_hostname=destination.host)
    except (ssl.SSLError, OSError) as exc:
        raw.close()
        raise ForwarderUnavailable(f"TLS with {destination.key} failed: {exc}") from exc


def connection_open(sock: socket.socket) -> bool:
    """Whether the collector still holds the connection: a syslog collector never sends, so
    anything readable is its close (EOF), a reset, or TLS housekeeping (session tickets)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable and not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
            return True
        sock.setblocking(False)
        try:
            return sock.recv(4096) != b""
        finally:
            sock.setblocking(True)
    except (ssl.SSLWantReadError, BlockingIOError):
        return True
    except OSError:
        return False


def position_read(destination: SyslogDestination) -> int:
    """The last sequence ``destination`` is known to hold (0: none yet)."""
    position = ForwarderPosition.objects.filter(destination=destination.key).first()
    return position.last_sequence if position else 0


def position_record(destination: SyslogDestination, sequence: int) -> None:
    """Record that ``destination`` holds every row up to ``sequence``; never moves back."""
    with transaction.atomic():
        position, _ = ForwarderPosition.objects.select_for_update().get_or_create(
            destination=destination.key
        )
        if sequence > position.last_sequence:
            position.last_sequence = sequence
            position.updated_at = timezone.now()
            position.save(update_fields=["last_sequence", "updated_at"])


def rows_to_forward(
    *, after: int, limit: int = BATCH_ROWS, now: datetime | None = None
) -> list[tuple[Any, ...]]:
    """Up to ``limit`` rows after sequence ``after``, as ``COLUMNS`` tuples in sequence order,
    ending before a gap that may still be filled by an append in flight (``GAP_GRACE``)."""
    now = now or timezone.now()
    sequence_at = COLUMNS.index("sequence")
    time_at = COLUMNS.index("occurred_at")
    kept: list[tuple[Any, ...]] = []
    expected = after + 1
    query = AccessLog.objects.filter(sequence__gt=after).order_by("sequence")
    for row in query.values_list(*COLUMNS)[:limit]:
        if row[sequence_at] > expected and row[time_at] > now - GAP_GRACE:
            break
        kept.append(row)
        expected = row[sequence_at] + 1
    return kept


def _frames(rows: list[tuple[Any, ...]], hostname: str) -> Iterator[bytes]:
    columns = (*COLUMNS, "identity_email", "agent_name")
    for values in rows_with_people(rows):
        row = dict(zip(columns, values, strict=True))
        yield syslog_frame(
            event=ocsf_event(row, raw_columns=COLUMNS),
            sequence=row["sequence"],
            row_hash=row["row_hash"],
            occurred_at=row["occurred_at"],
            hostname=hostname,
        )


class AuditForwarder:
    """Sends the access log to one destination, a batch per round (see the module docstring
    for what is recorded when)."""

    def __init__(
        self,
        destination: SyslogDestination,
        *,
        batch_rows: int = BATCH_ROWS,
        hostname: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.destination = destination
        self.batch_rows = batch_rows
        self.hostname = hostname if hostname is not None else socket.gethostname()
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._sent_through = 0

    def forward_round(self) -> int:
        """Confirm the batch sent last round if the connection held, then send the next one;
        answer how many rows were sent. Raises ``ForwarderUnavailable`` when the collector is
        down or dropped the connection (nothing unconfirmed is recorded; it is sent again)."""
        recorded = position_read(self.destination)
        if self._sock is not None and self._sent_through > recorded:
            if connection_open(self._sock):
                position_record(self.destination, self._sent_through)
                recorded = self._sent_through
            else:
                self._drop()
        if self._sock is None:
            self._sock = syslog_connect(self.destination, timeout=self.timeout)
            self._sent_through = recorded
        rows = rows_to_forward(after=self._sent_through, limit=self.batch_rows)
        if not rows:
            return 0
        payload = b"".join(_frames(rows, self.hostname))
        try:
            self._sock.sendall(payload)
        except OSError as exc:
            self._drop()
            raise ForwarderUnavailable(f"sending to {self.destination.key}: {exc}") from exc
        self._sent_through = rows[-1][COLUMNS.index("sequence")]
        return len(rows)

    def close(self, *, wait: float = CLOSE_WAIT_SECONDS) -> bool:
        """Stop: close the sending side, wait up to ``wait`` seconds for the collector to read
        everything and close its side, and only then record the last batch as delivered.
        Answers whether it was recorded (or nothing was pending)."""
        sock, self._sock = self._sock, None
        if sock is None:
            return True
        confirmed = False
        sock.settimeout(wait)
        try:
            if isinstance(sock, ssl.SSLSocket):
                # close_notify, then the collector's own, then on the plain socket as below.
                sock = sock.unwrap()
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(4096):
                pass
            confirmed = True
        except ssl.SSLEOFError:
            # The collector closed without its close_notify: still an orderly end after it
            # read our close_notify (with unread bytes it would have reset the connection).
            confirmed = True
        except (OSError, ValueError):
            confirmed = False
        finally:
            sock.close()
        if confirmed and self._sent_through > position_read(self.destination):
            position_record(self.destination, self._sent_through)
        return confirmed

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None


def backoff_delays(*, first: float = 1.0, limit: float = 60.0) -> Iterator[float]:
    """Seconds to wait between attempts to reach a collector that is down: doubling up to
    ``limit``."""
    delay = first
    while True:
        yield delay
        delay = min(limit, delay * 2)
