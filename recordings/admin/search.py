"""The recordings list's search: a typed SID is found through its column's index.

Django's ``=field`` search fields compare with ``UPPER(column) = UPPER(term)``, which none of
the table's indexes serve: on a few hundred thousand recordings every search scanned the table.
Twilio writes SIDs as two capital letters and 32 lowercase hex digits, so a SID the officer
pastes (in any case) is brought to that form and compared with ``=`` on the one column its
prefix names. Anything else cannot be a SID those columns hold (they hold nothing else): it
is compared as typed, still through the indexes, and finds nothing unless a column holds it.
"""

from __future__ import annotations

from django.db.models import Q

from portal.sids import ACCOUNT_SID, CALL_SID, RECORDING_SID

# The column each SID prefix names (a recording SID is never a call SID, and so on).
_SID_COLUMNS = (
    (RECORDING_SID, "sid"),
    (CALL_SID, "call_sid"),
    (ACCOUNT_SID, "account_sid"),
)


def recording_sid_search(term: str) -> Q:
    """The recordings a search ``term`` names: one recording, call or account SID matched
    exactly (case aside) on the column its prefix names; any other text matched exactly on
    the three columns. Every branch is an indexed equality."""
    text = term.strip()
    canonical = text[:2].upper() + text[2:].lower()
    for pattern, column in _SID_COLUMNS:
        if pattern.fullmatch(canonical):
            return Q(**{column: canonical})
    return Q(sid=text) | Q(call_sid=text) | Q(account_sid=text)
