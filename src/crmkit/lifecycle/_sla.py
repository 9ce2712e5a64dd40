"""Service level agreements: policies, the ticket's events, and the SLA clocks.

Everything is computed from data, never from the current time: :func:`ticket_events`
turns a ticket, its status history and its activities into :class:`TicketEvent`; then
:func:`sla_status` replays the events up to a given ``now`` under the first matching
:class:`SlaPolicy`. The same inputs always give the same report.

Metrics (the usual help desk definitions):

* **first response**: from the ticket's creation to the first agent reply.
* **next response**: from a customer reply that follows an agent reply (the oldest
  unanswered one) to the next agent reply. Each such wait is one cycle; the report shows
  the current cycle, or the last one, and counts breached cycles.
* **resolution**: from creation to ``solved``. Reopening resumes the clock with the time
  already spent; ``closed`` keeps the time of the solve.

Every clock runs only while the ticket is ``new`` or ``open``: it pauses while the ticket
is ``pending`` (waiting for the customer) or ``on_hold`` (waiting for a third party), and
counts only business time when the policy has a :class:`BusinessCalendar`. Solving a
ticket fulfils every running target (a response clock stops as met unless it had already
breached). A target is met when its event happens no later than ``due_at``, the instant
at which the clock reaches the target; it is breached when the clock runs on after that.
"""

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final
from uuid import UUID

import attrs

from crmkit.clock import ensure_utc
from crmkit.errors import Problem, ValidationError
from crmkit.lifecycle._calendar import BusinessCalendar, add_business_time, business_time_between
from crmkit.models import (
    Activity,
    ActivityKind,
    StageChange,
    SubjectKind,
    Ticket,
    TicketPriority,
    TicketStatus,
)
from crmkit.models._fields import expect, expect_items
from crmkit.models._shape import shape_problems
from crmkit.models.rules import Rule, RuleEntity
from crmkit.segmentation import Context, evaluate

__all__ = [
    "AGENT_REPLY_KINDS",
    "CUSTOMER_REPLY_KINDS",
    "SlaMetric",
    "SlaPolicies",
    "SlaPolicy",
    "SlaReport",
    "SlaState",
    "SlaTimer",
    "TicketEvent",
    "TicketEventKind",
    "breached",
    "due_within",
    "sla_status",
    "ticket_events",
]

_ZERO: Final = timedelta(0)
_RUNNING: Final = frozenset({TicketStatus.NEW, TicketStatus.OPEN})
_DONE: Final = frozenset({TicketStatus.SOLVED, TicketStatus.CLOSED})
AGENT_REPLY_KINDS: Final = frozenset(
    {ActivityKind.EMAIL_SENT, ActivityKind.CALL, ActivityKind.MEETING}
)
"""Activity kinds that are an agent's reply on a ticket (the activity has an ``actor``)."""
CUSTOMER_REPLY_KINDS: Final = frozenset(
    {ActivityKind.EMAIL_SENT, ActivityKind.FORM_SUBMITTED, ActivityKind.CALL, ActivityKind.MEETING}
)
"""Activity kinds that are the customer's reply on a ticket (the activity has no actor)."""


# ---------------------------------------------------------------------------- events


class TicketEventKind(StrEnum):
    """What happened to a ticket, for its SLA clocks.

    At the same instant events apply in this order: created, status, customer reply,
    agent reply (a reply sent together with a status change counts in the new status; a
    customer and an agent reply at the same instant form a question and its answer).
    """

    CREATED = "created"
    STATUS = "status"
    CUSTOMER_REPLY = "customer_reply"
    AGENT_REPLY = "agent_reply"


_RANK: Final = {kind: rank for rank, kind in enumerate(TicketEventKind)}


def _to_at(value: datetime) -> datetime:
    return ensure_utc(value, "at")


def _to_status_opt(value: TicketStatus | str | None) -> TicketStatus | None:
    if value is None or isinstance(value, TicketStatus):
        return value
    try:
        return TicketStatus(value)
    except ValueError:
        return value  # type: ignore[return-value]  # the check names it


