"""Rows of a spreadsheet as entities: which column is which field, and each cell read as
the field's type, with every problem named.

Pure functions (no files, no store): :class:`ColumnMapping` maps the header of a CSV
file to the fields of a :class:`RecordKind` (given, or guessed from common headers in
English, German and Swedish), :func:`read_cells` reads the text of one row into typed
values, and :func:`build_record` makes the entity. :func:`crmkit.crm.import_csv` runs
them over a file and writes through the store.
"""

import functools
import re
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from enum import Enum, StrEnum
from types import MappingProxyType
from typing import Any, Final
from uuid import UUID

import attrs

from crmkit.clock import ensure_utc
from crmkit.errors import ImportFileError, Problem, ValidationError
from crmkit.models import (
    Account,
    Activity,
    ActivityKind,
    Contact,
    Deal,
    DealStatus,
    Entity,
    Lead,
    LeadChannel,
    LeadStatus,
    LifecycleStage,
    Money,
    PhoneNumber,
)
from crmkit.quality._normalise import parse_country

__all__ = [
    "FIELD_TYPES",
    "MAX_CELL",
    "ColumnMapping",
    "RecordKind",
    "build_record",
    "read_cells",
]

MAX_CELL: Final = 100_000
"""The longest cell read, in characters (the longest text a model holds); a longer cell
is a problem of its row."""


class RecordKind(StrEnum):
    """What the rows of an import are."""

    CONTACTS = "contacts"
    ACCOUNTS = "accounts"
    LEADS = "leads"
    DEALS = "deals"
    ACTIVITIES = "activities"

    @property
    def entity(self) -> type[Entity]:
        """The entity class a row becomes."""
        return _ENTITIES[self]


_ENTITIES: Final[Mapping[RecordKind, type[Entity]]] = MappingProxyType(
    {
        RecordKind.CONTACTS: Contact,
        RecordKind.ACCOUNTS: Account,
        RecordKind.LEADS: Lead,
        RecordKind.DEALS: Deal,
        RecordKind.ACTIVITIES: Activity,
    }
)

# The type of each field a column may fill; ``contact_email`` names the row's contact.
_TEXT, _EMAIL, _PHONE, _COUNTRY, _TAGS, _BOOL = "text", "email", "phone", "country", "tags", "bool"
_DATETIME, _DATE, _INT, _FLOAT, _DECIMAL, _MONEY = (
    "datetime",
    "date",
    "int",
    "float",
    "decimal",
    "money",
)
_CURRENCY, _PERCENT, _UUID, _NAME = "currency", "probability", "uuid", "full_name"

FIELD_TYPES: Final[Mapping[RecordKind, Mapping[str, Any]]] = MappingProxyType(
    {
        RecordKind.CONTACTS: MappingProxyType(
            {
                "first_name": _TEXT,
                "last_name": _TEXT,
                "full_name": _NAME,
                "email": _EMAIL,
                "phone": _PHONE,
                "country": _COUNTRY,
                "language": _TEXT,
                "account_id": _UUID,
                "lifecycle_stage": LifecycleStage,
                "owner": _TEXT,
                "do_not_contact": _BOOL,
                "tags": _TAGS,
                "created_at": _DATETIME,
            }
        ),
        RecordKind.ACCOUNTS: MappingProxyType(
            {
                "name": _TEXT,
                "domain": _TEXT,
                "country": _COUNTRY,
                "industry": _TEXT,
                "employees": _INT,
                "annual_revenue": _MONEY,
                "currency": _CURRENCY,
                "owner": _TEXT,
                "tags": _TAGS,
                "created_at": _DATETIME,
            }
        ),
        RecordKind.LEADS: MappingProxyType(
            {
                "contact_email": _EMAIL,
                "contact_id": _UUID,
                "source": _TEXT,
                "channel": LeadChannel,
                "status": LeadStatus,
                "score": _FLOAT,
                "owner": _TEXT,
                "created_at": _DATETIME,
            }
        ),
        RecordKind.DEALS: MappingProxyType(
            {
                "title": _TEXT,
                "pipeline": _TEXT,
                "stage": _TEXT,
                "amount": _MONEY,
                "currency": _CURRENCY,
                "probability": _PERCENT,
                "status": DealStatus,
                "contact_email": _EMAIL,
                "contact_id": _UUID,
                "account_id": _UUID,
                "expected_close": _DATE,
                "closed_at": _DATETIME,
                "lost_reason": _TEXT,
                "owner": _TEXT,
                "tags": _TAGS,
                "created_at": _DATETIME,
            }
        ),
        RecordKind.ACTIVITIES: MappingProxyType(
            {
                "contact_email": _EMAIL,
                "contact_id": _UUID,
                "kind": ActivityKind,
                "occurred_at": _DATETIME,
                "subject": _TEXT,
                "body": _TEXT,
                "amount": _MONEY,
                "currency": _CURRENCY,
                "actor": _TEXT,
                "created_at": _DATETIME,
            }
        ),
    }
)
"""The fields a column may fill, per kind of record, with the type its text is read as
(an enumeration class for enumerated fields). Every kind also takes ``custom.<key>``
(``properties.<key>`` for activities), read as text, or as ``custom.<key>:int``,
``:float`` or ``:bool``."""

