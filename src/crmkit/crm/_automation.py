"""The automation use cases of :class:`~crmkit.crm.CRM`: which rules an event starts,
running a rule's steps through the CRM's public use cases, best send hours.

Every effect of a step is idempotent by the step's id: entities it creates get ids
``uuid5(step_id, ...)`` and a rerun that finds them stored does nothing; the other
actions set a state (an owner, a tag, a stage, a segment membership) that a rerun finds
already set. So a worker that dies mid-step and a step claimed again change nothing
twice (a message's sender gets the same ``message_id`` again, see
:class:`~crmkit.automation.Message`).
"""

from collections.abc import Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, cast
from uuid import UUID, uuid5
from zoneinfo import ZoneInfo

import attrs

from crmkit.automation import (
    ACTION_STEP,
    SWEEP_STEP,
    Action,
    AddTag,
    AddToSegment,
    AssignByCapacity,
    AssignByTerritory,
    AssignRoundRobin,
    Automation,
    Branch,
    CallHook,
    Check,
    CreateTask,
    HookCall,
    Message,
    MoveStage,
    OnSchedule,
    PlannedStep,
    RemoveTag,
    Rescore,
    SendHours,
    SendMessage,
    StepResult,
    Wait,
    WaitUntil,
    best_send_hours,
    contact_zone,
    wait_until,
)
from crmkit.clock import Clock, FixedClock
from crmkit.errors import (
    ClosedRecord,
    Duplicate,
    NotFound,
    TransitionNotAllowed,
    UndeclaredPurpose,
    UnknownReference,
    ValidationError,
)
from crmkit.lifecycle import FUNNEL, add_business_time
from crmkit.models import (
    Activity,
    Contact,
    Deal,
    DealStatus,
    Entity,
    Lead,
    LeadStatus,
    LifecycleStage,
    Segment,
    SegmentKind,
    Task,
    Ticket,
    TicketStatus,
)
from crmkit.models.rules import MESSAGE_KINDS, And, Compare, In, InSegment, Op, Rule, RuleEntity
from crmkit.privacy import ConsentPolicy
from crmkit.storage import Repository, Store, UnitOfWork

if TYPE_CHECKING:
    from crmkit.crm._service import CRM

__all__ = ["AutomationUseCases"]

_SUBJECTS: Final = ("contact", "lead", "deal", "ticket", "task")
_OWNER: Final = {"contact": "owner", "lead": "owner", "deal": "owner", "ticket": "assignee"}
_OPEN: Final[Mapping[str, Any]] = {
    "lead": In("status", tuple(s.value for s in LeadStatus if s is not LeadStatus.DISQUALIFIED)),
    "deal": Compare("status", Op.EQ, DealStatus.OPEN.value),
    "ticket": In(
        "status",
        tuple(s.value for s in TicketStatus if s not in {TicketStatus.SOLVED, TicketStatus.CLOSED}),
    ),
}


@attrs.frozen
class _Run:
    """One running sequence: the automation, the rule, where it started and its subject."""

    automation: Automation
    rule: str
    origin: UUID
    subject: str
    subject_id: UUID
    event_type: str | None
    cause: UUID | None = None
    """What caused the event that started the sequence (its ``caused_by``): the link
    that :meth:`AutomationUseCases.cause_of` follows to bound chains of rules."""

    def payload(self, index: int) -> dict[str, Any]:
        return {
            "automation": self.automation.name,
            "rule": self.rule,
            "index": index,
            "origin": str(self.origin),
            "subject": self.subject,
            "subject_id": str(self.subject_id),
            "event_type": self.event_type,
            "cause": None if self.cause is None else str(self.cause),
        }

    def planned(self, index: int, due_at: datetime) -> PlannedStep:
        return PlannedStep(
            step_id=Automation.step_id(self.origin, self.rule, index),
            kind=ACTION_STEP,
            payload=self.payload(index),
            due_at=due_at,
            subject=self.subject,
            subject_id=self.subject_id,
        )


def _uuid(value: object, field: str) -> UUID:
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            pass
    raise ValidationError(field, value, "expected a UUID")


def _payload_field(payload: Mapping[str, Any], name: str) -> Any:
    if name not in payload:
        raise ValidationError(f"payload.{name}", None, "required field is missing")
    return payload[name]


