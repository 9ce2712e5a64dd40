"""The merge and unmerge use cases: load, ask :mod:`crmkit.quality`, write, record.

Functions of one open unit of work; :class:`crmkit.crm.CRM` opens it, commits it, and
holds the clock.
"""

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final, cast
from uuid import UUID, uuid4

from crmkit.errors import (
    AlreadyMerged,
    ConcurrencyConflict,
    Erased,
    NotFound,
    UnmergeConflict,
    ValidationError,
)
from crmkit.models import Account, Consent, Contact, EmailAddress, Entity, SubjectKind
from crmkit.quality import (
    MergeKind,
    MergePlan,
    MergePolicy,
    MergeRecord,
    Repointed,
    merge,
    repoint,
    restrictive_consents,
)
from crmkit.quality._merge import check_records
from crmkit.storage import REFERRERS, REPOSITORIES, Repository, UnitOfWork

__all__ = ["apply_merge", "plan_merge", "survivor_of", "unmerge"]

_CHAIN: Final = 100  # merges followed from a merged e-mail to its survivor, at most


def repository(unit: UnitOfWork, entity: type[Entity] | MergeKind) -> Repository[Any]:
    """The repository of ``unit`` that stores ``entity`` (or the records a merge of
    ``kind`` merges)."""
    if isinstance(entity, MergeKind):
        entity = Contact if entity is MergeKind.CONTACT else Account
    return cast(Repository[Any], getattr(unit, REPOSITORIES[entity]))


def _referrers(unit: UnitOfWork, kind: MergeKind, id: UUID) -> list[Entity]:
    """Every row that refers to the contact or account ``id``: through the fields of
    :data:`~crmkit.storage.REFERRERS` (``Repository.referring``: an index look-up each),
    its own stage history and the static segments that hold it."""
    found: list[Entity] = []
    for entity, name in REFERRERS[kind.value]:
        found.extend(repository(unit, entity).referring(name, id))
    if kind is MergeKind.CONTACT:
        found.extend(unit.stage_history.for_subject(SubjectKind.CONTACT, id))
        found.extend(s for s in unit.segments.iterate() if id in s.members)
    return found


def _load(
    unit: UnitOfWork, kind: MergeKind, id: object, field_name: str, version: int | None
) -> Contact | Account:
    if not isinstance(id, UUID):
        raise ValidationError(field_name, id, "expected a UUID")
    repo = repository(unit, kind)
    try:
        record = cast(Contact | Account, repo.get(id))
    except NotFound:
        earlier = unit.merges.merging(id)
        if earlier:
            last = earlier[-1]
            raise AlreadyMerged(kind.value, id, last.id, last.survivor_id) from None
        raise
    if version is not None and version != record.version:
        raise ConcurrencyConflict(kind.value, id, version, record.version)
    return record


def _versions(versions: object) -> Mapping[UUID, int]:
    if versions is None:
        return {}
    if not isinstance(versions, Mapping):
        raise ValidationError("versions", versions, "expected a mapping of ids to versions")
    for key, value in versions.items():
        if not isinstance(key, UUID) or type(value) is not int or value < 1:
            raise ValidationError(f"versions[{key!r}]", value, "expected a UUID -> version >= 1")
    return cast(Mapping[UUID, int], versions)


def _ids(survivor_id: object, other_ids: object) -> tuple[UUID, list[UUID]]:
    """The survivor's id and the others', checked."""
    if not isinstance(survivor_id, UUID):
        raise ValidationError("survivor", survivor_id, "expected a UUID")
    if isinstance(other_ids, str | bytes | Mapping) or not isinstance(other_ids, Iterable):
        raise ValidationError("others", other_ids, "expected a collection of ids")
    ids = list(other_ids)
    for index, id in enumerate(ids):
        if not isinstance(id, UUID):
            raise ValidationError(f"others[{index}]", id, "expected a UUID")
    return survivor_id, ids


