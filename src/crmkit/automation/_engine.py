"""The automation: rules plus what they name (calendars, senders, hooks), checked when
built, and the glue that installs it on a CRM.

:meth:`Automation.install` subscribes one handler to the event types the rules are
triggered by, registers the step runners and schedules the first sweep of each
scheduled rule. The handler asks the CRM which rules match an event
(``automation_plan``) and schedules their first steps; the runner asks the CRM to run
a step (``run_automation_step``), which performs actions through the CRM's public use
cases, idempotently by step id, and schedules what comes next (after a wait, at its
time). Step ids are deterministic (``uuid5(origin, f"{rule}:{index}")``, the origin
being the event, or the sweep and the subject), so an event delivered twice or a step
run twice schedules and does nothing new.
"""

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final, Protocol
from uuid import UUID, uuid5

import attrs

from crmkit.automation._actions import SendMessage, _tuple, typed, typed_items
from crmkit.automation._dispatch import SubscriptionStart
from crmkit.automation._rules import (
    AutomationRule,
    Instruction,
    OnEvent,
    OnSchedule,
    chain_depth,
    check_rules,
    rules_from_json,
)
from crmkit.automation._sendtime import check_zone
from crmkit.clock import ensure_utc
from crmkit.errors import AutomationLoop, ValidationError
from crmkit.lifecycle import BusinessCalendar, Pipeline
from crmkit.models import ConsentChannel, Contact, CustomFields

__all__ = [
    "ACTION_STEP",
    "SWEEP_STEP",
    "Automation",
    "AutomationHost",
    "HookCall",
    "Message",
    "PlannedStep",
    "StepResult",
]

ACTION_STEP: Final = "automation.action"
"""The kind of the steps that run a rule's instructions."""
SWEEP_STEP: Final = "automation.sweep"
"""The kind of the steps that run a scheduled rule over the entities it selects."""
NAMESPACE: Final = UUID("5f0c1c8e-53a4-4c39-9d1a-6a8f4f1a7e20")
"""The namespace of the ids of sweeps (a sweep has no event to derive its id from)."""
_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,62}\Z")