@attrs.frozen(kw_only=True)
class TicketEvent:
    """One event of a ticket's SLA clocks.

    ``status`` is the ticket's status after the event, given exactly for ``created`` and
    ``status`` events. ``ref`` is the id of the record it came from (the ticket, the
    :class:`~crmkit.models.StageChange` or the :class:`~crmkit.models.Activity`); it makes
    the order of simultaneous events deterministic. ``seq`` orders status changes made at
    the same instant (their position in the history).
    """

    at: datetime = attrs.field(converter=_to_at)
    kind: TicketEventKind
    status: TicketStatus | None = attrs.field(default=None, converter=_to_status_opt)
    ref: UUID | None = None
    seq: int = 0

    def __attrs_post_init__(self) -> None:
        kind: object = self.kind
        if not isinstance(kind, TicketEventKind):
            allowed = ", ".join(k.value for k in TicketEventKind)
            raise ValidationError("kind", kind, f"expected one of: {allowed}")
        needs_status = self.kind in (TicketEventKind.CREATED, TicketEventKind.STATUS)
        if self.status is not None and not isinstance(self.status, TicketStatus):
            raise ValidationError("status", self.status, "expected a ticket status")
        if needs_status and self.status is None:
            raise ValidationError("status", None, f"is required for a {self.kind.value} event")
        if not needs_status and self.status is not None:
            raise ValidationError(
                "status",
                self.status,
                f"is only given for created and status events, not {self.kind.value}",
            )
        if self.ref is not None and not isinstance(self.ref, UUID):
            raise ValidationError("ref", self.ref, "expected a UUID")
        if isinstance(self.seq, bool) or not isinstance(self.seq, int) or self.seq < 0:
            raise ValidationError("seq", self.seq, "expected an int, not negative")

    def sort_key(self) -> tuple[datetime, int, int, str]:
        """The events' order: time, kind (see :class:`TicketEventKind`), ``seq``, ``ref``."""
        return (self.at, _RANK[self.kind], self.seq, "" if self.ref is None else str(self.ref))


def _reply_kind(activity: Activity) -> TicketEventKind | None:
    if activity.actor is not None:
        return TicketEventKind.AGENT_REPLY if activity.kind in AGENT_REPLY_KINDS else None
    return TicketEventKind.CUSTOMER_REPLY if activity.kind in CUSTOMER_REPLY_KINDS else None


def _chained(changes: Sequence[StageChange]) -> list[StageChange]:
    """The history in time order; changes made at one instant follow their chain
    (each starts where the previous ended), whatever order the store returned them in."""
    ordered = sorted(changes, key=lambda c: (c.at, c.created_at, str(c.id)))
    result: list[StageChange] = []
    start = 0
    while start < len(ordered):
        end = start
        while end < len(ordered) and ordered[end].at == ordered[start].at:
            end += 1
        group = ordered[start:end]
        while group:
            current = result[-1].to_stage if result else None
            targets = {c.to_stage for c in group}
            pick = next(
                (c for c in group if c.from_stage == current),
                next((c for c in group if c.from_stage not in targets), group[0]),
            )
            group.remove(pick)
            result.append(pick)
        start = end
    return result


