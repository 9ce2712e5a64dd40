"""The ticket workflow: status moves, their history, and the CSAT score of a solved ticket.

The workflow is fixed (it is what the SLA clocks are defined against)::

    new ──> open, pending, on_hold, solved
    open <──> pending <──> on_hold <──> open      (any of the three to any other)
    open, pending, on_hold ──> solved
    solved ──> open (reopen), closed
    closed: final

``new`` is only ever the first status: no move leads back to it. A ticket is never
moved to the status it has (no event without a change of state), and ``closed`` is
never left. A ticket is closed only once solved.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Final

import attrs

from crmkit.clock import FixedClock, ensure_utc
from crmkit.errors import TransitionNotAllowed, ValidationError
from crmkit.lifecycle._moved import Moved, Unmet
from crmkit.models import StageChange, SubjectKind, Ticket, TicketStatus
from crmkit.models._fields import expect

__all__ = [
    "TICKET_TRANSITIONS",
    "can_move_ticket",
    "move_ticket",
    "record_csat",
]

_S = TicketStatus

TICKET_TRANSITIONS: Final[Mapping[TicketStatus, frozenset[TicketStatus]]] = {
    _S.NEW: frozenset({_S.OPEN, _S.PENDING, _S.ON_HOLD, _S.SOLVED}),
    _S.OPEN: frozenset({_S.PENDING, _S.ON_HOLD, _S.SOLVED}),
    _S.PENDING: frozenset({_S.OPEN, _S.ON_HOLD, _S.SOLVED}),
    _S.ON_HOLD: frozenset({_S.OPEN, _S.PENDING, _S.SOLVED}),
    _S.SOLVED: frozenset({_S.OPEN, _S.CLOSED}),
    _S.CLOSED: frozenset(),
}
"""The allowed moves of the ticket workflow: status -> the statuses it may move to."""

_BY_VALUE: Final = {s.value: s for s in TicketStatus}


def _status(value: object, field: str) -> TicketStatus:
    if isinstance(value, TicketStatus):
        return value
    if isinstance(value, str) and value in _BY_VALUE:
        return _BY_VALUE[value]
    allowed = ", ".join(s.value for s in TicketStatus)
    raise ValidationError(field, value, f"expected a ticket status, one of: {allowed}")


def can_move_ticket(ticket: Ticket, to: TicketStatus | str) -> tuple[Unmet, ...]:
    """Every requirement that moving ``ticket`` to status ``to`` does not meet.

    Empty when the move is allowed. Codes: ``"unchanged"`` (the ticket has that status),
    ``"closed_is_final"``, ``"new_not_reentered"``, ``"transition"`` (not in
    :data:`TICKET_TRANSITIONS`). Raises :class:`~crmkit.errors.ValidationError` when
    ``to`` is not a ticket status.

    >>> from uuid import uuid4
    >>> from crmkit.models import Ticket, TicketChannel
    >>> ticket = Ticket.new(subject="Login fails", contact_id=uuid4(), channel=TicketChannel.EMAIL)
    >>> [u.code for u in can_move_ticket(ticket, "closed")]
    ['transition']
    """
    expect(ticket, Ticket, "ticket", "a Ticket")
    target = _status(to, "to")
    current = ticket.status
    unmet: list[Unmet] = []
    if target is current:
        unmet.append(Unmet("unchanged", f"the ticket is already {current.value}"))
        return tuple(unmet)
    if current is _S.CLOSED:
        unmet.append(Unmet("closed_is_final", "a closed ticket is final"))
    if target is _S.NEW:
        unmet.append(Unmet("new_not_reentered", "a ticket never returns to new"))
    if not unmet and target not in TICKET_TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in TICKET_TRANSITIONS[current]))
        unmet.append(
            Unmet(
                "transition",
                f"a {current.value} ticket moves only to: {allowed}",
            )
        )
    return tuple(unmet)


def _at(ticket: Ticket, at: object) -> datetime:
    when = ensure_utc(at, "at")
    if when < ticket.updated_at:
        raise ValidationError(
            "at", at, f"is earlier than the ticket's last update ({ticket.updated_at.isoformat()})"
        )
    return when


def move_ticket(
    ticket: Ticket,
    to: TicketStatus | str,
    *,
    by: str | None,
    at: datetime,
    reason: str | None = None,
) -> Moved[Ticket]:
    """Move ``ticket`` to status ``to``: the new ticket version plus its history entry.

    The new version has ``status=to`` and ``updated_at=at`` (the store raises its
    version); the :class:`~crmkit.models.StageChange` has ``subject=ticket``,
    ``subject_id=ticket.id``, ``pipeline=None``, ``from_stage``/``to_stage`` the status
    values, and ``at``, ``by`` and ``reason`` as given. Reopening a solved ticket clears
    its CSAT score (it rated a solution that no longer stands).

    Raises :class:`~crmkit.errors.TransitionNotAllowed` listing every unmet requirement
    (see :func:`can_move_ticket`); :class:`~crmkit.errors.ValidationError` when ``to`` is
    not a status, ``at`` is naive or earlier than the ticket's ``updated_at``, or ``by``
    or ``reason`` are not valid text.
    """
    expect(ticket, Ticket, "ticket", "a Ticket")
    target = _status(to, "to")
    when = _at(ticket, at)
    unmet = can_move_ticket(ticket, target)
    if unmet:
        raise TransitionNotAllowed(
            Ticket.entity_name,
            ticket.status.value,
            target.value,
            [u.message for u in unmet],
            codes=[u.code for u in unmet],
        )
    change = StageChange.new(
        subject=SubjectKind.TICKET,
        subject_id=ticket.id,
        from_stage=ticket.status.value,
        to_stage=target.value,
        at=when,
        by=by,
        reason=reason,
        clock=FixedClock(when),
    )
    csat = None if target is _S.OPEN else ticket.csat
    moved = attrs.evolve(ticket, status=target, updated_at=when, csat=csat)
    return Moved(moved, change)


def record_csat(ticket: Ticket, score: int, *, at: datetime) -> Ticket:
    """The solved ``ticket`` with its customer satisfaction ``score`` (1 to 5) recorded.

    A later rating replaces an earlier one. Raises
    :class:`~crmkit.errors.ValidationError` naming ``score`` (not an int from 1 to 5),
    ``status`` (the ticket is not solved; a closed ticket is final) or ``at``.
    """
    expect(ticket, Ticket, "ticket", "a Ticket")
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        raise ValidationError("score", score, "expected a CSAT score, an int from 1 to 5")
    if ticket.status is not _S.SOLVED:
        raise ValidationError(
            "status", ticket.status.value, "a CSAT score is recorded on a solved ticket only"
        )
    when = _at(ticket, at)
    return attrs.evolve(ticket, csat=score, updated_at=when)
