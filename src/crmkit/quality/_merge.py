"""Merging duplicate contacts or accounts: field policies, the plan, the merge record.

Pure functions over models: :class:`crmkit.crm.CRM` loads the records and what refers to
them, asks :func:`merge` and :func:`repoint` what to write, writes it in one unit of work
and stores the :class:`MergeRecord` that :meth:`~crmkit.crm.CRM.unmerge` undoes.
"""

import typing
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, Generic, TypeAlias, TypeVar, cast
from uuid import UUID, uuid4

import attrs

from crmkit.clock import ensure_utc
from crmkit.errors import Problem, ValidationError
from crmkit.models import (
    Account,
    Consent,
    ConsentStatus,
    Contact,
    CustomFields,
    Entity,
    LifecycleStage,
    Segment,
    StageChange,
    SubjectKind,
)

__all__ = [
    "FieldChange",
    "HostPolicy",
    "MergeKind",
    "MergePlan",
    "MergePolicy",
    "MergeRecord",
    "Merged",
    "Repointed",
    "Strategy",
    "merge",
    "repoint",
    "restrictive_consents",
]

_M = TypeVar("_M", bound=Contact | Account)

HostPolicy: TypeAlias = Callable[[str, Sequence[Any]], Any]
"""A host function that merges one field: called with the field's name and the records
(the survivor first, then the others in the order given); returns the merged value."""


class MergeKind(StrEnum):
    """What a merge merged."""

    CONTACT = "contact"
    ACCOUNT = "account"


class Strategy(StrEnum):
    """How a field of the merged records becomes the survivor's.

    * ``survivor``: the survivor's value, as it is (also when it has none);
    * ``most_recent``: the value of the most recently updated record that has one
      (``updated_at``; ties go to the survivor, then to the others in the order given);
    * ``most_complete``: the longest text, the largest set or mapping, else any value;
      ties go as for ``most_recent``;
    * ``union``: every tag of every record; for custom fields every key, the first
      record that has a key giving its value (the survivor first);
    * ``concatenate``: the distinct texts of every record, survivor first, joined by
      ``"; "`` (contact and account fields are one line each);
    * ``furthest``: a contact's lifecycle stage furthest along among the records
      (``other`` only when every record has it), the default of ``lifecycle_stage``:
      a merge never demotes a customer.

    A value is missing when it is ``None``, empty or only white space.
    """

    SURVIVOR = "survivor"
    MOST_RECENT = "most_recent"
    MOST_COMPLETE = "most_complete"
    UNION = "union"
    CONCATENATE = "concatenate"
    FURTHEST = "furthest"


_KINDS: Final[Mapping[type[Entity], MergeKind]] = MappingProxyType(
    {Contact: MergeKind.CONTACT, Account: MergeKind.ACCOUNT}
)
_OWN: Final = frozenset({"id", "version", "created_at", "updated_at"})
_FIXED: Final[Mapping[str, str]] = MappingProxyType(
    {"do_not_contact": "merges to the most restrictive value (True if any record has it)"}
)
_SETS: Final = frozenset({"tags", "custom"})
_STAGE: Final = "lifecycle_stage"


def _text_fields(entity: type[Entity]) -> frozenset[str]:
    """The fields of plain text (``str`` or ``str | None``), which can be concatenated."""
    hints = typing.get_type_hints(entity)
    return frozenset(a.name for a in attrs.fields(entity) if hints[a.name] in (str, str | None))


