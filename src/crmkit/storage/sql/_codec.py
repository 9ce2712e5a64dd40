"""Rows <-> entities, explicitly: one generated encoder and decoder per entity.

The encoder renders an entity as the tuple of its table's columns in the form the
database driver takes directly (so that bulk imports skip SQLAlchemy's per-row work);
the decoder builds the entity from the driver's values of the columns it reads (so that
reads skip SQLAlchemy's result processing too) through the entity's constructor, which
runs every model check again. Nested values (rules) go through
:mod:`crmkit.serialization`.
"""

import json
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from decimal import ROUND_FLOOR, Context, Decimal, Inexact, Rounded
from enum import Enum
from functools import lru_cache
from typing import Any, Final, cast
from uuid import UUID

import attrs
import sqlalchemy as sa

from crmkit.errors import StorageError
from crmkit.models import CustomFields, Entity, Money
from crmkit.models.rules import Rule
from crmkit.serialization import make_converter
from crmkit.storage._columns import Column, Kind, columns, memo
from crmkit.storage.sql._schema import fold_fields

__all__ = ["Codec", "codec", "decimal_parts", "erase_columns", "fold"]

NANOS: Final = 10**12
_EXACT: Final = Context(prec=80, traps=[Inexact, Rounded])
_CONVERTER: Final = make_converter()
_EMPTY_LIST: Final = "[]"
_EMPTY_OBJECT: Final = "{}"
_JSON: Final = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def decimal_parts(value: Decimal) -> tuple[int, int]:
    """``(units, nanos)``: the floor of ``value`` and its fraction in units of 10^-12."""
    try:
        units = value.to_integral_value(ROUND_FLOOR, _EXACT)
        nanos = _EXACT.multiply(_EXACT.subtract(value, units), Decimal(NANOS))
    except (Inexact, Rounded):  # beyond 80 digits, e.g. 1E-261: no 12-place fraction
        raise StorageError(f"{value} has more than 12 decimal places") from None
    if nanos != nanos.to_integral_value():
        raise StorageError(f"{value} has more than 12 decimal places")
    return int(units), int(nanos)


def fold(text: str | None) -> str | None:
    """The casefold shadow of ``text``: ``None`` when folding changes nothing."""
    if text is None:
        return None
    folded = text.casefold()
    return None if folded == text else folded


def _decimal(value: Decimal | None) -> tuple[str | None, int | None, int | None]:
    if value is None:
        return None, None, None
    units, nanos = decimal_parts(value)
    return str(value), units, nanos


def _money(value: Money | None) -> tuple[str | None, str | None, int | None, int | None]:
    if value is None:
        return None, None, None, None
    units, nanos = decimal_parts(value.amount)
    return f"{value.amount:f}", value.currency, units, nanos


@lru_cache(maxsize=4096)  # tag sets repeat across contacts; frozensets are hashable
def _tags(tags: frozenset[str]) -> tuple[str, str | None]:
    if not tags:
        return _EMPTY_LIST, None
    ordered = sorted(tags)
    folded = sorted({t.casefold() for t in ordered})
    return _JSON(ordered), None if folded == ordered else _JSON(folded)


def _custom(fields: CustomFields) -> tuple[str, str | None]:
    if not fields:
        return _EMPTY_OBJECT, None
    data = fields._data
    folded = {k: f for k, v in data.items() if type(v) is str and (f := v.casefold()) != v}
    return _JSON(data), _JSON(folded) if folded else None


def _rule(rule: Rule | None) -> str | None:
    if rule is None:
        return None
    return json.dumps(_CONVERTER.unstructure(rule), ensure_ascii=False)


def _read_json(data: Any) -> Any:
    """A JSON column's value: text on SQLite, already decoded by psycopg on PostgreSQL."""
    return json.loads(data) if type(data) is str else data


def _read_rule(data: Any) -> Rule | None:
    return None if data is None else _CONVERTER.structure(_read_json(data), Rule)


