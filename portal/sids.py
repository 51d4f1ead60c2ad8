"""Twilio SIDs: one vocabulary of their shapes for every module that checks one.

A SID is a two-letter prefix naming the resource and 32 hex digits. Callers use
``PATTERN.fullmatch(value)``: ``match`` with ``$`` would also accept a trailing newline, which
then reaches a database lookup or an audit row as a different string from any real SID.

It lives in the kernel, not in ``recordings``, because the audit core checks SIDs too and
imports nothing from ``recordings``.
"""

from __future__ import annotations

import re

_HEX32 = "[0-9a-fA-F]{32}"

ACCOUNT_SID = re.compile(f"AC{_HEX32}")
RECORDING_SID = re.compile(f"RE{_HEX32}")
CALL_SID = re.compile(f"CA{_HEX32}")
CONFERENCE_SID = re.compile(f"CF{_HEX32}")
WORKER_SID = re.compile(f"WK{_HEX32}")
WORKSPACE_SID = re.compile(f"WS{_HEX32}")
TASK_SID = re.compile(f"WT{_HEX32}")
RESERVATION_SID = re.compile(f"WR{_HEX32}")
TASK_QUEUE_SID = re.compile(f"WQ{_HEX32}")
CREDENTIAL_SID = re.compile(f"CR{_HEX32}")
"""Public keys and AWS credentials registered at Twilio share the ``CR`` prefix."""
API_KEY_SID = re.compile(f"SK{_HEX32}")
"""An API key: its SID and secret authenticate like the account SID and auth token."""


def is_sid(pattern: re.Pattern[str], value: object) -> bool:
    """True when ``value`` is a string in exactly the shape ``pattern`` describes."""
    return isinstance(value, str) and pattern.fullmatch(value) is not None
