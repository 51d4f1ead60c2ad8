"""Whatever writes a request line (gunicorn as docker-compose.yml runs it, Django's runserver,
a Celery worker's task loggers) goes through the portal's redaction: no media link token, no
Flex token from a ``Basic`` header, ever reaches the log."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.db import connection

from bench.harness import free_port, server_env

ROOT = Path(__file__).resolve().parents[2]
MEDIA_TOKEN = "media-link-token-SECRET-0123456789"
# A Flex token as a misbehaving client sends it: Basic without "token:", so no colon at all.
FLEX_TOKEN = "flex-token-SECRET-without-a-colon-0123456789"
BAD_LINE_TOKEN = "bad-request-line-SECRET-0123456789"


def compose_gunicorn_args(port: int) -> list[str]:
    """The web service's gunicorn arguments from docker-compose.yml, bound to 127.0.0.1:port
    with one worker."""
    command = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["web"]
    shell = shlex.split(command["command"])[-1]  # sh -c "migrate && gunicorn ..."
    part = next(p for p in shell.split("&&") if p.strip().startswith("gunicorn "))
    args = shlex.split(part)[1:]
    for option, value in (("--bind", f"127.0.0.1:{port}"), ("--workers", "1")):
        if option in args:
            args[args.index(option) + 1] = value
        else:
            args += [option, value]
    return args


def database_url_under_test() -> str:
    """The URL of the database this test runs against (pytest-django's test database)."""
    params = connection.settings_dict
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    return (
        f"postgres://{params['USER']}{password}@{params['HOST'] or '127.0.0.1'}:"
        f"{params['PORT'] or 5432}/{params['NAME']}"
    )


@contextlib.contextmanager
def server(args: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[None]:
    """A server process writing stdout and stderr to ``log``, until it answers /healthz;
    stopped (its whole process group) when the block ends."""
    with log.open("wb") as out:
        child = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(OSError):
                    if get(port, "/healthz")[0] == 200:
                        break
                if child.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"{args[:4]} did not come up:\n{log.read_text()}")
                time.sleep(0.2)
            yield
        finally:
            os.killpg(child.pid, signal.SIGTERM)
            child.wait(timeout=30)


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """One GET on 127.0.0.1:port: (status, X-Request-ID of the answer)."""
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        client.request("GET", path, headers=headers or {})
        response = client.getresponse()
        response.read()
        return response.status, response.headers.get("X-Request-ID", "")
    finally:
        client.close()


def send_raw(port: int, payload: bytes) -> bytes:
    """Send bytes as they are (a malformed request) and read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def wait_until_logged(log: Path, needle: str, timeout: float = 10.0) -> None:
    """Servers write a request's line after answering it: wait for ``needle`` in the log."""
    deadline = time.monotonic() + timeout
    while needle not in log.read_text(errors="replace") and time.monotonic() < deadline:
        time.sleep(0.05)


def json_lines(text: str) -> list[dict]:
    records = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            records.append(json.loads(line))
    return records


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_gunicorn_as_compose_runs_it_logs_no_token(tmp_path):
    port = free_port()
    env = server_env(
        port,
        DJANGO_SETTINGS_MODULE="portal.settings",
        DATABASE_URL=database_url_under_test(),
        REDIS_URL=settings.REDIS_URL,
        TWILIO_API_OVERRIDE="http://127.0.0.1:9",  # nothing here may reach Twilio
        LOG_FORMAT="json",
    )
    args = [sys.executable, "-m", "gunicorn", *compose_gunicorn_args(port)]
    args += ["--control-socket", str(tmp_path / "gunicorn.ctl")]
    link_id = uuid.uuid4()
    log = tmp_path / "gunicorn.log"
    with server(args, env, port, log):
        media = get(port, f"/media/{link_id}?token={MEDIA_TOKEN}")
        basic = base64.b64encode(FLEX_TOKEN.encode()).decode()
        provider = get(
            port,
            "/api/v1/url-provider?recording_sid=RE" + "0" * 32,
            {"Authorization": f"Basic {basic}"},
        )
        # A request line gunicorn itself refuses: its error log quotes the line.
        refused = send_raw(
            port, f"GET /media/{link_id}?token={BAD_LINE_TOKEN}\x01 HTTP/1.1\r\n\r\n".encode()
        )
        # Access lines are written after the answer: wait for the last request's (stopping
        # gunicorn gracefully lets any other request finish, its line included).
        last = uuid.uuid4()
        get(port, f"/media/{last}")
        wait_until_logged(log, f"GET /media/{last}")
    output = log.read_text(errors="replace")

    assert media[0] == 403
    assert provider[0] == 401
    assert refused.startswith(b"HTTP/1.1 400")
    for secret in (MEDIA_TOKEN, FLEX_TOKEN, basic, BAD_LINE_TOKEN):
        assert secret not in output, f"{secret} is in gunicorn's output:\n{output}"

    # The lines are there, as JSON through the portal's handler, each with its request id.
    records = json_lines(output)
    access = [r for r in records if r["logger"] == "gunicorn.access"]
    media_line = next(r for r in access if f"/media/{link_id}" in r["message"])
    assert media_line["request_id"] == media[1]
    assert " 403 " in media_line["message"]
    provider_line = next(r for r in access if "/api/v1/url-provider" in r["message"])
    assert provider_line["request_id"] == provider[1]
    assert " 401 " in provider_line["message"]
    errors = [r for r in records if r["logger"] == "gunicorn.error"]
    assert any("Invalid request" in r["message"] for r in errors), output
    django_lines = [r for r in records if r["logger"] == "django.request"]
    ids = {r["request_id"] for r in django_lines}
    assert {media[1], provider[1]} <= ids
    assert "-" not in ids


@pytest.mark.slow
@pytest.mark.django_db
def test_runserver_logs_no_token(tmp_path):
    """``make run``'s server: Django's own handler for ``django.server`` wrote request lines
    as they came, query string and all."""
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings_test",
        "DATABASE_URL": database_url_under_test(),
        "LOG_FORMAT": "json",
    }
    args = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
    log = tmp_path / "runserver.log"
    with server(args, env, port, log):
        assert get(port, f"/healthz?token={MEDIA_TOKEN}")[0] == 200
        wait_until_logged(log, "GET /healthz?token=")
    output = log.read_text(errors="replace")
    assert MEDIA_TOKEN not in output, output
    line = next(r for r in json_lines(output) if "/healthz?token=" in r["message"])
    assert line["logger"] == "django.server"
    assert "token=[REDACTED]" in line["message"]


def test_celery_task_loggers_in_a_worker_are_redacted():
    """A worker sets up Celery's logging after Django's (``app.log.setup``): Celery gave the
    task loggers a handler of its own, which skipped the redacting filter."""
    script = (
        "import django\n"
        "django.setup()\n"
        "from celery.utils.log import get_task_logger\n"
        "from portal.celery import app\n"
        "app.log.setup(loglevel='INFO')\n"
        f"get_task_logger('recordings.tasks').warning('fetched /media/x?token={MEDIA_TOKEN}')\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings_test", "LOG_FORMAT": "json"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert MEDIA_TOKEN not in output, output
    assert "token=[REDACTED]" in output, output
