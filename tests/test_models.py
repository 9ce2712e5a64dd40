import inspect
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmkit.clock import FixedClock
from crmkit.errors import ValidationError
from crmkit.models import (
    ENTITY_TYPES,
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
    DealStatus,
    DoNotContact,
    DoNotContactReason,
    Entity,
    Erasure,
    Lead,
    LeadChannel,
    LeadStatus,
    LifecycleStage,
    Money,
    Segment,
    SegmentKind,
    StageChange,
    SubjectKind,
    Suppression,
    Task,
    TaskStatus,
    Ticket,
    TicketChannel,
    TicketStatus,
)
from crmkit.models.rules import Compare, Op, Rule, RuleEntity
from crmkit.testing import strategies as cst

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


def problems_of(error: ValidationError) -> dict[str, object]:
    return {p.field: p.value for p in error.problems}


# ---------------------------------------------------------------------------- new()


def test_new_fills_identity_version_and_timestamps_from_the_clock(clock: FixedClock) -> None:
    contact = Contact.new(email="ada@example.com", clock=clock)
    assert isinstance(contact.id, UUID)
    assert contact.version == 1
    assert contact.created_at == contact.updated_at == T0
    assert Contact.new(email="ada@example.com", clock=clock).id != contact.id


def test_new_uses_the_system_clock_by_default() -> None:
    before = datetime.now(UTC)
    contact = Contact.new(first_name="Ada")
    assert before <= contact.created_at <= datetime.now(UTC)
    assert contact.created_at.tzinfo is UTC


def test_contact_new_reads_raw_input(clock: FixedClock) -> None:
    contact = Contact.new(
        first_name=" Ada ",
        last_name="Lovelace",
        email=" Ada@Example.COM",
        phone="+44 20 7946 0958",
        country="gb",
        language="en_gb",
        tags=["vip", " vip "],
        custom={"plan": "pro"},
        clock=clock,
    )
    assert contact.first_name == "Ada"
    assert contact.email == "Ada@example.com"
    assert contact.phone == "+442079460958"
    assert (contact.country, contact.language) == ("GB", "en-GB")
    assert contact.tags == frozenset({"vip"})
    assert contact.custom == {"plan": "pro"}
    assert contact.lifecycle_stage is LifecycleStage.SUBSCRIBER
    assert contact.display_name == "Ada Lovelace"


def test_contact_phone_in_national_notation_uses_the_country(clock: FixedClock) -> None:
    pytest.importorskip("phonenumbers")
    contact = Contact.new(phone="030 901820", country="DE", clock=clock)
    assert contact.phone == "+4930901820"


def test_contact_new_names_the_phone_field(clock: FixedClock) -> None:
    with pytest.raises(ValidationError) as caught:
        Contact.new(phone="call me", clock=clock)
    assert problems_of(caught.value) == {"phone": "call me"}
    with pytest.raises(ValidationError) as caught:
        Contact.new(phone="call me", email="nope", country="XX", clock=clock)
    assert problems_of(caught.value) == {"phone": "call me", "email": "nope", "country": "XX"}


def test_display_name_falls_back_to_email_phone_and_id(clock: FixedClock) -> None:
    assert Contact.new(email="x@example.com", clock=clock).display_name == "x@example.com"
    assert Contact.new(phone="+4930901820", clock=clock).display_name == "+4930901820"
    anonymous = Contact.new(clock=clock)
    assert anonymous.display_name == str(anonymous.id)


