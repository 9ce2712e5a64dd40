"""Normalisation: match keys computed from stored values, which are never rewritten.

A *match key* is a string two records share when a person would call the values the
same: ``"Dr. Ada  LOVELACE"`` and ``"ada lovelace"`` share the name key ``ada lovelace``.
Keys are for comparing and blocking only; what a contact stores stays as it was given.
The parsers (:func:`parse_phone`, :func:`parse_country`) read typed input into the
models' value types, or raise a typed error naming the field and the value.
"""

import re
import unicodedata
from typing import Final

from crmkit.errors import UnknownCountry, ValidationError
from crmkit.models import CountryCode, EmailAddress, PhoneNumber
from crmkit.models._iso import COUNTRY_CODES

__all__ = [
    "company_key",
    "email_key",
    "name_key",
    "parse_country",
    "parse_phone",
    "text_key",
]

_SPACES: Final = re.compile(r"\s+")
# Punctuation that separates words in names ("O'Brien" keeps its letters together).
_PUNCTUATION: Final = re.compile(r"[.,;:!?\"()\[\]{}<>/\\|_*#&+~`^=@$%-]+")
_APOSTROPHES: Final = re.compile(r"['\u2019\u02bc]")
_ASCII: Final = str.maketrans({**dict.fromkeys('.,;:!?"()[]{}<>/\\|_*#&+~`^=@$%-', " "), "'": None})

_TITLES: Final = frozenset(
    {
        # English
        "mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "dame", "rev", "jr", "sr",
        # German
        "herr", "frau", "hr", "fr", "dipl", "ing", "mag",
        # Swedish
        "fru", "fröken", "froken", "doktor", "docent",
    }
)  # fmt: skip


def as_text(value: object, field: str = "value") -> str:
    """``str(value)``, or a :class:`~crmkit.errors.ValidationError` naming ``field`` for a
    value that has no text (an integer of more than 4300 digits)."""
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except ValueError as error:
        raise ValidationError(field, value, f"cannot be read as text: {error}") from None


def text_key(value: object) -> str:
    """``value`` compared as people read text: NFKC, case-folded, punctuation and runs of
    white space made single spaces, trimmed. ``None``, empty and blank text give ``""``,
    the key that matches nothing (see :mod:`crmkit.quality`).

    >>> text_key("  Ada\\t LOVELACE-King ")
    'ada lovelace king'
    """
    if value is None:
        return ""
    if not isinstance(value, str):
        value = as_text(value)
    if value.isascii():  # the common case, without regular expressions
        return " ".join(value.translate(_ASCII).lower().split())
    text = unicodedata.normalize("NFKC", value).casefold()
    text = _APOSTROPHES.sub("", text)
    text = _PUNCTUATION.sub(" ", text)
    return " ".join(text.split())


def name_key(*parts: str | None) -> str:
    """The key of a person's name given in ``parts`` (first, last, ...): :func:`text_key`
    of each without titles (Dr., Herr, Fru, ...), joined by one space.

    >>> name_key("Dr. Ada", "LOVELACE")
    'ada lovelace'
    >>> name_key("Herr  Jürgen", "Müller")
    'jürgen müller'
    """
    words = [w for part in parts for w in text_key(part).split(" ") if w]
    kept = [w for w in words if w not in _TITLES]
    return " ".join(kept)


# Providers that ignore dots in the local part and/or a "+tag" suffix; the key removes
# what the provider ignores, never more. Domains alias one mailbox namespace.
_DOT_BLIND: Final = frozenset({"gmail.com"})
_PLUS_TAGS: Final = frozenset(
    {
        "gmail.com", "outlook.com", "hotmail.com", "live.com", "msn.com", "icloud.com",
        "me.com", "mac.com", "fastmail.com", "fastmail.fm", "proton.me", "protonmail.com",
        "pm.me", "yandex.ru", "yandex.com",
    }
)  # fmt: skip
_SAME_MAILBOX: Final = {"googlemail.com": "gmail.com", "protonmail.ch": "protonmail.com"}


