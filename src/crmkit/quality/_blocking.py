"""Blocking keys: which pairs of records are compared at all.

Two records are compared when they share the value of at least one blocking key. The
keys of contacts and accounts that every store indexes (:data:`CONTACT_KEYS`,
:data:`ACCOUNT_KEYS`) serve both the batch search and the look-up before a contact is
created; a host may block a batch on any other fields too.
"""

from collections.abc import Iterable, Sequence
from typing import Any, Final

import attrs

from crmkit.errors import ValidationError
from crmkit.models import Account, Contact
from crmkit.quality._compare import _NORMALISE, Normaliser, field_value, to_normaliser
from crmkit.quality._normalise import as_text

__all__ = [
    "ACCOUNT_KEYS",
    "CONTACT_KEYS",
    "BlockingKey",
    "match_keys",
]


def _check_fields(_i: object, _a: object, value: Any) -> None:
    if (
        not isinstance(value, tuple)
        or not value
        or not all(isinstance(f, str) and f.strip() for f in value)
    ):
        raise ValidationError("fields", value, "expected a non-empty tuple of field names")


def _check_name(_i: object, _a: object, value: Any) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        raise ValidationError("name", value, "expected a name of 1 to 64 characters")


def _check_prefix(_i: object, _a: object, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError("prefix", value, "expected a whole number of 0 or more")


@attrs.frozen
class BlockingKey:
    """A key that puts records with the same value into one block.

    The value joins the normalised ``fields`` (each cut to its first ``prefix``
    characters unless ``prefix`` is 0) with ``|``; a record with any of them missing or
    blank has no value for this key, so empty values never block together.

    >>> key = BlockingKey("name3", ("first_name", "last_name"), Normaliser.NAME, prefix=3)
    >>> key.value({"first_name": "Dr. Ada", "last_name": "Lovelace"})
    'ada|lov'
    """

    name: str = attrs.field(validator=_check_name)
    fields: tuple[str, ...] = attrs.field(validator=_check_fields)
    normaliser: Normaliser = attrs.field(default=Normaliser.TEXT, converter=to_normaliser)
    prefix: int = attrs.field(default=0, validator=_check_prefix)

    def value(self, record: object) -> str | None:
        """This key's value for ``record``, or ``None``."""
        return self._value_of([field_value(record, field) for field in self.fields])

    def values(self, records: Sequence[object]) -> list[str | None]:
        """:meth:`value` of each record, computing each distinct combination once."""
        done: dict[tuple[object, ...], str | None] = {}
        found = []
        fields, value_of = self.fields, self._value_of
        for record in records:
            if type(record) is dict:
                raw = tuple([record.get(field) for field in fields])
            else:
                raw = tuple([field_value(record, field) for field in fields])
            try:
                value = done[raw]
            except KeyError:
                value = done[raw] = value_of(raw)
            except TypeError:  # a value that is no dictionary key
                value = value_of(raw)
            found.append(value)
        return found

    def _value_of(self, raws: Sequence[object]) -> str | None:
        normalise = _NORMALISE[self.normaliser]
        parts = []
        for field, raw in zip(self.fields, raws, strict=True):
            if raw is None:
                return None
            text = normalise(as_text(raw, field))
            if self.prefix:
                text = text[: self.prefix]
            if not text:
                return None
            parts.append(text)
        return "|".join(parts)


CONTACT_KEYS: Final[tuple[BlockingKey, ...]] = (
    BlockingKey("email", ("email",), Normaliser.EMAIL),
    BlockingKey("phone", ("phone",), Normaliser.RAW),
    BlockingKey("name", ("first_name", "last_name"), Normaliser.NAME),
    BlockingKey("name3", ("first_name", "last_name"), Normaliser.NAME, prefix=3),
    BlockingKey("last_name_country", ("last_name", "country"), Normaliser.NAME),
)
"""The blocking keys every store indexes for contacts: the e-mail key (provider rules),
the E.164 phone, the full name without titles, the first three letters of first and last
name (catches typos further on), and last name with country (catches changed first
names)."""

ACCOUNT_KEYS: Final[tuple[BlockingKey, ...]] = (
    BlockingKey("domain", ("domain",), Normaliser.TEXT),
    BlockingKey("company", ("name",), Normaliser.COMPANY),
    BlockingKey("company3_country", ("name", "country"), Normaliser.COMPANY, prefix=3),
)
"""The blocking keys every store indexes for accounts: the domain, the company name
without legal form, and its first three letters with the country."""


def match_keys(
    record: Contact | Account | Any, keys: Sequence[BlockingKey] | None = None
) -> frozenset[tuple[str, str]]:
    """The ``(key name, value)`` pairs of ``record`` under ``keys`` (the indexed keys
    of its entity by default): what a store indexes and what a look-up asks for.

    >>> from crmkit.models import Contact
    >>> sorted(match_keys(Contact.new(email="A.B+x@gmail.com", first_name="Ab")))
    [('email', 'ab@gmail.com')]
    """
    if keys is None:
        keys = ACCOUNT_KEYS if isinstance(record, Account) else CONTACT_KEYS
    given: object = keys
    if isinstance(given, str | bytes) or not isinstance(given, Sequence):
        raise ValidationError("keys", keys, "expected a sequence of blocking keys")
    for index, key in enumerate(keys):
        if not isinstance(key, BlockingKey):
            raise ValidationError(f"keys[{index}]", key, "expected a BlockingKey")
    return keys_of(record, keys)


def keys_of(record: object, keys: Sequence[BlockingKey]) -> frozenset[tuple[str, str]]:
    """:func:`match_keys` of checked ``keys``."""
    found = set()
    for key in keys:
        value = key.value(record)
        if value is not None:
            found.add((key.name, value))
    return frozenset(found)


def blocks(
    records: Iterable[tuple[Any, object]], keys: Sequence[BlockingKey]
) -> dict[tuple[str, str], list[Any]]:
    """The ids of ``records`` (``(id, record)`` pairs) per shared key value."""
    found: dict[tuple[str, str], list[Any]] = {}
    for id, record in records:
        for key in match_keys(record, keys):
            found.setdefault(key, []).append(id)
    return found