def test_every_entity_has_a_new_constructor(clock: FixedClock) -> None:
    contact = Contact.new(email="ada@example.com", clock=clock)
    made: list[Entity] = [
        contact,
        Account.new(name="Acme", domain="Acme.COM", clock=clock),
        Lead.new(contact_id=contact.id, source="webinar", channel=LeadChannel.FORM, clock=clock),
        Deal.new(
            title="Seats", pipeline="sales", stage="new", amount=Money("5", "EUR"), clock=clock
        ),
        Ticket.new(subject="Login", contact_id=contact.id, channel=TicketChannel.CHAT, clock=clock),
        Activity.new(contact_id=contact.id, kind=ActivityKind.PAGE_VIEW, clock=clock),
        Task.new(title="Call back", due_at=T0 + timedelta(days=1), clock=clock),
        Segment.new(name="VIP", members=[contact.id], clock=clock),
        Consent.new(
            contact_id=contact.id,
            channel=ConsentChannel.EMAIL,
            purpose="newsletter",
            status=ConsentStatus.GRANTED,
            source="signup-form",
            clock=clock,
        ),
        StageChange.new(
            subject=SubjectKind.DEAL,
            subject_id=uuid4(),
            pipeline="sales",
            to_stage="new",
            clock=clock,
        ),
        DoNotContact.new(
            contact_id=contact.id,
            channel=ConsentChannel.SMS,
            reason=DoNotContactReason.BOUNCED,
            source="bounce-handler",
            clock=clock,
        ),
        Suppression.new(kind="email", digest="ab" * 32, clock=clock),
        Erasure.new(contact_id=contact.id, by="dpo", reason="asked to be forgotten", clock=clock),
        AuditEntry.new(
            subject=SubjectKind.CONTACT,
            subject_id=contact.id,
            action=AuditAction.CHANGED,
            field="first_name",
            before='"Ada"',
            after='"Ada L."',
            clock=clock,
        ),
    ]
    assert {type(e) for e in made} == set(ENTITY_TYPES)
    assert all(e.version == 1 and e.created_at == T0 for e in made)
    assert made[1].domain == "acme.com"  # type: ignore[attr-defined]
    assert made[5].occurred_at == T0  # type: ignore[attr-defined]
    assert made[7].kind is SegmentKind.STATIC  # type: ignore[attr-defined]
    assert made[8].decided_at == T0  # type: ignore[attr-defined]
    assert made[9].at == T0  # type: ignore[attr-defined]
    assert made[10].decided_at == T0  # type: ignore[attr-defined]
    assert made[11].id == Suppression.id_for("ab" * 32)
    assert made[12].id == contact.id  # an erasure is found by the erased contact's id
    assert made[13].at == T0  # type: ignore[attr-defined]


# Fields that describe a later state than creation: new() leaves them at their default,
# and the lifecycle operations set them.
LATER_STATE = {
    Deal: {"status", "closed_at", "lost_reason"},
    Ticket: {"status", "csat"},
    Task: {"status", "completed_at"},
    Segment: {"kind"},  # follows from rule or members
}
STAMP = {"id", "version", "created_at", "updated_at"}


@pytest.mark.parametrize("entity_type", ENTITY_TYPES, ids=lambda t: t.__name__)
def test_new_takes_every_field_of_a_new_entity(entity_type: type[Entity]) -> None:
    fields = {a.name for a in attrs.fields(entity_type)}
    parameters = set(inspect.signature(entity_type.new).parameters) - {"clock"}  # type: ignore[attr-defined]
    assert parameters == fields - STAMP - LATER_STATE.get(entity_type, set())


def test_entity_names() -> None:
    assert [t.entity_name for t in ENTITY_TYPES] == [
        "contact", "account", "lead", "deal", "ticket", "activity", "task", "segment",
        "consent", "do_not_contact", "stage_change", "suppression", "erasure", "audit_entry",
    ]  # fmt: skip


# ---------------------------------------------------------------------------- immutability


def test_entities_are_frozen_slotted_and_hashable(clock: FixedClock) -> None:
    contact = Contact.new(email="ada@example.com", tags=["vip"], custom={"a": 1}, clock=clock)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        contact.email = None  # type: ignore[misc]
    assert not hasattr(contact, "__dict__")
    assert hash(contact) == hash(attrs.evolve(contact))
    assert {contact, attrs.evolve(contact)} == {contact}


def test_evolve_validates_again(clock: FixedClock) -> None:
    contact = Contact.new(email="ada@example.com", clock=clock)
    assert attrs.evolve(contact, email="ADA@EXAMPLE.COM").email == "ADA@example.com"
    with pytest.raises(ValidationError) as caught:
        attrs.evolve(contact, email="ada")
    assert caught.value.field == "email"


# ---------------------------------------------------------------------------- common fields


def test_all_problems_are_reported_at_once(clock: FixedClock) -> None:
    with pytest.raises(ValidationError) as caught:
        Contact.new(email="nope", country="XX", language="klingon", tags="vip", clock=clock)  # type: ignore[arg-type]
    assert problems_of(caught.value) == {
        "email": "nope",
        "country": "XX",
        "language": "klingon",
        "tags": "vip",
    }


