"""Export, erasure, suppression, retention and the audit trail, on every store."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmkit.clock import FixedClock
from crmkit.crm import CRM
from crmkit.errors import Erased, NotFound, Suppressed, ValidationError
from crmkit.lifecycle import Touchpoint
from crmkit.models import (
    Account,
    Activity,
    ActivityKind,
    AuditAction,
    AuditEntry,
    Consent,
    ConsentChannel,
    ConsentStatus,
    Contact,
    Deal,
    EmailAddress,
    LeadChannel,
    Money,
    Segment,
    SubjectKind,
    Task,
    Ticket,
    TicketChannel,
)
from crmkit.privacy import (
    ERASED_TEXT,
    KEPT_FIELDS,
    PERSONAL_FIELDS,
    RetentionAction,
    RetentionPolicy,
    bundle_of,
    identifier_digest,
)
from crmkit.storage import REFERRERS, REPOSITORIES, MemoryStore, Store
from tests.storage_support import STORES, stepping_store
from tests.test_crm import crm_of

SECRET = b"host-secret-0123456789"
T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from stepping_store(request.param, tmp_path, T0, "privacy")


def crm_on(store: Store, **options: object) -> CRM:
    return crm_of(store, privacy_secret=SECRET, **options)


@attrs.frozen
class Person:
    contact: Contact
    deal: Deal
    ticket: Ticket
    texts: tuple[str, ...]


def fill_person(crm: CRM, email: str, first: str, last: str, phone: str) -> Person:
    """A person with a lead, a deal, a ticket and its reply, a note, a task, a consent,
    a segment membership and a change in the audit trail; ``texts`` are the personal
    values that must never survive an erasure."""
    captured = crm.capture_lead(
        Touchpoint(
            email=email,
            first_name=first,
            last_name=last,
            phone=phone,
            source="webinar",
            channel=LeadChannel.FORM,
            custom={"nickname": f"{first}y"},
        )
    )
    contact = captured.contact
    note = f"{first} {last} said her daughter is ill"
    crm.record_activity(
        Activity.new(
            contact_id=contact.id,
            kind=ActivityKind.NOTE,
            subject=f"Call with {first}",
            body=note,
            clock=crm.clock,
        )
    )
    crm.create_task(
        Task.new(
            title=f"Call {first} back",
            due_at=T0 + timedelta(days=2),
            contact_id=contact.id,
            notes=f"{last} prefers mornings",
            assignee="sam",
            clock=crm.clock,
        )
    )
    ticket = crm.open_ticket(
        contact.id,
        subject=f"{first} cannot log in",
        channel=TicketChannel.EMAIL,
        description=f"Dear support, this is {first} {last}",
    )
    deal = crm.convert_lead(
        captured.lead.id, title=f"{last} family plan", pipeline="sales", by="sam"
    ).deal
    crm.update_deal(deal.id, amount=Money("1200", "EUR"), by="sam")
    crm.update_contact(contact.id, last_name=f"{last}-Smith", by="sam")
    with crm.store.unit_of_work() as unit:
        unit.consents.add(
            Consent.new(
                contact_id=contact.id,
                channel=ConsentChannel.EMAIL,
                purpose="newsletter",
                status=ConsentStatus.GRANTED,
                source="signup-form",
                clock=crm.clock,
            )
        )
        unit.segments.add(Segment.new(name="VIP", members=[contact.id], clock=crm.clock))
        unit.commit()
    texts = (email, first, last, f"{last}-Smith", phone, note, f"{first}y")
    return Person(crm.find_contact(email) or contact, deal, ticket, texts)


@pytest.fixture
def crm(store: Store) -> CRM:
    return crm_on(store)


def contains_any(text: str, values: tuple[str, ...]) -> list[str]:
    return [v for v in values if v.casefold() in text.casefold()]


# ---------------------------------------------------------------------------- export


def test_an_export_holds_every_repository_that_refers_to_the_person(crm: CRM) -> None:
    ada = fill_person(crm, "ada@example.com", "Adelheid", "Lovelace", "+4930901820")
    fill_person(crm, "bo@example.com", "Bodil", "Berg", "+4930901821")

    bundle = crm.export_person(ada.contact.id, by="dpo")

    counts = bundle.manifest.counts
    for entity, _ in REFERRERS["contact"]:  # every repository that refers to contacts
        assert REPOSITORIES[entity] in counts
    assert counts["contacts"] == 1
    assert counts["leads"] == 1
    assert counts["deals"] == 1
    assert counts["tickets"] == 1
    assert counts["tasks"] >= 1
    assert counts["consents"] == 1
    assert counts["segments"] == 1
    assert counts["stage_history"] >= 3  # contact, lead, deal, ticket moves
    assert counts["audit"] >= 2  # created, changed last_name, ...
    assert counts["activities"] == 2  # the form and the note
    assert bundle.verify()
    assert bundle.manifest.tenant == crm.store.tenant
    assert bundle.manifest.exported_at > T0
    document = json.loads(bundle.to_json())
    assert document["manifest"]["counts"] == dict(counts)
    assert document["data"]["contacts"][0]["email"] == "ada@example.com"
    assert "bo@example.com" not in bundle.to_json()  # nobody else's data
    files = bundle.to_csv()
    assert set(files) == {"manifest.json"} | {f"{name}.csv" for name in counts}
    assert "Lovelace-Smith" in files["contacts.csv"]
    assert files["activities.csv"].count("\n") == counts["activities"] + 1
    # The export is logged in the person's audit trail, with who exported.
    trail = crm.audit_trail(SubjectKind.CONTACT, ada.contact.id)
    assert [(e.action, e.by) for e in trail if e.action is AuditAction.EXPORTED] == [
        (AuditAction.EXPORTED, "dpo")
    ]


def test_an_export_read_as_documents_is_the_bundle_of_the_entities(crm: CRM) -> None:
    ada = fill_person(crm, "ada@example.com", "Adelheid", "Lovelace", "+4930901820")
    fill_person(crm, "bo@example.com", "Bodil", "Berg", "+4930901821")
    crm.record_activity(
        Activity.new(
            contact_id=ada.contact.id,
            deal_id=ada.deal.id,
            kind=ActivityKind.PURCHASE,
            amount=Money("0.0000001", "EUR"),
            properties={"sku": "A-1", "qty": 2, "gift": True, "rate": 0.5, "note": "ä"},
        )
    )
    crm.create_task(  # on Ada's deal, naming no contact: found through the deal
        Task.new(title="Send the contract", due_at=T0 + timedelta(days=3), deal_id=ada.deal.id)
    )
    exported = crm.export_person(ada.contact.id, by="dpo")
    with crm.store.unit_of_work() as unit:
        entities: dict[str, list[object]] = {}
        for entity, field in REFERRERS["contact"]:
            repository = getattr(unit, REPOSITORIES[entity])
            entities[REPOSITORIES[entity]] = repository.referring(field, ada.contact.id)
        entities["tasks"] += unit.tasks.referring("deal_id", ada.deal.id)
    expected = bundle_of(
        tenant=exported.manifest.tenant,
        contact_id=ada.contact.id,
        records=entities,  # type: ignore[arg-type]
        segments=(),
        at=exported.manifest.exported_at,
    )
    for name, docs in expected.sections.items():
        if name in entities:
            assert exported.sections[name] == docs, name
            assert exported.manifest.checksums[name] == expected.manifest.checksums[name]
            assert json.dumps(exported.sections[name]) == json.dumps(docs), name
    crm.erase_person(ada.contact.id, by="dpo", reason="asked")
    with crm.store.unit_of_work() as unit:
        (task,) = unit.tasks.referring("deal_id", ada.deal.id)
    assert task.title == ERASED_TEXT  # what the deal refers to is erased one by one


def test_a_tampered_bundle_fails_its_manifest(crm: CRM) -> None:
    ada = fill_person(crm, "ada@example.com", "Adelheid", "Lovelace", "+4930901820")
    bundle = crm.export_person(ada.contact.id, by="dpo")
    sections = dict(bundle.sections)
    sections["contacts"] = ({**sections["contacts"][0], "email": "eve@example.com"},)
    assert not attrs.evolve(bundle, sections=sections).verify()


def test_exporting_from_another_tenant_finds_nothing(crm: CRM) -> None:
    ada = fill_person(crm, "ada@example.com", "Adelheid", "Lovelace", "+4930901820")
    other = CRM(crm.store.for_tenant("elsewhere"), privacy_secret=SECRET)
    with pytest.raises(NotFound):
        other.export_person(ada.contact.id, by="dpo")
    with pytest.raises(NotFound):
        other.erase_person(ada.contact.id, by="dpo", reason="asked")
    assert crm.audit_trail(SubjectKind.CONTACT, ada.contact.id)[-1].action is not (
        AuditAction.EXPORTED
    )


# ---------------------------------------------------------------------------- erasure


def test_erasure_anonymises_everywhere_keeps_amounts_and_suppresses(crm: CRM) -> None:
    ada = fill_person(crm, "ada@example.com", "Adelheid", "Lovelace", "+4930901820")
    bo = fill_person(crm, "bo@example.com", "Bodil", "Berg", "+4930901821")
    bo_before = crm.export_person(bo.contact.id, by="dpo")

    record = crm.erase_person(ada.contact.id, by="dpo", reason="art. 17 request of 2 March")

    assert (record.id, record.by, record.records > 5) == (ada.contact.id, "dpo", True)
    after = crm.export_person(ada.contact.id, by="dpo")
    text = after.to_json()
    assert contains_any(text, ada.texts) == []
    assert "".join(after.to_csv().values()).count("Lovelace") == 0
    with crm.store.unit_of_work() as unit:
        contact = unit.contacts.get(ada.contact.id)  # the tombstone keeps its id
        deal = unit.deals.get(ada.deal.id)
        ticket = unit.tickets.get(ada.ticket.id)
    assert contact.do_not_contact
    assert contact.email is None
    assert deal.amount == Money("1200", "EUR")
    assert deal.contact_id == ada.contact.id
    assert (deal.title, ticket.subject) == (ERASED_TEXT, ERASED_TEXT)
    # Employees stay named in the history.
    history = crm.history(SubjectKind.DEAL, ada.deal.id)
    assert {c.by for c in history} == {"sam"}
    # The audit trail keeps who changed what, without the personal values.
    trail = crm.audit_trail(SubjectKind.CONTACT, ada.contact.id)
    changed = [e for e in trail if e.field == "last_name"]
    assert changed
    assert all(e.before is None and e.after is None for e in changed)
    assert trail[-2].action is AuditAction.ERASED
    assert trail[-2].by == "dpo"
    deal_trail = crm.audit_trail(SubjectKind.DEAL, ada.deal.id)
    assert any(e.field == "amount" and e.after is not None for e in deal_trail)
    # Nobody else changed (their export differs in its time and audit log only).
    bo_after = crm.export_person(bo.contact.id, by="dpo")
    for name, docs in bo_before.sections.items():
        if name != "audit":
            assert bo_after.sections[name] == docs, name
    assert crm.erasures() == [record]


def test_an_erased_person_cannot_come_back_until_they_opt_in(crm: CRM) -> None:
    ada = fill_person(crm, "ada@example.com", "Adelheid", "Lovelace", "+4930901820")
    crm.erase_person(ada.contact.id, by="dpo", reason="asked")
    touch = Touchpoint(email="ADA@example.com", source="webinar", channel=LeadChannel.FORM)
    with pytest.raises(Suppressed) as refused:
        crm.capture_lead(touch)
    assert refused.value.field == "email"
    assert "asked to be forgotten" in str(refused.value)
    by_phone = Touchpoint(phone="+49 30 901820", source="fair", channel=LeadChannel.EVENT)
    with pytest.raises(Suppressed, match="phone"):
        crm.capture_lead(by_phone)
    with pytest.raises(Suppressed):
        crm.create_contact(Contact.new(email="ada@example.com", clock=crm.clock))
    fresh = Contact.new(email="new@example.com", clock=crm.clock)
    with pytest.raises(Suppressed):
        crm.import_contacts([fresh, Contact.new(phone="+4930901820", clock=crm.clock)])
    bo = crm.create_contact(Contact.new(email="bo@example.com", clock=crm.clock))
    with pytest.raises(Suppressed):
        crm.update_contact(bo.id, email="ada@example.com")
    assert crm.find_contact("new@example.com") is None  # the import stored nothing
    assert crm.is_suppressed(email="Ada@Example.com")
    assert crm.lift_suppression(email="ada@example.com", phone="+4930901820") == 2
    assert not crm.is_suppressed(email="ada@example.com")
    assert crm.capture_lead(touch).contact_created


def test_erasing_twice_or_without_secret_or_approval_changes_nothing(store: Store) -> None:
    crm = crm_on(store, four_eyes={"erasure", "export"})
    ada = fill_person(crm, "ada@example.com", "Adelheid", "Lovelace", "+4930901820")
    with pytest.raises(ValidationError) as missing:
        crm.erase_person(ada.contact.id, by="dpo", reason="asked")
    assert missing.value.field == "approved_by"
    with pytest.raises(ValidationError, match="second person"):
        crm.erase_person(ada.contact.id, by="dpo", reason="asked", approved_by="DPO")
    with pytest.raises(ValidationError, match="approved_by"):
        crm.export_person(ada.contact.id, by="dpo")
    with pytest.raises(ValidationError) as no_secret:
        CRM(store).erase_person(ada.contact.id, by="dpo", reason="asked")
    assert no_secret.value.field == "privacy_secret"
    with pytest.raises(ValidationError) as no_reason:
        crm.erase_person(ada.contact.id, by="dpo", reason=" ", approved_by="legal")
    assert no_reason.value.field == "reason"
    assert crm.find_contact("ada@example.com") is not None  # nothing changed so far
    crm.erase_person(ada.contact.id, by="dpo", reason="asked", approved_by="legal")
    before = crm.export_person(ada.contact.id, by="dpo", approved_by="legal")
    with pytest.raises(Erased) as twice:
        crm.erase_person(ada.contact.id, by="dpo", reason="again", approved_by="legal")
    assert twice.value.id == ada.contact.id
    again = crm.export_person(ada.contact.id, by="dpo", approved_by="legal")
    assert {k: v for k, v in again.sections.items() if k != "audit"} == {
        k: v for k, v in before.sections.items() if k != "audit"
    }


# ---------------------------------------------------------------------------- merges


def test_merge_records_are_exported_and_erased_and_cannot_be_undone(crm: CRM) -> None:
    ada = fill_person(crm, "ada@example.com", "Adelheid", "Lovelace", "+4930901820")
    twin = fill_person(crm, "a.lovelace@example.org", "Addie", "Byron", "+4930901822")
    older = crm.create_contact(Contact.new(email="ada.l@example.net", first_name="Ady"))
    # Two merges in a chain: older into twin, then twin into ada.
    first = crm.merge_contacts(twin.contact.id, [older.id], by="sam").merge_id
    second = crm.merge_contacts(ada.contact.id, [twin.contact.id], by="sam").merge_id
    bo = fill_person(crm, "bo@example.com", "Bodil", "Berg", "+4930901821")
    bo_before = stored_about(crm, bo.contact.id)

    bundle = crm.export_person(ada.contact.id, by="dpo")
    merges = bundle.sections["merges"]
    assert [m["id"] for m in merges] == [str(first), str(second)]
    text = bundle.to_json()
    for value in (*twin.texts, "ada.l@example.net", "Ady"):
        assert value in text, value  # the merged contacts' data is the person's data
    assert bundle.verify()

    crm.erase_person(ada.contact.id, by="dpo", reason="asked")

    after = crm.export_person(ada.contact.id, by="dpo")
    assert [m["id"] for m in after.sections["merges"]] == [str(first), str(second)]
    personal = (*ada.texts, *twin.texts, "ada.l@example.net", "Ady")
    assert contains_any(after.to_json(), personal) == []
    with crm.store.unit_of_work() as unit:
        stored = [unit.merges.get(first), unit.merges.get(second)]
        assert unit.merges.with_email(EmailAddress("a.lovelace@example.org")) == []
    assert all(record.merged_emails == () for record in stored)
    for record in stored:
        assert contains_any(repr(record), personal) == []
    # A merged address finds no one: the erased person is suppressed by its own
    # addresses only, the merged ones are forgotten with the merge's images.
    assert crm.find_contact("a.lovelace@example.org") is None
    for merge_id in (second, first):
        with pytest.raises(Erased) as refused:
            crm.unmerge(merge_id)
        assert refused.value.id == ada.contact.id
    assert stored_about(crm, bo.contact.id) == bo_before


def test_an_account_merge_erases_only_the_person_s_rows(crm: CRM) -> None:
    ada = fill_person(crm, "ada@example.com", "Adelheid", "Lovelace", "+4930901820")
    bo = fill_person(crm, "bo@example.com", "Bodil", "Berg", "+4930901821")
    acme = crm.create_account(Account.new(name="Acme"))
    old = crm.create_account(Account.new(name="Acme GmbH"))
    for person in (ada, bo):
        crm.update_contact(person.contact.id, account_id=old.id, by="sam")
    merge_id = crm.merge_accounts(acme.id, [old.id], by="sam").merge_id

    exported = crm.export_person(ada.contact.id, by="dpo")
    (document,) = exported.sections["merges"]
    assert document["id"] == str(merge_id)
    rows = [image["row"] for image in (*document["before"], *document["after"])]
    assert rows
    # Bodil's contact and the accounts are not Ada's data.
    assert all(row.get("contact_id", row["id"]) == str(ada.contact.id) for row in rows)
    assert "bo@example.com" not in exported.to_json()
    bo_before = stored_about(crm, bo.contact.id)

    crm.erase_person(ada.contact.id, by="dpo", reason="asked")

    with crm.store.unit_of_work() as unit:
        record = unit.merges.get(merge_id)
    assert contains_any(repr(record), ada.texts) == []
    assert "bo@example.com" in repr(record)  # Bodil's images are as they were
    assert stored_about(crm, bo.contact.id) == bo_before
    with pytest.raises(Erased):
        crm.unmerge(merge_id)


def test_every_field_is_either_personal_or_kept() -> None:
    # A field added to an entity must be classified before erasure can be trusted.
    for entity, overwritten in PERSONAL_FIELDS.items():
        fields = {a.name for a in attrs.fields(entity)} - {
            "id",
            "version",
            "created_at",
            "updated_at",
        }
        kept = KEPT_FIELDS[entity]
        personal = set(overwritten)
        if entity is AuditEntry:  # its values are cleared when its field is personal
            personal = {"before", "after"}
        assert fields == personal | kept, entity.entity_name
        assert not personal & kept, entity.entity_name
    for entity, _ in REFERRERS["contact"]:
        assert entity in PERSONAL_FIELDS


def test_digests_are_keyed_and_normalised() -> None:
    one = identifier_digest(SECRET, "email", "Ada@Example.COM")
    assert one == identifier_digest(SECRET, "email", "ada@example.com")
    assert one != identifier_digest(b"another-secret-0123", "email", "ada@example.com")
    assert one != identifier_digest(SECRET, "phone", "+4930901820")
    with pytest.raises(ValidationError) as short:
        identifier_digest(b"short", "email", "ada@example.com")
    assert short.value.field == "privacy_secret"


# ---------------------------------------------------------------------------- retention


def test_retention_dry_run_lists_and_apply_anonymises(store: Store, tmp_path: Path) -> None:
    old = CRM(store, privacy_secret=SECRET, clock=FixedClock(T0 - timedelta(days=800)))
    ada = old.create_contact(
        Contact.new(email="ada@example.com", first_name="Ada", clock=old.clock)
    )
    lead = old.capture_lead(
        Touchpoint(email="cy@example.com", source="fair", channel=LeadChannel.EVENT)
    ).lead
    ticket = old.open_ticket(ada.id, subject="Printer on fire", channel=TicketChannel.PHONE)
    old.solve_ticket(ticket.id, by="sam")
    old.close_ticket(ticket.id, by="sam")
    recent = crm_on(store).create_contact(Contact.new(email="bo@example.com", clock=store.clock))
    crm = crm_on(store)
    policy = RetentionPolicy(
        contacts_inactive_months=24, leads_unconverted_days=365, tickets_closed_years=2
    )

    plan = crm.apply_retention(policy, by="retention-job")

    assert not plan.applied
    # cy's capture was an activity too, but 800 days ago: both are inactive.
    assert set(plan.contacts) == {ada.id, lead.contact_id}
    assert recent.id not in plan.contacts
    assert plan.leads == (lead.id,)
    assert plan.tickets == (ticket.id,)
    assert crm.find_contact("ada@example.com") is not None  # a dry run changes nothing

    done = crm.apply_retention(policy, by="retention-job", dry_run=False)
    assert done.applied
    assert done.contacts == plan.contacts
    assert crm.find_contact("ada@example.com") is None
    assert crm.find_contact("bo@example.com") is not None
    with store.unit_of_work() as unit:
        assert unit.tickets.get(ticket.id).subject == ERASED_TEXT
        assert unit.erasures.get(ada.id).reason == "retention policy"
    assert not crm.is_suppressed(email="ada@example.com")  # not asked to be forgotten
    assert crm.apply_retention(policy, by="retention-job").contacts == ()


def test_retention_can_delete(store: Store) -> None:
    old = CRM(store, clock=FixedClock(T0 - timedelta(days=800)))
    captured = old.capture_lead(
        Touchpoint(email="cy@example.com", source="fair", channel=LeadChannel.EVENT)
    )
    crm = crm_on(store)
    policy = RetentionPolicy(contacts_inactive_months=12, action=RetentionAction.DELETE)
    done = crm.apply_retention(policy, by="job", dry_run=False)
    assert done.contacts == (captured.contact.id,)
    with store.unit_of_work() as unit:
        assert unit.contacts.count() == 0
        assert unit.leads.count() == 0
        assert unit.activities.count() == 0


def stored_text(store: Store) -> str:
    """Everything every repository of ``store`` holds, as text."""
    with store.unit_of_work() as unit:
        return repr([list(getattr(unit, name).iterate()) for name in REPOSITORIES.values()])


def test_a_deleted_person_leaves_no_audit_trail_or_merge_record(store: Store) -> None:
    """Retention's delete (and ``delete_contact``) takes the person's audit trail and
    merge records with them: their field changes and before-images hold personal
    values; an account merge keeps everyone else's rows."""
    crm = crm_on(store)
    ada = fill_person(crm, "ada@example.com", "Adelheid", "Lovelace", "+4930901820")
    twin = fill_person(crm, "a.lovelace@example.org", "Addie", "Byron", "+4930901822")
    bo = fill_person(crm, "bo@example.com", "Bodil", "Berg", "+4930901821")
    acme = crm.create_account(Account.new(name="Acme"))
    old = crm.create_account(Account.new(name="Acme GmbH"))
    for person in (ada, bo):
        crm.update_contact(person.contact.id, account_id=old.id, by="sam")
    accounts = crm.merge_accounts(acme.id, [old.id], by="sam").merge_id
    contacts = crm.merge_contacts(ada.contact.id, [twin.contact.id], by="sam").merge_id
    bo_before = stored_about(crm, bo.contact.id)
    personal = (*ada.texts, *twin.texts)
    assert contains_any(stored_text(store), personal)

    crm.delete_contact(ada.contact.id, cascade=True)

    assert contains_any(stored_text(store), personal) == []
    with store.unit_of_work() as unit:
        assert unit.audit.for_subject(SubjectKind.CONTACT, ada.contact.id) == []
        assert unit.audit.for_subject(SubjectKind.DEAL, ada.deal.id) == []
        # the account merge stays, with Ada's rows anonymised
        assert [r.id for r in unit.merges.involving(ada.contact.id)] == [accounts]
        with pytest.raises(NotFound):
            unit.merges.get(contacts)
        assert unit.merges.with_email(EmailAddress("a.lovelace@example.org")) == []
        kept = unit.merges.get(accounts)
    assert contains_any(repr(kept), personal) == []
    assert "bo@example.com" in repr(kept)  # Bodil's images are as they were
    assert stored_about(crm, bo.contact.id) == bo_before


