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
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from types import MappingProxyType
from typing import Any, Final, Self, TypeAlias

import attrs

from crmkit._extras import import_extra
from crmkit.errors import CurrencyMismatch, MissingExtra, ValidationError, short_repr
from crmkit.models._invalid import or_invalid, problems_of
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
    "parse_decimal",
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


def _local_char_ok(char: str, first: bool) -> bool:
    if char in _ATEXT:
        return True
    # RFC 6531: non-ASCII characters are allowed, but no spaces, controls, format or
    # unassigned characters, and no combining mark at the start of an atom.
    category = unicodedata.category(char)
    return ord(char) > 127 and category[0] not in "CZ" and not (first and category[0] == "M")


_ASCII_DOT_ATOM: Final = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z"
)


def _normal_local(local: str, raw: str) -> str:
    """The part before the ``@``, NFC-normalised (RFC 6532) and checked."""
    if _ASCII_DOT_ATOM.match(local):
        normal = local  # the common case
    else:
        normal = unicodedata.normalize("NFC", local)
        if not normal:
            raise ValidationError("", raw, "e-mail address has nothing before the '@'")
        for atom in normal.split("."):
            if not atom:
                raise ValidationError("", raw, "leading, trailing or double dot before the '@'")
            for index, char in enumerate(atom):
                if not _local_char_ok(char, index == 0):
                    raise ValidationError(
                        "", raw, f"character {char!r} is not allowed before the '@'"
                    )
    if len(normal) > 64:
        raise ValidationError("", raw, "the part before the '@' is longer than 64 characters")
    return normal


def _domain_label(label: str, raw: str) -> tuple[str, str]:
    """One label as (U-label, A-label): Unicode as written for people, ASCII for DNS.

    ``xn--`` labels are decoded, so both spellings of a name give one address. Unicode
    labels are NFKC-normalised and lower-cased (full-width letters become ASCII), as
    UTS 46 maps them; format characters such as zero-width spaces are rejected, never
    dropped. Python's ``idna`` codec is not used: it implements IDNA 2003, which maps
    ``straße`` to ``strasse``, a different domain today.
    """
    if label.isascii():
        if not label.startswith("xn--"):
            return label, label
        try:
            unicode = label[4:].encode("ascii").decode("punycode")
        except UnicodeError:
            raise ValidationError(
                "", raw, f"domain label {label!r} is not valid punycode"
            ) from None
    else:
        unicode = unicodedata.normalize("NFKC", label).lower()
        if unicode.isascii():
            return unicode, unicode
    for index, char in enumerate(unicode):
        category = unicodedata.category(char)
        allowed = char == "-" or category[0] in "LN" or (category[0] == "M" and index > 0)
        if not allowed:
            raise ValidationError("", raw, f"character {char!r} is not allowed in a domain")
    if unicode.isascii() or unicodedata.normalize("NFC", unicode) != unicode:
        raise ValidationError("", raw, f"domain label {label!r} is not a normalised IDN label")
    return unicode, "xn--" + unicode.encode("punycode").decode("ascii")


_NORMAL_ASCII_DOMAIN: Final = re.compile(
    r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}\Z"
)
"""A domain already in normal form and valid: lower-case host name labels, no ``xn--``."""


def _normal_domain(domain: str, raw: str) -> str:
    """The domain lower-cased, with internationalised labels in one Unicode spelling."""
    if len(domain) <= 253 and "xn--" not in domain and _NORMAL_ASCII_DOMAIN.match(domain):
        return domain  # the common case, and every address read back from a store
    return _normal_domain_slow(domain, raw)


def _normal_domain_slow(domain: str, raw: str) -> str:
    labels = [_domain_label(label, raw) for label in domain.lower().split(".")]
    ascii_labels = [a for _, a in labels]
    if len(".".join(ascii_labels)) > 253:
        raise ValidationError("", raw, "the domain is longer than 253 characters")
    if len(labels) < 2:
        raise ValidationError("", raw, "the domain needs a dot (name.tld)")
    for label in ascii_labels:
        if not _LABEL.match(label):
            raise ValidationError("", raw, f"domain label {label!r} is not a valid host name")
    if not _TLD.match(ascii_labels[-1]):
        raise ValidationError("", raw, f"{ascii_labels[-1]!r} is not a top-level domain")
    return ".".join(u for u, _ in labels)