def test_aware_datetimes_are_stored_in_utc(clock: FixedClock) -> None:
    contact = Contact.new(clock=clock)
    berlin = datetime(2026, 3, 2, 10, 30, tzinfo=timezone(timedelta(hours=1)))
    moved = attrs.evolve(contact, updated_at=berlin)
    assert moved.updated_at == T0
    assert moved.updated_at.tzinfo is UTC


@given(cst.entities(), st.datetimes(min_value=datetime(1971, 1, 1)))
def test_naive_datetimes_are_rejected(entity: Entity, naive: datetime) -> None:
    with pytest.raises(ValidationError, match="naive") as caught:
        attrs.evolve(entity, created_at=naive, updated_at=naive.replace(tzinfo=UTC))
    assert problems_of(caught.value) == {"created_at": naive}


@given(
    cst.entities(), st.one_of(st.integers(max_value=0), st.just("2"), st.just(True), st.just(1.0))
)
def test_versions_are_positive_integers(entity: Entity, version: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        attrs.evolve(entity, version=version)
    assert problems_of(caught.value) == {"version": version}


@given(cst.entities(), st.one_of(st.text(max_size=36), st.integers()))
def test_ids_are_uuids(entity: Entity, bad_id: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        attrs.evolve(entity, id=bad_id)
    assert caught.value.field == "id"


@given(
    cst.entities(), st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=9))
)
def test_updated_at_never_precedes_created_at(entity: Entity, gap: timedelta) -> None:
    with pytest.raises(ValidationError, match="earlier than created_at"):
        attrs.evolve(entity, updated_at=entity.created_at - gap)


