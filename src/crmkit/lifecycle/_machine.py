"""The pipeline state machine: which moves are allowed, and making them.

:meth:`PipelineMachine.can_move` lists every unmet requirement of a move;
:meth:`PipelineMachine.move` makes it, returning the entity in its new stage and the
:class:`~crmkit.models.StageChange` to store, or raises
:class:`~crmkit.errors.TransitionNotAllowed` naming every unmet requirement. A move
to the stage the entity is in is refused: there is no event without a change.

Deals: entering a won or lost stage sets ``status`` and ``closed_at`` (a lost stage
also ``lost_reason``); reopening clears them. Unless its probability was set by hand
(``probability_manual``), a deal takes the probability of its new stage. Leads:
entering a won stage qualifies the lead, a lost stage disqualifies it (the reason is
kept as ``disqualified_reason``); reopening sets it back to ``working``.

A closed deal (won or lost) or lead (converted, disqualified, or in a won stage) is a
record: :meth:`PipelineMachine.check_update` refuses changing it with
:class:`~crmkit.errors.ClosedRecord`, and :meth:`PipelineMachine.reopen` is the one
move that takes it back to an open stage (:func:`closed_state` tells what closed it).
While an entity is in a stage, :meth:`PipelineMachine.check_update` also refuses a
change that breaks the stage's required fields or minimum amount, as the move into the
stage would have been refused.
"""

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar, cast

import attrs

from crmkit.clock import FixedClock, ensure_utc
from crmkit.errors import (
    ClosedRecord,
    InvalidPipeline,
    Problem,
    TransitionNotAllowed,
    ValidationError,
    short_repr,
)
from crmkit.lifecycle._moved import Moved, Unmet
from crmkit.lifecycle._pipeline import Pipeline, Stage, StageKind
from crmkit.models import Deal, DealStatus, Lead, LeadStatus, Money, StageChange, SubjectKind

__all__ = ["Guard", "Guards", "PipelineMachine", "closed_state"]

_Subject = TypeVar("_Subject", Deal, Lead)

Guard = Callable[[Any, Stage], str | None]
"""A host's check of a move: ``(entity, target stage) -> None`` when it passes, or the
reason it does not, said for people."""


def _guard_dict(value: Mapping[str, Guard]) -> dict[str, Guard]:
    return dict(value) if isinstance(value, Mapping) else value


@attrs.frozen
class Guards:
    """The guard callables a host application registers, by name.

    >>> guards = Guards({"credit_check": lambda deal, stage: None})
    >>> "credit_check" in guards
    True
    """

    checks: Mapping[str, Guard] = attrs.field(factory=dict, converter=_guard_dict)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.checks, dict):
            raise ValidationError("checks", self.checks, "expected a mapping of names to callables")
        for name, check in self.checks.items():
            if not isinstance(name, str) or not callable(check):
                raise ValidationError(
                    f"checks[{short_repr(name)}]", check, "expected a name -> callable"
                )

    def __contains__(self, name: object) -> bool:
        return name in self.checks

    def run(self, name: str, entity: object, stage: Stage) -> str | None:
        """Run guard ``name``; its reason if the move must not happen."""
        outcome = self.checks[name](entity, stage)
        if outcome is not None and (not isinstance(outcome, str) or not outcome.strip()):
            raise ValidationError(
                f"guards.{name}", outcome, "a guard returns None or the reason, a non-blank string"
            )
        return outcome


def _is_set(entity: object, name: str) -> bool:
    if name.startswith("custom."):
        value = cast(Mapping[str, object], getattr(entity, "custom")).get(name[7:])  # noqa: B009
    else:
        value = getattr(entity, name)
    if value is None:
        return False
    if isinstance(value, str | frozenset | tuple | list):
        return bool(value) if not isinstance(value, str) else bool(value.strip())
    return True


def _stage_of(pipeline: Pipeline, key: str | None) -> Stage | None:
    return next((s for s in pipeline.stages if s.key == key), None)