def ticket_events(
    ticket: Ticket, history: Iterable[StageChange], activities: Iterable[Activity]
) -> list[TicketEvent]:
    """The SLA events of ``ticket``, in order (:meth:`TicketEvent.sort_key`).

    * ``created`` at ``ticket.created_at``, with the first status: the ``from_stage`` of
      the earliest history entry (its ``to_stage`` when it has none), else the ticket's
      status.
    * one ``status`` event per history entry, at its ``at``. Every entry must be a ticket
      stage change of this ticket; anything else raises
      :class:`~crmkit.errors.ValidationError` naming ``history[i]``.
    * replies from ``activities`` whose ``ticket_id`` is the ticket's (others are
      skipped, so a contact's whole timeline may be passed), at ``occurred_at``:

      - agent reply: ``actor`` set (an agent) and kind ``email_sent``, ``call`` or
        ``meeting``;
      - customer reply: no ``actor`` and kind ``email_sent`` (the customer wrote),
        ``form_submitted``, ``call`` or ``meeting``;
      - anything else (internal notes, opens, clicks, page views, ...) is no reply.

      Replies before the ticket's creation are skipped.
    """
    expect(ticket, Ticket, "ticket", "a Ticket")
    history = expect_items(history, StageChange, "history", "StageChange")
    activities = expect_items(activities, Activity, "activities", "Activity")
    given: list[object] = list(history)
    changes: list[StageChange] = []
    problems: list[Problem] = []
    for index, change in enumerate(given):
        where = f"history[{index}]"
        if not isinstance(change, StageChange):
            problems.append(Problem(where, change, "expected a StageChange"))
            continue
        changes.append(change)
        if change.subject is not SubjectKind.TICKET or change.subject_id != ticket.id:
            problems.append(Problem(where, change, f"is not a status change of ticket {ticket.id}"))
            continue
        try:
            TicketStatus(change.to_stage)
            if change.from_stage is not None:
                TicketStatus(change.from_stage)
        except ValueError:
            problems.append(Problem(where, change, "names a stage that is no ticket status"))
    if problems:
        raise ValidationError.of(problems)
    chain = _chained(changes)
    initial = ticket.status
    if chain:
        initial = TicketStatus(chain[0].from_stage or chain[0].to_stage)
        if chain[0].from_stage is None:
            # The entry recorded the first status itself: it is the creation, not a move.
            chain = chain[1:]
    events = [
        TicketEvent(
            at=ticket.created_at, kind=TicketEventKind.CREATED, status=initial, ref=ticket.id
        )
    ]
    events.extend(
        TicketEvent(
            at=change.at,
            kind=TicketEventKind.STATUS,
            status=TicketStatus(change.to_stage),
            ref=change.id,
            seq=seq,
        )
        for seq, change in enumerate(chain, start=1)
    )
    for activity in activities:
        if activity.ticket_id != ticket.id or activity.occurred_at < ticket.created_at:
            continue
        kind = _reply_kind(activity)
        if kind is not None:
            events.append(TicketEvent(at=activity.occurred_at, kind=kind, ref=activity.id))
    events.sort(key=TicketEvent.sort_key)
    return events


# ---------------------------------------------------------------------------- policies


class SlaMetric(StrEnum):
    """What an SLA target measures (see the module documentation)."""

    FIRST_RESPONSE = "first_response"
    NEXT_RESPONSE = "next_response"
    RESOLUTION = "resolution"


def _to_priorities(value: Iterable[TicketPriority | str]) -> frozenset[TicketPriority]:
    try:
        return frozenset(TicketPriority(p) for p in value)
    except (TypeError, ValueError):
        return value  # type: ignore[return-value]  # the check names it


def _is_target(value: object) -> bool:
    return isinstance(value, timedelta) and value > _ZERO