def test_retention_s_delete_leaves_no_audit_trail_or_merge_record(store: Store) -> None:
    old = crm_on(store, clock=FixedClock(T0 - timedelta(days=800)))
    ada = old.capture_lead(
        Touchpoint(
            email="ada@example.com", first_name="Adelheid", source="fair", channel=LeadChannel.EVENT
        )
    ).contact
    twin = old.create_contact(Contact.new(email="ada.l@example.net", first_name="Ady"))
    old.update_contact(ada.id, last_name="Lovelace", by="sam")
    old.merge_contacts(ada.id, [twin.id], by="sam")
    crm = crm_on(store)
    policy = RetentionPolicy(contacts_inactive_months=12, action=RetentionAction.DELETE)
    assert crm.apply_retention(policy, by="job", dry_run=False).contacts == (ada.id,)
    personal = ("ada@example.com", "Adelheid", "Lovelace", "ada.l@example.net", "Ady")
    assert contains_any(stored_text(store), personal) == []
    with store.unit_of_work() as unit:
        assert unit.audit.for_subject(SubjectKind.CONTACT, ada.id) == []
        assert unit.merges.involving(ada.id) == []


def test_retention_policies_are_checked() -> None:
    with pytest.raises(ValidationError) as months:
        RetentionPolicy(contacts_inactive_months=0)
    assert months.value.field == "contacts_inactive_months"
    with pytest.raises(ValidationError):
        RetentionPolicy(tickets_closed_years=True)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        RetentionPolicy(action="shred")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- audit


