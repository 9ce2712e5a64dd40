"""The automation use cases on memory, SQLite and PostgreSQL: which rules an event
starts, and the step executors, run directly with a step built here (the durable steps
and the dispatcher call the same methods). Every executor is idempotent by step id: a
step run twice does nothing new."""

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4, uuid5

import attrs
import pytest

from crmkit.automation import (
    ACTION_STEP,
    SWEEP_STEP,
    AddTag,
    AddToSegment,
    AssignByCapacity,
    AssignByTerritory,
    Automation,
    AutomationRule,
    Branch,
    CallHook,
    Check,
    HookCall,
    Message,
    MoveStage,
    OnEvent,
    PlannedStep,
    RemoveTag,
    Rescore,
    Seat,
    SendMessage,
    StepResult,
    SubscriptionStart,
    Territory,
    Wait,
    WaitUntil,
    quarterly_check_in,
    sla_escalation,
    speed_to_lead,
)
from crmkit.crm import CRM
from crmkit.errors import AutomationLoop, UnknownReference, ValidationError
from crmkit.lifecycle import (
    BusinessCalendar,
    Pipeline,
    Stage,
    StageKind,
    StageRequirements,
    Touchpoint,
)
from crmkit.models import (
    ActivityKind,
    ConsentChannel,
    Contact,
    Deal,
    LeadChannel,
    LifecycleStage,
    Segment,
    SubjectKind,
    TaskKind,
    TicketChannel,
)
from crmkit.models.rules import Compare, Op, Rule, RuleEntity
from crmkit.privacy import ConsentPolicy, FrequencyCap
from crmkit.scoring import ScoringModel
from crmkit.storage import Store
from tests.storage_support import STORES, stepping_store

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday, 10:00 in Berlin
OFFICE = BusinessCalendar.workdays("Europe/Berlin", time(9), time(17))
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
            requires=StageRequirements(required_fields=frozenset({"amount"})),
        ),
        Stage(key="won", label="Won", probability=Decimal(1), kind=StageKind.WON),
        Stage(key="lost", label="Lost", kind=StageKind.LOST),
    ),
)
POLICY = ConsentPolicy({"newsletter"}, caps={ConsentChannel.EMAIL: FrequencyCap(2, 7)})
GERMANS = Rule(RuleEntity.CONTACT, Compare("country", Op.EQ, "DE"))


@attrs.frozen
class Step:
    """A durable step as AUTOMATION.md describes it (the timers' Step lands later)."""

    id: UUID
    kind: str
    payload: Any
    due_at: datetime
    subject: str | None
    subject_id: UUID | None
    attempts: int = 0
    status: str = "running"

    @classmethod
    def of(cls, planned: PlannedStep) -> "Step":
        return cls(
            planned.step_id,
            planned.kind,
            dict(planned.payload),
            planned.due_at,
            planned.subject,
            planned.subject_id,
        )


@attrs.frozen
class Event:
    """A domain event as AUTOMATION.md describes it (the events helper's lands later)."""

    type: str
    subject: str
    subject_id: UUID
    id: UUID = attrs.field(factory=uuid4)
    caused_by: UUID | None = None
    occurred_at: datetime = NOW


class Outbox:
    """The host's message channel: remembers what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[Message] = []

    def __call__(self, message: Message) -> None:
        self.sent.append(message)


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from stepping_store(request.param, tmp_path, NOW, "automation")


def make_crm(store: Store, **options: Any) -> CRM:
    return CRM(store, pipelines=[SALES], consent_policy=POLICY, **options)


def lead_of(crm: CRM, email: str, **touch: Any) -> Any:
    captured = crm.capture_lead(
        Touchpoint(email=email, source="web", channel=LeadChannel.FORM, **touch)
    )
    return captured.lead


def run_all(crm: CRM, automation: Automation, planned: list[PlannedStep]) -> list[StepResult]:
    """Run ``planned`` and every step they plan, in due order, each twice (a rerun must
    change nothing): the durable steps' loop, by hand."""
    results = []
    pending = list(planned)
    while pending:
        pending.sort(key=lambda p: p.due_at)
        step = Step.of(pending.pop(0))
        first = crm.run_automation_step(automation, step)
        again = crm.run_automation_step(automation, step)
        assert [p.step_id for p in again.next] == [p.step_id for p in first.next]
        results.append(first)
        pending.extend(first.next)
    return results


