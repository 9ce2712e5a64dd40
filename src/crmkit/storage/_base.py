"""Checks and algorithms every adapter shares, so that they cannot disagree."""

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, TypeVar, cast
from uuid import UUID

import attrs

from crmkit.clock import Clock, ensure_utc
from crmkit.errors import InvalidRule, ValidationError
from crmkit.models import (
    ActivityKind,
    Contact,
    CustomFields,
    EmailAddress,
    Entity,
    SubjectKind,
    Task,
    TaskKind,
    TaskStatus,
)
from crmkit.models.rules import Reachable, ReachCheck, Rule, RuleEntity
from crmkit.privacy import exclusion_steps
from crmkit.quality import MergeKind, MergeRecord
from crmkit.serialization import make_converter
from crmkit.storage._columns import ENTITIES, Kind, columns, groupable, references
from crmkit.storage._query import Cursor, Order, Page, check_cursor, check_order

__all__ = [
    "TaskQuery",
    "check_batch_size",
    "check_count",
    "check_email",
    "check_erase_values",
    "check_group_field",
    "check_id",
    "check_ids",
    "check_item",
    "check_kinds",
    "check_limit",
    "check_many",
    "check_match_keys",
    "check_merge_anonymised",
    "check_merge_record",
    "check_reach",
    "check_reference",
    "check_rule",
    "check_subject",
    "check_tenant",
    "check_version",
    "check_window",
    "erased",
    "iterate_pages",
    "merge_contacts",
    "merge_from_json",
    "merge_involves",
    "merge_to_json",
    "page_of",
    "query_now",
    "reach_counts_by_steps",
    "start_after",
    "task_query",
    "validate_tenant",
]

_E = TypeVar("_E", bound=Entity)
_TENANT: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\Z")
_RULE_ENTITIES: Final = {e.value: e for e in RuleEntity}


def validate_tenant(tenant: object) -> str:
    """``tenant`` if it is a valid tenant key, else :class:`~crmkit.errors.ValidationError`
    (field ``tenant``).

    A tenant key is a ``str`` of 1 to 64 ASCII letters, digits, ``_``, ``.``, ``:`` and
    ``-`` that starts with a letter or digit. Every store refuses any other key, in its
    constructor and in :meth:`~crmkit.storage.Store.for_tenant`, with this error.

    >>> validate_tenant("acme-eu:1")
    'acme-eu:1'
    """
    if not isinstance(tenant, str) or not _TENANT.match(tenant):
        raise ValidationError(
            "tenant",
            tenant,
            "a tenant key has 1 to 64 ASCII letters, digits, '_', '.', ':' or '-', "
            "starting with a letter or digit",
        )
    return tenant


check_tenant = validate_tenant


def check_rule(rule: object, entity: type[Entity]) -> Rule | None:
    """``rule`` if it can select ``entity``; rules exist for contacts, leads, deals, tickets."""
    if rule is None:
        return None
    if not isinstance(rule, Rule):
        raise InvalidRule("rule", rule, "expected a Rule")
    wanted = _RULE_ENTITIES.get(entity.entity_name)
    if wanted is None:
        raise InvalidRule("rule", rule.entity, f"{entity.entity_name} queries take no rule")
    if rule.entity is not wanted:
        raise InvalidRule(
            "rule", rule.entity, f"a rule over {rule.entity}s cannot select {wanted}s"
        )
    return rule


def check_item(item: object, entity: type[_E], field: str = "item") -> _E:
    """``item`` if it is an ``entity``, else a :class:`ValidationError` naming ``field``."""
    if not isinstance(item, entity):
        raise ValidationError(field, item, f"expected a {entity.__name__}")
    return item