def test_the_audit_trail_records_changes_in_the_same_unit(crm: CRM) -> None:
    ada = crm.create_contact(
        Contact.new(email="ada@example.com", first_name="Ada", clock=crm.clock)
    )
    crm.update_contact(ada.id, first_name="Ada L.", country="GB", by="sam")
    trail = crm.audit_trail(SubjectKind.CONTACT, ada.id)
    lines = [(e.action, e.field, e.before, e.after, e.by) for e in trail]
    assert lines[0] == (AuditAction.CREATED, None, None, None, None)
    assert set(lines[1:]) == {  # one change: one time, one entry per field
        (AuditAction.CHANGED, "first_name", '"Ada"', '"Ada L."', "sam"),
        (AuditAction.CHANGED, "country", None, '"GB"', "sam"),
    }
    assert trail[1].at == trail[2].at > trail[0].at
    with pytest.raises(ValidationError):  # a refused change leaves no trail
        crm.update_contact(ada.id, country="XX", by="sam")
    assert len(crm.audit_trail(SubjectKind.CONTACT, ada.id)) == 3
    assert crm.audit_trail(SubjectKind.CONTACT, uuid4()) == []


# ---------------------------------------------------------------------------- property


@st.composite
def people(draw: st.DrawFn) -> list[tuple[str, str, str, int, int, int]]:
    """2 to 4 people: e-mail, first and last name, how many notes and tickets, and how
    many duplicate contacts of theirs were merged into them (0 to 2, in a chain)."""
    count = draw(st.integers(2, 4))
    words = st.text(alphabet="abcdefghijklmnopqrstuvwxyzäöüß", min_size=1, max_size=8)
    return [
        (
            f"person{n}.{draw(words)}@example.com",
            f"Firstx{n}{draw(words)}",
            f"Lastx{n}{draw(words)}",
            draw(st.integers(0, 3)),
            draw(st.integers(0, 2)),
            draw(st.integers(0, 2)),
        )
        for n in range(count)
    ]