@attrs.frozen(kw_only=True)
class SlaPolicy:
    """SLA targets for the tickets a policy applies to.

    A policy applies to a ticket when the ticket's priority is one of ``priorities``
    (empty: any priority) and ``condition``, a ticket :class:`~crmkit.models.rules.Rule`,
    is TRUE for it (``None``: always). Targets (positive durations, at least one given)
    are business time under ``calendar``; ``calendar=None`` means calendar hours (24/7).
    A running timer is *at risk* once ``at_risk_after`` (a fraction, 0 to 1) of its
    target has elapsed.
    """

    name: str
    priorities: frozenset[TicketPriority] = attrs.field(
        default=frozenset(), converter=_to_priorities
    )
    condition: Rule | None = None
    first_response: timedelta | None = None
    next_response: timedelta | None = None
    resolution: timedelta | None = None
    calendar: BusinessCalendar | None = None
    at_risk_after: float = 0.75

    def __attrs_post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ValidationError.of(problems)

    def _problems(self) -> Iterator[Problem]:
        if not isinstance(self.name, str) or not self.name.strip() or len(self.name) > 200:
            yield Problem("name", self.name, "expected a name of 1 to 200 characters")
        if not isinstance(self.priorities, frozenset) or not all(
            isinstance(p, TicketPriority) for p in self.priorities
        ):
            allowed = ", ".join(p.value for p in TicketPriority)
            yield Problem("priorities", self.priorities, f"expected priorities among: {allowed}")
        if self.condition is not None and (
            not isinstance(self.condition, Rule) or self.condition.entity is not RuleEntity.TICKET
        ):
            yield Problem("condition", self.condition, "expected a ticket rule")
        for metric in SlaMetric:
            target = getattr(self, metric.value)
            if target is not None and not _is_target(target):
                yield Problem(metric.value, target, "expected a positive timedelta")
        if all(getattr(self, metric.value) is None for metric in SlaMetric):
            yield Problem("resolution", None, "a policy needs at least one target")
        calendar: object = self.calendar
        if calendar is not None and not isinstance(calendar, BusinessCalendar):
            yield Problem("calendar", calendar, "expected a BusinessCalendar or None")
        ratio = self.at_risk_after
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio <= 1:
            yield Problem("at_risk_after", ratio, "expected a fraction from 0 to 1")

    def target(self, metric: SlaMetric) -> timedelta | None:
        """The target for ``metric``; ``None`` when the policy sets none."""
        target: timedelta | None = getattr(self, SlaMetric(metric).value)
        return target

    def applies_to(self, ticket: Ticket, now: datetime) -> bool:
        """Whether the policy applies to ``ticket``; ``now`` fixes relative dates in rules."""
        if self.priorities and ticket.priority not in self.priorities:
            return False
        if self.condition is None:
            return True
        return evaluate(self.condition, ticket, Context(now=now)) is True


def _to_policies(value: Iterable[SlaPolicy]) -> tuple[SlaPolicy, ...]:
    try:
        return tuple(value)
    except TypeError:
        return value  # type: ignore[return-value]  # the check names it


@attrs.frozen
class SlaPolicies:
    """An ordered set of SLA policies: the first one that applies to a ticket is its policy.

    Policy names are unique. Put specific policies (urgent, VIP) before general ones.
    """

    policies: tuple[SlaPolicy, ...] = attrs.field(converter=_to_policies)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.policies, tuple):
            raise ValidationError("policies", self.policies, "expected a sequence of SlaPolicy")
        seen: set[str] = set()
        problems = []
        given: tuple[object, ...] = self.policies
        for index, policy in enumerate(given):
            if not isinstance(policy, SlaPolicy):
                problems.append(Problem(f"policies[{index}]", policy, "expected an SlaPolicy"))
            elif policy.name in seen:
                problems.append(Problem(f"policies[{index}].name", policy.name, "duplicate name"))
            else:
                seen.add(policy.name)
        if problems:
            raise ValidationError.of(problems)

    def match(self, ticket: Ticket, now: datetime) -> SlaPolicy | None:
        """The first policy that applies to ``ticket`` at ``now``; ``None`` if none does."""
        when = ensure_utc(now, "now")
        return next((p for p in self.policies if p.applies_to(ticket, when)), None)


# ---------------------------------------------------------------------------- report


class SlaState(StrEnum):
    """Where one SLA timer stands.

    ``idle``: nothing to measure now (no customer reply awaits an answer). ``active``:
    running or paused, within target; ``at_risk``: likewise, past the policy's
    ``at_risk_after`` share of its target; ``breached``: ran on after its due time
    (running, paused or stopped); ``met``: stopped no later than its due time.
    """

    IDLE = "idle"
    ACTIVE = "active"
    AT_RISK = "at_risk"
    BREACHED = "breached"
    MET = "met"