def email_key(email: EmailAddress | str, *, field: str = "email") -> str:
    """The key under which providers deliver ``email`` to one mailbox.

    The whole address is case-folded; for providers that ignore them, dots in the local
    part (Gmail) and a ``+tag`` (Gmail, Outlook, iCloud, Fastmail, Proton, Yandex) are
    removed, and ``googlemail.com`` is ``gmail.com``. The stored address is not changed.
    Text that is no e-mail address raises :class:`~crmkit.errors.ValidationError` naming
    ``field``.

    >>> email_key("Ada.Lovelace+crm@GoogleMail.com")
    'adalovelace@gmail.com'
    >>> email_key("Ada.Lovelace+crm@example.com")
    'ada.lovelace+crm@example.com'
    """
    if not isinstance(email, EmailAddress):
        try:
            email = EmailAddress(email)
        except ValidationError as error:
            raise error.within(field) from None
    local, _, domain = email.casefold().rpartition("@")
    domain = _SAME_MAILBOX.get(domain, domain)
    if domain in _PLUS_TAGS:
        local = local.partition("+")[0]
    if domain in _DOT_BLIND:
        local = local.replace(".", "")
    return f"{local}@{domain}"


_LETTERS: Final = re.compile(r"[^\W\d_]")


def parse_phone(text: str, region: str | None = None, *, field: str = "phone") -> PhoneNumber:
    """Read a phone number as people type it into E.164, or raise
    :class:`~crmkit.errors.ValidationError` naming ``field`` and the text.

    ``region`` (an ISO country code) reads national notation; the numbering plan is
    checked with the ``quality`` extra (phonenumbers), see
    :meth:`crmkit.models.PhoneNumber.parse`. Text with letters is refused: phonenumbers
    reads ``1-800-FLOWERS`` as digits, which a CRM must not store as a number it was
    never given.

    >>> parse_phone("+49 30 901820")
    PhoneNumber('+4930901820')
    """
    if not isinstance(text, str):
        raise ValidationError(field, text, "expected a phone number as text")
    if _LETTERS.search(text):
        raise ValidationError(field, text, "a phone number has no letters")
    try:
        return PhoneNumber.parse(text, region)
    except ValidationError as error:
        raise error.within(field) from None


# Country names and aliases in English, German and Swedish, as text_key gives them,
# beside the ISO codes themselves. Countries not listed are read by their code.
_COUNTRY_NAMES: Final[dict[str, tuple[str, ...]]] = {
    "AT": ("austria", "österreich", "osterreich", "österrike", "a"),
    "AU": ("australia", "australien"),
    "BE": ("belgium", "belgien", "belgië", "belgie", "belgique", "b"),
    "BG": ("bulgaria", "bulgarien"),
    "BR": ("brazil", "brasilien", "brasil"),
    "CA": ("canada", "kanada"),
    "CH": ("switzerland", "schweiz", "suisse", "svizzera"),
    "CN": ("china", "kina", "people s republic of china"),
    "CY": ("cyprus", "zypern", "cypern"),
    "CZ": ("czechia", "czech republic", "tschechien", "tjeckien", "česko", "cesko"),
    "DE": ("germany", "deutschland", "tyskland", "federal republic of germany", "brd", "d"),
    "DK": ("denmark", "dänemark", "danemark", "danmark"),
    "EE": ("estonia", "estland", "eesti"),
    "ES": ("spain", "spanien", "españa", "espana", "e"),
    "FI": ("finland", "finnland", "suomi", "fin"),
    "FR": ("france", "frankreich", "frankrike", "f"),
    "GB": (
        "uk", "u k", "united kingdom", "great britain", "britain", "england", "scotland",
        "wales", "northern ireland", "vereinigtes königreich", "grossbritannien",
        "großbritannien", "storbritannien", "förenade kungariket",
    ),
    "GR": ("greece", "griechenland", "grekland", "hellas", "ellada", "el"),
    "HR": ("croatia", "kroatien", "hrvatska"),
    "HU": ("hungary", "ungarn", "ungern", "magyarország", "magyarorszag"),
    "IE": ("ireland", "irland", "éire", "eire", "irl"),
    "IN": ("india", "indien"),
    "IS": ("iceland", "island"),
    "IT": ("italy", "italien", "italia", "i"),
    "JP": ("japan",),
    "LI": ("liechtenstein",),
    "LT": ("lithuania", "litauen"),
    "LU": ("luxembourg", "luxemburg", "l"),
    "LV": ("latvia", "lettland"),
    "MT": ("malta",),
    "MX": ("mexico", "mexiko", "méxico"),
    "NL": (
        "netherlands", "the netherlands", "holland", "niederlande", "nederländerna", "nederland",
    ),
    "NO": ("norway", "norwegen", "norge", "n"),
    "NZ": ("new zealand", "neuseeland", "nya zeeland"),
    "PL": ("poland", "polen", "polska"),
    "PT": ("portugal", "p"),
    "RO": ("romania", "rumänien", "rumanien"),
    "RU": ("russia", "russland", "ryssland", "russian federation"),
    "SE": ("sweden", "schweden", "sverige", "s"),
    "SI": ("slovenia", "slowenien", "slovenien", "slovenija"),
    "SK": ("slovakia", "slowakei", "slovakien", "slovensko"),
    "TR": ("turkey", "türkiye", "turkiye", "türkei", "turkei", "turkiet"),
    "UA": ("ukraine", "ukraina"),
    "US": (
        "usa", "u s a", "us", "u s", "united states", "united states of america", "america",
        "vereinigte staaten", "vereinigte staaten von amerika", "amerika", "förenta staterna",
    ),
    "ZA": ("south africa", "südafrika", "sudafrika", "sydafrika"),
    "KR": (
        "korea", "south korea", "republic of korea", "korea republic of", "südkorea",
        "sudkorea", "sydkorea",
    ),
    "SG": ("singapore", "singapur"),
    "IL": ("israel",),
    "AE": (
        "united arab emirates", "uae", "vereinigte arabische emirate", "vae",
        "förenade arabemiraten",
    ),
    "AR": ("argentina", "argentinien"),
    "CL": ("chile",),
    "CO": ("colombia", "kolumbien"),
    "HK": ("hong kong", "hongkong"),
    "TW": ("taiwan",),
    "ID": ("indonesia", "indonesien"),
    "TH": ("thailand",),
    "EG": ("egypt", "ägypten", "agypten", "egypten"),
}  # fmt: skip