def tasks_of(crm: CRM) -> list[Any]:
    with crm.store.unit_of_work() as unit:
        return sorted(unit.tasks.select(), key=lambda t: t.title)


# ------------------------------------------------------------------ speed to lead


def test_speed_to_lead_assigns_in_turn_and_creates_a_call_task_once(store: Store) -> None:
    crm = make_crm(store)
    automation = Automation(
        [speed_to_lead(["ann", "bob"], within=timedelta(minutes=5), calendar="office")],
        calendars={"office": OFFICE},
    )
    crm.check_automation(automation)
    owners = []
    for email in ("a@example.com", "b@example.com", "c@example.com"):
        lead = lead_of(crm, email)
        event = Event("lead.captured", "lead", lead.id)
        planned = crm.automation_plan(automation, event)
        assert [p.step_id for p in planned] == [uuid5(event.id, "speed_to_lead:0")]
        again = crm.automation_plan(automation, event)  # redelivered: the same step
        assert [(p.step_id, p.payload) for p in again] == [(p.step_id, p.payload) for p in planned]
        (result,) = run_all(crm, automation, planned)
        assert result.done[1].endswith("create_task: created")
        with crm.store.unit_of_work() as unit:
            owners.append(unit.leads.get(lead.id).owner)
    assert owners == ["ann", "bob", "ann"]
    tasks = tasks_of(crm)
    assert len(tasks) == 3
    assert {t.kind for t in tasks} == {TaskKind.CALL}
    assert sorted(t.assignee for t in tasks) == ["ann", "ann", "bob"]
    assert all(t.due_at - t.created_at <= timedelta(minutes=5, seconds=5) for t in tasks)


def test_a_condition_that_does_not_hold_starts_nothing(store: Store) -> None:
    crm = make_crm(store)
    germans_only = speed_to_lead(["ann"], condition=GERMANS)
    automation = Automation([germans_only])
    french = lead_of(crm, "fr@example.com", country="FR")
    german = lead_of(crm, "de@example.com", country="DE")
    assert crm.automation_plan(automation, Event("lead.captured", "lead", french.id)) == []
    assert len(crm.automation_plan(automation, Event("lead.captured", "lead", german.id))) == 1
    assert crm.automation_plan(automation, Event("deal.won", "deal", uuid4())) == []


# ------------------------------------------------------------------ a nurture sequence


def nurture() -> AutomationRule:
    return AutomationRule(
        name="nurture",
        trigger=OnEvent("lead.captured"),
        actions=(
            Wait(timedelta(hours=2), calendar="office"),
            SendMessage("mail", ConsentChannel.EMAIL, "newsletter", "welcome"),
            WaitUntil(time(9)),
            Check(Rule(RuleEntity.CONTACT, Compare("lifecycle_stage", Op.EQ, "lead"))),
            SendMessage("mail", ConsentChannel.EMAIL, "newsletter", "case-study"),
            AddTag("nurtured"),
        ),
    )


