"""The CRM service: one object that runs every use case in one unit of work."""

import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final, cast
from uuid import UUID

import attrs

from crmkit.clock import Clock
from crmkit.errors import TransitionNotAllowed, ValidationError
from crmkit.lifecycle import (
    AGENT_REPLY_KINDS,
    CUSTOMER_REPLY_KINDS,
    Captured,
    CheckInPlan,
    Converted,
    Enrichment,
    FollowUps,
    Guards,
    LifecycleEvent,
    Moved,
    Pipeline,
    PipelineMachine,
    Qualified,
    SlaPolicies,
    SlaPolicy,
    SlaReport,
    StageKind,
    TimelineEntry,
    Touchpoint,
    accept_lead,
    advance_contact,
    cancel_task,
    capture_lead,
    check_ins_due,
    complete_task,
    convert_lead,
    disqualify_lead,
    follow_ups,
    move_ticket,
    record_csat,
    reset_contact,
    score_lead,
    sla_status,
    ticket_events,
    timeline,
)
from crmkit.models import (
    Activity,
    ActivityKind,
    Contact,
    Deal,
    DealStatus,
    EmailAddress,
    JSONScalar,
    Lead,
    LifecycleStage,
    Money,
    StageChange,
    SubjectKind,
    Task,
    TaskStatus,
    Ticket,
    TicketChannel,
    TicketPriority,
    TicketStatus,
)
from crmkit.scoring import ScoreCard, ScoringModel, score
from crmkit.segmentation import (
    Context,
    contacts_where,
    deals_where,
    field,
    leads_where,
    tickets_where,
)
from crmkit.storage import Store, UnitOfWork

__all__ = ["CRM"]

_DONE: Final = frozenset({TicketStatus.SOLVED, TicketStatus.CLOSED})
_OPENED_BY_AGENT: Final = frozenset({TicketStatus.NEW})
_REOPENED_BY_CUSTOMER: Final = frozenset(
    {TicketStatus.PENDING, TicketStatus.ON_HOLD, TicketStatus.SOLVED}
)


