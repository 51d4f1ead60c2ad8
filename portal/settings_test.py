"""Settings for the test suite: the real settings, pointed at this machine's PostgreSQL, Redis,
a moto S3 server and the fake Twilio (the last two are started by ``conftest.py``).

Each value is only a default: ``DATABASE_URL=… pytest`` points a run elsewhere, which lets
several runs share a machine without sharing a database.
"""

import os
from urllib.parse import urlsplit, urlunsplit

os.environ.setdefault("DJANGO_DEBUG", "1")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portal")
os.environ.setdefault("TWILIO_ACCOUNT_SID", "AC" + "a" * 32)
os.environ.setdefault("TWILIO_AUTH_TOKEN", "0123456789abcdef0123456789abcdef")
os.environ.setdefault(
    "PORTAL_MEDIA_ROOT",
    os.path.join(os.path.dirname(os.path.dirname(__file__)), "var", "test-media"),
)
os.environ.setdefault("LOG_FORMAT", "json")


def _redis_url_for_this_worker() -> str:
    """pytest-xdist workers (gw0, gw1, …) each get their own Redis database, as they get their
    own PostgreSQL database, so one worker's Celery worker never takes another's messages.

    Not written back to the environment: xdist's workers inherit the controller's environment,
    and would all end up on the controller's database.
    """
    parts = urlsplit(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/1"))
    base = int(parts.path.strip("/") or 0)
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    return urlunsplit(parts._replace(path=f"/{(base + worker) % 16}"))


_given_redis_url = os.environ.get("REDIS_URL")
os.environ["REDIS_URL"] = _redis_url_for_this_worker()
try:
    from portal.settings import *  # noqa: F403
finally:
    if _given_redis_url is None:
        del os.environ["REDIS_URL"]
    else:
        os.environ["REDIS_URL"] = _given_redis_url

# Tests publish to the real Redis broker; the ones that need a task's effect run it through a
# real Celery worker or call the service directly.
CELERY_TASK_ALWAYS_EAGER = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast test users only
# The test framework creates and migrates its `test_…` database as DATABASE_URL's role; an owner
# URL left in the environment must never send that migrate to the owner URL's database.
# audit/tests/test_database_roles.py runs `manage.py migrate` with both roles in a subprocess.
DATABASE_OWNER_URL = ""