@attrs.frozen
class MergePolicy:
    """How each field of a contact or account merges: a :class:`Strategy` or a host
    function per field, checked when the policy is built.

    :meth:`of` builds one: every field not named keeps the survivor's value, except tags
    and custom fields, which are united, and a contact's ``lifecycle_stage``, which
    becomes the furthest stage among the records (``furthest``: a merge never demotes
    a customer; name ``survivor`` to keep the survivor's). ``do_not_contact`` always
    merges to the most restrictive value and takes no policy.

    >>> MergePolicy.of(Contact, {"phone": "most_recent"}).fields["phone"]
    <Strategy.MOST_RECENT: 'most_recent'>
    """

    entity: type[Entity]
    fields: Mapping[str, Strategy | HostPolicy]

    def __attrs_post_init__(self) -> None:
        """Refuse a policy made without :meth:`of` that :meth:`of` would refuse, or that
        leaves a field out."""
        if not _mergeable(self.entity):
            raise ValidationError("entity", self.entity, "merges take Contact or Account")
        if not isinstance(self.fields, Mapping):
            raise ValidationError("fields", self.fields, "expected a mapping of field names")
        chosen, problems = _resolve(cast(type[Contact] | type[Account], self.entity), self.fields)
        missing = sorted(set(chosen) - set(self.fields))
        problems.extend(Problem(f"policies.{n}", None, "has no policy") for n in missing)
        if problems:
            raise ValidationError.of(problems)
        object.__setattr__(self, "fields", MappingProxyType(chosen))

    @classmethod
    def of(
        cls,
        entity: type[Contact] | type[Account],
        policies: Mapping[str, str | Strategy | HostPolicy] | None = None,
    ) -> "MergePolicy":
        """A policy for ``entity`` (:class:`Contact` or :class:`Account`): ``policies``
        names a strategy (or gives a host function) per field.

        An unknown entity, field or strategy, or a strategy that does not fit the field
        (``union`` of a name, ``concatenate`` of tags) raises
        :class:`~crmkit.errors.ValidationError` naming ``policies.<field>``.
        """
        if not _mergeable(entity):
            raise ValidationError("entity", entity, "merges take Contact or Account")
        if policies is None:
            policies = {}
        if not isinstance(policies, Mapping):
            raise ValidationError("policies", policies, "expected a mapping of field names")
        chosen, problems = _resolve(entity, policies)
        if problems:
            raise ValidationError.of(problems)
        return cls(entity, chosen)


def _mergeable(entity: object) -> bool:
    return entity is Contact or entity is Account


def _resolve(
    entity: type[Contact] | type[Account], policies: Mapping[Any, Any]
) -> tuple[dict[str, Strategy | HostPolicy], list[Problem]]:
    """The strategy of every field (the defaults, replaced by ``policies``) and the
    problems of ``policies``."""
    names = [a.name for a in attrs.fields(entity) if a.name not in _OWN]
    texts = _text_fields(entity)
    chosen: dict[str, Strategy | HostPolicy] = {
        n: Strategy.UNION if n in _SETS else Strategy.SURVIVOR for n in names if n not in _FIXED
    }
    if _STAGE in chosen:
        chosen[_STAGE] = Strategy.FURTHEST
    problems = []
    for name, given in policies.items():
        where = f"policies.{name}"
        if name in _FIXED:
            problems.append(Problem(where, given, f"takes no policy: it {_FIXED[name]}"))
            continue
        if name not in chosen:
            known = ", ".join(sorted(chosen))
            problems.append(Problem(where, given, f"a {entity.entity_name} field: {known}"))
            continue
        if callable(given) and not isinstance(given, str):
            chosen[name] = given
            continue
        try:
            strategy = Strategy(given)
        except (ValueError, TypeError):
            known = ", ".join(s.value for s in Strategy)
            problems.append(Problem(where, given, f"no such policy; expected one of {known}"))
            continue
        if strategy is Strategy.UNION and name not in _SETS:
            problems.append(Problem(where, given, "union merges tags and custom fields"))
        elif strategy is Strategy.CONCATENATE and name not in texts:
            problems.append(Problem(where, given, "concatenate merges text fields"))
        elif strategy is Strategy.FURTHEST and name != _STAGE:
            problems.append(Problem(where, given, "furthest merges a contact's lifecycle_stage"))
        else:
            chosen[name] = strategy
    return chosen, problems


@attrs.frozen
class FieldChange:
    """A field of the survivor that the merge changes."""

    field: str
    before: Any
    after: Any


@attrs.frozen
class Repointed:
    """A reference the merge moves from a merged record to the survivor.

    ``field`` is the referring field (``contact_id``, ``account_id``, ``subject_id``,
    or ``members`` of a static segment).
    """

    entity: str
    id: UUID
    field: str
    before: UUID
    after: UUID


@attrs.frozen
class Merged(Generic[_M]):
    """The survivor as a merge leaves it, and what changed."""

    survivor: _M
    changes: tuple[FieldChange, ...]


def _missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, Collection):
        return len(value) == 0
    return False


def _size(value: object) -> int:
    return len(value) if isinstance(value, Collection) else 0


