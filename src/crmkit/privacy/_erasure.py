"""Erasure: which fields hold personal data, how they are anonymised, and the keyed
hashes that keep an erased person from being re-created (the suppression list).

Anonymising keeps every record and every id: the erased contact's id stays as the
tombstone id that deals (with their amounts), leads, tickets and history keep referring
to, so revenue and funnel figures still add up. Employees' names (owners, assignees,
actors, who moved a stage) stay: they are not the erased person's data.
"""

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final, TypeVar
from uuid import UUID

import attrs

from crmkit.clock import ensure_utc
from crmkit.errors import ValidationError
from crmkit.models import (
    Account,
    Activity,
    AuditEntry,
    Consent,
    Contact,
    CustomFields,
    Deal,
    DoNotContact,
    EmailAddress,
    Entity,
    Erasure,
    Lead,
    PhoneNumber,
    Segment,
    StageChange,
    Suppression,
    Task,
    Ticket,
)
from crmkit.privacy._secrets import check_key

__all__ = [
    "ERASED_TEXT",
    "KEPT_FIELDS",
    "PERSONAL_FIELDS",
    "anonymise",
    "check_secret",
    "identifier_digest",
    "suppressions_of",
]

_E = TypeVar("_E", bound=Entity)

ERASED_TEXT: Final = "[erased]"
"""What a required free text (a deal's title, a ticket's subject) says once erased."""

_EMPTY: Final = CustomFields()

PERSONAL_FIELDS: Final[Mapping[type[Entity], Mapping[str, Any]]] = MappingProxyType(
    {
        Contact: MappingProxyType(
            {
                "first_name": None,
                "last_name": None,
                "email": None,
                "phone": None,
                "tags": frozenset(),
                "custom": _EMPTY,
                "do_not_contact": True,
            }
        ),
        Lead: MappingProxyType({"disqualified_reason": None, "custom": _EMPTY}),
        Deal: MappingProxyType(
            {"title": ERASED_TEXT, "lost_reason": None, "tags": frozenset(), "custom": _EMPTY}
        ),
        Ticket: MappingProxyType(
            {
                "subject": ERASED_TEXT,
                "description": None,
                "tags": frozenset(),
                "custom": _EMPTY,
            }
        ),
        Activity: MappingProxyType({"subject": None, "body": None, "properties": _EMPTY}),
        Task: MappingProxyType({"title": ERASED_TEXT, "notes": None}),
        Consent: MappingProxyType({"contact_point": None, "evidence_ip": None}),
        DoNotContact: MappingProxyType({}),
        StageChange: MappingProxyType({"reason": None}),
        AuditEntry: MappingProxyType({}),
    }
)
"""Per entity that holds a person's data, the fields erasure overwrites and the value
it writes (a contact also becomes ``do_not_contact``). An audit entry's values are
cleared when its ``field`` is personal (see :func:`anonymise`)."""

KEPT_FIELDS: Final[Mapping[type[Entity], frozenset[str]]] = MappingProxyType(
    {
        Contact: frozenset({"country", "language", "account_id", "lifecycle_stage", "owner"}),
        Lead: frozenset(
            {"contact_id", "source", "channel", "status", "score", "owner", "pipeline"}
            | {"stage", "deal_id"}
        ),
        Deal: frozenset(
            {"pipeline", "stage", "amount", "probability", "probability_manual", "status"}
            | {"contact_id", "account_id", "lead_id", "expected_close", "closed_at", "owner"}
            | {"forecast_category"}
        ),
        Ticket: frozenset(
            {"contact_id", "channel", "status", "priority", "account_id", "assignee", "csat"}
        ),
        Activity: frozenset(
            {"contact_id", "kind", "occurred_at", "amount", "deal_id", "ticket_id", "actor"}
        ),
        Task: frozenset(
            {"due_at", "kind", "status", "assignee", "contact_id", "deal_id", "ticket_id"}
            | {"remind_at", "completed_at"}
        ),
        Consent: frozenset(
            {"contact_id", "channel", "purpose", "status", "source", "decided_at", "expires_at"}
            | {"legal_basis", "evidence_form", "evidence_text"}
        ),
        DoNotContact: frozenset(
            {"contact_id", "channel", "reason", "source", "decided_at", "lifted"}
        ),
        StageChange: frozenset(
            {"subject", "subject_id", "pipeline", "from_stage", "to_stage", "at", "by"}
            | {"amount", "probability", "expected_close"}
        ),
        AuditEntry: frozenset({"subject", "subject_id", "action", "at", "field", "by"}),
    }
)
"""Per entity, the fields erasure keeps: ids, stages, amounts, times and employees.
Every field of an entity in :data:`PERSONAL_FIELDS` is in exactly one of the two tables
(a test checks it, so a new field must be classified before it can be stored)."""

