"""The privacy use cases of :class:`~crmkit.crm.CRM`: export, erasure, suppression,
retention and the audit trail (mixed into ``CRM``)."""

from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Final, cast
from uuid import UUID

import attrs

from crmkit.clock import Clock
from crmkit.crm._consent import refuse_erased
from crmkit.errors import Suppressed, ValidationError
from crmkit.models import (
    AuditAction,
    AuditEntry,
    Contact,
    Entity,
    Erasure,
    Lead,
    PhoneNumber,
    Segment,
    SubjectKind,
    Suppression,
    Ticket,
)
from crmkit.models._fields import member_of
from crmkit.models.rules import And, Compare, InSegment, Op, Rule, RuleEntity
from crmkit.privacy import (
    PERSONAL_FIELDS,
    Bundle,
    RetentionAction,
    RetentionPlan,
    RetentionPolicy,
    anonymise,
    audit_event,
    bundle_of,
    check_secret,
    identifier_digest,
    suppressions_of,
)
from crmkit.quality import MergeKind, MergeRecord
from crmkit.storage import REFERRERS, REPOSITORIES, Repository, Store, UnitOfWork, merge_to_json
from crmkit.storage._base import check_id

__all__ = ["FOUR_EYES", "PrivacyCases", "privacy_options"]

FOUR_EYES: Final = frozenset({"export", "erasure"})
"""The privacy use cases that can require the approval of a second person."""

_SUBJECTS: Final = {s.value: s for s in SubjectKind}
_USER: Final = 200


def privacy_options(secret: object, four_eyes: object) -> tuple[bytes | None, frozenset[str]]:
    """The CRM's ``privacy_secret`` and ``four_eyes``, checked."""
    if secret is not None:
        check_secret(secret)
    if isinstance(four_eyes, str) or not isinstance(four_eyes, Iterable):
        raise ValidationError("four_eyes", four_eyes, "expected a collection of names")
    cases = frozenset(four_eyes)
    if not cases <= FOUR_EYES:
        unknown = ", ".join(sorted(map(repr, cases - FOUR_EYES)))
        raise ValidationError("four_eyes", unknown, "expected 'export' or 'erasure'")
    return cast(bytes | None, secret), cases


def _repository(unit: UnitOfWork, entity: type[Entity]) -> Repository[Any]:
    return cast(Repository[Any], getattr(unit, REPOSITORIES[entity]))


_Record = Entity | Mapping[str, Any]
"""A stored record as an export reads it: an entity, or its JSON document."""


@attrs.frozen
class _Found:
    """What is stored about one person: ``records`` by repository name, the ids the
    person had (the contact's and those of contacts merged into it, through chains of
    merges) and the merge records that hold their data."""

    records: dict[str, list[_Record]]
    ids: tuple[UUID, ...]
    merges: tuple[MergeRecord, ...]

    def mine(self, record: MergeRecord, row: Entity) -> bool:
        """Whether ``row`` of ``record`` is this person's data: every row of a merge of
        the person's contacts, and in another merge (of accounts) the person's contact
        and the rows that refer to it."""
        if self.owns(record):
            return True
        return (isinstance(row, Contact) and row.id in self.ids) or getattr(
            row, "contact_id", None
        ) in self.ids

    def owns(self, record: MergeRecord) -> bool:
        """Whether ``record`` merged the person's contacts (all of it is theirs)."""
        return record.kind is MergeKind.CONTACT and (
            record.survivor_id in self.ids or not set(self.ids).isdisjoint(record.merged_ids)
        )


def _merged(unit: UnitOfWork, contact: Contact) -> tuple[tuple[UUID, ...], tuple[MergeRecord, ...]]:
    """The person's ids (``contact``'s first, then the contacts merged into it) and the
    merge records holding their data, oldest first."""
    ids = [contact.id]
    records: dict[UUID, MergeRecord] = {}
    for id in ids:  # grows while it runs: a merged contact may have absorbed others
        for record in unit.merges.involving(id):
            records.setdefault(record.id, record)
            if record.kind is MergeKind.CONTACT and record.survivor_id in ids:
                ids.extend(i for i in record.merged_ids if i not in ids)
    return tuple(ids), tuple(sorted(records.values(), key=lambda r: (r.at, r.id)))


def _key(item: _Record) -> str:
    return cast(str, item["id"]) if isinstance(item, Mapping) else str(item.id)


def _value(item: _Record, field: str) -> str | None:
    value = item.get(field) if isinstance(item, Mapping) else getattr(item, field, None)
    return None if value is None else str(value)


