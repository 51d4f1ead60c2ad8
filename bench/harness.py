"""Shared benchmark machinery: a production-mode portal under gunicorn on loopback, a bounded
load generator in separate processes, and the figures every benchmark prints.

Everything stays on 127.0.0.1 and stops by itself (request loops are bounded in count and time).
"""

from __future__ import annotations

import base64
import contextlib
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = "fedcba9876543210fedcba9876543210"


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_env(port: int, **extra: str) -> dict[str, str]:
    """Environment of a production-mode portal on loopback, against this machine's PostgreSQL
    (database ``portal_bench``) and Redis (database 9)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PORTAL_"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "bench-only-" + "k3yM4t3r1al" * 5,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_SECURE_SSL_REDIRECT": "0",
            "PORTAL_MASTER_KEY": base64.urlsafe_b64encode(
                b"bench-master-key-0123456789abcde"
            ).decode(),
            "AUDIT_SEAL_SIGNING_KEY": base64.urlsafe_b64encode(
                b"bench-seal-key-0123456789abcdefg"
            ).decode(),
            "AUDIT_ROW_MAC_KEY": base64.urlsafe_b64encode(
                b"bench-rowmac-key-0123456789abcde"
            ).decode(),
            "DATABASE_URL": os.environ.get(
                "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portal_bench"
            ),
            "DATABASE_CONN_MAX_AGE": "600",
            "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9"),
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "LOG_LEVEL": "INFO",
        }
    )
    env.update(extra)
    return env


def prepare_database(env: dict[str, str]) -> None:
    """Create the benchmark database if needed and apply migrations."""
    name = env["DATABASE_URL"].rsplit("/", 1)[-1]
    subprocess.run(
        ["createdb", "-h", "127.0.0.1", "-U", "postgres", name],
        capture_output=True,
        check=False,
    )
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )


@contextlib.contextmanager
def process(
    *args: str, env: dict[str, str] | None = None, ready: Callable[[], bool] | None = None
) -> Iterator[subprocess.Popen]:
    """A helper process (its own session, output discarded) until the block ends; waits up to
    30 s for ``ready()`` to be true first, and stops the whole process group afterwards."""
    log = open(os.devnull, "w")  # noqa: SIM115 - closed below, after the process stops
    child = subprocess.Popen(
        args,
        cwd=ROOT,
        env=env or os.environ.copy(),
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while ready is not None and not _safely(ready):
            if time.monotonic() > deadline or child.poll() is not None:
                raise RuntimeError(f"{' '.join(args[:4])} did not come up in 30 s")
            time.sleep(0.2)
        yield child
    finally:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(timeout=30)
        log.close()


def _safely(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except OSError:
        return False


@contextlib.contextmanager
def gunicorn(env: dict[str, str], port: int, workers: int | None = None) -> Iterator[None]:
    """The portal under ``gunicorn -k sync`` on 127.0.0.1:port until the block ends.

    Five workers is gunicorn's own advice for two cores (2 x cores + 1): a sync worker waiting
    on PostgreSQL's commit or on Redis holds no core, and the others use it meanwhile.
    ``BENCH_WORKERS`` overrides it.
    """
    workers = workers or workers_count()
    command = (
        PYTHON,
        "-m",
        "gunicorn",
        "portal.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "sync",
        "--backlog",
        "2048",
        "--log-level",
        "warning",
    )

    def healthy() -> bool:
        return request("127.0.0.1", port, "GET", "/healthz", b"", {})[0] == 200

    with process(*command, env=env, ready=healthy):
        yield


def request(
    host: str, port: int, method: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, bytes]:
    """One HTTP request on a fresh connection (gunicorn's sync workers close after each)."""
    return send_raw(host, port, encode_request(host, port, method, path, body, headers))


def encode_request(
    host: str, port: int, method: str, path: str, body: bytes, headers: dict[str, str]
) -> bytes:
    """The bytes of an HTTP/1.1 request that asks the server to close afterwards."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def send_raw(host: str, port: int, payload: bytes) -> tuple[int, bytes]:
    """Send prepared request bytes and read the whole answer: (status, raw response).

    Plain sockets rather than http.client: the load generator shares the two cores with the
    server, so the less it spends per request, the more the figures say about the server.
    """
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(payload)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    status = int(raw[9:12]) if raw.startswith(b"HTTP/1.") else 0
    return status, raw


@dataclass(frozen=True)
class Call:
    """One prepared request."""

    method: str
    path: str
    body: bytes
    headers: dict[str, str]

    def encode(self, port: int) -> bytes:
        """The request's bytes for a server on 127.0.0.1:port."""
        return encode_request("127.0.0.1", port, self.method, self.path, self.body, self.headers)


@dataclass
class Result:
    """What one load run measured."""

    label: str
    requests: int
    seconds: float
    latencies_ms: list[float]
    statuses: dict[int, int]

    @property
    def rate(self) -> float:
        """Requests answered per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        """Latency at percentile ``p`` (0-100) in milliseconds."""
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]

    def line(self) -> str:
        """One printable line: rate, p50, p99, status counts."""
        return (
            f"{self.label:<34} {self.rate:9.0f} req/s   p50 {self.percentile(50):6.1f} ms   "
            f"p99 {self.percentile(99):6.1f} ms   statuses {dict(sorted(self.statuses.items()))}"
        )


def _worker(args: tuple[int, Sequence[bytes], float]) -> tuple[int, list[float], dict[int, int]]:
    port, payloads, deadline = args
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    for payload in payloads:
        if time.monotonic() > deadline:
            break
        started = time.perf_counter()
        status, _ = send_raw("127.0.0.1", port, payload)
        latencies.append((time.perf_counter() - started) * 1000)
        statuses[status] = statuses.get(status, 0) + 1
    return len(latencies), latencies, statuses


def load(
    label: str, port: int, calls: Sequence[Call], *, concurrency: int = 8, seconds: float = 10.0
) -> Result:
    """Send ``calls`` from ``concurrency`` processes, at most ``seconds`` long; each call is
    sent once, so the run is bounded in count and in time."""
    payloads = [call.encode(port) for call in calls]
    slices = [payloads[i::concurrency] for i in range(concurrency)]
    started = time.monotonic()
    deadline = started + seconds
    with multiprocessing.get_context("fork").Pool(concurrency) as pool:
        parts = pool.map(_worker, [(port, part, deadline) for part in slices])
    elapsed = time.monotonic() - started
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    total = 0
    for count, part_latencies, part_statuses in parts:
        total += count
        latencies.extend(part_latencies)
        for status, n in part_statuses.items():
            statuses[status] = statuses.get(status, 0) + n
    return Result(label, total, elapsed, latencies, statuses)


def cpu_seconds(pids: Iterable[int]) -> float:
    """User plus system CPU seconds used so far by these processes (Linux ``/proc``); a process
    that is gone counts 0, so take both readings while the processes run."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime and stime, after the name
    return total / tick


def reaped_cpu_seconds(pid: int) -> float:
    """CPU seconds of the children ``pid`` has waited for (e.g. PostgreSQL backends that served
    one connection and exited, which :func:`cpu_seconds` can no longer see)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")  # cutime, cstime


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (e.g. a Celery worker and its pool processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(children.get(current, []))
    return tree


def processes_named(*needles: str) -> list[int]:
    """Processes whose command line contains every one of ``needles`` (e.g. the PostgreSQL
    backends serving one database, whose title names it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(needle in command for needle in needles):
            found.append(int(entry.name))
    return found


def best_of(runs: Sequence[Result]) -> Result:
    """The median run by rate (the VM is noisy: one run proves little)."""
    return sorted(runs, key=lambda r: r.rate)[len(runs) // 2]


def interleaved(runs: int, kinds: Sequence[Callable[[], Result]]) -> list[list[Result]]:
    """``runs`` rounds of every kind, one after another in each round and starting one further
    along each round, so drift on the noisy VM (and whoever runs first) weighs on all kinds
    alike. Answers one list of results per kind, in the order of ``kinds``."""
    results: list[list[Result]] = [[] for _ in kinds]
    for round_ in range(runs):
        for step in range(len(kinds)):
            index = (round_ + step) % len(kinds)
            results[index].append(kinds[index]())
    return results


def paired_ratio(runs: Sequence[Result], references: Sequence[Result]) -> tuple[float, list[float]]:
    """The median of the round-by-round rate ratios of two interleaved series (each run over
    the reference run of the same round, so load that drifts between rounds cancels out), and
    those ratios."""
    ratios = [
        run.rate / ref.rate if ref.rate else 0.0 for run, ref in zip(runs, references, strict=True)
    ]
    return sorted(ratios)[len(ratios) // 2], ratios


def verdict(
    label: str, runs: Sequence[Result], references: Sequence[Result], target: float | None
) -> tuple[float, str]:
    """The paired ratio of ``runs`` to ``references`` (:func:`paired_ratio`) and a printable
    line: the ratio, the rounds' ratios, the ratio of the median rates, and PASS or MISS
    against ``target`` (None: printed for context only)."""
    ratio, rounds = paired_ratio(runs, references)
    medians = best_of(runs).rate / best_of(references).rate if best_of(references).rate else 0.0
    mark = "(context)"
    if target is not None:
        mark = f"target >= {target:.2f}  {'PASS' if ratio >= target else 'MISS'}"
    return ratio, (
        f"{label:<30} {ratio:5.2f}  {mark:<22} rounds {', '.join(f'{r:.2f}' for r in rounds)};"
        f" ratio of median rates {medians:.2f}"
    )


def workers_count() -> int:
    """The gunicorn worker count :func:`gunicorn` uses by default (``BENCH_WORKERS`` or 5)."""
    return int(os.environ.get("BENCH_WORKERS", "5"))


def summary(rate_ratio: float, target: float) -> str:
    """A verdict line comparing a ratio with its target."""
    word = "meets" if rate_ratio >= target else "BELOW"
    return f"ratio {rate_ratio:.2f} ({word} the target of {target:.2f})"


__all__ = [
    "ACCOUNT_SID",
    "AUTH_TOKEN",
    "Call",
    "Result",
    "best_of",
    "cpu_seconds",
    "free_port",
    "gunicorn",
    "interleaved",
    "load",
    "paired_ratio",
    "prepare_database",
    "process_tree",
    "processes_named",
    "reaped_cpu_seconds",
    "server_env",
    "summary",
    "verdict",
    "workers_count",
]