def _pick(records: Sequence[Entity], name: str, strategy: Strategy) -> Any:
    values = [getattr(r, name) for r in records]
    match strategy:
        case Strategy.SURVIVOR:
            return values[0]
        case Strategy.MOST_RECENT:
            present = [(r.updated_at, -n) for n, r in enumerate(records) if not _missing(values[n])]
            return values[-max(present)[1]] if present else values[0]
        case Strategy.MOST_COMPLETE:
            sized = [(_size(v), -n) for n, v in enumerate(values) if not _missing(v)]
            return values[-max(sized)[1]] if sized else values[0]
        case Strategy.UNION:
            if name == "tags":
                return frozenset().union(*values)
            united: dict[str, Any] = {}
            for custom in values:
                for key, value in cast(CustomFields, custom).items():
                    united.setdefault(key, value)
            return united
        case Strategy.CONCATENATE:
            texts: list[str] = []
            for value in values:
                if not _missing(value) and value not in texts:
                    texts.append(value)
            return "; ".join(texts) if texts else values[0]
        case Strategy.FURTHEST:
            order = [stage for stage in LifecycleStage if stage is not LifecycleStage.OTHER]
            known = [v for v in values if v in order]
            return max(known, key=order.index) if known else values[0]
    raise AssertionError(strategy)  # pragma: no cover - every strategy is matched


def check_records(survivor: object, others: object, entity: type[Entity] | None = None) -> None:
    """Refuse a merge that makes no sense: of another entity, of a record with itself,
    of a record twice, of nothing (a :class:`~crmkit.errors.ValidationError`)."""
    if entity is None:
        entity = type(survivor) if isinstance(survivor, Entity) else Contact
    if entity not in _KINDS or not isinstance(survivor, entity):
        raise ValidationError("survivor", survivor, "expected a Contact or an Account")
    if isinstance(others, str | bytes | Mapping) or not isinstance(others, Iterable):
        raise ValidationError("others", others, "expected a collection of records")
    seen = {survivor.id}
    count = 0
    for index, other in enumerate(others):
        count += 1
        if not isinstance(other, entity):
            raise ValidationError(f"others[{index}]", other, f"expected a {entity.__name__}")
        if other.id == survivor.id:
            raise ValidationError(f"others[{index}]", other.id, "is the survivor itself")
        if other.id in seen:
            raise ValidationError(f"others[{index}]", other.id, "is given twice")
        seen.add(other.id)
    if not count:
        raise ValidationError("others", others, "a merge needs at least one other record")


def merge(survivor: _M, others: Sequence[_M], policy: MergePolicy, *, at: datetime) -> Merged[_M]:
    """The survivor with the fields of ``others`` merged into it by ``policy``.

    ``at`` (aware) becomes the survivor's ``updated_at`` when a field changes. A merged
    value the survivor cannot hold (a concatenated name too long) raises the
    :class:`~crmkit.errors.ValidationError` of the model, naming the field.
    """
    check_records(survivor, others)
    if not isinstance(policy, MergePolicy) or policy.entity is not type(survivor):
        raise ValidationError("policy", policy, f"expected a MergePolicy of {type(survivor)}")
    at = ensure_utc(at, "at")
    records: list[Entity] = [survivor, *others]
    values: dict[str, Any] = {}
    for name, how in policy.fields.items():
        if isinstance(how, Strategy):
            values[name] = _pick(records, name, how)
        else:
            try:
                values[name] = how(name, tuple(records))
            except Exception as error:  # a host function's failure, named
                raise ValidationError(
                    f"policies.{name}", how, f"the host function failed: {error!r}"
                ) from None
    if isinstance(survivor, Contact):
        values["do_not_contact"] = any(cast(Contact, r).do_not_contact for r in records)
    try:
        merged = attrs.evolve(survivor, **values)
    except (ValidationError, TypeError, ValueError) as error:
        if isinstance(error, ValidationError):
            raise
        raise ValidationError("policies", values, f"a merged value is wrong: {error}") from None
    changes = tuple(
        FieldChange(a.name, getattr(survivor, a.name), getattr(merged, a.name))
        for a in attrs.fields(type(survivor))
        if a.name not in _OWN and getattr(survivor, a.name) != getattr(merged, a.name)
    )
    if changes:
        merged = attrs.evolve(merged, updated_at=max(at, survivor.updated_at))
    return Merged(merged, changes)


_REFERENCE_FIELDS: Final[Mapping[MergeKind, tuple[str, ...]]] = MappingProxyType(
    {MergeKind.CONTACT: ("contact_id",), MergeKind.ACCOUNT: ("account_id",)}
)
_SUBJECTS: Final[Mapping[MergeKind, SubjectKind]] = MappingProxyType(
    {MergeKind.CONTACT: SubjectKind.CONTACT}
)


