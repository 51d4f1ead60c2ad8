"""Liveness and readiness endpoints for load balancers and orchestrators."""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
import time
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils.cache import add_never_cache_headers
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.views import APIView

from portal.negotiation import FixedFormat
from recordings.integrations import storage

logger = logging.getLogger(__name__)


class _HealthView(APIView):
    authentication_classes: list = []
    permission_classes: list = []
    content_negotiation_class = FixedFormat
    http_method_names = ["get"]


_READINESS = inline_serializer(
    "Readiness",
    fields={
        "status": serializers.ChoiceField(choices=["ready", "unavailable"]),
        "checks": serializers.DictField(
            child=serializers.CharField(), help_text='each dependency: "ok" or "failed: …"'
        ),
    },
)


class HealthzView(_HealthView):
    """Liveness, for load balancers."""

    @extend_schema(
        operation_id="healthz",
        summary="Liveness: 200 while the process runs",
        responses={
            200: inline_serializer(
                "Liveness", fields={"status": serializers.ChoiceField(choices=["ok"])}
            )
        },
    )
    def get(self, request: Request) -> JsonResponse:
        """200 while the process can answer at all."""
        return healthz_answer(request)


class ReadyzView(_HealthView):
    """Readiness, for orchestrators."""

    @extend_schema(
        operation_id="readyz",
        summary="Readiness: the database, the broker and the storage answer",
        responses={
            200: OpenApiResponse(_READINESS, description="every dependency answers"),
            503: OpenApiResponse(_READINESS, description="the checks named failed"),
        },
    )
    def get(self, request: Request) -> JsonResponse:
        """200 when every dependency answers, 503 naming those that do not."""
        return readyz_answer(request)


def healthz_answer(request: HttpRequest) -> JsonResponse:
    """200 while the process can answer at all; checks nothing else on purpose."""
    response = JsonResponse({"status": "ok"})
    add_never_cache_headers(response)
    return response


def _check_database() -> None:
    # Runs in a thread of its own, so on a connection of its own: closed here, not left open.
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()


def _check_redis(timeout: float) -> None:
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=timeout, socket_timeout=timeout
    )
    try:
        client.ping()
    finally:
        client.close()


def readiness_checks(*, timeout: float) -> dict[str, Callable[[], None]]:
    """The dependencies that must answer before this instance takes traffic, each check given
    ``timeout`` seconds where its client takes a timeout."""
    checks: dict[str, Callable[[], None]] = {
        "database": _check_database,
        "storage": functools.partial(storage.check_ready, timeout=timeout),
    }
    if settings.REDIS_URL:
        checks["redis"] = functools.partial(_check_redis, timeout)
    return checks


# The thread of each check still running, so a dependency that hangs holds one thread per
# process, not one more per request.
_running: dict[str, threading.Thread] = {}
_running_lock = threading.Lock()


def _outcome(check: Callable[[], None], outcomes: dict[str, str], name: str) -> None:
    try:
        check()
    except Exception as exc:
        outcomes[name] = f"failed: {type(exc).__name__}"
    else:
        outcomes[name] = "ok"


def checks_run(checks: dict[str, Callable[[], None]], *, timeout: float) -> dict[str, str]:
    """Run every check at once and answer within ``timeout`` seconds whatever hangs: ``ok``, or
    ``failed: …`` naming the error, or that no answer came in time.

    Each check runs in a daemon thread (one that hangs never holds the process at exit). A
    check whose previous run is still hanging is not started again: it is reported failed at
    once, so repeated probes of a hung dependency do not pile up threads.
    """
    outcomes: dict[str, str] = {}
    started: list[threading.Thread] = []
    for name, check in checks.items():
        with _running_lock:
            previous = _running.get(name)
            if previous is not None and previous.is_alive():
                outcomes[name] = "failed: the previous check has not answered yet"
                continue
            # The request's context (its id in log lines) goes with the check.
            thread = threading.Thread(
                target=contextvars.copy_context().run,
                args=(_outcome, check, outcomes, name),
                name=f"readiness-{name}",
                daemon=True,
            )
            _running[name] = thread
        thread.start()
        started.append(thread)
    deadline = time.monotonic() + timeout
    for thread in started:
        thread.join(max(0.0, deadline - time.monotonic()))
    return {
        name: outcomes.get(name) or f"failed: no answer within {timeout:g} s" for name in checks
    }


def readyz_answer(request: HttpRequest) -> JsonResponse:
    """200 when every dependency answers; 503 naming each one that does not. Answers within
    ``READINESS_TIMEOUT`` seconds (plus the time to start the checks) even when one hangs."""
    timeout = settings.READINESS_TIMEOUT
    results = checks_run(readiness_checks(timeout=timeout), timeout=timeout)
    for name, outcome in results.items():
        if outcome != "ok":
            logger.warning("readiness check %s %s", name, outcome)
    ready = all(value == "ok" for value in results.values())
    response = JsonResponse(
        {"status": "ready" if ready else "unavailable", "checks": results},
        status=200 if ready else 503,
    )
    add_never_cache_headers(response)
    return response


healthz = HealthzView.as_view()
readyz = ReadyzView.as_view()