_STAMPS: Final = frozenset({"id", "version", "created_at", "updated_at"})
_SUBJECTS: Final[Mapping[str, type[Entity]]] = MappingProxyType(
    {"contact": Contact, "lead": Lead, "deal": Deal, "ticket": Ticket}
)
_NOT_PERSONAL: Final = (Account, Segment, Suppression, Erasure)


def anonymise(item: _E, *, at: datetime) -> _E:
    """``item`` with its personal fields overwritten (see :data:`PERSONAL_FIELDS`),
    stamped ``at``; ``item`` itself when it holds nothing personal.

    An audit entry of a personal field loses its ``before`` and ``after`` values; one of
    a kept field (a deal's amount) keeps them.

    >>> from crmkit.clock import FixedClock
    >>> from datetime import datetime, UTC
    >>> now = datetime(2026, 3, 1, tzinfo=UTC)
    >>> ada = Contact.new(email="ada@example.com", first_name="Ada", clock=FixedClock(now))
    >>> gone = anonymise(ada, at=now)
    >>> (gone.id == ada.id, gone.email, gone.first_name, gone.do_not_contact)
    (True, None, None, True)
    """
    if not isinstance(item, Entity):
        raise ValidationError("item", item, "expected an entity")
    at = ensure_utc(at, "at")
    if isinstance(item, AuditEntry):
        subject = _SUBJECTS[item.subject.value]
        if item.field is None or item.field not in PERSONAL_FIELDS[subject]:
            return item
        if item.before is None and item.after is None:
            return item
        changes: Mapping[str, Any] = {"before": None, "after": None}
    else:
        personal = PERSONAL_FIELDS.get(type(item))
        if personal is None:
            if isinstance(item, _NOT_PERSONAL):
                return item
            raise ValidationError("item", item, "no erasure is defined for this entity")
        changes = {k: v for k, v in personal.items() if getattr(item, k) != v}
        if not changes:
            return item
    return attrs.evolve(item, **changes, updated_at=max(at, item.updated_at))


def check_secret(secret: object) -> bytes:
    """``secret`` if it can key the suppression hashes: ``bytes`` of 16 or more."""
    return check_key(secret, "privacy_secret", 16)


def identifier_digest(secret: bytes, kind: str, value: str) -> str:
    """The keyed hash of an e-mail address or phone number: HMAC-SHA256 under
    ``secret`` of ``kind`` and the normalised value (the e-mail address folded as the
    identity index folds it, the phone number in E.164), in hex.

    The same person gives the same digest however the address is spelled; without the
    secret a digest cannot be tested against a guessed address.

    >>> key = b"0123456789abcdef"
    >>> identifier_digest(key, "email", "Ada@Example.COM") == identifier_digest(
    ...     key, "email", "ada@example.com")
    True
    """
    check_secret(secret)
    if not isinstance(value, str):
        raise ValidationError("value", value, "expected an e-mail address or phone number")
    if kind == "email":
        normal = EmailAddress(value).casefold()
    elif kind == "phone":
        normal = str(PhoneNumber(value))
    else:
        raise ValidationError("kind", kind, "expected 'email' or 'phone'")
    message = f"{kind}:{normal}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def suppressions_of(
    contact: Contact, secret: bytes, *, erasure_id: UUID | None, at: datetime
) -> list[Suppression]:
    """The suppressions that keep ``contact`` from being re-created: one for its e-mail
    address and one for its phone number, those it has."""
    if not isinstance(contact, Contact):
        raise ValidationError("contact", contact, "expected a Contact")
    check_secret(secret)
    at = ensure_utc(at, "at")
    made = []
    for kind, value in (("email", contact.email), ("phone", contact.phone)):
        if value is not None:
            digest = identifier_digest(secret, kind, value)
            made.append(
                Suppression(
                    id=Suppression.id_for(digest),
                    version=1,
                    created_at=at,
                    updated_at=at,
                    kind=kind,
                    digest=digest,
                    erasure_id=erasure_id,
                )
            )
    return made