@attrs.frozen(kw_only=True)
class SlaTimer:
    """One SLA metric of one ticket, as of the report's ``now``.

    ``elapsed`` is business time counted (pauses excluded); ``remaining`` is ``target -
    elapsed`` (negative once overrun). ``due_at`` is the UTC instant the clock reaches
    its target while it runs: ``None`` while paused, stopped or idle; in the past once
    breached. ``time_to_breach`` is ``due_at - now`` (zero or negative after the due
    time), ``None`` when there is no ``due_at``. ``breached_at`` is the due time the
    clock ran past; ``breaches`` counts breached cycles (0 or 1 except for next response).
    """

    metric: SlaMetric
    target: timedelta
    state: SlaState
    elapsed: timedelta
    remaining: timedelta
    paused: bool
    started_at: datetime | None
    stopped_at: datetime | None
    due_at: datetime | None
    time_to_breach: timedelta | None
    breached_at: datetime | None
    breaches: int

    def __attrs_post_init__(self) -> None:
        problems = shape_problems(self)
        if problems:
            raise ValidationError.of(problems)

    @property
    def running(self) -> bool:
        """The clock is counting now (started, not stopped, not paused)."""
        return self.state is not SlaState.IDLE and self.stopped_at is None and not self.paused


@attrs.frozen(kw_only=True)
class SlaReport:
    """The SLA timers of one ticket at ``now`` under ``policy`` (its name).

    ``policy`` is ``None`` when no policy applies; ``timers`` then is empty. Otherwise it
    holds one timer per target the policy sets, in :class:`SlaMetric` order.
    """

    ticket_id: UUID
    now: datetime
    policy: str | None
    timers: tuple[SlaTimer, ...]

    def __attrs_post_init__(self) -> None:
        problems = shape_problems(self)
        if problems:
            raise ValidationError.of(problems)

    def timer(self, metric: SlaMetric | str) -> SlaTimer | None:
        """The timer of ``metric``; ``None`` when the policy sets no such target."""
        wanted = SlaMetric(metric)
        return next((t for t in self.timers if t.metric is wanted), None)

    @property
    def breached(self) -> bool:
        """Some target was breached (now or in an earlier cycle)."""
        return any(t.breaches for t in self.timers)

    @property
    def next_due_at(self) -> datetime | None:
        """The earliest due time of a running timer that has not breached yet."""
        due = [t.due_at for t in self.timers if t.due_at is not None and t.breached_at is None]
        return min(due, default=None)


# ---------------------------------------------------------------------------- the clocks


class _Watch:
    """One clock: time counted while running, and the instant it passed its target."""

    __slots__ = ("breached_at", "elapsed", "started_at", "stopped_at")

    def __init__(self, at: datetime) -> None:
        self.started_at = at
        self.stopped_at: datetime | None = None
        self.elapsed = _ZERO
        self.breached_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.stopped_at is None

    def run(
        self, start: datetime, end: datetime, calendar: BusinessCalendar | None, target: timedelta
    ) -> None:
        span = business_time_between(calendar, start, end)
        if self.breached_at is None:
            remaining = target - self.elapsed
            if span >= remaining:
                due = add_business_time(calendar, start, remaining)
                if end > due:
                    self.breached_at = due
        self.elapsed += span


def _policies(value: SlaPolicies | Iterable[SlaPolicy]) -> SlaPolicies:
    if isinstance(value, SlaPolicies):
        return value
    return SlaPolicies(tuple(expect_items(value, SlaPolicy, "policies", "SlaPolicy")))


def _checked_events(events: Iterable[TicketEvent], created_at: datetime) -> list[TicketEvent]:
    ordered = sorted(events, key=TicketEvent.sort_key)
    created = [e for e in ordered if e.kind is TicketEventKind.CREATED]
    if len(created) != 1:
        raise ValidationError("events", len(created), "expected exactly one created event")
    if ordered[0] is not created[0]:
        raise ValidationError("events", ordered[0], "comes before the ticket's created event")
    if created[0].at != created_at:
        raise ValidationError(
            "events",
            created[0],
            f"the created event is not at the ticket's creation ({created_at})",
        )
    return ordered