def _person(unit: UnitOfWork, contact: Contact) -> _Found:
    """Everything stored about ``contact``: what refers to it
    (:data:`~crmkit.storage.REFERRERS`), what refers to those of its leads, deals and
    tickets without naming another contact, their stage history, its audit trail (and
    that of the contacts merged into it), its erasure record and its merge records.
    Generic over the port: a repository that refers to contacts is found through
    ``REFERRERS``, not a list here.

    What refers to the contact and to its leads, deals and tickets is read as JSON
    documents (``referring_documents``: a store builds them from its rows, without
    the entities); the rest as entities."""
    found: dict[type[Entity], dict[str, _Record]] = {Contact: {str(contact.id): contact}}
    mine = str(contact.id)

    def put(entity: type[Entity], items: Iterable[_Record]) -> None:
        into = found.setdefault(entity, {})
        for item in items:
            into.setdefault(_key(item), item)

    for entity, field in REFERRERS["contact"]:
        put(entity, _repository(unit, entity).referring_documents(field, contact.id))
    for kind in ("lead", "deal", "ticket"):
        owner = next(e for e in REPOSITORIES if e.entity_name == kind)
        for item in list(found.get(owner, {}).values()):
            for entity, field in REFERRERS.get(kind, ()):
                put(
                    entity,
                    (
                        other
                        for other in _repository(unit, entity).referring_documents(
                            field, UUID(_key(item))
                        )
                        if _value(other, "contact_id") in (None, mine)
                    ),
                )
    ids, merges = _merged(unit, contact)
    history = []
    audit = []
    for entity, items in list(found.items()):
        subject = _SUBJECTS.get(entity.entity_name)
        if subject is not None and items:
            keys = [UUID(key) for key in items]
            if subject is SubjectKind.CONTACT:
                keys.extend(ids[1:])
            history.extend(unit.stage_history.for_subjects(subject, keys))
            audit.extend(unit.audit.for_subjects(subject, keys))
    put(next(e for e in REPOSITORIES if e.entity_name == "stage_change"), history)
    put(AuditEntry, audit)
    put(Erasure, unit.erasures.get_many([contact.id]).values())
    records = {
        REPOSITORIES[entity]: list(found.get(entity, {}).values())
        for entity in REPOSITORIES
        if entity in found or entity.entity_name in _SECTIONS
    }
    return _Found(records, ids, merges)


def _merge_documents(found: _Found) -> list[dict[str, Any]]:
    """The person's merge records as JSON documents, with the images of the person's
    rows only (an account merge also moved other people's contacts)."""
    documents = []
    for record in found.merges:
        document = merge_to_json(record)
        for side in ("before", "after"):
            rows = getattr(record, side)
            document[side] = [
                image
                for image, row in zip(document[side], rows, strict=True)
                if found.mine(record, row)
            ]
        documents.append(document)
    return documents


def _anonymised_merge(found: _Found, record: MergeRecord, now: datetime) -> MergeRecord:
    """``record`` with the person's rows anonymised and, for a merge of the person's
    contacts, no taken e-mail address left."""

    def images(rows: tuple[Entity, ...]) -> tuple[Entity, ...]:
        return tuple(anonymise(r, at=now) if found.mine(record, r) else r for r in rows)

    return attrs.evolve(
        record,
        before=images(record.before),
        after=images(record.after),
        merged_emails=() if found.owns(record) else record.merged_emails,
    )


_SECTIONS: Final = frozenset(
    {"contact", "lead", "deal", "ticket", "activity", "task", "consent", "stage_change"}
    | {"audit_entry", "erasure"}
    | {entity.entity_name for entity, _ in REFERRERS["contact"]}
)
"""The entities every export has a section for, even an empty one."""


def _memberships(unit: UnitOfWork, contact_id: UUID) -> list[Segment]:
    """The segments ``contact_id`` is a member of (static lists and dynamic rules)."""
    found = []
    for segment in unit.segments.iterate():
        if segment.rule is None:
            if contact_id in segment.members:
                found.append(segment)
            continue
        rule = Rule(
            RuleEntity.CONTACT, And((Compare("id", Op.EQ, contact_id), InSegment(segment.id)))
        )
        if unit.contacts.count(rule):
            found.append(segment)
    return found