def closed_state(entity: Deal | Lead, pipeline: Pipeline | None = None) -> str | None:
    """What closed ``entity``, or ``None`` while it is open.

    A deal is closed when it is ``"won"`` or ``"lost"``; a lead when it is
    ``"converted"`` (it has a deal), ``"disqualified"``, or ``"qualified"`` by reaching a
    won stage of ``pipeline`` (its lead pipeline; a lead accepted outside a pipeline stays
    open until it is converted).
    """
    if isinstance(entity, Deal):
        return None if entity.status is DealStatus.OPEN else entity.status.value
    if not isinstance(entity, Lead):
        raise ValidationError("entity", entity, "expected a Deal or a Lead")
    if pipeline is not None and not isinstance(pipeline, Pipeline):
        raise ValidationError("pipeline", pipeline, "expected a Pipeline or None")
    if entity.deal_id is not None:
        return "converted"
    if entity.status is LeadStatus.DISQUALIFIED:
        return "disqualified"
    if pipeline is not None and entity.pipeline == pipeline.key:
        stage = _stage_of(pipeline, entity.stage)
        if stage is not None and stage.kind is StageKind.WON:
            return "qualified"
    return None


def _stage_unmet(entity: object, stage: Stage) -> list[Unmet]:
    """The declarative requirements of ``stage`` (required fields, minimum amount) that
    ``entity`` does not meet."""
    requires = stage.requires
    unmet = [
        Unmet(f"required_field:{name}", f"{name} is required in stage {stage.key!r}")
        for name in sorted(requires.required_fields)
        if not _is_set(entity, name)
    ]
    if requires.minimum_amount is not None:
        unmet.extend(_amount_unmet(entity, requires.minimum_amount, stage.key))
    return unmet


def _approval_unmet(what: str, by: str | None, approved_by: str | None) -> list[Unmet]:
    unmet = []
    if by is None:
        unmet.append(Unmet("approval", f"{what} needs to know who moves (by)"))
    if approved_by is None:
        unmet.append(Unmet("approval", f"{what} needs the approval of a second person"))
    elif by is not None and approved_by.casefold() == by.casefold():
        unmet.append(
            Unmet("approval", "the approver must be a second person, not the one who moves")
        )
    return unmet


