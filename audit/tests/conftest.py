"""Fixtures shared by the audit tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from audit.models import AccessLog
from audit.services import access_log_append
from audit.tests.helpers import RECORDING_SID


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