def check_match_keys(keys: object) -> list[tuple[str, str]]:
    """``keys`` as a list of ``(name, value)`` text pairs, or a :class:`ValidationError`
    naming ``keys`` or the position of the first wrong pair (``keys[3]``)."""
    found = []
    for index, pair in enumerate(check_many(keys, "keys")):
        if (
            not isinstance(pair, tuple)
            or len(pair) != 2
            or not all(isinstance(part, str) for part in pair)
        ):
            raise ValidationError(f"keys[{index}]", pair, "expected a (name, value) pair of text")
        found.append((pair[0], pair[1]))
    return found


def check_id(value: object, field: str = "id") -> UUID:
    """``value`` if it is a UUID, else a :class:`ValidationError` naming ``field``."""
    if not isinstance(value, UUID):
        raise ValidationError(field, value, "expected a UUID")
    return value


def check_version(value: object, field: str = "version") -> int:
    """``value`` if it is a version (a positive int), else a :class:`ValidationError`."""
    if type(value) is not int or value < 1:
        raise ValidationError(field, value, "a version is a positive int")
    return value


def check_merge_record(value: object) -> MergeRecord:
    """``value`` if it is a :class:`~crmkit.quality.MergeRecord` (field ``record``)."""
    if not isinstance(value, MergeRecord):
        raise ValidationError("record", value, "expected a MergeRecord")
    return value


_ERASABLE: Final = {
    Kind.TEXT: "a text",
    Kind.BOOL: "True or False",
    Kind.TAGS: "a frozenset of tags",
    Kind.JSON: "CustomFields",
}


def check_erase_values(entity: type[Entity], values: object) -> dict[str, Any]:
    """``values`` if ``erase_referring`` may write them to ``entity``: a mapping of
    field names to values, each a text, yes/no, tags or custom field that is no
    reference, given a value of its type (``None`` where the field is optional), else
    :class:`~crmkit.errors.ValidationError` (field ``values``, or ``values.<name>``)."""
    if not isinstance(values, Mapping) or not values:
        raise ValidationError("values", values, "expected a mapping of fields to values")
    known = columns(entity)
    checked: dict[str, Any] = {}
    for name, value in values.items():
        column = known.get(name) if isinstance(name, str) else None
        if column is None or column.kind not in _ERASABLE or name in references(entity):
            raise ValidationError(
                "values",
                name,
                f"expected a text, yes/no, tags or custom field of {entity.__name__}",
            )
        match column.kind:
            case Kind.TEXT:
                fits = isinstance(value, str) or (value is None and column.optional)
            case Kind.BOOL:
                fits = isinstance(value, bool)
            case Kind.TAGS:
                fits = isinstance(value, frozenset) and all(isinstance(t, str) for t in value)
            case _:
                fits = isinstance(value, CustomFields)
        if not fits:
            raise ValidationError(f"values.{name}", value, f"expected {_ERASABLE[column.kind]}")
        checked[name] = value
    return checked


def erased(item: _E, values: Mapping[str, Any], at: datetime) -> _E | None:
    """``item`` with ``values`` written (version one higher, ``updated_at`` the later
    of its own and ``at``), or ``None`` when it holds them all already: what
    ``erase_referring`` writes for one entity."""
    changes = {k: v for k, v in values.items() if getattr(item, k) != v}
    if not changes:
        return None
    return attrs.evolve(
        item, **changes, version=item.version + 1, updated_at=max(at, item.updated_at)
    )


def check_reach(segment: object, reachable: object) -> tuple[Rule, Reachable]:
    """The arguments of ``reach_counts``: a contact rule (field ``rule``) and a
    :class:`~crmkit.models.rules.Reachable` condition (field ``reachable``)."""
    if segment is None:
        raise ValidationError("rule", segment, "expected a contact rule")
    rule = cast(Rule, check_rule(segment, Contact))
    if not isinstance(reachable, Reachable):
        raise ValidationError("reachable", reachable, "expected a Reachable condition")
    return rule, reachable