def plan_merge(
    unit: UnitOfWork,
    *,
    kind: MergeKind,
    survivor_id: object,
    other_ids: object,
    policy: MergePolicy,
    versions: object,
    at: datetime,
) -> tuple[MergePlan[Any], list[tuple[Entity, Entity]]]:
    """The plan of a merge, and the ``(before, after)`` of every re-pointed row."""
    entity: type[Contact] | type[Account] = Contact if kind is MergeKind.CONTACT else Account
    if not isinstance(policy, MergePolicy) or policy.entity is not entity:
        raise ValidationError("policy", policy, f"expected a MergePolicy of {entity.__name__}")
    expected = _versions(versions)
    survivor_id, ids = _ids(survivor_id, other_ids)
    survivor = _load(unit, kind, survivor_id, "survivor", expected.get(survivor_id))
    seen = {survivor.id}
    others = []
    for index, id in enumerate(ids):
        if id in seen:  # before loading: a record given twice is no record merged twice
            reason = "is the survivor itself" if id == survivor.id else "is given twice"
            raise ValidationError(f"others[{index}]", id, reason)
        seen.add(id)
        others.append(_load(unit, kind, id, f"others[{index}]", expected.get(id)))
    check_records(survivor, others, entity)
    gone = {o.id for o in others}
    fields = {name for _, name in REFERRERS[kind.value]}
    rows: dict[tuple[str, UUID], Entity] = {}
    consents: dict[UUID, list[Consent]] = {survivor.id: []}
    for other in others:
        consents[other.id] = []
        for row in _referrers(unit, kind, other.id):
            rows.setdefault((row.entity_name, row.id), row)
    repointed: list[Repointed] = []
    writes: list[tuple[Entity, Entity]] = []
    for (_, _), row in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        after, moves = repoint(row, kind, gone, survivor.id, at=at, fields=fields)
        if moves:
            repointed.extend(moves)
            writes.append((row, after))
        if isinstance(row, Consent):
            consents[row.contact_id].append(row)
    added: list[Entity] = []
    if kind is MergeKind.CONTACT:
        consents[survivor.id].extend(unit.consents.referring("contact_id", survivor.id))
        added.extend(restrictive_consents(consents, survivor.id, at=at))
    # Fields last: what a host function sees, and does meanwhile, is after every read.
    merged = merge(survivor, others, policy, at=at)
    plan = MergePlan(
        kind, merged.survivor, tuple(others), merged.changes, tuple(repointed), tuple(added)
    )
    return plan, writes


def apply_merge(
    unit: UnitOfWork,
    *,
    plan: MergePlan[Any],
    writes: list[tuple[Entity, Entity]],
    survivor_before: Contact | Account,
    at: datetime,
    by: str | None,
) -> MergePlan[Any]:
    """Write a planned merge and its :class:`MergeRecord`; the plan with its id."""
    before: list[Entity] = [survivor_before]
    after: list[Entity] = []
    for old, new in writes:
        before.append(old)
        after.append(repository(unit, type(new)).update(new))
    after.extend(repository(unit, type(row)).add(row) for row in plan.added)
    for other in plan.merged:
        before.append(other)
        repository(unit, type(other)).delete(other.id, version=other.version)
    survivor = plan.survivor
    if plan.changes:
        survivor = repository(unit, type(survivor)).update(survivor)
    after.append(survivor)
    emails = _taken_emails(survivor_before, survivor, plan.merged)
    record = MergeRecord(
        id=uuid4(),
        kind=plan.kind,
        survivor_id=survivor.id,
        merged_ids=tuple(o.id for o in plan.merged),
        merged_emails=emails,
        at=at,
        by=by,
        before=tuple(before),
        after=tuple(after),
    )
    unit.merges.add(record)
    return MergePlan(
        plan.kind,
        survivor,
        plan.merged,
        plan.changes,
        plan.repointed,
        tuple(after[len(writes) : len(writes) + len(plan.added)]),
        record.id,
    )


def _taken_emails(
    before: Contact | Account, after: Contact | Account, merged: Iterable[Contact | Account]
) -> tuple[str, ...]:
    """The folded addresses a contact merge took away: the merged contacts' and the
    survivor's own if the merge changed it."""
    found: list[str] = []
    for item in (*merged, before):
        email = getattr(item, "email", None)
        if email is None or (item is before and email == getattr(after, "email", None)):
            continue
        key = email.casefold()
        if key not in found:
            found.append(key)
    return tuple(found)