class EmailAddress(str):
    """An e-mail address in normalised form: trimmed, the domain lower-cased.

    The part before the ``@`` keeps its case (RFC 5321 leaves it to the receiving
    server); non-ASCII text in it is NFC-normalised (RFC 6532). Internationalised
    domains are kept in their Unicode spelling, whichever way they were written
    (``bücher.de`` and ``xn--bcher-kva.de`` give the same address). Accepted: dot-atom
    local parts (RFC 5322, plus non-ASCII characters as in RFC 6531) and host-name
    domains with at least two labels. Rejected: quoted local parts, IP-literal domains,
    comments, and addresses longer than 254 characters.

    >>> EmailAddress("  Ada.Lovelace@Example.COM ")
    EmailAddress('Ada.Lovelace@example.com')
    """

    __slots__ = ()

    def __new__(cls, value: str) -> Self:
        raw = _text_of(value, "an e-mail address")
        text = raw.strip()
        if not text:
            raise ValidationError("", raw, "must not be empty (no address: None)")
        if text.count("@") != 1:
            raise ValidationError("", raw, "an e-mail address needs exactly one '@'")
        local, _, domain = text.partition("@")
        address = f"{_normal_local(local, raw)}@{_normal_domain(domain, raw)}"
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
# '+', then digits; one separator (space, '-', '.', '/') may stand between two digits or
# digit groups, and a group may be put in parentheses: "+49 (30) 901-820".
_SPACE: Final = "[ \u00a0\u2009\u202f]"
_SEP: Final = rf"(?:{_SPACE}*[./-]{_SPACE}*|{_SPACE}+)"
_PHONE_FORM: Final = re.compile(rf"\+(?:[0-9]|\([0-9]+\))(?:{_SEP}?(?:[0-9]|\([0-9]+\)))*\Z")
_PHONE_SEPARATORS: Final = str.maketrans("", "", " \u00a0\u2009\u202f./-()")
_LETTERS: Final = re.compile(r"[^\W\d_]")


class PhoneNumber(str):
    """A phone number in E.164 form (``+4930123456``).

    The constructor is the strict basic check that needs nothing installed: an
    international number (leading ``+``, 7 to 15 digits); single spaces, dashes, dots or
    slashes between digits and parentheses around digit groups are removed. Stored
    numbers are always loaded through it, so data stored without the extra loads with it.

    :meth:`parse` is for numbers as people type them: with the ``quality`` extra
    (``phonenumbers``) it checks the number against the real numbering plan and accepts
    national notation given a ``region``; without it, it falls back to the basic check.
    """

    __slots__ = ()

    def __new__(cls, value: str) -> Self:
        raw = _text_of(value, "a phone number")
        text = raw.strip()
        compact = text.translate(_PHONE_SEPARATORS)
        if not _PHONE_FORM.match(text) or not _E164.match(compact):
            raise ValidationError(
                "", raw, "expected an international phone number: '+', then 7 to 15 digits"
            )
        return super().__new__(cls, compact)

    @classmethod
    def parse(cls, value: str, region: str | None = None) -> Self:
        """Read a number as typed by a person; ``region`` (ISO country) for national ones.
        Without a region, a leading ``00`` is read as the international prefix
        (``"0049 30 901820"`` is ``+4930901820``).

        With ``phonenumbers`` installed (extra ``quality``) the number must be valid in
        its numbering plan; extensions are rejected because E.164 cannot hold them, and
        so are letters (phonenumbers would read ``1-800-FLOWERS`` as digits).
        Without it, national numbers cannot be read and are rejected.
        """
        raw = _text_of(value, "a phone number")
        country = None if region is None else CountryCode(region)
        stripped = raw.strip()
        if country is None and stripped.startswith("00") and stripped[2:3].isdigit():
            # "0049 30 ..." : the international call prefix most of the world dials
            raw = "+" + stripped[2:]
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
        if _LETTERS.search(raw):  # phonenumbers reads "1-800-FLOWERS" and "9O1" as digits
            raise ValidationError("", raw, "a phone number has no letters")
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
        if not raw.isascii() or code not in COUNTRY_CODES:
            raise ValidationError("", raw, "not an ISO 3166-1 alpha-2 country code")
        return super().__new__(cls, code)

    def __repr__(self) -> str:
        return f"CountryCode({str(self)!r})"