_REQUIRED: Final[Mapping[RecordKind, tuple[tuple[str, ...], ...]]] = MappingProxyType(
    {
        RecordKind.CONTACTS: (("email", "phone", "first_name", "last_name", "full_name"),),
        RecordKind.ACCOUNTS: (("name",),),
        RecordKind.LEADS: (("contact_email", "contact_id"), ("source",), ("channel",)),
        RecordKind.DEALS: (("title",), ("pipeline",), ("stage",)),
        RecordKind.ACTIVITIES: (("contact_email", "contact_id"), ("kind",), ("occurred_at",)),
    }
)

# Common headers (folded: lower case, no accents, no spaces, '-' or '_') per field.
_EMAILS = ("email", "mail", "emailaddress", "emailadresse", "epost", "epostadress", "mejl")
_CREATED = (
    "createdat", "created", "createdon", "datecreated", "signupdate", "signedup", "erstellt",
    "erstelltam", "angelegt", "angelegtam", "skapad", "skapades", "registrerad",
    "registreringsdatum",
)  # fmt: skip
_COMMON: Final = {
    "country": ("country", "countrycode", "land", "staat", "landskod"),
    "owner": ("owner", "besitzer", "inhaber", "zustandig", "agare", "ansvarig"),
    "tags": ("tags", "tag", "labels", "schlagworter", "schlagworte", "etiketter", "taggar"),
    "created_at": _CREATED,
    "currency": ("currency", "wahrung", "valuta"),
}
_HEADERS: Final[Mapping[RecordKind, Mapping[str, tuple[str, ...]]]] = MappingProxyType(
    {
        RecordKind.CONTACTS: {
            **_COMMON,
            "email": _EMAILS,
            "first_name": (
                "firstname",
                "first",
                "givenname",
                "forename",
                "vorname",
                "fornamn",
                "tilltalsnamn",
            ),
            "last_name": (
                "lastname",
                "last",
                "surname",
                "familyname",
                "nachname",
                "familienname",
                "efternamn",
            ),
            "full_name": ("name", "fullname", "vollername", "namn", "fulltnamn", "kontakt"),
            "phone": (
                "phone",
                "telephone",
                "tel",
                "phonenumber",
                "mobile",
                "mobil",
                "mobilephone",
                "handy",
                "telefon",
                "telefonnummer",
                "mobilnummer",
                "mobiltelefon",
            ),
            "language": ("language", "lang", "sprache", "sprak"),
            "lifecycle_stage": ("lifecyclestage", "lifecycle", "lebenszyklus", "livscykel"),
            "do_not_contact": (
                "donotcontact",
                "optout",
                "nichtkontaktieren",
                "kontaktsperre",
                "kontaktainte",
            ),
            "account_id": ("accountid",),
        },
        RecordKind.ACCOUNTS: {
            **_COMMON,
            "name": (
                "name",
                "company",
                "companyname",
                "account",
                "accountname",
                "organisation",
                "organization",
                "firma",
                "unternehmen",
                "firmenname",
                "foretag",
                "bolag",
                "organisationsnamn",
            ),
            "domain": ("domain", "website", "web", "url", "webseite", "webbplats", "hemsida"),
            "industry": ("industry", "branche", "bransch", "sector"),
            "employees": ("employees", "headcount", "mitarbeiter", "anstallda"),
            "annual_revenue": ("annualrevenue", "revenue", "umsatz", "jahresumsatz", "omsattning"),
        },
        RecordKind.LEADS: {
            **_COMMON,
            "contact_email": (*_EMAILS, "contactemail"),
            "contact_id": ("contactid",),
            "source": ("source", "leadsource", "quelle", "kalla"),
            "channel": ("channel", "kanal"),
            "status": ("status", "leadstatus"),
            "score": ("score", "leadscore", "punkte", "poang"),
        },
        RecordKind.DEALS: {
            **_COMMON,
            "title": ("title", "deal", "dealname", "name", "titel", "bezeichnung", "affar"),
            "pipeline": ("pipeline",),
            "stage": ("stage", "dealstage", "phase", "stufe", "steg", "fas"),
            "amount": ("amount", "value", "betrag", "wert", "belopp", "varde", "summe"),
            "probability": ("probability", "wahrscheinlichkeit", "sannolikhet"),
            "status": ("status", "dealstatus"),
            "contact_email": (*_EMAILS, "contactemail"),
            "contact_id": ("contactid",),
            "account_id": ("accountid",),
            "expected_close": (
                "expectedclose",
                "closedate",
                "expectedclosedate",
                "abschlussdatum",
                "stangning",
            ),
            "closed_at": ("closedat", "closed", "abgeschlossen", "avslutad"),
            "lost_reason": ("lostreason", "verlustgrund", "forlorandeorsak"),
        },
        RecordKind.ACTIVITIES: {
            **_COMMON,
            "contact_email": (*_EMAILS, "contactemail"),
            "contact_id": ("contactid",),
            "kind": ("kind", "type", "activitytype", "typ", "art", "aktivitat"),
            "occurred_at": (
                "occurredat",
                "date",
                "datum",
                "time",
                "timestamp",
                "when",
                "zeit",
                "zeitpunkt",
                "tid",
                "tidpunkt",
            ),
            "subject": ("subject", "betreff", "amne", "titel", "title"),
            "body": ("body", "text", "notes", "note", "notiz", "anteckning", "beskrivning"),
            "amount": ("amount", "value", "betrag", "belopp"),
            "actor": ("actor", "user", "by", "benutzer", "anvandare"),
        },
    }
)

