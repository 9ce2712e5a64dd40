"""Issue 11 on every store: closed deals and leads are records, updates keep the stage's
requirements, and the service creates, updates and deletes contacts and accounts, updates
leads, rescores many leads, attaches repeat touches and captures phone-only touches."""

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from crmkit.crm import CRM
from crmkit.errors import (
    ClosedRecord,
    ConcurrencyConflict,
    NotFound,
    StillReferenced,
    TransitionNotAllowed,
    ValidationError,
)
from crmkit.lifecycle import Pipeline, Stage, StageKind, StageRequirements, Touchpoint
from crmkit.models import (
    Account,
    Activity,
    ActivityKind,
    Contact,
    DealStatus,
    LeadChannel,
    LeadStatus,
    LifecycleStage,
    Money,
    Segment,
    SubjectKind,
    Task,
    TicketChannel,
)
from crmkit.scoring import Criterion, ScoringModel
from crmkit.segmentation import contacts_where, field
from crmkit.storage import Store
from tests.storage_support import STORES, stepping_store

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

SALES = Pipeline(
    key="sales",
    label="Sales",
    subject=SubjectKind.DEAL,
    stages=(
        Stage(key="discovery", label="Discovery", probability=Decimal("0.2")),
        Stage(
            key="proposal",
            label="Proposal",
            probability=Decimal("0.5"),
            requires=StageRequirements(
                required_fields={"amount", "custom.po_number"},
                minimum_amount=Money("1000", "EUR"),
            ),
        ),
        Stage(
            key="won",
            label="Won",
            probability=Decimal(1),
            kind=StageKind.WON,
            requires=StageRequirements(approval=True),
        ),
        Stage(key="lost", label="Lost", kind=StageKind.LOST),
    ),
    reopen=True,
)
INBOUND = Pipeline(
    key="inbound",
    label="Inbound",
    subject=SubjectKind.LEAD,
    stages=(
        Stage(key="new", label="New"),
        Stage(key="contacted", label="Contacted", probability=Decimal("0.3")),
        Stage(key="qualified", label="Qualified", probability=Decimal(1), kind=StageKind.WON),
        Stage(key="junk", label="Junk", kind=StageKind.LOST),
    ),
    reopen=True,
)


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from stepping_store(request.param, tmp_path, NOW, "rec")


def crm_of(store: Store, **options: object) -> CRM:
    return CRM(store, pipelines=[SALES, INBOUND], **options)  # type: ignore[arg-type]


def touch(email: str | None = None, **more: object) -> Touchpoint:
    return Touchpoint(email=email, source="form", channel=LeadChannel.FORM, **more)  # type: ignore[arg-type]


def counts(store: Store) -> dict[str, int]:
    with store.unit_of_work() as unit:
        return {
            name: getattr(unit, name).count()
            for name in (
                "contacts",
                "accounts",
                "leads",
                "deals",
                "tickets",
                "activities",
                "tasks",
                "stage_history",
            )
        }


def won_deal(crm: CRM, email: str = "ada@example.com") -> tuple[UUID, UUID]:
    captured = crm.capture_lead(touch(email))
    deal = crm.convert_lead(
        captured.lead.id, pipeline="sales", title="Ada", amount=Money("50000", "EUR")
    ).deal
    crm.update_deal(deal.id, custom={"po_number": "PO-7"})
    crm.move_deal(deal.id, "proposal", by="ana")
    crm.win_deal(deal.id, by="ana", approved_by="ben")
    return deal.id, captured.contact.id


# ---------------------------------------------------------------------------- records


def test_a_won_deal_cannot_be_edited_from_50000_to_1_eur(store: Store) -> None:
    crm = crm_of(store)
    deal_id, _ = won_deal(crm)
    with store.unit_of_work() as unit:
        before = unit.deals.get(deal_id)
    with pytest.raises(ClosedRecord) as refused:
        crm.update_deal(deal_id, amount=Money("1.00", "EUR"))
    assert isinstance(refused.value, TransitionNotAllowed)
    assert (refused.value.codes, refused.value.state, refused.value.id) == (
        ("closed",),
        "won",
        deal_id,
    )
    assert "reopen_deal" in str(refused.value)
    for change in ({"title": "cheaper"}, {"owner": "eve"}, {"custom": {"po_number": None}}):
        with pytest.raises(ClosedRecord):
            crm.update_deal(deal_id, **change)  # type: ignore[arg-type]
    with pytest.raises(ClosedRecord):  # moves are refused too: only a reopen leaves
        crm.move_deal(deal_id, "discovery", by="ana")
    with pytest.raises(ClosedRecord):
        crm.lose_deal(deal_id, by="ana", reason="changed my mind")
    with store.unit_of_work() as unit:
        assert unit.deals.get(deal_id) == before