@pytest.mark.parametrize("bad", ["", "   ", "a\x00b", "line\nbreak", "x" * 201, 42])
def test_names_must_be_one_line_of_text(clock: FixedClock, bad: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        Account.new(name=bad, clock=clock)
    assert caught.value.field == "name"


# ---------------------------------------------------------------------------- invariants


@pytest.fixture
def deal(clock: FixedClock) -> Deal:
    return Deal.new(title="Seats", pipeline="sales", stage="proposal", clock=clock)


def test_closed_deals_need_closed_at(deal: Deal) -> None:
    with pytest.raises(ValidationError) as caught:
        attrs.evolve(deal, status=DealStatus.WON)
    assert caught.value.field == "closed_at"
    won = attrs.evolve(deal, status=DealStatus.WON, closed_at=T0)
    assert won.status is DealStatus.WON
    with pytest.raises(ValidationError, match="only allowed when the deal is closed"):
        attrs.evolve(deal, closed_at=T0)


def test_only_lost_deals_have_a_lost_reason(deal: Deal) -> None:
    lost = attrs.evolve(deal, status=DealStatus.LOST, closed_at=T0, lost_reason="price")
    assert lost.lost_reason == "price"
    with pytest.raises(ValidationError, match="only allowed when the deal is lost"):
        attrs.evolve(lost, status=DealStatus.WON)


@pytest.mark.parametrize("probability", ["-0.1", "1.01", "NaN", 0.5, None, "0.1234567890123"])
def test_deal_probability_is_a_decimal_between_0_and_1(deal: Deal, probability: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        attrs.evolve(deal, probability=probability)
    assert caught.value.field == "probability"


def test_deal_accepts_probability_as_text_or_int(deal: Deal) -> None:
    assert attrs.evolve(deal, probability="0.25").probability == Decimal("0.25")
    assert attrs.evolve(deal, probability=1).probability == Decimal(1)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"pipeline": "Sales Team"}, "pipeline"),
        ({"stage": ""}, "stage"),
        ({"amount": Decimal(5)}, "amount"),
        ({"expected_close": T0}, "expected_close"),
        ({"status": "finished"}, "status"),  # a value, not a member, is read (#13)
        ({"contact_id": "c-1"}, "contact_id"),
    ],
)
def test_deal_fields_are_typed(deal: Deal, changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        attrs.evolve(deal, **changes)
    assert caught.value.field == field


def test_lead_invariants(clock: FixedClock) -> None:
    lead = Lead.new(contact_id=uuid4(), source="fair", channel=LeadChannel.EVENT, clock=clock)
    assert lead.status is LeadStatus.NEW
    with pytest.raises(ValidationError) as caught:
        attrs.evolve(lead, status=LeadStatus.DISQUALIFIED)
    assert caught.value.field == "disqualified_reason"
    with pytest.raises(ValidationError, match="only allowed when status is disqualified"):
        attrs.evolve(lead, disqualified_reason="student")
    with pytest.raises(ValidationError) as caught:
        attrs.evolve(lead, pipeline="leads")
    assert caught.value.field == "stage"
    with pytest.raises(ValidationError) as caught:
        attrs.evolve(lead, score=float("inf"))
    assert caught.value.field == "score"


def test_ticket_csat_only_when_solved(clock: FixedClock) -> None:
    ticket = Ticket.new(
        subject="Login", contact_id=uuid4(), channel=TicketChannel.EMAIL, clock=clock
    )
    assert attrs.evolve(ticket, status=TicketStatus.SOLVED, csat=5).csat == 5
    with pytest.raises(ValidationError, match="solved or closed"):
        attrs.evolve(ticket, csat=4)
    with pytest.raises(ValidationError, match="between 1 and 5"):
        attrs.evolve(ticket, status=TicketStatus.CLOSED, csat=6)


def test_task_invariants(clock: FixedClock) -> None:
    task = Task.new(title="Call", due_at=T0 + timedelta(days=2), clock=clock)
    done = attrs.evolve(task, status=TaskStatus.DONE, completed_at=T0)
    assert done.completed_at == T0
    with pytest.raises(ValidationError, match="required for a done task"):
        attrs.evolve(task, status=TaskStatus.DONE)
    with pytest.raises(ValidationError, match="only allowed when the task is done"):
        attrs.evolve(task, completed_at=T0)
    with pytest.raises(ValidationError, match="later than due_at"):
        attrs.evolve(task, remind_at=T0 + timedelta(days=3))


def test_segment_is_dynamic_or_static(clock: FixedClock) -> None:
    member = uuid4()
    german = Rule(RuleEntity.CONTACT, Compare("country", Op.EQ, "DE"))
    dynamic = Segment.new(name="Active", rule=german, clock=clock)
    assert dynamic.kind is SegmentKind.DYNAMIC
    static = Segment.new(name="Fair 2026", members=[member], clock=clock)
    assert static.members == frozenset({member})
    with pytest.raises(ValidationError, match="no member list"):
        attrs.evolve(dynamic, members=frozenset({member}))
    with pytest.raises(ValidationError, match="static segment has no rule"):
        attrs.evolve(static, rule=german)
    with pytest.raises(ValidationError, match="required for a dynamic segment"):
        attrs.evolve(dynamic, rule=None)
    with pytest.raises(ValidationError) as caught:
        attrs.evolve(static, members=frozenset({"not-a-uuid"}))
    assert caught.value.field == "members"
    with pytest.raises(ValidationError, match="selects contacts") as caught:
        attrs.evolve(dynamic, rule=Rule(RuleEntity.DEAL, Compare("stage", Op.EQ, "won")))
    assert caught.value.field == "rule"


def test_consent_expiry_follows_the_decision(clock: FixedClock) -> None:
    consent = Consent.new(
        contact_id=uuid4(),
        channel=ConsentChannel.SMS,
        purpose="offers",
        status=ConsentStatus.GRANTED,
        source="checkout",
        clock=clock,
    )
    assert attrs.evolve(consent, expires_at=T0 + timedelta(days=365)).expires_at is not None
    with pytest.raises(ValidationError, match="not later than decided_at"):
        attrs.evolve(consent, expires_at=T0)
    with pytest.raises(ValidationError) as caught:
        attrs.evolve(consent, purpose="Marketing Mails")
    assert caught.value.field == "purpose"


def test_stage_change_invariants(clock: FixedClock) -> None:
    change = StageChange.new(
        subject=SubjectKind.DEAL,
        subject_id=uuid4(),
        pipeline="sales",
        from_stage="new",
        to_stage="proposal",
        by="user-1",
        amount=Money("100", "EUR"),
        probability="0.4",
        clock=clock,
    )
    assert change.probability == Decimal("0.4")
    with pytest.raises(ValidationError, match="equals from_stage"):
        attrs.evolve(change, subject=SubjectKind.LEAD, to_stage="new")
    # a deal's update snapshot stays in its stage (update_deal records it)
    assert attrs.evolve(change, to_stage="new").from_stage == "new"
    with pytest.raises(ValidationError, match="contact lifecycle has no pipeline"):
        attrs.evolve(change, subject=SubjectKind.CONTACT)


def test_account_domain_and_numbers(clock: FixedClock) -> None:
    with pytest.raises(ValidationError) as caught:
        Account.new(name="Acme", domain="not a domain", clock=clock)
    assert caught.value.field == "domain"
    with pytest.raises(ValidationError) as caught:
        Account.new(name="Acme", employees=-1, clock=clock)
    assert caught.value.field == "employees"
    account = Account.new(name="Acme", clock=clock)
    assert attrs.evolve(account, domain=" Acme.COM ").domain == "acme.com"
    assert attrs.evolve(account, domain="xn--bcher-kva.de").domain == "bücher.de"


def test_expected_close_is_a_date(deal: Deal) -> None:
    assert attrs.evolve(deal, expected_close=date(2026, 6, 30)).expected_close == date(2026, 6, 30)


@given(cst.entities())
def test_generated_entities_rebuild_from_their_own_fields(entity: Entity) -> None:
    rebuilt = type(entity)(**attrs.asdict(entity, recurse=False))
    assert rebuilt == entity


# ---------------------------------------------------------------------------- review findings


@pytest.mark.parametrize("bad", [frozenset({"", " vip "}), frozenset({"x" * 65}), frozenset({1})])
def test_tags_given_as_a_frozenset_are_validated(clock: FixedClock, bad: frozenset[Any]) -> None:
    contact = Contact.new(clock=clock)
    with pytest.raises(ValidationError) as caught:
        attrs.evolve(contact, tags=bad)
    assert caught.value.field == "tags"


def test_frozenset_tags_are_normalised(clock: FixedClock) -> None:
    contact = Contact.new(clock=clock)
    assert attrs.evolve(contact, tags=frozenset({" vip ", "big  fish"})).tags == {"vip", "big fish"}


def test_notes_cannot_hold_lone_surrogates(clock: FixedClock) -> None:
    with pytest.raises(ValidationError, match="surrogate"):
        Task.new(title="Call", due_at=T0, notes="broken \ud800 text", clock=clock)


def test_times_out_of_range_in_utc_are_a_validation_error(clock: FixedClock) -> None:
    late = datetime.max.replace(tzinfo=timezone(timedelta(hours=-1)))
    with pytest.raises(ValidationError, match="years 1 to 9999") as caught:
        attrs.evolve(Contact.new(clock=clock), updated_at=late)
    assert caught.value.field == "updated_at"


def test_a_lead_can_be_made_disqualified(clock: FixedClock) -> None:
    lead = Lead.new(
        contact_id=uuid4(),
        source="import",
        channel=LeadChannel.IMPORT,
        status=LeadStatus.DISQUALIFIED,
        disqualified_reason="competitor",
        clock=clock,
    )
    assert lead.disqualified_reason == "competitor"


def test_user_ids_are_trimmed(clock: FixedClock) -> None:
    assert Contact.new(owner=" user-7 ", clock=clock).owner == "user-7"


@pytest.mark.parametrize("field", ["amount"])
def test_deal_amounts_are_not_negative(deal: Deal, field: str) -> None:
    with pytest.raises(ValidationError, match="negative") as caught:
        attrs.evolve(deal, **{field: Money("-1", "EUR")})
    assert caught.value.field == field


def test_revenue_is_not_negative(clock: FixedClock) -> None:
    with pytest.raises(ValidationError) as caught:
        Account.new(name="Acme", annual_revenue=Money("-5", "EUR"), clock=clock)
    assert caught.value.field == "annual_revenue"


def test_contact_stage_changes_name_lifecycle_stages(clock: FixedClock) -> None:
    change = StageChange.new(
        subject=SubjectKind.CONTACT,
        subject_id=uuid4(),
        from_stage="lead",
        to_stage="mql",
        clock=clock,
    )
    assert change.to_stage == LifecycleStage.MQL
    with pytest.raises(ValidationError, match="not a lifecycle stage") as caught:
        attrs.evolve(change, to_stage="won")
    assert caught.value.field == "to_stage"


@pytest.mark.parametrize("bad", [2**63, -1])
def test_integers_fit_in_64_bits(clock: FixedClock, bad: int) -> None:
    with pytest.raises(ValidationError) as caught:
        Account.new(name="Acme", employees=bad, clock=clock)
    assert caught.value.field == "employees"
