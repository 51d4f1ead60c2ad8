"""Gunicorn's settings for the portal:
``gunicorn portal.wsgi:application -c python:portal.gunicorn``.

Gunicorn writes its access and error logs itself, outside Django: left to its defaults they skip
the portal's redacting filter, and its access line holds the whole request line, query string
included (a media link's ``?token=``), and the user name it decodes from a ``Basic`` header (the
whole Flex token when the header has no colon). Here both loggers go through the portal's own
``LOGGING`` (the redacting filter, request ids, JSON lines in production) in the master and in
every worker, and the access line names the path without its query string and never the user.
"""

from __future__ import annotations

import copy
import os
from typing import Any

from django.conf import settings
from gunicorn.glogging import Logger

from portal.logging import request_id_var
from portal.middleware import REQUEST_ID_HEADER

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

# Atoms gunicorn offers to access log formats that can hold a secret: the user decoded from a
# Basic header, the query string, the raw request line, and credential headers either way.
_SECRET_ATOMS = (
    "u",
    "q",
    "{authorization}i",
    "{proxy-authorization}i",
    "{cookie}i",
    "{set-cookie}o",
)


class PortalLogger(Logger):
    """Gunicorn's logger, with the atoms that can carry a secret emptied whatever access log
    format an operator sets, and the request's id (the response's ``X-Request-ID``) on the
    access line's record like on every other log line of that request."""

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        """Gunicorn's atoms, without user, query string or credential headers; ``r`` (the
        request line) keeps method, path and protocol only."""
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for name in _SECRET_ATOMS:
            if name in atoms:
                atoms[name] = "-"
        atoms["r"] = f"{atoms['m']} {atoms['U']} {atoms['H']}"
        return atoms

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        """Log the access line with the request id the portal answered."""
        headers = {name.lower(): value for name, value in resp.headers}
        token = request_id_var.set(headers.get(REQUEST_ID_HEADER.lower(), "-"))
        try:
            super().access(resp, req, environ, request_time)
        finally:
            request_id_var.reset(token)


# Gunicorn reads the names below. Its own loggers are named in LOGGING (no handler of their
# own, propagating to the root's redacting handler); a copy, as logging.config may alter it.
logger_class = PortalLogger
logconfig_dict = copy.deepcopy(settings.LOGGING)
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'
# Threaded workers: a request waiting on a slow upstream (a hung S3 or Twilio, each call bounded
# by STORAGE_*_TIMEOUT or TWILIO_HTTP_TIMEOUT) holds one thread, and the worker's other threads go
# on answering webhooks, url_provider and /readyz; a sync worker would wait with it. The portal
# keeps no per-request state outside the request (request ids are context variables, caches of
# secrets are locked, each thread has its own database connection). ``--threads`` or
# GUNICORN_CMD_ARGS change the count.
worker_class = "gthread"
threads = 8