def test_a_nurture_sequence_waits_sends_checks_and_goes_on(store: Store) -> None:
    crm = make_crm(store)
    outbox = Outbox()
    automation = Automation([nurture()], calendars={"office": OFFICE}, senders={"mail": outbox})
    lead = lead_of(crm, "tokyo@example.com", custom={"timezone": "Asia/Tokyo"})
    crm.record_consent(lead.contact_id, ConsentChannel.EMAIL, "newsletter", source="form")
    planned = crm.automation_plan(automation, Event("lead.captured", "lead", lead.id))
    first = crm.run_automation_step(automation, Step.of(planned[0]))
    (after_wait,) = first.next
    assert after_wait.due_at - NOW - timedelta(hours=2) < timedelta(seconds=10)  # business hours
    assert after_wait.step_id == uuid5(UUID(planned[0].payload["origin"]), "nurture:1")
    second = crm.run_automation_step(automation, Step.of(after_wait))
    assert [m.template for m in outbox.sent] == ["welcome"]
    (at_nine,) = second.next
    assert at_nine.due_at == datetime(2026, 3, 3, 0, tzinfo=UTC)  # 09:00 in Tokyo
    crm.run_automation_step(automation, Step.of(after_wait))  # run twice: sent once
    assert len(outbox.sent) == 1
    last = crm.run_automation_step(automation, Step.of(at_nine))
    assert not last.stopped
    assert [m.template for m in outbox.sent] == ["welcome", "case-study"]
    assert outbox.sent[0].message_id != outbox.sent[1].message_id
    with crm.store.unit_of_work() as unit:
        assert "nurtured" in unit.contacts.get(lead.contact_id).tags
        sent = unit.activities.for_contact(lead.contact_id)
    assert [a.kind for a in sent].count(ActivityKind.EMAIL_SENT) == 2
    assert {a.id for a in sent} >= {m.message_id for m in outbox.sent}


def test_the_sequence_stops_when_its_check_fails(store: Store) -> None:
    crm = make_crm(store)
    outbox = Outbox()
    automation = Automation([nurture()], calendars={"office": OFFICE}, senders={"mail": outbox})
    lead = lead_of(crm, "x@example.com")
    crm.record_consent(lead.contact_id, ConsentChannel.EMAIL, "newsletter", source="form")
    planned = crm.automation_plan(automation, Event("lead.captured", "lead", lead.id))
    crm.reset_contact(lead.contact_id, LifecycleStage.CUSTOMER, by="ann", reason="bought")
    results = run_all(crm, automation, planned)
    assert results[-1].stopped
    assert results[-1].done[-1] == "actions[3] check: does not hold"
    assert [m.template for m in outbox.sent] == ["welcome"]


def test_messages_go_only_to_the_reachable_and_under_the_cap(store: Store) -> None:
    crm = make_crm(store)
    outbox = Outbox()
    send = AutomationRule(
        "send",
        OnEvent("contact.created"),
        [SendMessage("mail", ConsentChannel.EMAIL, "newsletter", "hello")],
    )
    automation = Automation([send], senders={"mail": outbox})
    contact = crm.create_contact(Contact.new(email="no-consent@example.com", clock=crm.clock))
    (result,) = run_all(
        crm,
        automation,
        crm.automation_plan(automation, Event("contact.created", "contact", contact.id)),
    )
    assert result.done == (
        "actions[0] send_message: skipped: not reachable on email for newsletter",
    )
    crm.record_consent(contact.id, ConsentChannel.EMAIL, "newsletter", source="form")
    for _ in range(3):  # the cap is two e-mails a week
        run_all(
            crm,
            automation,
            crm.automation_plan(automation, Event("contact.created", "contact", contact.id)),
        )
    assert len(outbox.sent) == 2


# ------------------------------------------------------------------ the other actions


def add_deal(crm: CRM, **fields: Any) -> Deal:
    deal = Deal.new(title="Deal", pipeline="sales", stage="discovery", clock=crm.clock, **fields)
    with crm.store.unit_of_work() as unit:
        unit.deals.add(deal)
        unit.commit()
    return deal


