"""Media endpoint throughput: a 256 MiB encrypted voice recording (Twilio's ``rsa-aes``:
AES-256-GCM, key wrapped with RSA-OAEP) streamed through the portal's media endpoint under
gunicorn on loopback, beside the same endpoint serving the same audio unencrypted (the HTTP
ceiling) and ``cryptography``'s raw AES speed on this machine (the crypto limit).

Full downloads run in ``--rounds`` interleaved rounds, each one download of each kind (which
goes first alternates), so that a burst of other work on a shared machine lands on both kinds
alike. Prints every round, the median throughput of each kind, the ratio of the medians
(target >= 0.70) and PASS or MISS, and the worker's CPU time per download of each kind (their
difference is what decrypting costs the worker, whatever else the machine runs). Then the
first play (which includes the one-time GCM tag check of the whole file), the raw AES-256-GCM
and AES-256-CTR decrypt speed, the time of a 64 KiB range at offset 0 and near the end
(target: end within 2x of start), and the worker's peak RSS above idle (target < 64 MiB), each
with PASS or MISS. Files are read from the local media folder, so the figures are the portal's
own cost, not a storage server's; one gunicorn sync worker serves everything (its memory is
the one measured) and one client downloads at a time (the two cores: one each).

Run: ``make bench-media`` (or ``.venv/bin/python bench/media.py --rounds 31``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from bench.harness import ACCOUNT_SID, free_port, gunicorn, prepare_database, server_env

MiB = 1024 * 1024
SIZE = 256 * MiB
RANGE = 64 * 1024
KEY_SID = "CR" + "be" * 16
ENCRYPTED_SID = "RE" + "e1" * 16
PLAIN_SID = "RE" + "e0" * 16


# ---------------------------------------------------------------------------------------------
# Fixtures: the same audio, stored plain and as Twilio stores it encrypted
# ---------------------------------------------------------------------------------------------


def write_recordings(folder: Path, public_key) -> tuple[str, dict[str, str]]:
    """Write ``plain.wav`` and ``encrypted.wav`` (ciphertext || tag) under ``folder``, a piece
    at a time; returns the plaintext's SHA-256 and the encryption details."""
    from faketwilio.recording_formats import encrypt_voice_like_twilio

    cek, iv = os.urandom(32), os.urandom(12)
    _, details = encrypt_voice_like_twilio(b"", public_key, KEY_SID, cek=cek, iv=iv)
    encryptor = Cipher(algorithms.AES(cek), modes.GCM(iv)).encryptor()
    digest = hashlib.sha256()
    piece = os.urandom(4 * MiB)
    with (folder / "plain.wav").open("wb") as plain, (folder / "encrypted.wav").open("wb") as enc:
        for index in range(SIZE // len(piece)):
            chunk = index.to_bytes(8, "big") + piece[8:]  # distinct pieces
            digest.update(chunk)
            plain.write(chunk)
            enc.write(encryptor.update(chunk))
        encryptor.finalize()
        enc.write(encryptor.tag)
    return digest.hexdigest(), details


def seed(env: dict[str, str], media_root: Path, port: int) -> tuple[str, str, str]:
    """Key, recordings and media links in the benchmark database; returns the plaintext's
    SHA-256 and the link paths (encrypted, plain)."""
    os.environ.update(env)
    import django

    django.setup()
    from faketwilio.recording_formats import make_rsa_key
    from recordings.custody import keys
    from recordings.integrations import storage
    from recordings.models import (
        IntegrityState,
        MediaLocation,
        PrivateKey,
        Recording,
        RecordingStatus,
        SyncState,
    )
    from recordings.playback import links

    key = make_rsa_key(2048)
    PrivateKey.objects.filter(public_key_sid=KEY_SID).delete()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    keys.private_key_import(pem=pem, public_key_sid=KEY_SID, friendly_name="bench")

    folder = storage.local_root() / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    assert str(folder).startswith(str(media_root))
    digest, details = write_recordings(folder, key.public_key())

    common = {
        "account_sid": ACCOUNT_SID,
        "status": RecordingStatus.COMPLETED,
        "source": "DialVerb",
        "channels": 1,
        "media_location": MediaLocation.LOCAL,
        "sync_state": SyncState.SYNCED,
        "integrity_state": IntegrityState.UNVERIFIED,
        "media_etag": "",
        "media_size": None,
    }
    encrypted, _ = Recording.objects.update_or_create(
        sid=ENCRYPTED_SID,
        defaults={
            **common,
            "media_key": "bench/encrypted.wav",
            "encryption_type": "rsa-aes",
            "encryption_public_key_sid": KEY_SID,
            "encryption_cek": details["encrypted_cek"],
            "encryption_iv": details["iv"],
        },
    )
    plain, _ = Recording.objects.update_or_create(
        sid=PLAIN_SID,
        defaults={**common, "media_key": "bench/plain.wav", "encryption_type": ""},
    )
    paths = []
    for recording in (encrypted, plain):
        issued = links.media_link_issue(
            recording=recording,
            link_id=uuid.uuid4(),
            base_url=f"http://127.0.0.1:{port}",
            identity="bench",
            roles=("supervisor",),
        )
        url = urlsplit(issued.url)
        paths.append(f"{url.path}?{url.query}")
    return digest, paths[0], paths[1]


# ---------------------------------------------------------------------------------------------
# Client: one raw HTTP/1.1 download, read into a reused buffer
# ---------------------------------------------------------------------------------------------


def download(
    port: int, path: str, range_header: str | None = None, *, digest: Any = None
) -> tuple[int, int, float]:
    """GET ``path``; returns (status, body bytes, seconds from sending to the last byte).
    ``digest`` (a ``hashlib`` object) is fed the body when given."""
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    if range_header:
        lines.append(f"Range: {range_header}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    buffer = bytearray(MiB)
    view = memoryview(buffer)
    head = bytearray()
    status, body = 0, 0
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * MiB)
        started = time.perf_counter()
        sock.sendall(request)
        while True:
            count = sock.recv_into(view)
            if not count:
                break
            if not status:  # still in the response head
                head += view[:count]
                if b"\r\n\r\n" in head:
                    header, _, rest = bytes(head).partition(b"\r\n\r\n")
                    status = int(header[9:12])
                    body += len(rest)
                    if digest is not None:
                        digest.update(rest)
                continue
            body += count
            if digest is not None:
                digest.update(view[:count])
        elapsed = time.perf_counter() - started
    return status, body, elapsed


# ---------------------------------------------------------------------------------------------
# The worker's memory
# ---------------------------------------------------------------------------------------------


def _proc_status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return fields


def gunicorn_worker(port: int) -> int:
    """The pid of the one gunicorn worker serving ``port`` (the master's only child)."""
    bind = f"127.0.0.1:{port}".encode()
    masters = [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit()
        and _readable(entry / "cmdline")
        and b"gunicorn" in (entry / "cmdline").read_bytes()
        and bind in (entry / "cmdline").read_bytes()
        and _proc_status(int(entry.name)).get("PPid") == str(os.getpid())
    ]
    assert len(masters) == 1, masters
    children = [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit()
        and _readable(entry / "status")
        and _proc_status(int(entry.name)).get("PPid") == str(masters[0])
    ]
    assert len(children) == 1, children
    return children[0]


def _readable(path: Path) -> bool:
    try:
        path.read_bytes()
    except OSError:
        return False
    return True


def kib(value: str) -> int:
    """``/proc/<pid>/status`` sizes (``"123456 kB"``) in KiB."""
    return int(value.split()[0])


# ---------------------------------------------------------------------------------------------
# Raw crypto on this machine
# ---------------------------------------------------------------------------------------------


def raw_decrypt_speed(mode: str, runs: int) -> float:
    """GB/s of ``cryptography`` decrypting 64 MiB in 256 KiB pieces (median of ``runs``)."""
    data = os.urandom(64 * MiB)
    piece = 256 * 1024
    out = bytearray(piece + 15)
    speeds = []
    for _ in range(runs):
        decryptor: CipherContext
        if mode == "gcm":
            decryptor = Cipher(
                algorithms.AES(os.urandom(32)), modes.GCM(os.urandom(12))
            ).decryptor()
        else:
            decryptor = Cipher(
                algorithms.AES(os.urandom(32)), modes.CTR(os.urandom(16))
            ).decryptor()
        view = memoryview(data)
        started = time.perf_counter()
        for offset in range(0, len(data), piece):
            decryptor.update_into(view[offset : offset + piece], out)
        speeds.append(len(data) / (time.perf_counter() - started) / 1e9)
    return statistics.median(speeds)


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Round:
    """One interleaved round: wall seconds, and the worker's CPU seconds, of one full download
    of each kind."""

    encrypted_seconds: float
    plain_seconds: float
    encrypted_cpu: float
    plain_cpu: float


def worker_cpu_seconds(pid: int) -> float:
    """CPU time process ``pid`` has run so far (``/proc/<pid>/schedstat``). Unlike wall time it
    does not grow while other work on a shared machine holds the core, so the difference
    between the two kinds shows what decrypting costs the worker."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


def full_download_rounds(
    port: int, worker: int, encrypted_path: str, plain_path: str, rounds: int
) -> list[Round]:
    """One full encrypted and one full unencrypted download per round, the two taking turns to
    go first, so that noise from other work on the machine hits both kinds alike instead of
    deciding the ratio."""
    results = []
    for number in range(rounds):
        seconds, cpu = {}, {}
        order = (encrypted_path, plain_path) if number % 2 == 0 else (plain_path, encrypted_path)
        for path in order:
            cpu_before = worker_cpu_seconds(worker)
            status, body, seconds[path] = download(port, path)
            cpu[path] = worker_cpu_seconds(worker) - cpu_before
            assert (status, body) == (200, SIZE), (status, body)
        results.append(
            Round(
                seconds[encrypted_path], seconds[plain_path], cpu[encrypted_path], cpu[plain_path]
            )
        )
    return results


def verdict(met: bool) -> str:
    """How a figure stands against its target."""
    return "PASS" if met else "MISS"


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds",
        type=int,
        default=21,
        help="interleaved rounds of full downloads, one of each kind per round (median); "
        "each takes well under a second, and fewer than about 20 let a shared machine's noise "
        "move the ratio by 0.1",
    )
    parser.add_argument("--range-runs", type=int, default=25, help="range requests of each kind")
    args = parser.parse_args()

    media_root = Path(tempfile.mkdtemp(prefix="portal-bench-media-"))
    port = free_port()
    env = server_env(port, PORTAL_MEDIA_ROOT=str(media_root), MEDIA_LINK_TTL_SECONDS="3600")
    try:
        prepare_database(env)
        expected, encrypted_path, plain_path = seed(env, media_root, port)
        gcm = raw_decrypt_speed("gcm", 5)
        ctr = raw_decrypt_speed("ctr", 5)
        with gunicorn(env, port, workers=1):
            worker = gunicorn_worker(port)
            # Idle: the worker has served a small range, nothing large yet.
            download(port, "/healthz")
            download(port, plain_path, f"bytes=0-{RANGE - 1}")
            idle = kib(_proc_status(worker)["VmRSS"])

            check = hashlib.sha256()
            status, body, first_play = download(port, encrypted_path, digest=check)
            assert (status, body) == (200, SIZE), (status, body)
            assert check.hexdigest() == expected, "decrypted download differs from the plaintext"

            rounds = full_download_rounds(port, worker, encrypted_path, plain_path, args.rounds)

            near_end = SIZE - RANGE - 12345
            starts, ends = [], []
            for _ in range(args.range_runs):
                status, body, seconds = download(port, encrypted_path, f"bytes=0-{RANGE - 1}")
                assert (status, body) == (206, RANGE), (status, body)
                starts.append(seconds)
                header = f"bytes={near_end}-{near_end + RANGE - 1}"
                status, body, seconds = download(port, encrypted_path, header)
                assert (status, body) == (206, RANGE), (status, body)
                ends.append(seconds)
            peak = kib(_proc_status(worker)["VmHWM"])
    finally:
        shutil.rmtree(media_root, ignore_errors=True)

    def rate(seconds: float) -> float:
        return SIZE / seconds / MiB

    encrypted_rates = [rate(one.encrypted_seconds) for one in rounds]
    plain_rates = [rate(one.plain_seconds) for one in rounds]
    encrypted_cpu_ms = statistics.median(one.encrypted_cpu for one in rounds) * 1000
    plain_cpu_ms = statistics.median(one.plain_cpu for one in rounds) * 1000
    decrypt_cpu_ms = statistics.median(one.encrypted_cpu - one.plain_cpu for one in rounds) * 1000
    encrypted_rate = statistics.median(encrypted_rates)
    plain_rate = statistics.median(plain_rates)
    ratio = encrypted_rate / plain_rate
    start_ms, end_ms = statistics.median(starts) * 1000, statistics.median(ends) * 1000
    above_idle = (peak - idle) / 1024

    print(
        f"gunicorn sync, 1 worker, 1 client; a {SIZE // MiB} MiB voice recording from the local "
        f"media folder; {args.rounds} interleaved rounds of full downloads, {args.range_runs} "
        "ranges"
    )
    for number, one in enumerate(rounds, 1):
        print(
            f"  round {number}: encrypted {rate(one.encrypted_seconds):5.0f} MiB/s "
            f"({one.encrypted_cpu * 1000:3.0f} ms CPU), unencrypted "
            f"{rate(one.plain_seconds):5.0f} MiB/s ({one.plain_cpu * 1000:3.0f} ms CPU), "
            f"ratio {one.plain_seconds / one.encrypted_seconds:.2f}"
        )
    print(
        f"{'encrypted (rsa-aes), full download':<44} {encrypted_rate:8.0f} MiB/s (median; "
        f"{min(encrypted_rates):.0f}-{max(encrypted_rates):.0f})"
    )
    print(
        f"{'unencrypted, same endpoint (HTTP ceiling)':<44} {plain_rate:8.0f} MiB/s (median; "
        f"{min(plain_rates):.0f}-{max(plain_rates):.0f})"
    )
    print(
        f"{'worker CPU per full download':<44} {encrypted_cpu_ms:8.0f} / {plain_cpu_ms:.0f} ms "
        f"(median; encrypted / unencrypted; decrypting {decrypt_cpu_ms:+.0f} ms)"
    )
    print(f"{'first play (GCM tag check + download)':<44} {first_play:8.2f} s")
    print(f"{'raw AES-256-GCM decrypt (cryptography)':<44} {gcm:8.2f} GB/s")
    print(f"{'raw AES-256-CTR decrypt (ranges not at 0)':<44} {ctr:8.2f} GB/s")
    print(f"{'64 KiB range at offset 0':<44} {start_ms:8.2f} ms (p50)")
    print(f"{'64 KiB range near the end':<44} {end_ms:8.2f} ms (p50)")
    print(
        f"{'worker RSS idle / peak':<44} {idle / 1024:8.1f} / {peak / 1024:.1f} MiB "
        f"(+{above_idle:.1f} MiB)"
    )
    checks = [
        ("ratio of the medians", ratio, ratio >= 0.70, ">= 0.70"),
        ("end/start range time", end_ms / start_ms, end_ms <= 2 * start_ms, "<= 2.0"),
        ("peak above idle (MiB)", above_idle, above_idle < 64, "< 64"),
    ]
    for name, value, met, target in checks:
        print(f"{name:<44} {value:8.3f}   {verdict(met)} (target {target})")


if __name__ == "__main__":
    main()