def reach_counts_by_steps(
    contacts: Any, segment: Rule, reachable: Reachable, now: datetime | None
) -> dict[ReachCheck | None, int]:
    """``reach_counts`` of a contacts repository through its ``count``: one count per
    step of :func:`crmkit.privacy.exclusion_steps` (what an adapter without a grouped
    query gives)."""
    segment, reachable = check_reach(segment, reachable)
    before = contacts.count(segment, now=now)
    counts: dict[ReachCheck | None, int] = {}
    for check, rule in exclusion_steps(segment.where, reachable):
        left = contacts.count(rule, now=now)
        if before - left:
            counts[check] = before - left
        before = left
    if before:
        counts[None] = before
    return counts


def merge_involves(record: MergeRecord, contact_id: UUID) -> bool:
    """Whether ``record`` holds data of the contact ``contact_id``: a contact merge that
    kept or removed it, or an image of the contact itself or of a row that refers to it
    (``contact_id``), such as a contact an account merge moved."""
    return contact_id in merge_contacts(record)


def merge_contacts(record: MergeRecord) -> frozenset[UUID]:
    """Every contact id :func:`merge_involves` accepts for ``record`` (what an adapter
    indexes to find a contact's merges without reading every record)."""
    found: set[UUID] = set()
    if record.kind is MergeKind.CONTACT:
        found.update((record.survivor_id, *record.merged_ids))
    for row in (*record.before, *record.after):
        if row.entity_name == "contact":
            found.add(row.id)
        reference = getattr(row, "contact_id", None)
        if isinstance(reference, UUID):
            found.add(reference)
    return frozenset(found)


def check_merge_anonymised(stored: MergeRecord, record: object) -> MergeRecord:
    """``record`` if it can replace ``stored`` through ``merges.anonymise``: a merge
    record with the same id, kind, survivor, merged ids, time and author, the same
    rows (entity and id) in its images, and no taken address that ``stored`` lacks
    (field ``record``)."""
    record = check_merge_record(record)

    def rows(images: Iterable[Entity]) -> list[tuple[str, UUID]]:
        return [(row.entity_name, row.id) for row in images]

    same = (
        record.id == stored.id
        and record.kind == stored.kind
        and record.survivor_id == stored.survivor_id
        and record.merged_ids == stored.merged_ids
        and record.at == stored.at
        and record.by == stored.by
        and rows(record.before) == rows(stored.before)
        and rows(record.after) == rows(stored.after)
        and set(record.merged_emails) <= set(stored.merged_emails)
    )
    if not same:
        raise ValidationError(
            "record", record.id, "an anonymised merge record changes only values of its rows"
        )
    return record


def check_many(values: object, field: str) -> Iterable[object]:
    """``values`` if it is a collection (not text, not a mapping) to read items from."""
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise ValidationError(field, values, "expected a collection (a list, a generator, ...)")
    return values


def check_kinds(kinds: Iterable[ActivityKind] | None) -> frozenset[ActivityKind] | None:
    """The activity kinds of a timeline query (``None``: all kinds)."""
    if kinds is None:
        return None
    found: set[ActivityKind] = set()
    for kind in check_many(kinds, "kinds"):
        if not isinstance(kind, ActivityKind):
            raise ValidationError("kinds", kind, "expected an ActivityKind")
        found.add(kind)
    return frozenset(found)


def check_window(
    since: datetime | None, until: datetime | None
) -> tuple[datetime | None, datetime | None]:
    """The aware UTC bounds of a time window; either may be open (``None``)."""
    low = None if since is None else ensure_utc(since, "since")
    high = None if until is None else ensure_utc(until, "until")
    return low, high


def check_subject(subject: object) -> SubjectKind:
    """``subject`` if it is a :class:`~crmkit.models.SubjectKind`."""
    if not isinstance(subject, SubjectKind):
        raise ValidationError("subject", subject, "expected a SubjectKind")
    return subject