def test_a_reopen_is_explicit_recorded_and_four_eyes_when_the_win_was(store: Store) -> None:
    crm = crm_of(store)
    deal_id, _ = won_deal(crm)
    before = counts(store)
    with pytest.raises(TransitionNotAllowed) as refused:
        crm.reopen_deal(deal_id, to="proposal", by="ana", reason="")
    assert {"reopen_reason", "approval"} <= set(refused.value.codes)
    with pytest.raises(TransitionNotAllowed) as same:
        crm.reopen_deal(deal_id, to="proposal", by="ana", reason="discount", approved_by="ANA")
    assert same.value.codes == ("approval",)
    with pytest.raises(TransitionNotAllowed) as closed:
        crm.reopen_deal(deal_id, to="lost", by="ana", reason="x", approved_by="ben")
    assert "reopen_target" in closed.value.codes
    assert counts(store) == before
    reopened = crm.reopen_deal(
        deal_id, to="proposal", by="ana", reason="discount agreed", approved_by="ben"
    )
    assert (reopened.entity.status, reopened.entity.closed_at) == (DealStatus.OPEN, None)
    assert reopened.change.reason == "reopened: discount agreed; approved by ben"
    steps = [(c.from_stage, c.to_stage) for c in crm.history(SubjectKind.DEAL, deal_id)]
    assert steps[-1] == ("won", "proposal")
    cheaper = crm.update_deal(deal_id, amount=Money("45000", "EUR"))
    assert cheaper.amount == Money("45000", "EUR")
    with pytest.raises(TransitionNotAllowed) as open_deal:
        crm.reopen_deal(deal_id, to="discovery", by="ana", reason="x", approved_by="ben")
    assert "not_closed" in open_deal.value.codes
    # A lost stage took no approval to enter: reopening a lost deal needs none.
    lost = crm.lose_deal(deal_id, by="ana", reason="budget cut").entity
    assert lost.status is DealStatus.LOST
    again = crm.reopen_deal(deal_id, to="proposal", by="ana", reason="budget back")
    assert again.entity.lost_reason is None


def test_a_reopen_needs_the_pipeline_to_allow_it(store: Store) -> None:
    strict = Pipeline(
        key="strict",
        label="Strict",
        subject=SubjectKind.DEAL,
        stages=(
            Stage(key="open", label="Open"),
            Stage(key="won", label="Won", probability=Decimal(1), kind=StageKind.WON),
        ),
    )
    crm = CRM(store, pipelines=[strict])
    lead = crm.capture_lead(touch("bo@example.com")).lead
    deal = crm.convert_lead(lead.id, pipeline="strict", title="Bo").deal
    crm.win_deal(deal.id, by="ana")
    with pytest.raises(TransitionNotAllowed) as refused:
        crm.reopen_deal(deal.id, to="open", by="ana", reason="typo")
    assert refused.value.codes == ("transition",)


def test_an_update_that_breaks_the_stage_is_refused_like_the_move(store: Store) -> None:
    crm = crm_of(store)
    lead = crm.capture_lead(touch("cy@example.com")).lead
    deal = crm.convert_lead(lead.id, pipeline="sales", title="Cy", amount=Money("5000", "EUR")).deal
    # In the first stage, nothing is required: any amount goes.
    crm.update_deal(deal.id, amount=Money("10", "EUR"), custom={"po_number": "PO-1"})
    with pytest.raises(TransitionNotAllowed) as move:
        crm.move_deal(deal.id, "proposal", by="ana")
    crm.update_deal(deal.id, amount=Money("5000", "EUR"))
    crm.move_deal(deal.id, "proposal", by="ana")
    with store.unit_of_work() as unit:
        before = unit.deals.get(deal.id)
    with pytest.raises(TransitionNotAllowed) as update:
        crm.update_deal(deal.id, amount=Money("10", "EUR"))
    assert update.value.codes == move.value.codes == ("minimum_amount",)
    assert update.value.unmet == ("stage 'proposal' needs at least 1000 EUR, not 10 EUR",)
    with pytest.raises(TransitionNotAllowed) as field_gone:
        crm.update_deal(deal.id, custom={"po_number": None})
    assert field_gone.value.codes == ("required_field:custom.po_number",)
    with pytest.raises(TransitionNotAllowed) as currency:
        crm.update_deal(deal.id, amount=Money("5000", "USD"))
    assert currency.value.codes == ("minimum_amount",)
    with store.unit_of_work() as unit:
        assert unit.deals.get(deal.id) == before
    fine = crm.update_deal(deal.id, amount=Money("1000", "EUR"), version=before.version)
    assert (fine.amount, fine.version) == (Money("1000", "EUR"), before.version + 1)
    with pytest.raises(ConcurrencyConflict):
        crm.update_deal(deal.id, title="stale", version=before.version)