def _utc(_: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    try:
        ensure_utc(value, attribute.name)
    except ValidationError:
        raise
    except Exception:
        raise ValidationError(attribute.name, value, "expected an aware datetime") from None


@attrs.frozen
class Message:
    """What a sender is asked to send: ``template`` to ``contact`` on ``channel`` for
    ``purpose``. ``message_id`` is the same when a step runs twice (a worker died
    between sending and recording): a sender that keeps it sends once."""

    message_id: UUID = attrs.field(validator=typed(UUID, "a UUID"))
    contact: Contact = attrs.field(validator=typed(Contact, "a Contact"))
    channel: ConsentChannel = attrs.field(validator=typed(ConsentChannel, "a ConsentChannel"))
    purpose: str = attrs.field(validator=typed(str, "a purpose key"))
    template: str = attrs.field(validator=typed(str, "a template name"))
    rule: str = attrs.field(validator=typed(str, "a rule name"))


@attrs.frozen
class HookCall:
    """What a host hook is called with: the step's id (the idempotency key of whatever
    the hook does), the rule, the hook's ``params`` and the subject it runs on."""

    step_id: UUID = attrs.field(validator=typed(UUID, "a UUID"))
    rule: str = attrs.field(validator=typed(str, "a rule name"))
    hook: str = attrs.field(validator=typed(str, "a hook name"))
    params: CustomFields = attrs.field(validator=typed(CustomFields, "CustomFields"))
    subject: str = attrs.field(validator=typed(str, "a subject kind"))
    subject_id: UUID = attrs.field(validator=typed(UUID, "a UUID"))
    event_type: str | None = attrs.field(validator=typed((str, type(None)), "an event type"))


Sender = Callable[[Message], None]
"""A host's message channel: sends one message (e-mail, SMS, ...) or raises."""
Hook = Callable[[Any, HookCall], None]
"""A host's hook: called with the CRM and the call."""


@attrs.frozen
class PlannedStep:
    """A step to schedule: the arguments of ``CRM.schedule_step``."""

    step_id: UUID = attrs.field(validator=typed(UUID, "a UUID"))
    kind: str = attrs.field(validator=typed(str, "a step kind"))
    payload: Mapping[str, Any] = attrs.field(validator=typed(Mapping, "a mapping"))
    due_at: datetime = attrs.field(validator=_utc)
    subject: str | None = attrs.field(validator=typed((str, type(None)), "a subject kind"))
    subject_id: UUID | None = attrs.field(validator=typed((UUID, type(None)), "a UUID"))


@attrs.frozen
class StepResult:
    """What running a step did: one line per instruction it ran (``"actions[0]
    create_task: created"``), whether the sequence stopped, and the steps to schedule
    next."""

    done: tuple[str, ...] = attrs.field(converter=_tuple, validator=typed_items(str, "texts"))
    next: tuple[PlannedStep, ...] = attrs.field(
        default=(), converter=_tuple, validator=typed_items(PlannedStep, "PlannedSteps")
    )
    stopped: bool = attrs.field(default=False, validator=typed(bool, "True or False"))


class AutomationHost(Protocol):
    """What :meth:`Automation.install` needs of a CRM: subscriptions, durable steps and
    the two automation use cases (the CRM of crmkit has them all)."""

    def subscribe(
        self,
        event_type: str,
        handler: Callable[[Any, Any], None],
        *,
        name: str,
        max_attempts: int = 5,
        start: SubscriptionStart = SubscriptionStart.BEGINNING,
    ) -> None: ...

    def schedule_step(
        self,
        kind: str,
        payload: Mapping[str, Any],
        *,
        due_at: datetime,
        step_id: UUID | None = None,
        subject: str | None = None,
        subject_id: UUID | None = None,
    ) -> Any: ...

    def register_runner(self, kind: str, runner: Callable[[Any, Any], None]) -> None: ...

    def cause_of(self, id: UUID, /) -> UUID | None: ...

    def check_automation(self, automation: "Automation", /) -> None: ...

    def automation_plan(self, automation: "Automation", event: Any, /) -> list[PlannedStep]: ...

    def first_sweeps(self, automation: "Automation", /) -> list[PlannedStep]: ...

    def run_automation_step(self, automation: "Automation", step: Any, /) -> StepResult: ...


def _mapping(
    value: object, field: str, check: Callable[[object], bool], what: str
) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValidationError(field, value, f"expected a mapping of names to {what}")
    found: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str) or (not _NAME.match(key) and "-" not in key):
            raise ValidationError(field, key, "expected a key: lower-case letters, digits, '_'")
        if not check(item):
            raise ValidationError(f"{field}.{key}", item, f"expected {what}")
        found[key] = item
    return found


