"""Value types: e-mail address, phone number, ISO codes, money, tags and custom fields.

Textual value types (:class:`EmailAddress`, :class:`PhoneNumber`, :class:`CountryCode`,
:class:`LanguageCode`) are ``str`` subclasses: they are validated and put into their
canonical notation when constructed, and are plain strings everywhere else. Normalising
only ever changes notation (surrounding white space, letter case, separators), never
meaning; anything that cannot be read unambiguously is rejected with a
:class:`~crmkit.errors.ValidationError`.
"""

import math
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Final, Self, TypeAlias

import attrs

from crmkit._extras import import_extra
from crmkit.errors import CurrencyMismatch, MissingExtra, Problem, ValidationError
from crmkit.models._iso import COUNTRY_CODES, CURRENCY_MINOR_UNITS, LANGUAGE_CODES

__all__ = [
    "COUNTRIES",
    "CURRENCIES",
    "LANGUAGES",
    "CountryCode",
    "CustomFields",
    "EmailAddress",
    "JSONScalar",
    "LanguageCode",
    "Money",
    "PhoneNumber",
    "normalise_tags",
]

CURRENCIES: Final[Mapping[str, int]] = MappingProxyType(CURRENCY_MINOR_UNITS)
"""Accepted ISO 4217 currency codes, each with its number of minor-unit digits."""

COUNTRIES: Final[frozenset[str]] = COUNTRY_CODES
"""Accepted ISO 3166-1 alpha-2 country codes (``XK`` for Kosovo included)."""

LANGUAGES: Final[frozenset[str]] = LANGUAGE_CODES
"""Accepted ISO 639-1 language codes."""


def _text_of(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ValidationError("", value, f"expected {what} as a string")
    return value


# ---------------------------------------------------------------------------- e-mail

_ATEXT: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-"
)
_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_TLD: Final = re.compile(r"(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})\Z")


def _local_char_ok(char: str) -> bool:
    if char in _ATEXT:
        return True
    # RFC 6531: non-ASCII characters are allowed, but no spaces, controls or marks alone.
    return ord(char) > 127 and unicodedata.category(char)[0] not in "CZ"


_ASCII_DOT_ATOM: Final = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z"
)


def _check_local(local: str, raw: str) -> None:
    if not local:
        raise ValidationError("", raw, "e-mail address has nothing before the '@'")
    if len(local) > 64:
        raise ValidationError("", raw, "the part before the '@' is longer than 64 characters")
    if _ASCII_DOT_ATOM.match(local):
        return  # the common case; the loop below finds the reason for everything else
    for atom in local.split("."):
        if not atom:
            raise ValidationError("", raw, "leading, trailing or double dot before the '@'")
        bad = next((c for c in atom if not _local_char_ok(c)), None)
        if bad is not None:
            raise ValidationError("", raw, f"character {bad!r} is not allowed before the '@'")


def _check_domain(domain: str, raw: str) -> None:
    try:
        ascii_domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError:
        raise ValidationError("", raw, "the domain is not a valid internationalised name") from None
    ascii_domain = ascii_domain.lower()
    if len(ascii_domain) > 253:
        raise ValidationError("", raw, "the domain is longer than 253 characters")
    labels = ascii_domain.split(".")
    if len(labels) < 2:
        raise ValidationError("", raw, "the domain needs a dot (name.tld)")
    for label in labels:
        if not _LABEL.match(label):
            raise ValidationError("", raw, f"domain label {label!r} is not a valid host name")
    if not _TLD.match(labels[-1]):
        raise ValidationError("", raw, f"{labels[-1]!r} is not a top-level domain")