def test_closed_leads_are_records_until_reopened(store: Store) -> None:
    crm = crm_of(store, lead_pipeline="inbound")
    lead = crm.capture_lead(touch("di@example.com")).lead
    gone = crm.disqualify_lead(lead.id, reason="student")
    assert (gone.stage, gone.status) == ("junk", LeadStatus.DISQUALIFIED)
    for refused_call in (
        lambda: crm.update_lead(lead.id, owner="ana"),
        lambda: crm.score_lead(lead.id, 99),
        lambda: crm.move_lead(lead.id, "contacted", by="ana"),
    ):
        with pytest.raises(ClosedRecord) as refused:
            refused_call()
        assert refused.value.state == "disqualified"
    back = crm.reopen_lead(lead.id, to="contacted", by="ana", reason="now a customer's buyer")
    assert (back.entity.status, back.entity.disqualified_reason) == (LeadStatus.WORKING, None)
    assert crm.update_lead(lead.id, owner="ana").owner == "ana"
    qualified = crm.move_lead(lead.id, "qualified", by="ana").entity
    with pytest.raises(ClosedRecord) as won:
        crm.update_lead(qualified.id, source="elsewhere")
    assert won.value.state == "qualified"
    converted = crm.convert_lead(lead.id, pipeline="sales", title="Di").lead
    with pytest.raises(TransitionNotAllowed) as done:
        crm.reopen_lead(converted.id, to="contacted", by="ana", reason="x")
    assert "lead_converted" in done.value.codes
    with pytest.raises(ClosedRecord) as record:
        crm.update_lead(converted.id, owner="ben")
    assert record.value.state == "converted"


def test_update_lead_changes_only_what_is_given(store: Store) -> None:
    crm = crm_of(store)
    lead = crm.capture_lead(touch("ed@example.com")).lead
    now = store.clock.now()
    changed = crm.update_lead(lead.id, owner="ana", custom={"budget": 10}, version=lead.version)
    assert (changed.owner, changed.source, dict(changed.custom)) == ("ana", "form", {"budget": 10})
    assert changed.version == lead.version + 1
    assert changed.updated_at > now
    with pytest.raises(ValidationError) as managed:
        crm.update_lead(lead.id, status=LeadStatus.QUALIFIED, id=uuid4(), colour="red")
    assert [p.field for p in managed.value.problems] == ["status", "id", "colour"]
    with pytest.raises(ValidationError) as bad:
        crm.update_lead(lead.id, source="")
    assert bad.value.field == "source"
    with pytest.raises(ConcurrencyConflict):
        crm.update_lead(lead.id, owner="ben", version=lead.version)
    with pytest.raises(NotFound):
        crm.update_lead(uuid4(), owner="ben")


# ---------------------------------------------------------------------------- contacts


