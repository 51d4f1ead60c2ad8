"""The portal's Flex worker directory (``recordings.models.FlexWorker``) as the people
directory of the audit core (``audit.people``): how an officer's e-mail, name, worker SID or
part of an identity becomes the identities the log holds, and how a row's identity gets a name.

Registered when Django loads the admin (``audit.admin`` imports this module), so the console,
its background exports and ``export_audit_log`` all see the same directory.
"""

from __future__ import annotations

from django.db.models import Q

from audit.people import MIN_PARTIAL_LENGTH, Person, people_directory_register
from portal.sids import WORKER_SID, is_sid
from recordings.models import FlexWorker

# A name or a part of one matches at most this many workers: a search, not a listing.
FIND_LIMIT = 200


def _person(worker: FlexWorker) -> Person:
    return Person(
        identity=worker.friendly_name,
        worker_sid=worker.sid,
        email=worker.email,
        name=worker.full_name,
        team=worker.team_name,
    )


class FlexWorkerDirectory:
    """Looks people up among the portal's Flex workers (deleted workers included: the log
    outlives them)."""

    fields = ("sid", "friendly_name", "full_name", "email", "team_name")

    def find(self, term: str) -> list[Person]:
        """Workers whose e-mail or identity is ``term`` (no case), whose SID is ``term``, or,
        for three characters or more, whose name, e-mail or identity contains it."""
        condition = Q(email__iexact=term) | Q(friendly_name__iexact=term)
        if is_sid(WORKER_SID, term):
            condition |= Q(sid=term)
        if len(term) >= MIN_PARTIAL_LENGTH:
            condition |= (
                Q(full_name__icontains=term)
                | Q(email__icontains=term)
                | Q(friendly_name__icontains=term)
            )
        workers = FlexWorker.objects.filter(condition).only(*self.fields)[:FIND_LIMIT]
        return [_person(worker) for worker in workers]

    def describe(self, identities: set[str], worker_sids: set[str]) -> list[Person]:
        """The workers named by these identities (Flex's ``friendly_name``) or SIDs."""
        workers = FlexWorker.objects.filter(
            Q(friendly_name__in=identities) | Q(sid__in=worker_sids)
        ).only(*self.fields)
        return [_person(worker) for worker in workers]


people_directory_register(FlexWorkerDirectory())
