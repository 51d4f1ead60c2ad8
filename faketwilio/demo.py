"""The fake in the foreground: :func:`serve_forever` (``python -m faketwilio``, the
``run_fake_twilio`` management command) and the demo data set :func:`seed_demo` fills it with.

The demo's SIDs are stable and made as the portal's own ``seed_demo`` command makes its demo
recordings' (:func:`demo_sid`), so the fake's recordings, the Flex task that handled one of
their calls, and the recordings the portal seeds are the same ones; :func:`demo_flex_sids`
names the Flex part (workspace :data:`DEMO_WORKSPACE_SID`) for the portal's demo.

Both drive the fake through the methods of :class:`Servable`, which
:class:`faketwilio.FakeTwilio` has.
"""

from __future__ import annotations

import hashlib
import secrets
import signal
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from faketwilio.recording_formats import make_wav
from faketwilio.state import new_sid, now

#: The demo's Flex TaskRouter workspace (``TWILIO_WORKSPACE_SID`` of a demo portal).
DEMO_WORKSPACE_SID = "WS" + "d" * 32
#: Where the demo workspace sends its events: the portal of ``make run``.
DEMO_EVENT_CALLBACK_URL = "http://127.0.0.1:8000/twilio/taskrouter-events"


def demo_sid(prefix: str, n: int) -> str:
    """The stable SID of demo object ``n``: the same as the portal's ``seed_demo`` command
    gives its recordings (``RE``) and their calls (``CA``)."""
    return prefix + hashlib.sha256(f"portal-demo-{prefix}-{n}".encode()).hexdigest()[:32]


def _agent(
    name: str, email: str, team: str, roles: list[str], manager: str, location: str
) -> dict[str, Any]:
    """A Flex worker's attributes as Flex Insights reads them (its identity is the e-mail,
    encoded: ``_40`` is ``@``, ``_2E`` is ``.``)."""
    identity = email.replace("@", "_40").replace(".", "_2E").replace("-", "_2D")
    return {
        "identity": identity,
        "attributes": {
            "full_name": name,
            "email": email,
            "contact_uri": f"client:{identity}",
            "team_id": team.lower().replace(" ", "-"),
            "team_name": team,
            "department_name": "Customer Support",
            "location": location,
            "manager": manager,
            "roles": roles,
            "routing": {"skills": ["support"], "levels": {"support": 1}},
        },
    }


#: The demo's Flex workers: key → SID, identity (``friendly_name``) and attributes.
DEMO_WORKERS: dict[str, dict[str, Any]] = {
    "sam": {
        "sid": demo_sid("WK", 1),
        **_agent("Sam Taylor", "sam@example.com", "Team Blue", ["agent"], "Jordan Lee", "Dublin"),
    },
    "alex": {
        "sid": demo_sid("WK", 2),
        **_agent("Alex Kim", "alex@example.com", "Team Green", ["agent"], "Riley Chen", "Lisbon"),
    },
    "jordan": {
        "sid": demo_sid("WK", 3),
        **_agent(
            "Jordan Lee",
            "jordan@example.com",
            "Team Blue",
            ["supervisor", "wfo.full_access"],
            "Morgan Reyes",
            "Dublin",
        ),
    },
}


def demo_flex_sids() -> dict[str, Any]:
    """The SIDs of the demo's Flex part: the workspace, its "Support" queue, the workers
    (``sam``: agent of Team Blue who handled the demo call, ``alex``: agent of Team Green,
    ``jordan``: supervisor of Team Blue), and the voice task of the demo call with Sam's
    accepted reservation; the call is the one of demo recording 1 (``recording_sid``,
    ``call_sid``: the customer's leg), in conference ``conference_sid`` with Sam's leg
    ``worker_call_sid``."""
    return {
        "workspace_sid": DEMO_WORKSPACE_SID,
        "task_queue_sid": demo_sid("WQ", 1),
        "workers": {key: worker["sid"] for key, worker in DEMO_WORKERS.items()},
        "task_sid": demo_sid("WT", 1),
        "reservation_sid": demo_sid("WR", 1),
        "recording_sid": demo_sid("RE", 1),
        "call_sid": demo_sid("CA", 1),
        "worker_call_sid": demo_sid("CA", 101),
        "conference_sid": demo_sid("CF", 1),
    }


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
        call_sid: str | None,
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
        worker_sid: str | None,
        expiration: datetime | None,
    ) -> dict[str, Any]: ...

    def add_workspace(
        self, sid: str | None = None, *, friendly_name: str, event_callback_url: str
    ) -> dict[str, Any]: ...

    def add_task_queue(
        self, workspace_sid: str, *, sid: str | None, friendly_name: str
    ) -> dict[str, Any]: ...

    def add_worker(
        self,
        workspace_sid: str,
        *,
        sid: str | None,
        friendly_name: str,
        attributes: dict[str, Any] | None,
        activity_name: str,
    ) -> dict[str, Any]: ...

    def add_task(
        self,
        workspace_sid: str,
        *,
        sid: str | None,
        attributes: dict[str, Any],
        task_queue_sid: str | None,
        task_channel_unique_name: str,
        assignment_status: str,
    ) -> dict[str, Any]: ...

    def add_reservation(
        self, workspace_sid: str, task_sid: str, *, worker_sid: str, sid: str | None, status: str
    ) -> dict[str, Any]: ...