def test_contacts_are_created_updated_and_deleted(store: Store) -> None:
    crm = crm_of(store)
    clock = store.clock
    ada = crm.create_contact(Contact.new(email="ada@example.com", first_name="Ada", clock=clock))
    with pytest.raises(NotFound):
        crm.create_contact(Contact.new(email="x@example.com", account_id=uuid4(), clock=clock))
    with pytest.raises(ValidationError) as wrong:
        crm.create_contact("ada")  # type: ignore[arg-type]
    assert wrong.value.field == "contact"
    changed = crm.update_contact(
        ada.id, phone="030 901820", country="DE", first_name=None, version=ada.version
    )
    assert (changed.phone, changed.country, changed.first_name) == ("+4930901820", "DE", None)
    assert (changed.version, changed.email) == (ada.version + 1, ada.email)
    assert changed.updated_at > ada.updated_at
    with pytest.raises(ConcurrencyConflict):
        crm.update_contact(ada.id, last_name="Lovelace", version=ada.version)
    with pytest.raises(ValidationError) as read_only:
        crm.update_contact(ada.id, created_at=NOW, lifecycle_stage=LifecycleStage.CUSTOMER)
    assert [p.field for p in read_only.value.problems] == ["created_at", "lifecycle_stage"]
    with pytest.raises(ValidationError) as bad_phone:
        crm.update_contact(ada.id, phone="not a number")
    assert bad_phone.value.field == "phone"
    with pytest.raises(NotFound):
        crm.update_contact(ada.id, account_id=uuid4())
    for name, value in (("account_id", "acme"), ("version", 0), ("tags", 5), ("custom", "x")):
        with pytest.raises(ValidationError) as wrong_type:
            crm.update_contact(ada.id, **{name: value})
        assert wrong_type.value.field == name
    with store.unit_of_work() as unit:
        assert unit.contacts.get(ada.id) == changed
    with pytest.raises(ConcurrencyConflict):
        crm.delete_contact(ada.id, version=ada.version)
    keep = Contact.new(email="bo@example.com", clock=clock)
    crm.create_contact(keep)
    listed = Segment.new(name="VIPs", members=[ada.id, keep.id], clock=clock)
    with store.unit_of_work() as unit:
        unit.segments.add(listed)
        unit.commit()
    crm.delete_contact(ada.id, version=changed.version)
    with store.unit_of_work() as unit:
        assert unit.segments.get(listed.id).members == {keep.id}  # the list stays, without her
    with pytest.raises(NotFound):
        crm.update_contact(ada.id, first_name="Ada")


def test_a_referred_contact_is_kept_unless_the_cascade_is_asked_for(store: Store) -> None:
    crm = crm_of(store)
    deal_id, person = won_deal(crm, "fi@example.com")
    crm.open_ticket(person, subject="Invoice", channel=TicketChannel.EMAIL)
    crm.create_task(Task.new(title="Check in", due_at=NOW, contact_id=person, clock=store.clock))
    crm.create_task(Task.new(title="Renew", due_at=NOW, deal_id=deal_id, clock=store.clock))
    other = crm.capture_lead(touch("gu@example.com"))
    before = counts(store)
    with pytest.raises(StillReferenced) as refused:
        crm.delete_contact(person)
    kinds = [name for name, _ in refused.value.referrers]
    assert kinds == ["lead", "deal", "ticket", "activity", "task"]
    assert "cascade=True" in str(refused.value)
    assert counts(store) == before
    with pytest.raises(ValidationError) as flag:
        crm.delete_contact(person, cascade="yes")  # type: ignore[arg-type]
    assert flag.value.field == "cascade"
    crm.delete_contact(person, cascade=True)
    after = counts(store)
    assert after == {
        "contacts": 1,
        "accounts": 0,
        "leads": 1,
        "deals": 0,
        "tickets": 0,
        "activities": 1,
        "tasks": 0,
        "stage_history": len(crm.history(SubjectKind.CONTACT, other.contact.id)),
    }
    assert crm.find_contact("gu@example.com") == other.contact


def test_accounts_are_created_updated_and_deleted(store: Store) -> None:
    crm = crm_of(store)
    clock = store.clock
    acme = crm.create_account(Account.new(name="Acme", domain="Acme.com", clock=clock))
    renamed = crm.update_account(acme.id, name="Acme Ltd", employees=40, version=acme.version)
    assert (renamed.name, renamed.domain, renamed.employees) == ("Acme Ltd", "acme.com", 40)
    with pytest.raises(ValidationError) as bad:
        crm.update_account(acme.id, employees=-1, lifecycle_stage="customer")
    assert [p.field for p in bad.value.problems] == ["lifecycle_stage"]
    with pytest.raises(ValidationError) as negative:
        crm.update_account(acme.id, employees=-1)
    assert negative.value.field == "employees"
    person = crm.create_contact(Contact.new(email="ho@acme.com", account_id=acme.id, clock=clock))
    ticket = crm.open_ticket(
        person.id, subject="Login", channel=TicketChannel.CHAT, tags=["VIP", "login"]
    )
    assert (ticket.tags, ticket.account_id) == ({"VIP", "login"}, acme.id)
    with pytest.raises(StillReferenced) as refused:
        crm.delete_account(acme.id)
    assert [name for name, _ in refused.value.referrers] == ["contact", "ticket"]
    crm.delete_account(acme.id, cascade=True)
    assert counts(store) == dict.fromkeys(counts(store), 0)


