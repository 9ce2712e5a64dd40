"""Contracts behind export and erasure (mixed into ``StoreContract``): every repository
is there, ``referring`` finds every record that refers to a person, in the store's
tenant only, and an export through :class:`~crmkit.crm.CRM` misses no repository."""

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from uuid import UUID, uuid4

from crmkit.automation import event_to_json
from crmkit.clock import FixedClock
from crmkit.crm import CRM
from crmkit.errors import ValidationError
from crmkit.lifecycle import Touchpoint
from crmkit.models import (
    Activity,
    ActivityKind,
    AuditAction,
    AuditEntry,
    Consent,
    ConsentChannel,
    ConsentStatus,
    Contact,
    CustomFields,
    Deal,
    DoNotContact,
    DoNotContactReason,
    EmailAddress,
    Entity,
    Lead,
    LeadChannel,
    Money,
    SubjectKind,
    Task,
    Ticket,
    TicketChannel,
)
from crmkit.segmentation import deals_where, has_tag
from crmkit.serialization import make_converter
from crmkit.storage import ENTITIES, REFERRERS, REPOSITORIES, Repository, Store
from crmkit.testing._contract import _c, _raises

__all__ = ["PrivacyContract"]

_T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
_CLOCK = FixedClock(_T0)
_CONVERTER: Final = make_converter()

_SAMPLES: Final[dict[type[Entity], Callable[[UUID], Entity]]] = {
    Lead: lambda c: Lead.new(contact_id=c, source="web", channel=LeadChannel.FORM, clock=_CLOCK),
    Deal: lambda c: Deal.new(
        title="Seats", pipeline="sales", stage="new", contact_id=c, clock=_CLOCK
    ),
    Ticket: lambda c: Ticket.new(
        subject="Help", contact_id=c, channel=TicketChannel.CHAT, clock=_CLOCK
    ),
    Activity: lambda c: Activity.new(contact_id=c, kind=ActivityKind.NOTE, body="hi", clock=_CLOCK),
    Task: lambda c: Task.new(
        title="Call", due_at=_T0 + timedelta(days=1), contact_id=c, clock=_CLOCK
    ),
    Consent: lambda c: Consent.new(
        contact_id=c,
        channel=ConsentChannel.EMAIL,
        purpose="newsletter",
        status=ConsentStatus.GRANTED,
        source="form",
        clock=_CLOCK,
    ),
    DoNotContact: lambda c: DoNotContact.new(
        contact_id=c,
        channel=ConsentChannel.SMS,
        reason=DoNotContactReason.ASKED,
        source="form",
        clock=_CLOCK,
    ),
}
"""One record per entity that refers to contacts; a new referrer needs a sample here."""


def _repository(unit: Any, entity: type[Entity]) -> Repository[Any]:
    return getattr(unit, REPOSITORIES[entity])  # type: ignore[no-any-return]


def _person(store: Store, email: str) -> tuple[Contact, dict[type[Entity], Entity]]:
    """A contact with one record in every repository that refers to contacts."""
    contact = Contact.new(email=email, first_name="Ada", clock=_CLOCK)
    made: dict[type[Entity], Entity] = {}
    with store.unit_of_work() as unit:
        unit.contacts.add(contact)
        for entity, _ in REFERRERS["contact"]:
            sample = _SAMPLES.get(entity)
            assert sample is not None, f"the kit has no sample {entity.entity_name} (add one)"
            made[entity] = _repository(unit, entity).add(sample(contact.id))
        unit.commit()
    return contact, made


