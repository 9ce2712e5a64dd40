"""The contracts that merging and undoing a merge rely on: ``restore`` of any
repository, the merge records (``UnitOfWork.merges``), and a merge and its undo through
:class:`~crmkit.crm.CRM`, which must leave every repository as it was.

Fixed data, chosen to tell a right adapter from a wrong one: a version that must go
back down, a static segment whose members must come back, addresses that differ in case,
the same merge id in two tenants. :class:`~crmkit.testing.storage.StoreContract`
inherits them.
"""

from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID, uuid4

import attrs

from crmkit.clock import FixedClock
from crmkit.crm import CRM
from crmkit.errors import ConcurrencyConflict, Duplicate, NotFound, ValidationError
from crmkit.models import (
    Activity,
    ActivityKind,
    Consent,
    ConsentChannel,
    ConsentStatus,
    Contact,
    EmailAddress,
    Lead,
    LeadChannel,
    Segment,
    StageChange,
    SubjectKind,
)
from crmkit.quality import MergeKind, MergeRecord
from crmkit.storage import Store
from crmkit.testing._contract import _c, _raises

__all__ = ["MergeContract"]

_T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
_CLOCK = FixedClock(_T0)
_REPOSITORIES = (
    "contacts",
    "accounts",
    "leads",
    "deals",
    "tickets",
    "activities",
    "tasks",
    "segments",
    "consents",
    "stage_history",
)


def _everything(store: Store) -> dict[str, dict[UUID, Any]]:
    with store.unit_of_work() as unit:
        return {
            name: {item.id: item for item in getattr(unit, name).iterate()}
            for name in _REPOSITORIES
        }


def _record(tenant_ids: tuple[UUID, UUID]) -> MergeRecord:
    survivor_id, merged_id = tenant_ids
    ada = Contact.new(email="ada@example.com", tags={"a"}, clock=_CLOCK)
    ada = attrs.evolve(ada, id=survivor_id)
    lovelace = attrs.evolve(
        Contact.new(email="Ada.Lovelace@Example.org", custom={"n": 1.5}, clock=_CLOCK),
        id=merged_id,
    )
    lead = Lead.new(contact_id=merged_id, source="web", channel=LeadChannel.FORM, clock=_CLOCK)
    segment = Segment.new(name="Fans", members=[survivor_id, merged_id], clock=_CLOCK)
    withdrawal = Consent.new(
        contact_id=survivor_id,
        channel=ConsentChannel.EMAIL,
        purpose="news",
        status=ConsentStatus.WITHDRAWN,
        source="merge",
        clock=_CLOCK,
    )
    return MergeRecord(
        id=uuid4(),
        kind=MergeKind.CONTACT,
        survivor_id=survivor_id,
        merged_ids=(merged_id,),
        merged_emails=("ada.lovelace@example.org",),
        at=_T0 + timedelta(microseconds=7),
        by="mia",
        before=(ada, lead, segment, lovelace),
        after=(
            attrs.evolve(ada, version=2, tags={"a", "b"}),
            attrs.evolve(lead, version=2, contact_id=survivor_id),
            attrs.evolve(segment, version=2, members=frozenset({survivor_id})),
            withdrawal,
        ),
    )