def check_count(
    value: object, field: str = "limit", message: str = "expected a positive int"
) -> int:
    """``value`` if it is a positive int (not a bool), else a :class:`ValidationError`
    naming ``field`` with ``message``."""
    if type(value) is not int or value < 1:
        raise ValidationError(field, value, message)
    return value


def check_limit(limit: object) -> int | None:
    if limit is None:
        return None
    return check_count(limit, "limit", "a limit is a positive int (or None)")


def check_batch_size(size: object) -> int:
    return check_count(size, "batch_size", "a batch size is a positive int")


def check_email(email: object) -> EmailAddress:
    """``email`` if it is an :class:`~crmkit.models.EmailAddress`."""
    if not isinstance(email, EmailAddress):
        raise ValidationError("email", email, "expected an EmailAddress")
    return email


def check_ids(ids: object, field: str = "ids") -> list[UUID]:
    """The ids of a many-id query, each checked (``field[n]``), in order."""
    return [check_id(i, f"{field}[{n}]") for n, i in enumerate(check_many(ids, field))]


@attrs.frozen
class TaskQuery:
    """The checked filters of :meth:`~crmkit.storage.TaskRepository.select`."""

    status: TaskStatus | None
    kind: TaskKind | None
    assignee: str | None
    contact_id: UUID | None
    due_until: datetime | None
    deal_id: UUID | None = None
    ticket_id: UUID | None = None

    def matches(self, task: Task) -> bool:
        """Whether ``task`` passes every filter (what the memory store evaluates)."""
        return (
            (self.status is None or task.status is self.status)
            and (self.kind is None or task.kind is self.kind)
            and (self.assignee is None or task.assignee == self.assignee)
            and (self.contact_id is None or task.contact_id == self.contact_id)
            and (self.deal_id is None or task.deal_id == self.deal_id)
            and (self.ticket_id is None or task.ticket_id == self.ticket_id)
            and (self.due_until is None or task.due_at <= self.due_until)
        )


def task_query(
    *,
    status: object,
    kind: object,
    assignee: object,
    contact_id: object,
    due_until: object,
    deal_id: object = None,
    ticket_id: object = None,
) -> TaskQuery:
    """The filters of a task query, checked."""
    if status is not None and not isinstance(status, TaskStatus):
        raise ValidationError("status", status, "expected a TaskStatus or None")
    if kind is not None and not isinstance(kind, TaskKind):
        raise ValidationError("kind", kind, "expected a TaskKind or None")
    if assignee is not None and not isinstance(assignee, str):
        raise ValidationError("assignee", assignee, "expected a str or None")
    contact = None if contact_id is None else check_id(contact_id, "contact_id")
    due = None if due_until is None else ensure_utc(cast(datetime, due_until), "due_until")
    deal = None if deal_id is None else check_id(deal_id, "deal_id")
    ticket = None if ticket_id is None else check_id(ticket_id, "ticket_id")
    return TaskQuery(status, kind, assignee, contact, due, deal, ticket)


def check_group_field(field: object, entity: type[Entity]) -> str:
    """``field`` if ``count_by`` can group ``entity`` by it."""
    allowed = groupable(entity)
    if not isinstance(field, str) or field not in allowed:
        names = ", ".join(sorted(allowed))
        raise ValidationError("field", field, f"count_by groups {entity.entity_name}s by: {names}")
    return field


def query_now(now: datetime | None, clock: Clock) -> datetime:
    """The ``now`` of a query: the given one (aware, made UTC) or the clock's."""
    return clock.now() if now is None else ensure_utc(now, "now")


def start_after(order: Order | None, after: Cursor | None, entity: type[Entity]) -> Order:
    """The checked order of a query; a cursor must come from a query in the same order
    (see :func:`check_cursor`, which the adapters call to read the cursor itself)."""
    order = check_order(Order() if order is None else order, entity)
    if after is not None:
        check_cursor(after, order, entity)
    return order