def _read_money(amount: str | None, currency: str | None) -> Money | None:
    return None if amount is None else Money(Decimal(amount), currency)  # type: ignore[arg-type]


_SQLITE_BOOLS: Final = {0: False, 1: True}


def _read_sqlite_bool(value: Any) -> Any:
    """SQLite keeps booleans as 0 and 1; anything else is handed on for the model to reject."""
    return _SQLITE_BOOLS.get(value, value) if type(value) is int else value


@attrs.frozen
class Codec:
    """How one entity is written to and read from its table on one dialect."""

    entity: type[Entity]
    names: tuple[str, ...]
    """The table's column names, in order (``tenant`` first, then ``id``)."""
    encode: Callable[[str, Entity], tuple[Any, ...]]
    """``(tenant, entity) -> row`` in the driver's own types."""
    read_names: tuple[str, ...]
    """The columns :attr:`decode` reads, in order (``id`` first): no shadows, no tenant."""
    decode: Callable[..., Entity]
    """``(row, members) -> entity`` from the driver's own values of :attr:`read_names`."""
    members_field: str | None
    """The field held in the members table (static segments), if any."""
    document: Callable[..., dict[str, Any]]
    """``(row, members) -> document``: the entity :attr:`decode` would build, as the
    JSON document :func:`~crmkit.serialization.make_converter` unstructures it to
    (equal, keys in the same order), without building the entity: ids, times and
    enumerations are checked for their form, not run through the model's checks."""


def _encode_source(  # noqa: PLR0912 - one branch per storage kind
    entity: type[Entity], postgres: bool
) -> tuple[list[str], list[str]]:
    names = ["tenant"]
    parts = ["tenant"]
    folded = fold_fields(entity)
    for column in columns(entity).values():
        name, optional = column.name, column.optional
        value = f"e.{name}"

        def maybe(expr: str, value: str = value, optional: bool = optional) -> str:
            return f"(None if {value} is None else {expr})" if optional else expr

        match column.kind:
            case Kind.UUID:
                names.append(name)
                parts.append(value if postgres else maybe(f"{value}.hex"))
            case Kind.INT | Kind.FLOAT | Kind.BOOL:
                names.append(name)
                parts.append(value)
            case Kind.TEXT:
                names.append(name)
                parts.append(value)
                if name in folded:
                    names.append(f"{name}_fold")
                    parts.append(f"fold({value})")
            case Kind.ENUM:
                names.append(name)
                parts.append(maybe(f"{value}.value"))
            case Kind.DATETIME:
                names.append(name)
                parts.append(
                    value if postgres else maybe(f'{value}.isoformat(" ", "microseconds")[:26]')
                )
            case Kind.DATE:
                names.append(name)
                parts.append(value if postgres else maybe(f"{value}.isoformat()"))
            case Kind.DECIMAL:
                names.extend([name, f"{name}_units", f"{name}_nanos"])
                parts.append(f"*decimal({value})")
            case Kind.MONEY:
                names.extend([name, f"{name}_currency", f"{name}_units", f"{name}_nanos"])
                parts.append(f"*money({value})")
            case Kind.TAGS:
                names.extend([name, f"{name}_fold"])
                parts.append(f"*tags({value})")
            case Kind.JSON:
                names.extend([name, f"{name}_fold"])
                parts.append(f"*custom({value})")
            case Kind.RULE:
                names.append(name)
                parts.append(f"rule({value})")
            case Kind.UUID_SET:
                pass
    return names, parts


