"""Fixtures shared by the audit tests."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from audit.models import AccessLog
from audit.services import access_log_append
from audit.tests.helpers import RECORDING_SID
from recordings.models import Recording, RecordingStatus, SyncState


@pytest.fixture
def append_rows() -> Callable[[int], list[AccessLog]]:
    """Append ``n`` ordinary url_provider rows and answer them."""

    def append(count: int) -> list[AccessLog]:
        return [
            access_log_append(
                action="url_provider",
                outcome="allowed" if index % 2 == 0 else "denied",
                reason_code="allowed_by_rule" if index % 2 == 0 else "no_matching_rule",
                identity=f"agent_{index}",
                roles=["supervisor"],
                recording_sid=RECORDING_SID,
                client_ip="192.0.2.10",
                user_agent="pytest",
                request_id=f"req-{index}",
                detail={"n": index},
            )
            for index in range(count)
        ]

    return append


@pytest.fixture
def staff_client(django_user_model) -> Callable[..., Client]:
    """``staff_client(group)``: a logged-in test client for a new staff member in ``group``
    (``None``: no group at all; ``"superuser"``: a superuser); ``client.user`` is the user."""

    def make(group: str | None, username: str | None = None) -> Client:
        name = username or (group or "nobody").replace(" ", "_")
        user = django_user_model.objects.create_user(
            name, password="pw-not-used", is_staff=True, is_superuser=group == "superuser"
        )
        if group and group != "superuser":
            user.groups.add(Group.objects.get(name=group))
        client = Client()
        client.force_login(user)
        client.user = user
        return client

    return make


@pytest.fixture
def recording_factory() -> Callable[..., Recording]:
    """``recording_factory(**fields)``: a synced, completed ``Recording`` with a fresh SID."""

    def make(**fields) -> Recording:
        defaults = {
            "sid": "RE" + secrets.token_hex(16),
            "account_sid": "AC" + "a" * 32,
            "call_sid": "CA" + secrets.token_hex(16),
            "status": RecordingStatus.COMPLETED,
            "source": "DialVerb",
            "start_time": timezone.now() - timedelta(days=1),
            "sync_state": SyncState.SYNCED,
            "synced_at": timezone.now() - timedelta(hours=20),
        }
        defaults.update(fields)
        return Recording.objects.create(**defaults)

    return make