_COUNTRY_KEYS: Final[dict[str, str]] = {
    text_key(name): code for code, names in _COUNTRY_NAMES.items() for name in names
}


def parse_country(text: str, *, field: str = "country") -> CountryCode:
    """The ISO 3166-1 code of a country given by its code, or by its name or a common
    alias in English, German or Swedish, the country's own name for the European ones
    (``"Nederland"``, ``"Polska"``), the international vehicle codes of European
    countries that are no ISO code (``"D"`` DE, ``"A"`` AT, ``"S"`` SE) and the EU's
    ``"EL"`` for Greece (``"UK"`` is GB, ``"Deutschland"`` DE, ``"Sverige"`` SE);
    anything else raises :class:`~crmkit.errors.UnknownCountry` naming ``field`` and
    the text.

    >>> parse_country("Deutschland"), parse_country(" uk "), parse_country("se")
    (CountryCode('DE'), CountryCode('GB'), CountryCode('SE'))
    """
    if not isinstance(text, str):
        raise UnknownCountry(field, text, "expected a country name or code as text")
    key = text_key(text)
    code = _COUNTRY_KEYS.get(key)
    if code is None and len(key) == 2 and key.upper() in COUNTRY_CODES:
        code = key.upper()
    if code is None:
        raise UnknownCountry(
            field, text, "not a country code, nor a country name in English, German or Swedish"
        )
    return CountryCode(code)


# Legal forms, as text_key spells them (dots become spaces: "s.a." -> "s a").
_LEGAL_FORMS: Final = tuple(
    sorted(
        {
            "gmbh", "gmbh co kg", "gmbh & co kg", "ag", "kg", "ohg", "ug", "ug haftungsbeschränkt",
            "e v", "ev", "se", "kgaa", "mbh",
            "ab", "aktiebolag", "hb", "kb", "ab publ", "publ",
            "ltd", "limited", "plc", "llp", "llc", "inc", "incorporated", "corp", "corporation",
            "co", "company", "lp",
            "sa", "s a", "sarl", "s a r l", "sas", "s a s", "bv", "b v", "nv", "n v",
            "oy", "oyj", "as", "a s", "asa", "aps", "spa", "s p a", "srl", "s r l",
        },
        key=len,
        reverse=True,
    )
)  # fmt: skip


_LEGAL_FORM_KEYS: Final = frozenset(text_key(form) for form in _LEGAL_FORMS)


def only_legal_form(name: str | None) -> bool:
    """Whether ``name`` is nothing but a legal form ("GmbH", "Ltd."): no company name."""
    return text_key(name) in _LEGAL_FORM_KEYS


def company_key(name: str | None) -> str:
    """The key of a company name: :func:`text_key` without legal forms (GmbH, AG, AB,
    Ltd, Inc, ...) at its end, and without a leading "the".

    >>> company_key("ACME GmbH & Co. KG"), company_key("Acme AB (publ)"), company_key("Acme, Inc.")
    ('acme', 'acme', 'acme')
    """
    key = text_key(name)
    if key.startswith("the "):
        key = key[4:]
    changed = True
    while changed:
        changed = False
        for form in _LEGAL_FORMS:
            suffix = f" {text_key(form)}"
            if key.endswith(suffix) and len(key) > len(suffix):
                key = key[: -len(suffix)].rstrip()
                changed = True
                break
    return key