# ---------------------------------------------------------------------------- leads


def test_many_leads_are_rescored_in_one_call(store: Store) -> None:
    model = ScoringModel(
        name="DACH",
        criteria=(Criterion("in DACH", contacts_where(field("country").is_in("DE", "AT")), 60),),
        mql_at=50,
    )
    crm = crm_of(store, scoring=model, repeat_touch="new_lead")
    de = crm.capture_lead(touch("de@example.de", country="DE"))
    again = crm.capture_lead(touch("de@example.de"))  # a second lead of the same contact
    fr = crm.capture_lead(touch("fr@example.fr", country="FR"))
    ids = [de.lead.id, fr.lead.id, again.lead.id]
    before = counts(store)
    with pytest.raises(NotFound):
        crm.rescore_leads([*ids, uuid4()])
    with pytest.raises(ValidationError) as twice:
        crm.rescore_leads([ids[0], ids[0]])
    assert twice.value.field == "lead_ids[1]"
    assert counts(store) == before
    results = crm.rescore_leads(ids)
    assert [(q.lead.id, q.lead.score, card.total) for q, card in results] == [
        (ids[0], 60.0, 60.0),
        (ids[1], 0.0, 0.0),
        (ids[2], 60.0, 60.0),
    ]
    moved = results[0][0].contact
    assert moved is not None
    assert moved.entity.lifecycle_stage is LifecycleStage.MQL
    assert results[2][0].contact is None  # its contact moved with the first lead
    steps = [c.to_stage for c in crm.history(SubjectKind.CONTACT, de.contact.id)]
    assert steps == ["lead", "mql"]


def test_a_repeat_touch_attaches_to_the_open_lead(store: Store) -> None:
    crm = crm_of(store)
    first = crm.capture_lead(touch("jo@example.com"))
    second = crm.capture_lead(touch("JO@example.com", first_name="Jo"))
    assert (second.lead, second.lead_created, second.contact_created) == (first.lead, False, False)
    assert second.contact.first_name == "Jo"  # the touch still fills what the contact lacks
    assert second.activity.properties["lead_id"] == str(first.lead.id)
    assert (counts(store)["leads"], counts(store)["activities"]) == (1, 2)
    crm.disqualify_lead(first.lead.id, reason="spam")
    third = crm.capture_lead(touch("jo@example.com"))  # no open lead any more: a new one
    assert third.lead_created
    assert third.lead.id != first.lead.id
    separate = crm_of(store, repeat_touch="new_lead").capture_lead(touch("jo@example.com"))
    assert separate.lead_created
    assert counts(store)["leads"] == 3
    with pytest.raises(ValidationError) as option:
        crm_of(store, repeat_touch="merge")
    assert option.value.field == "repeat_touch"


def test_a_phone_only_touch_is_captured_and_matched_by_e164(store: Store) -> None:
    crm = crm_of(store)
    called = crm.capture_lead(
        Touchpoint(phone="030 901820", country="DE", source="hotline", channel=LeadChannel.CHAT)
    )
    assert called.contact_created
    assert (called.contact.phone, called.contact.email) == ("+4930901820", None)
    again = crm.capture_lead(
        Touchpoint(phone="+49 30 901820", source="hotline", channel=LeadChannel.CHAT)
    )
    assert (again.contact.id, again.lead.id, again.lead_created) == (
        called.contact.id,
        called.lead.id,
        False,
    )
    with pytest.raises(ValidationError) as neither:
        Touchpoint(source="hotline", channel=LeadChannel.CHAT)
    assert neither.value.field == "email"
    with pytest.raises(ValidationError) as bad:
        Touchpoint(phone="call me", source="hotline", channel=LeadChannel.CHAT)
    assert bad.value.field == "phone"
    activity = Activity.new(contact_id=called.contact.id, kind=ActivityKind.CALL, clock=store.clock)
    crm.record_activity(activity)
    assert counts(store)["contacts"] == 1