class PrivacyContract:
    """What export and erasure need of a store."""

    def test_every_entity_has_its_repository(self, fresh: Store) -> None:
        with fresh.unit_of_work() as unit:
            for entity in ENTITIES:
                repository = getattr(unit, REPOSITORIES[entity], None)
                assert repository is not None, _c(f"a unit of work has {REPOSITORIES[entity]}")
                assert repository.entity is entity, _c(
                    f"{REPOSITORIES[entity]} stores {entity.__name__}s"
                )

    def test_referring_finds_every_referrer_in_the_tenant_only(self, fresh: Store) -> None:
        ada, made = _person(fresh, "ada@example.org")
        _person(fresh, "bo@example.org")  # someone else, in the same tenant
        twin = fresh.for_tenant(f"kit-{uuid4().hex[:12]}")
        with twin.unit_of_work() as unit:  # the same ids in another tenant
            unit.contacts.add(ada)
            for entity, item in made.items():
                _repository(unit, entity).add(item)
            unit.commit()
        with fresh.unit_of_work() as unit:
            for entity, field in REFERRERS["contact"]:
                found = _repository(unit, entity).referring(field, ada.id)
                assert found == [made[entity]], _c(
                    f"{REPOSITORIES[entity]}.referring({field!r}, id) finds what refers to "
                    "the contact, in the store's tenant only"
                )
            with _raises(ValidationError, "referring takes a reference field") as wrong:
                unit.leads.referring("source", ada.id)
            assert wrong.value.field == "field", _c("referring's error names field 'field'")
            with _raises(ValidationError, "referring takes a UUID") as bad_id:
                unit.leads.referring("contact_id", "ada")  # type: ignore[arg-type]
            assert bad_id.value.field == "id", _c("referring's error names field 'id'")

    def test_referring_documents_are_the_entities_as_json(self, fresh: Store) -> None:
        ada, _ = _person(fresh, "ada@example.org")
        bo, _ = _person(fresh, "bo@example.org")
        extra = [
            Activity.new(
                contact_id=ada.id,
                kind=ActivityKind.PURCHASE,
                amount=Money("12.50", "EUR"),
                properties={"sku": "A-1", "qty": 2, "gift": True, "rate": 0.5},
                clock=FixedClock(_T0 + timedelta(microseconds=1)),
            ),
            Deal.new(
                title="Seats",
                pipeline="sales",
                stage="new",
                amount=Money("0.0000001", "EUR"),
                tags={"b", "a"},
                contact_id=ada.id,
                clock=FixedClock(_T0 + timedelta(hours=1)),
            ),
        ]
        with fresh.unit_of_work() as unit:
            for item in extra:
                _repository(unit, type(item)).add(item)
            unit.commit()
        with fresh.unit_of_work() as unit:
            for entity, field in REFERRERS["contact"]:
                repository = _repository(unit, entity)
                for person in (ada, bo):
                    expected = [
                        _CONVERTER.unstructure(e) for e in repository.referring(field, person.id)
                    ]
                    found = repository.referring_documents(field, person.id)
                    assert found == expected, _c(
                        f"{REPOSITORIES[entity]}.referring_documents gives what referring "
                        "gives, unstructured by crmkit's converter"
                    )
                    assert [list(d) for d in found] == [list(d) for d in expected], _c(
                        "referring_documents keeps the converter's order of keys"
                    )
            with _raises(ValidationError, "referring_documents takes a reference field"):
                unit.leads.referring_documents("source", ada.id)

    def test_erase_referring_writes_the_values_in_one_go(self, fresh: Store) -> None:
        ada, made = _person(fresh, "ada@example.org")
        _, others = _person(fresh, "bo@example.org")
        clean = Activity.new(contact_id=ada.id, kind=ActivityKind.PAGE_VIEW, clock=_CLOCK)
        tagged = Deal.new(
            title="Bo's deal",
            pipeline="sales",
            stage="new",
            tags={"vip"},
            contact_id=ada.id,
            clock=FixedClock(_T0 + timedelta(days=2)),
        )
        with fresh.unit_of_work() as unit:
            unit.activities.add(clean)
            unit.deals.add(tagged)
            unit.commit()
        values = {"subject": None, "body": None, "properties": CustomFields()}
        later = _T0 + timedelta(days=1)
        with fresh.unit_of_work() as unit:
            for wrong, name in (
                ({"contact_id": None}, "values"),
                ({"version": 3}, "values"),
                ({"body": 3}, "values.body"),
                ({}, "values"),
            ):
                with _raises(ValidationError, f"erase_referring refuses {wrong}") as refused:
                    unit.activities.erase_referring("contact_id", ada.id, wrong, at=later)
                assert refused.value.field == name, _c(f"erase_referring's error names {name}")
            assert unit.activities.erase_referring("contact_id", ada.id, values, at=later) == 1, _c(
                "erase_referring counts the entities it changed (not those that hold the "
                "values already)"
            )
            note = unit.activities.get(made[Activity].id)
            assert (note.body, note.version, note.updated_at) == (None, 2, later), _c(
                "erase_referring writes the values, counts the version up and stamps at"
            )
            assert unit.activities.get(clean.id) == clean, _c(
                "erase_referring leaves an entity that holds the values already as it was"
            )
            assert unit.activities.get(others[Activity].id) == others[Activity], _c(
                "erase_referring changes no entity of another contact"
            )
            erased_deals = unit.deals.erase_referring(
                "contact_id", ada.id, {"tags": frozenset(), "title": "[erased]"}, at=_T0
            )
            assert erased_deals == 2, _c("erase_referring writes tags")
            deal = unit.deals.get(tagged.id)
            assert (deal.tags, deal.title) == (frozenset(), "[erased]"), _c(
                "erase_referring writes tags and text"
            )
            assert deal.updated_at == tagged.updated_at, _c(
                "erase_referring keeps a later updated_at"
            )
            assert unit.deals.count(deals_where(has_tag("vip"))) == 0, _c(
                "erased tags are no longer found by a rule"
            )
        with fresh.unit_of_work() as unit:
            assert unit.activities.get(made[Activity].id) == made[Activity], _c(
                "erase_referring without commit is rolled back"
            )

    def test_an_export_misses_no_repository(self, fresh: Store) -> None:
        ada, made = _person(fresh, "ada@example.org")
        _person(fresh, "bo@example.org")
        bundle = CRM(fresh, clock=_CLOCK).export_person(ada.id, by="kit")
        for entity in made:
            name = REPOSITORIES[entity]
            assert bundle.manifest.counts.get(name) == 1, _c(
                f"an export holds the person's {name} (found through referring)"
            )
        assert bundle.manifest.counts.get("contacts") == 1, _c("an export holds the contact")

    def test_the_outbox_holds_no_personal_data(self, fresh: Store) -> None:
        """Why export and erasure need not visit the outbox: its events carry ids, keys
        and times, never a person's values (a change names its fields only)."""
        crm = CRM(fresh, clock=_CLOCK)
        touch = Touchpoint(
            email="ada.lovelace@example.org",
            first_name="Augusta",
            phone="+442071234567",
            source="analytical-engine",
            channel=LeadChannel.FORM,
        )
        ada = crm.capture_lead(touch).contact
        crm.update_contact(ada.id, last_name="Byron-King")
        crm.export_person(ada.id, by="kit")
        with fresh.unit_of_work() as unit:
            recorded = unit.outbox.read(limit=1000)
        assert recorded, _c("the CRM's use cases record events in the outbox")
        text = json.dumps([event_to_json(r.event) for r in recorded]).casefold()
        for value in ("lovelace", "augusta", "2071234567", "analytical-engine", "byron"):
            assert value not in text, _c(
                f"events carry no personal data, yet {value!r} is in the outbox (export "
                "and erasure do not visit it)"
            )

    def test_an_export_and_an_erasure_cover_the_person_s_merges(self, fresh: Store) -> None:
        crm = CRM(fresh, clock=_CLOCK, privacy_secret=b"kit-secret-0123456789")
        ada = crm.create_contact(Contact.new(email="ada@example.org", clock=_CLOCK))
        twin = crm.create_contact(
            Contact.new(email="lovelace@example.org", last_name="Lovelace", clock=_CLOCK)
        )
        crm.merge_contacts(ada.id, [twin.id])
        bundle = crm.export_person(ada.id, by="kit")
        assert bundle.manifest.counts.get("merges") == 1, _c(
            "an export holds the merges of the person's contacts (merges.involving)"
        )
        assert "Lovelace" in bundle.to_json(), _c("an export holds a merged contact's data")
        crm.erase_person(ada.id, by="kit", reason="kit")
        after = crm.export_person(ada.id, by="kit")
        assert after.manifest.counts.get("merges") == 1, _c("an erasure keeps the merge record")
        assert "Lovelace" not in after.to_json(), _c(
            "an erasure anonymises the merge record's images (merges.anonymise)"
        )
        with fresh.unit_of_work() as unit:
            found = unit.merges.with_email(EmailAddress("lovelace@example.org"))
        assert found == [], _c("an erasure leaves no merged address of the person")

    def test_the_audit_trail_of_subjects(self, fresh: Store) -> None:
        one, two = uuid4(), uuid4()
        entries = [
            AuditEntry.new(
                subject=subject,
                subject_id=id,
                action=AuditAction.CHANGED,
                at=_T0 + timedelta(minutes=minute),
                field="first_name",
                clock=_CLOCK,
            )
            for minute, (subject, id) in enumerate(
                [(SubjectKind.CONTACT, one), (SubjectKind.DEAL, one), (SubjectKind.CONTACT, two)]
            )
        ]
        with fresh.unit_of_work() as unit:
            unit.audit.add_many(reversed(entries))
            unit.commit()
        with fresh.unit_of_work() as unit:
            assert unit.audit.for_subject(SubjectKind.CONTACT, one) == [entries[0]], _c(
                "audit.for_subject gives the entries of one kind of subject and id"
            )
            both = unit.audit.for_subjects(SubjectKind.CONTACT, [two, one])
            assert both == [entries[0], entries[2]], _c(
                "audit.for_subjects gives the entries oldest first, of that kind only"
            )
