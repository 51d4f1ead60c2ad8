"""The fake in the foreground: :func:`serve_forever` (``python -m faketwilio``, the
``run_fake_twilio`` management command) and the demo data set :func:`seed_demo` fills it with.

Both drive the fake through the methods of :class:`Servable`, which
:class:`faketwilio.FakeTwilio` has.
"""

from __future__ import annotations

import secrets
import signal
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from faketwilio.recording_formats import make_wav
from faketwilio.state import new_sid, now


class Output(Protocol):
    """Where progress is written: a text stream, or Django's ``OutputWrapper``."""

    def write(self, text: str, /) -> object:
        """Write ``text``."""
        ...

    def flush(self) -> None:
        """Flush what was written."""
        ...

class Servable(Protocol):
    """The part of the fake's Python API that the demo and :func:`serve_forever` use."""

    @property
    def account_sid(self) -> str: ...

    @property
    def url(self) -> str: ...

    def start(self) -> object: ...

    def stop(self) -> None: ...

    def add_subaccount(self, sid: str, auth_token: str, friendly_name: str) -> dict[str, Any]: ...

    def add_recording(
        self,
        sid: str,
        *,
        account_sid: str | None,
        media: bytes | None,
        channels: int,
        start_time: datetime | None,
    ) -> dict[str, Any]: ...

    def add_token(
        self,
        token: str,
        *,
        identity: str,
        realm_user_id: str,
        roles: Iterable[str],
        expiration: datetime | None,
    ) -> dict[str, Any]: ...


def seed_demo(fake: Servable, *, out: Output | None = None) -> dict[str, Any]:
    """Fill ``fake`` with a small demo data set and describe it on ``out``.

    Three recordings of the main account (two mono, one dual-channel) and one of a demo
    subaccount, all with short WAV tones as media, plus two Flex tokens valid for 12 hours:
    ``demo-supervisor-token`` (may play recordings) and ``demo-agent-token`` (agent only).
    Returns the seeded sids and tokens.
    """
    started = now()
    subaccount_sid, subaccount_token = new_sid("AC"), secrets.token_hex(16)
    fake.add_subaccount(subaccount_sid, subaccount_token, friendly_name="Demo subaccount")
    specs = [
        (fake.account_sid, 1, 3.0, 440.0, 50),
        (fake.account_sid, 1, 5.0, 523.25, 35),
        (fake.account_sid, 2, 4.0, 392.0, 20),
        (subaccount_sid, 1, 2.0, 659.25, 5),
    ]
    recordings = []
    for account_sid, channels, seconds, frequency, minutes_ago in specs:
        sid = new_sid("RE")
        fake.add_recording(
            sid,
            account_sid=account_sid,
            media=make_wav(seconds, channels=channels, frequency=frequency),
            channels=channels,
            start_time=started - timedelta(minutes=minutes_ago),
        )
        recordings.append({"sid": sid, "account_sid": account_sid, "channels": channels})
    expiration = datetime.now(UTC) + timedelta(hours=12)
    tokens = {
        "demo-supervisor-token": fake.add_token(
            "demo-supervisor-token",
            identity="sam_40example_2Ecom",
            realm_user_id="sam@example.com",
            roles=["supervisor", "wfo.full_access"],
            expiration=expiration,
        ),
        "demo-agent-token": fake.add_token(
            "demo-agent-token",
            identity="alex_40example_2Ecom",
            realm_user_id="alex@example.com",
            roles=["agent"],
            expiration=expiration,
        ),
    }
    if out is not None:
        out.write(f"Demo subaccount: {subaccount_sid} (auth token {subaccount_token})\n")
        for recording in recordings:
            out.write(
                f"Recording {recording['sid']} account {recording['account_sid']}"
                f" channels {recording['channels']}\n"
            )
        for token, answer in tokens.items():
            out.write(
                f"Flex token {token!r}: roles {answer['roles']}, until {answer['expiration']}\n"
            )
        out.flush()
    return {
        "subaccount": {"sid": subaccount_sid, "auth_token": subaccount_token},
        "recordings": recordings,
        "tokens": list(tokens),
    }


def serve_forever(fake: Servable, *, demo: bool = False, out: Output | None = None) -> None:
    """Run ``fake`` in the foreground until Ctrl-C or SIGTERM (``python -m faketwilio``)."""
    out = out or sys.stdout
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    fake.start()
    try:
        out.write(f"Fake Twilio for {fake.account_sid} listening on {fake.url}\n")
        out.write(f"Set TWILIO_API_OVERRIDE={fake.url}  (control API: {fake.url}/_fake/)\n")
        if demo:
            seed_demo(fake, out=out)
        out.flush()
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        out.write("Fake Twilio stopped\n")
        out.flush()
