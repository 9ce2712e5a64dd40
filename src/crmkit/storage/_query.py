"""Query shapes shared by every adapter: ordering, keyset cursors and pages."""

import base64
import json
import math
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

import attrs

from crmkit.clock import ensure_utc
from crmkit.errors import ValidationError
from crmkit.models import Entity
from crmkit.models._fields import finite
from crmkit.storage._columns import Column, Kind, columns, sortable

__all__ = ["Cursor", "Order", "Page", "check_cursor", "check_order", "sort_key"]

_E = TypeVar("_E", bound=Entity)


@attrs.frozen
class Order:
    """How a query orders its results: one field, ascending unless ``descending``.

    Ties are broken by ``id``, so the order is total and pages never overlap. A missing
    value (``None``) sorts after every value. Text and enumerations compare by code point
    (as Python compares ``str``; PostgreSQL's ``C`` collation). ``descending`` reverses
    the whole ascending order, ties and missing values included: ``field DESC NULLS
    FIRST, id DESC``. :func:`~crmkit.storage.sortable_fields` names the fields allowed.
    """

    field: str = "created_at"
    descending: bool = False


@attrs.frozen
class Cursor:
    """Where the next page starts: the ordering value and id of the last item seen.

    :meth:`token` writes it as an opaque URL-safe string for an API to hand out;
    :meth:`from_token` reads it back.
    """

    order: Order
    value: Any
    id: UUID

    def token(self) -> str:
        """The cursor as a URL-safe string."""
        data = [self.order.field, self.order.descending, _dump(self.value), str(self.id)]
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def from_token(cls, token: str, entity: type[Entity]) -> "Cursor":
        """Read a cursor written by :meth:`token` for a query on ``entity``.

        Raises :class:`~crmkit.errors.ValidationError` (field ``cursor``) for anything
        that is not such a token.
        """
        if not isinstance(token, str):
            raise ValidationError("cursor", token, "not a cursor of this query")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            field, descending, value, id_ = json.loads(raw)
            order = check_order(Order(field, descending), entity)
            column = columns(entity)[field]
            return cls(order, _load(column, value), UUID(id_))
        except (
            ValueError,  # also binascii.Error, UnicodeDecodeError and JSON's errors
            TypeError,
            OverflowError,  # a number too large for a float
            RecursionError,  # arrays nested too deep for the JSON reader
        ) as error:
            if isinstance(error, ValidationError) and error.field:
                raise  # the token's order is not one of this entity
            raise ValidationError("cursor", token, "not a cursor of this query") from None


def _dump(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value.value if hasattr(value, "value") else value


def _load(column: Column, value: Any) -> Any:
    if value is None:
        return None
    match column.kind:
        case Kind.DATETIME:
            return ensure_utc(datetime.fromisoformat(value))
        case Kind.DATE:
            return date.fromisoformat(value)
        case Kind.UUID:
            return UUID(value)
        case Kind.ENUM:
            assert column.enum is not None
            return column.enum(value)
        case Kind.FLOAT if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)  # OverflowError for an int beyond a float
            if math.isfinite(number):  # as every stored float is
                return number
        case Kind.INT if type(value) is int:
            return value
        case Kind.BOOL if type(value) is bool:
            return value
        case Kind.TEXT if type(value) is str:
            return value
    raise ValueError(value)


def _fits(column: Column, value: Any) -> bool:
    """Whether ``value`` is a value of ``column`` as a cursor holds it (``None`` too)."""
    match column.kind:
        case _ if value is None:
            return True
        case Kind.DATETIME:
            return isinstance(value, datetime) and value.utcoffset() is not None
        case Kind.DATE:
            return isinstance(value, date) and not isinstance(value, datetime)
        case Kind.UUID:
            return isinstance(value, UUID)
        case Kind.ENUM:
            return column.enum is not None and isinstance(value, column.enum)
        case Kind.FLOAT:
            return isinstance(value, int | float) and not isinstance(value, bool) and finite(value)
        case Kind.INT:
            return isinstance(value, int) and not isinstance(value, bool)
        case Kind.BOOL:
            return isinstance(value, bool)
        case Kind.TEXT:
            return isinstance(value, str)
    return False


def check_cursor(after: object, order: Order, entity: type[Entity]) -> Cursor:
    """``after`` if it is a cursor of a query on ``entity`` in ``order``: its value one of
    the ordering field (an aware datetime for a time) and its id a UUID."""
    if not isinstance(after, Cursor):
        raise ValidationError("after", after, "expected a Cursor")
    if after.order != order:
        raise ValidationError("after", after, "this cursor belongs to another order")
    column = columns(entity)[order.field]
    if not _fits(column, after.value) or not isinstance(after.id, UUID):
        raise ValidationError(
            "after.value", after.value, f"not a value of {entity.entity_name}.{order.field}"
        )
    return after


@attrs.frozen
class Page(Generic[_E]):
    """One page of a query's results and the cursor of the next (``None``: last page)."""

    items: tuple[_E, ...]
    next: Cursor | None

    def __iter__(self) -> Iterator[_E]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def check_order(order: Order, entity: type[Entity]) -> Order:
    """``order`` if ``entity`` can be ordered by it, else a :class:`ValidationError`."""
    if not isinstance(order, Order):
        raise ValidationError("order", order, "expected an Order")
    allowed = sortable(entity)
    if order.field not in allowed:
        raise ValidationError(
            "order",
            order.field,
            f"cannot order by this field; one of: {', '.join(sorted(allowed))}",
        )
    if type(order.descending) is not bool:
        raise ValidationError("order.descending", order.descending, "expected True or False")
    return order


def sort_key(order: Order) -> Any:
    """The Python sort key of ``order``, ascending (missing values last, then by id)."""
    name = order.field

    def key(entity: Any) -> tuple[Any, ...]:
        value = getattr(entity, name)
        if value is None:
            return (True, 0, entity.id)
        return (False, value, entity.id)

    return key