def sla_status(
    ticket: Ticket,
    events: Iterable[TicketEvent],
    policies: SlaPolicies | Iterable[SlaPolicy],
    now: datetime,
) -> SlaReport:
    """The SLA timers of ``ticket`` at ``now``, from its ``events`` (see :func:`ticket_events`).

    The policy is the first of ``policies`` that applies to ``ticket`` (its current
    version) at ``now``. Events after ``now`` are ignored, so a past ``now`` replays the
    clocks as they stood then. ``now`` must be aware and not before the ticket's creation;
    when no event lies after ``now`` the events must replay to the ticket's status.
    Raises :class:`~crmkit.errors.ValidationError` naming ``now`` or ``events`` otherwise.
    """
    expect(ticket, Ticket, "ticket", "a Ticket")
    events = expect_items(events, TicketEvent, "events", "TicketEvent")
    when = ensure_utc(now, "now")
    if when < ticket.created_at:
        raise ValidationError("now", now, "is earlier than the ticket's creation")
    chosen = _policies(policies).match(ticket, when)
    ordered = _checked_events(events, ticket.created_at)
    if chosen is None:
        return SlaReport(ticket_id=ticket.id, now=when, policy=None, timers=())
    return _Replay(chosen, ordered, when, ticket).report()


class _Replay:
    """Walks the events once, running the clocks between them."""

    def __init__(
        self, policy: SlaPolicy, events: Sequence[TicketEvent], now: datetime, ticket: Ticket
    ) -> None:
        self.policy = policy
        self.now = now
        self.ticket = ticket
        created = events[0]
        assert created.status is not None  # checked by TicketEvent
        self.status: TicketStatus = created.status
        self.first = _Watch(created.at)
        self.resolution = _Watch(created.at)
        if self.status in _DONE:
            self.first.stopped_at = self.resolution.stopped_at = created.at
        self.cycles: list[_Watch] = []
        self.later = False
        since = created.at
        for event in events[1:]:
            if event.at > now:
                self.later = True
                break
            self._advance(since, event.at)
            since = event.at
            self._apply(event)
        self._advance(since, now)

    def _watches(self) -> Iterator[tuple[_Watch, timedelta]]:
        for watch, target in (
            (self.first, self.policy.first_response),
            (self.resolution, self.policy.resolution),
            (self.cycles[-1] if self.cycles else None, self.policy.next_response),
        ):
            if watch is not None and target is not None and watch.active:
                yield watch, target

    def _advance(self, start: datetime, end: datetime) -> None:
        if end > start and self.status in _RUNNING:
            for watch, target in self._watches():
                watch.run(start, end, self.policy.calendar, target)

    def _apply(self, event: TicketEvent) -> None:
        at = event.at
        if event.kind is TicketEventKind.STATUS:
            assert event.status is not None  # checked by TicketEvent
            before, self.status = self.status, event.status
            if self.status in _DONE:
                for watch in (self.first, self.resolution, *self.cycles[-1:]):
                    if watch.active:
                        watch.stopped_at = at
            elif before in _DONE:
                self.resolution.stopped_at = None  # reopened: the clock resumes
        elif event.kind is TicketEventKind.AGENT_REPLY:
            for watch in (self.first, *self.cycles[-1:]):
                if watch.active:
                    watch.stopped_at = at
        elif event.kind is TicketEventKind.CUSTOMER_REPLY:
            waiting = bool(self.cycles) and self.cycles[-1].active
            # Before the first response (or a solve without one) the first clock covers it.
            if not self.first.active and not waiting and self.status not in _DONE:
                self.cycles.append(_Watch(at))

    def report(self) -> SlaReport:
        if not self.later and self.status is not self.ticket.status:
            raise ValidationError(
                "events",
                self.status.value,
                f"replay to status {self.status.value}, but the ticket is "
                f"{self.ticket.status.value}",
            )
        timers = []
        for metric in SlaMetric:
            target = self.policy.target(metric)
            if target is None:
                continue
            if metric is SlaMetric.NEXT_RESPONSE:
                watch = self.cycles[-1] if self.cycles else None
                breaches = sum(c.breached_at is not None for c in self.cycles)
            else:
                watch = self.first if metric is SlaMetric.FIRST_RESPONSE else self.resolution
                breaches = int(watch.breached_at is not None)
            timers.append(self._timer(metric, target, watch, breaches))
        return SlaReport(
            ticket_id=self.ticket.id, now=self.now, policy=self.policy.name, timers=tuple(timers)
        )

    def _timer(
        self, metric: SlaMetric, target: timedelta, watch: _Watch | None, breaches: int
    ) -> SlaTimer:
        if watch is None:
            return SlaTimer(
                metric=metric,
                target=target,
                state=SlaState.IDLE,
                elapsed=_ZERO,
                remaining=target,
                paused=False,
                started_at=None,
                stopped_at=None,
                due_at=None,
                time_to_breach=None,
                breached_at=None,
                breaches=breaches,
            )
        remaining = target - watch.elapsed
        paused = watch.active and self.status not in _RUNNING
        due_at: datetime | None = None
        if watch.active and not paused:
            if watch.breached_at is not None:
                due_at = watch.breached_at
            else:
                due_at = add_business_time(self.policy.calendar, self.now, remaining)
        if watch.breached_at is not None:
            state = SlaState.BREACHED
        elif not watch.active:
            state = SlaState.MET
        elif watch.elapsed >= target * self.policy.at_risk_after:
            state = SlaState.AT_RISK
        else:
            state = SlaState.ACTIVE
        return SlaTimer(
            metric=metric,
            target=target,
            state=state,
            elapsed=watch.elapsed,
            remaining=remaining,
            paused=paused,
            started_at=watch.started_at,
            stopped_at=watch.stopped_at,
            due_at=due_at,
            time_to_breach=None if due_at is None else due_at - self.now,
            breached_at=watch.breached_at,
            breaches=breaches,
        )


