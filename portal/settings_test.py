"""Settings for the test suite: the real settings, pointed at this machine's PostgreSQL, Redis,
a moto S3 server and the fake Twilio (the last two are started by ``conftest.py``).

Each value is only a default: ``DATABASE_URL=… pytest`` points a run elsewhere, which lets
several runs share a machine without sharing a database.
"""

import os

os.environ.setdefault("DJANGO_DEBUG", "1")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portal")
# pytest-xdist workers (gw0, gw1, …) each get their own Redis database, as they get their own
# PostgreSQL database, so one worker's flush never empties another's queues.
_worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
os.environ.setdefault("REDIS_URL", f"redis://127.0.0.1:6379/{1 + int(_worker or 0) % 8}")
os.environ.setdefault("TWILIO_ACCOUNT_SID", "AC" + "a" * 32)
os.environ.setdefault("TWILIO_AUTH_TOKEN", "0123456789abcdef0123456789abcdef")
os.environ.setdefault(
    "PORTAL_MEDIA_ROOT", os.path.join(os.path.dirname(os.path.dirname(__file__)), "var", "test-media")
)
os.environ.setdefault("LOG_FORMAT", "json")

from portal.settings import *  # noqa: F403

# Tests publish to the real Redis broker; the ones that need a task's effect run it through
# ``celery_worker`` or call the service directly.
CELERY_TASK_ALWAYS_EAGER = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast test users only
