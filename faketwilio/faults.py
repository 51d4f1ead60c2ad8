"""Fault injection: make the fake fail, slow down or drop connections, so that the portal's
retry and error handling can be exercised without the real Twilio.

A :class:`Fault` applies to the next ``count`` requests whose path contains a text (or to
every request until cleared). For each Twilio API request the fake takes the matching faults
from its :class:`Faults` (:meth:`Faults.take`): every matching ``slow`` adds its delay, and
the first matching ``fail`` or ``drop`` decides the answer: :func:`failure` (a Twilio-style
error body) or the connection closed unanswered. ``/_fake/`` control requests are never
affected. Being unreachable altogether is not a fault here but the listener itself stopping:
:meth:`faketwilio.FakeTwilio.down` and :meth:`~faketwilio.FakeTwilio.up`. Neither is a lost
update: a concurrent writer changing a TaskRouter task between a read and a conditional write is
injected on the task itself (:meth:`faketwilio.FakeTwilio.race_task_attributes`, kept in
:mod:`faketwilio.taskrouter_state`), since it changes the state rather than the answer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http import HTTPStatus

from faketwilio.httpserver import HttpError, Response

_STATUSES = {status.value for status in HTTPStatus}


@dataclass
class Fault:
    """One injected fault; ``remaining`` counts down per matching request (None: no end)."""

    kind: str  # "fail" | "slow" | "drop"
    remaining: int | None
    path_contains: str | None
    status: int = 503
    seconds: float = 0.0

    def matches(self, path: str) -> bool:
        """True when this fault applies to a request for ``path``."""
        return self.path_contains is None or self.path_contains in path


def failure(fault: Fault) -> Response:
    """The answer of a ``fail`` fault: its status, code ``20000 + status``, the reason phrase."""
    phrase = HTTPStatus(fault.status).phrase if fault.status in _STATUSES else "Error"
    return Response.error(HttpError(fault.status, 20000 + fault.status, phrase))


class Faults:
    """The faults injected into one fake, in the order they were added; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def fail(self, status: int, *, count: int | None, path_contains: str | None) -> None:
        """Answer matching requests with ``status`` (4xx or 5xx)."""
        if not 400 <= status <= 599:
            raise ValueError("fail() needs a 4xx or 5xx status")
        self._add(Fault("fail", count, path_contains, status=status))

    def slow(self, seconds: float, *, count: int | None, path_contains: str | None) -> None:
        """Delay matching requests by ``seconds`` before answering."""
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        self._add(Fault("slow", count, path_contains, seconds=seconds))

    def drop(self, *, count: int | None, path_contains: str | None) -> None:
        """Close the connection of matching requests without answering."""
        self._add(Fault("drop", count, path_contains))

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._faults.clear()

    def _add(self, fault: Fault) -> None:
        if fault.remaining is not None and fault.remaining < 1:
            raise ValueError("count must be at least 1 (or None for 'until reset_faults')")
        with self._lock:
            self._faults.append(fault)

    def take(self, path: str) -> tuple[float, Fault | None]:
        """Consume the faults matching ``path``: total delay, and the fail/drop to apply."""
        delay, terminal = 0.0, None
        with self._lock:
            for fault in list(self._faults):
                if not fault.matches(path) or (fault.kind != "slow" and terminal is not None):
                    continue
                if fault.kind == "slow":
                    delay += fault.seconds
                else:
                    terminal = fault
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
        return delay, terminal