_CUSTOM: Final = re.compile(
    r"(custom|properties)\.([a-z][a-z0-9_]{0,62})(?::(text|int|float|bool))?\Z"
)
_FOLD: Final = re.compile(r"[\s_\-./]+")


def _fold(header: str) -> str:
    text = unicodedata.normalize("NFKD", header.strip().casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return _FOLD.sub("", text.replace("ß", "ss"))


def _check_target(kind: RecordKind, target: str) -> str | None:
    """Why ``target`` is not a field of ``kind``, or ``None`` when it is one."""
    if target in FIELD_TYPES[kind]:
        return None
    match = _CUSTOM.match(target)
    prefix = "properties" if kind is RecordKind.ACTIVITIES else "custom"
    if match and match.group(1) == prefix:
        return None
    known = ", ".join(FIELD_TYPES[kind])
    return f"not a field of {kind}: expected one of {known}, {prefix}.<key>[:int|:float|:bool]"


def _kind(kind: object) -> RecordKind:
    try:
        return RecordKind(kind)  # type: ignore[arg-type]
    except ValueError:
        allowed = ", ".join(k.value for k in RecordKind)
        raise ImportFileError("kind", kind, f"expected one of: {allowed}") from None


@attrs.frozen
class ColumnMapping:
    """Which column of a file fills which field of a :class:`RecordKind`.

    ``columns`` holds, in the order of the header, each header and its field (``None``
    for a column left out). Build one with :meth:`guess` or :meth:`given`.
    """

    kind: RecordKind = attrs.field(converter=_kind)
    columns: tuple[tuple[str, str | None], ...] = attrs.field()

    @columns.validator
    def _check(self, _attribute: object, value: object) -> None:
        if not isinstance(value, tuple) or not all(
            isinstance(pair, tuple)
            and len(pair) == 2
            and isinstance(pair[0], str)
            and (pair[1] is None or isinstance(pair[1], str))
            for pair in value
        ):
            raise ImportFileError("columns", value, "expected a tuple of (header, field) pairs")
        for header, field in value:
            why = None if field is None else _check_target(self.kind, field)
            if why is not None:
                raise ImportFileError(f"columns[{header!r}]", field, why)

    @property
    def fields(self) -> dict[str, int]:
        """The mapped fields, each with the index of its column."""
        return {field: index for index, (_, field) in enumerate(self.columns) if field}

    @property
    def ignored(self) -> tuple[str, ...]:
        """The headers of the columns that fill no field."""
        return tuple(header for header, field in self.columns if field is None)

    @classmethod
    def guess(cls, kind: RecordKind | str, header: Sequence[str]) -> "ColumnMapping":
        """The mapping of ``header`` read from common column names in English, German
        and Swedish (``"E-Mail"``, ``"Vorname"``, ``"Förnamn"``, ``"Land"``, ...) and
        from the field names themselves (``"first_name"``, ``"custom.plan"``).

        Raises :class:`~crmkit.errors.ImportFileError` (field ``header``) when a header
        is given twice, or when no column names a field the kind needs.
        """
        kind = _kind(kind)
        known: dict[str, str] = {}
        for field, names in _HEADERS[kind].items():
            for name in names:
                known.setdefault(name, field)
        for field in FIELD_TYPES[kind]:
            known[_fold(field)] = field
        columns: list[tuple[str, str | None]] = []
        for name in _header(header):
            if _CUSTOM.match(name.strip()) and _check_target(kind, name.strip()) is None:
                columns.append((name, name.strip()))
            else:
                columns.append((name, known.get(_fold(name))))
        return cls._checked(kind, columns)

    @classmethod
    def given(
        cls, kind: RecordKind | str, header: Sequence[str], mapping: Mapping[str, str | None]
    ) -> "ColumnMapping":
        """The mapping of ``header`` that ``mapping`` (header -> field, ``None`` to leave a
        column out) gives; headers it does not name are guessed as by :meth:`guess`.

        Raises :class:`~crmkit.errors.ImportFileError` naming the header (field
        ``mapping``) for a field the kind does not have or a header the file does not
        have.
        """
        kind = _kind(kind)
        if not isinstance(mapping, Mapping):
            raise ImportFileError("mapping", mapping, "expected a mapping of header -> field")
        guessed = cls.guess(kind, header) if header else cls(kind, ())
        columns = dict(guessed.columns)
        problems = []
        for name, target in mapping.items():
            if not isinstance(name, str) or name not in columns:
                problems.append(Problem(f"mapping[{name!r}]", name, "the file has no such column"))
                continue
            if target is not None:
                why = _check_target(kind, target) if isinstance(target, str) else "not a name"
                if why is not None:
                    problems.append(Problem(f"mapping[{name!r}]", target, why))
                    continue
            columns[name] = target
        if problems:
            raise ImportFileError.of(problems)
        return cls._checked(kind, [(h, columns[h]) for h in _header(header)])

    @classmethod
    def _checked(cls, kind: RecordKind, columns: list[tuple[str, str | None]]) -> "ColumnMapping":
        problems = []
        seen: dict[str, str] = {}
        for header, field in columns:
            if field is None:
                continue
            bare = field.partition(":")[0]
            if bare in seen:
                problems.append(
                    Problem("header", header, f"fills {bare} as column {seen[bare]!r} does")
                )
            seen[bare] = header
        for choices in _REQUIRED[kind]:
            if not any(c in seen for c in choices):
                wanted = " or ".join(choices)
                problems.append(
                    Problem("header", [h for h, _ in columns], f"{kind} need a column for {wanted}")
                )
        if problems:
            raise ImportFileError.of(problems)
        return cls(kind, tuple(columns))


def _header(header: Sequence[str]) -> list[str]:
    if isinstance(header, str) or not isinstance(header, Sequence):
        raise ImportFileError("header", header, "expected a sequence of column names")
    names = list(header)
    for index, name in enumerate(names):
        if not isinstance(name, str):
            raise ImportFileError(f"header[{index}]", name, "expected a column name")
    if not names or all(not n.strip() for n in names):
        raise ImportFileError("header", names, "the header row is empty")
    return names


# ---------------------------------------------------------------------------- cells

_TRUE: Final = frozenset({"true", "yes", "y", "1", "x", "ja", "j", "sant", "wahr"})
_FALSE: Final = frozenset({"false", "no", "n", "0", "nein", "nej", "falskt", "falsch"})
_MONEY_TEXT: Final = re.compile(r"\s*([A-Za-z]{3})?\s*([-+0-9.,' ]+?)\s*([A-Za-z]{3}|€|\$|£)?\s*\Z")
_TAG_SEPARATORS: Final = re.compile(r"[;,|]")
_DECIMAL_TEXT: Final = re.compile(r"[-+]?\d+(\.\d+)?")
_SYMBOLS: Final = {"€": "EUR", "$": "USD", "£": "GBP"}
_GERMAN_DATE: Final = re.compile(
    r"(\d{1,2})\.(\d{1,2})\.(\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?\Z"
)


def _number(text: str) -> Decimal:
    """A decimal number, with a comma or a point as decimal separator and the other as
    the thousands separator (``1.234,56``, ``1,234.56``, ``0,5``)."""
    raw = text.replace(" ", "").replace("'", "").replace("\u00a0", "")
    if "," in raw and "." in raw:
        decimal_mark = "," if raw.rfind(",") > raw.rfind(".") else "."
        thousands = "." if decimal_mark == "," else ","
        raw = raw.replace(thousands, "").replace(decimal_mark, ".")
    elif raw.count(",") == 1:
        raw = raw.replace(",", ".")
    if not _DECIMAL_TEXT.fullmatch(raw):
        raise ValueError("not a number")
    return Decimal(raw)


def _datetime(text: str, zone: tzinfo) -> datetime:
    """An ISO 8601 date or time (``2024-05-01``, ``2024-05-01 10:30``, with or without
    an offset) or a German one (``01.05.2024 10:30``); without an offset in ``zone``."""
    german = _GERMAN_DATE.match(text)
    if german:
        day, month, year, hour, minute, second = german.groups()
        value = datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0)
        )
    else:
        value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