class AutomationUseCases:
    """Mixed into :class:`~crmkit.crm.CRM`: the use cases that automation runs on."""

    store: Store
    clock: Clock
    consent_policy: ConsentPolicy | None

    def _unit(
        self, by: str | None = None
    ) -> AbstractContextManager[UnitOfWork]:  # pragma: no cover
        raise NotImplementedError

    @property
    def _as_crm(self) -> "CRM":
        return cast("CRM", self)

    # ------------------------------------------------------------------ small use cases

    def add_to_segment(self, segment_id: UUID, contact_id: UUID) -> Segment:
        """Add a contact to a static segment (a member already stays one)."""
        with self._unit() as unit:
            segment = unit.segments.get(_uuid(segment_id, "segment_id"))
            if segment.kind is not SegmentKind.STATIC:
                raise ValidationError("segment_id", segment_id, "is a dynamic segment (a rule)")
            contact = unit.contacts.get(_uuid(contact_id, "contact_id"))
            if contact.id in segment.members:
                return segment
            now = self.clock.now()
            grown = attrs.evolve(segment, members=segment.members | {contact.id}, updated_at=now)
            return unit.segments.update(grown)

    def assign_ticket(self, ticket_id: UUID, assignee: str | None) -> Ticket:
        """Give a ticket to ``assignee`` (``None``: to nobody)."""
        with self._unit() as unit:
            ticket = unit.tickets.get(_uuid(ticket_id, "ticket_id"))
            if ticket.assignee == assignee:
                return ticket
            changed = attrs.evolve(ticket, assignee=assignee, updated_at=self.clock.now())
            return unit.tickets.update(changed)

    def best_send_hours(
        self,
        segment: UUID | Segment | Rule,
        *,
        timezone_field: str = "timezone",
        default_timezone: str = "UTC",
        prior: float = 10.0,
    ) -> SendHours:
        """The best send hour of each contact of ``segment`` (a stored segment, by id
        or itself, or a contact rule) and of the segment, from their opens and clicks,
        each in the contact's time zone (the IANA name in custom field
        ``timezone_field``, else ``default_timezone``); see
        :func:`~crmkit.automation.best_send_hours` for ``prior``."""
        if isinstance(segment, Segment):
            where = Rule(RuleEntity.CONTACT, InSegment(segment.id))
        elif isinstance(segment, UUID):
            where = Rule(RuleEntity.CONTACT, InSegment(segment))
        elif isinstance(segment, Rule) and segment.entity is RuleEntity.CONTACT:
            where = segment
        else:
            raise ValidationError(
                "segment", segment, "expected a segment, its id or a contact rule"
            )
        now = self.clock.now()
        zones: dict[UUID, ZoneInfo] = {}
        activities: dict[UUID, list[Activity]] = {}
        with self.store.unit_of_work() as unit:
            if isinstance(segment, UUID):
                unit.segments.get(segment)
            for contact in unit.contacts.iterate(where, now=now):
                zones[contact.id] = contact_zone(contact, timezone_field, default_timezone)
                activities[contact.id] = unit.activities.for_contact(contact.id)
        return best_send_hours(activities, zones, prior=prior)

    # ------------------------------------------------------------------ installing

    def check_automation(self, automation: Automation, /) -> None:
        """Check ``automation`` against this CRM: the pipelines and stages its rules
        move to, a scoring model if a rule rescores, a consent policy declaring the
        purposes of the messages it sends (:class:`~crmkit.errors.UnknownReference`)."""
        if not isinstance(automation, Automation):
            raise ValidationError("automation", automation, "expected an Automation")
        automation.check(self._as_crm.pipelines)
        for index, rule in enumerate(automation.rules):
            for instruction in automation.program(rule.name):
                where = f"rules[{index}].{instruction.path}"
                action = instruction.action
                if isinstance(action, Rescore) and self._as_crm.scoring is None:
                    raise UnknownReference(where, "rescore", "this CRM has no scoring model")
                if isinstance(action, SendMessage):
                    if self.consent_policy is None:
                        raise UnknownReference(
                            where, "send_message", "this CRM has no consent policy"
                        )
                    try:
                        self.consent_policy.check_purpose(action.purpose)
                    except UndeclaredPurpose as error:
                        raise UnknownReference(
                            f"{where}.purpose", action.purpose, error.reason
                        ) from None

    def first_sweeps(self, automation: Automation, /) -> list[PlannedStep]:
        """The next sweep of each scheduled rule of ``automation``."""
        if not isinstance(automation, Automation):
            raise ValidationError("automation", automation, "expected an Automation")
        now = self.clock.now()
        planned = []
        for rule in automation.scheduled:
            trigger = cast(OnSchedule, rule.trigger)
            planned.append(_sweep_step(automation, rule.name, trigger.period(now) + 1, trigger))
        return planned

    # ------------------------------------------------------------------ events

    def cause_of(self, id: UUID, /) -> UUID | None:
        """The cause one link further back in a chain of automation: for the id of an
        automation step, what caused the event that started its sequence (another step,
        or ``None`` at the root); ``None`` for anything else (an event recorded outside
        automation, a use case called by a host's handler), which is a root.

        :meth:`Automation.handle <crmkit.automation.Automation.handle>` follows these
        links from an event's ``caused_by`` to refuse a chain of rules triggering each
        other beyond its ``max_depth`` (:class:`~crmkit.errors.AutomationLoop`)."""
        if not isinstance(id, UUID):
            raise ValidationError("id", id, "expected a UUID")
        with self.store.unit_of_work() as unit:
            try:
                step = unit.steps.get(id)
            except NotFound:
                return None
        if step.kind != ACTION_STEP:
            return None
        cause = step.payload.get("cause")
        return cause if cause is None else _uuid(cause, "payload.cause")

    def automation_plan(self, automation: Automation, event: Any, /) -> list[PlannedStep]:
        """The first steps of the rules of ``automation`` that ``event`` starts: each
        rule triggered by the event's type whose condition holds for the event's
        subject now, due now, with id ``uuid5(event.id, f"{rule}:0")``."""
        if not isinstance(automation, Automation):
            raise ValidationError("automation", automation, "expected an Automation")
        event_id = _uuid(getattr(event, "id", None), "event.id")
        event_type = getattr(event, "type", None)
        subject_id = _uuid(getattr(event, "subject_id", None), "event.subject_id")
        caused = getattr(event, "caused_by", None)
        cause = None if caused is None else _uuid(caused, "event.caused_by")
        rules = automation.triggered_by(event_type) if isinstance(event_type, str) else []
        if not rules:
            return []
        now = self.clock.now()
        subject, subject_id = self._rule_event_subject(getattr(event, "subject", None), subject_id)
        planned = []
        for rule in rules:
            if rule.subject != subject:
                continue
            if rule.condition is not None and not self._rule_holds(
                rule.condition, subject, subject_id, now
            ):
                continue
            run = _Run(automation, rule.name, event_id, subject, subject_id, event_type, cause)
            planned.append(run.planned(0, now))
        return planned

    def _rule_event_subject(self, subject: object, subject_id: UUID) -> tuple[str, UUID]:
        """The subject a rule runs on: the event's, or an activity's contact."""
        if subject == "activity":
            with self.store.unit_of_work() as unit:
                found = unit.activities.get_many([subject_id]).get(subject_id)
            if found is None:
                raise NotFound("activity", subject_id)
            return "contact", found.contact_id
        if subject not in _SUBJECTS:
            raise ValidationError("event.subject", subject, "not a subject automation runs on")
        return subject, subject_id

    # ------------------------------------------------------------------ steps

    def run_automation_step(self, automation: Automation, step: Any, /) -> StepResult:
        """Run ``step`` (an ``automation.action`` or ``automation.sweep`` step of
        ``automation``, as the durable steps store it, or a
        :class:`~crmkit.automation.PlannedStep`): the instructions of its rule from the
        step's index on, up to the next wait (whose end is the next step's due time), a
        failed check or the end. A sweep starts the rule's sequence for every entity its
        condition selects and plans the next sweep."""
        if not isinstance(automation, Automation):
            raise ValidationError("automation", automation, "expected an Automation")
        if isinstance(step, PlannedStep):  # run by hand, before it was ever stored
            step_id = step.step_id
        else:
            step_id = _uuid(getattr(step, "id", None), "step.id")
        payload = getattr(step, "payload", None)
        if not isinstance(payload, Mapping):
            raise ValidationError("step.payload", payload, "expected a mapping")
        kind = getattr(step, "kind", None)
        if kind == SWEEP_STEP:
            return self._rule_sweep(automation, step_id, payload)
        if kind != ACTION_STEP:
            raise ValidationError("step.kind", kind, f"expected {ACTION_STEP} or {SWEEP_STEP}")
        name = _payload_field(payload, "rule")
        automation.rule(name)
        index = _payload_field(payload, "index")
        program = automation.program(name)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(program):
            raise ValidationError("payload.index", index, "not an instruction of the rule")
        subject = _payload_field(payload, "subject")
        if subject not in _SUBJECTS:
            raise ValidationError("payload.subject", subject, "not a subject automation runs on")
        event_type = payload.get("event_type")
        cause = payload.get("cause")
        run = _Run(
            automation,
            name,
            _uuid(_payload_field(payload, "origin"), "payload.origin"),
            subject,
            _uuid(_payload_field(payload, "subject_id"), "payload.subject_id"),
            event_type if isinstance(event_type, str) else None,
            None if cause is None else _uuid(cause, "payload.cause"),
        )
        if Automation.step_id(run.origin, name, index) != step_id:
            raise ValidationError("step.id", step_id, "is not the id of this rule's step")
        return self._rule_run(run, index)

    def _rule_sweep(
        self, automation: Automation, step_id: UUID, payload: Mapping[str, Any]
    ) -> StepResult:
        name = _payload_field(payload, "rule")
        rule = automation.rule(name)
        if not isinstance(rule.trigger, OnSchedule):
            raise ValidationError("payload.rule", name, "is not a scheduled rule")
        period = _payload_field(payload, "period")
        if isinstance(period, bool) or not isinstance(period, int):
            raise ValidationError("payload.period", period, "expected a whole number")
        if automation.sweep_id(name, period) != step_id:
            raise ValidationError("step.id", step_id, "is not the id of this rule's sweep")
        now = self.clock.now()
        entity = rule.trigger.entity
        where = rule.condition if rule.condition is not None else None
        with self.store.unit_of_work() as unit:
            repository = _repository(unit, entity.value)
            if where is not None and where.entity is not entity:
                ids = [
                    i
                    for i in repository.ids(now=now)
                    if self._rule_holds_in(unit, where, entity.value, i, now)
                ]
            else:
                ids = repository.ids(where, now=now)
        planned = [
            _Run(
                automation, name, Automation.sweep_origin(step_id, i), entity.value, i, None
            ).planned(0, now)
            for i in ids
        ]
        following = max(period + 1, rule.trigger.period(now) + 1)
        planned.append(_sweep_step(automation, name, following, rule.trigger))
        return StepResult((f"sweep {name}: {len(ids)} started",), tuple(planned))

    def _rule_run(self, run: _Run, index: int) -> StepResult:
        program = run.automation.program(run.rule)
        done: list[str] = []
        now = self.clock.now()
        while index < len(program):
            instruction = program[index]
            action = instruction.action
            if action is None:
                index = _jump(instruction.jump, index)
                continue
            step_id = Automation.step_id(run.origin, run.rule, index)
            try:
                subject = self._rule_subject(run.subject, run.subject_id)
            except NotFound:
                done.append(f"{instruction.path} {action.tag}: the {run.subject} is gone")
                return StepResult(tuple(done), stopped=True)
            if isinstance(action, Wait | WaitUntil):
                zone = self._rule_zone(run.automation, subject)
                due = wait_until(action, now, calendars=run.automation.calendars, zone=zone)
                done.append(f"{instruction.path} {action.tag}: until {due.isoformat()}")
                if due > now:
                    return StepResult(tuple(done), (run.planned(index + 1, due),))
                index += 1
                continue
            if isinstance(action, Check | Branch):
                holds = self._rule_holds(action.rule, run.subject, run.subject_id, now)
                done.append(
                    f"{instruction.path} {action.tag}: {'holds' if holds else 'does not hold'}"
                )
                if isinstance(action, Check) and not holds:
                    return StepResult(tuple(done), stopped=True)
                index = index + 1 if holds else _jump(instruction.jump, index)
                continue
            outcome = self._rule_perform(run, action, step_id, subject, now)
            done.append(f"{instruction.path} {action.tag}: {outcome}")
            index += 1
        return StepResult(tuple(done))

    # ------------------------------------------------------------------ reading

    def _rule_subject(self, kind: str, subject_id: UUID) -> Entity:
        with self.store.unit_of_work() as unit:
            return cast(Entity, _repository(unit, kind).get(subject_id))

    def _rule_contact_of(self, subject: Entity) -> Contact | None:
        if isinstance(subject, Contact):
            return subject
        contact_id = getattr(subject, "contact_id", None)
        if contact_id is None:
            return None
        with self.store.unit_of_work() as unit:
            return unit.contacts.get_many([contact_id]).get(contact_id)

    def _rule_zone(self, automation: Automation, subject: Entity) -> ZoneInfo:
        contact = self._rule_contact_of(subject)
        if contact is None:
            return ZoneInfo(automation.default_timezone)
        return contact_zone(contact, automation.timezone_field, automation.default_timezone)

    def _rule_holds(self, rule: Rule, subject: str, subject_id: UUID, now: datetime) -> bool:
        """Whether ``rule`` is TRUE for the subject (a contact rule: for its contact),
        counted by the store as every rule is."""
        with self.store.unit_of_work() as unit:
            return self._rule_holds_in(unit, rule, subject, subject_id, now)

    @staticmethod
    def _rule_holds_in(
        unit: UnitOfWork, rule: Rule, subject: str, subject_id: UUID, now: datetime
    ) -> bool:
        if rule.entity.value != subject:
            if rule.entity is not RuleEntity.CONTACT:
                return False
            item = _repository(unit, subject).get_many([subject_id]).get(subject_id)
            contact_id = getattr(item, "contact_id", None)
            if contact_id is None:
                return False
            subject, subject_id = "contact", contact_id
        one = Rule(rule.entity, And((Compare("id", Op.EQ, subject_id), rule.where)))
        return _repository(unit, subject).count(one, now=now) == 1

    # ------------------------------------------------------------------ actions

    def _rule_perform(
        self, run: _Run, action: Action, step_id: UUID, subject: Entity, now: datetime
    ) -> str:
        by = f"automation:{run.rule}"
        if isinstance(action, CreateTask):
            return self._rule_create_task(run, action, step_id, subject, now)
        if isinstance(action, AssignRoundRobin | AssignByCapacity | AssignByTerritory):
            return self._rule_assign(run, action, subject, now)
        if isinstance(action, AddTag | RemoveTag):
            contact = self._rule_contact_of(subject)
            if contact is None:
                return f"skipped: the {run.subject} has no contact"
            tags = (
                contact.tags | {action.name}
                if isinstance(action, AddTag)
                else contact.tags - {action.name}
            )
            if tags == contact.tags:
                return "unchanged"
            self._as_crm.update_contact(contact.id, tags=tags, by=by)
            return "done"
        if isinstance(action, AddToSegment):
            contact = self._rule_contact_of(subject)
            if contact is None:
                return f"skipped: the {run.subject} has no contact"
            self.add_to_segment(action.segment_id, contact.id)
            return "done"
        if isinstance(action, MoveStage):
            return self._rule_move(run, action, subject, by)
        if isinstance(action, Rescore):
            return self._rule_rescore(run, subject)
        if isinstance(action, SendMessage):
            return self._rule_send(run, action, step_id, subject, now)
        if isinstance(action, CallHook):
            call = HookCall(
                step_id,
                run.rule,
                action.hook,
                action.params,
                run.subject,
                run.subject_id,
                run.event_type,
            )
            run.automation.hooks[action.hook](self, call)
            return "called"
        raise ValidationError("action", action, "not an action this CRM runs")  # pragma: no cover

    def _rule_create_task(
        self, run: _Run, action: CreateTask, step_id: UUID, subject: Entity, now: datetime
    ) -> str:
        task_id = uuid5(step_id, "task")
        with self.store.unit_of_work() as unit:
            if unit.tasks.get_many([task_id]):
                return "created before"
        calendar = None if action.calendar is None else run.automation.calendars[action.calendar]
        links: dict[str, UUID | None] = {
            "contact_id": getattr(subject, "contact_id", None),
            "deal_id": getattr(subject, "deal_id", None) if isinstance(subject, Task) else None,
            "ticket_id": getattr(subject, "ticket_id", None) if isinstance(subject, Task) else None,
        }
        if isinstance(subject, Contact):
            links["contact_id"] = subject.id
        elif isinstance(subject, Deal):
            links["deal_id"] = subject.id
        elif isinstance(subject, Ticket):
            links["ticket_id"] = subject.id
        assignee = action.assignee if action.assignee is not None else _owner(subject)
        task = Task.new(
            title=action.title,
            due_at=add_business_time(calendar, now, action.due_in),
            kind=action.kind,
            assignee=assignee,
            notes=action.notes,
            contact_id=links["contact_id"],
            deal_id=links["deal_id"],
            ticket_id=links["ticket_id"],
            clock=FixedClock(now),
        )
        try:
            self._as_crm.create_task(attrs.evolve(task, id=task_id))
        except Duplicate:  # a twin run stored it meanwhile
            return "created before"
        return "created"

    def _rule_assign(
        self,
        run: _Run,
        action: AssignRoundRobin | AssignByCapacity | AssignByTerritory,
        subject: Entity,
        now: datetime,
    ) -> str:
        field = _OWNER.get(run.subject)
        if field is None:
            return f"skipped: a {run.subject} has no owner"
        current = getattr(subject, field)
        owner = self._rule_choose_owner(run, action, field, current, now)
        if owner is None or owner == current:
            return f"unchanged: with {current}"
        by = f"automation:{run.rule}"
        try:
            if isinstance(subject, Lead):
                self._as_crm.update_lead(subject.id, owner=owner)
            elif isinstance(subject, Deal):
                self._as_crm.update_deal(subject.id, owner=owner, by=by)
            elif isinstance(subject, Contact):
                self._as_crm.update_contact(subject.id, owner=owner, by=by)
            else:
                self.assign_ticket(subject.id, owner)
        except ClosedRecord:
            return f"skipped: the {run.subject} is closed"
        return f"assigned to {owner}"

    def _rule_choose_owner(
        self,
        run: _Run,
        action: AssignRoundRobin | AssignByCapacity | AssignByTerritory,
        field: str,
        current: str | None,
        now: datetime,
    ) -> str | None:
        """The new owner (``current`` or ``None``: keep the owner). A subject already
        with a member of the team stays with them, so a step run twice assigns once."""
        if isinstance(action, AssignByTerritory):
            for territory in action.territories:
                if self._rule_holds(territory.rule, run.subject, run.subject_id, now):
                    return territory.owner
            return action.otherwise
        if isinstance(action, AssignRoundRobin):
            team = action.team
        else:
            team = tuple(s.owner for s in action.team)
        if current in team:
            return current
        entity = RuleEntity(run.subject)
        with self.store.unit_of_work() as unit:
            repository = _repository(unit, run.subject)
            if isinstance(action, AssignRoundRobin):  # the turn: subjects the team was given
                given = repository.count(Rule(entity, In(field, team)), now=now)
                return team[given % len(team)]
            open_rule = _OPEN.get(run.subject)
            rule = None if open_rule is None else Rule(entity, open_rule)
            load = repository.count_by(field, rule, now=now)
        free = [
            (load.get(seat.owner, 0) / seat.capacity, index)
            for index, seat in enumerate(action.team)
            if load.get(seat.owner, 0) < seat.capacity
        ]
        return action.team[min(free)[1]].owner if free else action.overflow

    def _rule_move(self, run: _Run, action: MoveStage, subject: Entity, by: str) -> str:
        reason = f"automation rule {run.rule}"
        try:
            if action.pipeline is None:
                contact = self._rule_contact_of(subject)
                if contact is None:
                    return f"skipped: the {run.subject} has no contact"
                target = LifecycleStage(action.stage)
                if _ahead(contact.lifecycle_stage, target):
                    return f"unchanged: the contact is {contact.lifecycle_stage.value}"
                self._as_crm.reset_contact(contact.id, target, by=by, reason=reason)
                return f"moved to {target.value}"
            if not isinstance(subject, Deal | Lead):
                return f"skipped: a {run.subject} has no pipeline stage"
            if subject.pipeline != action.pipeline:
                return f"skipped: the {run.subject} is in pipeline {subject.pipeline}"
            if subject.stage == action.stage:
                return f"unchanged: in {action.stage}"
            if isinstance(subject, Deal):
                self._as_crm.move_deal(subject.id, action.stage, by=by, reason=reason)
            else:
                self._as_crm.move_lead(subject.id, action.stage, by=by, reason=reason)
        except TransitionNotAllowed as refused:  # requirements unmet, a closed record
            return f"refused: {refused}"
        return f"moved to {action.stage}"

    def _rule_rescore(self, run: _Run, subject: Entity) -> str:
        if isinstance(subject, Lead):
            try:
                self._as_crm.rescore_lead(subject.id)
            except ClosedRecord:
                return "skipped: the lead is closed"
            return "rescored 1 lead"
        contact = self._rule_contact_of(subject)
        if contact is None:
            return f"skipped: the {run.subject} has no contact"
        statuses = _OPEN["lead"]
        with self.store.unit_of_work() as unit:
            rule = Rule(RuleEntity.LEAD, And((Compare("contact_id", Op.EQ, contact.id), statuses)))
            ids = [lead.id for lead in unit.leads.iterate(rule) if lead.deal_id is None]
        if ids:
            self._as_crm.rescore_leads(ids)
        return f"rescored {len(ids)} leads"

    def _rule_send(
        self, run: _Run, action: SendMessage, step_id: UUID, subject: Entity, now: datetime
    ) -> str:
        contact = self._rule_contact_of(subject)
        if contact is None:
            return f"skipped: the {run.subject} has no contact"
        activity_id = uuid5(step_id, "message")
        policy = cast(ConsentPolicy, self.consent_policy)
        reachable = policy.reachable(action.channel, action.purpose)
        with self.store.unit_of_work() as unit:
            if unit.activities.get_many([activity_id]):
                return "sent before"
            one = Rule(RuleEntity.CONTACT, And((Compare("id", Op.EQ, contact.id), reachable)))
            if unit.contacts.count(one, now=now) != 1:
                return f"skipped: not reachable on {action.channel.value} for {action.purpose}"
        sender = run.automation.senders[action.sender]
        sender(
            Message(activity_id, contact, action.channel, action.purpose, action.template, run.rule)
        )
        record = Activity.new(
            contact_id=contact.id,
            kind=MESSAGE_KINDS[action.channel],
            occurred_at=now,
            subject=action.template,
            actor=f"automation:{run.rule}",
            clock=FixedClock(now),
        )
        try:
            self._as_crm.record_activity(attrs.evolve(record, id=activity_id))
        except Duplicate:
            return "sent before"
        return "sent"


