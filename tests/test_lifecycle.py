"""Contact lifecycle, lead capture and conversion, tasks and the timeline (pure domain)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmkit.clock import FixedClock
from crmkit.errors import TransitionNotAllowed, ValidationError
from crmkit.lifecycle import (
    FUNNEL,
    CheckInPlan,
    LifecycleEvent,
    Pipeline,
    PipelineMachine,
    Stage,
    StageKind,
    TimelineKind,
    Touchpoint,
    accept_lead,
    advance_contact,
    can_move_contact,
    capture_lead,
    check_ins_due,
    complete_task,
    convert_lead,
    disqualify_lead,
    follow_ups,
    move_contact,
    reset_contact,
    score_lead,
    timeline,
)
from crmkit.models import (
    Activity,
    ActivityKind,
    Contact,
    Deal,
    LeadChannel,
    LeadStatus,
    LifecycleStage,
    Money,
    SubjectKind,
    Task,
    TaskKind,
    TaskStatus,
    Ticket,
    TicketChannel,
)

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def clock() -> FixedClock:
    return FixedClock(NOW)


def contact(stage: LifecycleStage = LifecycleStage.SUBSCRIBER, **changes: object) -> Contact:
    made = Contact.new(email="ada@example.com", lifecycle_stage=stage, clock=clock())
    return attrs.evolve(made, **changes)


# ---------------------------------------------------------------------------- lifecycle


@given(st.sampled_from(FUNNEL), st.sampled_from(LifecycleEvent))
def test_events_only_ever_move_a_contact_forward(
    stage: LifecycleStage, event: LifecycleEvent
) -> None:
    moved = advance_contact(contact(stage), event, at=NOW)
    if FUNNEL.index(event.stage) > FUNNEL.index(stage):
        assert moved is not None
        assert moved.entity.lifecycle_stage is event.stage
        assert (moved.change.from_stage, moved.change.to_stage) == (stage.value, event.stage.value)
        assert moved.change.subject is SubjectKind.CONTACT
    else:
        assert moved is None


def test_contacts_outside_the_funnel_are_left_alone_by_events() -> None:
    partner = contact(LifecycleStage.OTHER)
    assert advance_contact(partner, LifecycleEvent.DEAL_WON, at=NOW) is None
    assert [u.code for u in can_move_contact(partner, LifecycleStage.CUSTOMER)] == ["transition"]


def test_going_back_needs_an_explicit_reset() -> None:
    customer = contact(LifecycleStage.CUSTOMER)
    with pytest.raises(TransitionNotAllowed, match="forward only"):
        move_contact(customer, LifecycleStage.LEAD, at=NOW)
    with pytest.raises(ValidationError) as caught:
        reset_contact(customer, LifecycleStage.LEAD, by="ana", reason=" ", at=NOW)
    assert caught.value.field == "reason"
    reset = reset_contact(
        customer, LifecycleStage.LEAD, by="ana", reason="churned, nurture again", at=NOW
    )
    assert reset.entity.lifecycle_stage is LifecycleStage.LEAD
    assert reset.change.by == "ana"


# ---------------------------------------------------------------------------- capture


def test_capturing_a_new_person_creates_the_contact_the_lead_and_the_activity() -> None:
    touch = Touchpoint(
        email=" Ada@Example.COM ",
        source="pricing-page",
        channel=LeadChannel.FORM,
        first_name="Ada",
        custom={"plan": "team"},
    )
    captured = capture_lead(touch, None, at=NOW)
    assert captured.contact_created
    assert captured.contact.email == "Ada@example.com"
    assert captured.contact.lifecycle_stage is LifecycleStage.LEAD
    assert captured.lead.contact_id == captured.contact.id
    assert captured.activity.kind is ActivityKind.FORM_SUBMITTED
    assert captured.activity.properties["lead_id"] == str(captured.lead.id)
    assert [c.to_stage for c in captured.changes] == ["lead"]


def test_capturing_a_known_person_fills_gaps_and_never_overwrites() -> None:
    known = contact(LifecycleStage.CUSTOMER, first_name="Ada", tags=frozenset({"vip"}))

    def enrich(email: str) -> dict[str, object]:
        return {"first_name": "Augusta", "country": "GB", "custom": {"industry": "math"}}

    touch = Touchpoint(
        email="ada@example.com", source="webinar", channel=LeadChannel.EVENT, tags={"webinar"}
    )
    captured = capture_lead(touch, known, enrich=enrich, at=NOW)
    assert not captured.contact_created
    assert captured.contact_changed
    person = captured.contact
    assert person.id == known.id
    assert person.first_name == "Ada"  # kept
    assert person.country == "GB"  # filled
    assert person.tags == {"vip", "webinar"}
    assert person.custom["industry"] == "math"
    assert person.lifecycle_stage is LifecycleStage.CUSTOMER  # never backwards
    assert captured.changes == ()
    assert captured.activity.kind is ActivityKind.EVENT_SIGNUP


def test_capture_rejects_bad_input_naming_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        Touchpoint(email="not an address", source="x", channel=LeadChannel.FORM)
    assert caught.value.field == "email"
    with pytest.raises(ValidationError) as source:
        Touchpoint(email="a@example.com", source=" ", channel=LeadChannel.FORM)
    assert source.value.field == "source"
    touch = Touchpoint(email="a@example.com", source="x", channel=LeadChannel.CHAT)
    with pytest.raises(ValidationError) as enrichment:
        capture_lead(touch, None, enrich=lambda e: {"salary": 1}, at=NOW)
    assert enrichment.value.field == "enrichment.salary"
    with pytest.raises(ValidationError) as mismatch:
        capture_lead(touch, contact(), at=NOW)
    assert mismatch.value.field == "existing"


# ---------------------------------------------------------------------------- qualify, convert


def captured_lead() -> tuple[Contact, object]:
    touch = Touchpoint(email="ada@example.com", source="form", channel=LeadChannel.FORM)
    captured = capture_lead(touch, None, at=NOW)
    return captured.contact, captured.lead


def test_scoring_at_the_threshold_makes_an_mql() -> None:
    person, lead = captured_lead()
    below = score_lead(lead, person, 49.5, threshold=50, at=NOW)  # type: ignore[arg-type]
    assert below.lead.score == 49.5
    assert below.contact is None
    at = score_lead(lead, person, 50, threshold=50, at=NOW)  # type: ignore[arg-type]
    assert at.contact is not None
    assert at.contact.entity.lifecycle_stage is LifecycleStage.MQL
    with pytest.raises(ValidationError) as caught:
        score_lead(lead, person, float("nan"), threshold=50, at=NOW)  # type: ignore[arg-type]
    assert caught.value.field == "score"


def test_accepting_then_converting_a_lead() -> None:
    person, lead = captured_lead()
    accepted = accept_lead(lead, person, by="ana", at=NOW)  # type: ignore[arg-type]
    assert accepted.lead.status is LeadStatus.QUALIFIED
    assert accepted.contact is not None
    person = accepted.contact.entity
    assert person.lifecycle_stage is LifecycleStage.SQL
    pipeline = Pipeline(
        key="sales",
        label="Sales",
        subject=SubjectKind.DEAL,
        stages=(
            Stage(key="discovery", label="Discovery", probability=Decimal("0.2")),
            Stage(key="won", label="Won", probability=Decimal(1), kind=StageKind.WON),
        ),
    )
    machine = PipelineMachine[Deal](pipeline)
    converted = convert_lead(
        accepted.lead,
        person,
        machine,
        title="Ada: 5 seats",
        amount=Money("500", "EUR"),
        by="ana",
        at=NOW,
    )
    deal = converted.deal
    assert (deal.stage, deal.probability, deal.lead_id) == ("discovery", Decimal("0.2"), lead.id)  # type: ignore[attr-defined]
    assert converted.lead.deal_id == deal.id
    assert converted.contact.lifecycle_stage is LifecycleStage.OPPORTUNITY
    assert [(c.subject, c.to_stage) for c in converted.changes] == [
        (SubjectKind.DEAL, "discovery"),
        (SubjectKind.CONTACT, "opportunity"),
    ]
    with pytest.raises(TransitionNotAllowed, match="converted"):
        convert_lead(converted.lead, converted.contact, machine, title="again", at=NOW)


def test_a_disqualified_lead_cannot_be_accepted() -> None:
    person, lead = captured_lead()
    gone = disqualify_lead(lead, reason="student", at=NOW)  # type: ignore[arg-type]
    assert gone.disqualified_reason == "student"
    with pytest.raises(TransitionNotAllowed, match="disqualified"):
        accept_lead(gone, person, by="ana", at=NOW)


# ---------------------------------------------------------------------------- tasks


def task(due: timedelta, **changes: object) -> Task:
    made = Task.new(title="Call Ada", due_at=NOW + due, clock=clock())
    return attrs.evolve(made, **changes)


def test_follow_ups_sort_open_tasks_into_overdue_and_due_soon() -> None:
    late, soon, later = task(-timedelta(hours=2)), task(timedelta(hours=3)), task(timedelta(days=3))
    done = complete_task(task(-timedelta(days=1)), at=NOW)
    board = follow_ups([later, soon, done, late], now=NOW, within=timedelta(days=1))
    assert board.overdue == (late,)
    assert board.due_soon == (soon,)
    with pytest.raises(TransitionNotAllowed):
        complete_task(done, at=NOW)
    with pytest.raises(ValidationError) as caught:
        follow_ups([], now=NOW.replace(tzinfo=None), within=timedelta(0))
    assert caught.value.field == "now"


def test_check_ins_recur_after_the_last_one() -> None:
    customer = contact(LifecycleStage.CUSTOMER, owner="ana")
    lead = contact(LifecycleStage.LEAD, email="bo@example.com")
    plan = CheckInPlan(every=timedelta(days=30))
    first = check_ins_due([customer, lead], [], plan, now=NOW)
    assert [(t.contact_id, t.kind, t.assignee) for t in first] == [
        (customer.id, TaskKind.CHECK_IN, "ana")
    ]
    assert check_ins_due([customer], first, plan, now=NOW) == []  # one is open
    done = attrs.evolve(first[0], status=TaskStatus.DONE, completed_at=NOW + timedelta(days=2))
    again = check_ins_due([customer], [done], plan, now=NOW)
    assert again[0].due_at == NOW + timedelta(days=32)


# ---------------------------------------------------------------------------- timeline


def test_the_timeline_is_chronological_and_stable() -> None:
    person = contact()
    earlier = Activity.new(
        contact_id=person.id,
        kind=ActivityKind.PAGE_VIEW,
        occurred_at=NOW - timedelta(days=2),
        subject="/pricing",
        clock=clock(),
    )
    moved = advance_contact(person, LifecycleEvent.LEAD_CAPTURED, at=NOW)
    assert moved is not None
    ticket = Ticket.new(
        subject="Cannot log in", contact_id=person.id, channel=TicketChannel.CHAT, clock=clock()
    )
    follow_up = task(timedelta(days=1), contact_id=person.id)
    entries = timeline(
        activities=[earlier], stage_changes=[moved.change], tickets=[ticket], tasks=[follow_up]
    )
    assert [e.kind for e in entries] == [
        TimelineKind.ACTIVITY,
        TimelineKind.TICKET_OPENED,
        TimelineKind.STAGE_CHANGE,
        TimelineKind.TASK_CREATED,
    ]
    assert entries[0].text == "page view: /pricing"
    assert entries[1].text == "ticket opened via chat: Cannot log in"
    assert entries[2].text == "contact: subscriber -> lead (lead captured)"
    shuffled = timeline(
        tasks=[follow_up], tickets=[ticket], stage_changes=[moved.change], activities=[earlier]
    )
    assert shuffled == entries


def test_domain_functions_take_an_aware_time_not_a_clock() -> None:
    naive = datetime(2026, 3, 2, 9, 0)
    person, lead = captured_lead()
    for call in (
        lambda: advance_contact(person, LifecycleEvent.DEAL_WON, at=naive),
        lambda: score_lead(lead, person, 10, threshold=50, at=naive),  # type: ignore[arg-type]
        lambda: disqualify_lead(lead, reason="x", at=naive),  # type: ignore[arg-type]
        lambda: complete_task(task(timedelta(days=1)), at=naive),
        lambda: check_ins_due([person], [], CheckInPlan(every=timedelta(days=30)), now=naive),
    ):
        with pytest.raises(ValidationError, match="naive") as caught:
            call()
        assert caught.value.field in ("at", "now")
    later = NOW + timedelta(hours=2)
    moved = advance_contact(person, LifecycleEvent.DEAL_WON, at=later)
    assert moved is not None
    assert (moved.entity.updated_at, moved.change.at) == (later, later)