def _date(text: str) -> date:
    german = _GERMAN_DATE.match(text)
    if german and german.group(4) is None:
        day, month, year = german.group(1, 2, 3)
        return date(int(year), int(month), int(day))
    return date.fromisoformat(text)


def _enum(enum: type[Enum], text: str) -> Enum:
    folded = _fold(text)
    for member in enum:
        if _fold(str(member.value)) == folded or _fold(member.name) == folded:
            return member
    raise ValueError(f"expected one of: {', '.join(str(m.value) for m in enum)}")


def _cell(kind: Any, text: str, zone: tzinfo) -> Any:  # noqa: PLR0912
    """The value of one non-empty cell; ``ValueError`` or ``ValidationError`` on a problem."""
    if isinstance(kind, type) and issubclass(kind, Enum):
        return _enum(kind, text)
    match kind:
        case "text" | "email" | "phone" | "full_name":
            return text
        case "country":
            return parse_country(text)
        case "tags":
            return frozenset(t.strip() for t in _TAG_SEPARATORS.split(text) if t.strip())
        case "bool":
            folded = text.casefold()
            if folded in _TRUE:
                return True
            if folded in _FALSE:
                return False
            raise ValueError("expected yes or no (true/false, ja/nein, ja/nej, 1/0)")
        case "datetime":
            return _datetime(text, zone)
        case "date":
            return _date(text)
        case "int":
            number = _number(text)
            if number != number.to_integral_value():
                raise ValueError("expected a whole number")
            return int(number)
        case "float":
            return float(_number(text))
        case "decimal":
            return _number(text)
        case "probability":
            percent = text.endswith("%")
            number = _number(text.removesuffix("%").strip())
            return number / 100 if percent or number > 1 else number
        case "currency":
            return _SYMBOLS.get(text, text.upper())
        case "money":
            match = _MONEY_TEXT.match(text)
            if match is None:
                raise ValueError("expected an amount such as 1234.50, 1.234,50 EUR or EUR 99")
            before, amount, after = match.groups()
            if before and after:
                raise ValueError("the currency is given twice")
            code = before or after
            return (_number(amount), _SYMBOLS.get(code, code.upper()) if code else None)
        case "uuid":
            return UUID(text)
    raise AssertionError(kind)  # pragma: no cover


