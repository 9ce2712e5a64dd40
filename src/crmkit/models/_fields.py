"""Field checks and converters shared by the entities.

Converters put a value into its canonical form when they can and hand anything they
cannot read back unchanged; the check attached to the field (``metadata=check(...)``)
then rejects it with the field's name. The entity runs every check and reports every
problem at once (see ``Entity.__attrs_post_init__``).

Converters are module-level named functions because mypy's attrs plugin derives the
``__init__`` parameter types from their signatures.
"""

import ipaddress
import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Final, TypeVar
from uuid import UUID

from crmkit.clock import ensure_utc
from crmkit.errors import Problem, ValidationError
from crmkit.models._invalid import or_invalid
from crmkit.models._values import (
    CountryCode,
    CustomFields,
    EmailAddress,
    JSONScalar,
    LanguageCode,
    Money,
    PhoneNumber,
    has_surrogate,
    normalise_tags,
    parse_decimal,
)

Check = Callable[[Any], None]
_EnumT = TypeVar("_EnumT", bound=Enum)
"""Raises ``ValidationError`` (field ``""``: the value itself) when a value is invalid."""

CHECK_KEY: Final = "crmkit.check"
INT64: Final = 2**63
"""Integers are stored as 64-bit signed numbers on every database."""


def check(one: Check) -> dict[str, Check]:
    """Field metadata attaching the field's check."""
    return {CHECK_KEY: one}


# ---------------------------------------------------------------------------- checks


def optional(inner: Check) -> Check:
    def maybe(value: object) -> None:
        if value is not None:
            inner(value)

    return maybe


def is_uuid(value: object) -> None:
    if not isinstance(value, UUID):
        raise ValidationError("", value, "expected a UUID")


def is_version(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError("", value, "expected an int")
    if not 1 <= value < INT64:
        raise ValidationError("", value, "versions run from 1 to 2**63 - 1")


def is_utc(value: object) -> None:
    ensure_utc(value)


def is_date(value: object) -> None:
    if not isinstance(value, date) or isinstance(value, datetime):
        raise ValidationError("", value, "expected a date (without time)")


def is_bool(value: object) -> None:
    if not isinstance(value, bool):
        raise ValidationError("", value, "expected True or False")


def is_money(value: object) -> None:
    if not isinstance(value, Money):
        raise ValidationError("", value, "expected Money (a Decimal amount and a currency)")


def is_non_negative_money(value: object) -> None:
    is_money(value)
    assert isinstance(value, Money)
    if value.amount < 0:
        raise ValidationError("", value, "must not be negative")


def value_of(cls: type, what: str) -> Check:
    """The value is a ``cls`` (the field's converter made it from the raw input)."""

    def is_value(value: object) -> None:
        if not isinstance(value, cls):
            raise ValidationError("", value, f"expected {what}")

    return is_value


def to_member(enum: type[Enum]) -> Callable[[object], Any]:
    """A converter reading a member's value (``"email"``) as the member; any other
    value is left for :func:`member` to refuse, naming the field."""

    def convert(value: object) -> Any:
        if isinstance(value, str) and not isinstance(value, enum):
            for candidate in enum:
                if candidate.value == value:
                    return candidate
        return value

    return convert


def member_of(enum: type[_EnumT], value: object, field: str) -> _EnumT:
    """``value`` as a member of ``enum`` (the member or its value), or
    :class:`~crmkit.errors.ValidationError` naming ``field`` and the allowed values."""
    converted = to_member(enum)(value)
    if isinstance(converted, enum):
        return converted
    allowed = ", ".join(str(m.value) for m in enum)
    raise ValidationError(field, value, f"expected {enum.__name__}, one of: {allowed}")


def member(enum: type[Enum]) -> Check:
    allowed = ", ".join(str(m.value) for m in enum)

    def is_member(value: object) -> None:
        if not isinstance(value, enum):
            raise ValidationError("", value, f"expected {enum.__name__}, one of: {allowed}")

    is_member.enum = enum  # type: ignore[attr-defined]  # entities read a value as the member
    return is_member


def text(max_length: int, *, single_line: bool = True) -> Check:
    """A non-empty string without NUL (which PostgreSQL cannot store), at most ``max_length``."""

    def is_text(value: object) -> None:
        if not isinstance(value, str):
            raise ValidationError("", value, "expected a string")
        if not value.strip():
            raise ValidationError("", value, "must not be empty")
        if len(value) > max_length:
            raise ValidationError("", value, f"longer than {max_length} characters")
        if "\x00" in value:
            raise ValidationError("", value, "text cannot contain NUL characters")
        if has_surrogate(value):
            raise ValidationError("", value, "text cannot contain lone surrogates")
        if single_line and not value.isprintable():
            raise ValidationError("", value, "must be one line without control characters")

    return is_text


_KEY = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}\Z")


def is_key(value: object) -> None:
    """A machine key (pipeline, stage, purpose): lower case, digits, ``_ . -``; 1-63 chars."""
    if not isinstance(value, str) or not _KEY.match(value):
        raise ValidationError(
            "", value, "expected a key: lower-case letters, digits, '_', '.', '-' (1-63)"
        )


def is_ip(value: object) -> None:
    """An IPv4 or IPv6 address in its normal text form."""
    if not isinstance(value, str):
        raise ValidationError("", value, "expected an IPv4 or IPv6 address")
    try:
        normal = str(ipaddress.ip_address(value))
    except ValueError:
        raise ValidationError("", value, "expected an IPv4 or IPv6 address") from None
    if normal != value:
        raise ValidationError("", value, f"expected the address in normal form ({normal})")