def _decode_source(  # noqa: PLR0912 - one branch per storage kind
    entity: type[Entity], postgres: bool
) -> tuple[list[str], str]:
    """The columns to read and the source of ``decode``, converting the driver's values.

    SQLite's driver gives text for UUIDs, timestamps, dates and JSON, and 0/1 for
    booleans; psycopg gives Python values (JSON decoded). Text that is no UUID or
    timestamp raises ``ValueError`` (the store reports it as a ``StorageError``); every
    other value goes to the model's constructor, whose checks name the field.
    """
    names: list[str] = []
    arguments = []
    for column in columns(entity).values():
        name = column.name
        if column.kind is Kind.UUID_SET:
            arguments.append(f"{name}=members")
            continue
        at = f"r[{len(names)}]"
        names.append(name)
        match column.kind:
            case Kind.UUID if not postgres:
                expr = f"UUID(hex={at})"
            case Kind.DATETIME if not postgres:
                expr = f"datetime.fromisoformat({at}).replace(tzinfo=UTC)"
            case Kind.DATE if not postgres:
                expr = f"date.fromisoformat({at})"
            case Kind.BOOL if not postgres:
                expr = f"boolean({at})"
            case Kind.ENUM:
                expr = f"enum_{name}({at})"
            case Kind.DECIMAL:
                expr = f"Decimal({at})"
            case Kind.MONEY:
                names.append(f"{name}_currency")
                expr = f"money({at}, r[{len(names) - 1}])"
            case Kind.TAGS:
                expr = f"frozenset(json({at}))"
            case Kind.JSON:
                expr = f"CustomFields(json({at}))"
            case Kind.RULE:
                expr = f"rule({at})"
            case _:
                expr = at
        if column.optional and expr != at and column.kind not in (Kind.MONEY, Kind.RULE):
            expr = f"(None if {at} is None else {expr})"
        arguments.append(f"{name}={expr}")
    body = ",\n        ".join(arguments)
    return names, f"def decode(r, members=frozenset()):\n    return cls(\n        {body}\n    )\n"


def erase_columns(entity: type[Entity], column: Column, value: Any) -> dict[str, Any]:
    """The columns (and their shadows) that hold ``value`` of a text, yes/no, tags or
    custom field, as an UPDATE binds them (``erase_referring``)."""
    name = column.name
    match column.kind:
        case Kind.TAGS:
            return dict(zip((name, f"{name}_fold"), _tags(value), strict=True))
        case Kind.JSON:
            return dict(zip((name, f"{name}_fold"), _custom(value), strict=True))
        case Kind.TEXT if name in fold_fields(entity):
            return {name: value, f"{name}_fold": fold(value)}
        case Kind.TEXT | Kind.BOOL:
            return {name: value}
    raise StorageError(f"{entity.entity_name}.{name} cannot be erased in bulk")  # pragma: no cover


def _uuid_text(value: str) -> str:
    """A UUID's text form from the 32 hex digits SQLite holds (``str(UUID(hex=...))``)."""
    if len(value) != 32:
        raise ValueError(f"badly formed hexadecimal UUID string {value!r}")
    int(value, 16)  # hex digits only, else ValueError
    return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}".lower()


_reference_text: Final = lru_cache(maxsize=1024)(_uuid_text)


class _Values(dict[Any, Any]):
    """An enumeration's stored values, each mapped to itself; another is a ValueError
    (as the enumeration itself raises it)."""

    def __missing__(self, key: Any) -> Any:
        raise ValueError(f"{key!r} is not a stored value of this enumeration")


def _iso_text(value: str) -> str:
    """An aware UTC time's ``isoformat()`` from the fixed-width text SQLite holds
    (``YYYY-MM-DD HH:MM:SS.ffffff``), without parsing it; any other text is parsed."""
    if len(value) == 26 and value[10] == " " and value[19] == ".":
        clock = value[11:19] if value.endswith(".000000") else value[11:]
        return f"{value[:10]}T{clock}+00:00"
    return datetime.fromisoformat(value).replace(tzinfo=UTC).isoformat()