def test_stage_moves_tags_segments_and_territories(store: Store) -> None:
    crm = make_crm(store)
    contact = crm.create_contact(
        Contact.new(email="d@example.com", country="DE", tags={"old"}, clock=crm.clock)
    )
    segment = Segment.new(name="Movers", clock=crm.clock)
    with crm.store.unit_of_work() as unit:
        unit.segments.add(segment)
        unit.commit()
    deal = add_deal(crm, contact_id=contact.id)
    rule = AutomationRule(
        "deal_flow",
        OnEvent("deal.won"),
        [
            MoveStage("proposal", "sales"),  # needs an amount: refused, and the rest goes on
            Branch(GERMANS, [AssignByTerritory((Territory(GERMANS, "dach"),), otherwise="rest")]),
            AddTag("moved"),
            RemoveTag("old"),
            AddToSegment(segment.id),
            MoveStage("lost", "sales"),
            MoveStage("customer"),
        ],
    )
    automation = Automation([rule], pipelines=[SALES])
    planned = crm.automation_plan(automation, Event("deal.won", "deal", deal.id))
    (result,) = run_all(crm, automation, planned)
    assert result.done[0].startswith("actions[0] move_stage: refused: ")
    assert result.done[2] == "actions[1].then[0] assign_by_territory: assigned to dach"
    assert result.done[-1] == "actions[6] move_stage: moved to customer"
    with crm.store.unit_of_work() as unit:
        stored = unit.deals.get(deal.id)
        person = unit.contacts.get(contact.id)
        members = unit.segments.get(segment.id).members
    assert (stored.stage, stored.owner) == ("lost", "dach")
    assert person.tags == frozenset({"moved"})
    assert person.lifecycle_stage is LifecycleStage.CUSTOMER
    assert members == frozenset({contact.id})
    again = crm.run_automation_step(automation, Step.of(planned[0]))
    assert "unchanged" in again.done[-1]
    assert "unchanged" in again.done[-2]


def test_assignment_by_capacity_fills_the_freest_seat(store: Store) -> None:
    crm = make_crm(store)
    rule = AutomationRule(
        "capacity",
        OnEvent("lead.captured"),
        [AssignByCapacity((Seat("ann", 1), Seat("bob", 2)), overflow="queue")],
    )
    automation = Automation([rule])
    owners = []
    for n in range(4):
        lead = lead_of(crm, f"l{n}@example.com")
        run_all(
            crm,
            automation,
            crm.automation_plan(automation, Event("lead.captured", "lead", lead.id)),
        )
        with crm.store.unit_of_work() as unit:
            owners.append(unit.leads.get(lead.id).owner)
    assert owners == ["ann", "bob", "bob", "queue"]


def test_sla_escalation_warns_and_reassigns_on_breach(store: Store) -> None:
    crm = make_crm(store)
    warn, breach = sla_escalation(["esc1", "esc2"])
    automation = Automation([warn, breach])
    contact = crm.create_contact(Contact.new(email="t@example.com", clock=crm.clock))
    ticket = crm.open_ticket(
        contact.id, subject="Broken", channel=TicketChannel.EMAIL, assignee="ann"
    )
    run_all(
        crm, automation, crm.automation_plan(automation, Event("sla.at_risk", "ticket", ticket.id))
    )
    run_all(
        crm, automation, crm.automation_plan(automation, Event("sla.breached", "ticket", ticket.id))
    )
    with crm.store.unit_of_work() as unit:
        assert unit.tickets.get(ticket.id).assignee == "esc1"
    tasks = tasks_of(crm)
    assert [(t.title, t.assignee, t.ticket_id) for t in tasks] == [
        ("SLA at risk: answer the ticket", "ann", ticket.id),
        ("SLA breached: take over the ticket", "esc1", ticket.id),
    ]


def test_a_sweep_starts_the_scheduled_rule_for_each_match_and_plans_the_next(store: Store) -> None:
    crm = make_crm(store)
    automation = Automation([quarterly_check_in(due_in=timedelta(days=1))])
    customer = crm.create_contact(Contact.new(email="c@example.com", owner="ann", clock=crm.clock))
    crm.reset_contact(customer.id, LifecycleStage.CUSTOMER, by="ann", reason="won")
    crm.create_contact(
        Contact.new(email="p@example.com", clock=crm.clock)
    )  # a subscriber: not swept
    (first,) = crm.first_sweeps(automation)
    assert first.kind == SWEEP_STEP
    assert first.due_at > NOW
    swept = crm.run_automation_step(automation, Step.of(first))
    starts, following = swept.next[:-1], swept.next[-1]
    assert [p.subject_id for p in starts] == [customer.id]
    assert following.kind == SWEEP_STEP
    assert following.due_at - first.due_at == timedelta(days=91)
    rerun = crm.run_automation_step(automation, Step.of(first)).next
    assert [p.step_id for p in rerun] == [p.step_id for p in swept.next]
    run_all(crm, automation, list(starts))
    (task,) = tasks_of(crm)
    assert (task.kind, task.assignee, task.contact_id) == (TaskKind.CHECK_IN, "ann", customer.id)