def _custom(kind: str | None, text: str) -> Any:
    match kind:
        case "int":
            return _cell("int", text, UTC)
        case "float":
            return _cell("float", text, UTC)
        case "bool":
            return _cell("bool", text, UTC)
    return text


@functools.lru_cache(maxsize=64)
def _plan(mapping: ColumnMapping) -> tuple[tuple[int, str, str, Any, str | None], ...]:
    """``(index, header, field, type, cast)`` of each mapped column: what
    :func:`read_cells` does per row, worked out once per mapping."""
    types = FIELD_TYPES[mapping.kind]
    plan = []
    for index, (header, field) in enumerate(mapping.columns):
        if field is not None:
            name, _, cast = field.partition(":")
            plan.append((index, header, name, types.get(name), cast or None))
    return tuple(plan)


def read_cells(  # noqa: PLR0912 - the checks of the arguments, then one step per cell
    mapping: ColumnMapping, cells: Sequence[str], *, zone: tzinfo = UTC
) -> tuple[dict[str, Any], list[Problem]]:
    """The values of one row's ``cells`` by field, read as the field's type, and the
    problems found (each naming the column's header and the text).

    Empty and blank cells are missing values. Times without a UTC offset are read in
    ``zone``. A cell longer than :data:`MAX_CELL` characters, or a row with more or fewer
    cells than the header, is a problem.
    """
    if not isinstance(mapping, ColumnMapping):
        raise ValidationError("mapping", mapping, "expected a ColumnMapping")
    if isinstance(cells, str) or not isinstance(cells, Sequence):
        raise ValidationError("cells", cells, "expected a sequence of texts")
    for index, cell in enumerate(cells):
        if not isinstance(cell, str):
            raise ValidationError(f"cells[{index}]", cell, "expected a text")
    if not isinstance(zone, tzinfo):
        raise ValidationError("zone", zone, "expected a tzinfo")
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    columns = mapping.columns
    if len(cells) != len(columns):
        problems.append(
            Problem("row", len(cells), f"has {len(cells)} cells, the header {len(columns)}")
        )
    huge = set()
    if cells and max(map(len, cells)) > MAX_CELL:
        for (header, _), raw in zip(columns, cells, strict=False):
            if len(raw) > MAX_CELL:
                huge.add(header)
                problems.append(
                    Problem(
                        header, f"<{len(raw)} characters>", f"longer than {MAX_CELL} characters"
                    )
                )
    count = len(cells)
    for index, header, name, kind, cast in _plan(mapping):
        if index >= count or header in huge:
            continue
        text = cells[index].strip()
        if not text:
            continue
        try:
            if kind is not None:
                values[name] = _cell(kind, text, zone)
            else:
                values[name] = _custom(cast, text)
        except ValidationError as error:
            problems.extend(Problem(header, text, p.reason) for p in error.problems)
        except (ValueError, InvalidOperation, OverflowError) as error:
            reason = str(error) if str(error) else "cannot be read"
            problems.append(Problem(header, text, _reason(kind, reason)))
    return values, problems


