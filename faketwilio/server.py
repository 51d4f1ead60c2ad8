"""A fake Twilio REST API on loopback, for the test suite, the benchmarks and the demo.

The portal talks to Twilio only through ``TWILIO_API_OVERRIDE``: a request for
``https://{product}.twilio.com{path}`` goes to ``{override}/{product}{path}``. The fake
answers those requests the way Twilio does (same paths, parameters, JSON field names, date
formats, list envelopes, pagination and error bodies) for the small part of Twilio the portal
uses, one module per product:

* :mod:`faketwilio.api_2010` (``api``): accounts, and the Recording resource of API
  2010-04-01 (fetch, list, delete, media);
* :mod:`faketwilio.iam` (``iam``, ``accounts``): Flex token validation, and
  ``Credentials/PublicKeys`` and ``Credentials/AWS``;
* :mod:`faketwilio.video` (``video``): ``RecordingSettings`` and ``CompositionSettings``;
* :mod:`faketwilio.taskrouter` (``taskrouter``): a Flex workspace's tasks (``ETag`` and
  ``If-Match``), workers, task queues and reservations, with its state in
  :mod:`faketwilio.taskrouter_state` and its event callbacks in
  :mod:`faketwilio.taskrouter_events`.

This module is the facade, :class:`FakeTwilio`, that wires them together: the in-memory
:mod:`~faketwilio.state`, the :mod:`~faketwilio.routing` of the products' route tables, the
:mod:`~faketwilio.requestlog`, the :mod:`~faketwilio.faults`, the ``/_fake/``
:mod:`~faketwilio.control` API, and the :mod:`~faketwilio.httpserver` server. Tests drive it
in-process through its methods; a separately running fake (``python -m faketwilio``, see
:mod:`faketwilio.demo`) is driven over HTTP under ``/_fake/`` (no auth there). Failures can
be injected (error status, delay, dropped connection, listener down) so that the portal's
retry and error handling can be exercised without the real Twilio.

It is plain Python (standard library, plus ``cryptography`` to check uploaded public keys) and
never imports Django.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import requests

import faketwilio.api_2010 as api_2010
import faketwilio.iam as iam
import faketwilio.taskrouter as taskrouter
import faketwilio.video as video
from faketwilio.control import control
from faketwilio.demo import seed_demo, serve_forever
from faketwilio.faults import Faults, failure
from faketwilio.httpserver import HttpError, Request, Response, Server
from faketwilio.recording_formats import make_wav
from faketwilio.requestlog import RecordedRequest, RequestLog
from faketwilio.routing import Router
from faketwilio.state import State, new_sid
from faketwilio.taskrouter_events import event_params, post_event
from faketwilio.taskrouter_state import Workspace, new_workspace

# The names this module had before it was split into modules, re-exported so that imports
# such as ``from faketwilio.server import FakeTwilio, serve_forever`` keep working.
__all__ = [
    "FakeTwilio",
    "RecordedRequest",
    "make_wav",
    "new_sid",
    "seed_demo",
    "serve_forever",
]


class FakeTwilio:
    """A fake Twilio HTTP server for one main account (and its subaccounts), on loopback.

    Start it with :meth:`start`; point the portal at :attr:`url` (``TWILIO_API_OVERRIDE``).
    Every Twilio endpoint requires HTTP Basic auth with the account SID and auth token (or a
    subaccount's, for that subaccount's ``/2010-04-01/Accounts/{AC}`` paths), or with the SID
    and secret of an API key added by :meth:`add_api_key`. All methods are thread-safe: the
    server answers on many threads while a test changes the state.
    """

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        friendly_name: str = "Fake Twilio main account",
        verbose: bool = False,
    ) -> None:
        self._state = State(account_sid, auth_token, friendly_name)
        self.host = host
        self.port = port
        self.verbose = verbose
        self._lock = threading.Lock()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._started = False
        self._router = Router(
            self._state, [*api_2010.ROUTES, *iam.ROUTES, *video.ROUTES, *taskrouter.ROUTES]
        )
        self._faults = Faults()
        self._log = RequestLog()

    @property
    def account_sid(self) -> str:
        """The main account's SID (``AC`` + 32 hex digits)."""
        return self._state.account_sid

    @account_sid.setter
    def account_sid(self, value: str) -> None:
        self._state.account_sid = value

    @property
    def auth_token(self) -> str:
        """The main account's auth token."""
        return self._state.auth_token

    @auth_token.setter
    def auth_token(self, value: str) -> None:
        self._state.auth_token = value

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """Base URL to use as ``TWILIO_API_OVERRIDE``, e.g. ``http://127.0.0.1:41234``."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the server is listening."""
        return self._server is not None

    def start(self) -> FakeTwilio:
        """Listen (port 0 picks a free port, kept for later :meth:`up`) on a daemon thread."""
        with self._lock:
            if self._server is not None:
                return self
            server = Server((self.host, self.port), self._respond, lambda: self.verbose)
            self.port = server.server_address[1]
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"faketwilio:{self.port}",
                daemon=True,
            )
            self._thread.start()
            self._started = True
        return self

    def stop(self) -> None:
        """Stop listening and close every open connection (state is kept)."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server, self._thread = None, None
        if server is None:
            return
        server.close()
        if thread is not None:
            thread.join(timeout=5)

    def down(self) -> None:
        """Simulate Twilio being unreachable: connections are refused until :meth:`up`."""
        self.stop()

    def up(self) -> None:
        """Listen again, on the same port as before :meth:`down`."""
        self.start()

    def __enter__(self) -> FakeTwilio:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        """Forget recordings, tokens, subaccounts, API keys, settings, credentials, TaskRouter
        workspaces, faults and the log.

        A fake that was started and then taken :meth:`down` listens again, so a test that
        forgot :meth:`up` cannot leave a shared fake unreachable for the tests after it.
        """
        self._state.clear()
        self._faults.clear()
        self._log.clear()
        if self._started and not self.running:
            self.up()

    def add_subaccount(
        self, sid: str, auth_token: str, friendly_name: str = "", status: str = "active"
    ) -> dict[str, Any]:
        """Create (or replace) a subaccount of the main account; returns its Account JSON.

        Its credentials then authenticate requests to its own ``/2010-04-01/Accounts/{sid}``
        paths, and recordings can be added to it.
        """
        with self._state.lock:
            account = self._state.add_subaccount(sid, auth_token, friendly_name, status)
            return api_2010.account_json(account)

    def add_api_key(
        self,
        sid: str | None = None,
        secret: str | None = None,
        *,
        account_sid: str | None = None,
        friendly_name: str = "",
        main: bool = False,
    ) -> dict[str, Any]:
        """Create an API key of the main account (or of subaccount ``account_sid``); returns
        ``sid``, ``secret``, ``account_sid``, ``friendly_name`` and ``main``.

        Its SID and secret then authenticate as that account, everywhere its own credentials
        do. ``sid`` defaults to a random ``SK…``, ``secret`` to a random 32-character string; a
        standard key (``main=False``, Twilio's default) is refused on the Accounts resources.
        """
        key = self._state.add_api_key(
            sid or new_sid("SK"),
            secret or secrets.token_urlsafe(24),
            account_sid=account_sid or self._state.account_sid,
            friendly_name=friendly_name,
            main=main,
        )
        return {
            "sid": key.sid,
            "secret": key.secret,
            "account_sid": key.account_sid,
            "friendly_name": key.friendly_name,
            "main": key.main,
        }

    def remove_api_key(self, sid: str) -> None:
        """Revoke an API key (its requests answer 401 from now on); no-op if absent."""
        self._state.remove_api_key(sid)

    def add_recording(
        self,
        sid: str,
        *,
        account_sid: str | None = None,
        call_sid: str | None = None,
        status: str = "completed",
        media: bytes | None = None,
        channels: int = 1,
        source: str = "DialVerb",
        track: str = "both",
        duration: int | str | None = None,
        start_time: datetime | None = None,
        date_created: datetime | None = None,
        date_updated: datetime | None = None,
        price: str | None = "-0.0025",
        price_unit: str = "USD",
        error_code: int | None = None,
        encryption_details: dict[str, Any] | None = None,
        media_url: str | None = None,
        conference_sid: str | None = None,
    ) -> dict[str, Any]:
        """Create (or replace) a Recording; returns its resource JSON as Twilio serves it.

        ``media=None`` means Twilio holds no media (download answers 404); ``media_url``
        outside ``https://api.twilio.com/`` means the media is stored externally (also 404).
        ``duration`` defaults to the WAV's length in seconds (``-1`` while in progress),
        ``call_sid`` to a random ``CA…``, ``date_created`` to ``start_time`` or now. Datetimes
        are kept to the second, as Twilio shows them.
        """
        with self._state.lock:
            recording = self._state.add_recording(
                sid,
                account_sid=account_sid,
                call_sid=call_sid,
                status=status,
                media=media,
                channels=channels,
                source=source,
                track=track,
                duration=duration,
                start_time=start_time,
                date_created=date_created,
                date_updated=date_updated,
                price=price,
                price_unit=price_unit,
                error_code=error_code,
                encryption_details=encryption_details,
                media_url=media_url,
                conference_sid=conference_sid,
            )
            return api_2010.recording_json(recording)

    def update_recording(self, sid: str, **fields: Any) -> dict[str, Any]:
        """Change fields of a recording (same names as :meth:`add_recording`); returns its JSON.

        ``date_updated`` moves to now unless given. Raises KeyError for an unknown sid.
        """
        with self._state.lock:
            return api_2010.recording_json(self._state.update_recording(sid, fields))

    def remove_recording(self, sid: str) -> None:
        """Forget a recording entirely (404 even with ``IncludeSoftDeleted``); no-op if absent."""
        self._state.remove_recording(sid)

    def get_recording(self, sid: str) -> dict[str, Any] | None:
        """The recording's resource JSON (status ``deleted`` once deleted), or None."""
        with self._state.lock:
            recording = self._state.recordings.get(sid)
            return api_2010.recording_json(recording) if recording else None

    def get_media(self, sid: str) -> bytes | None:
        """The media bytes Twilio holds for a recording (None: none, deleted or unknown)."""
        return self._state.media(sid)

    def add_token(
        self,
        token: str,
        *,
        identity: str = "alice",
        realm_user_id: str = "alice@example.com",
        roles: Iterable[str] = ("supervisor",),
        worker_sid: str | None = None,
        expiration: datetime | None = None,
    ) -> dict[str, Any]:
        """Make ``token`` a Flex token that IAM validates; returns the validation answer.

        ``worker_sid`` defaults to a ``WK…`` derived from the token, ``expiration`` to an hour
        from now (a past expiration makes the token validate as expired, code 20104).
        """
        entry = self._state.add_token(
            token,
            identity=identity,
            realm_user_id=realm_user_id,
            roles=roles,
            worker_sid=worker_sid,
            expiration=expiration,
        )
        return iam.token_answer(entry)

    @property
    def public_keys(self) -> dict[str, str]:
        """Uploaded public keys: ``CR…`` sid → the PEM text as sent (a snapshot)."""
        return self._state.credential_secrets("PublicKeys")

    @property
    def aws_credentials(self) -> dict[str, str]:
        """Uploaded AWS credentials: ``CR…`` sid → ``ACCESS_KEY_ID:SECRET`` (a snapshot)."""
        return self._state.credential_secrets("AWS")

    @property
    def video_settings(self) -> dict[str, dict[str, Any]]:
        """``RecordingSettings`` and ``CompositionSettings`` as Twilio would answer them now."""
        with self._state.lock:
            return {kind: video.settings_json(self._state, kind) for kind in video.SETTINGS_KINDS}

    # ------------------------------------------------------------------ TaskRouter

    def _workspace(self, sid: str) -> Workspace:
        try:
            workspace: Workspace = self._state.workspaces[sid]
        except KeyError:
            raise KeyError(f"unknown workspace {sid}: add_workspace() it first") from None
        return workspace

    def add_workspace(
        self,
        sid: str | None = None,
        *,
        friendly_name: str = "Flex Task Assignment",
        event_callback_url: str = "",
    ) -> dict[str, Any]:
        """Create (or replace, emptied) a TaskRouter workspace of the main account; returns its
        JSON. ``sid`` defaults to a random ``WS…``."""
        with self._state.lock:
            workspace = new_workspace(
                sid,
                account_sid=self._state.account_sid,
                friendly_name=friendly_name,
                event_callback_url=event_callback_url,
            )
            self._state.workspaces[workspace.sid] = workspace
            return taskrouter.workspace_json(workspace)

    def add_task_queue(
        self, workspace_sid: str, *, sid: str | None = None, friendly_name: str
    ) -> dict[str, Any]:
        """Create (or replace) a task queue of the workspace; returns its JSON."""
        with self._state.lock:
            workspace = self._workspace(workspace_sid)
            queue = workspace.add_task_queue(sid, friendly_name)
            return taskrouter.task_queue_json(workspace, queue)

    def add_worker(
        self,
        workspace_sid: str,
        *,
        sid: str | None = None,
        friendly_name: str,
        attributes: dict[str, Any] | None = None,
        activity_name: str = "Available",
    ) -> dict[str, Any]:
        """Create (or replace) a worker (``friendly_name`` is the Flex identity, e.g.
        ``sam_40example_2Ecom``); returns its JSON with ``attributes`` as a dict."""
        with self._state.lock:
            workspace = self._workspace(workspace_sid)
            worker = workspace.add_worker(sid, friendly_name, attributes, activity_name)
            return taskrouter.worker_view(workspace, worker)

    def update_worker(
        self,
        workspace_sid: str,
        sid: str,
        *,
        attributes: dict[str, Any] | None = None,
        friendly_name: str | None = None,
        activity_name: str | None = None,
    ) -> dict[str, Any]:
        """Replace a worker's attributes, name or activity (those given); returns its JSON
        with ``attributes`` as a dict. KeyError for an unknown worker."""
        with self._state.lock:
            workspace = self._workspace(workspace_sid)
            worker = workspace.update_worker(
                sid,
                attributes=attributes,
                friendly_name=friendly_name,
                activity_name=activity_name,
            )
            return taskrouter.worker_view(workspace, worker)

    def add_task(
        self,
        workspace_sid: str,
        *,
        sid: str | None = None,
        attributes: dict[str, Any],
        task_queue_sid: str | None = None,
        task_channel_unique_name: str = "voice",
        assignment_status: str = "pending",
    ) -> dict[str, Any]:
        """Create (or replace) a task; returns its JSON with ``attributes`` as a dict and its
        ``etag``."""
        with self._state.lock:
            workspace = self._workspace(workspace_sid)
            task = workspace.add_task(
                sid,
                attributes=attributes,
                task_queue_sid=task_queue_sid,
                channel=task_channel_unique_name,
                assignment_status=assignment_status,
            )
            return taskrouter.task_view(workspace, task)

    def get_task(self, workspace_sid: str, sid: str) -> dict[str, Any] | None:
        """The task's JSON with ``attributes`` as a dict and its ``etag``; None when the
        workspace or the task does not exist (any more)."""
        with self._state.lock:
            workspace = self._state.workspaces.get(workspace_sid)
            task = workspace.tasks.get(sid) if workspace else None
            return taskrouter.task_view(workspace, task) if workspace and task else None

    def update_task(
        self,
        workspace_sid: str,
        sid: str,
        *,
        attributes: dict[str, Any] | None = None,
        assignment_status: str | None = None,
    ) -> dict[str, Any]:
        """Change a task as another writer would (``attributes`` replaces the whole object;
        a new ETag); returns what :meth:`get_task` would. KeyError for an unknown task."""
        with self._state.lock:
            workspace = self._workspace(workspace_sid)
            task = workspace.update_task(
                sid, attributes=attributes, assignment_status=assignment_status
            )
            return taskrouter.task_view(workspace, task)

    def remove_task(self, workspace_sid: str, sid: str) -> None:
        """Forget a task (its GET and POST answer 404, error 20404, from now on); no-op if
        absent."""
        with self._state.lock:
            self._workspace(workspace_sid).remove_task(sid)

    def add_reservation(
        self,
        workspace_sid: str,
        task_sid: str,
        *,
        worker_sid: str,
        sid: str | None = None,
        status: str = "pending",
    ) -> dict[str, Any]:
        """Create (or replace) a reservation of ``worker_sid`` for the task; returns its JSON."""
        with self._state.lock:
            workspace = self._workspace(workspace_sid)
            reservation = workspace.add_reservation(
                task_sid, worker_sid=worker_sid, sid=sid, status=status
            )
            return taskrouter.reservation_json(workspace, reservation)

    def update_reservation(
        self, workspace_sid: str, task_sid: str, sid: str, *, status: str
    ) -> dict[str, Any]:
        """Move a reservation to ``status`` (``accepted``, ``completed``…); returns its JSON."""
        with self._state.lock:
            workspace = self._workspace(workspace_sid)
            reservation = workspace.update_reservation(task_sid, sid, status=status)
            return taskrouter.reservation_json(workspace, reservation)

    def taskrouter_event(
        self,
        event_type: str,
        *,
        workspace_sid: str,
        task_sid: str | None = None,
        worker_sid: str | None = None,
        reservation_sid: str | None = None,
        task_queue_sid: str | None = None,
        timestamp_ms: int | None = None,
        **extra: Any,
    ) -> dict[str, str]:
        """The form parameters TaskRouter would POST for this event, filled from the current
        state of the named resources, with a fresh ``Sid`` (see
        :mod:`faketwilio.taskrouter_events`); ``extra`` adds or replaces parameters."""
        return event_params(
            self._state,
            event_type,
            workspace_sid=workspace_sid,
            task_sid=task_sid,
            worker_sid=worker_sid,
            reservation_sid=reservation_sid,
            task_queue_sid=task_queue_sid,
            timestamp_ms=timestamp_ms,
            extra=extra,
        )

    def post_taskrouter_event(
        self, url: str, params: dict[str, str], *, auth_token: str | None = None
    ) -> requests.Response:
        """POST ``params`` form-encoded to ``url`` with a valid ``X-Twilio-Signature`` (from
        the main account's auth token unless ``auth_token`` is given), as TaskRouter does."""
        return post_event(url, params, auth_token or self._state.auth_token)

    # ------------------------------------------------------------------ faults

    def fail(
        self, status: int = 503, *, count: int | None = None, path_contains: str | None = None
    ) -> None:
        """Answer the next ``count`` matching requests (None: until :meth:`reset_faults`) with
        ``status`` and a Twilio-style JSON error body (code ``20000 + status``)."""
        self._faults.fail(status, count=count, path_contains=path_contains)

    def slow(
        self, seconds: float, *, count: int | None = None, path_contains: str | None = None
    ) -> None:
        """Delay the next ``count`` matching requests by ``seconds`` before answering."""
        self._faults.slow(seconds, count=count, path_contains=path_contains)

    def drop(self, *, count: int | None = None, path_contains: str | None = None) -> None:
        """Close the connection of the next ``count`` matching requests without answering."""
        self._faults.drop(count=count, path_contains=path_contains)

    def race_task_attributes(
        self, workspace_sid: str, task_sid: str, changes: dict[str, Any], *, count: int = 1
    ) -> None:
        """Just before each of the next ``count`` POSTs to this task that carry ``If-Match``,
        merge ``changes`` into its attributes as another writer would (a new ETag), so that
        the POST answers 412: a concurrent change between a read and a write."""
        with self._state.lock:
            self._workspace(workspace_sid).race(task_sid, changes, count)

    def reset_faults(self) -> None:
        """Remove every injected fault (:meth:`fail`, :meth:`slow`, :meth:`drop`,
        :meth:`race_task_attributes`)."""
        self._faults.clear()
        with self._state.lock:
            for workspace in self._state.workspaces.values():
                for task in workspace.tasks.values():
                    task.races.clear()

    # ------------------------------------------------------------------ request log

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far (oldest first, ``/_fake/`` excluded), a snapshot."""
        return self._log.snapshot()

    def count(self, method: str | None = None, path_contains: str | None = None) -> int:
        """How many recorded requests have this method and a path containing this text."""
        return self._log.count(method, path_contains)

    def clear_requests(self) -> None:
        """Empty the request log (state and faults are kept)."""
        self._log.clear()

    # ------------------------------------------------------------------ one request

    def _respond(self, request: Request) -> Response | None:
        """Answer one HTTP request (on a server thread); None drops the connection."""
        if request.path == "/_fake" or request.path.startswith("/_fake/"):
            return control(self, request)
        entry = RecordedRequest(
            method=request.method,
            path=request.path,
            query=request.query,
            headers=dict(request.headers.items()),
            body=request.body,
            received_at=datetime.now(UTC),
        )
        self._log.record(entry)
        delay, fault = self._faults.take(request.path)
        if delay:
            time.sleep(delay)
        if fault is not None and fault.kind == "drop":
            return None
        if fault is not None:
            response = failure(fault)
        else:
            try:
                response = self._router.dispatch(request)
            except Exception as exc:  # a bug in the fake must still answer, like Twilio's 500
                response = Response.error(HttpError(500, 20500, f"Internal error: {exc!r}"))
        entry.status = response.status
        return response