def _user(name: str, value: object, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > _USER:
        raise ValidationError(name, value, "expected the host's user id (1 to 200 characters)")
    return value


class PrivacyCases:
    """Export, erasure, suppression, retention and the audit trail (see ``CRM``)."""

    store: Store
    clock: Clock
    privacy_secret: bytes | None
    four_eyes: frozenset[str]

    def _unit(
        self, by: str | None = None, *, audits: bool = True
    ) -> AbstractContextManager[UnitOfWork]:
        raise NotImplementedError  # pragma: no cover - CRM's

    def _cascade(self, unit: UnitOfWork, kind: str, id: UUID) -> None:
        raise NotImplementedError  # pragma: no cover - CRM's

    def _delete_contact(self, unit: UnitOfWork, contact: Contact) -> None:
        raise NotImplementedError  # pragma: no cover - CRM's

    def _approved(self, case: str, by: str | None, approved_by: object) -> str | None:
        """``approved_by`` when ``case`` may go ahead: with four eyes, a second person."""
        approver = _user("approved_by", approved_by, required=case in self.four_eyes)
        if approver is not None and by is not None and approver.casefold() == by.casefold():
            raise ValidationError(
                "approved_by", approved_by, f"the {case} needs the approval of a second person"
            )
        return approver

    # ------------------------------------------------------------------ export

    def export_person(
        self, contact_id: UUID, /, *, by: str, approved_by: str | None = None
    ) -> Bundle:
        """Everything stored about one person, as a :class:`~crmkit.privacy.Bundle`
        (JSON with :meth:`~crmkit.privacy.Bundle.to_json`, CSV files with
        :meth:`~crmkit.privacy.Bundle.to_csv`), and an ``exported`` entry in the
        person's audit trail, in one unit of work.

        ``by`` is who exports; with ``four_eyes`` including ``"export"``,
        ``approved_by`` must name a second person. A contact of another tenant is not
        found (:class:`~crmkit.errors.NotFound`).
        """
        who = cast(str, _user("by", by, required=True))
        self._approved("export", who, approved_by)
        with self._unit(who) as unit:
            contact = unit.contacts.get(contact_id)
            now = self.clock.now()
            found = _person(unit, contact)
            made = bundle_of(
                tenant=self.store.tenant,
                contact_id=contact.id,
                records=found.records,
                segments=_memberships(unit, contact.id),
                merges=_merge_documents(found),
                at=now,
                by=who,
            )
            unit.audit.add(audit_event(contact, AuditAction.EXPORTED, at=now, by=who))
        return made

    # ------------------------------------------------------------------ erasure

    def erase_person(
        self, contact_id: UUID, /, *, by: str, reason: str, approved_by: str | None = None
    ) -> Erasure:
        """Erase a person: anonymise their data in every repository (see
        :data:`~crmkit.privacy.PERSONAL_FIELDS`), keep the records and their id as the
        tombstone (deal amounts still count), put the keyed hashes of their e-mail and
        phone on the suppression list, and store the :class:`~crmkit.models.Erasure`
        record and an ``erased`` audit entry, in one unit of work.

        Needs the CRM's ``privacy_secret``. A person erased before raises
        :class:`~crmkit.errors.Erased`; with ``four_eyes`` including ``"erasure"``,
        ``approved_by`` must name a second person. Nothing is changed on any error.
        """
        contact_id = check_id(contact_id, "contact_id")
        secret = check_secret(self.privacy_secret)
        who = cast(str, _user("by", by, required=True))
        approver = self._approved("erasure", who, approved_by)
        now = self.clock.now()
        record = Erasure(
            id=contact_id,
            version=1,
            created_at=now,
            updated_at=now,
            contact_id=contact_id,
            by=who,
            reason=reason,
            at=now,
            approved_by=approver,
        )
        with self._unit(audits=False) as unit:
            contact = unit.contacts.get(contact_id)
            # The contacts merged into this one are the same person: their addresses
            # and phones are suppressed too (read before erasure anonymises the merges).
            merged_away = [
                removed
                for merge in unit.merges.involving(contact.id)
                if merge.kind is MergeKind.CONTACT
                for removed in merge.removed
                if isinstance(removed, Contact)
            ]
            count = self._erase(unit, contact, record, now)
            for person in (contact, *merged_away):
                for suppression in suppressions_of(person, secret, erasure_id=contact.id, at=now):
                    if not unit.suppressions.get_many([suppression.id]):
                        unit.suppressions.add(suppression)
            unit.commit()
        return attrs.evolve(record, records=count)

    def _erase(self, unit: UnitOfWork, contact: Contact, record: Erasure, now: datetime) -> int:
        """Anonymise ``contact``'s records and store ``record``; how many changed."""
        refuse_erased(unit, contact.id)
        found = _person(unit, contact)
        count = 0
        mine = str(contact.id)
        bulk: dict[type[Entity], list[str]] = {}
        for entity, field in REFERRERS["contact"]:  # one statement per repository
            values = PERSONAL_FIELDS.get(entity)
            if values:
                bulk.setdefault(entity, []).append(field)
                count += _repository(unit, entity).erase_referring(
                    field, contact.id, values, at=now
                )
        for name, items in found.records.items():  # the rest one by one
            repository = cast(Repository[Any], getattr(unit, name))
            fields = bulk.get(repository.entity, [])
            left = [i for i in items if not any(_value(i, f) == mine for f in fields)]
            wanted = [UUID(i["id"]) for i in left if isinstance(i, Mapping)]
            models = [i for i in left if isinstance(i, Entity)]
            models.extend(repository.get_many(wanted).values())
            for item in models:
                changed = anonymise(item, at=now)
                if changed is not item:
                    repository.update(changed)
                    count += 1
        for merge in found.merges:
            anonymised = _anonymised_merge(found, merge, now)
            if anonymised != merge:
                unit.merges.anonymise(anonymised)
                count += 1
        unit.erasures.add(attrs.evolve(record, records=count))
        unit.audit.add(audit_event(contact, AuditAction.ERASED, at=now, by=record.by))
        return count

    def erasures(self) -> list[Erasure]:
        """Every erasure record of the tenant, oldest first."""
        with self.store.unit_of_work() as unit:
            return sorted(unit.erasures.iterate(), key=lambda e: (e.at, e.id))

    # ------------------------------------------------------------------ suppression

    def _digests(self, email: object, phone: object) -> Iterator[tuple[str, str]]:
        """``(field, digest)`` of the identifiers given, with the CRM's secret."""
        if self.privacy_secret is None:
            return
        for name, value in (("email", email), ("phone", phone)):
            if value is not None:
                try:
                    yield name, identifier_digest(self.privacy_secret, name, cast(str, value))
                except ValidationError as error:
                    raise error.within(name) from None

    def _refuse_suppressed(self, unit: UnitOfWork, email: object, phone: object) -> None:
        """:class:`~crmkit.errors.Suppressed` when ``email`` or ``phone`` belongs to a
        person who asked to be forgotten (an index look-up per identifier)."""
        for name, digest in self._digests(email, phone):
            if unit.suppressions.get_many([Suppression.id_for(digest)]):
                raise Suppressed(name)

    def is_suppressed(self, *, email: str | None = None, phone: str | None = None) -> bool:
        """Whether this e-mail address or phone number belongs to an erased person."""
        with self.store.unit_of_work() as unit:
            try:
                self._refuse_suppressed(unit, email, _phone_or(phone))
            except Suppressed:
                return True
        return False

    def lift_suppression(self, *, email: str | None = None, phone: str | None = None) -> int:
        """Take this e-mail address and phone number off the suppression list, when
        the person opted in again (record their consent too); returns how many entries
        were removed. Needs the CRM's ``privacy_secret``."""
        check_secret(self.privacy_secret)
        removed = 0
        with self._unit() as unit:
            for _, digest in self._digests(email, _phone_or(phone)):
                key = Suppression.id_for(digest)
                if unit.suppressions.get_many([key]):
                    unit.suppressions.delete(key)
                    removed += 1
        return removed

    # ------------------------------------------------------------------ retention

    def apply_retention(
        self, policy: RetentionPolicy, /, *, by: str, dry_run: bool = True
    ) -> RetentionPlan:
        """What ``policy`` selects now, selected by the store (rules, not a scan), and,
        unless ``dry_run`` (the default), its action applied in one unit of work.

        ``anonymise`` erases the selected contacts as :meth:`erase_person` does (with
        an erasure record whose reason names the policy, but no suppression: they did
        not ask to be forgotten) and anonymises the selected leads and tickets with
        their activities and history; ``delete`` deletes them with what refers to
        them (as :meth:`delete_contact` with ``cascade``: audit trails and merge
        records included). Contacts erased before are left out of ``anonymise``; leads a deal refers
        to are left out.
        """
        if not isinstance(policy, RetentionPolicy):
            raise ValidationError("policy", policy, "expected a RetentionPolicy")
        who = cast(str, _user("by", by, required=True))
        if not isinstance(dry_run, bool):
            raise ValidationError("dry_run", dry_run, "expected True or False")
        now = self.clock.now()
        rules = policy.rules(now)
        anonymising = policy.action is RetentionAction.ANONYMISE
        with self._unit(audits=False) as unit:
            contacts = [] if rules.contacts is None else unit.contacts.ids(rules.contacts, now=now)
            if anonymising:
                erased = unit.erasures.get_many(contacts)
                contacts = [c for c in contacts if c not in erased]
            leads = [] if rules.leads is None else unit.leads.ids(rules.leads, now=now)
            leads = [i for i in leads if not unit.deals.referring("lead_id", i)]
            tickets = [] if rules.tickets is None else unit.tickets.ids(rules.tickets, now=now)
            plan = RetentionPlan(
                policy.action, tuple(contacts), tuple(leads), tuple(tickets), False
            )
            if dry_run:
                return plan
            if anonymising:
                self._anonymise_all(unit, plan, who, now)
            else:
                self._delete_all(unit, plan)
            unit.commit()
        return attrs.evolve(plan, applied=True)

    def _anonymise_all(self, unit: UnitOfWork, plan: RetentionPlan, by: str, now: datetime) -> None:
        reason = "retention policy"
        for contact_id in plan.contacts:
            record = Erasure(
                id=contact_id,
                version=1,
                created_at=now,
                updated_at=now,
                contact_id=contact_id,
                by=by,
                reason=reason,
                at=now,
            )
            self._erase(unit, unit.contacts.get(contact_id), record, now)
        for lead in unit.leads.get_many(plan.leads).values():
            _anonymise_subject(unit, lead, SubjectKind.LEAD, now)
        for ticket in unit.tickets.get_many(plan.tickets).values():
            _anonymise_subject(unit, ticket, SubjectKind.TICKET, now)
            for entity, field in REFERRERS["ticket"]:
                repository = _repository(unit, entity)
                for item in repository.referring(field, ticket.id):
                    changed = anonymise(item, at=now)
                    if changed is not item:
                        repository.update(changed)

    def _delete_all(self, unit: UnitOfWork, plan: RetentionPlan) -> None:
        for ticket_id in plan.tickets:
            for entity, field in REFERRERS["ticket"]:
                repository = _repository(unit, entity)
                for item in repository.referring(field, ticket_id):
                    repository.delete(item.id)
            delete_history(unit, SubjectKind.TICKET, ticket_id)
            unit.tickets.delete(ticket_id)
        for lead_id in plan.leads:
            delete_history(unit, SubjectKind.LEAD, lead_id)
            unit.leads.delete(lead_id)
        for contact_id in plan.contacts:
            found = unit.contacts.get_many([contact_id]).get(contact_id)
            if found is not None:
                self._cascade(unit, "contact", contact_id)
                self._delete_contact(unit, unit.contacts.get(contact_id))

    # ------------------------------------------------------------------ audit

    def audit_trail(self, subject: SubjectKind, subject_id: UUID, /) -> list[AuditEntry]:
        """The audit trail of a contact or deal, oldest first: its field changes (who,
        when, before -> after), and for a contact its exports and erasure. ``subject``
        is a :class:`~crmkit.models.SubjectKind` or its value."""
        subject = member_of(SubjectKind, subject, "subject")
        with self.store.unit_of_work() as unit:
            return unit.audit.for_subject(subject, subject_id)


def _anonymise_subject(
    unit: UnitOfWork, item: Lead | Ticket, subject: SubjectKind, now: datetime
) -> None:
    repository = _repository(unit, type(item))
    changed = anonymise(item, at=now)
    if changed is not item:
        repository.update(changed)
    for change in unit.stage_history.for_subject(subject, item.id):
        gone = anonymise(change, at=now)
        if gone is not change:
            unit.stage_history.update(gone)


def delete_history(unit: UnitOfWork, subject: SubjectKind, id: UUID) -> None:
    """Delete the stage history and the audit trail of a subject being deleted: its
    field changes hold the personal values it had (a deleted record leaves none)."""
    for change in unit.stage_history.for_subject(subject, id):
        unit.stage_history.delete(change.id)
    for entry in unit.audit.for_subject(subject, id):
        unit.audit.delete(entry.id)


def forget_merges(unit: UnitOfWork, contact: Contact, now: datetime) -> None:
    """Before ``contact`` is deleted: delete the merge records of the person's contacts
    (their before-images and taken addresses are the person's data, and no unmerge can
    bring back a deleted survivor) with the stage history and audit trail of the
    contacts merged into it, and anonymise the person's rows in the other merges that
    hold them (an account merge that moved the contact)."""
    ids, merges = _merged(unit, contact)
    for merged in ids[1:]:
        delete_history(unit, SubjectKind.CONTACT, merged)
    found = _Found({}, ids, merges)
    for record in merges:
        if found.owns(record):
            unit.merges.delete(record.id)
        else:
            unit.merges.anonymise(_anonymised_merge(found, record, now))


def _phone_or(value: object) -> object:
    """A phone number as the suppression list keys it (E.164), parsed when it can be."""
    if isinstance(value, str) and not isinstance(value, PhoneNumber):
        try:
            return PhoneNumber.parse(value)
        except ValidationError as error:
            raise error.within("phone") from None
    return value