def _document_source(entity: type[Entity], postgres: bool) -> str:  # noqa: PLR0912
    """The source of ``document``: per column, the converter's JSON form of the value
    :func:`_decode_source` reads, from the driver's value (through the model's value
    only for money, decimals, rules and members)."""
    names: list[str] = []
    items = []
    for column in columns(entity).values():
        name = column.name
        if column.kind is Kind.UUID_SET:
            items.append(f"{name!r}: unstructure(members)")
            continue
        at = f"r[{len(names)}]"
        names.append(name)
        match column.kind:
            case Kind.UUID if postgres:
                expr = f"str({at})"
            case Kind.UUID:  # a reference repeats from row to row: its text is cached
                expr = f"uuid_text({at})" if name == "id" else f"reference_text({at})"
            case Kind.DATETIME if postgres:
                expr = f"{at}.astimezone(UTC).isoformat()"
            case Kind.DATETIME:
                expr = f"iso_text({at})"
            case Kind.DATE if postgres:
                expr = f"{at}.isoformat()"
            case Kind.DATE:
                expr = f"date.fromisoformat({at}).isoformat()"
            case Kind.BOOL if not postgres:
                expr = f"boolean({at})"
            case Kind.ENUM:
                expr = f"values_{name}[{at}]"
            case Kind.DECIMAL:
                expr = f"unstructure(Decimal({at}))"
            case Kind.MONEY:
                names.append(f"{name}_currency")
                expr = f"unstructure(money({at}, r[{len(names) - 1}]))"
            case Kind.TAGS:
                expr = f"sorted(json({at}))"
            case Kind.JSON:
                expr = f"({{}} if {at} == '{{}}' else unstructure(CustomFields(json({at}))))"
            case Kind.RULE:
                expr = f"unstructure(rule({at}))"
            case _:
                expr = at
        if column.optional and expr != at:
            expr = f"(None if {at} is None else {expr})"
        items.append(f"{name!r}: {expr}")
    body = ",\n        ".join(items)
    return f"def document(r, members=frozenset()):\n    return {{\n        {body}\n    }}\n"


@memo
def codec(entity: type[Entity], dialect: str) -> Codec:
    """The codec of ``entity`` for the dialect named ``dialect``."""
    postgres = dialect == "postgresql"
    names, parts = _encode_source(entity, postgres)
    source = f"def encode(tenant, e):\n    return ({', '.join(parts)},)\n"
    namespace: dict[str, Any] = {
        "fold": fold,
        "decimal": _decimal,
        "money": _money,
        "tags": _tags,
        "custom": _custom,
        "rule": _rule,
    }
    # Generated from the model's own field names (identifiers) and fixed templates only.
    exec(compile(source, f"<crmkit encode {entity.entity_name}>", "exec"), namespace)
    read_names, decode_source = _decode_source(entity, postgres)
    decode_namespace: dict[str, Any] = {
        "cls": entity,
        "UUID": UUID,
        "UTC": UTC,
        "datetime": datetime,
        "date": date,
        "Decimal": Decimal,
        "boolean": _read_sqlite_bool,
        "json": _read_json,
        "money": _read_money,
        "rule": _read_rule,
        "CustomFields": CustomFields,
    }
    for column in columns(entity).values():
        if column.kind is Kind.ENUM:
            decode_namespace[f"enum_{column.name}"] = column.enum
    exec(compile(decode_source, f"<crmkit decode {entity.entity_name}>", "exec"), decode_namespace)
    document_namespace = {
        **decode_namespace,
        "unstructure": _CONVERTER.unstructure,
        "uuid_text": _uuid_text,
        "reference_text": _reference_text,
        "iso_text": _iso_text,
    }
    for column in columns(entity).values():
        if column.kind is Kind.ENUM:
            values = _Values({m.value: m.value for m in cast(type[Enum], column.enum)})
            document_namespace[f"values_{column.name}"] = values
    source = _document_source(entity, postgres)
    exec(compile(source, f"<crmkit document {entity.entity_name}>", "exec"), document_namespace)
    members = next((c.name for c in columns(entity).values() if c.kind is Kind.UUID_SET), None)
    return Codec(
        entity,
        tuple(names),
        namespace["encode"],
        tuple(read_names),
        decode_namespace["decode"],
        members,
        document_namespace["document"],
    )


def check_table(table: sa.Table, names: Sequence[str]) -> None:
    """Fail loudly if a table and its codec ever disagree on the columns."""
    if tuple(table.columns.keys()) != tuple(names):
        raise StorageError(f"table {table.name} does not match its codec")