def repoint(
    item: Entity,
    kind: MergeKind,
    merged: Collection[UUID],
    survivor: UUID,
    *,
    at: datetime,
    fields: Collection[str] | None = None,
) -> tuple[Entity, tuple[Repointed, ...]]:
    """``item`` with every reference to one of the ``merged`` records (a ``kind``) moved
    to ``survivor``, and the moves (none: ``item`` itself comes back).

    References are the ``contact_id`` (``account_id``) fields, a stage change's
    ``subject_id`` of a contact, and the members of a static segment; ``fields``
    replaces the referring field names (the storage's
    :data:`~crmkit.storage.REFERRERS`). ``updated_at`` becomes ``at`` (or stays, if it
    is later).
    """
    if not isinstance(item, Entity):
        raise ValidationError("item", item, "expected an entity")
    if not isinstance(kind, MergeKind):
        raise ValidationError("kind", kind, "expected a MergeKind")
    merged = frozenset(_uuids(merged, "merged"))
    if not isinstance(survivor, UUID):
        raise ValidationError("survivor", survivor, "expected a UUID")
    names = _REFERENCE_FIELDS[kind] if fields is None else _names(fields)
    at = ensure_utc(at, "at")
    moves: list[Repointed] = []
    values: dict[str, Any] = {}
    name = item.entity_name
    for field in names:
        value = getattr(item, field, None)
        if value is not None and value in merged:
            values[field] = survivor
            moves.append(Repointed(name, item.id, field, value, survivor))
    subject = _SUBJECTS.get(kind)
    if isinstance(item, StageChange) and item.subject is subject and item.subject_id in merged:
        values["subject_id"] = survivor
        moves.append(Repointed(name, item.id, "subject_id", item.subject_id, survivor))
    if isinstance(item, Segment) and kind is MergeKind.CONTACT:
        gone = sorted(item.members & set(merged))
        if gone:
            values["members"] = (item.members - set(gone)) | {survivor}
            moves.extend(Repointed(name, item.id, "members", g, survivor) for g in gone)
    if not moves:
        return item, ()
    if not isinstance(item, StageChange):  # history keeps its own time
        values["updated_at"] = max(at, item.updated_at)
    return attrs.evolve(item, **values), tuple(moves)


def _uuids(values: object, field: str) -> list[UUID]:
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise ValidationError(field, values, "expected a collection of UUIDs")
    found = list(values)
    for index, value in enumerate(found):
        if not isinstance(value, UUID):
            raise ValidationError(f"{field}[{index}]", value, "expected a UUID")
    return found


def _names(values: object) -> tuple[str, ...]:
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise ValidationError("fields", values, "expected a collection of field names")
    items = list(values)
    if not all(isinstance(v, str) for v in items):
        raise ValidationError("fields", values, "expected field names (str)")
    return tuple(sorted(set(items)))


def _standing(consents: Iterable[Consent]) -> dict[tuple[str, str], Consent]:
    """The latest decision per channel and purpose (by ``decided_at``, then ``id``)."""
    latest: dict[tuple[str, str], Consent] = {}
    for consent in sorted(consents, key=lambda c: (c.decided_at, c.created_at, c.id)):
        latest[(consent.channel.value, consent.purpose)] = consent
    return latest


def restrictive_consents(
    by_contact: Mapping[UUID, Sequence[Consent]], survivor: UUID, *, at: datetime
) -> list[Consent]:
    """The consents to add to ``survivor`` so that a merge never loses a withdrawal.

    ``by_contact`` holds the consents of every merged contact (the survivor's too), as
    they were before the merge. Once they all refer to the survivor, its standing for a
    channel and purpose is its latest decision. Where one contact's own latest decision
    is a withdrawal but the latest of all is a grant, a withdrawal is added (source
    ``merge``, decided at ``at`` or just after the latest decision): the most
    restrictive state wins. This is the one rule of consent merging; a consent ledger
    changes only this function.
    """
    at = ensure_utc(at, "at")
    if not isinstance(survivor, UUID):
        raise ValidationError("survivor", survivor, "expected a UUID")
    if not isinstance(by_contact, Mapping):
        raise ValidationError("by_contact", by_contact, "expected a mapping of ids to consents")
    checked: dict[UUID, list[Consent]] = {}
    for contact_id, given in by_contact.items():
        where = f"by_contact[{contact_id!r}]"
        if not isinstance(contact_id, UUID):
            raise ValidationError(where, contact_id, "expected a contact id (UUID)")
        if isinstance(given, str | bytes | Mapping) or not isinstance(given, Iterable):
            raise ValidationError(where, given, "expected a list of Consents")
        checked[contact_id] = list(given)
        if not all(isinstance(c, Consent) for c in checked[contact_id]):
            raise ValidationError(where, given, "expected a list of Consents")
    by_contact = checked
    combined = _standing(c for items in by_contact.values() for c in items)
    added = []
    for key, latest in sorted(combined.items()):
        if latest.status is ConsentStatus.WITHDRAWN:
            continue
        withdrawn = [
            own[key]
            for items in by_contact.values()
            if (own := _standing(items)).get(key) is not None
            and own[key].status is ConsentStatus.WITHDRAWN
        ]
        if not withdrawn:
            continue
        decided = max(at, latest.decided_at + timedelta(microseconds=1))
        added.append(
            Consent(
                id=uuid4(),
                version=1,
                created_at=at,
                updated_at=max(at, decided),
                contact_id=survivor,
                channel=latest.channel,
                purpose=latest.purpose,
                status=ConsentStatus.WITHDRAWN,
                source="merge",
                decided_at=decided,
            )
        )
    return added