def to_ip_opt(value: str | None) -> str | None:
    """An IP address in its normal form (``::1``, not ``0::1``); other values unchanged,
    for the check to report."""
    if isinstance(value, str):
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            return value
    return value


def int_between(low: int, high: int = INT64 - 1) -> Check:
    def is_int(value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError("", value, "expected an int")
        if not low <= value <= high:
            raise ValidationError("", value, f"must be between {low} and {high}")

    return is_int


def finite(value: object) -> bool:
    """Whether ``value`` is a number (not a bool) that is finite as a float: an int too
    large for a float, a NaN (signalling or quiet) and infinities are not."""
    if isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return False


def is_finite_float(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, float | int):
        raise ValidationError("", value, "expected a number")
    if not finite(value):
        raise ValidationError("", value, "must be a finite number")


def is_probability(value: object) -> None:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValidationError("", value, "expected a finite Decimal")
    if not 0 <= value <= 1:
        raise ValidationError("", value, "a probability lies between 0 and 1")
    if value.as_tuple().exponent < -12:  # type: ignore[operator]
        raise ValidationError("", value, "a probability has at most 12 decimal places")


def _uuids(value: Iterable[UUID]) -> frozenset[UUID]:
    if isinstance(value, frozenset):
        return value
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise ValidationError("", value, "expected a collection of UUIDs")
    items = list(value)
    problems = [
        Problem(f"[{index}]", item, "expected a UUID")
        for index, item in enumerate(items)
        if not isinstance(item, UUID)
    ]
    if problems:
        raise ValidationError.of(problems)
    return frozenset(items)


def to_uuid_set(value: Iterable[UUID]) -> frozenset[UUID]:
    """A frozenset of the UUIDs of a collection; any other item is named by its index."""
    return or_invalid(_uuids, value)  # type: ignore[no-any-return]


def uuid_set(value: object) -> None:
    if not isinstance(value, frozenset):
        raise ValidationError("", value, "expected a frozenset of UUIDs")
    for item in value:
        if not isinstance(item, UUID):
            raise ValidationError("", item, "expected a UUID")


def expect(value: object, cls: type | tuple[type, ...], field: str, what: str) -> None:
    """A :class:`ValidationError` naming ``field`` unless ``value`` is a ``cls``."""
    if not isinstance(value, cls):
        raise ValidationError(field, value, f"expected {what}")


def expect_items(values: object, cls: type | tuple[type, ...], field: str, what: str) -> list[Any]:
    """The items of the collection ``values``, each a ``cls`` (else a
    :class:`ValidationError` naming ``field`` or ``field[index]``)."""
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise ValidationError(field, values, f"expected a collection of {what}")
    items = list(values)
    for index, item in enumerate(items):
        expect(item, cls, f"{field}[{index}]", what)
    return items


# ---------------------------------------------------------------------------- converters


def to_utc(value: datetime) -> datetime:
    if value.__class__ is datetime and value.tzinfo is UTC:
        return value
    return or_invalid(ensure_utc, value)  # type: ignore[no-any-return]


def to_utc_opt(value: datetime | None) -> datetime | None:
    return None if value is None else to_utc(value)


# Values that already have their type were validated when they were made: not again.


def to_email(value: str | None) -> EmailAddress | None:
    if value is None or type(value) is EmailAddress:
        return value
    return or_invalid(EmailAddress, value)  # type: ignore[no-any-return]


def to_phone(value: str | None) -> PhoneNumber | None:
    if value is None or type(value) is PhoneNumber:
        return value
    return or_invalid(PhoneNumber, value)  # type: ignore[no-any-return]


def to_country(value: str | None) -> CountryCode | None:
    if value is None or type(value) is CountryCode:
        return value
    return or_invalid(CountryCode, value)  # type: ignore[no-any-return]


def to_language(value: str | None) -> LanguageCode | None:
    if value is None or type(value) is LanguageCode:
        return value
    return or_invalid(LanguageCode, value)  # type: ignore[no-any-return]


def to_tags(value: Iterable[str]) -> frozenset[str]:
    return or_invalid(normalise_tags, value)  # type: ignore[no-any-return]


def tags(value: object) -> None:
    # to_tags made a normalised frozenset of every valid collection.
    if not isinstance(value, frozenset):
        raise ValidationError("", value, "expected a frozenset of tags")


def to_custom(value: Mapping[str, JSONScalar] | None) -> CustomFields:
    if isinstance(value, CustomFields):
        return value
    return or_invalid(CustomFields, value)  # type: ignore[no-any-return]


def to_decimal(value: Decimal | int | str) -> Decimal:
    return or_invalid(parse_decimal, value)  # type: ignore[no-any-return]


def to_decimal_opt(value: Decimal | int | str | None) -> Decimal | None:
    return None if value is None else to_decimal(value)


def _domain(value: object) -> str:
    if not isinstance(value, str):
        raise ValidationError("", value, "expected a domain name")
    try:
        return EmailAddress(f"x@{value.strip()}").domain
    except ValidationError as error:
        raise ValidationError("", value, f"not a valid domain name: {error.reason}") from None


def to_domain(value: str | None) -> str | None:
    """A domain in the canonical form of e-mail domains (``Example.COM`` -> ``example.com``)."""
    return None if value is None else or_invalid(_domain, value)


def to_text(value: str) -> str:
    """Trim surrounding white space of text fields (blank text is kept, for the check)."""
    if not isinstance(value, str):
        return value  # type: ignore[unreachable]  # rejected by the field's check
    return value.strip() or value


def to_text_opt(value: str | None) -> str | None:
    return None if value is None else to_text(value)