def stored_about(crm: CRM, contact_id: UUID) -> dict[str, object]:
    """A person's records as the store holds them (without the export's audit log)."""
    bundle = crm.export_person(contact_id, by="check")
    return {name: docs for name, docs in bundle.sections.items() if name != "audit"}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(people(), st.data())
def test_export_erase_export_leaves_nothing_personal_and_nobody_else_changed(
    crowd: list[tuple[str, str, str, int, int, int]], data: st.DataObject
) -> None:
    crm = CRM(MemoryStore(clock=FixedClock(T0, step=timedelta(seconds=1))), privacy_secret=SECRET)
    ids, personal = [], []
    for email, first, last, notes, tickets, twins in crowd:
        touch = Touchpoint(
            email=email, first_name=first, last_name=last, source="web", channel=LeadChannel.FORM
        )
        contact = crm.capture_lead(touch).contact
        texts = [email, first, last]
        twin_ids = []
        for n in range(twins):  # duplicates, merged in a chain: 1 into 0, 0 into contact
            twin_touch = Touchpoint(
                email=f"twin{n}.{email}",
                first_name=f"Twinx{n}{first}",
                source="fair",
                channel=LeadChannel.EVENT,
            )
            twin = crm.capture_lead(twin_touch).contact
            crm.record_activity(
                Activity.new(contact_id=twin.id, kind=ActivityKind.NOTE, body=f"Twinx{n} note")
            )
            twin_ids.append(twin.id)
            texts += [f"twin{n}.{email}", f"Twinx{n}{first}", f"Twinx{n} note"]
        for into, merged in reversed(list(zip([contact.id, *twin_ids], twin_ids, strict=False))):
            crm.merge_contacts(into, [merged], by="sam")
        for n in range(notes):
            body = f"{first} note {n}"
            crm.record_activity(
                Activity.new(contact_id=contact.id, kind=ActivityKind.NOTE, body=body)
            )
        for n in range(tickets):
            crm.open_ticket(contact.id, subject=f"{last} ticket {n}", channel=TicketChannel.CHAT)
        crm.update_contact(contact.id, first_name=f"{first}y", by="sam")
        ids.append(contact.id)
        personal.append([*texts, f"{first}y"])
    target = data.draw(st.sampled_from(range(len(ids))))
    others = {i: stored_about(crm, i) for n, i in enumerate(ids) if n != target}

    first_export = crm.export_person(ids[target], by="dpo")
    assert contains_any(first_export.to_json(), tuple(personal[target])) == personal[target]
    crm.erase_person(ids[target], by="dpo", reason="asked")
    second = crm.export_person(ids[target], by="dpo")

    leaves = set(second.texts())
    assert not leaves & set(personal[target])
    assert contains_any(second.to_json(), tuple(personal[target])) == []
    assert {i: stored_about(crm, i) for i in others} == others


def test_csv_files_neutralise_spreadsheet_formulas(store: Store) -> None:
    # Host trial: a name starting with "=" ran as a formula when the DPO opened the CSV.
    crm = crm_on(store)
    evil = '=HYPERLINK("http://evil.example","x")'
    contact = crm.create_contact(
        Contact.new(email="zoe@example.org", first_name=evil, last_name="-1+1", clock=crm.clock)
    )
    bundle = crm.export_person(contact.id, by="dpo")
    safe = bundle.to_csv()["contacts.csv"]
    assert "'=HYPERLINK" in safe
    assert "'-1+1" in safe
    assert ",=HYPERLINK" not in safe
    raw = bundle.to_csv(spreadsheet_safe=False)["contacts.csv"]
    assert '"=HYPERLINK(""http://evil.example"",""x"")"' in raw
    assert json.loads(bundle.to_json())["data"]["contacts"][0]["first_name"] == evil