@attrs.frozen
class MergePlan(Generic[_M]):
    """What a merge does (a dry run) or did: the survivor as the merge leaves it, the
    records it removes, every field change, every re-pointed reference and every row
    it adds. ``merge_id`` names the stored :class:`MergeRecord` (``None`` on a dry run,
    which writes nothing)."""

    kind: MergeKind
    survivor: _M
    merged: tuple[_M, ...]
    changes: tuple[FieldChange, ...]
    repointed: tuple[Repointed, ...]
    added: tuple[Entity, ...]
    merge_id: UUID | None = None

    @property
    def dry_run(self) -> bool:
        """Whether this is a dry run (nothing was written)."""
        return self.merge_id is None


def _entities(value: object, field: str) -> tuple[Entity, ...]:
    if not isinstance(value, tuple) or not all(isinstance(v, Entity) for v in value):
        raise ValidationError(field, value, "expected a tuple of entities")
    return value


def _check(field: str, value: object, kind: type) -> None:
    if not isinstance(value, kind):
        raise ValidationError(field, value, f"expected a {kind.__name__}")


def _check_by(value: object) -> None:
    if value is not None:
        _check("by", value, str)


def _merged_ids(value: object) -> tuple[UUID, ...]:
    found = tuple(_uuids(value, "merged_ids"))
    if not found:
        raise ValidationError("merged_ids", value, "a merge removes at least one record")
    return found


def _merged_emails(value: object) -> tuple[str, ...]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise ValidationError("merged_emails", value, "expected folded e-mail addresses")
    found = tuple(value)
    if not all(isinstance(v, str) and v == v.casefold() for v in found):
        raise ValidationError("merged_emails", value, "expected folded e-mail addresses")
    return found


def _at(value: datetime) -> datetime:
    return ensure_utc(value, "at")


def _before(value: object) -> tuple[Entity, ...]:
    return _entities(value, "before")


def _after(value: object) -> tuple[Entity, ...]:
    return _entities(value, "after")


@attrs.frozen(kw_only=True)
class MergeRecord:
    """A stored merge: what :meth:`~crmkit.crm.CRM.unmerge` needs to undo it exactly.

    ``before`` holds every row the merge changed or removed as it was; ``after`` every
    row it changed or added as it wrote it (with the version it stored). A row in
    ``before`` only was removed (the merged records); in ``after`` only, added (a
    withdrawal kept by :func:`restrictive_consents`). ``merged_emails`` are the folded
    e-mail addresses of merged contacts, so that a later capture by one finds the
    survivor.
    """

    id: UUID = attrs.field(validator=lambda _, a, v: _check(a.name, v, UUID))
    kind: MergeKind = attrs.field(validator=lambda _, a, v: _check(a.name, v, MergeKind))
    survivor_id: UUID = attrs.field(validator=lambda _, a, v: _check(a.name, v, UUID))
    merged_ids: tuple[UUID, ...] = attrs.field(converter=_merged_ids)
    merged_emails: tuple[str, ...] = attrs.field(default=(), converter=_merged_emails)
    at: datetime = attrs.field(converter=_at)
    by: str | None = attrs.field(default=None, validator=lambda _, a, v: _check_by(v))
    before: tuple[Entity, ...] = attrs.field(converter=_before)
    after: tuple[Entity, ...] = attrs.field(converter=_after)

    @property
    def removed(self) -> tuple[Entity, ...]:
        """The rows the merge removed (the merged records), as they were."""
        kept = {(type(e), e.id) for e in self.after}
        return tuple(e for e in self.before if (type(e), e.id) not in kept)

    @property
    def added(self) -> tuple[Entity, ...]:
        """The rows the merge added."""
        had = {(type(e), e.id) for e in self.before}
        return tuple(e for e in self.after if (type(e), e.id) not in had)
