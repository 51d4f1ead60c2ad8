"""``audit.forwarder`` against a real syslog collector: a TCP (and TLS) server in a thread that
reads octet-counted RFC 5424 frames. A forwarder that dies resumes after the last confirmed
sequence, a collector that goes down and comes back misses nothing, TLS verifies the collector
against the configured CA."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import socket
import socketserver
import ssl
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.core.management import CommandError, call_command
from django.db import transaction

from audit.forwarder import (
    AuditForwarder,
    ForwarderUnavailable,
    SyslogDestination,
    position_read,
    position_record,
    rows_to_forward,
    syslog_frame,
)
from audit.models import AccessLog
from audit.sealer import GAP_GRACE
from audit.services import access_log_append
from audit.tests.test_ocsf import assert_valid_ocsf

pytestmark = pytest.mark.django_db

RFC5424 = re.compile(
    rb"<(?P<pri>\d{1,3})>1 (?P<time>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) "
    rb"(?P<msgid>\S+) (?P<sd>\[(?:[^\]\\]|\\.)*\]) (?P<msg>.*)",
    re.DOTALL,
)


class Collector:
    """A syslog collector on 127.0.0.1 that keeps every frame it reads; ``stop`` closes the
    listening socket and every connection, like a collector going down."""

    def __init__(self, *, tls: ssl.SSLContext | None = None, port: int = 0) -> None:
        self.tls = tls
        self.port = port
        self.frames: list[bytes] = []
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()
        self.server: socketserver.ThreadingTCPServer | None = None

    def start(self) -> Collector:
        collector = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                conn = self.request
                if collector.tls is not None:
                    try:
                        conn = collector.tls.wrap_socket(conn, server_side=True)
                    except (ssl.SSLError, OSError):
                        return
                with collector.lock:
                    collector.connections.append(conn)
                buffer = b""
                while True:
                    try:
                        chunk = conn.recv(65536)
                    except OSError:
                        return
                    if not chunk:
                        conn.close()  # the sender closed: all it sent was read
                        return
                    buffer += chunk
                    while b" " in buffer:
                        length, rest = buffer.split(b" ", 1)
                        if len(rest) < int(length):
                            break
                        with collector.lock:
                            collector.frames.append(rest[: int(length)])
                        buffer = rest[int(length) :]

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self.server is None:
            return  # already down
        self.server.shutdown()
        self.server.server_close()
        self.server = None
        with self.lock:
            for conn in self.connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self.connections.clear()

    def sequences(self) -> list[int]:
        with self.lock:
            return [int(RFC5424.match(frame)["msgid"]) for frame in self.frames]

    def wait_for(self, count: int) -> list[int]:
        deadline = time.monotonic() + 10
        while len(self.sequences()) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.sequences()


@pytest.fixture
def collector():
    running = Collector().start()
    yield running
    running.stop()


def append(count: int, start: int = 0) -> None:
    for index in range(start, start + count):
        access_log_append(
            action="url_provider",
            outcome="allowed" if index % 2 else "denied",
            reason_code="allowed_by_rule" if index % 2 else "no_matching_rule",
            identity=f"agent_{index}",
            client_ip="192.0.2.1",
            detail={"n": index},
        )


def destination(collector: Collector, **values: Any) -> SyslogDestination:
    return SyslogDestination(host="127.0.0.1", port=collector.port, tls=False, **values)


def test_a_frame_is_octet_counted_rfc5424_with_the_sequence_as_msgid():
    event = {"class_uid": 6001, "severity_id": 2, "message": 'a "quoted" ] text'}
    frame = syslog_frame(
        event=event,
        sequence=42,
        row_hash='ab"c]',
        occurred_at=datetime(2026, 3, 1, 10, 0, 0, 5, tzinfo=UTC),
        hostname="portal host",
    )
    length, message = frame.split(b" ", 1)
    assert int(length) == len(message)
    parts = RFC5424.match(message)
    assert parts is not None
    assert int(parts["pri"]) == 13 * 8 + 5  # log audit, notice (OCSF Low)
    assert parts["time"] == b"2026-03-01T10:00:00.000005Z"
    assert parts["host"] == b"portalhost"
    assert parts["msgid"] == b"42"
    assert parts["sd"] == b'[audit@32473 sequence="42" rowHash="ab\\"c\\]"]'
    assert json.loads(parts["msg"]) == event


def test_every_row_arrives_as_a_valid_ocsf_event_and_is_recorded_after_the_close(collector):
    append(7)
    forwarder = AuditForwarder(destination(collector), batch_rows=3, hostname="portal")
    assert [forwarder.forward_round() for _ in range(3)] == [3, 3, 1]
    assert collector.wait_for(7) == [1, 2, 3, 4, 5, 6, 7]
    assert position_read(forwarder.destination) == 6  # the last batch is not confirmed yet
    assert forwarder.close() is True  # the collector read everything and closed
    assert position_read(forwarder.destination) == 7
    for frame in collector.frames:
        parts = RFC5424.match(frame)
        event = json.loads(parts["msg"])
        assert_valid_ocsf(event)
        assert event["metadata"]["sequence"] == int(parts["msgid"])


def test_a_killed_forwarder_resumes_after_the_last_confirmed_sequence(collector):
    append(6)
    first = AuditForwarder(destination(collector), batch_rows=3)
    first.forward_round()
    first.forward_round()  # confirms 1-3, sends 4-6
    assert collector.wait_for(6) == [1, 2, 3, 4, 5, 6]
    first._sock.close()  # killed: no clean close, 4-6 never confirmed
    assert position_read(first.destination) == 3
    append(2, start=6)
    second = AuditForwarder(destination(collector), batch_rows=10)
    assert second.forward_round() == 5  # 4-6 again, then 7 and 8
    assert second.close() is True
    received = collector.wait_for(11)
    assert received == [1, 2, 3, 4, 5, 6, 4, 5, 6, 7, 8]  # duplicates, never a gap
    assert set(received) == set(range(1, 9))
    assert position_read(second.destination) == 8


def test_a_collector_down_then_up_loses_nothing(collector):
    append(4)
    forwarder = AuditForwarder(destination(collector), batch_rows=10)
    assert forwarder.forward_round() == 4
    assert collector.wait_for(4) == [1, 2, 3, 4]
    collector.stop()  # before the forwarder confirmed the batch
    append(3, start=4)
    time.sleep(0.05)  # the collector's close reaches the forwarder
    for _ in range(3):  # refused while it is down, nothing recorded
        with pytest.raises(ForwarderUnavailable):
            forwarder.forward_round()
    assert position_read(forwarder.destination) == 0
    restarted = Collector(port=collector.port).start()
    try:
        assert forwarder.forward_round() == 7  # everything not confirmed, and the new rows
        assert forwarder.close() is True
        assert restarted.wait_for(7) == [1, 2, 3, 4, 5, 6, 7]
        assert position_read(forwarder.destination) == 7
    finally:
        restarted.stop()


def test_a_gap_that_may_still_be_committing_is_waited_for():
    append(1)
    savepoint = transaction.savepoint()
    append(1, start=1)  # takes number 2, then rolls back: 2 is a gap
    transaction.savepoint_rollback(savepoint)
    append(1, start=2)
    # Number 2 might still be an append in flight: the round stops before row 3.
    assert [row[0] for row in rows_to_forward(after=0)] == [1]
    # Once row 3 is older than GAP_GRACE, 2 was abandoned and is passed.
    later = datetime.now(UTC) + GAP_GRACE + timedelta(seconds=1)
    assert [row[0] for row in rows_to_forward(after=0, now=later)] == [1, 3]


def _certificate(
    *, subject: str, issuer_key: Any, issuer: x509.Name | None, key: Any, ca: bool
) -> x509.Certificate:
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Path]:
    """A CA, a collector certificate it signed (for 127.0.0.1), and an unrelated CA."""
    ca_key, other_key, server_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _certificate(subject="Test SIEM CA", issuer_key=ca_key, issuer=None, key=ca_key, ca=True)
    other = _certificate(
        subject="Another CA", issuer_key=other_key, issuer=None, key=other_key, ca=True
    )
    server = _certificate(
        subject="collector", issuer_key=ca_key, issuer=ca.subject, key=server_key, ca=False
    )
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "other", "cert", "key")}
    files["ca"].write_bytes(_pem(ca))
    files["other"].write_bytes(_pem(other))
    files["cert"].write_bytes(_pem(server))
    files["key"].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


@pytest.fixture
def tls_collector(tls_files):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files["cert"], tls_files["key"])
    running = Collector(tls=context).start()
    yield running
    running.stop()


def test_tls_with_the_collector_ca_delivers_and_confirms(tls_collector, tls_files):
    append(3)
    target = SyslogDestination(
        host="127.0.0.1", port=tls_collector.port, tls=True, ca_file=str(tls_files["ca"])
    )
    forwarder = AuditForwarder(target)
    assert forwarder.forward_round() == 3
    assert forwarder.close() is True
    assert tls_collector.wait_for(3) == [1, 2, 3]
    assert position_read(target) == 3


def test_tls_with_another_ca_is_refused(tls_collector, tls_files):
    append(1)
    target = SyslogDestination(
        host="127.0.0.1", port=tls_collector.port, tls=True, ca_file=str(tls_files["other"])
    )
    with pytest.raises(ForwarderUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        AuditForwarder(target).forward_round()
    assert tls_collector.sequences() == []
    assert position_read(target) == 0


@pytest.mark.django_db(transaction=True)  # the command closes connections between rounds
def test_the_command_sends_everything_once_and_needs_a_host(collector, settings):
    append(5)
    sequences = sorted(AccessLog.objects.values_list("sequence", flat=True))
    target = SyslogDestination(host="127.0.0.1", port=collector.port, tls=False)
    # The database's sequence is not reset between such tests: start where these rows start.
    position_record(target, sequences[0] - 1)
    settings.AUDIT_SYSLOG_HOST = ""
    with pytest.raises(CommandError, match="AUDIT_SYSLOG_HOST"):
        call_command("run_audit_forwarder", "--once")
    settings.AUDIT_SYSLOG_HOST = "127.0.0.1"
    settings.AUDIT_SYSLOG_PORT = collector.port
    settings.AUDIT_SYSLOG_TLS = False
    call_command("run_audit_forwarder", "--once")
    assert collector.wait_for(5) == sequences
    assert position_read(target) == sequences[-1]
