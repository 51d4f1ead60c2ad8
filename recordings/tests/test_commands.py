"""Operator commands not covered elsewhere: the demo data and the fake Twilio runner."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import wave
from io import BytesIO, StringIO
from pathlib import Path

import pytest
import requests
from django.core.management import CommandError, call_command

from audit.models import AccessRule
from recordings.integrations import storage
from recordings.models import MediaLocation, Recording

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_seed_demo_prints_the_login_and_is_repeatable(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.DEBUG = True  # embedded mode (the test runner turns DEBUG off)
    out = StringIO()
    call_command("seed_demo", stdout=out)
    call_command("seed_demo", stdout=StringIO())  # twice: updates, never duplicates
    assert re.search(r"user 'demo'\s+password '\S{12,}'", out.getvalue())
    assert "/demo/player?token=demo-supervisor-token&recording_sid=RE" in out.getvalue()
    rule = AccessRule.objects.get(name="demo-supervisors")
    assert (rule.effect, rule.enabled) == ("allow", True)
    recordings = Recording.objects.all()
    assert recordings.count() == 3
    for recording in recordings:
        assert recording.media_location == MediaLocation.LOCAL
        with wave.open(BytesIO((storage.local_root() / recording.media_key).read_bytes())) as wav:
            assert wav.getnchannels() == recording.channels
            assert round(wav.getnframes() / wav.getframerate()) == recording.duration_seconds


@pytest.mark.django_db
def test_seed_demo_refuses_production(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="embedded mode"):
        call_command("seed_demo")


def test_run_fake_twilio_serves_until_interrupted():
    key_sid, key_secret = "SK" + "7" * 32, "settings-key-secret-0123"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings_test",
        "TWILIO_API_KEY_SID": key_sid,
        "TWILIO_API_KEY_SECRET": key_secret,
    }
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_fake_twilio", "--port", "0", "--demo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = None
        for line in process.stdout:
            found = re.search(r"http://127\.0\.0\.1:\d+", line)
            if found:
                url = found.group(0)
                break
        assert url, "the command never printed its URL"
        assert requests.get(f"{url}/_fake/health", timeout=5).status_code == 200
        # The portal's API key from the settings is accepted, as the portal will send it.
        account = os.environ.get("TWILIO_ACCOUNT_SID", "AC" + "a" * 32)
        listing = requests.get(
            f"{url}/api/2010-04-01/Accounts/{account}/Recordings.json",
            auth=(key_sid, key_secret),
            timeout=5,
        )
        assert listing.status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