# ---------------------------------------------------------------------------- queries


def _metric(metric: object) -> "SlaMetric | None":
    if metric is None:
        return None
    try:
        return SlaMetric(metric)  # type: ignore[arg-type]  # anything else: ValueError
    except ValueError:
        allowed = ", ".join(m.value for m in SlaMetric)
        raise ValidationError("metric", metric, f"expected one of: {allowed}") from None


def breached(
    reports: Iterable[SlaReport], metric: SlaMetric | str | None = None
) -> list[SlaReport]:
    """The reports with a breached target (of ``metric``, or of any), earliest breach first.

    A breach counts whether the ticket is still open or not, and for next response in any
    cycle; filter on :attr:`SlaTimer.running` for the live queue.
    """
    reports = expect_items(reports, SlaReport, "reports", "SlaReport")
    wanted = _metric(metric)
    found: list[tuple[datetime, str, SlaReport]] = []
    for report in reports:
        times = [
            t.breached_at
            for t in report.timers
            if t.breaches and (wanted is None or t.metric is wanted)
        ]
        if times:
            first = min((t for t in times if t is not None), default=report.now)
            found.append((first, str(report.ticket_id), report))
    found.sort(key=lambda item: (item[0], item[1]))
    return [report for _, _, report in found]


def due_within(
    reports: Iterable[SlaReport], within: timedelta, metric: SlaMetric | str | None = None
) -> list[tuple[SlaReport, SlaTimer]]:
    """The running, not yet breached timers due within ``within`` of their report's
    ``now`` (``time_to_breach <= within``), soonest first: the queue to work next.
    """
    reports = expect_items(reports, SlaReport, "reports", "SlaReport")
    if not isinstance(within, timedelta) or within < _ZERO:
        raise ValidationError("within", within, "expected a timedelta, not negative")
    wanted = _metric(metric)
    found: list[tuple[datetime, str, str, SlaReport, SlaTimer]] = []
    for report in reports:
        for timer in report.timers:
            if wanted is not None and timer.metric is not wanted:
                continue
            if timer.due_at is None or timer.breached_at is not None:
                continue
            if timer.due_at - report.now <= within:
                found.append(
                    (timer.due_at, str(report.ticket_id), timer.metric.value, report, timer)
                )
    found.sort(key=lambda item: item[:3])
    return [(report, timer) for *_, report, timer in found]