def page_of(found: Sequence[_E], order: Order, limit: int | None) -> Page[_E]:
    """The page of ``found`` (fetched in ``order``, one more than ``limit`` if there are
    more) and the cursor after its last item."""
    if limit is None or len(found) <= limit:
        return Page(tuple(found), None)
    last = found[limit - 1]
    return Page(tuple(found[:limit]), Cursor(order, getattr(last, order.field), last.id))


def iterate_pages(
    find: Callable[..., Page[_E]], rule: Rule | None, batch_size: int, now: datetime
) -> Iterator[_E]:
    """Every result of ``find``, page by page in id order (keyset, so memory is bounded)."""
    order = Order("id")
    after: Cursor | None = None
    while True:
        page = find(rule, order=order, limit=batch_size, after=after, now=now)
        yield from page.items
        if page.next is None:
            return
        after = page.next


_IMAGE_CLASSES: Final[Mapping[str, type[Entity]]] = {e.entity_name: e for e in ENTITIES}
_converter = make_converter()


def merge_to_json(record: MergeRecord) -> dict[str, Any]:
    """A merge record as JSON-compatible data, each image tagged with its entity name;
    :func:`merge_from_json` reads it back equal."""
    record = check_merge_record(record)

    def images(rows: Iterable[Entity]) -> list[dict[str, Any]]:
        return [{"entity": r.entity_name, "row": _converter.unstructure(r)} for r in rows]

    return {
        "id": str(record.id),
        "kind": record.kind.value,
        "survivor_id": str(record.survivor_id),
        "merged_ids": [str(i) for i in record.merged_ids],
        "merged_emails": list(record.merged_emails),
        "at": _converter.unstructure(record.at),
        "by": record.by,
        "before": images(record.before),
        "after": images(record.after),
    }


def merge_from_json(data: Any) -> MergeRecord:
    """The merge record that :func:`merge_to_json` wrote; a
    :class:`~crmkit.errors.ValidationError` for anything else."""
    if not isinstance(data, Mapping):
        raise ValidationError("record", data, "expected a mapping")

    def images(field: str) -> tuple[Entity, ...]:
        rows = data.get(field)
        if not isinstance(rows, list):
            raise ValidationError(field, rows, "expected a list of images")
        found = []
        for index, image in enumerate(rows):
            name = image.get("entity") if isinstance(image, dict) else None
            entity = _IMAGE_CLASSES.get(name) if isinstance(name, str) else None
            if entity is None:
                raise ValidationError(f"{field}[{index}]", image, "expected a tagged entity")
            found.append(_converter.structure(image.get("row"), entity))
        return tuple(found)

    try:
        return MergeRecord(
            id=_converter.structure(data.get("id"), UUID),
            kind=MergeKind(str(data.get("kind"))),
            survivor_id=_converter.structure(data.get("survivor_id"), UUID),
            merged_ids=tuple(_converter.structure(data.get("merged_ids"), list[UUID])),
            merged_emails=tuple(_converter.structure(data.get("merged_emails"), list[str])),
            at=_converter.structure(data.get("at"), datetime),
            by=_converter.structure(data.get("by"), str | None),  # type: ignore[arg-type]
            before=images("before"),
            after=images("after"),
        )
    except (TypeError, ValueError) as error:
        if isinstance(error, ValidationError):
            raise
        raise ValidationError("record", data, f"not a merge record: {error}") from None


def check_reference(field: object, entity: type[Entity]) -> str:
    """``field`` if :meth:`~crmkit.storage.Repository.referring` can look ``entity`` up
    by it (one of :func:`~crmkit.storage.references`)."""
    allowed = references(entity)
    if not isinstance(field, str) or field not in allowed:
        names = ", ".join(sorted(allowed)) or "none"
        raise ValidationError(
            "field", field, f"{entity.entity_name}s are looked up by reference fields: {names}"
        )
    return field