class PipelineMachine(Generic[_Subject]):
    """Moves deals or leads through one pipeline.

    ``guards`` must hold every guard the pipeline's stages name (checked here, so a
    missing guard fails when the machine is made, not at the first move).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        guards: Guards | None = None,
    ) -> None:
        if not isinstance(pipeline, Pipeline):
            raise ValidationError("pipeline", pipeline, "expected a Pipeline")
        guards = Guards() if guards is None else guards
        if not isinstance(guards, Guards):
            raise ValidationError("guards", guards, "expected Guards")
        missing = [
            Problem(f"stages[{i}].requires.guards", name, "no such guard is registered")
            for i, stage in enumerate(pipeline.stages)
            for name in stage.requires.guards
            if name not in guards
        ]
        if missing:
            raise InvalidPipeline.of(missing)
        self.pipeline = pipeline
        self.guards = guards
        self._entity = Deal if pipeline.subject is SubjectKind.DEAL else Lead

    def _check_entity(self, entity: object) -> _Subject:
        if not isinstance(entity, self._entity):
            raise ValidationError(
                "entity", entity, f"pipeline {self.pipeline.key!r} moves {self._entity.__name__}s"
            )
        if entity.pipeline != self.pipeline.key:
            raise ValidationError(
                "pipeline", entity.pipeline, f"the entity is not in pipeline {self.pipeline.key!r}"
            )
        return cast(_Subject, entity)

    def can_move(
        self,
        entity: _Subject,
        to: str,
        *,
        by: str | None = None,
        reason: str | None = None,
        approved_by: str | None = None,
    ) -> tuple[Unmet, ...]:
        """Every requirement the move of ``entity`` to stage ``to`` does not meet."""
        entity = self._check_entity(entity)
        by, reason, approved_by = _people(by, reason, approved_by)
        target = self.pipeline.stage(to)
        current = entity.stage
        unmet: list[Unmet] = []
        if isinstance(entity, Lead) and entity.deal_id is not None:
            unmet.append(Unmet("lead_converted", "the lead is converted into a deal"))
        if current == to:
            unmet.append(Unmet("same_stage", f"is already in stage {to!r}"))
        elif current is None or not self.pipeline.allows(current, to):
            unmet.append(
                Unmet(
                    "transition",
                    f"pipeline {self.pipeline.key!r} allows no move {current!r} -> {to!r}",
                )
            )
        if target.kind is StageKind.LOST and self.pipeline.lost_reason_required and not reason:
            unmet.append(Unmet("lost_reason", "a reason is required to lose"))
        requires = target.requires
        unmet.extend(_stage_unmet(entity, target))
        if requires.approval:
            unmet.extend(_approval_unmet(f"stage {to!r}", by, approved_by))
        for name in requires.guards:
            outcome = self.guards.run(name, entity, target)
            if outcome is not None:
                unmet.append(Unmet(f"guard:{name}", outcome))
        return tuple(unmet)

    def move(
        self,
        entity: _Subject,
        to: str,
        *,
        by: str | None = None,
        reason: str | None = None,
        approved_by: str | None = None,
        at: datetime,
    ) -> Moved[_Subject]:
        """Move ``entity`` to stage ``to`` at ``at`` (aware), or raise
        ``TransitionNotAllowed``."""
        when = ensure_utc(at, "at")
        unmet = self.can_move(entity, to, by=by, reason=reason, approved_by=approved_by)
        self._refuse(entity.stage, to, unmet)
        return self._make(entity, to, by, reason, approved_by, now=when)

    def _refuse(self, source: str | None, to: str, unmet: Sequence[Unmet]) -> None:
        if unmet:
            raise TransitionNotAllowed(
                self._entity.entity_name,
                source,
                to,
                [u.message for u in unmet],
                codes=[u.code for u in unmet],
            )

    def reopen(
        self,
        entity: _Subject,
        to: str,
        *,
        by: str,
        reason: str,
        approved_by: str | None = None,
        at: datetime,
    ) -> Moved[_Subject]:
        """Move a closed ``entity`` back to the open stage ``to``: the one way a closed
        deal or lead changes again.

        Besides what every move to ``to`` requires (the pipeline must allow leaving the
        closed stage: ``reopen=True``, or the pair listed in mode ``explicit``), a reopen
        needs who reopens (``by``) and why (``reason``), and, when the closed stage
        required approval to enter, the approval of a second person to leave it: what
        took four eyes to close takes four eyes to reopen. A converted lead cannot be
        reopened (its deal is what goes on).
        """
        entity = self._check_entity(entity)
        when = ensure_utc(at, "at")
        who, why, approver = _people(by, reason, approved_by)
        unmet: list[Unmet] = []
        state = closed_state(entity, self.pipeline)
        if state is None:
            unmet.append(Unmet("not_closed", "is open: move it instead of reopening it"))
        if self.pipeline.stage(to).closed:
            unmet.append(Unmet("reopen_target", f"a reopen goes to an open stage, not {to!r}"))
        if who is None:
            unmet.append(Unmet("reopen_by", "a reopen needs to know who reopens (by)"))
        if why is None:
            unmet.append(Unmet("reopen_reason", "a reopen needs a reason"))
        current = _stage_of(self.pipeline, entity.stage)
        if current is not None and current.requires.approval:
            unmet.extend(_approval_unmet(f"leaving stage {current.key!r}", who, approver))
        for found in self.can_move(entity, to, by=who, reason=why, approved_by=approver):
            if found not in unmet:
                unmet.append(found)
        self._refuse(entity.stage, to, unmet)
        return self._make(entity, to, who, f"reopened: {why}", approver, now=when)

    def check_update(self, before: _Subject, after: _Subject) -> _Subject:
        """``after`` if changing ``before`` into it is allowed, else the refusal.

        A closed ``before`` refuses every change (:class:`~crmkit.errors.ClosedRecord`;
        see :meth:`reopen`). An open one must not break what its stage requires: a
        required field emptied, or an amount below the stage's minimum, raises
        :class:`~crmkit.errors.TransitionNotAllowed` naming each such requirement, as the
        move into the stage would have (requirements already unmet before the change are
        not the change's fault and do not refuse it). Moves are for stage and status.
        """
        before = self._check_entity(before)
        after = self._check_entity(after)
        if after.id != before.id:
            raise ValidationError("id", after.id, "an update keeps the entity's id")
        state = closed_state(before, self.pipeline)
        name = self._entity.entity_name
        if state is not None:
            how = "no reopen (it has a deal)" if state == "converted" else f"reopen_{name}"
            raise ClosedRecord(name, before.id, before.stage, state, how)
        stage = _stage_of(self.pipeline, before.stage)
        if stage is None or after.stage != before.stage:
            raise ValidationError("stage", after.stage, "the stage changes only through a move")
        was = {u.code for u in _stage_unmet(before, stage)}
        broken = [u for u in _stage_unmet(after, stage) if u.code not in was]
        self._refuse(before.stage, stage.key, broken)
        return after

    def _make(
        self,
        entity: _Subject,
        to: str,
        by: str | None,
        reason: str | None,
        approved_by: str | None,
        *,
        now: datetime,
    ) -> Moved[_Subject]:
        by, reason, approved_by = _people(by, reason, approved_by)
        target = self.pipeline.stage(to)
        moved: Any
        if isinstance(entity, Deal):
            moved = _move_deal(entity, target, reason, now)
            amount, probability, close = moved.amount, moved.probability, moved.expected_close
        else:
            moved = _move_lead(entity, target, reason, now)
            amount, probability, close = None, target.probability, None
        if approved_by is not None:  # recorded even where the stage does not ask for it
            reason = f"{reason + '; ' if reason else ''}approved by {approved_by}"
        change = StageChange.new(
            subject=self.pipeline.subject,
            subject_id=entity.id,
            pipeline=self.pipeline.key,
            from_stage=entity.stage,
            to_stage=to,
            at=now,
            by=by,
            reason=reason,
            amount=amount,
            probability=probability,
            expected_close=close,
            clock=FixedClock(now),
        )
        return Moved(cast(_Subject, moved), change)


def _people(
    by: object, reason: object, approved_by: object
) -> tuple[str | None, str | None, str | None]:
    """``by``, ``reason`` and ``approved_by`` trimmed, a blank reason as ``None``; anything
    but text, and a blank person (``by=""`` is not "no one": that is ``None``), raises
    ``ValidationError`` naming the argument."""
    found: list[str | None] = []
    for name, value in (("by", by), ("reason", reason), ("approved_by", approved_by)):
        if value is not None and not isinstance(value, str):
            raise ValidationError(name, value, "expected text or None")
        if isinstance(value, str) and not value.strip() and name != "reason":
            raise ValidationError(name, value, "a user id must not be blank (None: no one)")
        found.append(value.strip() or None if isinstance(value, str) else None)
    return found[0], found[1], found[2]


def _amount_unmet(entity: object, minimum: Money, to: str) -> list[Unmet]:
    amount = getattr(entity, "amount", None)
    if amount is None:
        return [Unmet("minimum_amount", f"stage {to!r} needs an amount of at least {minimum}")]
    if amount.currency != minimum.currency:
        return [
            Unmet(
                "minimum_amount",
                f"stage {to!r} needs at least {minimum}; the amount is in {amount.currency}",
            )
        ]
    if amount.amount < minimum.amount:
        return [Unmet("minimum_amount", f"stage {to!r} needs at least {minimum}, not {amount}")]
    return []


def _move_deal(deal: Deal, target: Stage, reason: str | None, now: Any) -> Deal:
    status = {
        StageKind.OPEN: DealStatus.OPEN,
        StageKind.WON: DealStatus.WON,
        StageKind.LOST: DealStatus.LOST,
    }[target.kind]
    return attrs.evolve(
        deal,
        stage=target.key,
        status=status,
        closed_at=None if status is DealStatus.OPEN else now,
        lost_reason=reason.strip() if status is DealStatus.LOST and reason else None,
        # A probability set by hand is kept while the deal is open; closing decides it.
        probability=(
            deal.probability
            if deal.probability_manual and status is DealStatus.OPEN
            else target.probability
        ),
        updated_at=now,
    )


def _move_lead(lead: Lead, target: Stage, reason: str | None, now: Any) -> Lead:
    if target.kind is StageKind.WON:
        status, why = LeadStatus.QUALIFIED, None
    elif target.kind is StageKind.LOST:
        status, why = LeadStatus.DISQUALIFIED, (reason or "").strip() or target.label
    elif lead.status in (LeadStatus.NEW, LeadStatus.DISQUALIFIED):  # started, or reopened
        status, why = LeadStatus.WORKING, None
    else:  # working, nurturing and qualified stay what they are between open stages
        status, why = lead.status, None
    return attrs.evolve(
        lead, stage=target.key, status=status, disqualified_reason=why, updated_at=now
    )