def _reason(kind: Any, reason: str) -> str:
    if kind in ("datetime", "date"):
        return "not a date (2024-05-31, 2024-05-31 14:30, 31.05.2024)"
    if kind in ("int", "float", "decimal", "probability"):
        return "not a number"
    if kind == "uuid":
        return "not an id (a UUID)"
    return reason


# ---------------------------------------------------------------------------- records


def build_record(  # noqa: PLR0912, PLR0915 - one step per kind of field
    kind: RecordKind | str,
    values: Mapping[str, Any],
    *,
    id: UUID,
    now: datetime,
    contact_id: UUID | None = None,
    headers: Mapping[str, str] | None = None,
) -> Entity:
    """The entity of one row of ``kind`` from :func:`read_cells`' ``values``.

    ``id`` becomes its id; ``created_at`` is the row's (its history is kept) or ``now``,
    ``updated_at`` is ``now``. ``contact_id`` is the row's contact (leads, deals and
    activities name it by ``contact_email``, which the caller looks up). Raises one
    :class:`~crmkit.errors.ValidationError` listing every problem, fields named by their
    column header where ``headers`` (field -> header) knows it.
    """
    kind = _kind(kind)
    if not isinstance(values, Mapping):
        raise ValidationError("values", values, "expected a mapping of field -> value")
    for key in values:
        if not isinstance(key, str):
            raise ValidationError("values", type(key).__name__, "field names are text")
    if not isinstance(id, UUID):
        raise ValidationError("id", id, "expected a UUID")
    now = ensure_utc(now, "now")
    if contact_id is not None and not isinstance(contact_id, UUID):
        raise ValidationError("contact_id", contact_id, "expected a UUID or None")
    if headers is not None and not isinstance(headers, Mapping):
        raise ValidationError("headers", headers, "expected a mapping of field -> header")
    fields: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    problems: list[Problem] = []
    types = FIELD_TYPES[kind]
    for name, value in values.items():
        field_type = types.get(name) if isinstance(name, str) else None
        if field_type is None:  # a custom field, or no field at all
            if not isinstance(name, str) or _check_target(kind, name) is not None:
                problems.append(Problem(str(name), value, f"not a field of {kind}"))
            else:
                custom[name.partition(":")[0].partition(".")[2]] = value
        elif field_type == _MONEY and not _is_amount(value):
            problems.append(Problem(name, value, "expected (amount, currency or None)"))
        elif field_type == _NAME and not isinstance(value, str):
            problems.append(Problem(name, value, "expected a name as text"))
        else:
            fields[name] = value
    created = fields.pop("created_at", None) or now
    try:
        created = ensure_utc(created, "created_at")
    except ValidationError as error:
        problems.extend(error.problems)
        created = now
    if created > now:
        problems.append(Problem("created_at", created.isoformat(), "lies in the future"))
        created = now
    fields.pop("contact_email", None)
    if "contact_id" in FIELD_TYPES[kind] and contact_id is not None:
        fields["contact_id"] = contact_id
    full = fields.pop("full_name", None)
    if full is not None and "first_name" not in fields and "last_name" not in fields:
        first, _, last = full.rpartition(" ")
        fields["first_name"], fields["last_name"] = (first or None), last
    currency = fields.pop("currency", None)
    for money in ("amount", "annual_revenue"):
        if money in fields:
            amount, code = fields[money]
            code = code or currency
            if code is None:
                problems.append(
                    Problem(money, amount, "needs a currency (a currency column or 99 EUR)")
                )
                del fields[money]
            else:
                try:
                    fields[money] = Money(amount, code)
                except ValidationError as error:
                    problems.extend(p.within(money) for p in error.problems)
                    del fields[money]
    if kind is RecordKind.CONTACTS and "phone" in fields:
        try:
            country = fields.get("country")
            fields["phone"] = PhoneNumber.parse(fields["phone"], country)
        except ValidationError as error:
            problems.extend(p.within("phone") for p in error.problems)
            del fields["phone"]
    if custom:
        fields["properties" if kind is RecordKind.ACTIVITIES else "custom"] = custom
    entity = kind.entity
    stamp: dict[str, Any] = {"id": id, "version": 1, "created_at": created, "updated_at": now}
    record: Entity | None = None
    try:
        record = entity(**stamp, **fields)
    except ValidationError as error:
        problems.extend(error.problems)
    except TypeError as error:  # a field the entity lacks: a missing required one
        problems.append(Problem("row", sorted(fields), f"cannot make a {kind}: {error}"))
    if problems or record is None:
        named = headers or {}
        raise ValidationError.of([_named(p, named) for p in problems])
    return record


def _is_amount(value: object) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], Decimal)
        and (value[1] is None or isinstance(value[1], str))
    )


def _named(problem: Problem, headers: Mapping[str, str]) -> Problem:
    head = problem.field.partition(".")[0]
    header = headers.get(problem.field) or headers.get(head)
    if header is None or header == problem.field:
        return problem
    return Problem(f"{header} ({problem.field})", problem.value, problem.reason)