def _jump(target: int | None, index: int) -> int:
    """Where a branch or the end of its ``then`` part goes on (always forward)."""
    return index + 1 if target is None else target


def _owner(subject: Entity) -> str | None:
    for name in ("owner", "assignee"):
        value = getattr(subject, name, None)
        if isinstance(value, str):
            return value
    return None


def _ahead(current: LifecycleStage, target: LifecycleStage) -> bool:
    """Whether ``current`` is already at or past ``target`` in the funnel."""
    if current is target:
        return True
    if current not in FUNNEL or target not in FUNNEL:
        return False
    return FUNNEL.index(current) >= FUNNEL.index(target)


def _repository(unit: UnitOfWork, kind: str) -> Repository[Any]:
    repositories: dict[str, Repository[Any]] = {
        "contact": unit.contacts,
        "lead": unit.leads,
        "deal": unit.deals,
        "ticket": unit.tickets,
        "task": cast(Repository[Any], unit.tasks),
    }
    return repositories[kind]


def _sweep_step(automation: Automation, rule: str, period: int, trigger: OnSchedule) -> PlannedStep:
    return PlannedStep(
        step_id=automation.sweep_id(rule, period),
        kind=SWEEP_STEP,
        payload={"automation": automation.name, "rule": rule, "period": period},
        due_at=trigger.starts(period),
        subject=None,
        subject_id=None,
    )
