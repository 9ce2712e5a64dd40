"""The CRM service on every store: each use case is stored whole, with its history, or not
at all."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from uuid import uuid4

import attrs
import pytest

from crmkit.clock import FixedClock
from crmkit.crm import CRM
from crmkit.errors import (
    ClosedRecord,
    ConcurrencyConflict,
    NotFound,
    TransitionNotAllowed,
    ValidationError,
)
from crmkit.lifecycle import (
    CheckInPlan,
    Guards,
    LifecycleEvent,
    Moved,
    Pipeline,
    SlaMetric,
    SlaPolicy,
    SlaState,
    Stage,
    StageKind,
    StageRequirements,
    TimelineKind,
    Touchpoint,
    TransitionMode,
    breached,
)
from crmkit.models import (
    Activity,
    ActivityKind,
    DealStatus,
    LeadChannel,
    LeadStatus,
    LifecycleStage,
    Money,
    SubjectKind,
    Task,
    TaskKind,
    TicketChannel,
    TicketStatus,
)
from crmkit.scoring import Criterion, Group, ScoringModel
from crmkit.segmentation import activity, contacts_where, field, leads_where, prop
from crmkit.storage import MemoryStore, Store
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
            requires=StageRequirements(required_fields={"amount"}, guards=("in_stock",)),
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
)


def in_stock(deal: object, stage: Stage) -> str | None:
    return None


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from stepping_store(request.param, tmp_path, NOW, "crm")


def crm_of(store: Store, **changes: object) -> CRM:
    options: dict[str, object] = {
        "pipelines": [SALES],
        "guards": Guards({"in_stock": in_stock}),
        "mql_threshold": 40,
    }
    options.update(changes)
    return CRM(store, **options)  # type: ignore[arg-type]


def everything(store: Store) -> dict[str, int]:
    with store.unit_of_work() as unit:
        return {
            name: getattr(unit, name).count()
            for name in ("contacts", "leads", "deals", "activities", "tasks", "stage_history")
        }


def test_from_first_touch_to_customer(store: Store) -> None:
    crm = crm_of(store)
    touch = Touchpoint(
        email="Ada@Example.com", source="pricing-page", channel=LeadChannel.FORM, first_name="Ada"
    )
    captured = crm.capture_lead(touch)
    again = crm.capture_lead(
        Touchpoint(email="Ada@example.com", source="newsletter", channel=LeadChannel.NEWSLETTER)
    )
    assert again.contact.id == captured.contact.id
    assert not again.contact_created
    assert crm.find_contact("Ada@EXAMPLE.com") == again.contact
    lead = captured.lead
    assert crm.score_lead(lead.id, 45).contact is not None
    accepted = crm.accept_lead(lead.id, by="ana")
    assert accepted.lead.status is LeadStatus.QUALIFIED
    converted = crm.convert_lead(
        lead.id, pipeline="sales", title="Ada: 5 seats", amount=Money("900", "EUR"), by="ana"
    )
    deal = converted.deal
    moved = crm.move_deal(deal.id, "proposal", by="ana")
    assert moved.entity.probability == Decimal("0.5")
    with pytest.raises(TransitionNotAllowed, match="second person"):
        crm.win_deal(deal.id, by="ana", approved_by="ana")
    won = crm.win_deal(deal.id, by="ana", approved_by="ben")
    assert won.entity.status is DealStatus.WON
    person = crm.find_contact("Ada@example.com")
    assert person is not None
    assert person.lifecycle_stage is LifecycleStage.CUSTOMER
    steps = [c.to_stage for c in crm.history(SubjectKind.CONTACT, person.id)]
    assert steps == ["lead", "mql", "sql", "opportunity", "customer"]
    deal_steps = [c.to_stage for c in crm.history(SubjectKind.DEAL, deal.id)]
    assert deal_steps == ["discovery", "proposal", "won"]
    kinds = [e.kind for e in crm.timeline(person.id)]
    assert kinds.count(TimelineKind.ACTIVITY) == 2
    assert kinds.count(TimelineKind.STAGE_CHANGE) == 8
    assert TimelineKind.DEAL_OPENED in kinds
    assert crm.customers() == [person]


def test_a_refused_move_stores_nothing(store: Store) -> None:
    crm = crm_of(store)
    captured = crm.capture_lead(
        Touchpoint(email="bo@example.com", source="chat", channel=LeadChannel.CHAT)
    )
    converted = crm.convert_lead(captured.lead.id, pipeline="sales", title="Bo")
    before = everything(store)
    with pytest.raises(TransitionNotAllowed) as caught:
        crm.move_deal(converted.deal.id, "proposal", by="ana")  # no amount
    assert caught.value.unmet == ("amount is required in stage 'proposal'",)
    assert everything(store) == before


def test_a_failure_in_the_middle_of_a_use_case_leaves_the_store_unchanged(store: Store) -> None:
    def broken_enrichment(email: str) -> dict[str, object]:
        raise RuntimeError("the enrichment service is down")

    crm = crm_of(store)
    crm.capture_lead(Touchpoint(email="cy@example.com", source="form", channel=LeadChannel.FORM))
    before = everything(store)
    with pytest.raises(RuntimeError, match="down"):
        crm_of(store, enrich=broken_enrichment).capture_lead(
            Touchpoint(email="cy@example.com", source="chat", channel=LeadChannel.CHAT)
        )
    assert everything(store) == before
    # Winning writes the deal, its history and then the contact's move: a conflict on
    # the contact must undo the deal's move too.
    captured = crm.capture_lead(
        Touchpoint(email="di@example.com", source="form", channel=LeadChannel.FORM)
    )
    deal = crm.convert_lead(
        captured.lead.id, pipeline="sales", title="Di", amount=Money("10", "EUR")
    ).deal
    crm.move_deal(deal.id, "proposal", by="ana")
    before = everything(store)

    class Stale(CRM):  # the contact changed meanwhile: its update fails after the deal's
        @staticmethod
        def _stored_move(unit, moved):  # type: ignore[no-untyped-def]
            stale = attrs.evolve(moved.entity, version=moved.entity.version + 7)
            return CRM._stored_move(unit, Moved(stale, moved.change))

    stale = Stale(store, pipelines=[SALES], guards=Guards({"in_stock": in_stock}))
    with pytest.raises(ConcurrencyConflict):
        stale.win_deal(deal.id, by="ana", approved_by="ben")
    assert everything(store) == before
    with store.unit_of_work() as unit:
        assert unit.deals.get(deal.id).stage == "proposal"


def test_lose_needs_a_reason_and_unknown_ids_are_not_found(store: Store) -> None:
    crm = crm_of(store)
    captured = crm.capture_lead(
        Touchpoint(email="ed@example.com", source="form", channel=LeadChannel.FORM)
    )
    deal = crm.convert_lead(captured.lead.id, pipeline="sales", title="Ed").deal
    with pytest.raises(TransitionNotAllowed, match="reason"):
        crm.lose_deal(deal.id, by="ana", reason="")
    lost = crm.lose_deal(deal.id, by="ana", reason="no budget").entity
    assert (lost.status, lost.lost_reason) == (DealStatus.LOST, "no budget")
    with pytest.raises(NotFound):
        crm.move_deal(uuid4(), "won", by="ana")
    with pytest.raises(ValidationError) as caught:
        crm.convert_lead(captured.lead.id, pipeline="renewals", title="x")
    assert caught.value.field == "pipeline"


def test_tasks_follow_ups_and_check_ins(store: Store) -> None:
    crm = crm_of(store)
    captured = crm.capture_lead(
        Touchpoint(email="fi@example.com", source="form", channel=LeadChannel.FORM)
    )
    person = captured.contact
    clock = FixedClock(NOW)
    late = crm.create_task(
        Task.new(
            title="Call Fi", due_at=NOW - timedelta(hours=1), contact_id=person.id, clock=clock
        )
    )
    soon = crm.create_task(
        Task.new(title="Send offer", due_at=NOW + timedelta(hours=5), assignee="ana", clock=clock)
    )
    board = crm.follow_ups(within=timedelta(days=1))
    assert (board.overdue, board.due_soon) == ((late,), (soon,))
    assert crm.follow_ups(assignee="ana").overdue == ()
    done = crm.complete_task(late.id)
    assert done.version == late.version + 1
    with pytest.raises(NotFound):
        crm.create_task(Task.new(title="x", due_at=NOW, contact_id=uuid4(), clock=clock))
    deal = crm.convert_lead(captured.lead.id, pipeline="sales", title="Fi").deal
    crm.move_deal(deal.id, "lost", by="ana", reason="too early")
    assert crm.schedule_check_ins(CheckInPlan(every=timedelta(days=30))) == []
    won = crm.capture_lead(
        Touchpoint(email="gu@example.com", source="form", channel=LeadChannel.FORM)
    )
    gu_deal = crm.convert_lead(
        won.lead.id, pipeline="sales", title="Gu", amount=Money("5", "EUR")
    ).deal
    crm.move_deal(gu_deal.id, "proposal", by="ana")
    crm.win_deal(gu_deal.id, by="ana", approved_by="ben")
    made = crm.schedule_check_ins(CheckInPlan(every=timedelta(days=30)))
    assert [(t.contact_id, t.kind) for t in made] == [(won.contact.id, TaskKind.CHECK_IN)]
    assert crm.schedule_check_ins(CheckInPlan(every=timedelta(days=30))) == []
    timeline = crm.timeline(person.id)
    assert [e.kind for e in timeline].count(TimelineKind.TASK_DONE) == 1
    assert any(
        e.kind is TimelineKind.ACTIVITY and e.item.kind is ActivityKind.FORM_SUBMITTED  # type: ignore[attr-defined]
        for e in timeline
    )


def test_the_service_checks_its_configuration() -> None:
    store = MemoryStore()
    with pytest.raises(ValidationError) as twice:
        CRM(store, pipelines=[SALES, SALES], guards=Guards({"in_stock": in_stock}))
    assert twice.value.field == "pipelines[1].key"
    with pytest.raises(ValidationError) as threshold:
        CRM(store, mql_threshold="high")  # type: ignore[arg-type]
    assert threshold.value.field == "mql_threshold"


def test_rescoring_a_lead_explains_and_stores_its_score(store: Store) -> None:
    model = ScoringModel(
        name="Inbound",
        criteria=(
            Criterion("in DACH", contacts_where(field("country").is_in("DE", "AT")), 30),
            Criterion(
                "pricing page",
                leads_where(
                    activity(ActivityKind.PAGE_VIEW, where=prop("url").contains("/pricing")).count()
                    >= 1
                ),
                40,
                Group.ENGAGEMENT,
            ),
        ),
        mql_at=60,
    )
    crm = crm_of(store, scoring=model)
    captured = crm.capture_lead(
        Touchpoint(email="hu@example.de", source="ads", channel=LeadChannel.FORM, country="DE")
    )
    first, card = crm.rescore_lead(captured.lead.id)
    assert (card.total, first.lead.score, first.contact) == (30.0, 30.0, None)
    crm.record_activity(
        Activity.new(
            contact_id=captured.contact.id,
            kind=ActivityKind.PAGE_VIEW,
            properties={"url": "https://example.com/pricing"},
            clock=store.clock,
        )
    )
    second, card = crm.rescore_lead(captured.lead.id)
    assert [c.criterion for c in card.contributions] == ["in DACH", "pricing page"]
    assert second.lead.score == card.total == 70.0
    assert second.contact is not None
    assert second.contact.entity.lifecycle_stage is LifecycleStage.MQL
    with pytest.raises(ValidationError) as caught:
        crm_of(store).rescore_lead(captured.lead.id)
    assert caught.value.field == "scoring"


def test_captured_leads_start_in_the_lead_pipeline(store: Store) -> None:
    inbound = Pipeline(
        key="inbound",
        label="Inbound",
        subject=SubjectKind.LEAD,
        stages=(
            Stage(key="new", label="New"),
            Stage(key="contacted", label="Contacted", probability=Decimal("0.3")),
            Stage(key="qualified", label="Qualified", probability=Decimal(1), kind=StageKind.WON),
        ),
    )
    crm = crm_of(store, pipelines=[SALES, inbound], lead_pipeline="inbound")
    lead = crm.capture_lead(
        Touchpoint(email="jo@example.com", source="form", channel=LeadChannel.FORM)
    ).lead
    assert (lead.pipeline, lead.stage) == ("inbound", "new")
    moved = crm.move_lead(lead.id, "contacted", by="ana")
    assert moved.entity.status is LeadStatus.WORKING
    assert [c.to_stage for c in crm.history(SubjectKind.LEAD, lead.id)] == ["new", "contacted"]
    with pytest.raises(ValidationError) as caught:
        crm_of(store, lead_pipeline="sales")
    assert caught.value.field == "lead_pipeline"


def test_a_ticket_is_served_against_its_sla(store: Store) -> None:
    policy = SlaPolicy(
        name="standard",
        first_response=timedelta(hours=1),
        next_response=timedelta(hours=4),
        resolution=timedelta(hours=24),
    )
    crm = crm_of(store, sla_policies=[policy])
    person = crm.capture_lead(
        Touchpoint(email="ki@example.com", source="shop", channel=LeadChannel.FORM)
    ).contact
    ticket = crm.open_ticket(person.id, subject="Cannot log in", channel=TicketChannel.CHAT)
    assert ticket.status is TicketStatus.NEW
    clock = store.clock
    assert isinstance(clock, FixedClock)
    clock.advance(timedelta(minutes=30))
    report = crm.sla_status(ticket.id)
    first = report.timer(SlaMetric.FIRST_RESPONSE)
    assert first is not None
    assert first.state is SlaState.ACTIVE
    assert first.remaining is not None
    assert timedelta(minutes=29) < first.remaining < timedelta(minutes=30)
    ticket, reply = crm.reply_to_ticket(ticket.id, by="sam", text="Which browser do you use?")
    assert ticket.status is TicketStatus.OPEN
    assert reply.ticket_id == ticket.id
    crm.move_ticket(ticket.id, TicketStatus.PENDING, by="sam", reason="waiting for the customer")
    clock.advance(timedelta(hours=30))  # pending: the clocks stand still
    assert not crm.sla_status(ticket.id).breached
    ticket, _ = crm.reply_to_ticket(ticket.id, by=None, text="Firefox")
    assert ticket.status is TicketStatus.OPEN  # the customer's reply reopens it
    clock.advance(timedelta(hours=5))  # the next response is late
    late = crm.sla_reports()
    assert [r.ticket_id for r in breached(late, SlaMetric.NEXT_RESPONSE)] == [ticket.id]
    solved = crm.solve_ticket(ticket.id, by="sam").entity
    assert crm.record_csat(solved.id, 5).csat == 5
    assert crm.sla_reports() == []  # solved tickets are done
    crm.move_ticket(ticket.id, TicketStatus.CLOSED, by="sam")
    with pytest.raises(TransitionNotAllowed, match="closed ticket"):
        crm.reply_to_ticket(ticket.id, by=None, text="one more thing")
    statuses = [c.to_stage for c in crm.history(SubjectKind.TICKET, ticket.id)]
    assert statuses == ["open", "pending", "open", "solved", "closed"]
    kinds = [e.kind for e in crm.timeline(person.id)]
    assert TimelineKind.TICKET_OPENED in kinds


def test_what_the_review_found_stays_fixed(store: Store) -> None:
    inbound = Pipeline(
        key="inbound",
        label="Inbound",
        subject=SubjectKind.LEAD,
        stages=(
            Stage(key="new", label="New"),
            Stage(key="contacted", label="Contacted", probability=Decimal("0.3")),
            Stage(key="qualified", label="Qualified", probability=Decimal(1), kind=StageKind.WON),
            Stage(key="junk", label="Junk", kind=StageKind.LOST),
        ),
        mode=TransitionMode.ANY,
        reopen=True,
    )
    # Each touch its own lead here (the default attaches a repeat touch to the open lead).
    crm = crm_of(
        store, pipelines=[SALES, inbound], lead_pipeline="inbound", repeat_touch="new_lead"
    )
    # E-mail addresses match without case: no second contact for the same person.
    first = crm.capture_lead(
        Touchpoint(email="Ada.Lovelace@example.com", source="form", channel=LeadChannel.FORM)
    )
    second = crm.capture_lead(
        Touchpoint(email="ada.lovelace@EXAMPLE.com", source="chat", channel=LeadChannel.CHAT)
    )
    assert second.contact.id == first.contact.id
    assert not second.contact_created
    # Disqualifying a lead in a pipeline moves it to the lost stage, with history; a
    # later move between open stages keeps it disqualified only by reopening it on purpose.
    gone = crm.disqualify_lead(second.lead.id, reason="duplicate request")
    assert (gone.stage, gone.status) == ("junk", LeadStatus.DISQUALIFIED)
    assert [c.to_stage for c in crm.history(SubjectKind.LEAD, gone.id)] == ["new", "junk"]
    # Converting qualifies the lead in its pipeline; a converted lead moves no more.
    converted = crm.convert_lead(first.lead.id, pipeline="sales", title="Ada")
    assert converted.lead.stage == "qualified"
    with pytest.raises(ClosedRecord) as refused:
        crm.move_lead(first.lead.id, "contacted", by="ana")
    assert (refused.value.codes, refused.value.state) == (("closed",), "converted")
    # Winning overrides a probability set by hand; a reason can be given.
    crm.update_deal(converted.deal.id, amount=Money("10", "EUR"), probability=Decimal("0.3"))
    crm.move_deal(converted.deal.id, "proposal", by="ana")
    won = crm.win_deal(converted.deal.id, by="ana", approved_by="Ben", reason="signed")
    assert won.entity.probability == 1
    assert won.change.reason == "signed; approved by Ben"
    # Replies are reply kinds; a note is not a reply.
    ticket = crm.open_ticket(first.contact.id, subject="Help", channel=TicketChannel.WEB)
    with pytest.raises(ValidationError) as note:
        crm.reply_to_ticket(ticket.id, by="sam", text="internal", kind=ActivityKind.NOTE)
    assert note.value.field == "kind"
    # Domain events from the host, and an explicit reset.
    referral = crm.advance_contact(first.contact.id, LifecycleEvent.REFERRAL)
    assert referral is not None
    assert referral.entity.lifecycle_stage is LifecycleStage.EVANGELIST
    back = crm.reset_contact(first.contact.id, LifecycleStage.LEAD, by="ana", reason="churned")
    assert back.entity.lifecycle_stage is LifecycleStage.LEAD


def test_bad_input_names_the_argument() -> None:
    store = MemoryStore()
    guards = Guards({"in_stock": in_stock})
    for options, field_name in (
        ({"mql_threshold": float("nan")}, "mql_threshold"),
        ({"enrich": "x"}, "enrich"),
        ({"pipelines": SALES}, "pipelines"),
        ({"lead_pipeline": "nowhere"}, "lead_pipeline"),
    ):
        with pytest.raises(ValidationError) as caught:
            CRM(store, guards=guards, **options)  # type: ignore[arg-type]
        assert caught.value.field == field_name
    crm = CRM(store, pipelines=[SALES], guards=guards)
    with pytest.raises(ValidationError) as touch:
        crm.capture_lead("ada@example.com")  # type: ignore[arg-type]
    assert touch.value.field == "touch"
    with pytest.raises(ValidationError) as tags:
        Touchpoint(email="a@example.com", source="x", channel=LeadChannel.FORM, tags="hot")  # type: ignore[arg-type]
    assert tags.value.field == "tags"
    lead = crm.capture_lead(
        Touchpoint(email="a@example.com", source="x", channel=LeadChannel.FORM)
    ).lead
    with pytest.raises(ValidationError) as score:
        crm.score_lead(lead.id, 10**400)
    assert score.value.field == "score"
    with pytest.raises(ValidationError) as email:
        crm.find_contact("not an address")
    assert email.value.field == "email"
    with pytest.raises(ValidationError) as activity:
        crm.record_activity("x")  # type: ignore[arg-type]
    assert activity.value.field == "activity"