class CRM:
    """A store, a clock and the configured pipelines, wired: the friendly entry point.

    Every method is one use case and runs in one unit of work: either everything it
    changes is stored, with its stage history and timeline activity, or nothing is.
    Invalid input raises a :mod:`crmkit.errors` exception before anything is written.

    ``mql_threshold`` is the lead score at which marketing has qualified a lead (a
    ``scoring`` model's own ``mql_at`` takes its place when set); ``enrich`` is the
    host's enrichment hook for captured leads; ``guards`` holds the guard callables the
    pipelines' stages name; ``scoring`` is the rule scoring model of
    :meth:`rescore_lead`; ``lead_pipeline`` names the lead pipeline that captured leads
    start in; ``sla_policies`` are the ticket SLA policies, the first that matches a ticket
    applies.
    """

    def __init__(
        self,
        store: Store,
        *,
        pipelines: Iterable[Pipeline] = (),
        guards: Guards | None = None,
        mql_threshold: float = 50.0,
        enrich: Enrichment | None = None,
        scoring: ScoringModel | None = None,
        lead_pipeline: str | None = None,
        sla_policies: Iterable[SlaPolicy] = (),
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.clock: Clock = store.clock if clock is None else clock
        if not isinstance(self.clock, Clock):
            raise ValidationError("clock", clock, "expected a Clock (an object with now())")
        if isinstance(pipelines, Pipeline) or not isinstance(pipelines, Iterable):
            raise ValidationError("pipelines", pipelines, "expected a collection of Pipelines")
        if enrich is not None and not callable(enrich):
            raise ValidationError("enrich", enrich, "expected a callable or None")
        machines: dict[str, PipelineMachine[Deal] | PipelineMachine[Lead]] = {}
        for index, pipeline in enumerate(pipelines):
            if not isinstance(pipeline, Pipeline):
                raise ValidationError(f"pipelines[{index}]", pipeline, "expected a Pipeline")
            if pipeline.key in machines:
                raise ValidationError(f"pipelines[{index}].key", pipeline.key, "is used twice")
            machines[pipeline.key] = PipelineMachine(pipeline, guards=guards, clock=self.clock)
        if (
            isinstance(mql_threshold, bool)
            or not isinstance(mql_threshold, int | float)
            or not math.isfinite(mql_threshold)
        ):
            raise ValidationError("mql_threshold", mql_threshold, "expected a finite number")
        self._machines = machines
        self.mql_threshold = float(mql_threshold)
        self.enrich = enrich
        if scoring is not None and not isinstance(scoring, ScoringModel):
            raise ValidationError("scoring", scoring, "expected a ScoringModel")
        self.scoring = scoring
        self.lead_pipeline: Pipeline | None = None
        if lead_pipeline is not None:
            found = machines.get(lead_pipeline) if isinstance(lead_pipeline, str) else None
            if found is None:
                raise ValidationError("lead_pipeline", lead_pipeline, "no such pipeline")
            pipeline = found.pipeline
            if pipeline.subject is not SubjectKind.LEAD:
                raise ValidationError("lead_pipeline", lead_pipeline, "is not a lead pipeline")
            self.lead_pipeline = pipeline
        self.sla_policies = (
            sla_policies if isinstance(sla_policies, SlaPolicies) else SlaPolicies(sla_policies)
        )

    @property
    def pipelines(self) -> Mapping[str, Pipeline]:
        """The configured pipelines by key."""
        return MappingProxyType({k: m.pipeline for k, m in self._machines.items()})

    def machine(self, pipeline: str) -> PipelineMachine[Deal] | PipelineMachine[Lead]:
        """The state machine of pipeline ``pipeline``."""
        try:
            return self._machines[pipeline]
        except (KeyError, TypeError):
            raise ValidationError("pipeline", pipeline, "no such pipeline is configured") from None

    def _deal_machine(self, pipeline: str) -> PipelineMachine[Deal]:
        machine = self.machine(pipeline)
        if machine.pipeline.subject is not SubjectKind.DEAL:
            raise ValidationError("pipeline", pipeline, "is not a deal pipeline")
        return machine  # type: ignore[return-value]

    @contextmanager
    def _unit(self) -> Iterator[UnitOfWork]:
        with self.store.unit_of_work() as unit:
            yield unit
            unit.commit()

    @staticmethod
    def _record(unit: UnitOfWork, changes: Iterable[StageChange]) -> None:
        for change in changes:
            unit.stage_history.add(change)

    # ------------------------------------------------------------------ step 2: acquire

    def find_contact(self, email: str) -> Contact | None:
        """The contact with this e-mail address (normalised first), if there is one."""
        with self.store.unit_of_work() as unit:
            try:
                address = EmailAddress(email)
            except ValidationError as error:
                raise error.within("email") from None
            return self._contact_by_email(unit, address)

    @staticmethod
    def _contact_by_email(unit: UnitOfWork, email: EmailAddress) -> Contact | None:
        """The contact with ``email``, compared without case: first the exact address
        (an index look-up), then every address of the domain (a scan of those)."""
        exact = unit.contacts.find(contacts_where(field("email") == email), limit=1).items
        if exact:
            return exact[0]
        wanted = email.casefold()
        same_domain = contacts_where(field("email").endswith(f"@{email.domain}"))
        found = [c for c in unit.contacts.iterate(same_domain) if c.email.casefold() == wanted]  # type: ignore[union-attr]
        return min(found, key=lambda c: (c.created_at, c.id)) if found else None

    def capture_lead(self, touch: Touchpoint, *, owner: str | None = None) -> Captured:
        """Capture a lead from an inbound touchpoint: match the contact by e-mail or create
        it, fill what it lacks (touchpoint, then enrichment), add the lead and the
        timeline activity, and advance the contact to ``lead``."""
        if not isinstance(touch, Touchpoint):
            raise ValidationError("touch", touch, "expected a Touchpoint")
        enrich = None
        if self.enrich is not None:  # outside the unit of work: it may be a slow call
            extra = self.enrich(touch.email)

            def enrich(_: EmailAddress) -> Mapping[str, Any]:
                return extra

        with self._unit() as unit:
            existing = self._contact_by_email(unit, touch.email)
            captured = capture_lead(
                touch,
                existing,
                enrich=enrich,
                owner=owner,
                pipeline=self.lead_pipeline,
                clock=self.clock,
            )
            contact = captured.contact
            if captured.contact_created:
                unit.contacts.add(contact)
            elif captured.contact_changed:
                contact = unit.contacts.update(contact)
            unit.leads.add(captured.lead)
            unit.activities.append(captured.activity)
            self._record(unit, captured.changes)
        return attrs.evolve(captured, contact=contact)

    # ------------------------------------------------------------------ step 3: convert

    def score_lead(self, lead_id: UUID, score: float) -> Qualified:
        """Record a lead's score; at ``mql_threshold`` or above its contact becomes an MQL."""
        with self._unit() as unit:
            lead = unit.leads.get(lead_id)
            contact = unit.contacts.get(lead.contact_id)
            qualified = score_lead(
                lead, contact, score, threshold=self.mql_threshold, clock=self.clock
            )
            stored = unit.leads.update(qualified.lead)
            moved = self._stored_move(unit, qualified.contact)
        return Qualified(stored, moved)

    @staticmethod
    def _stored_move(unit: UnitOfWork, moved: Moved[Contact] | None) -> Moved[Contact] | None:
        if moved is None:
            return None
        contact = unit.contacts.update(moved.entity)
        unit.stage_history.add(moved.change)
        return Moved(contact, moved.change)

    def rescore_lead(self, lead_id: UUID) -> tuple[Qualified, ScoreCard]:
        """Score a lead with the ``scoring`` model, from its contact and the contact's
        activities as stored now, and record the score as :meth:`score_lead` does.

        Returns the outcome and the score card that explains the score.
        """
        model = self.scoring
        if model is None:
            raise ValidationError("scoring", None, "this CRM has no scoring model")
        with self._unit() as unit:
            lead = unit.leads.get(lead_id)
            contact = unit.contacts.get(lead.contact_id)
            context = Context(
                now=self.clock.now(),
                activities={contact.id: unit.activities.for_contact(contact.id)},
                segments={s.id: s for s in unit.segments.iterate()},
            )
            card = score(model, lead, context, contact=contact)
            threshold = self.mql_threshold if model.mql_at is None else model.mql_at
            qualified = score_lead(lead, contact, card.total, threshold=threshold, clock=self.clock)
            stored = unit.leads.update(qualified.lead)
            moved = self._stored_move(unit, qualified.contact)
        return Qualified(stored, moved), card

    def _close_lead(
        self, unit: UnitOfWork, lead: Lead, kind: StageKind, by: str | None, reason: str | None
    ) -> Lead:
        """Move a lead that is in a lead pipeline to the pipeline's won or lost stage, with
        its history entry, so that its stage and its status agree."""
        if lead.pipeline is None:
            return lead
        machine = cast(PipelineMachine[Lead], self.machine(lead.pipeline))
        pipeline = machine.pipeline
        target = pipeline.won() if kind is StageKind.WON else pipeline.lost()
        if target is None or lead.stage == target.key:
            return lead
        moved = machine.move(lead, target.key, by=by, reason=reason)
        unit.stage_history.add(moved.change)
        return moved.entity

    def accept_lead(self, lead_id: UUID, *, by: str) -> Qualified:
        """Sales accepts a lead: it is qualified and its contact becomes an SQL."""
        with self._unit() as unit:
            lead = unit.leads.get(lead_id)
            qualified = accept_lead(
                lead, unit.contacts.get(lead.contact_id), by=by, clock=self.clock
            )
            accepted = self._close_lead(
                unit, qualified.lead, StageKind.WON, by, "accepted by sales"
            )
            qualified = Qualified(accepted, qualified.contact)
            stored = unit.leads.update(qualified.lead)
            moved = self._stored_move(unit, qualified.contact)
        return Qualified(stored, moved)

    def disqualify_lead(self, lead_id: UUID, *, reason: str) -> Lead:
        """Disqualify an open lead, with the reason."""
        with self._unit() as unit:
            gone = disqualify_lead(unit.leads.get(lead_id), reason=reason, clock=self.clock)
            return unit.leads.update(self._close_lead(unit, gone, StageKind.LOST, None, reason))

    def convert_lead(
        self,
        lead_id: UUID,
        *,
        pipeline: str,
        title: str,
        amount: Money | None = None,
        expected_close: date | None = None,
        by: str | None = None,
    ) -> Converted:
        """Convert a lead into a deal in the first stage of ``pipeline``, atomically: the
        deal, its stage history, the converted lead and the contact's move to
        opportunity are stored together."""
        machine = self._deal_machine(pipeline)
        with self._unit() as unit:
            lead = unit.leads.get(lead_id)
            contact = unit.contacts.get(lead.contact_id)
            lead = self._close_lead(unit, lead, StageKind.WON, by, "converted into a deal")
            converted = convert_lead(
                lead,
                contact,
                machine,
                title=title,
                amount=amount,
                expected_close=expected_close,
                by=by,
            )
            unit.deals.add(converted.deal)
            stored_lead = unit.leads.update(converted.lead)
            stored_contact = converted.contact
            if converted.contact_changed:
                stored_contact = unit.contacts.update(converted.contact)
            self._record(unit, converted.changes)
        return Converted(
            stored_lead,
            converted.deal,
            converted.changes,
            stored_contact,
            converted.contact_changed,
        )

    def update_deal(
        self,
        deal_id: UUID,
        *,
        title: str | None = None,
        amount: Money | None = None,
        probability: Decimal | None = None,
        expected_close: date | None = None,
        owner: str | None = None,
        custom: Mapping[str, JSONScalar] | None = None,
    ) -> Deal:
        """Change a deal's details; what is not given stays as it is.

        Stage, status and the closing fields change only through moves. A probability
        given here is kept from then on (``probability_manual``); ``custom`` adds to
        and replaces the deal's custom fields (a value of ``None`` is stored as null).
        """
        with self._unit() as unit:
            deal = unit.deals.get(deal_id)
            changes: dict[str, Any] = {
                name: value
                for name, value in (
                    ("title", title),
                    ("amount", amount),
                    ("expected_close", expected_close),
                    ("owner", owner),
                )
                if value is not None
            }
            if probability is not None:
                changes |= {"probability": probability, "probability_manual": True}
            if custom is not None:
                if not isinstance(custom, Mapping):
                    raise ValidationError("custom", custom, "expected a mapping")
                changes["custom"] = {**deal.custom, **custom}
            if not changes:
                return deal
            return unit.deals.update(attrs.evolve(deal, **changes, updated_at=self.clock.now()))

    def move_deal(
        self,
        deal_id: UUID,
        to: str,
        *,
        by: str,
        reason: str | None = None,
        approved_by: str | None = None,
    ) -> Moved[Deal]:
        """Move a deal to stage ``to`` of its pipeline (see :class:`PipelineMachine`).

        Winning a deal makes its contact a customer, in the same unit of work.
        """
        return self._move_deal(deal_id, to, by, reason, approved_by)

    def win_deal(
        self,
        deal_id: UUID,
        *,
        by: str,
        reason: str | None = None,
        approved_by: str | None = None,
    ) -> Moved[Deal]:
        """Move a deal to the (first) won stage of its pipeline."""
        return self._move_deal(deal_id, StageKind.WON, by, reason, approved_by)

    def lose_deal(
        self, deal_id: UUID, *, by: str, reason: str, approved_by: str | None = None
    ) -> Moved[Deal]:
        """Move a deal to the (first) lost stage of its pipeline, with the reason."""
        return self._move_deal(deal_id, StageKind.LOST, by, reason, approved_by)

    def _move_deal(
        self,
        deal_id: UUID,
        to: str | StageKind,
        by: str,
        reason: str | None,
        approved_by: str | None,
    ) -> Moved[Deal]:
        """The deal's move to stage ``to``, or to the first won or lost stage of its
        pipeline when ``to`` is a kind, read and written in one unit of work."""
        with self._unit() as unit:
            deal = unit.deals.get(deal_id)
            machine = self._deal_machine(deal.pipeline)
            if isinstance(to, StageKind):
                target = machine.pipeline.won() if to is StageKind.WON else machine.pipeline.lost()
                if target is None:
                    raise ValidationError("pipeline", deal.pipeline, "has no lost stage")
                to = target.key
            moved = machine.move(deal, to, by=by, reason=reason, approved_by=approved_by)
            stored = unit.deals.update(moved.entity)
            unit.stage_history.add(moved.change)
            if stored.status is DealStatus.WON and stored.contact_id is not None:
                contact = unit.contacts.get(stored.contact_id)
                won = advance_contact(contact, LifecycleEvent.DEAL_WON, by=by, clock=self.clock)
                self._stored_move(unit, won)
        return Moved(stored, moved.change)

    def move_lead(
        self,
        lead_id: UUID,
        to: str,
        *,
        by: str,
        reason: str | None = None,
        approved_by: str | None = None,
    ) -> Moved[Lead]:
        """Move a lead through its lead pipeline (``lead.pipeline``)."""
        with self._unit() as unit:
            lead = unit.leads.get(lead_id)
            if lead.pipeline is None:
                raise ValidationError("pipeline", None, "the lead is in no pipeline")
            machine = self.machine(lead.pipeline)
            if machine.pipeline.subject is not SubjectKind.LEAD:
                raise ValidationError("pipeline", lead.pipeline, "is not a lead pipeline")
            moved = machine.move(lead, to, by=by, reason=reason, approved_by=approved_by)  # type: ignore[arg-type]
            stored = unit.leads.update(moved.entity)  # type: ignore[arg-type]
            unit.stage_history.add(moved.change)
        return Moved(stored, moved.change)

    def advance_contact(
        self, contact_id: UUID, event: LifecycleEvent, *, by: str | None = None
    ) -> Moved[Contact] | None:
        """Advance a contact for a domain event the host observed (a referral, promoter
        feedback, ...); ``None`` when the contact is already as far."""
        with self._unit() as unit:
            contact = unit.contacts.get(contact_id)
            return self._stored_move(unit, advance_contact(contact, event, by=by, clock=self.clock))

    def reset_contact(
        self, contact_id: UUID, to: LifecycleStage, *, by: str, reason: str
    ) -> Moved[Contact]:
        """Put a contact back (or anywhere) in the lifecycle, saying who and why."""
        with self._unit() as unit:
            contact = unit.contacts.get(contact_id)
            moved = reset_contact(contact, to, by=by, reason=reason, clock=self.clock)
            stored = self._stored_move(unit, moved)
        assert stored is not None
        return stored

    def history(self, subject: SubjectKind, subject_id: UUID) -> list[StageChange]:
        """The stage history of one contact, lead, deal or ticket, oldest first."""
        with self.store.unit_of_work() as unit:
            return unit.stage_history.for_subject(subject, subject_id)

    # ------------------------------------------------------------------ step 4: serve

    def open_ticket(
        self,
        contact_id: UUID,
        *,
        subject: str,
        channel: TicketChannel,
        priority: TicketPriority = TicketPriority.NORMAL,
        description: str | None = None,
        assignee: str | None = None,
    ) -> Ticket:
        """Open a support ticket for a contact, on any channel (status ``new``)."""
        with self._unit() as unit:
            contact = unit.contacts.get(contact_id)
            ticket = Ticket.new(
                subject=subject,
                contact_id=contact.id,
                channel=channel,
                priority=priority,
                description=description,
                account_id=contact.account_id,
                assignee=assignee,
                clock=self.clock,
            )
            return unit.tickets.add(ticket)

    def _move_ticket(
        self, unit: UnitOfWork, ticket: Ticket, to: TicketStatus, by: str | None, reason: str | None
    ) -> Moved[Ticket]:
        moved = move_ticket(ticket, to, by=by, at=self.clock.now(), reason=reason)
        stored = unit.tickets.update(moved.entity)
        unit.stage_history.add(moved.change)
        return Moved(stored, moved.change)

    def reply_to_ticket(
        self,
        ticket_id: UUID,
        *,
        by: str | None,
        text: str,
        kind: ActivityKind = ActivityKind.EMAIL_SENT,
    ) -> tuple[Ticket, Activity]:
        """Record a reply on a ticket's timeline: by an agent (``by`` names them) or by the
        customer (``by=None``).

        An agent's reply opens a new ticket; a customer's reply brings a pending,
        on-hold or solved ticket back to open (the move is recorded just before the
        reply). Either way the SLA clocks see the reply.
        """
        replies = CUSTOMER_REPLY_KINDS if by is None else AGENT_REPLY_KINDS
        if not isinstance(kind, ActivityKind) or kind not in replies:
            who = "a customer's" if by is None else "an agent's"
            allowed = ", ".join(sorted(k.value for k in replies))
            raise ValidationError("kind", kind, f"{who} reply is one of: {allowed}")
        with self._unit() as unit:
            ticket = unit.tickets.get(ticket_id)
            if ticket.status is TicketStatus.CLOSED:
                raise TransitionNotAllowed(
                    "ticket", ticket.status.value, "reply", ["a closed ticket takes no replies"]
                )
            reopen = _REOPENED_BY_CUSTOMER if by is None else _OPENED_BY_AGENT
            if ticket.status in reopen:
                why = "customer replied" if by is None else "first reply"
                ticket = self._move_ticket(unit, ticket, TicketStatus.OPEN, by, why).entity
            reply = Activity.new(
                contact_id=ticket.contact_id,
                kind=kind,
                subject=text,
                ticket_id=ticket.id,
                actor=by,
                clock=self.clock,
            )
            unit.activities.append(reply)
        return ticket, reply

    def move_ticket(
        self, ticket_id: UUID, to: TicketStatus, *, by: str, reason: str | None = None
    ) -> Moved[Ticket]:
        """Move a ticket through the ticket workflow (see ``TICKET_TRANSITIONS``)."""
        with self._unit() as unit:
            return self._move_ticket(unit, unit.tickets.get(ticket_id), to, by, reason)

    def solve_ticket(self, ticket_id: UUID, *, by: str) -> Moved[Ticket]:
        """Mark a ticket solved: its SLA clocks stop."""
        return self.move_ticket(ticket_id, TicketStatus.SOLVED, by=by)

    def close_ticket(self, ticket_id: UUID, *, by: str) -> Moved[Ticket]:
        """Close a solved ticket; closed is final."""
        return self.move_ticket(ticket_id, TicketStatus.CLOSED, by=by)

    def record_csat(self, ticket_id: UUID, score: int) -> Ticket:
        """Record the customer's satisfaction (1 to 5) with a solved ticket."""
        with self._unit() as unit:
            ticket = unit.tickets.get(ticket_id)
            return unit.tickets.update(record_csat(ticket, score, at=self.clock.now()))

    def sla_status(self, ticket_id: UUID) -> SlaReport:
        """The SLA timers of one ticket now, computed from its stored events."""
        with self.store.unit_of_work() as unit:
            return self._sla(unit, unit.tickets.get(ticket_id))

    def _sla(self, unit: UnitOfWork, ticket: Ticket) -> SlaReport:
        history = unit.stage_history.for_subject(SubjectKind.TICKET, ticket.id)
        replies = unit.activities.for_contact(ticket.contact_id, since=ticket.created_at)
        events = ticket_events(ticket, history, replies)
        return sla_status(ticket, events, self.sla_policies, self.clock.now())

    def sla_reports(self) -> list[SlaReport]:
        """The SLA reports of every unsolved ticket (feed them to ``breached`` or
        ``due_within`` of :mod:`crmkit.lifecycle`)."""
        unsolved = [s.value for s in TicketStatus if s not in _DONE]
        with self.store.unit_of_work() as unit:
            tickets = list(unit.tickets.iterate(tickets_where(field("status").is_in(*unsolved))))
            return [self._sla(unit, ticket) for ticket in tickets]

    # ------------------------------------------------------------------ activities, tasks

    def record_activity(self, activity: Activity) -> Activity:
        """Add an activity to its contact's timeline."""
        if not isinstance(activity, Activity):
            raise ValidationError("activity", activity, "expected an Activity")
        with self._unit() as unit:
            unit.contacts.get(activity.contact_id)  # NotFound for an unknown contact
            return unit.activities.append(activity)

    def create_task(self, task: Task) -> Task:
        """Store a new task (a follow-up, a call, a check-in)."""
        if not isinstance(task, Task):
            raise ValidationError("task", task, "expected a Task")
        with self._unit() as unit:
            if task.contact_id is not None:
                unit.contacts.get(task.contact_id)
            if task.deal_id is not None:
                unit.deals.get(task.deal_id)
            if task.ticket_id is not None:
                unit.tickets.get(task.ticket_id)
            return unit.tasks.add(task)

    def complete_task(self, task_id: UUID) -> Task:
        """Mark an open task done now."""
        with self._unit() as unit:
            return unit.tasks.update(complete_task(unit.tasks.get(task_id), clock=self.clock))

    def cancel_task(self, task_id: UUID) -> Task:
        """Cancel an open task."""
        with self._unit() as unit:
            return unit.tasks.update(cancel_task(unit.tasks.get(task_id), clock=self.clock))

    def follow_ups(
        self, *, within: timedelta = timedelta(days=1), assignee: str | None = None
    ) -> FollowUps:
        """The follow-up dashboard: open tasks overdue and due within ``within``
        (of one ``assignee``, if given)."""
        with self.store.unit_of_work() as unit:
            tasks = [
                t
                for t in unit.tasks.iterate()
                if t.status is TaskStatus.OPEN and (assignee is None or t.assignee == assignee)
            ]
        return follow_ups(tasks, now=self.clock.now(), within=within)

    def schedule_check_ins(self, plan: CheckInPlan) -> list[Task]:
        """Create the recurring check-in tasks ``plan`` asks for; returns the new tasks."""
        if not isinstance(plan, CheckInPlan):
            raise ValidationError("plan", plan, "expected a CheckInPlan")
        stages = sorted(s.value for s in plan.stages)
        with self._unit() as unit:
            customers = list(
                unit.contacts.iterate(contacts_where(field("lifecycle_stage").is_in(*stages)))
            )
            tasks = list(unit.tasks.iterate())
            made = check_ins_due(customers, tasks, plan, clock=self.clock)
            unit.tasks.add_many(made)
        return made

    # ------------------------------------------------------------------ one view

    def timeline(self, contact_id: UUID) -> list[TimelineEntry]:
        """Everything about one contact, oldest first: activities, stage changes (of the
        contact, its leads, deals and tickets), deals, tickets and tasks."""
        with self.store.unit_of_work() as unit:
            contact = unit.contacts.get(contact_id)
            leads = list(unit.leads.iterate(leads_where(field("contact_id") == contact.id)))
            deals = list(unit.deals.iterate(deals_where(field("contact_id") == contact.id)))
            tickets = list(unit.tickets.iterate(tickets_where(field("contact_id") == contact.id)))
            changes = unit.stage_history.for_subject(SubjectKind.CONTACT, contact.id)
            for kind, items in (
                (SubjectKind.LEAD, leads),
                (SubjectKind.DEAL, deals),
                (SubjectKind.TICKET, tickets),
            ):
                for item in items:
                    changes.extend(unit.stage_history.for_subject(kind, item.id))
            tasks = [t for t in unit.tasks.iterate() if t.contact_id == contact.id]
            return timeline(
                activities=unit.activities.for_contact(contact.id),
                stage_changes=changes,
                deals=deals,
                tickets=tickets,
                tasks=tasks,
            )

    def customers(self) -> list[Contact]:
        """Every contact in stage customer or evangelist."""
        stages = (LifecycleStage.CUSTOMER.value, LifecycleStage.EVANGELIST.value)
        with self.store.unit_of_work() as unit:
            return list(
                unit.contacts.iterate(contacts_where(field("lifecycle_stage").is_in(*stages)))
            )