def test_hooks_get_the_step_id_and_rescoring_uses_the_model(store: Store) -> None:
    calls: list[HookCall] = []
    crm = make_crm(store, scoring=ScoringModel("empty", criteria=()))
    rule = AutomationRule(
        "hooked",
        OnEvent("lead.captured"),
        [CallHook("crm_sync", params={"queue": "sales"}), Rescore()],
    )
    automation = Automation([rule], hooks={"crm_sync": lambda _crm, call: calls.append(call)})
    crm.check_automation(automation)
    lead = lead_of(crm, "h@example.com")
    planned = crm.automation_plan(automation, Event("lead.captured", "lead", lead.id))
    (result,) = run_all(crm, automation, planned)
    assert result.done[-1] == "actions[1] rescore: rescored 1 lead"
    assert calls[0].step_id == planned[0].step_id
    assert (calls[0].subject, calls[0].subject_id, calls[0].params["queue"]) == (
        "lead",
        lead.id,
        "sales",
    )
    assert calls[0] == calls[1]  # run twice: the same call, for the host to deduplicate


def test_a_deleted_subject_ends_the_sequence(store: Store) -> None:
    crm = make_crm(store)
    automation = Automation([AutomationRule("tag", OnEvent("contact.created"), [AddTag("x")])])
    contact = crm.create_contact(Contact.new(email="gone@example.com", clock=crm.clock))
    planned = crm.automation_plan(automation, Event("contact.created", "contact", contact.id))
    crm.delete_contact(contact.id)
    result = crm.run_automation_step(automation, Step.of(planned[0]))
    assert result.stopped
    assert result.done == ("actions[0] add_tag: the contact is gone",)


# ------------------------------------------------------------------ bad input


def test_installing_checks_the_crm_configuration(store: Store) -> None:
    crm = CRM(store, pipelines=[SALES])
    mover = AutomationRule("m", OnEvent("deal.won"), [MoveStage("signed", "sales")])
    with pytest.raises(UnknownReference) as stage:
        crm.check_automation(Automation([mover]))
    assert stage.value.field == "rules[0].actions[0].stage"
    rescore = AutomationRule("r", OnEvent("lead.captured"), [Rescore()])
    with pytest.raises(UnknownReference, match="scoring model"):
        crm.check_automation(Automation([rescore]))
    send = AutomationRule(
        "s", OnEvent("lead.captured"), [SendMessage("mail", ConsentChannel.EMAIL, "ads", "x")]
    )
    with pytest.raises(UnknownReference, match="consent policy"):
        crm.check_automation(Automation([send], senders={"mail": print}))
    with pytest.raises(UnknownReference) as purpose:
        make_crm(store).check_automation(Automation([send], senders={"mail": print}))
    assert purpose.value.field == "rules[0].actions[0].purpose"