class Automation:
    """Automation rules with the calendars, message senders and hooks they name,
    checked when built (:func:`~crmkit.automation.check_rules`; with ``pipelines``, the
    stages rules move to are checked now, else when installed on a CRM).

    ``timezone_field`` is the contact custom field that holds a contact's IANA time
    zone (``"wait until 09:00 in the contact's time zone"``), ``default_timezone``
    the zone of contacts without one. ``max_depth`` bounds chains of rules triggering
    each other at run time (see :class:`~crmkit.errors.AutomationLoop`); ``name`` tells
    two automations on one CRM apart (it names the subscription).
    """

    def __init__(
        self,
        rules: Iterable[AutomationRule],
        *,
        calendars: Mapping[str, BusinessCalendar] | None = None,
        senders: Mapping[str, Sender] | None = None,
        hooks: Mapping[str, Hook] | None = None,
        pipelines: Iterable[Pipeline] | None = None,
        timezone_field: str = "timezone",
        default_timezone: str = "UTC",
        max_depth: int = 8,
        name: str = "automation",
    ) -> None:
        if isinstance(rules, str | bytes | Mapping) or not isinstance(rules, Iterable):
            raise ValidationError("rules", rules, "expected a collection of AutomationRules")
        self.rules: tuple[AutomationRule, ...] = tuple(rules)
        self.calendars: Mapping[str, BusinessCalendar] = MappingProxyType(
            _mapping(
                {} if calendars is None else calendars,
                "calendars",
                lambda c: isinstance(c, BusinessCalendar),
                "BusinessCalendars",
            )
        )
        self.senders: Mapping[str, Sender] = MappingProxyType(
            _mapping({} if senders is None else senders, "senders", callable, "callables")
        )
        self.hooks: Mapping[str, Hook] = MappingProxyType(
            _mapping({} if hooks is None else hooks, "hooks", callable, "callables")
        )
        if not isinstance(timezone_field, str) or not _NAME.match(timezone_field):
            raise ValidationError("timezone_field", timezone_field, "expected a custom field name")
        self.timezone_field = timezone_field
        self.default_timezone = check_zone(default_timezone, "default_timezone").key
        if (
            isinstance(max_depth, bool)
            or not isinstance(max_depth, int)
            or not 1 <= max_depth <= 100
        ):
            raise ValidationError("max_depth", max_depth, "expected a whole number from 1 to 100")
        self.max_depth = max_depth
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValidationError("name", name, "expected a key: lower-case letters, digits, '_'")
        self.name = name
        self.pipelines: Mapping[str, Pipeline] | None = None
        if pipelines is not None:
            self.pipelines = _pipelines(pipelines)
        self.check(self.pipelines)
        self._by_name = {rule.name: rule for rule in self.rules}
        self._programs = {rule.name: rule.program for rule in self.rules}

    @classmethod
    def from_json(cls, data: object, **options: Any) -> "Automation":
        """An automation of the rules in JSON ``data`` (see
        :func:`~crmkit.automation.rules_from_json`; paths in errors start at ``$``),
        with ``options`` as the constructor's."""
        rules = rules_from_json(data)
        return cls(rules, **options)

    def check(self, pipelines: Mapping[str, Pipeline] | None) -> None:
        """Check the rules against ``pipelines`` and the automation's calendars,
        senders and hooks (raises :class:`~crmkit.errors.InvalidAutomation` or
        :class:`~crmkit.errors.UnknownReference`)."""
        check_rules(
            self.rules,
            pipelines=pipelines,
            calendars=self.calendars,
            senders=self.senders,
            hooks=self.hooks,
            root="rules",
        )

    # ------------------------------------------------------------------ look-ups

    def rule(self, name: str) -> AutomationRule:
        """The rule called ``name``."""
        try:
            return self._by_name[name]
        except (KeyError, TypeError):
            raise ValidationError(
                "rule", name, "no rule of this automation has this name"
            ) from None

    def program(self, name: str) -> tuple[Instruction, ...]:
        """The compiled instructions of rule ``name``."""
        self.rule(name)
        return self._programs[name]

    def triggered_by(self, event_type: str) -> list[AutomationRule]:
        """The rules that ``event_type`` triggers, in order."""
        return [
            r
            for r in self.rules
            if isinstance(r.trigger, OnEvent) and r.trigger.event == event_type
        ]

    @property
    def event_types(self) -> list[str]:
        """The event types the rules are triggered by, sorted."""
        return sorted({r.trigger.event for r in self.rules if isinstance(r.trigger, OnEvent)})

    @property
    def scheduled(self) -> list[AutomationRule]:
        """The rules triggered by a schedule."""
        return [r for r in self.rules if isinstance(r.trigger, OnSchedule)]

    @property
    def sends(self) -> bool:
        """Whether a rule sends messages (then the CRM needs a consent policy)."""
        return any(
            isinstance(i.action, SendMessage) for r in self.rules for i in self.program(r.name)
        )

    @staticmethod
    def step_id(origin: UUID, rule: str, index: int) -> UUID:
        """The id of the step running instruction ``index`` of ``rule`` for ``origin``
        (the event, or the sweep and subject: :meth:`sweep_origin`)."""
        return uuid5(origin, f"{rule}:{index}")

    @staticmethod
    def sweep_origin(sweep_id: UUID, subject_id: UUID) -> UUID:
        """The origin of a scheduled rule's sequence for one subject of one sweep."""
        return uuid5(sweep_id, str(subject_id))

    def sweep_id(self, rule: str, period: int) -> UUID:
        """The id of the sweep of scheduled rule ``rule`` for period ``period``."""
        return uuid5(NAMESPACE, f"{self.name}:{rule}:{period}")

    def depth(self, cause: UUID | None, cause_of: Callable[[UUID], UUID | None]) -> int:
        """How long the chain of causes behind an event caused by ``cause`` is, counted
        up to ``max_depth + 1`` (see :func:`~crmkit.automation.chain_depth`)."""
        return chain_depth(cause, cause_of, limit=self.max_depth)

    # ------------------------------------------------------------------ the glue

    def install(self, crm: AutomationHost) -> None:
        """Install the automation on ``crm``: check the rules against its pipelines
        (and its scoring model and consent policy, where rules rescore or send),
        subscribe the event handler to the rules' event types, register the step
        runners and schedule the first sweep of each scheduled rule.

        The handler is subscribed from now on (:attr:`SubscriptionStart.NOW
        <crmkit.automation.SubscriptionStart.NOW>`): rules react to what happens after
        they are installed, so a store with years of history does not replay it all
        through them (a rule "call a new lead within minutes" must not call every lead
        ever captured). Installed again, later or in another process, the automation
        carries on where its subscriptions stand: events recorded while no process ran
        it are still delivered."""
        crm.check_automation(self)
        for event_type in self.event_types:
            crm.subscribe(
                event_type,
                self.handle,
                name=f"{self.name}:{event_type}",
                start=SubscriptionStart.NOW,
            )
        crm.register_runner(ACTION_STEP, self.run)
        crm.register_runner(SWEEP_STEP, self.run)
        _schedule(crm, crm.first_sweeps(self))

    def handle(self, crm: AutomationHost, event: Any) -> None:
        """The event handler: refuse a chain of causes beyond ``max_depth``
        (:class:`~crmkit.errors.AutomationLoop`), else schedule the first step of every
        rule the event triggers whose condition holds."""
        depth = self.depth(event.caused_by, crm.cause_of)
        if depth > self.max_depth:
            raise AutomationLoop(event.id, depth, self.max_depth)
        _schedule(crm, crm.automation_plan(self, event))

    def run(self, crm: AutomationHost, step: Any) -> None:
        """The step runner: run the step, then schedule what comes next."""
        result = crm.run_automation_step(self, step)
        _schedule(crm, result.next)


def _schedule(crm: AutomationHost, planned: Sequence[PlannedStep]) -> None:
    for step in planned:
        crm.schedule_step(
            step.kind,
            step.payload,
            due_at=step.due_at,
            step_id=step.step_id,
            subject=step.subject,
            subject_id=step.subject_id,
        )


def _pipelines(value: object) -> Mapping[str, Pipeline]:
    if isinstance(value, Mapping):
        items = list(value.values())
    elif isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ValidationError("pipelines", value, "expected a collection of Pipelines")
    else:
        items = list(value)
    found: dict[str, Pipeline] = {}
    for index, pipeline in enumerate(items):
        if not isinstance(pipeline, Pipeline):
            raise ValidationError(f"pipelines[{index}]", pipeline, "expected a Pipeline")
        found[pipeline.key] = pipeline
    return MappingProxyType(found)