class EmailAddress(str):
    """An e-mail address in normalised form: trimmed, the domain lower-cased.

    The part before the ``@`` keeps its case (RFC 5321 leaves it to the receiving
    server). Accepted: dot-atom local parts (RFC 5322, plus non-ASCII characters as in
    RFC 6531) and host-name domains with at least two labels, internationalised domains
    included. Rejected: quoted local parts, IP-literal domains, comments, and addresses
    longer than 254 characters.

    >>> EmailAddress("  Ada.Lovelace@Example.COM ")
    EmailAddress('Ada.Lovelace@example.com')
    """

    __slots__ = ()

    def __new__(cls, value: str) -> Self:
        raw = _text_of(value, "an e-mail address")
        text = raw.strip()
        if text.count("@") != 1:
            raise ValidationError("", raw, "an e-mail address needs exactly one '@'")
        local, _, domain = text.partition("@")
        _check_local(local, raw)
        domain = domain.lower()
        _check_domain(domain, raw)
        address = f"{local}@{domain}"
        if len(address) > 254:
            raise ValidationError("", raw, "e-mail address is longer than 254 characters")
        return super().__new__(cls, address)

    @property
    def local(self) -> str:
        """The part before the ``@``."""
        return self.partition("@")[0]

    @property
    def domain(self) -> str:
        """The (lower-cased) part after the ``@``."""
        return self.partition("@")[2]

    def __repr__(self) -> str:
        return f"EmailAddress({str(self)!r})"


# ---------------------------------------------------------------------------- phone

_E164: Final = re.compile(r"\+[1-9][0-9]{6,14}\Z")
_PHONE_SEPARATORS: Final = str.maketrans("", "", " \t-./()\u00a0\u2009\u202f")


class PhoneNumber(str):
    """A phone number in E.164 form (``+4930123456``).

    The constructor is the strict basic check that needs nothing installed: an
    international number (leading ``+``, 7 to 15 digits), with spaces, dashes, dots,
    slashes and parentheses removed. Stored numbers are always loaded through it.

    :meth:`parse` is for numbers as people type them: with the ``quality`` extra
    (``phonenumbers``) it checks the number against the real numbering plan and accepts
    national notation given a ``region``; without it, it falls back to the basic check.
    """

    __slots__ = ()

    def __new__(cls, value: str) -> Self:
        raw = _text_of(value, "a phone number")
        compact = raw.strip().translate(_PHONE_SEPARATORS)
        if not _E164.match(compact):
            raise ValidationError(
                "", raw, "expected an international phone number: '+', then 7 to 15 digits"
            )
        return super().__new__(cls, compact)

    @classmethod
    def parse(cls, value: str, region: str | None = None) -> Self:
        """Read a number as typed by a person; ``region`` (ISO country) for national ones.

        With ``phonenumbers`` installed (extra ``quality``) the number must be valid in
        its numbering plan; extensions are rejected because E.164 cannot hold them.
        Without it, national numbers cannot be read and are rejected.
        """
        raw = _text_of(value, "a phone number")
        country = None if region is None else CountryCode(region)
        try:
            pn: Any = import_extra("phonenumbers", extra="quality", feature="phone validation")
        except MissingExtra:
            if country is not None and not raw.strip().startswith("+"):
                raise ValidationError(
                    "",
                    raw,
                    "national numbers need the 'quality' extra (phonenumbers); "
                    "give the number in international form (+...)",
                ) from None
            return cls(raw)
        try:
            number = pn.parse(raw, country)
        except pn.NumberParseException as exc:
            raise ValidationError("", raw, f"not a phone number: {exc}") from None
        if number.extension:
            raise ValidationError("", raw, "extensions cannot be stored in E.164 form")
        if not pn.is_valid_number(number):
            raise ValidationError("", raw, "not a valid number in its country's numbering plan")
        return cls(pn.format_number(number, pn.PhoneNumberFormat.E164))

    def __repr__(self) -> str:
        return f"PhoneNumber({str(self)!r})"


# ---------------------------------------------------------------------------- ISO codes


class CountryCode(str):
    """An ISO 3166-1 alpha-2 country code, upper case (``"DE"``; ``" de"`` is read too)."""

    __slots__ = ()

    def __new__(cls, value: str) -> Self:
        raw = _text_of(value, "an ISO 3166-1 alpha-2 country code")
        code = raw.strip().upper()
        if code not in COUNTRY_CODES:
            raise ValidationError("", raw, "not an ISO 3166-1 alpha-2 country code")
        return super().__new__(cls, code)

    def __repr__(self) -> str:
        return f"CountryCode({str(self)!r})"