class LanguageCode(str):
    """A language: ISO 639-1 code, optionally with an ISO 3166-1 region (``"de"``, ``"en-GB"``).

    Written as a BCP 47 tag: language lower case, region upper case, joined by ``-``
    (``"en_gb"`` is read as ``"en-GB"``). Script subtags (``zh-Hant``) and UN M.49
    regions (``es-419``) are not accepted.
    """

    __slots__ = ()

    def __new__(cls, value: str) -> Self:
        raw = _text_of(value, "a language code")
        language, sep, region = raw.strip().replace("_", "-").partition("-")
        language = language.lower()
        if not raw.isascii() or language not in LANGUAGE_CODES:
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


_DECIMAL: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")


def parse_decimal(value: object) -> Decimal:
    """A finite ``Decimal`` from a ``Decimal``, an ``int`` or a plain decimal string.

    Strings are read in ASCII decimal notation only (``"12.50"``, ``"-3"``, ``"1E+2"``):
    no surrounding spaces, digit separators, other scripts' digits, NaN or infinity.
    Floats are refused, because they cannot hold most decimal values exactly.
    """
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int) and not isinstance(value, bool):
        number = Decimal(value)
    elif isinstance(value, str):
        if not _DECIMAL.match(value):
            raise ValidationError("", value, "not a decimal number (digits, '.', sign)")
        number = Decimal(value)
    elif isinstance(value, float):
        raise ValidationError("", value, "floats are not exact: pass a Decimal or a string")
    else:
        raise ValidationError("", value, "expected a Decimal, an int or a decimal string")
    if not number.is_finite():
        raise ValidationError("", value, "must be a finite number")
    return number


_MAX_INTEGER_DIGITS: Final = 18
_MAX_PLACES: Final = 12
# Wide enough that any sum, difference or rounding of two amounts in range is exact.
_MONEY_CONTEXT: Final = Context(
    prec=2 * (_MAX_INTEGER_DIGITS + _MAX_PLACES),
    traps=[Inexact, Overflow, InvalidOperation, DivisionByZero],
)
_ROUNDING: Final = Context(prec=_MONEY_CONTEXT.prec, traps=[Overflow, InvalidOperation])


def _parse_amount(value: object) -> Decimal:
    amount = parse_decimal(value)
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)  # a finite Decimal's exponent is an int
    if amount and amount.adjusted() >= _MAX_INTEGER_DIGITS:
        raise ValidationError("", value, f"more than {_MAX_INTEGER_DIGITS} integer digits")
    if -exponent > _MAX_PLACES:
        raise ValidationError("", value, f"more than {_MAX_PLACES} decimal places; round first")
    return amount


def _parse_currency(value: object) -> str:
    if not isinstance(value, str):
        raise ValidationError("", value, "expected an ISO 4217 currency code as a string")
    code = value.strip()
    if not code.isascii() or code.upper() not in CURRENCY_MINOR_UNITS:
        raise ValidationError("", value, "not an ISO 4217 currency code")
    return code.upper()


def _amount(value: Decimal | int | str) -> Decimal:
    return or_invalid(_parse_amount, value)  # type: ignore[no-any-return]


def _currency(value: str) -> str:
    return or_invalid(_parse_currency, value)  # type: ignore[no-any-return]


