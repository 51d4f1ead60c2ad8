"""Who a log row is about, the way an officer knows them: Flex's encoded identity decoded, and
the agent's name and e-mail from the portal's worker directory.

Flex writes an identity that is an e-mail with every character outside ``[A-Za-z0-9]`` as ``_``
and its two hex digits (``sam@example.com`` is ``sam_40example_2Ecom``: ``_40`` is ``@``,
``_2E`` is ``.``, ``_2D`` is ``-``), so an officer who types the e-mail finds nothing in a log
that holds only the encoded form. :func:`flex_identity_encode` and :func:`flex_identity_decode`
convert between the two (the stdlib's percent-decoding does the byte work; the rule is Flex's
own, so no library has it).

The audit core imports nothing of ``recordings`` (import-linter), yet the worker directory is
``recordings.models.FlexWorker``. So the directory is handed in: the compliance console
(``audit.admin.people``) registers one with :func:`people_directory_register` when Django
loads the admin (every process does, commands and workers included); without one, matching
and describing fall back to the encoding alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import unquote_to_bytes

# ``_`` and two hex digits: one byte of the UTF-8 form of a character Flex encoded.
_ENCODED_BYTE = re.compile(r"_([0-9A-Fa-f]{2})")
_PLAIN = re.compile(r"[A-Za-z0-9]")
# What an officer types that may be part of a worker's name, e-mail or identity: long enough
# not to match half the directory.
MIN_PARTIAL_LENGTH = 3


def flex_identity_encode(text: str) -> str:
    """``text`` as Flex writes it into an identity: each character outside ``[A-Za-z0-9]`` as
    ``_XX`` per byte of its UTF-8 form (upper-case hex, as Flex writes ``_2E``)."""
    return "".join(
        char if _PLAIN.fullmatch(char) else "".join(f"_{byte:02X}" for byte in char.encode())
        for char in text
    )


def flex_identity_decode(identity: str) -> str:
    """The text behind a Flex identity (``sam_40example_2Ecom`` → ``sam@example.com``), or
    ``""`` when ``identity`` holds no encoded character or does not decode to printable text
    (``john_doe`` is a name with an underscore, not an encoding)."""
    if not _ENCODED_BYTE.search(identity) or "_" in _ENCODED_BYTE.sub("", identity):
        # Nothing encoded, or a literal ``_`` left over: not (wholly) Flex's encoding.
        return ""
    try:
        text = unquote_to_bytes(_ENCODED_BYTE.sub(r"%\1", identity.replace("%", "%25"))).decode()
    except UnicodeDecodeError:
        return ""
    if not text.isprintable():
        return ""
    return text if text != identity else ""


def identity_spellings(term: str) -> set[str]:
    """The identities an officer's ``term`` may stand for: itself, and Flex's encoding of it
    (and of its lower-case form: e-mail addresses are compared without case by people)."""
    spellings = {term}
    if any(not _PLAIN.fullmatch(char) for char in term):
        spellings |= {flex_identity_encode(term), flex_identity_encode(term.lower())}
    return spellings


@dataclass(frozen=True)
class Person:
    """How an officer knows the caller behind an identity or a worker SID."""

    identity: str = ""
    worker_sid: str = ""
    email: str = ""
    name: str = ""
    team: str = ""

    @property
    def label(self) -> str:
        """``Sam Taylor <sam@example.com>``, or whichever part is known, or ``""``."""
        if self.name and self.email:
            return f"{self.name} <{self.email}>"
        return self.name or self.email


@dataclass
class PeopleMatch:
    """The identities and worker SIDs a search term names (see :func:`people_match`)."""

    identities: set[str] = field(default_factory=set)
    worker_sids: set[str] = field(default_factory=set)
    people: list[Person] = field(default_factory=list)


class PeopleDirectory(Protocol):
    """Where agents' names and e-mails come from (the console registers Flex's workers)."""

    def find(self, term: str) -> list[Person]:
        """People whose e-mail, name, worker SID or identity matches ``term``."""

    def describe(self, identities: set[str], worker_sids: set[str]) -> list[Person]:
        """The known people among these identities and worker SIDs."""


class _NoDirectory:
    """No directory: nothing but Flex's encoding is known."""

    def find(self, term: str) -> list[Person]:
        return []

    def describe(self, identities: set[str], worker_sids: set[str]) -> list[Person]:
        return []


_directory: PeopleDirectory = _NoDirectory()


def people_directory_register(directory: PeopleDirectory) -> None:
    """Make ``directory`` the one :func:`people_match` and :func:`people_describe` ask."""
    global _directory
    _directory = directory


def people_match(*, term: str) -> PeopleMatch:
    """What an officer's ``term`` (an e-mail, a name, a worker SID, an identity or part of
    one) names: the identities and worker SIDs to filter the log on. The term itself and its
    Flex encoding always count, so an e-mail finds its encoded identity without any directory
    entry; the directory adds the identities and SIDs of every person it matches."""
    term = term.strip()
    found = PeopleMatch()
    if not term:
        return found
    found.identities |= identity_spellings(term)
    people = _directory.find(term)
    for person in people:
        if person.identity:
            found.identities.add(person.identity)
        if person.worker_sid:
            found.worker_sids.add(person.worker_sid)
    found.people = people
    return found


def people_describe(
    *, identities: Iterable[str], worker_sids: Iterable[str] = ()
) -> dict[str, Person]:
    """A :class:`Person` for each identity and worker SID given (keyed by both), from the
    directory where it knows them and from Flex's encoding otherwise (the decoded e-mail).
    One directory lookup for the lot, so a page of rows costs one query."""
    wanted = {identity for identity in identities if identity}
    sids = {sid for sid in worker_sids if sid}
    described: dict[str, Person] = {}
    if wanted or sids:
        for person in _directory.describe(wanted, sids):
            if person.worker_sid:
                described[person.worker_sid] = person
            if person.identity:
                described[person.identity] = person
    for identity in wanted:
        known = described.get(identity)
        decoded = flex_identity_decode(identity)
        email = decoded if "@" in decoded else ""
        if known is None:
            if email:
                described[identity] = Person(identity=identity, email=email)
        elif not known.email and email:
            described[identity] = Person(
                identity=identity,
                worker_sid=known.worker_sid,
                email=email,
                name=known.name,
                team=known.team,
            )
    return described


def person_of(people: dict[str, Person], *, identity: str, worker_sid: str = "") -> Person | None:
    """The person :func:`people_describe` found for a row's identity, else its worker SID."""
    return people.get(identity) or (people.get(worker_sid) if worker_sid else None)