def seed_demo(fake: Servable, *, out: Output | None = None) -> dict[str, Any]:
    """Fill ``fake`` with a small demo data set and describe it on ``out``.

    Three recordings of the main account (two mono, one dual-channel; the SIDs, call SIDs,
    lengths and start times of the portal's ``seed_demo`` recordings) and one of a demo
    subaccount, all with short WAV tones as media; two Flex tokens valid for 12 hours,
    ``demo-supervisor-token`` (Jordan Lee, supervisor of Team Blue: may play recordings) and
    ``demo-agent-token`` (Alex Kim, agent of Team Green); and the Flex workspace of
    :func:`demo_flex_sids`, where Sam Taylor's task handled the call of recording 1. Returns
    the seeded sids and tokens.
    """
    started = now()
    subaccount_sid, subaccount_token = new_sid("AC"), secrets.token_hex(16)
    fake.add_subaccount(subaccount_sid, subaccount_token, friendly_name="Demo subaccount")
    # (sid, call sid, account, channels, seconds, tone, age): the first three as the portal's
    # seed_demo makes them.
    specs: list[tuple[str, str | None, str, int, float, float, timedelta]] = [
        (
            demo_sid("RE", n),
            demo_sid("CA", n),
            fake.account_sid,
            channels,
            seconds,
            tone,
            timedelta(days=n, hours=n),
        )
        for n, (seconds, channels, tone) in enumerate(
            [(6.0, 1, 440.0), (9.0, 2, 523.25), (4.0, 1, 392.0)], start=1
        )
    ]
    specs.append((new_sid("RE"), None, subaccount_sid, 1, 2.0, 659.25, timedelta(minutes=5)))
    recordings = []
    for sid, call_sid, account_sid, channels, seconds, frequency, age in specs:
        fake.add_recording(
            sid,
            account_sid=account_sid,
            call_sid=call_sid,
            media=make_wav(seconds, channels=channels, frequency=frequency),
            channels=channels,
            start_time=started - age,
        )
        recordings.append({"sid": sid, "account_sid": account_sid, "channels": channels})
    flex = seed_demo_flex(fake)
    workers = flex["workers"]
    expiration = datetime.now(UTC) + timedelta(hours=12)
    tokens = {
        "demo-supervisor-token": fake.add_token(
            "demo-supervisor-token",
            identity=DEMO_WORKERS["jordan"]["identity"],
            realm_user_id=DEMO_WORKERS["jordan"]["attributes"]["email"],
            roles=DEMO_WORKERS["jordan"]["attributes"]["roles"],
            worker_sid=workers["jordan"],
            expiration=expiration,
        ),
        "demo-agent-token": fake.add_token(
            "demo-agent-token",
            identity=DEMO_WORKERS["alex"]["identity"],
            realm_user_id=DEMO_WORKERS["alex"]["attributes"]["email"],
            roles=DEMO_WORKERS["alex"]["attributes"]["roles"],
            worker_sid=workers["alex"],
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
        out.write(
            f"Flex workspace {flex['workspace_sid']}: task {flex['task_sid']} (call"
            f" {flex['call_sid']}) accepted by Sam Taylor ({workers['sam']})\n"
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
        "flex": flex,
    }


def seed_demo_flex(fake: Servable) -> dict[str, Any]:
    """Create the demo's Flex workspace (see :func:`demo_flex_sids`); returns its SIDs.

    The task's attributes are those Flex writes for an inbound call: the customer's
    ``call_sid`` and the ``conference`` with its participants' call SIDs.
    """
    sids = demo_flex_sids()
    workspace = sids["workspace_sid"]
    fake.add_workspace(
        workspace,
        friendly_name="Flex Task Assignment",
        event_callback_url=DEMO_EVENT_CALLBACK_URL,
    )
    fake.add_task_queue(workspace, sid=sids["task_queue_sid"], friendly_name="Support")
    for worker in DEMO_WORKERS.values():
        fake.add_worker(
            workspace,
            sid=worker["sid"],
            friendly_name=worker["identity"],
            attributes=worker["attributes"],
            activity_name="Available",
        )
    fake.add_task(
        workspace,
        sid=sids["task_sid"],
        attributes={
            "type": "inbound",
            "direction": "inbound",
            "channelType": "voice",
            "name": "+15555550100",
            "from": "+15555550100",
            "to": "+15555550199",
            "caller": "+15555550100",
            "called": "+15555550199",
            "call_sid": sids["call_sid"],
            "conference": {
                "sid": sids["conference_sid"],
                "participants": {
                    "customer": sids["call_sid"],
                    "worker": sids["worker_call_sid"],
                },
            },
        },
        task_queue_sid=sids["task_queue_sid"],
        task_channel_unique_name="voice",
        assignment_status="assigned",
    )
    fake.add_reservation(
        workspace,
        sids["task_sid"],
        worker_sid=sids["workers"]["sam"],
        sid=sids["reservation_sid"],
        status="accepted",
    )
    return sids


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
