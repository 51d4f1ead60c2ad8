"""Schemathesis over the portal's own OpenAPI document (``/api/schema/``), through the WSGI
application in this process: for generated requests to every documented operation, no answer
is a 5xx and every answer matches the document (status, content type, headers, body).

Bounded and deterministic: a few examples per operation, derandomized, so it runs in seconds
as part of the suite. ``make test`` runs it; so does ``pytest portal/tests/test_openapi_fuzz.py``.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

pytestmark = pytest.mark.django_db

# Read from the portal itself, through WSGI, as an integrator would read it.
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """What Django's test client does around each request: the request signals must not close
    the database connection, which holds the test's transaction."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture(autouse=True)
def _twilio(fake_twilio):
    """Twilio IAM is the fake: a generated token is checked over HTTP like a real one."""
    return fake_twilio


@schema.parametrize()
@settings(
    max_examples=8,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_5xx_and_every_answer_matches_the_document(case):
    case.call_and_validate()