class MergeContract:
    """Restore, merge records, merge and unmerge (mixed into ``StoreContract``)."""

    def test_restore_writes_the_item_exactly_with_its_version(self, fresh: Store) -> None:
        ada = Contact.new(email="ada@example.com", first_name="Ada", clock=_CLOCK)
        bo = Contact.new(email="bo@example.com", clock=_CLOCK)
        segment = Segment.new(name="Fans", members=[ada.id], clock=_CLOCK)
        with fresh.unit_of_work() as unit:
            unit.contacts.add_many([ada, bo])
            unit.segments.add(segment)
            changed = unit.contacts.update(attrs.evolve(ada, first_name="Augusta"))
            changed = unit.contacts.update(attrs.evolve(changed, email="ada@example.org"))
            grown = unit.segments.update(attrs.evolve(segment, members={ada.id, bo.id}))
            assert unit.contacts.restore(ada, version=changed.version) == ada, _c(
                "restore returns the item it stored"
            )
            assert unit.contacts.get(ada.id) == ada, _c(
                "restore stores the item exactly, its (lower) version included"
            )
            assert unit.contacts.with_email(EmailAddress("ADA@example.com")) == [ada], _c(
                "restore keeps the e-mail index: the restored address finds the contact"
            )
            assert unit.contacts.with_email(EmailAddress("ada@example.org")) == [], _c(
                "restore keeps the e-mail index: the replaced address finds nothing"
            )
            unit.segments.restore(segment, version=grown.version)
            assert unit.segments.get(segment.id) == segment, _c(
                "restore of a static segment restores its members exactly"
            )
            with _raises(ConcurrencyConflict, "restore of another version is a conflict") as c:
                unit.contacts.restore(changed, version=changed.version)
            assert (c.value.expected_version, c.value.actual_version) == (3, 1), _c(
                "restore's conflict: expected_version the given version, actual the stored"
            )
            with _raises(NotFound, "restore of a missing id is NotFound"):
                unit.contacts.restore(Contact.new(clock=_CLOCK), version=1)
            with _raises(ValidationError, "restore refuses a version that is not an int >= 1"):
                unit.contacts.restore(ada, version=0)
            with _raises(Duplicate, "restore refuses an address another contact has"):
                unit.contacts.restore(attrs.evolve(ada, email="bo@example.com"), version=1)
            assert unit.contacts.get(ada.id) == ada, _c("a refused restore changes nothing")

    def test_merge_records_come_back_equal_and_are_found(self, fresh: Store) -> None:
        survivor_id, merged_id = uuid4(), uuid4()
        record = _record((survivor_id, merged_id))
        with fresh.unit_of_work() as unit:
            assert unit.merges.add(record) == record, _c("merges.add returns the record")
            unit.commit()
        twin = fresh.for_tenant(f"{fresh.tenant}-twin"[:64])
        with twin.unit_of_work() as unit:
            assert unit.merges.merging(merged_id) == [], _c("merges are the tenant's own")
            unit.merges.add(record)  # the same id in another tenant is another record
            unit.commit()
        with fresh.unit_of_work() as unit:
            assert unit.merges.get(record.id) == record, _c(
                "a merge record comes back equal, every before- and after-image included"
            )
            assert unit.merges.merging(merged_id) == [record], _c(
                "merges.merging finds the merges that removed a record"
            )
            assert unit.merges.merging(survivor_id) == [], _c(
                "merges.merging finds removed records only, not the survivor"
            )
            found = unit.merges.with_email(EmailAddress("ADA.LOVELACE@example.ORG"))
            assert found == [record], _c("merges.with_email compares without case")
            assert unit.merges.with_email(EmailAddress("lovelace@example.org")) == [], _c(
                "merges.with_email matches the whole address"
            )
            with _raises(Duplicate, "merges.add of a taken id is a Duplicate"):
                unit.merges.add(record)
            with _raises(ValidationError, "merges.add refuses what is not a MergeRecord"):
                unit.merges.add("record")  # type: ignore[arg-type]
            with _raises(ValidationError, "merges.merging refuses an id that is not a UUID"):
                unit.merges.merging("id")  # type: ignore[arg-type]
            unit.merges.delete(record.id)
            with _raises(NotFound, "a deleted merge record is gone"):
                unit.merges.get(record.id)
            assert unit.merges.merging(merged_id) == [], _c(
                "a deleted merge record is found by no look-up"
            )
            with _raises(NotFound, "merges.delete of a missing id is NotFound"):
                unit.merges.delete(record.id)
        with fresh.unit_of_work() as unit:
            assert unit.merges.get(record.id) == record, _c(
                "merges.delete without commit is rolled back"
            )
        with twin.unit_of_work() as unit:
            assert unit.merges.get(record.id) == record, _c("merges are the tenant's own")

    def test_merges_involving_a_contact_and_their_anonymisation(self, fresh: Store) -> None:
        survivor_id, merged_id = uuid4(), uuid4()
        record = _record((survivor_id, merged_id))
        bo = Contact.new(email="bo@example.com", clock=_CLOCK)
        moved = attrs.evolve(bo, version=2, account_id=uuid4())
        accounts = MergeRecord(
            id=uuid4(),
            kind=MergeKind.ACCOUNT,
            survivor_id=moved.account_id,  # type: ignore[arg-type]
            merged_ids=(uuid4(),),
            at=_T0 + timedelta(minutes=1),
            before=(bo,),
            after=(moved,),
        )
        twin = fresh.for_tenant(f"{fresh.tenant}-twin"[:64])
        with twin.unit_of_work() as unit:
            unit.merges.add(accounts)
            unit.commit()
        with fresh.unit_of_work() as unit:
            unit.merges.add(record)
            unit.merges.add(accounts)
            unit.commit()
        with fresh.unit_of_work() as unit:
            for contact_id, expected, what in (
                (survivor_id, [record], "the survivor of a contact merge"),
                (merged_id, [record], "a contact a merge removed"),
                (bo.id, [accounts], "a contact an account merge moved"),
                (uuid4(), [], "no merge for a contact in none"),
            ):
                assert unit.merges.involving(contact_id) == expected, _c(
                    f"merges.involving finds {what}, in the tenant only"
                )
            with _raises(ValidationError, "merges.involving refuses an id that is not a UUID"):
                unit.merges.involving("id")  # type: ignore[arg-type]
            lovelace = cast(Contact, record.before[-1])
            anonymised = attrs.evolve(
                record,
                before=(*record.before[:-1], attrs.evolve(lovelace, email=None)),
                merged_emails=(),
            )
            assert unit.merges.anonymise(anonymised) == anonymised, _c(
                "merges.anonymise returns the record"
            )
            assert unit.merges.get(record.id) == anonymised, _c(
                "merges.anonymise stores the anonymised images"
            )
            assert unit.merges.with_email(EmailAddress("ada.lovelace@example.org")) == [], _c(
                "a taken address merges.anonymise dropped finds the merge no more"
            )
            assert unit.merges.merging(merged_id) == [anonymised], _c(
                "merges.anonymise keeps the look-up by merged id"
            )
            with _raises(ValidationError, "merges.anonymise changes no survivor"):
                unit.merges.anonymise(attrs.evolve(anonymised, survivor_id=uuid4()))
            with _raises(ValidationError, "merges.anonymise adds no row"):
                unit.merges.anonymise(attrs.evolve(anonymised, after=record.after[:-1]))
            with _raises(NotFound, "merges.anonymise of a missing record is NotFound"):
                unit.merges.anonymise(attrs.evolve(anonymised, id=uuid4()))
        with fresh.unit_of_work() as unit:
            assert unit.merges.get(record.id) == record, _c(
                "merges.anonymise without commit is rolled back"
            )

    def test_a_merge_and_its_undo_leave_every_repository_as_it_was(self, fresh: Store) -> None:
        crm = CRM(fresh, clock=FixedClock(_T0 + timedelta(days=1)))
        ada = Contact.new(email="ada@example.com", first_name="Ada", clock=_CLOCK)
        lovelace = Contact.new(email="lovelace@example.com", last_name="Lovelace", clock=_CLOCK)
        lead = Lead.new(
            contact_id=lovelace.id, source="web", channel=LeadChannel.FORM, clock=_CLOCK
        )
        seen = Activity.new(contact_id=lovelace.id, kind=ActivityKind.CALL, clock=_CLOCK)
        moved = StageChange.new(
            subject=SubjectKind.CONTACT, subject_id=lovelace.id, to_stage="lead", clock=_CLOCK
        )
        with fresh.unit_of_work() as unit:
            unit.contacts.add_many([ada, lovelace])
            unit.leads.add(lead)
            unit.activities.add(seen)
            unit.stage_history.add(moved)
            unit.segments.add(Segment.new(name="Fans", members=[lovelace.id], clock=_CLOCK))
            unit.commit()
        before = _everything(fresh)

        done = crm.merge_contacts(ada.id, [lovelace.id])

        merged = _everything(fresh)
        assert lovelace.id not in merged["contacts"], _c("a merge removes the merged record")
        assert merged["leads"][lead.id].contact_id == ada.id, _c(
            "a merge moves the merged record's references (update stores them)"
        )
        assert crm.find_contact("LOVELACE@example.com") == merged["contacts"][ada.id], _c(
            "a merged address finds the survivor (merges.with_email)"
        )
        assert done.merge_id is not None
        crm.unmerge(done.merge_id)
        assert _everything(fresh) == before, _c(
            "merge then unmerge leaves every repository exactly as it was (restore, add, "
            "delete and the merge record's images)"
        )
