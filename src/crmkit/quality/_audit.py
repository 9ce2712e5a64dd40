"""The completeness audit: fill rates, invalid and stale values, unreachable contacts.

:meth:`crmkit.crm.CRM.audit` asks the store for the counts (no entity is loaded for
fill rates, stale or unreachable contacts) and builds an :class:`AuditReport`;
:func:`invalid_values` is the check per record it runs on the values the basic model
validation lets through.
"""

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Final

import attrs

from crmkit._extras import import_extra
from crmkit.errors import MissingExtra
from crmkit.models import Account, Contact
from crmkit.quality._normalise import name_key, only_legal_form

__all__ = ["AuditReport", "FieldFill", "InvalidValue", "invalid_values"]


@attrs.frozen
class FieldFill:
    """How many ``entity`` records have a value in ``field``, of ``total``."""

    entity: str
    field: str
    filled: int
    total: int

    @property
    def rate(self) -> float | None:
        """The share of records with a value; ``None`` when there are none (0 of 0 is
        no rate, as every ratio of nothing in crmkit's reports)."""
        return self.filled / self.total if self.total else None


@attrs.frozen
class InvalidValue:
    """A stored value that passed the basic checks but cannot be right."""

    entity: str
    id: Any
    field: str
    value: object
    reason: str


@attrs.frozen
class AuditReport:
    """What :meth:`crmkit.crm.CRM.audit` found, at ``at``."""

    at: datetime
    contacts: int
    accounts: int
    fills: tuple[FieldFill, ...]
    invalid: tuple[InvalidValue, ...]
    stale_after_days: int
    stale: int
    """Contacts older than ``stale_after_days`` without any activity in that time."""
    unreachable: int
    """Contacts with neither e-mail nor phone, or marked do-not-contact."""

    def fill(self, entity: str, field: str) -> FieldFill:
        """The fill of one field; :class:`KeyError` for a field the audit did not count."""
        for fill in self.fills:
            if (fill.entity, fill.field) == (entity, field):
                return fill
        raise KeyError((entity, field))

    def summary(self) -> str:
        """A few lines for a person: the worst filled fields first."""
        lines = [
            f"{self.contacts} contacts, {self.accounts} accounts at {self.at:%Y-%m-%d %H:%M} UTC",
            f"unreachable contacts: {self.unreachable}",
            f"stale contacts (no activity in {self.stale_after_days} days): {self.stale}",
            f"invalid values: {len(self.invalid)}",
        ]
        lines.extend(
            f"  {fill.entity}.{fill.field}: {fill.rate:.0%} filled"
            for fill in sorted(self.fills, key=lambda f: (f.rate or 0.0, f.entity, f.field))
            if fill.rate is not None  # no records of the entity: no line
        )
        return "\n".join(lines)


_DIGITS: Final = re.compile(r"\d")
_DOMAIN: Final = re.compile(r"(?=.{1,253}\Z)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}\Z")


def _phone_problem(number: str) -> str | None:
    try:
        pn: Any = import_extra("phonenumbers", extra="quality", feature="phone audit")
    except MissingExtra:
        return None
    try:
        parsed = pn.parse(number, None)
    except pn.NumberParseException:
        return "not a phone number"
    if not pn.is_valid_number(parsed):
        return "not a valid number in its country's numbering plan"
    return None


def invalid_values(record: Contact | Account) -> Iterator[InvalidValue]:
    """The values of a contact or account that cannot be right: names with digits or
    only titles and punctuation, phone numbers outside their numbering plan (with the
    ``quality`` extra), account names that are only a legal form, malformed domains.

    >>> from crmkit.models import Contact
    >>> [v.field for v in invalid_values(Contact.new(first_name="Dr.", last_name="R2D2"))]
    ['first_name', 'last_name']
    """
    entity = record.entity_name
    if isinstance(record, Contact):
        for field in ("first_name", "last_name"):
            value = getattr(record, field)
            if value is None:
                continue
            if _DIGITS.search(value):
                yield InvalidValue(entity, record.id, field, value, "a name has no digits")
            elif not name_key(value):
                yield InvalidValue(entity, record.id, field, value, "only a title or punctuation")
        if record.phone is not None:
            problem = _phone_problem(record.phone)
            if problem is not None:
                yield InvalidValue(entity, record.id, "phone", record.phone, problem)
    else:
        if only_legal_form(record.name):
            yield InvalidValue(entity, record.id, "name", record.name, "only a legal form")
        if record.domain is not None and not _DOMAIN.match(record.domain.strip().casefold()):
            yield InvalidValue(entity, record.id, "domain", record.domain, "not a domain name")
