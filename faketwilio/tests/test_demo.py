"""``python -m faketwilio --demo`` (:mod:`faketwilio.demo`) serves seeded recordings and Flex
tokens until interrupted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import requests

from faketwilio.tests.helpers import ACCOUNT_SID, AUTH_TOKEN

KEY_SID = "SK" + "7" * 32
KEY_SECRET = "demo-key-secret-0123456789"


def test_command_line_demo() -> None:
    """`python -m faketwilio --demo` serves seeded recordings and tokens until SIGINT, to the
    account's auth token and to the API key given on the command line."""
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "faketwilio",
            "--port",
            "0",
            "--demo",
            "--account-sid",
            ACCOUNT_SID,
            "--auth-token",
            AUTH_TOKEN,
            "--api-key-sid",
            KEY_SID,
            "--api-key-secret",
            KEY_SECRET,
        ],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        lines: list[str] = []
        while not any(line.startswith("Flex token 'demo-agent-token'") for line in lines):
            line = process.stdout.readline()
            assert line, process.stderr.read()
            lines.append(line)
        url = lines[0].rsplit(" ", 1)[1].strip()
        answer = requests.post(
            f"{url}/iam/v1/Accounts/{ACCOUNT_SID}/Tokens/validate",
            json={"token": "demo-supervisor-token"},
            auth=(ACCOUNT_SID, AUTH_TOKEN),
            timeout=5,
        ).json()
        listing = requests.get(
            f"{url}/api/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings.json",
            auth=(ACCOUNT_SID, AUTH_TOKEN),
            timeout=5,
        ).json()
        first = listing["recordings"][0]["sid"]
        media = requests.get(
            f"{url}/api/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{first}.wav",
            auth=(KEY_SID, KEY_SECRET),  # the API key given on the command line
            timeout=5,
        )
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)

    assert answer["valid"] is True
    assert "supervisor" in answer["roles"]
    assert len(listing["recordings"]) == 3
    assert media.content[:4] == b"RIFF"
    assert process.returncode == 0