class LanguageCode(str):
    """A language: ISO 639-1 code, optionally with an ISO 3166-1 region (``"de"``, ``"en-GB"``).

    Written as a BCP 47 tag: language lower case, region upper case, joined by ``-``
    (``"en_gb"`` is read as ``"en-GB"``).
    """

    __slots__ = ()

    def __new__(cls, value: str) -> Self:
        raw = _text_of(value, "a language code")
        language, sep, region = raw.strip().replace("_", "-").partition("-")
        language = language.lower()
        if language not in LANGUAGE_CODES:
            raise ValidationError("", raw, "not an ISO 639-1 language code")
        if sep:
            region = region.upper()
            if region not in COUNTRY_CODES:
                raise ValidationError("", raw, f"{region!r} is not an ISO 3166-1 region")
            return super().__new__(cls, f"{language}-{region}")
        return super().__new__(cls, language)

    @property
    def language(self) -> str:
        return self.partition("-")[0]

    @property
    def region(self) -> str | None:
        return self.partition("-")[2] or None

    def __repr__(self) -> str:
        return f"LanguageCode({str(self)!r})"


# ---------------------------------------------------------------------------- money


def _parse_amount(value: Decimal | int | str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        reason = (
            "floats are not accepted for money; pass a Decimal or a string"
            if isinstance(value, float)
            else "expected a Decimal, an int or a decimal string"
        )
        raise ValidationError("amount", value, reason)
    try:
        amount = value if isinstance(value, Decimal) else Decimal(value)
    except InvalidOperation:
        raise ValidationError("amount", value, "not a decimal number") from None
    if not amount.is_finite():
        raise ValidationError("amount", value, "amount must be a finite number")
    return amount


def _parse_currency(value: str) -> str:
    if not isinstance(value, str):
        raise ValidationError("currency", value, "expected an ISO 4217 currency code as a string")
    code = value.strip().upper()
    if code not in CURRENCY_MINOR_UNITS:
        raise ValidationError("currency", value, "not an ISO 4217 currency code")
    return code


# Converters hand what they cannot read back unchanged; Money.__attrs_post_init__ then
# reports the problems of both fields together.


def _amount(value: Decimal | int | str) -> Decimal:
    try:
        return _parse_amount(value)
    except ValidationError:
        return value  # type: ignore[return-value]


def _currency(value: str) -> str:
    try:
        return _parse_currency(value)
    except ValidationError:
        return value


@attrs.frozen
class Money:
    """An exact amount of one currency: ``Decimal`` plus an ISO 4217 code.

    Amounts are kept exactly as given (``Money("12.50", "EUR")`` keeps two places);
    :meth:`rounded` quantises to the currency's minor unit. Arithmetic is defined within
    one currency only; mixing currencies raises :class:`~crmkit.errors.CurrencyMismatch`.
    Floats are refused, because they cannot hold most decimal amounts.

    >>> Money("19.99", "EUR") * 3
    Money(amount=Decimal('59.97'), currency='EUR')
    """

    amount: Decimal = attrs.field(converter=_amount)
    currency: str = attrs.field(converter=_currency)

    def __attrs_post_init__(self) -> None:
        if (
            type(self.amount) is Decimal
            and self.amount.is_finite()
            and (self.currency in CURRENCY_MINOR_UNITS)
        ):
            return
        problems: list[Problem] = []
        try:
            _parse_amount(self.amount)
        except ValidationError as error:
            problems.extend(error.problems)
        try:
            _parse_currency(self.currency)
        except ValidationError as error:
            problems.extend(error.problems)
        if problems:
            raise ValidationError.of(problems)

    @classmethod
    def zero(cls, currency: str) -> Self:
        """Nothing of ``currency``; the start value for sums."""
        return cls(Decimal(0), currency)

    @property
    def minor_units(self) -> int:
        """Digits after the decimal point of the currency (EUR 2, JPY 0, KWD 3)."""
        return CURRENCY_MINOR_UNITS[self.currency]

    def rounded(self) -> Self:
        """The amount quantised to the currency's minor unit, rounding half to even."""
        exponent = Decimal(1).scaleb(-self.minor_units)
        return type(self)(self.amount.quantize(exponent, rounding=ROUND_HALF_EVEN), self.currency)

    def _check(self, other: "Money", operation: str) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatch(
                "currency",
                other.currency,
                f"cannot {operation} {self.currency} and {other.currency}",
            )

    def __add__(self, other: object) -> Self:
        if not isinstance(other, Money):
            return NotImplemented
        self._check(other, "add")
        return type(self)(self.amount + other.amount, self.currency)

    def __sub__(self, other: object) -> Self:
        if not isinstance(other, Money):
            return NotImplemented
        self._check(other, "subtract")
        return type(self)(self.amount - other.amount, self.currency)

    def __neg__(self) -> Self:
        return type(self)(-self.amount, self.currency)

    def __abs__(self) -> Self:
        return type(self)(abs(self.amount), self.currency)

    def __mul__(self, factor: object) -> Self:
        if isinstance(factor, bool) or not isinstance(factor, Decimal | int):
            return NotImplemented
        return type(self)(self.amount * factor, self.currency)

    __rmul__ = __mul__

    def _compare(self, other: object, operation: str) -> Decimal | None:
        if not isinstance(other, Money):
            return None
        self._check(other, "compare")
        return other.amount

    def __lt__(self, other: object) -> bool:
        amount = self._compare(other, "compare")
        return NotImplemented if amount is None else self.amount < amount

    def __le__(self, other: object) -> bool:
        amount = self._compare(other, "compare")
        return NotImplemented if amount is None else self.amount <= amount

    def __gt__(self, other: object) -> bool:
        amount = self._compare(other, "compare")
        return NotImplemented if amount is None else self.amount > amount

    def __ge__(self, other: object) -> bool:
        amount = self._compare(other, "compare")
        return NotImplemented if amount is None else self.amount >= amount

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


# ---------------------------------------------------------------------------- tags

_TAG_MAX: Final = 64


def normalise_tags(value: Iterable[str]) -> frozenset[str]:
    """Validate tags: each trimmed, inner white space collapsed, 1 to 64 characters.

    Tags keep their case; a bare string is refused (it would be read letter by letter).
    """
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ValidationError("", value, "expected a collection of tags, not a single value")
    tags: set[str] = set()
    for tag in value:
        if not isinstance(tag, str):
            raise ValidationError("", tag, "a tag must be a string")
        text = " ".join(tag.split())
        if not text or len(text) > _TAG_MAX:
            raise ValidationError("", tag, f"a tag has 1 to {_TAG_MAX} characters")
        if not text.isprintable():
            raise ValidationError("", tag, "a tag cannot contain control characters")
        tags.add(text)
    return frozenset(tags)


# ---------------------------------------------------------------------------- custom fields

JSONScalar: TypeAlias = str | int | float | bool | None
"""The values a custom field may hold: what JSON can represent without nesting."""

_KEY: Final = re.compile(r"[a-z][a-z0-9_]{0,62}\Z")
_INT64: Final = 2**63


def _check_scalar(key: str, value: object) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            raise ValidationError(key, value, "integers must fit in 64 bits")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(key, value, "NaN and infinity are not JSON numbers")
    elif isinstance(value, str):
        if "\x00" in value:
            raise ValidationError(key, value, "text cannot contain NUL characters")
    else:
        raise ValidationError(
            key, value, "a custom field holds a JSON scalar: str, int, float, bool or None"
        )


def _key_path(key: object) -> str:
    return key if isinstance(key, str) and key.isidentifier() else f"[{key!r}]"


class CustomFields(Mapping[str, JSONScalar]):
    """An immutable, hashable mapping of custom field names to JSON scalars.

    Names are lower-case identifiers (``[a-z][a-z0-9_]*``, at most 63 characters), so
    they can be named in rules and stored as JSON keys on every database. Values are
    ``str``, ``int`` (64-bit), finite ``float``, ``bool`` or ``None``.
    """

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[str, JSONScalar] | None = None, /) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ValidationError("", data, "custom fields must be a mapping of names to values")
        for key, value in data.items():
            if not isinstance(key, str) or not _KEY.match(key):
                raise ValidationError(
                    _key_path(key),
                    key,
                    "a custom field name is a lower-case identifier: [a-z][a-z0-9_]*, "
                    "at most 63 characters",
                )
            _check_scalar(key, value)
        self._data: dict[str, JSONScalar] = dict(data)
        self._hash: int | None = None

    def __getitem__(self, key: str) -> JSONScalar:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CustomFields):
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def set(self, **values: JSONScalar) -> "CustomFields":
        """A copy with ``values`` set (validated like the constructor)."""
        return CustomFields({**self._data, **values})

    def without(self, *keys: str) -> "CustomFields":
        """A copy without ``keys`` (missing keys are ignored)."""
        return CustomFields({k: v for k, v in self._data.items() if k not in keys})

    def __repr__(self) -> str:
        return f"CustomFields({self._data!r})"