def test_malformed_steps_raise_validation_errors_and_change_nothing(store: Store) -> None:
    crm = make_crm(store)
    automation = Automation([AutomationRule("tag", OnEvent("contact.created"), [AddTag("x")])])
    contact = crm.create_contact(Contact.new(email="m@example.com", clock=crm.clock))
    (good,) = crm.automation_plan(automation, Event("contact.created", "contact", contact.id))
    step = Step.of(good)
    bad_steps = [
        attrs.evolve(step, kind="email.send"),
        attrs.evolve(step, payload={**step.payload, "rule": "nope"}),
        attrs.evolve(step, payload={**step.payload, "index": 7}),
        attrs.evolve(step, payload={**step.payload, "subject": "galaxy"}),
        attrs.evolve(step, payload={k: v for k, v in step.payload.items() if k != "origin"}),
        attrs.evolve(step, id=uuid4()),  # not the id this payload's step has
        attrs.evolve(step, payload="not a mapping"),
    ]
    for bad in bad_steps:
        with pytest.raises(ValidationError):
            crm.run_automation_step(automation, bad)
    with crm.store.unit_of_work() as unit:
        assert unit.contacts.get(contact.id).tags == frozenset()
    with pytest.raises(ValidationError):
        crm.automation_plan(automation, Event("contact.created", "planet", contact.id))
    assert step.kind == ACTION_STEP


# ------------------------------------------------------------------ the install glue


class RecordingHost:
    """A CRM with the three calls of the events and steps interfaces recorded in lists
    (the real ones land with the other parts of issue 16), and the causes of ids."""

    def __init__(self, crm: CRM) -> None:
        self.crm = crm
        self.subscribed: list[tuple[str, str]] = []
        self.handlers: dict[str, Any] = {}
        self.runners: dict[str, Any] = {}
        self.scheduled: dict[UUID, PlannedStep] = {}
        self.causes: dict[UUID, UUID | None] = {}

    def subscribe(
        self,
        event_type: str,
        handler: Any,
        *,
        name: str,
        max_attempts: int = 5,
        start: SubscriptionStart = SubscriptionStart.BEGINNING,
    ) -> None:
        self.subscribed.append((event_type, name))
        assert start is SubscriptionStart.NOW  # rules react to what happens from now on
        self.handlers[event_type] = handler

    def schedule_step(
        self,
        kind: str,
        payload: Any,
        *,
        due_at: datetime,
        step_id: Any = None,
        subject: Any = None,
        subject_id: Any = None,
    ) -> None:
        self.scheduled.setdefault(
            step_id, PlannedStep(step_id, kind, payload, due_at, subject, subject_id)
        )

    def register_runner(self, kind: str, runner: Any) -> None:
        self.runners[kind] = runner

    def cause_of(self, id: UUID) -> UUID | None:
        return self.causes.get(id)

    def __getattr__(self, name: str) -> Any:  # the automation use cases: the CRM's
        return getattr(self.crm, name)


def test_install_subscribes_registers_and_schedules_through_the_interfaces(store: Store) -> None:
    crm = make_crm(store)
    host = RecordingHost(crm)
    automation = Automation(
        [speed_to_lead(["ann"]), quarterly_check_in(), *sla_escalation(["esc"])], name="sales_ops"
    )
    automation.install(host)  # type: ignore[arg-type]
    assert host.subscribed == [
        ("lead.captured", "sales_ops:lead.captured"),
        ("sla.at_risk", "sales_ops:sla.at_risk"),
        ("sla.breached", "sales_ops:sla.breached"),
    ]
    assert set(host.runners) == {ACTION_STEP, SWEEP_STEP}
    (sweep,) = host.scheduled.values()
    assert sweep.kind == SWEEP_STEP
    lead = lead_of(crm, "glue@example.com")
    event = Event("lead.captured", "lead", lead.id)
    host.handlers["lead.captured"](host, event)
    host.handlers["lead.captured"](host, event)  # delivered twice: one step
    (step,) = [p for p in host.scheduled.values() if p.kind == ACTION_STEP]
    host.runners[ACTION_STEP](host, Step.of(step))
    with crm.store.unit_of_work() as unit:
        assert unit.leads.get(lead.id).owner == "ann"
    # a chain of causes deeper than max_depth is refused, and nothing is scheduled
    chain = [uuid4() for _ in range(10)]
    host.causes.update(itertools.pairwise(chain))
    deep = Event("lead.captured", "lead", lead.id, caused_by=chain[0])
    before = dict(host.scheduled)
    with pytest.raises(AutomationLoop):
        host.handlers["lead.captured"](host, deep)
    assert host.scheduled == before