def survivor_of(unit: UnitOfWork, email: EmailAddress) -> Contact | None:
    """The contact that a merge folded the contact with ``email`` into, following later
    merges of the survivor (``None``: no merge took this address)."""
    merges = unit.merges.with_email(email)
    if not merges:
        return None
    target = merges[-1].survivor_id
    for _ in range(_CHAIN):
        found = unit.contacts.get_many([target]).get(target)
        if found is not None:
            return found
        later = unit.merges.merging(target)
        if not later:
            return None
        target = later[-1].survivor_id
    return None


def _stored(unit: UnitOfWork, row: Entity) -> Entity | None:
    return repository(unit, type(row)).get_many([row.id]).get(row.id)


def unmerge(unit: UnitOfWork, merge_id: object) -> MergeRecord:
    """Undo the merge ``merge_id`` exactly, or refuse with :class:`UnmergeConflict`
    when a row it wrote changed since (nothing is changed then)."""
    if not isinstance(merge_id, UUID):
        raise ValidationError("merge_id", merge_id, "expected a UUID")
    record = unit.merges.get(merge_id)
    erased = _erased(unit, record)
    if erased is not None:
        raise Erased("contact", erased)
    conflicts = _conflicts(unit, record)
    if conflicts:
        raise UnmergeConflict(record.id, conflicts)
    kept = {(r.entity_name, r.id): r for r in record.after}
    survivor = next(r for r in record.before if r.id == record.survivor_id)
    # The survivor's e-mail first, so a merged contact's address is free again.
    repository(unit, type(survivor)).restore(
        survivor, version=kept[(survivor.entity_name, survivor.id)].version
    )
    for row in record.removed:
        repository(unit, type(row)).add(row)
    for row in record.before:
        done = kept.get((row.entity_name, row.id))
        if done is not None and row.id != record.survivor_id:
            repository(unit, type(row)).restore(row, version=done.version)
    for row in record.added:
        repository(unit, type(row)).delete(row.id, version=row.version)
    unit.merges.delete(record.id)
    return record


def _erased(unit: UnitOfWork, record: MergeRecord) -> UUID | None:
    """The erased contact whose data ``record`` held (an erasure anonymised it), if
    any: undoing the merge would bring back no personal data, and is refused."""
    ids = {r.id for r in (*record.before, *record.after) if isinstance(r, Contact)}
    for row in (*record.before, *record.after):
        contact_id = getattr(row, "contact_id", None)
        if contact_id is not None:
            ids.add(contact_id)
    if record.kind is MergeKind.CONTACT:
        target = record.survivor_id
        for _ in range(_CHAIN):  # the contact the survivor was merged into since
            ids.add(target)
            later = unit.merges.merging(target)
            if not later:
                break
            target = later[-1].survivor_id
    erased = unit.erasures.get_many(sorted(ids))
    return min(erased) if erased else None


def _conflicts(unit: UnitOfWork, record: MergeRecord) -> list[tuple[str, UUID, str]]:
    """Every row that changed since the merge wrote it, so that undoing the merge would
    lose a later edit: ``(entity name, id, what happened)``."""
    conflicts: list[tuple[str, UUID, str]] = []
    for row in record.after:
        now = _stored(unit, row)
        if now is None:
            conflicts.append((row.entity_name, row.id, "was deleted (or merged) since"))
        elif now != row:
            conflicts.append(
                (row.entity_name, row.id, f"changed since: version {row.version} -> {now.version}")
            )
    for row in record.removed:
        if _stored(unit, row) is not None:
            conflicts.append((row.entity_name, row.id, "exists again"))
        email = getattr(row, "email", None)
        if email is not None:
            conflicts.extend(
                ("contact", holder.id, f"has its address {email} now")
                for holder in unit.contacts.with_email(email)
                if holder.id != record.survivor_id
            )
    return conflicts