@attrs.frozen
class Money:
    """An exact amount of one currency: ``Decimal`` plus an ISO 4217 code.

    Amounts are kept exactly as given (``Money("12.50", "EUR")`` keeps two places), with
    at most 18 integer digits and 12 decimal places, so that every database can store
    them. :meth:`rounded` quantises to the currency's minor unit. Arithmetic is exact and
    defined within one currency only; mixing currencies raises
    :class:`~crmkit.errors.CurrencyMismatch`, a result out of range a
    :class:`~crmkit.errors.ValidationError`. Floats are refused, because they cannot
    hold most decimal amounts.

    >>> Money("19.99", "EUR") * 3
    Money(amount=Decimal('59.97'), currency='EUR')
    """

    amount: Decimal = attrs.field(converter=_amount)
    currency: str = attrs.field(converter=_currency)

    def __attrs_post_init__(self) -> None:
        problems = problems_of("amount", self.amount) + problems_of("currency", self.currency)
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
        return self._exact(
            lambda: self.amount.quantize(exponent, rounding=ROUND_HALF_EVEN, context=_ROUNDING)
        )

    def _exact(self, compute: Callable[[], Decimal]) -> Self:
        try:
            with localcontext(_MONEY_CONTEXT):
                amount = compute()
        except ArithmeticError:
            raise ValidationError(
                "amount", self.amount, "the result is out of the range of money amounts"
            ) from None
        return type(self)(amount, self.currency)

    def _amount_of(self, other: object, operation: str) -> Decimal:
        if not isinstance(other, Money):
            raise TypeError(f"cannot {operation} Money and {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatch(
                "currency",
                other.currency,
                f"cannot {operation} {self.currency} and {other.currency}",
            )
        return other.amount

    def __add__(self, other: "Money") -> Self:
        amount = self._amount_of(other, "add")
        return self._exact(lambda: self.amount + amount)

    def __sub__(self, other: "Money") -> Self:
        amount = self._amount_of(other, "subtract")
        return self._exact(lambda: self.amount - amount)

    def __neg__(self) -> Self:
        return type(self)(-self.amount, self.currency)

    def __abs__(self) -> Self:
        return type(self)(abs(self.amount), self.currency)

    def __mul__(self, factor: Decimal | int) -> Self:
        if isinstance(factor, bool) or not isinstance(factor, Decimal | int):
            raise TypeError(f"cannot multiply Money by {type(factor).__name__}")
        return self._exact(lambda: self.amount * factor)

    __rmul__ = __mul__

    def __lt__(self, other: "Money") -> bool:
        return self.amount < self._amount_of(other, "compare")

    def __le__(self, other: "Money") -> bool:
        return self.amount <= self._amount_of(other, "compare")

    def __gt__(self, other: "Money") -> bool:
        return self.amount > self._amount_of(other, "compare")

    def __ge__(self, other: "Money") -> bool:
        return self.amount >= self._amount_of(other, "compare")

    def __str__(self) -> str:
        return f"{self.amount:f} {self.currency}"  # plain notation: never 1E+6


# ---------------------------------------------------------------------------- tags

_TAG_MAX: Final = 64


def normalise_tags(value: Iterable[str]) -> frozenset[str]:
    """Validate tags: each trimmed, inner white space collapsed, 1 to 64 characters.

    Tags keep their case; a bare string is refused (it would be read letter by letter).
    """
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
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
        if has_surrogate(value):
            raise ValidationError(key, value, "text cannot contain lone surrogates")
    else:
        raise ValidationError(
            key, value, "a custom field holds a JSON scalar: str, int, float, bool or None"
        )


_PLAIN_TYPES: Final = frozenset({str, int, float, bool, type(None)})


def _plain(value: JSONScalar) -> JSONScalar:
    for base in (bool, int, float, str):
        if isinstance(value, base):
            return value if type(value) is base else base(value)
    return value


_SURROGATES: Final = re.compile("[\ud800-\udfff]")


def has_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate, which no UTF-8 database can store."""
    return not text.isascii() and _SURROGATES.search(text) is not None


def _key_path(key: object) -> str:
    return key if isinstance(key, str) and key.isidentifier() else f"[{short_repr(key)}]"


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
        plain = True
        for key, value in data.items():
            if not isinstance(key, str) or not _KEY.match(key):
                raise ValidationError(
                    _key_path(key),
                    key,
                    "a custom field name is a lower-case identifier: [a-z][a-z0-9_]*, "
                    "at most 63 characters",
                )
            _check_scalar(key, value)
            plain = plain and type(value) in _PLAIN_TYPES
        # Subclasses (a StrEnum, an IntEnum) are stored as the JSON type they stand for,
        # so that a value reads back as it was written.
        self._data: dict[str, JSONScalar] = (
            dict(data) if plain else {k: _plain(v) for k, v in data.items()}
        )
        self._hash: int | None = None

    def __getitem__(self, key: str) -> JSONScalar:
        return self._data[key]

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` when it is not set (one dict look-up)."""
        return self._data.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def _typed(self) -> frozenset[tuple[str, type, JSONScalar]]:
        return frozenset((k, type(v), v) for k, v in self._data.items())

    def __eq__(self, other: object) -> bool:
        """Equal when the same names hold the same JSON values: ``True`` is not ``1``."""
        if isinstance(other, CustomFields):
            return self._typed() == other._typed()
        if isinstance(other, Mapping):
            return self._typed() == frozenset((k, type(v), v) for k, v in other.items())
        return NotImplemented

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(self._typed())
        return self._hash

    def set(self, **values: JSONScalar) -> "CustomFields":
        """A copy with ``values`` set (validated like the constructor)."""
        return CustomFields({**self._data, **values})

    def without(self, *keys: str) -> "CustomFields":
        """A copy without ``keys`` (missing keys are ignored)."""
        return CustomFields({k: v for k, v in self._data.items() if k not in keys})

    def __repr__(self) -> str:
        return f"CustomFields({self._data!r})"
